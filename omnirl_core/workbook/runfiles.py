"""The files the workbook runner writes into a run folder, each written whole or not at all.

- The executed notebook: papermill writes it to a temporary file beside it (``.NN_name.ipynb.PID.tmp``), which
  replaces ``NN_name.ipynb`` when the notebook ends, ok or failed (:func:`finish_notebook`). Until then the
  folder holds the previous run's notebook, and a write that fails (a full disk) leaves it as it was.
- The run record ``workbook_run.json`` (:func:`write_record`): per notebook its last execution. A run of some
  notebooks (``--only``) replaces their records and keeps the others'.

A write that fails raises an ``OSError`` naming the file being written (:func:`named`), never a temporary file,
and removes its temporary file.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .atomic import named, temporary_path, write_text_atomic  # noqa: F401 - the runner uses them here
from .errors import _STORAGE_ERRNOS

SUMMARY_FILE = "workbook_run.json"


def is_storage_error(exc: BaseException) -> bool:
    """A write the machine refused (full disk, quota, read-only folder, no permission)."""
    return isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS


def finish_notebook(tmp: Path, output: Path, notebook: Path, root: Path) -> None:
    """Move the notebook papermill wrote to ``tmp`` to ``output``, recording the source notebook's path (relative
    to ``root`` when below it) and ``output`` in its metadata. A file papermill could not write whole (unreadable)
    is removed and ``output`` stays as it was."""
    import nbformat

    if not tmp.exists():
        return
    try:
        nb = nbformat.read(tmp, as_version=4)
    except Exception:  # half written: nothing of it is worth keeping over the previous notebook
        tmp.unlink(missing_ok=True)
        return
    meta = nb.metadata.get("papermill")
    if meta is not None:  # papermill recorded the whole input node (given one) and the temporary file's name
        try:
            meta["input_path"] = str(notebook.relative_to(root))
        except ValueError:
            meta["input_path"] = str(notebook)
        meta["output_path"] = str(output)
    write_text_atomic(output, nbformat.writes(nb) + "\n")
    tmp.unlink(missing_ok=True)


def read_record(run_dir: Path) -> dict[str, Any]:
    """The run record of ``run_dir`` (empty when there is none or it is not a record)."""
    try:
        data = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(run_dir: Path, params_dir: str | os.PathLike, kernel: str, started: _dt.datetime,
                 results: Sequence[Any]) -> None:
    """Write ``workbook_run.json``: the records of the notebooks this run executed (ok or failed) replace earlier
    ones; the other notebooks keep theirs (a notebook selected but not reached gets "not run" when it has none).
    ``started`` is the earliest start of the notebooks recorded, ``seconds`` the sum of their times."""
    old = read_record(run_dir)
    stamp = started.isoformat(timespec="seconds")
    records = {nb["stem"]: {"started": old.get("started"), **nb} for nb in old.get("notebooks", [])
               if isinstance(nb, dict) and isinstance(nb.get("stem"), str)}
    for r in results:
        if r.status == "not run" and r.stem in records:
            continue
        records[r.stem] = {**dataclasses.asdict(r), "output": str(r.output) if r.output else None,
                           "seconds": round(r.seconds, 3), "started": stamp,
                           "params_dir": str(Path(params_dir).resolve()), "kernel": kernel}
    notebooks = [records[stem] for stem in sorted(records)]
    starts = [nb["started"] for nb in notebooks if isinstance(nb.get("started"), str)]
    data = {
        "params_dir": str(Path(params_dir).resolve()),
        "kernel": kernel,
        "started": min(starts, default=stamp),
        "seconds": round(sum(float(nb.get("seconds") or 0.0) for nb in notebooks), 3),
        "notebooks": notebooks,
    }
    write_text_atomic(run_dir / SUMMARY_FILE, json.dumps(data, indent=2) + "\n")
