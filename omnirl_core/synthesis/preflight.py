"""Refuse a synthesis that cannot fit, before any work: a dataset whose known size exceeds the free disk of its
folder, or more worker processes than the machine has cores by far (16 workers on 2 cores run each at an eighth
of its speed and multiply the memory). One line with the numbers; ``force`` (``--force``, ``force: true``) starts
anyway.

:func:`dataset_bytes` is the one account of a dataset's size on disk (notebook 02's projection uses it too).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .config import DatasetConfig
from .format import LEARNER_PARAMS, SynthesisError, _dtype_obs

WORKERS_PER_CORE = 2
"""More workers than this many per core are refused (without ``force``)."""


def step_bytes(cfg: DatasetConfig) -> int:
    """Bytes one step takes: obs (uint8, uint16 above 256 ids), tag, action, label, behaviour (uint8), reward
    (float32)."""
    return int(_dtype_obs(cfg).itemsize) + 4 * 1 + 4


def dataset_bytes(cfg: DatasetConfig, n_sequences: int | None = None) -> int:
    """Bytes on disk of ``n_sequences`` (default all) sequences of ``cfg``: the step arrays and the per-sequence
    ones (learner parameters float64, ns uint16, na uint8, task seed uint64, task index uint32); the files'
    headers and shard metadata aside."""
    n = cfg.n_sequences if n_sequences is None else int(n_sequences)
    per_sequence = 8 * len(LEARNER_PARAMS) + 2 + 1 + 8 + 4
    return n * (cfg.seq_len * step_bytes(cfg) + per_sequence)


def check_fits(cfg: DatasetConfig, root: str | os.PathLike, n_sequences: int, workers: int, *,
               force: bool = False, cores: int | None = None) -> None:
    """Raise :class:`~.format.SynthesisError` when ``n_sequences`` more sequences of ``cfg`` need more than the
    free space of the disk holding ``root``, or when ``workers`` exceed :data:`WORKERS_PER_CORE` per core of this
    machine; nothing with ``force`` or nothing to write."""
    if force or n_sequences <= 0:
        return
    need = dataset_bytes(cfg, n_sequences)
    free = shutil.disk_usage(Path(root)).free
    if need > free:
        raise SynthesisError(f"{root}: the {n_sequences:,} sequences still to write need {need / 1e9:,.1f} GB and the "
                             f"disk has {free / 1e9:,.1f} GB free; free space, write elsewhere (data_dir, --out) or "
                             "start anyway with force: true (--force)")
    cores = cores or os.cpu_count() or 1
    if workers > WORKERS_PER_CORE * cores:
        raise SynthesisError(f"{root}: workers {workers} on a machine with {cores} cores (each worker would get "
                             f"{cores / workers:.2f} of one); set workers to at most {cores} (--workers, --set "
                             "workers=...) or start anyway with force: true (--force)")
