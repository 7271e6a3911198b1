"""A variant trained under several seeds, read as one row: a mean with a 95% interval over seeds and test tasks.

Seed ``s`` of a variant adds ``s`` to its training seed (initialisation, batch order) and, by default, to its
dataset seed (other synthetic tasks and behaviour: the data's variance belongs to the variant's result as much as
the initialisation's). Seed 0 is the variant itself, so a one-seed study is exactly the single run it always was.

Every seed is tested on the same unseen tasks (the study's suite), so seeds and tasks are *crossed* factors, not
nested ones: a score is ``y[seed, task]``. The interval of :func:`pool_seeds` is a percentile bootstrap that
resamples both factors, seeds with replacement and one draw of task indices shared by all drawn seeds
(:func:`crossed_bootstrap`). Its variance is, for a full table (the closed form the tests check against),

    sum_s a_s^2 / S^2  +  sum_t b_t^2 / T^2  +  sum_st e_st^2 / (S T)^2,

with ``a`` the seed effects, ``b`` the task effects and ``e`` the residuals of the two-way decomposition, so it
carries both the spread between training runs and the sampling of test tasks. Resampling tasks independently
within each seed would count the same 32 tasks as S x 32 independent ones (the task part shrinks by S), and a
t-interval over per-seed means would leave out the task sampling entirely (every seed sees the same tasks) and,
at 3 seeds, multiply by t(0.975, 2) = 4.30. With few seeds the bootstrap understates the seed part (its
``sum a^2 / S`` is the biased variance: a factor (S - 1) / S, 2/3 at three seeds), which is why every row also
lists the per-seed values. One seed keeps the run's own t-interval over tasks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..evaluation.incontext import adaptation

__all__ = ["seeded_configs", "crossed_bootstrap", "pool_seeds", "pool_suites", "N_BOOT"]

N_BOOT = 4000  # bootstrap replicates: the interval's ends vary by about 1.5% of its width between bootstrap seeds


def seeded_configs(dataset, training, seed: int, vary_dataset: bool = True):
    """Copies of a variant's dataset and training configurations for its seed ``seed`` (0: unchanged)."""
    if seed == 0:
        return dataset, training
    training = dataclasses.replace(training, seed=training.seed + seed)
    if vary_dataset:
        dataset = dataclasses.replace(dataset, seed=dataset.seed + seed)
    return dataset, training


def _weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] counts of each index in a resample of n with replacement."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def crossed_bootstrap(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0,
                      weights: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """[n_boot] means of ``values`` [S seeds, T tasks] (NaN = no score) under resamples of seeds and tasks.

    Every replicate draws S seeds and T tasks with replacement and averages the scored cells of the drawn rows and
    columns (a cell drawn twice counts twice). ``weights``: the (seed, task) draws to use, to resample several
    statistics of one table alike."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    w, v = weights if weights is not None else (_weights(values.shape[0], n_boot, rng),
                                               _weights(values.shape[1], n_boot, rng))
    scored = np.isfinite(values)
    total = np.einsum("bs,st,bt->b", w, np.where(scored, values, 0.0), v)
    count = np.einsum("bs,st,bt->b", w, scored.astype(float), v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan)


def _interval(values: np.ndarray, weights) -> list[float]:
    reps = crossed_bootstrap(values, weights=weights)
    lo, hi = np.nanpercentile(reps, [2.5, 97.5])
    return [float(np.nanmean(values)), float(lo), float(hi)]


def pool_seeds(gains: Sequence[dict], seeds: Sequence[int] | None = None, n_boot: int = N_BOOT,
               seed: int = 0) -> dict[str, Any]:
    """One summary of a variant's online runs under several training seeds (each an
    :func:`~omnirl_core.evaluation.incontext.online_gain` summary with its ``per_task`` scores, tested on the
    same tasks): ``q1``.. ``qK`` and ``gain`` as [mean, 95% low, 95% high] over seeds and tasks
    (:func:`crossed_bootstrap`), ``mean``, ``n_seeds``, ``seeds`` and ``per_seed`` (each seed's own Q4, gain and
    mean). A single summary is returned as it is (its interval over tasks), with the same extra fields."""
    seeds = list(range(len(gains))) if seeds is None else list(seeds)
    per_seed = {"q4": [g[_last(g)][0] for g in gains], "gain": [g["gain"][0] for g in gains],
                "mean": [g["mean"] for g in gains]}
    if len(gains) == 1:
        return {**gains[0], "n_seeds": 1, "seeds": seeds, "per_seed": per_seed, "interval": "t over tasks"}
    missing = [s for s, g in zip(seeds, gains) if "per_task" not in g]
    if missing:
        raise ValueError(f"seed(s) {missing} have no per-task scores (measured by older code): delete their "
                         "gain.json to measure them again")
    table = np.array([g["per_task"] for g in gains], dtype=float)  # [S, T, K]
    if len({t.shape for t in table}) != 1 or table.ndim != 3:
        raise ValueError(f"the seeds were tested on different task counts: {[len(g['per_task']) for g in gains]}")
    table[~np.isfinite(table).all(axis=2)] = np.nan  # a run without an episode in some quarter drops out whole
    rng = np.random.default_rng(seed)
    weights = (_weights(table.shape[0], n_boot, rng), _weights(table.shape[1], n_boot, rng))
    out: dict[str, Any] = {f"q{k + 1}": _interval(table[:, :, k], weights) for k in range(table.shape[2])}
    out["early"], out["late"] = out["q1"], out[f"q{table.shape[2]}"]
    out["gain"] = _interval(table[:, :, -1] - table[:, :, 0], weights)
    if "edges" in gains[0]:
        out["edges"] = gains[0]["edges"]
    k, first = adaptation([out[f"q{i + 1}"][0] for i in range(table.shape[2])], out.get("edges"))
    out.update(best_gain=_interval(table[:, :, k] - table[:, :, 0], weights), best_bin=k + 1, steps_99=first)
    scored = np.isfinite(table[:, :, 0])
    out.update({"mean": float(np.nanmean(table)), "n_tasks": int(scored.any(axis=0).sum()),
                "n_dropped": int((~scored).sum()), "steps": gains[0].get("steps"), "n_seeds": len(gains),
                "seeds": seeds, "per_seed": per_seed, "interval": "bootstrap over seeds and tasks"})
    return out


def _last(gain: dict) -> str:
    return max((k for k in gain if k[0] == "q" and k[1:].isdigit()), key=lambda k: int(k[1:]))


def pool_suites(per_seed: Sequence[dict[str, dict]], seeds: Sequence[int]) -> dict[str, dict]:
    """The further-suite results of a variant's seeds (each suite -> ``{"gain": ...}`` or ``{"skipped": why}``),
    pooled per suite over the seeds that scored it; skipped when the first seed skipped it."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(n for suites in per_seed for n in suites):
        results = [(s, suites[name]) for s, suites in zip(seeds, per_seed) if name in suites]
        scored = [(s, r["gain"]) for s, r in results if "gain" in r]
        if "skipped" in results[0][1] or not scored:
            out[name] = results[0][1]
        else:
            out[name] = {"gain": pool_seeds([g for _, g in scored], [s for s, _ in scored])}
    return out
