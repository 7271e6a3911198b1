"""The quick run's numbers and figures in the README and the docs, from the run itself.

:func:`collect` gathers what a run folder's notebooks decided (each ``NN_name/claims.json``) and how long each notebook
took (``workbook_run.json``) into one snapshot; :func:`publish` copies each notebook's key figures and tables
(:data:`KEY_ARTEFACTS`) beside it and writes its claims table (:func:`claims_file`); :func:`render_summary` turns a
snapshot into the README's table, and :func:`replace_block` puts that between the README's markers.
``scripts/quick_results.py`` does it all after ``bash scripts/run_workbook.sh`` and keeps the snapshot in
``bench/results/quick_run.json`` and the artefacts in ``bench/results/quick/``, which the docs site includes;
``--check`` (run by the tests) fails when a README block or a claims table is not what the committed snapshot renders,
so a number about the quick run is never edited by hand.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .claims import CLAIMS_FILE, claims_markdown

BLOCK_SUMMARY = "quick-run summary"

KEY_ARTEFACTS: dict[str, tuple[str, ...]] = {
    "01_tasks": ("oracle_vs_random.png", "stats_vs_reference.png", "example_graph_ns16.png"),
    "02_synthesis": ("reward_curves.png", "sequences_dpd_bandit.png"),
    "03_training": ("loss_curves.png", "position_loss.png"),
    "04_evaluation": ("incontext_gain.png", "long_context.png", "curves_anymdp_16.png", "table1.md"),
    "05_ablations": ("gain_curves.png", "context_loss.png", "summary.md", "table1_variants.md"),
}
"""Per notebook, the files of its output folder that the docs show (the first is its key figure)."""

HEADLINE: dict[str, str] = {
    "01_tasks": "oracle_beats_random_ns16",
    "02_synthesis": "dpd_quick_model-based_improves",
    "03_training": "loss_falls_along_context",
    "04_evaluation": "incontext_anymdp_1_OmniRL",
    "05_ablations": "tags_dpd_vs_no_tags",
}
"""Per notebook, the key of the claim the README's summary quotes (the first claim when it is absent)."""



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


def publish(run_dir: str | os.PathLike, dest: str | os.PathLike, snapshot: dict[str, Any]) -> list[Path]:
    """Copy each notebook's :data:`KEY_ARTEFACTS` from ``run_dir`` to ``dest/NN_name/`` and write its claims
    table there (``claims.md``); ``dest`` is emptied first, so nothing of an earlier run stays. Returns the
    files written. A key artefact the run did not write is an error naming it."""
    run, dest = Path(run_dir), Path(dest)
    missing = [f"{stem}/{name}" for stem, names in KEY_ARTEFACTS.items() if stem in snapshot["notebooks"]
               for name in names if not (run / stem / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run}: the run wrote no {', '.join(missing)}")
    if dest.exists():
        shutil.rmtree(dest)
    written = []
    for stem in snapshot["notebooks"]:
        (dest / stem).mkdir(parents=True)
        for name in KEY_ARTEFACTS.get(stem, ()):
            shutil.copyfile(run / stem / name, dest / stem / name)
            written.append(dest / stem / name)
        (dest / stem / "claims.md").write_text(claims_file(snapshot, stem), encoding="utf-8")
        written.append(dest / stem / "claims.md")
    return written


def claims_file(snapshot: dict[str, Any], stem: str) -> str:
    """The text of ``NN_name/claims.md``: the notebook's claims table with its run and time."""
    nb = snapshot["notebooks"][stem]
    took = f" in {nb['seconds']:.0f} s" if nb.get("seconds") else ""
    return (f"Run `{snapshot['run']}` of {str(snapshot.get('started', ''))[:10]}: `{stem}` ran{took}.\n\n"
            f"{claims_markdown(nb['claims'])}\n")


def render_summary(snapshot: dict[str, Any], docs_url: str = "docs/notebooks",
                   figures_url: str = "bench/results/quick") -> str:
    """The README's table of the quick run: per notebook its time, its verdicts, its key figure and the number
    of its headline claim (:data:`HEADLINE`) with interval and verdict."""
    rows = ["| notebook | time | key figure | headline claim of the run | measured [95% CI] | verdicts |",
            "|---|---|---|---|---|---|"]
    for stem, nb in snapshot["notebooks"].items():
        claims = nb["claims"]
        head = next((c for c in claims if c.get("key") == HEADLINE.get(stem)), claims[0])
        counts = {}
        for c in claims:
            counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
        verdicts = ", ".join(f"{n} {v}" for v, n in counts.items())
        figure = KEY_ARTEFACTS.get(stem, ("",))[0]
        fig = f"[{figure}]({figures_url}/{stem}/{figure})" if figure else "-"
        took = f"{nb['seconds']:.0f} s" if nb.get("seconds") else "-"
        name = f"[{stem}]({docs_url}/{stem.replace('_', '-')}.md)"  # docs/notebooks/01-tasks.md for 01_tasks
        measure = f" ({head['measure']})" if head.get("measure") else ""
        rows.append(f"| {name} | {took} | {fig} | {head['claim']} | {head['value']:+.3f} "
                    f"[{head['ci_low']:+.3f}, {head['ci_high']:+.3f}]{measure} | {verdicts} |")
    total = snapshot.get("seconds")
    lead = (f"Run `{snapshot['run']}` of {str(snapshot.get('started', ''))[:10]}, "
            f"{len(snapshot['notebooks'])} notebooks in {total / 60:.1f} minutes:\n\n" if total else "")
    return lead + "\n".join(rows)


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of the generated block ``name``."""
    return (f"<!-- {name}: written by scripts/quick_results.py, do not edit by hand -->",
            f"<!-- end of {name} -->")


def replace_block(text: str, block: str, name: str) -> str:
    """``text`` with the part between the markers of block ``name`` replaced by ``block``."""
    begin, end = markers(name)
    if begin not in text or end not in text:
        raise ValueError(f"no block between {begin!r} and {end!r}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"
