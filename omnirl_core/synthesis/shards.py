"""Which tasks each shard holds: shard sizes, task seeds (a pure function of the dataset config, its seed and the
shard index), and the tasks themselves, rebuilt on demand.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..workbook.config import config_to_dict
from ..world.anymdp import sample_anymdp, sample_anymdp_batch
from ..world.garnet import sample_garnet
from ..world.task import Task
from .config import DatasetConfig


def _data_identity(cfg: DatasetConfig) -> dict:
    """The configuration a dataset's manifest records and a later synthesis into its folder must match. ``tags``
    appears only when false, so the datasets written before the field existed keep their identity, and a tagless
    dataset never matches a tagged one."""
    ident = config_to_dict(cfg)
    if ident["tags"]:
        del ident["tags"]
    return ident


def shard_plan(cfg: DatasetConfig) -> list[int]:
    """Number of sequences of each shard."""
    n, per = cfg.n_sequences, cfg.sequences_per_shard
    return [min(per, n - k * per) for k in range((n + per - 1) // per)]


def _derive_int(*key: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, np.uint32)[0])


_POOL_KEY = 0x9E3779B1  # separates pool task seeds from shard seeds


def dataset_tasks(cfg: DatasetConfig, k: int) -> tuple[int, np.ndarray, np.ndarray, np.random.SeedSequence]:
    """(ns, task seeds [n], task indices [n], SeedSequence for the simulation) of shard ``k``.

    AnyMDP tasks of a shard are drawn together by ``sample_anymdp_batch(n, ns, na, seed)`` (every sequence
    stores that seed and its index in the draw); Garnet tasks and pool members have a seed each (index 0 and
    the pool index).
    """
    n = shard_plan(cfg)[k]
    root = np.random.SeedSequence([cfg.seed, k])
    task_ss, sim_ss = root.spawn(2)
    trng = np.random.default_rng(task_ss)
    ns = cfg.ns if cfg.ns_max is None else int(trng.integers(cfg.ns, cfg.ns_max + 1))
    if cfg.task_pool is not None:
        idx = trng.integers(0, cfg.task_pool, size=n).astype(np.uint32)
        seeds = np.array([_derive_int(cfg.seed, _POOL_KEY, int(i)) for i in idx], dtype=np.uint64)
    elif cfg.task_source == "garnet":
        seeds = trng.integers(0, 2**32, size=n, dtype=np.uint64)
        idx = np.zeros(n, dtype=np.uint32)
    else:
        seeds = np.full(n, trng.integers(0, 2**32, dtype=np.uint64), dtype=np.uint64)
        idx = np.arange(n, dtype=np.uint32)
    return ns, seeds, idx, sim_ss


def task_for(cfg: DatasetConfig, ns: int, task_seed: int) -> Task:
    """A task drawn on its own from ``task_seed`` (Garnet tasks and pool members)."""
    if cfg.task_source == "garnet":
        return sample_garnet(ns, cfg.na, cfg.garnet_branching, seed=int(task_seed))
    return sample_anymdp(ns, cfg.na, seed=int(task_seed))


_IDS_KEY = 0x1D5  # separates the observation-id draws from the task draws


def shard_tasks(cfg: DatasetConfig, k: int) -> list[Task]:
    """The tasks of the sequences of shard ``k``, in order (rebuilt from the config, seed and k).

    With ``ns_max`` set, every task shows its states under observation ids drawn as a
    random subset of ``0 .. ns_max - 1`` (one draw per sequence, from ``(seed, k)``): a model never learns that a
    small task uses small ids. Otherwise the ids are the sampler's permutation of ``0 .. ns - 1``."""
    ns, seeds, _, _ = dataset_tasks(cfg, k)
    if cfg.task_pool is None and cfg.task_source == "anymdp":
        tasks = sample_anymdp_batch(seeds.size, ns, cfg.na, seed=int(seeds[0])) if seeds.size else []
    else:
        cache: dict[int, Task] = {}
        for s in dict.fromkeys(seeds.tolist()):
            cache[s] = task_for(cfg, ns, s)
        tasks = [cache[s] for s in seeds.tolist()]
    if cfg.ns_max is not None:
        rng = np.random.default_rng([cfg.seed, k, _IDS_KEY])
        tasks = [_spread_ids(t, cfg.ns_max, rng) for t in tasks]
    return tasks


def _spread_ids(task: Task, n_obs: int, rng: np.random.Generator) -> Task:
    """``task`` with its observation ids mapped into a random subset of ``range(n_obs)`` (ns distinct ids)."""
    ids = rng.choice(n_obs, size=task.ns, replace=False)
    return dataclasses.replace(task, state_mapping=ids[task.state_mapping], n_obs=n_obs)


# ---------------------------------------------------------------------------------------------- the batch loop
