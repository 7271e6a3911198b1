"""Summary statistics of tasks, for comparing samplers in distribution.

Definitions follow the reference statistics shipped in ``omnirl_core/data/reference_anymdp_stats.json``
(tasks drawn by Xenoverse 0.1.14.0); ``EXTRA_STATISTICS`` adds structure-sensitive ones (self-loops,
forward mass, band span, value ordering) and ``SCALE_STATISTICS`` reward-scale-sensitive ones (relative
noise, the value margin the terminal adjustment enforces), measured the same way on both samplers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from importlib import resources

import numpy as np

from .oracle import ORACLE_GAMMA, TaskArrays, policy_iteration, policy_return, uniform_policy
from .task import Task

__all__ = [
    "REFERENCE_STATISTICS",
    "EXTRA_STATISTICS",
    "SCALE_STATISTICS",
    "DISTRIBUTION_LEVELS",
    "task_statistics",
    "reward_scale_statistics",
    "summarise",
    "load_reference_statistics",
]

REFERENCE_STATISTICS = (
    "n_terminal",
    "goal",
    "max_steps",
    "succ_per_sa",
    "n_start",
    "r_sa_mean",
    "r_sa_std",
    "noise_mean",
    "ret_oracle",
    "ret_random",
)
EXTRA_STATISTICS = ("self_loop", "forward_mass", "span", "value_rank_corr")
SCALE_STATISTICS = ("noise_ratio", "top_margin")
DISTRIBUTION_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)  # quantiles kept for distribution tests
MARGIN_GAMMA = 0.99  # discount of the AnyMDP terminal adjustment, whose value margin top_margin measures


def _rank_corr(x: np.ndarray) -> float:
    """Spearman correlation of x with its index order (ties broken by position)."""
    if x.size < 2:
        return float("nan")
    ranks = np.empty(x.size)
    ranks[np.argsort(x, kind="stable")] = np.arange(x.size)
    return float(np.corrcoef(ranks, np.arange(x.size))[0, 1])


def task_statistics(task: Task) -> dict[str, float]:
    """Per-task statistics (see module docstring).

    Returns use the reference's horizon convention, floor(max_steps) steps; bandits use the best and the
    mean arm.
    """
    P, R = task.transition, task.reward
    ns = task.ns
    live = ~task.terminal
    r_sa = task.expected_reward[live]  # [n_live, na]
    Pl = P[live]  # [n_live, na, ns]
    out = {
        "n_terminal": float(task.terminal.sum()),
        "goal": float(ns > 1 and task.terminal[-1]),
        "max_steps": task.max_steps,
        "succ_per_sa": float((Pl > 1e-12).sum(-1).mean()),
        "n_start": float((task.start_prob > 0).sum()),
        "r_sa_mean": float(r_sa.mean()),
        "r_sa_std": float(r_sa.std()),
        "noise_mean": float(task.reward_noise.mean()),
    }
    if task.is_bandit:
        out["ret_oracle"] = float(R.max())
        out["ret_random"] = float(R.mean())
        out.update(self_loop=1.0, forward_mass=0.0, span=0.0, value_rank_corr=float("nan"))
        return out
    H = int(task.max_steps)
    Q, V = policy_iteration(task, ORACLE_GAMMA)
    out["ret_oracle"] = float(policy_return(task, Q.argmax(-1), horizon=H))
    out["ret_random"] = float(policy_return(task, uniform_policy(ns, task.na), horizon=H))
    states = np.flatnonzero(live)
    j = np.arange(ns)
    out["self_loop"] = float(Pl[np.arange(states.size), :, states].mean())
    out["forward_mass"] = float((Pl * (j[None, None, :] > states[:, None, None])).sum(-1).mean())
    support = Pl > 1e-12
    first = support.argmax(-1)
    last = ns - 1 - support[..., ::-1].argmax(-1)
    out["span"] = float((last - first + 1).mean() / ns)
    out["value_rank_corr"] = _rank_corr(V[live])
    return out


def reward_scale_statistics(task: Task) -> dict[str, float]:
    """Statistics that move with the scale of the rewards or of their noise.

    noise_ratio: mean noise std over mean |E[r|s,a]| of the live states (for a bandit, exactly its noise
    scale). top_margin (not for bandits): value at gamma 0.99 of the top live state of the hidden ranking
    (the one below the goal when there is a goal) minus the best start state's value; the sampler's
    terminal adjustment makes it at least U(2, 5) in reward units, so its lower quantiles pin the reward
    scale.
    """
    live = ~task.terminal
    out = {"noise_ratio": float(task.reward_noise.mean() / max(np.abs(task.expected_reward[live]).mean(), 1e-12))}
    if task.is_bandit:
        return out
    _, V = policy_iteration(TaskArrays(task.transition, task.reward, terminal=task.terminal), MARGIN_GAMMA)
    top = task.ns - 2 if task.terminal[-1] else task.ns - 1
    out["top_margin"] = float(V[top] - V[task.start_prob > 0].max())
    return out


def summarise(
    rows: Iterable[dict[str, float]], levels: Sequence[float] = (0.1, 0.9)
) -> dict[str, dict[str, float]]:
    """Mean, std, kurtosis (fourth central moment over std^4; 3 when std is 0) and the quantiles at
    ``levels`` (keys q10, q90, q05, ...) of each statistic across tasks, and the count."""
    rows = list(rows)
    out: dict[str, dict[str, float]] = {}
    for key in rows[0]:
        x = np.array([r[key] for r in rows], dtype=float)
        x = x[np.isfinite(x)]
        if x.size == 0:
            continue
        std = float(x.std())
        out[key] = {
            "mean": float(x.mean()),
            "std": std,
            "kurtosis": float(((x - x.mean()) ** 4).mean() / std**4) if std > 0 else 3.0,
            **{f"q{round(100 * p):02d}": float(np.quantile(x, p)) for p in levels},
            "n": int(x.size),
        }
    return out


def load_reference_statistics(name: str = "reference_anymdp_stats.json") -> dict:
    """Reference statistics shipped with the package (see its "provenance" key)."""
    return json.loads(resources.files("omnirl_core.world.data").joinpath(name).read_text())
