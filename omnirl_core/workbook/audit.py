"""Read an executed notebook as its reader would, and list what is wrong with its face.

:func:`audit_notebook` checks one executed ``NN_name.ipynb`` of a run folder:

1. every image output was shown by :func:`~omnirl_core.workbook.figures.show_figure` (it carries the
   ``omnirl_figure`` metadata); any other image is a figure matplotlib drew on its own, a figure shown twice;
2. no figure file is shown twice;
3. every cell that draws (it calls ``show_figure``, ``plt.show`` or ``savefig``) shows an image, or says why not
   (:func:`~omnirl_core.workbook.figures.no_figure`); otherwise its figure is hidden;
4. no cell's result is a bare integer (the return value of ``write_text`` and the like);
5. no cell ended in an error;
6. ``NN_name/claims.json`` exists and holds claims whose verdicts follow from their numbers and rules
   (:func:`~omnirl_core.workbook.claims.decide`), and the notebook shows the table of them.

``python -m omnirl_core.workbook audit RUN_DIR`` audits every notebook of a run folder (exit 1 on a problem);
the workbook runner audits each notebook after it ran.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from .claims import CLAIMS_FILE, HEADING, VERDICTS, decide
from .figures import FIGURE_KEY, NO_FIGURE

DRAWS = re.compile(r"^(?!\s*#).*\b(show_figure\(|plt\.show\(|\.savefig\()", re.M)
BARE_INT = re.compile(r"^-?\d+$")
CLAIM_KEYS = ("claim", "value", "ci_low", "ci_high", "verdict", "rule")


def _text(out: dict) -> str:
    if out.get("output_type") == "stream":
        t = out.get("text", "")
    else:
        t = out.get("data", {}).get("text/plain", "")
    return "".join(t) if isinstance(t, list) else t


def _source(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def audit_notebook(path: str | os.PathLike, *, claims: bool = True) -> list[str]:
    """Problems of the executed notebook at ``path`` (empty when it reads right); ``claims``: also require its
    ``claims.json`` in the folder named after it beside it."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems: list[str] = []
    shown: dict[str, int] = {}
    shows_heading = False
    number = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        number += 1
        where = f"{path.name}, code cell {number}"
        outputs = cell.get("outputs", [])
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        for o in images:
            name = o.get("metadata", {}).get(FIGURE_KEY)
            if name is None:
                problems.append(f"{where}: an image not shown by show_figure (a figure left open and drawn again "
                                "by matplotlib, or a stray plot)")
            elif name in shown:
                problems.append(f"{where}: figure {name} shown again (first in code cell {shown[name]})")
            else:
                shown[name] = number
        text = "\n".join(_text(o) for o in outputs)
        if DRAWS.search(_source(cell)) and not images and NO_FIGURE not in text:
            problems.append(f"{where}: draws a figure but shows no image (hidden figure) and does not say why")
        for o in outputs:
            if o.get("output_type") == "execute_result" and BARE_INT.match(_text(o).strip()):
                problems.append(f"{where}: a bare value {_text(o).strip()} printed as the cell's result")
            if o.get("output_type") == "error":
                problems.append(f"{where}: ended in {o.get('ename')}: {o.get('evalue')}")
        if HEADING in text or any(HEADING in str(o.get("data", {}).get("text/markdown", "")) for o in outputs):
            shows_heading = True
    if claims:
        problems += _audit_claims(path.parent / path.stem / CLAIMS_FILE, shows_heading)
    return problems


def _audit_claims(file: Path, shown: bool) -> list[str]:
    if not file.is_file():
        return [f"{file}: missing (the notebook's claims and verdicts)"]
    try:
        items = json.loads(file.read_text())
    except ValueError as exc:
        return [f"{file}: not JSON ({exc})"]
    if not isinstance(items, list) or not items:
        return [f"{file}: must be a non-empty list of claims"]
    problems = []
    for i, c in enumerate(items):
        missing = [k for k in CLAIM_KEYS if not isinstance(c, dict) or k not in c]
        if missing:
            problems.append(f"{file}: claim {i} lacks {', '.join(missing)}")
            continue
        if c["verdict"] not in VERDICTS:
            problems.append(f"{file}: claim {i} ({c['claim']}): verdict {c['verdict']!r} is not one of "
                            f"{', '.join(VERDICTS)}")
            continue
        low, high = (float("nan") if c[k] is None else float(c[k]) for k in ("ci_low", "ci_high"))
        try:
            expected = decide(c["rule"], low, high)
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(f"{file}: claim {i} ({c['claim']}): bad rule {c['rule']!r} ({exc})")
            continue
        if expected != c["verdict"]:
            problems.append(f"{file}: claim {i} ({c['claim']}): verdict {c['verdict']!r}, but its interval "
                            f"[{low}, {high}] and rule give {expected!r}")
        if c["value"] is not None and math.isfinite(low) and math.isfinite(high) \
                and not (low - 1e-9 <= float(c["value"]) <= high + 1e-9):
            problems.append(f"{file}: claim {i} ({c['claim']}): value {c['value']} outside its interval")
    if not shown:
        problems.append(f"{file.parent.name}: the notebook does not show its '{HEADING}' table")
    return problems


def audit_run(run_dir: str | os.PathLike) -> dict[str, list[str]]:
    """:func:`audit_notebook` of every ``NN_name.ipynb`` in ``run_dir``."""
    return {p.name: audit_notebook(p) for p in sorted(Path(run_dir).glob("[0-9][0-9]_*.ipynb"))}
