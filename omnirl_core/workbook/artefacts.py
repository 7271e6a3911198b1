"""What a notebook takes from the notebooks before it in the same run folder.

Within a run folder (``outputs/<run>/``) each notebook consumes what the earlier ones wrote: notebook 03 trains on
a dataset of notebook 02 (``data/<name>``), notebooks 04 and 05 evaluate the checkpoint of notebook 03
(``03_training/run/model.safetensors``). Parameter files name those inputs by paths relative to the run folder;
:func:`run_artefact` finds them, and a missing one stops the cell with a message naming the notebook to run first.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import repo_path


class MissingArtefact(FileNotFoundError):
    """An input that an earlier notebook of the run should have written is not there."""

    def _render_traceback_(self) -> list[str]:
        # IPython (a notebook cell, papermill's report) shows the message alone: it says what to run first.
        return [f"{type(self).__name__}: {self}"]


def run_artefact(run_dir: str | os.PathLike, path: str | os.PathLike, *, key: str, made_by: str) -> Path:
    """The absolute path of ``path``: relative to the run folder first, then to the repository (for paths such as
    ``models/...``); absolute paths as given. Raises :class:`MissingArtefact` naming ``key`` and the notebook
    ``made_by`` (e.g. ``"02_synthesis"``) that writes it."""
    given = Path(path).expanduser()
    candidates = [given] if given.is_absolute() else [Path(run_dir).expanduser() / given, repo_path(given)]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    missing = f"is not in the run folder {run_dir}" if not given.is_absolute() else "does not exist"
    raise MissingArtefact(
        f"{key}: {path} {missing}; notebook {made_by} writes it: run it first in the same run folder "
        f"(python -m omnirl_core.workbook run PARAMS_DIR --only {made_by.split('_')[0]} --run-name NAME, or "
        f"papermill with the same -p run_dir), "
        f"or set {key} to an existing path"
    )
