"""How an executed notebook reads: figures shown once, nothing stray, claims decided by their numbers.

The audit (:mod:`omnirl_core.workbook.audit`) is run here on notebooks executed for real by papermill in the
project's kernel: one that reads right passes, and one with each fault the workbook once had (a figure drawn twice
by the inline backend, a figure hidden by a backend switch, a bare integer from ``write_text``, a verdict written by
hand) fails, naming the cell. The rehearsal of the paper profile (``test_paper_rehearsal.py``) audits the five real
notebooks.
"""

from __future__ import annotations

import json
import math

import nbformat
import pytest

from omnirl_core.workbook.audit import audit_notebook
from omnirl_core.workbook.claims import CONTRADICTED, HOLDS, NOT_SHOWN, ClaimSheet, claims_markdown, decide


@pytest.mark.parametrize("rule,low,high,verdict", [
    ({"kind": "above", "threshold": 0}, 0.01, 0.5, HOLDS),
    ({"kind": "above", "threshold": 0}, -0.01, 0.5, NOT_SHOWN),
    ({"kind": "above", "threshold": 0}, -0.5, -0.01, CONTRADICTED),
    ({"kind": "below", "threshold": 1}, 0.2, 0.9, HOLDS),
    ({"kind": "below", "threshold": 1}, 1.1, 1.2, CONTRADICTED),
    ({"kind": "within", "low": -0.1, "high": 0.1}, -0.05, 0.08, HOLDS),
    ({"kind": "within", "low": -0.1, "high": 0.1}, -0.05, 0.2, NOT_SHOWN),
    ({"kind": "within", "low": 0.9, "high": 1.1}, 0.5, 0.8, CONTRADICTED),
    ({"kind": "above", "threshold": 0}, math.nan, 0.5, NOT_SHOWN),
])
def test_a_verdict_follows_from_the_interval_and_the_rule(rule, low, high, verdict):
    assert decide(rule, low, high) == verdict


def test_the_claim_sheet_writes_every_claim_and_a_rerun_starts_afresh(tmp_path):
    sheet = ClaimSheet(tmp_path)
    sheet.above("gain", "it learns", 0.3, (0.2, 0.4))
    sheet.within("random", "random reads 0", 0.02, (-0.05, 0.2), -0.1, 0.1)
    saved = json.loads((tmp_path / "claims.json").read_text())
    assert [(c["key"], c["verdict"]) for c in saved] == [("gain", HOLDS), ("random", NOT_SHOWN)]
    assert "| it learns | +0.300" in claims_markdown(saved) and "**not shown**" in sheet.markdown()
    ClaimSheet(tmp_path)  # a new run of the notebook: no verdict of the older run survives
    assert not (tmp_path / "claims.json").exists()


SETUP = """\
from pathlib import Path
import matplotlib.pyplot as plt
from IPython.display import Image, Markdown, display
from omnirl_core.workbook.claims import ClaimSheet
from omnirl_core.workbook.figures import no_figure, show_figure
out = Path("01_demo")
out.mkdir(exist_ok=True)"""
GOOD = """\
fig, ax = plt.subplots()
ax.plot([0, 1])
show_figure(fig, out / "line.png")"""
SKIPPED = 'if False:\n    show_figure(None, out / "never.png")\nelse:\n    no_figure("nothing to draw here")'
CLAIMS = """\
sheet = ClaimSheet(out)
sheet.above("gain", "it learns", 0.3, (0.2, 0.4))
display(Markdown("### What this run shows\\n\\n" + sheet.markdown()))"""
TWICE = """\
fig, ax = plt.subplots()
ax.plot([1, 0])
fig.savefig(out / "twice.png")
display(Image(filename=str(out / "twice.png")))"""
HIDDEN = """\
import matplotlib
matplotlib.use("Agg")
fig, ax = plt.subplots()
ax.plot([0, 0])
fig.savefig(out / "hidden.png")
plt.show()"""
BARE = '(out / "note.txt").write_text("hello")'


def _execute(tmp_path, name: str, cells: list[str]):
    papermill = pytest.importorskip("papermill")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "omnirl", "display_name": "OmniRL (.venv)", "language": "python"}
    src = tmp_path / f"{name}.src.ipynb"
    nbformat.write(nb, src)
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(src), str(out), kernel_name="omnirl", cwd=str(tmp_path), progress_bar=False)
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_audit_passes_a_notebook_that_reads_right_and_names_each_fault_of_a_broken_one(tmp_path):
    good = _execute(tmp_path, "01_demo", [SETUP, GOOD, SKIPPED, CLAIMS])
    assert audit_notebook(good) == []

    broken = _execute(tmp_path, "01_demo", [SETUP, GOOD, TWICE, HIDDEN, BARE, CLAIMS])
    problems = audit_notebook(broken)
    assert any("code cell 3: an image not shown by show_figure" in p for p in problems), problems
    assert any("code cell 4: draws a figure but shows no image" in p for p in problems), problems
    assert any("code cell 5: a bare value 5" in p for p in problems), problems
    assert {p.split(":")[0] for p in problems} == {f"01_demo.ipynb, code cell {i}" for i in (3, 4, 5)}, problems

    # the same figure file shown twice, and a verdict edited by hand in claims.json
    nb = json.loads(good.read_text())
    nb["cells"].append(nb["cells"][1])
    good.write_text(json.dumps(nb))
    claims = tmp_path / "01_demo" / "claims.json"
    saved = json.loads(claims.read_text())
    saved[0]["verdict"] = CONTRADICTED
    claims.write_text(json.dumps(saved))
    problems = audit_notebook(good)
    assert any("figure line.png shown again (first in code cell 2)" in p for p in problems), problems
    assert any("verdict 'contradicted', but its interval" in p for p in problems), problems

    claims.unlink()
    assert any("claims.json: missing" in p for p in audit_notebook(good))


def test_the_readme_quick_run_block_is_what_the_recorded_snapshot_renders(tmp_path):
    """The README's and the docs' numbers about the quick run come from the run (scripts/quick_results.py), never
    by hand: the README's summary block and each bench/results/quick/NN_name/claims.md are what the committed
    snapshot renders, and the check fails on a number edited by hand in either."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from omnirl_core.workbook.results import (
        BLOCK_SUMMARY,
        KEY_ARTEFACTS,
        claims_file,
        markers,
        render_summary,
        replace_block,
    )

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "scripts/quick_results.py", "--check"], cwd=root, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    snapshot = json.loads((root / "bench" / "results" / "quick_run.json").read_text())
    assert set(snapshot["notebooks"]) == {"01_tasks", "02_synthesis", "03_training", "04_evaluation",
                                          "05_ablations"}
    readme = (root / "README.md").read_text()
    begin, end = markers(BLOCK_SUMMARY)
    block = readme.split(begin, 1)[1].split(end, 1)[0]
    assert block.strip() == render_summary(snapshot).strip()
    head = next(c for c in snapshot["notebooks"]["04_evaluation"]["claims"] if c["key"] == "incontext_anymdp_1_OmniRL")
    assert f"{head['value']:+.3f}" in block
    # a number edited by hand in the block no longer matches what the snapshot renders
    hand = block.replace(f"{head['value']:+.3f}", f"{head['value'] + 0.5:+.3f}", 1)
    edited = readme.replace(block, hand)
    assert hand != block and replace_block(edited, render_summary(snapshot), BLOCK_SUMMARY) == readme != edited
    # the script's check, pointed at a copy whose claims table was edited by hand, names that file
    import importlib.util

    spec = importlib.util.spec_from_file_location("quick_results", root / "scripts" / "quick_results.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    copy = tmp_path / "results"
    shutil.copytree(root / "bench" / "results", copy)
    claims = copy / "quick" / "04_evaluation" / "claims.md"
    assert claims.read_text() == claims_file(snapshot, "04_evaluation")
    script.ROOT, script.SNAPSHOT, script.ARTEFACTS = tmp_path, copy / "quick_run.json", copy / "quick"
    script.README = tmp_path / "README.md"
    script.README.write_text(readme)
    assert script.check() == []
    claims.write_text(claims.read_text().replace(f"{head['value']:+.3f}", f"{head['value'] + 0.5:+.3f}", 1))
    (copy / "quick" / "01_tasks" / KEY_ARTEFACTS["01_tasks"][0]).unlink()
    script.README.write_text(edited)
    problems = script.check()
    assert any("04_evaluation/claims.md" in p for p in problems), problems
    assert any(KEY_ARTEFACTS["01_tasks"][0] in p and "missing" in p for p in problems), problems
    assert any("README.md" in p for p in problems), problems
