"""The workbook runner, driven through its command line on throwaway notebooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CONFIG_MODULE = """
from dataclasses import dataclass

from omnirl_core.workbook import param


@dataclass
class TinyConfig:
    value: int = param(1, ge=0)
    "A number the notebook records."
    label: str = "tiny"
    "A label."


REGISTRY = {"01_first": TinyConfig, "02_second": TinyConfig}
"""

NOTEBOOK = """\
# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: OmniRL (.venv)
#     language: python
#     name: omnirl
# ---

# %% [markdown]
# # {stem}

# %% tags=["parameters"]
config_path = "params/quick/{stem}.yaml"
run_dir = "outputs/quick"

# %%
from pathlib import Path

from omnirl_core.workbook import load_config
from tinycfg import TinyConfig

cfg = load_config(TinyConfig, config_path)

# %%
with open(Path(run_dir) / "order.txt", "a") as fh:
    fh.write(f"{stem} {{cfg.value}} {{Path.cwd()}}\\n")
print("recorded", cfg.value)
"""

FAILING_CELL = """
# %%
values = [cfg.value]
raise RuntimeError("boom in {stem}")
"""


@cache
def _kernel() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return "omnirl" if "omnirl" in KernelSpecManager().find_kernel_specs() else "python3"


@pytest.fixture
def workspace(tmp_path):
    """Two notebooks with their quick parameters, and a module registering their config class."""
    (tmp_path / "cfgmod").mkdir()
    (tmp_path / "cfgmod" / "tinycfg.py").write_text(CONFIG_MODULE)
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    params = tmp_path / "params" / "quick"
    params.mkdir(parents=True)
    for stem, value in (("01_first", 5), ("02_second", 7)):
        (nb_dir / f"{stem}.py").write_text(NOTEBOOK.format(stem=stem))
        (params / f"{stem}.yaml").write_text(f"# test parameters\nvalue: {value}\n")
    (nb_dir / "README.md").write_text("not a notebook")
    (nb_dir / "helper.py").write_text("# not a notebook either\n")
    return tmp_path


def _cli(ws: Path, *args: str, registry: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ws / "cfgmod"), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "omnirl_core.workbook", *args]
    if args[0] in ("run", "check"):
        cmd += ["--notebooks-dir", str(ws / "notebooks")]
    if registry:
        cmd += ["--registry", "tinycfg:REGISTRY"]
    if args[0] == "run":
        cmd += ["--output-root", str(ws / "out"), "--kernel", _kernel()]
    return subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=180)


def _read_nb(nb_path: Path) -> dict:
    return json.loads(nb_path.read_text())


def _parameters_cell(nb_path: Path) -> str:
    cells = [c for c in _read_nb(nb_path)["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(cells) == 1
    source = cells[0]["source"]
    return "".join(source) if isinstance(source, list) else source


def test_run_executes_in_order_with_injected_parameters(workspace):
    res = _cli(workspace, "run", "params/quick")
    assert res.returncode == 0, res.stderr
    run_dir = workspace / "out" / "quick"  # run name defaults to the params folder's name
    lines = (run_dir / "order.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["01_first", "5"], ["02_second", "7"]]
    assert all(line.split()[2] == str(ROOT) for line in lines)  # notebooks run in the repository root
    for stem in ("01_first", "02_second"):
        out = run_dir / f"{stem}.ipynb"
        assert out.is_file()
        source = _parameters_cell(out)
        assert f'config_path = "{workspace / "params" / "quick" / stem}.yaml"' in source
        assert f'run_dir = "{run_dir}"' in source
        assert _read_nb(out)["metadata"]["papermill"]["input_path"].endswith(f"{stem}.py")
        assert (run_dir / f"{stem}.config.yaml").is_file()
    summary = json.loads((run_dir / "workbook_run.json").read_text())
    assert [(n["stem"], n["status"]) for n in summary["notebooks"]] == [("01_first", "ok"), ("02_second", "ok")]
    assert "2 ok, 0 failed, 0 not run" in res.stderr


def test_failing_cell_names_notebook_and_cell(workspace):
    nb = workspace / "notebooks" / "02_second.py"
    nb.write_text(nb.read_text() + FAILING_CELL.format(stem="02_second"))
    res = _cli(workspace, "run", "params/quick", "--run-name", "broken")
    assert res.returncode == 1
    err = res.stderr
    assert "FAILED: notebook 02_second" in err
    assert "failed in cell [" in err and "RuntimeError: boom in 02_second" in err
    assert 'raise RuntimeError("boom in 02_second")' in err  # the failing cell's source is shown
    partial = workspace / "out" / "broken" / "02_second.ipynb"
    assert "partially executed notebook: out/broken/02_second.ipynb" in err  # relative to the working dir
    assert partial.is_file()
    assert (workspace / "out" / "broken" / "01_first.ipynb").is_file()
    summary = json.loads((workspace / "out" / "broken" / "workbook_run.json").read_text())
    assert [n["status"] for n in summary["notebooks"]] == ["ok", "failed"]


def test_bad_yaml_fails_before_any_notebook_runs(workspace):
    (workspace / "params" / "quick" / "02_second.yaml").write_text("valeu: 3\n")
    res = _cli(workspace, "run", "params/quick")
    assert res.returncode == 2
    assert "02_second.yaml" in res.stderr
    assert "unknown key 'valeu'. Did you mean 'value'?" in res.stderr
    assert "no notebook was run" in res.stderr
    assert not (workspace / "out").exists()


def test_only_runs_selected_notebooks(workspace):
    (workspace / "params" / "quick" / "01_first.yaml").unlink()  # excluded notebooks need no YAML
    res = _cli(workspace, "run", "params/quick", "--only", "02", "--run-name", "only2")
    assert res.returncode == 0, res.stderr
    run_dir = workspace / "out" / "only2"
    assert sorted(p.name for p in run_dir.glob("*.ipynb")) == ["02_second.ipynb"]
    assert [line.split()[0] for line in (run_dir / "order.txt").read_text().splitlines()] == ["02_second"]


def test_missing_yaml_is_named(workspace):
    (workspace / "params" / "quick" / "01_first.yaml").unlink()
    res = _cli(workspace, "run", "params/quick")
    assert res.returncode == 2
    assert "notebook 01_first" in res.stderr and "has no parameter file" in res.stderr
    assert not (workspace / "out").exists()


def test_unknown_only_and_unregistered_notebook(workspace):
    res = _cli(workspace, "check", "params/quick", "--only", "07")
    assert res.returncode == 2 and "--only '07' matches no notebook" in res.stderr
    res = _cli(workspace, "check", "params/quick", registry=False)  # default registry lacks these notebooks
    assert res.returncode == 2 and "no registered configuration class" in res.stderr


def test_check_and_describe(workspace):
    res = _cli(workspace, "check", "params/quick")
    assert res.returncode == 0, res.stderr
    assert "01_first" in res.stdout and "02_second" in res.stdout
    (workspace / "params" / "quick" / "01_first.yaml").write_text("value: -1\n")
    res = _cli(workspace, "check", "params/quick")
    assert res.returncode == 2
    assert "'value': -1 is out of range: must be >= 0" in res.stderr
    res = _cli(workspace, "describe")
    assert res.returncode == 0
    assert "## 01_first: TinyConfig" in res.stdout and "| `value` | `int` | `1` | >= 0 |" in res.stdout


def test_real_params_check():
    """The repository's own parameter folders validate against the registered classes."""
    for profile in ("quick", "paper"):
        res = subprocess.run(
            [sys.executable, "-m", "omnirl_core.workbook", "check", f"params/{profile}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if "no NN_name.py notebooks" in res.stderr:
            pytest.skip("no notebooks yet")
        assert res.returncode == 0, res.stderr


def test_real_describe():
    res = subprocess.run(
        [sys.executable, "-m", "omnirl_core.workbook", "describe"], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0
    assert "## 01_tasks: TasksConfig" in res.stdout
    assert "| `stats_ns` | `list[int]` | `[1, 16, 32]` |" in res.stdout


def test_set_overrides_one_notebook_and_the_notebook_reads_the_validated_copy(workspace):
    proc = _cli(workspace, "run", "params/quick", "--run-name", "over", "--set", "02:value=11")
    assert proc.returncode == 0, proc.stderr
    lines = (workspace / "out" / "over" / "order.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["01_first", "5"], ["02_second", "11"]]
    injected = _parameters_cell(workspace / "out" / "over" / "02_second.ipynb")
    assert str(workspace / "out" / "over" / "02_second.config.yaml") in injected
    assert "params/quick/01_first.yaml" in _parameters_cell(workspace / "out" / "over" / "01_first.ipynb")
    bad = _cli(workspace, "run", "params/quick", "--set", "value=-1")
    assert bad.returncode == 2 and "value" in bad.stderr and not (workspace / "out" / "quick").exists()
    unknown = _cli(workspace, "check", "params/quick", "--set", "09:value=1")
    assert unknown.returncode == 2 and "'09' matches no selected notebook" in unknown.stderr
