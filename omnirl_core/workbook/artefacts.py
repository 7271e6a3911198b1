"""What a notebook takes from the notebooks before it in the same run folder.

Within a run folder (``outputs/<run>/``) each notebook consumes what the earlier ones wrote: notebook 03 trains on
a dataset of notebook 02 (``data/<name>``), notebooks 04 and 05 evaluate the checkpoint of notebook 03
(``03_training/run/model.safetensors``). Parameter files name those inputs by paths relative to the run folder;
:func:`run_artefact` finds them, and a missing one stops the cell with a message naming the notebook to run first.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .config import repo_path, repo_root


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
    missing = f"is not in the run folder {_shown(run_dir)}" if not given.is_absolute() else "does not exist"
    raise MissingArtefact(f"{key}: {path} {missing}; notebook {made_by} writes it. {how_to_run(run_dir, made_by)}, "
                          f"or set {key} to an existing path")


def how_to_run(run_dir: str | os.PathLike, stem: str) -> str:
    """How to run notebook ``stem`` (e.g. ``"02_synthesis"``) into the run folder ``run_dir``: open it in Jupyter
    with that ``run_dir``, or the command line that runs it alone into that folder (the parameter folder of the
    run, as the run folder's saved configurations name it, else ``params/<run name>``)."""
    run = Path(run_dir).expanduser()
    run_abs = repo_path(run).resolve()
    notebook = f"notebooks/{stem}.py"
    params = _params_dir_of(run_abs)
    number = stem.split("_")[0]
    outputs = repo_root() / "outputs"
    if params == "params/quick" and run_abs.parent == outputs:  # the script runs params/quick into outputs/
        command = f"bash scripts/run_workbook.sh --only {number} --run-name {run_abs.name}"
    else:
        command = f".venv/bin/python -m omnirl_core.workbook run {params} --only {number} --run-name {run_abs.name}"
        if run_abs.parent != outputs:
            command += f" --output-root {_shown(run_abs.parent)}"
    return f"Open {notebook} and run it with run_dir = '{_shown(run_abs)}', or run: {command}"


def _shown(path: str | os.PathLike) -> str:
    """A path relative to the repository when it lies inside it, else absolute."""
    p = repo_path(Path(path).expanduser()).resolve()
    try:
        return str(p.relative_to(repo_root().resolve()))
    except ValueError:
        return str(p)


_RAN_WITH = re.compile(r"^# Parameters notebook \S+ ran with: (.+?\.ya?ml)\b")


def _params_dir_of(run_dir: Path) -> str:
    """The parameter folder the run folder's notebooks ran with (their saved ``NN_name.config.yaml`` headers
    name the parameter file), else ``params/<run name>`` when it exists, else ``PARAMS_DIR``."""
    for saved in sorted(run_dir.glob("*.config.yaml")):
        try:
            with saved.open(encoding="utf-8") as fh:
                match = _RAN_WITH.match(fh.readline())
        except (OSError, UnicodeDecodeError):
            continue
        if match:
            return _shown(Path(match.group(1)).parent)
    if (repo_root() / "params" / run_dir.name).is_dir():
        return f"params/{run_dir.name}"
    return "PARAMS_DIR"
