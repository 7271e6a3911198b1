"""The quick run's numbers in the README, from the run itself.

:func:`collect` gathers what a run folder's notebooks decided (each ``NN_name/claims.json``) and how long each
notebook took (``workbook_run.json``) into one snapshot; :func:`render` turns a snapshot into Markdown, and
:func:`replace_block` puts that between the README's markers. ``scripts/quick_results.py`` does the three in a
row after ``bash scripts/run_workbook.sh`` and keeps the snapshot in ``bench/results/quick_run.json``;
``--check`` (run by the tests) fails when the README's block is not what the committed snapshot renders, so a
number about the quick run is never edited by hand.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .claims import CLAIMS_FILE, claims_markdown

BEGIN = "<!-- quick-run results: written by scripts/quick_results.py, do not edit by hand -->"
END = "<!-- end of quick-run results -->"


def collect(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Snapshot of a run folder: per notebook (in order) its claims and its time, and the run's parameters."""
    run = Path(run_dir)
    summary_file = run / "workbook_run.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    seconds = {nb.get("stem") or nb.get("name"): nb.get("seconds") for nb in summary.get("notebooks", [])}
    notebooks = {}
    for folder in sorted(p for p in run.iterdir() if p.is_dir() and (p / CLAIMS_FILE).is_file()):
        notebooks[folder.name] = {"claims": json.loads((folder / CLAIMS_FILE).read_text()),
                                  "seconds": seconds.get(folder.name)}
    if not notebooks:
        raise FileNotFoundError(f"{run}: no NN_name/{CLAIMS_FILE} here; run the workbook first "
                                "(bash scripts/run_workbook.sh)")
    params = summary.get("params_dir")
    return {"run": run.name, "params": Path(params).name if params else None, "started": summary.get("started"),
            "seconds": summary.get("seconds"), "notebooks": notebooks}


def render(snapshot: dict[str, Any]) -> str:
    """Markdown of a snapshot: the claims table of each notebook with its time."""
    parts = []
    if snapshot.get("seconds"):
        parts.append(f"Run `{snapshot['run']}` of {str(snapshot.get('started', ''))[:10]}: "
                     f"{len(snapshot['notebooks'])} notebooks in {snapshot['seconds'] / 60:.1f} minutes.")
    for stem, nb in snapshot["notebooks"].items():
        took = f" ({nb['seconds']:.0f} s)" if nb.get("seconds") else ""
        parts.append(f"**{stem}**{took}\n\n{claims_markdown(nb['claims'])}")
    return "\n\n".join(parts)


def replace_block(text: str, block: str) -> str:
    """``text`` (the README) with the part between :data:`BEGIN` and :data:`END` replaced by ``block``."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"the README has no block between {BEGIN!r} and {END!r}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"
