"""Rules between notebooks of one run folder, checked from their parameter files before anything runs.

Notebook 03 trains on datasets that notebook 02 writes into the same run folder (``data.path`` and
``post_training.data_path`` name ``DATA_DIR/<name>``). From 02's parameters alone (before 02 has run) the
dataset's sequence length, action count and state range are known, so the rules the training would apply when it
opens the dataset are applied here: ``data.seq_len`` at most the dataset's ``seq_len``, ``model.na`` equal to its
``na``, ``model.ns_max`` at least its largest ``ns``, and the dataset named at all. A path outside 02's
``data_dir`` (an absolute path, a dataset made elsewhere) is not checked here; the training checks it when it opens
it.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any


def _dataset_name(path: str | None, data_dir: str) -> str | None:
    """The dataset name of ``path`` when it lies directly in 02's ``data_dir`` (both relative to the run folder)."""
    if not path:
        return None
    p, root = PurePosixPath(str(path)), PurePosixPath(str(data_dir))
    if p.is_absolute() or root.is_absolute() or p.parent != root:
        return None
    return p.name


def training_against_synthesis(synthesis: Any, training: Any) -> list[str]:
    """Problems of notebook 03's configuration ``training`` against notebook 02's ``synthesis`` (one line each)."""
    problems = []
    post = getattr(training, "post_training", None)
    uses = [("data.path", training.data.path, training.data.seq_len)]
    if post is not None and getattr(post, "data_path", None):
        uses.append(("post_training.data_path", post.data_path, getattr(post, "seq_len", None)))
    for key, path, seq_len in uses:
        name = _dataset_name(path, synthesis.data_dir)
        if name is None:
            continue
        ds = synthesis.datasets.get(name)
        if ds is None:
            problems.append(f"{key}: {path} is not a dataset of notebook 02 (it writes "
                            f"{', '.join(f'{synthesis.data_dir}/{n}' for n in synthesis.datasets) or 'none'})")
            continue
        seq_key = "data.seq_len" if key == "data.path" else "post_training.seq_len"
        if seq_len is not None and seq_len > ds.seq_len:
            problems.append(f"{seq_key}: {seq_len} is longer than the sequences of notebook 02's {name} "
                            f"(seq_len {ds.seq_len})")
        if ds.na != training.model.na:
            problems.append(f"model.na: {training.model.na}, but notebook 02's {name} has na {ds.na}")
        ns = max(ds.ns, ds.ns_max or 0)
        if ns > training.model.ns_max:
            problems.append(f"model.ns_max: {training.model.ns_max}, but notebook 02's {name} has tasks with up to "
                            f"{ns} states (ns {ds.ns}{f'..{ds.ns_max}' if ds.ns_max else ''})")
    return problems


RULES = {("02", "03"): training_against_synthesis}
"""(earlier notebook number, later notebook number) -> rule(earlier config, later config) -> problems."""


def cross_notebook_problems(configs: dict[str, Any], selected: set[str] | None = None) -> list[str]:
    """Problems between the notebooks of ``configs`` (stem -> loaded configuration), as ``notebook NN: ...``; with
    ``selected`` (stems), only the rules of a selected later notebook (a rule is a problem of the notebook that
    relies on the earlier one: running 02 alone with other datasets is not refused for 03's file)."""
    by_number = {stem.split("_")[0]: (stem, cfg) for stem, cfg in configs.items()}
    problems = []
    for (first, second), rule in RULES.items():
        if first in by_number and second in by_number:
            if selected is not None and by_number[second][0] not in selected:
                continue
            (stem_a, a), (stem_b, b) = by_number[first], by_number[second]
            problems += [f"notebook {stem_b} against {stem_a}: {p}" for p in rule(a, b)]
    return problems
