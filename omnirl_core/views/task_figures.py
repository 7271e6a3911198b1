"""Figures (and a Markdown table) of tabular tasks beside the graph: task summaries, the steps of the AnyMDP
sampler (transition matrices, per-action split, reward structure), trajectories, and per-ns comparisons
(statistics against a reference, oracle vs random returns, sampling times). Pure functions returning a
:class:`matplotlib.figure.Figure`, like :mod:`.task_graph`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..world import oracle
from ..world.task import Task
from .task_graph import (
    _GOAL_COLOUR,
    _PIT_COLOUR,
    _POLICY_COLOUR,
    _SELECTED_COLOUR,
    _START_COLOUR,
    _cmap,
    _reward_norm,
    plot_bandit_run,
    terminal_kinds,
)


# ---------------------------------------------------------------------------------------------- summary
def _n_squarings(task: Task) -> int:
    return int(math.floor(math.log2(max(task.max_steps, 1.0)))) + 1


def acceptance_entropy(task: Task) -> float:
    """The normalised entropy that Algorithm 1's acceptance check thresholds: the long-run state distribution of
    the oracle greedy at gamma 2^(-1/ns) (not the labels' 0.994), min over start states."""
    from ..world.anymdp import acceptance_statistics

    return float(acceptance_statistics(task.transition, task.reward, task.start_prob, task.terminal,
                                       task.max_steps)["entropy"])


def plot_task_summary(task: Task, *, gamma: float = oracle.ORACLE_GAMMA, title: str | None = None) -> Figure:
    """Four panels: oracle and random-policy value along the ranking, E[r|s,a], the oracle's
    stationary distribution (restarting after terminals) and the action-averaged transition matrix."""
    ns, na = task.ns, task.na
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axs = fig.subplots(2, 2)
    Q, V = oracle.policy_iteration(task, gamma)
    pol = oracle.greedy_policy(Q)
    V_rand = oracle.policy_value(task, oracle.uniform_policy(ns, na), gamma)
    goal, pit = terminal_kinds(task)
    start = task.start_prob > 0
    x = np.arange(ns)

    ax = axs[0, 0]
    ax.plot(x, V, "-o", ms=3, color="#1f77b4", label="oracle V")
    ax.plot(x, V_rand, "-s", ms=3, color="0.5", label="random-policy V")
    if start.any():
        ax.scatter(x[start], V[start], s=70, facecolors="none", edgecolors=_START_COLOUR, lw=2, label="start", zorder=3)
    if pit.any():
        ax.scatter(x[pit], V[pit], marker="X", s=60, c=_PIT_COLOUR, label="pitfall", zorder=3)
    if goal.any():
        ax.scatter(x[goal], V[goal], marker="*", s=140, c=_GOAL_COLOUR, edgecolors="black", label="goal", zorder=3)
    ax.set_xlabel("inner state (hidden ranking)")
    ax.set_ylabel(f"discounted value (γ={gamma:g})")
    ax.set_title("value along the hidden ranking", fontsize=10)
    ax.legend(fontsize=8)

    ax = axs[0, 1]
    er = task.expected_reward.astype(float).copy()
    er[task.terminal] = np.nan
    norm = _reward_norm(er[np.isfinite(er)])
    cmap = _cmap("RdBu_r").with_extremes(bad="0.55")
    im = ax.imshow(er.T, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest", origin="lower")
    if ns > 1:
        ax.plot(x[~task.terminal], pol[~task.terminal], "k.", ms=4, label="oracle action")
    ax.set_xlabel("inner state (hidden ranking)")
    ax.set_ylabel("action")
    ax.set_yticks(np.arange(na))
    ax.set_title("expected reward E[r | s, a]\n(black dots: the oracle's action; dark grey: terminal states)",
                 fontsize=9)
    fig.colorbar(im, ax=ax, pad=0.01, label="E[r | s, a]")

    ax = axs[1, 0]
    if ns > 1:
        rows = oracle.stationary_distribution(task, pol, _n_squarings(task))
        mix = task.start_prob @ rows
        ent = -np.sum(mix[mix > 0] * np.log(mix[mix > 0])) / math.log(ns)
        ax.bar(x, mix, color="#1f77b4", width=1.0)
        # Two oracles, two numbers: this panel's policy is greedy at `gamma`; the acceptance check scores the
        # policy greedy at gamma 2^(-1/ns) (min over start states), a different policy with another distribution.
        acc = acceptance_entropy(task)
        ax.set_title(f"long-run state distribution of the γ={gamma:g} oracle (restarts after terminals)\n"
                     f"normalised entropy {ent:.2f}; acceptance check (γ={oracle.acceptance_gamma(ns):.3f} "
                     f"oracle, min over starts): {acc:.2f}", fontsize=9)
    else:
        ax.bar([0], [1.0], color="#1f77b4")
        ax.set_title("stationary distribution (single state)", fontsize=10)
    ax.set_xlabel("inner state (hidden ranking)")
    ax.set_ylabel("probability")

    ax = axs[1, 1]
    Pbar = task.transition.mean(axis=1)
    im = ax.imshow(Pbar, cmap="magma_r", interpolation="nearest", aspect="auto", vmin=0.0,
                   vmax=max(float(Pbar.max()), 1e-9))
    ax.set_xlabel("next state s'")
    ax.set_ylabel("state s")
    ax.set_title("average transition  mean_a P(s'|s,a)", fontsize=10)
    fig.colorbar(im, ax=ax, pad=0.01, label="probability")
    fig.suptitle(
        title or f"{task.kind} task: ns={ns}, na={na}, max_steps={task.max_steps:.0f}, "
        f"terminals={int(task.terminal.sum())}", fontsize=11
    )
    return fig


# ---------------------------------------------------------------------------------------------- trajectory
def plot_trajectory(
    states: Sequence[int],
    rewards: Sequence[float],
    task: Task,
    *,
    dones: Sequence[bool] | None = None,
    actions: Sequence[int] | None = None,
    oracle_return: float | None = None,
    random_return: float | None = None,
    title: str | None = None,
    window: int = 20,
) -> Figure:
    """A run of steps: the inner state (hidden ranking) at each step with episode boundaries, the
    cumulative return, and each finished episode's return against the exact oracle/random returns.

    ``states[t]`` is the inner state in which action t was taken, ``rewards[t]`` its reward and
    ``dones[t]`` whether the episode ended after step t. A bandit (every pull is an episode) is drawn by
    :func:`plot_bandit_run` instead: the pulled arm (with ``actions``), the reward with its running mean over
    ``window`` pulls, and the rolling share of the best arm.
    """
    states = np.asarray(states, dtype=int)
    rewards = np.asarray(rewards, dtype=float)
    if states.shape != rewards.shape:
        raise ValueError(f"states and rewards must have the same length, got {states.shape} and {rewards.shape}")
    if task.is_bandit:
        return plot_bandit_run(rewards, task, actions=actions, title=title, window=window)
    T = len(states)
    dones = np.zeros(T, dtype=bool) if dones is None else np.asarray(dones, dtype=bool)
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    ax_s, ax_c, ax_e = fig.subplots(3, 1, height_ratios=[2.2, 1.3, 1.3], sharex=True)
    t = np.arange(T)
    ends = np.flatnonzero(dones)

    ax_s.plot(t, states, "-", color="0.6", lw=0.8)
    ax_s.scatter(t, states, c=rewards, cmap="coolwarm", norm=_reward_norm(rewards), s=10, zorder=3, gid="visits")
    for e in ends[:400]:
        ax_s.axvline(e + 0.5, color="0.3", lw=0.6, ls=":", zorder=1)
    goal, pit = terminal_kinds(task)
    if pit.any():
        for p in np.flatnonzero(pit):
            ax_s.axhline(p, color=_PIT_COLOUR, lw=0.6, alpha=0.5)
    if goal.any():
        ax_s.axhline(task.ns - 1, color=_GOAL_COLOUR, lw=1.2, alpha=0.8)
    ax_s.set_ylim(-0.5, task.ns - 0.5)
    ax_s.set_ylabel("inner state (ranking)")
    ax_s.set_title((title or f"trajectory: {T} steps, {len(ends)} finished episodes")
                   + "\ndot colour: the step's reward (blue low, red high); dotted: episode ends; "
                   "dark red: pitfalls; gold: the goal", fontsize=9)

    ax_c.plot(t, np.cumsum(rewards), color="#1f77b4")
    ax_c.set_ylabel("cumulative return")

    bounds = np.concatenate([[-1], ends])
    ep_ret = [rewards[bounds[i] + 1: bounds[i + 1] + 1].sum() for i in range(len(ends))]
    if ep_ret:
        ax_e.plot(ends, ep_ret, "o-", ms=3, color="#1f77b4", label="episode return (at its last step)")
    if oracle_return is not None:
        ax_e.axhline(oracle_return, color=_POLICY_COLOUR, ls="--", label=f"oracle (exact) {oracle_return:.3g}")
    if random_return is not None:
        ax_e.axhline(random_return, color="0.4", ls=":", label=f"random (exact) {random_return:.3g}")
    if ep_ret or oracle_return is not None or random_return is not None:
        ax_e.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax_e.set_ylabel("episode return")
    ax_e.set_xlabel("step")
    return fig


# ---------------------------------------------------------------------------------------------- statistics
def _mean_std(v) -> tuple[float, float]:
    if isinstance(v, Mapping):
        return float(v["mean"]), float(v.get("std", 0.0))
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v), 0.0
    arr = np.asarray(v, dtype=float)
    return float(arr.mean()), float(arr.std())


def _is_stat_leaf(v) -> bool:
    return not isinstance(v, Mapping) or "mean" in v


def _groups(d: Mapping) -> dict[str, dict]:
    """{group: {stat: value}}: nested dicts keyed by group (e.g. "ns16"), or a flat {stat: value}."""
    if all(_is_stat_leaf(v) for v in d.values()):
        return {"": dict(d)}
    return {k: dict(v) for k, v in d.items() if isinstance(v, Mapping) and not _is_stat_leaf(v)}


STAT_UNITS = {
    "n_terminal": "terminal states", "goal": "share of tasks with a goal", "max_steps": "episode limit (steps)",
    "succ_per_sa": "successors per (s, a)", "n_start": "start states", "r_sa_mean": "mean of E[r|s,a]",
    "r_sa_std": "std of E[r|s,a] over (s, a)", "noise_mean": "mean reward-noise std",
    "ret_oracle": "episode return", "ret_random": "episode return",
}
"""The y label of each statistic of :mod:`omnirl_core.world.stats` in :func:`plot_stat_comparison`."""


def plot_stat_comparison(
    ours: Mapping,
    reference: Mapping,
    *,
    stats: Sequence[str] | None = None,
    labels: tuple[str, str] = ("ours", "reference"),
    ncols: int = 4,
) -> Figure:
    """One panel per statistic: our mean ± std next to the reference's, per group (e.g. per ns).

    Both dicts are either flat ``{stat: v}`` or nested ``{group: {stat: v}}``, where ``v`` is a
    ``{"mean", "std"}`` dict, a list of per-task values or a number. Groups and statistics present in
    both are drawn (or those named in ``stats``).
    """
    og, rg = _groups(ours), _groups(reference)
    groups = [g for g in og if g in rg]
    if not groups:
        raise ValueError(f"no common groups: ours has {sorted(og)}, reference has {sorted(rg)}")
    if stats is None:
        stats = [s for s in og[groups[0]] if all(s in og[g] and s in rg[g] for g in groups)]
    stats = list(stats)
    if not stats:
        raise ValueError("no common statistics to compare")
    ncols = max(1, min(ncols, len(stats)))
    nrows = math.ceil(len(stats) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.6 * nrows), layout="constrained")
    axs = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    x = np.arange(len(groups))
    for ax, stat in zip(axs, stats):
        for src, lab, colour, marker, dx in (
            (og, labels[0], "#1f77b4", "o", -0.12),
            (rg, labels[1], _POLICY_COLOUR, "s", 0.12),
        ):
            ms = np.array([_mean_std(src[g][stat]) if stat in src[g] else (np.nan, np.nan) for g in groups])
            ax.errorbar(x + dx, ms[:, 0], yerr=ms[:, 1], fmt=marker, color=colour, capsize=3, ms=5, label=lab)
        ax.set_xticks(x, [g or stat for g in groups], fontsize=8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(stat, fontsize=9)
        if stat in STAT_UNITS:
            ax.set_ylabel(STAT_UNITS[stat], fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axs[len(stats):]:
        ax.set_axis_off()
    handles, names = axs[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="outside upper right", ncol=2)
    fig.suptitle(f"{labels[0]} vs {labels[1]}: mean ± std across tasks", fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------------- Algorithm 1 views
def plot_transition_matrices(task: Task, *, title: str | None = None) -> Figure:
    """The action-averaged transition matrix next to each action's P(s'|s,a): the band under the hidden
    ranking and how it is split among actions."""
    na = task.na
    fig = Figure(figsize=(2.4 * (na + 1) + 0.8, 3.0), layout="constrained")
    axs = np.atleast_1d(fig.subplots(1, na + 1, sharex=True, sharey=True))
    mats = [task.transition.mean(axis=1)] + [task.transition[:, a, :] for a in range(na)]
    names = ["mean over actions"] + [f"action {a}" for a in range(na)]
    im = None
    for ax, mat, name in zip(axs, mats, names):
        im = ax.imshow(mat, cmap="magma_r", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("next state s' (ranking)", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    axs[0].set_ylabel("s (ranking)", fontsize=8)
    fig.colorbar(im, ax=list(axs), shrink=0.85, pad=0.01, label="P(s'|s,a)")
    fig.suptitle(title or f"transition matrices in ranking order (ns={task.ns}, na={na})", fontsize=10)
    return fig


def plot_action_split(task: Task, state: int, *, title: str | None = None) -> Figure:
    """How one state's average next-state distribution is split among the actions: the average row as
    bars and each action's P(s'|state, a) as a line (each action prefers the next states near its centre)."""
    s = int(state)
    if not 0 <= s < task.ns:
        raise ValueError(f"state must lie in [0, {task.ns}), got {s}")
    fig = Figure(figsize=(7.5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    P = task.transition[s]  # [na, ns]
    support = np.flatnonzero(P.max(axis=0) > 0)
    if support.size == 0:
        ax.text(0.5, 0.5, f"state {s} is terminal: no transitions", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    lo, hi = int(support.min()), int(support.max())
    x = np.arange(max(0, lo - 1), min(task.ns, hi + 2))
    ax.bar(x, P.mean(axis=0)[x], color="0.8", edgecolor="0.5", label="mean over actions", gid="average")
    colours = _cmap("tab10")
    for a in range(task.na):
        ax.plot(x, P[a, x], "-o", ms=3.5, color=colours(a % 10), label=f"action {a}")
    ax.axvline(s, color=_SELECTED_COLOUR, ls="--", lw=1, label=f"state {s} itself")
    ax.set_xlabel("next state s' (hidden ranking)")
    ax.set_ylabel("P(s' | s, a)")
    ax.set_xticks(x)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(title or f"state {s}: band [{lo}, {hi}] split among {task.na} actions", fontsize=10)
    return fig


def plot_reward_structure(task: Task, *, title: str | None = None) -> Figure:
    """Mean reward and noise by next state: r(s, a, s') averaged over the (s, a) that can reach s' (line,
    with the min-max range shaded), which shows the position reward rising along the ranking, the pitfall
    penalties and the bonus for entering the top state; and the mean noise std of entering s'."""
    ns = task.ns
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax_r, ax_n = fig.subplots(1, 2)
    reach = task.transition > 0  # [ns, na, ns']
    count = reach.sum(axis=(0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_r = np.where(count > 0, (task.reward * reach).sum(axis=(0, 1)) / count, np.nan)
        mean_n = np.where(count > 0, (task.reward_noise * reach).sum(axis=(0, 1)) / count, np.nan)
    r_min = np.where(reach, task.reward, np.inf).min(axis=(0, 1))
    r_max = np.where(reach, task.reward, -np.inf).max(axis=(0, 1))
    ok = count > 0
    x = np.arange(ns)
    ax_r.fill_between(x[ok], r_min[ok], r_max[ok], color="#1f77b4", alpha=0.2, label="min-max over (s, a)")
    ax_r.plot(x[ok], mean_r[ok], "-o", ms=3, color="#1f77b4", label="mean over (s, a)")
    goal, pit = terminal_kinds(task)
    if pit.any():
        ax_r.scatter(x[pit & ok], mean_r[pit & ok], marker="X", s=60, c=_PIT_COLOUR, zorder=3, label="pitfall")
    if goal.any() or ns > 1:
        top = ns - 1
        ax_r.scatter([top], [mean_r[top]], marker="*", s=140, c=_GOAL_COLOUR, edgecolors="black", zorder=3,
                     label="top state" + (" (goal)" if goal.any() else ""))
    ax_r.axhline(0.0, color="0.5", lw=0.8)
    # The terminal adjustments can dwarf the position reward: a symmetric-log axis, linear within the
    # range of the ordinary (non-terminal, non-top) states, shows both.
    ordinary = ok & ~task.terminal
    ordinary[-1] = False
    if ordinary.any():
        span = float(np.nanmax(np.abs(np.concatenate([r_min[ordinary], r_max[ordinary]]))))
        extreme = float(np.nanmax(np.abs(np.concatenate([r_min[ok], r_max[ok]]))))
        if span > 0 and extreme > 10 * span:
            ax_r.set_yscale("symlog", linthresh=span)
    ax_r.margins(y=0.08)
    ax_r.set_xlabel("next state s' (hidden ranking)")
    ax_r.set_ylabel("mean reward r(s, a, s')" + (" (symlog)" if ax_r.get_yscale() == "symlog" else ""))
    ax_r.set_title("reward of entering s'", fontsize=10)
    ax_r.legend(fontsize=7.5)
    ax_n.bar(x[ok], mean_n[ok], color="0.6", width=1.0)
    ax_n.set_xlabel("next state s' (hidden ranking)")
    ax_n.set_ylabel("mean noise std")
    ax_n.set_title("reward noise of entering s'", fontsize=10)
    fig.suptitle(title or f"reward structure (ns={ns}, na={task.na})", fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------------- per-ns summaries
def plot_oracle_vs_random(returns: Mapping, *, title: str | None = None) -> Figure:
    """Per ns, each task's exact episode return of the oracle against the uniform-random policy's.

    ``returns`` maps a label (e.g. ns) to ``(oracle_returns, random_returns)`` sequences of equal length.
    """
    if not returns:
        raise ValueError("returns is empty")
    fig = Figure(figsize=(3.3 * len(returns), 3.3), layout="constrained")
    axs = np.atleast_1d(fig.subplots(1, len(returns), squeeze=False)).ravel()
    for ax, (label, (ret_o, ret_r)) in zip(axs, returns.items()):
        ret_o, ret_r = np.asarray(ret_o, float), np.asarray(ret_r, float)
        if ret_o.shape != ret_r.shape:
            raise ValueError(f"{label}: oracle and random returns differ in length")
        ax.scatter(ret_r, ret_o, s=14, color="#1f77b4", gid="tasks")
        lo = float(min(ret_r.min(), ret_o.min()))
        hi = float(max(ret_r.max(), ret_o.max()))
        ax.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=0.8)
        ax.set_xlabel("random return")
        ax.set_ylabel("oracle return")
        frac = float(np.mean(ret_o > ret_r)) if ret_o.size else float("nan")
        ax.set_title(f"ns={label}: oracle > random in {frac:.0%}", fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle(title or "exact episode returns per task", fontsize=10)
    return fig


def plot_timings(ours: Mapping, reference: Mapping | None = None, *, title: str | None = None) -> Figure:
    """Task-sampling time against ns (log-log): each measured time of ours, the median as a line, and the
    reference's median where given. ``ours`` maps ns to a list of seconds, ``reference`` ns to seconds."""
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ns_list = sorted(int(k) for k in ours)
    for ns in ns_list:
        t = np.asarray(ours[ns] if ns in ours else ours[str(ns)], float)
        ax.scatter(np.full(t.size, ns), t, s=12, color="#1f77b4", alpha=0.6)
    med = [float(np.median(ours[ns] if ns in ours else ours[str(ns)])) for ns in ns_list]
    ax.plot(ns_list, med, "-o", color="#1f77b4", label="ours (median)")
    if reference:
        ref_ns = sorted(int(k) for k in reference)
        ax.plot(ref_ns, [float(reference[k] if k in reference else reference[str(k)]) for k in ref_ns], "-s",
                color=_POLICY_COLOUR, label="reference (median)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticks = sorted(set(ns_list) | ({int(k) for k in reference} if reference else set()))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("ns")
    ax.set_ylabel("seconds per task")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title or "task sampling time", fontsize=10)
    return fig


def _summary_n(v, default=None):
    return v.get("n", default) if isinstance(v, Mapping) else (len(v) if isinstance(v, Sequence) else default)


def reference_difference(ours, reference, *, n_reference: float | None = None) -> dict[str, float]:
    """Our mean minus the reference's for one statistic (each a ``{"mean", "std", "n"}`` summary, a list of
    per-task values or a number): ``diff``, its standard error ``se`` = sqrt(std_o^2/n_o + std_r^2/n_r), ``z`` =
    diff / se, and ``d`` = diff in units of the reference's std with its 95% interval ``d_low`` .. ``d_high``
    (Welch's t, Welch-Satterthwaite degrees of freedom). NaN where undefined (a count or a spread missing)."""
    from scipy import stats as sps

    mo, so = _mean_std(ours)
    mr, sr = _mean_std(reference)
    n_o, n_r = _summary_n(ours), _summary_n(reference, n_reference)
    nan = float("nan")
    out = {"diff": mo - mr, "se": nan, "z": nan, "d": nan, "d_low": nan, "d_high": nan}
    if not (n_o and n_r):
        return out
    vo, vr = so**2 / n_o, sr**2 / n_r
    se = math.sqrt(vo + vr)
    out["se"] = se
    out["z"] = (mo - mr) / se if se > 0 else (0.0 if mo == mr else nan)
    if sr > 0 and se > 0 and n_o > 1 and n_r > 1:
        df = (vo + vr) ** 2 / (vo**2 / (n_o - 1) + vr**2 / (n_r - 1))
        half = float(sps.t.ppf(0.975, df)) * se
        out.update(d=(mo - mr) / sr, d_low=(mo - mr - half) / sr, d_high=(mo - mr + half) / sr)
    return out


def least_agreeing_statistic(ours: Mapping, reference: Mapping, stats: Sequence[str], *,
                             tolerance: float = 1.0) -> tuple[str, dict[str, float]] | None:
    """Of ``stats`` (summaries as in :func:`reference_difference`), the one that speaks most against "every mean
    lies within ``tolerance`` reference stds of the reference's": one whose whole interval of ``d`` lies outside
    [-tolerance, tolerance] if there is one, else the one whose interval reaches farthest from 0. Statistics
    without an interval (no spread, no count) are skipped; None when none is left."""
    n_ref = reference.get("n_tasks") if isinstance(reference.get("n_tasks"), (int, float)) else None
    found = []
    for s in stats:
        if s in ours and isinstance(reference.get(s), Mapping):
            r = reference_difference(ours[s], reference[s], n_reference=n_ref)
            if np.isfinite(r["d_low"]):
                outside = r["d_low"] > tolerance or r["d_high"] < -tolerance
                found.append((outside, max(abs(r["d_low"]), abs(r["d_high"])), s, r))
    if not found:
        return None
    _, _, s, r = max(found, key=lambda f: (f[0], f[1]))
    return s, r


def markdown_stat_table(
    ours: Mapping, reference: Mapping, *, stats: Sequence[str] | None = None, digits: int = 3
) -> str:
    """A Markdown table comparing per-statistic summaries: ours mean ± std, the reference's mean ± std and
    its 10-90% range, and the difference of means in units of the reference's standard error
    (``(ours - ref) / sqrt(std_o^2/n_o + std_r^2/n_r)``, blank where undefined).

    Both arguments map a statistic to ``{"mean", "std"[, "q10", "q90", "n"]}``; ``reference`` may also carry
    ``"n_tasks"`` as a plain number.
    """
    if stats is None:
        stats = [s for s in ours if s in reference and isinstance(reference[s], Mapping)]
    n_ref_default = reference.get("n_tasks") if isinstance(reference.get("n_tasks"), (int, float)) else None

    def fmt(x) -> str:
        return "" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"

    rows = ["| statistic | ours mean ± std | reference mean ± std | reference 10-90% | z |",
            "|---|---|---|---|---|"]
    for s in stats:
        o, r = ours[s], reference[s]
        mo, so = _mean_std(o)
        mr, sr = _mean_std(r)
        z = reference_difference(o, r, n_reference=n_ref_default)["z"]
        z = None if not np.isfinite(z) else z
        rng_txt = f"{fmt(r.get('q10'))} – {fmt(r.get('q90'))}" if isinstance(r, Mapping) and "q10" in r else ""
        rows.append(f"| {s} | {fmt(mo)} ± {fmt(so)} | {fmt(mr)} ± {fmt(sr)} | {rng_txt} | "
                    f"{'' if z is None else f'{z:+.1f}'} |")
    return "\n".join(rows)
