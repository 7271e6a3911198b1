"""Every script in bench/ runs: each one's smoke mode as a subprocess, its printed table checked.

The benchmarks are run by hand and would otherwise break unseen. A smoke run uses tiny sizes, so only that the
script runs and prints its table (header and rows) is checked, with a few values that must hold at any size;
never a speed. ``bench/gpu_check.py --cpu --tiny`` is run in tests/test_kernels.py.

The reference library (Xenoverse) lives in its own venv, ``bench/.ref-venv``, which CI does not have: without it,
``bench_anymdp.py --smoke`` runs our side alone and the ``reference_*.py`` workers, which only run inside that
venv, answer ``--help`` and otherwise stop with one line naming the setup script. With the venv the reference
sides run too (those tests skip without it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REF_PYTHON = ROOT / "bench" / ".ref-venv" / "bin" / "python"
needs_reference = pytest.mark.skipif(not REF_PYTHON.exists(), reason="no bench/.ref-venv (bench/setup_reference.sh)")


def run(script: str, *args: str, python: str | os.PathLike = sys.executable) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
    return subprocess.run([str(python), f"bench/{script}", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """The Markdown tables of ``text``: (header cells, data rows); a table is a header line, a ---|--- line, rows."""
    blocks, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            blocks.append(block)
            block = []
    found = []
    for b in blocks:
        if len(b) >= 2 and all(c and set(c) <= set("-:") for c in b[1]):
            rows = b[2:]
            assert all(len(r) == len(b[0]) for r in rows), f"ragged table: {b}"
            found.append((b[0], rows))
    return found


def one_table(text: str, header: list[str]) -> list[list[str]]:
    found = tables(text)
    assert [h for h, _ in found].count(header) == 1, f"no single table with header {header} in:\n{text}"
    rows = next(rows for h, rows in found if h == header)
    assert rows, f"table {header} has no rows"
    return rows


ANYMDP_HEADER = ["Measurement", "Reference (xenoverse)", "Ours (omnirl_core)", "Speed-up", "Target", "Result"]


def test_bench_anymdp_smoke_without_reference(tmp_path):
    """CI's case: no reference venv. One line says so and how to make it; our side fills every row alone."""
    res = run("bench_anymdp.py", "--smoke", "--markdown", "--reference-python", str(tmp_path / "absent" / "python"))
    rows = one_table(ok(res), ANYMDP_HEADER)
    # sampling (one and batched) at ns 16 and 32, VI and PI on one task and a batch, two env rows
    assert len(rows) == 2 * 2 + 4 + 2
    assert [r[1] for r in rows] == ["-"] * len(rows)  # the reference column is empty, not invented
    assert [r[3] for r in rows] == ["-"] * len(rows)
    assert all(re.fullmatch(r"[\d.]+ (s|ms|µs|k steps/s|M steps/s|steps/s)", r[2]) for r in rows), rows
    note = [line for line in res.stderr.splitlines() if "reference venv not found" in line]
    assert len(note) == 1 and "bench/setup_reference.sh" in note[0], res.stderr
    assert "reference: not run" in res.stdout


def test_bench_anymdp_full_run_still_needs_the_reference(tmp_path):
    """Outside smoke mode a missing reference venv stops the run (a speed-up table without it means nothing)."""
    res = run("bench_anymdp.py", "--reference-python", str(tmp_path / "absent" / "python"))
    assert res.returncode != 0 and "setup_reference.sh" in res.stderr


@needs_reference
def test_bench_anymdp_smoke_with_reference():
    rows = one_table(ok(run("bench_anymdp.py", "--smoke", "--markdown", "--reference-python", str(REF_PYTHON))),
                     ANYMDP_HEADER)
    assert len(rows) == 2 * 2 + 6 + 2  # with the reference, the "tol = ref's error" rows too
    assert all(r[1] != "-" and r[3].endswith("x") for r in rows), rows


@pytest.mark.slow
def test_bench_model_smoke_trains_on_its_own_dataset():
    """The training row synthesises its data into a temporary folder: it needs no notebook output."""
    out = ok(run("bench_model.py", "--smoke", "--markdown"))
    header = ["Measurement", "fla-core reference (tokens/s)", "ours (tokens/s)", "speed-up", "target", "result"]
    rows = one_table(out, header)
    assert len(rows) == 5  # RWKV-7 chunk 64 and 32, its per-step naive, Gated DeltaNet, its per-step naive
    assert all(float(r[2].replace(",", "")) > 0 for r in rows)
    rate = re.search(r"training, params/quick/03_training\.yaml on CPU: ([\d,]+) environment steps/s", out)
    assert rate and int(rate.group(1).replace(",", "")) > 0, out


@pytest.mark.slow
def test_bench_synthesis_smoke():
    rows = one_table(ok(run("bench_synthesis.py", "--smoke", "--markdown")),
                     ["row", "setting", "steps/s per core", "speed-up", "note"])
    assert len(rows) == 6
    assert all(float(r[2].replace(",", "")) > 0 for r in rows)
    assert rows[0][3] == rows[1][3] == "1.0x"  # the reference-style rows are the unit of the speed-ups


def test_synthesis_shares_smoke():
    found = tables(ok(run("synthesis_shares.py", "--smoke")))
    assert len(found) == 4  # tag share, behaviour share, action == label, random actions
    for header, rows in found:
        assert header == ["", "numba", "numpy"] and rows
    for _, rows in found[:2]:  # every non-boundary step has one tag and one behaviour: each column sums to 1
        for col in (1, 2):
            assert sum(float(r[col]) for r in rows) == pytest.approx(1.0, abs=0.01), rows


def test_mb_sweep_smoke():
    out = ok(run("mb_sweep.py", "--smoke"))
    rows = one_table(out, ["sweep", "Q1", "Q2", "Q3", "Q4"])
    assert [r[0] for r in rows] == ["Jacobi (ours)", "Gauss-Seidel", "Gauss-Seidel + reward prior 0.01 (reference)"]
    gap = float(re.search(r"largest \|Q_GS - Q_Jacobi\| / max \|Q\| = (\S+)", out).group(1))
    assert gap < 1e-8  # both sweeps iterated to convergence reach the same Q


@pytest.mark.slow
@pytest.mark.slow
def test_ppo_cost_smoke():
    """The PPO column's cost: measured rates, then the paper profile's suites before and after held-out tuning."""
    text = ok(run("ppo_cost.py", "--smoke"))
    found = tables(text)
    assert len(found) >= 2 and all(rows for _, rows in found), text


def test_paper_cost_smoke():
    """The paper profile's 04 and 05 projected from its files: a row per suite of 04 and per study of 05."""
    from omnirl_core.evaluation import EvaluationConfig
    from omnirl_core.studies.ablations import AblationConfig
    from omnirl_core.workbook import load_config

    text = ok(run("paper_cost.py", "--smoke"))
    ev = load_config(EvaluationConfig, ROOT / "params/paper/04_evaluation.yaml")
    ab = load_config(AblationConfig, ROOT / "params/paper/05_ablations.yaml")
    rows = one_table(text, ["suite", "steps per episode", "models x modes", "sequential steps", "GPU-hours"])
    assert [r[0] for r in rows][: len(ev.suites)] == ev.suites and rows[0][2] == "2 x 3"  # checkpoint and post
    studies = one_table(text, ["study", "variants x seeds", "distinct training runs", "training GPU-hours",
                               "test steps", "online steps (all suites)", "test GPU-hours"])
    assert [r[0] for r in studies][:-1] == ab.studies_to_run
    assert studies[0][3] == "463"  # task_count: 12 runs of 26,214 iterations at 5.3 s, as the file's comment says
    assert "days on 8 GPUs" in text


def test_table1_baselines_smoke():
    out = ok(run("table1_baselines.py", "--smoke"))
    header = ["suite", "random", "oracle", "TQL-UCB (ours)", "c, H", "paper TQL-UCB", "ours - paper",
              "within 5 points"]
    rows = one_table(out, header)
    assert [r[0] for r in rows] == ["frozenlake", "darkroom_6"]
    assert all(r[2].startswith("1.000") for r in rows)  # the oracle scores 1 on these deterministic suites
    timing = one_table(out, ["suite", "tasks x episodes", "numpy path (s)", "compiled (s)", "speed-up",
                             "same results"])
    assert [r[-1] for r in timing] == ["yes"] * len(timing)


REFERENCE_WORKERS = {
    # script: a tiny real run, for when the reference venv exists
    "reference_anymdp.py": ["--json", "--ns", "16", "--repeats", "1"],
    "reference_synthesis.py": ["--steps", "300", "--seq-len", "200"],
    "reference_task_stats.py": ["{tmp}/stats.json", "--sizes", "1:5,16:1"],
}
HAVE_XENOVERSE = importlib.util.find_spec("xenoverse") is not None


@pytest.mark.parametrize("script", sorted(REFERENCE_WORKERS))
def test_reference_worker_outside_its_venv(script, tmp_path):
    """The workers run only in the reference venv: here --help works and a run stops with one line saying where
    they run, instead of an import traceback."""
    assert "usage:" in ok(run(script, "--help"))
    if HAVE_XENOVERSE:
        pytest.skip("xenoverse is importable in this venv")
    res = run(script, *(a.format(tmp=tmp_path) for a in REFERENCE_WORKERS[script]))
    assert res.returncode == 1 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "xenoverse" in lines[0] and "bash bench/setup_reference.sh" in lines[0], res.stderr


@needs_reference
@pytest.mark.parametrize("script", sorted(REFERENCE_WORKERS))
def test_reference_worker_in_its_venv(script, tmp_path):
    out = ok(run(script, *(a.format(tmp=tmp_path) for a in REFERENCE_WORKERS[script]), python=REF_PYTHON))
    if script == "reference_task_stats.py":
        assert {"provenance", "ns1", "ns16"} <= set(json.loads((tmp_path / "stats.json").read_text()))
    else:
        assert out.strip().splitlines()[-1].startswith("{")
