"""Papermill's own conventions (``-f FILE``, ``-p NAME VALUE``, ``-y YAML``) on the real notebooks: the values it
injects become the notebook's typed configuration, validated by the config engine, and the run folder's
``NN_name.config.yaml`` is what ran. Every run goes through the papermill command line, as a user's batch would;
most stop after the notebook's configuration cell (the notebook is cut there), which is what they test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from omnirl_core.workbook import config_to_dict, load_config
from omnirl_core.workbook.registry import NOTEBOOK_CONFIGS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # each test starts a kernel (5-12 s on a busy 2-core machine)


# The papermill command line, without one optional import of nbformat's schema checker that costs seconds
# (the runner skips it too: omnirl_core.workbook.runner._import_notebook_tools).
PAPERMILL_CLI = ("import sys; sys.modules['rfc3987_syntax'] = None; sys.argv[0] = 'papermill'; "
                 "from papermill.cli import papermill; papermill()")


@cache
def _kernel() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return "omnirl" if "omnirl" in KernelSpecManager().find_kernel_specs() else "python3"


def _notebook(stem: str, folder: Path, *, until_config: bool = True, fmt: str = "ipynb") -> Path:
    """``notebooks/<stem>.py`` converted as ``jupytext --to ipynb`` does; cut after its configuration cell (the
    first code cell after the parameters cell) unless ``until_config`` is False."""
    import jupytext

    nb = jupytext.read(ROOT / "notebooks" / f"{stem}.py")
    if until_config:
        params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        config_cell = next(i for i in range(params + 1, len(nb.cells)) if nb.cells[i].cell_type == "code")
        assert "notebook_config(" in nb.cells[config_cell].source
        nb.cells = nb.cells[: config_cell + 1]
    path = folder / f"{stem}.{fmt}"
    jupytext.write(nb, path, fmt="py:percent" if fmt == "py" else None)
    return path


def _papermill(notebook: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``papermill NOTEBOOK OUT ARGS -k KERNEL`` from the repository root; the process and the output notebook."""
    out = notebook.with_name(f"{notebook.stem}.out.ipynb")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    cmd = [sys.executable, "-c", PAPERMILL_CLI, str(notebook), str(out), *args, "-k", _kernel(), "--no-progress-bar"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return proc, json.loads(out.read_text())


def _saved(run_dir: Path, stem: str) -> dict:
    return yaml.safe_load((run_dir / f"{stem}.config.yaml").read_text())


def _expected(stem: str, path: str, overrides: dict) -> dict:
    return config_to_dict(load_config(NOTEBOOK_CONFIGS[stem], ROOT / path, overrides=overrides))


def _text(nb: dict) -> str:
    """Every output of every cell, as text."""
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            parts += out.get("text", []) + out.get("data", {}).get("text/plain", []) + out.get("traceback", [])
    return "".join(parts)


def test_a_file_and_values_passed_the_papermill_way_are_what_notebook_01_runs(tmp_path):
    """The user's papermill batch: a parameter file of changes (-f), a list as text (-p), a value as YAML (-y)."""
    mine = yaml.safe_load((ROOT / "params/quick/01_tasks.yaml").read_text()) | {"seed": 5, "stats_tasks_per_ns": 7}
    (tmp_path / "my01.yaml").write_text(yaml.safe_dump(mine))
    run_dir = tmp_path / "run"
    proc, nb = _papermill(_notebook("01_tasks", tmp_path), "-f", str(tmp_path / "my01.yaml"),
                          "-p", "run_dir", str(run_dir), "-p", "stats_ns", "[1, 16]", "-y", "timing_repeats: 2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = _saved(run_dir, "01_tasks")
    assert ran == _expected("01_tasks", "params/quick/01_tasks.yaml",
                            {"seed": 5, "stats_tasks_per_ns": 7, "stats_ns": [1, 16], "timing_repeats": 2})
    assert "TasksConfig(seed=5" in _text(nb) and "stats_tasks_per_ns=7" in _text(nb)  # the notebook's own cfg
    assert "with papermill parameters" in (run_dir / "01_tasks.config.yaml").read_text().splitlines()[0]


def test_a_misspelt_name_is_refused_before_any_work_naming_the_closest_field(tmp_path):
    run_dir = tmp_path / "run"
    proc, nb = _papermill(_notebook("01_tasks", tmp_path, until_config=False), "-p", "sead", "5",
                          "-p", "run_dir", str(run_dir))
    assert proc.returncode != 0
    message = ("papermill parameters of notebook 01_tasks (TasksConfig): unknown key 'sead'. Did you mean 'seed'? "
               "Valid keys: seed, na,")
    assert message in proc.stderr
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert len(errors) == 1 and len(errors[0]["traceback"]) == 1  # one line in the notebook, no engine frames
    assert "notebook 01_tasks's own parameters: config_path, run_dir" in errors[0]["traceback"][0]
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    failed = next(i for i, c in enumerate(code) if c.get("outputs") and c["outputs"][-1]["output_type"] == "error")
    assert "notebook_config(" in "".join(code[failed]["source"])
    assert all(c["execution_count"] is None for c in code[failed + 1:])  # nothing after the configuration ran
    assert not run_dir.exists()  # no output folder, no saved configuration


def test_paper_profile_file_with_a_nested_value_merges_key_by_key(tmp_path):
    """config_path and injected values together: the file first, then the values; a mapping merges into the
    file's mapping (one dataset's seed changes, the other datasets and that dataset's other keys stay)."""
    run_dir = tmp_path / "run"
    proc, _ = _papermill(_notebook("02_synthesis", tmp_path), "-p", "config_path", "params/paper/02_synthesis.yaml",
                         "-y", "datasets: {d_small: {seed: 7}}", "-p", "workers", "3", "-p", "run_dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = _saved(run_dir, "02_synthesis")
    assert ran == _expected("02_synthesis", "params/paper/02_synthesis.yaml",
                            {"datasets.d_small.seed": 7, "workers": 3})
    paper = yaml.safe_load((ROOT / "params/paper/02_synthesis.yaml").read_text())
    assert set(ran["datasets"]) == set(paper["datasets"]) and ran["datasets"]["d_small"]["seed"] == 7


def test_quick_training_file_of_changes_reads_1e_3_as_a_number(tmp_path):
    """papermill reads -f files as YAML 1.1 (``1e-3`` is text there); the notebook reads it as the runner does."""
    (tmp_path / "changes.yaml").write_text("steps: 7\noptim:\n  lr: 1e-3\n")
    run_dir = tmp_path / "run"
    (run_dir / "data" / "dpd_bandit").mkdir(parents=True)  # notebook 03's input from 02 (only looked up here)
    proc, _ = _papermill(_notebook("03_training", tmp_path), "-f", str(tmp_path / "changes.yaml"),
                         "-p", "run_dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _saved(run_dir, "03_training") == _expected("03_training", "params/quick/03_training.yaml",
                                                       {"steps": 7, "optim.lr": 0.001})


@pytest.mark.parametrize(("stem", "profile", "injected", "message"), [
    ("04_evaluation", "paper", {"temperature": "hot", "progress": False},
     "params/paper/04_evaluation.yaml with papermill parameters temperature='hot', progress=False "
     "(EvaluationConfig): 'temperature': expected float, got str 'hot'"),
    ("05_ablations", "quick", {"training": {"optim": {"lrr": 0.1}}},
     "unknown key 'training.optim.lrr'. Did you mean 'training.optim.lr'?"),
    ("02_synthesis", "paper", {"datasets": {"d_smal": {"seq_len": 512}}},  # would be a new dataset of defaults
     "override of 'datasets.d_smal', which the file does not have"),
])
def test_a_bad_injected_value_gets_the_engines_message(tmp_path, stem, profile, injected, message):
    """What papermill injects (``-p temperature hot -p progress false``, ``-y 'training: {optim: ...}'``) is the
    cell papermill's own translator writes, run in the kernel after the notebook's parameters cell (the tests
    above run papermill itself); the configuration cell's ``notebook_config`` refuses it with the engine's message
    and writes no configuration. In-process: a kernel per case would only test papermill again."""
    from papermill.translators import translate_parameters

    from omnirl_core.workbook import ConfigError, notebook_config

    def kernel_globals(parameters: dict) -> dict:
        """The notebook's globals after its parameters cell and papermill's injected cell (IPython's ``In``)."""
        own = f'config_path = "params/quick/{stem}.yaml"\nrun_dir = "outputs/quick"\n'
        cell = translate_parameters("python3", "python", parameters, "Parameters")
        namespace: dict = {}
        exec(own, namespace)
        exec(cell, namespace)
        namespace["In"] = ["", own, cell]
        return namespace

    run_dir = tmp_path / "run"
    base = {"config_path": f"params/{profile}/{stem}.yaml", "run_dir": str(run_dir)}
    with pytest.raises(ConfigError) as err:
        notebook_config(stem, kernel_globals({**base, **injected}), echo=False)
    assert message in str(err.value), str(err.value)
    assert not (run_dir / f"{stem}.config.yaml").exists()
    # without the bad value the same cell is accepted: the message is about that value
    assert notebook_config(stem, kernel_globals(base), echo=False) is not None


def test_the_runner_still_passes_its_own_parameters(tmp_path):
    """``python -m omnirl_core.workbook run --set`` on the real notebook 01 (cut after its configuration cell)."""
    _notebook("01_tasks", tmp_path, fmt="py")
    cmd = [sys.executable, "-m", "omnirl_core.workbook", "run", "params/quick", "--only", "01", "--notebooks-dir",
           str(tmp_path), "--output-root", str(tmp_path / "out"), "--kernel", _kernel(), "--set", "01:seed=3"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _saved(tmp_path / "out" / "quick", "01_tasks") == _expected("01_tasks", "params/quick/01_tasks.yaml",
                                                                       {"seed": 3})
