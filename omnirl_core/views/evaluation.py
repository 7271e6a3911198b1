"""Figures of the evaluation: score curves per suite, the in-context measure along a run, long contexts.

Every figure uses one colour per agent (:func:`agent_colour`), log x where budgets differ a hundredfold, 95%
intervals as bands and legends beside the data. None selects a matplotlib backend (the kernel's own stays).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.long_context import readable, score_half_width
from ..evaluation.runs import RunResult

AGENT_COLOURS = {"random": "0.55", "oracle": "black", "TQL-UCB": "tab:blue", "PPO": "tab:purple",
                 "CQL": "tab:brown", "OmniRL-tiny": "tab:orange", "OmniRL": "tab:red"}
"""One colour per agent in every figure of the workbook (matched by the start of the agent's name)."""
_SPARE = ("tab:green", "tab:cyan", "tab:olive", "tab:pink", "tab:gray", "gold", "navy", "teal")


def agent_colour(name: str) -> str:
    """The colour of agent ``name`` (:data:`AGENT_COLOURS`; other names get a spare colour, the same every time)."""
    for prefix in sorted(AGENT_COLOURS, key=len, reverse=True):
        if name.startswith(prefix):
            return AGENT_COLOURS[prefix]
    return _SPARE[sum(map(ord, name)) % len(_SPARE)]


def _style(agent: str) -> dict[str, Any]:
    """Line style of an agent: the oracle dashed and on top (it would hide under a learner at 1), demonstrations
    (offline, imitation) dotted."""
    style: dict[str, Any] = {"color": agent_colour(agent), "lw": 1.6, "zorder": 2}
    if agent == "oracle":
        style.update(ls="--", lw=1.2, zorder=4)
    elif "offline" in agent or "imitation" in agent:
        style.update(ls=":")
    return style


def binned_curve(result: RunResult, bins: int = 12) -> dict[str, np.ndarray]:
    """A run's score in log-spaced bins of its episodes (:func:`~omnirl_core.evaluation.incontext.log_edges`):
    ``episodes`` and ``steps`` (geometric centre of each bin; mean steps at the ends of its episodes), ``score``
    and its 95% interval over runs (``low``, ``high``). Test-point curves (TQL-UCB) bin by their training
    episode counts."""
    from ..evaluation.incontext import log_edges, mean_ci

    s = result.scores[result.valid]
    steps = result.steps[result.valid]
    x = np.asarray(result.info.get("episode_index") or np.arange(1, s.shape[1] + 1), dtype=float)
    if s.size == 0:
        return {k: np.array([]) for k in ("episodes", "steps", "score", "low", "high")}
    edges = log_edges(int(x.max()), bins) if x.max() >= 2 else np.array([0, 1])
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        cols = (x - 1 >= lo) & (x - 1 < hi)
        if not cols.any():
            continue
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            per_run = np.nanmean(s[:, cols], axis=1)
            step = float(np.nanmean(steps[:, cols]))
        per_run = per_run[np.isfinite(per_run)]
        if per_run.size == 0:
            continue
        m, low, high = mean_ci(per_run)
        rows.append((float(np.sqrt(max(lo, 1) * hi)) if hi - lo > 1 else float(hi), step, m, low, high))
    arr = np.array(rows, dtype=float).reshape(-1, 5)
    return dict(zip(("episodes", "steps", "score", "low", "high"), arr.T))


def _draw(ax, x, c, label: str, style: dict[str, Any]) -> None:
    """A curve with its 95% band; a curve of one or two points as markers with error bars (a two-point line
    reads as a trend it does not have)."""
    if len(x) <= 2:
        y = c["score"]
        err = np.nan_to_num(np.abs(np.vstack([y - c["low"], c["high"] - y])))
        ax.errorbar(x, y, yerr=err, fmt="o", ms=4, capsize=3, color=style["color"], label=label,
                    zorder=style["zorder"])
        return
    ax.plot(x, c["score"], label=label, marker="o", ms=2.5, **style)
    ax.fill_between(x, c["low"], c["high"], color=style["color"], alpha=0.12, lw=0, zorder=1)


def plot_curves(results: Sequence[RunResult], out_dir: str | os.PathLike | None = None,
                min_points: int = 3) -> dict[str, Any]:
    """One figure per suite: mean normalised score against episodes and against environment steps (both log: the
    baselines run 10,000 episodes, OmniRL 100 in the quick profile), in log-spaced bins with 95% bands over runs,
    one colour per agent (:func:`agent_colour`), the legend beside the panels. Bandits: the runs scored by expected
    rewards (the less noisy of their two rows) only. ``out_dir``: also save each as ``curves_<suite>.png``."""
    import matplotlib.pyplot as plt

    figs: dict[str, Any] = {}
    for suite in dict.fromkeys(r.suite for r in results):
        rows = [r for r in results if r.suite == suite]
        if any(r.info.get("reward") == "expected" for r in rows):
            rows = [r for r in rows if r.info.get("reward") == "expected"]
        curves = {r.agent: binned_curve(r) for r in rows}
        most = max((c["score"].size for c in curves.values()), default=0)
        if most < min_points:
            figs[suite] = (f"every curve has at most {most} point(s) (its runs are shorter than {min_points} bins "
                           "of test points); Table 1 gives its numbers")
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11.5, 3.6), layout="constrained")
        for r in rows:
            c = curves[r.agent]
            if c["score"].size == 0:
                continue
            style = _style(r.agent)
            _draw(axes[0], c["episodes"], c, r.agent, style)
            _draw(axes[1], c["steps"], c, None, style)
        for ax, xl in zip(axes, ("episodes since an empty memory (log)", "environment steps per run (log)")):
            ax.set_xscale("log")
            ax.set_xlim(left=1)
            ax.set_xlabel(xl)
            ax.set_ylabel("normalised score (random 0, oracle 1)")
            ax.axhline(1.0, color="0.7", lw=0.6, ls="--", zorder=0)
            ax.axhline(0.0, color="0.7", lw=0.6, ls=":", zorder=0)
        reward = " (bandits: expected reward of the pulled arm)" if any(r.info.get("reward") == "expected"
                                                                        for r in rows) else ""
        fig.suptitle(f"{suite}: score along the run, 95% bands over {rows[0].valid.sum()} tasks{reward}",
                     fontsize=10)
        fig.legend(loc="outside right upper", fontsize=8, frameon=False)
        if out_dir is not None:
            from ..workbook.figures import save_figure

            save_figure(fig, Path(out_dir) / f"curves_{suite}.png")
        figs[suite] = fig
    return figs


def plot_gain(summaries: dict[str, dict], title: str = "", ax=None, reference: dict[str, dict] | None = None):
    """The in-context measure: mean score per log-spaced bin of the run (x: steps, log, at each bin's geometric
    centre) with 95% bands, one line per entry of ``summaries`` (label -> :func:`~omnirl_core.evaluation.incontext.
    online_gain` summary), the gain (last bin - first) and its interval in the legend. Summaries without bin edges
    (older quarter-based results) are drawn at segments 1..K."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
    log_x = True
    for label, summ in summaries.items():
        k = sum(1 for key in summ if key.startswith("q") and key[1:].isdigit())
        m = np.array([summ[f"q{i + 1}"] for i in range(k)], dtype=float)
        edges = summ.get("edges")
        if edges and len(edges) == k + 1:
            e = np.asarray(edges, dtype=float)
            x = np.sqrt(np.maximum(e[:-1], 1) * e[1:])
        else:
            x, log_x = np.arange(1, k + 1, dtype=float), False
        g = summ["gain"]
        style = _style(label)
        ax.plot(x, m[:, 0], marker="o", ms=3.5, label=f"{label}: gain {g[0]:+.2f} [{g[1]:+.2f}, {g[2]:+.2f}]",
                **style)
        ax.fill_between(x, m[:, 1], m[:, 2], color=style["color"], alpha=0.15, lw=0, zorder=1)
    ax.axhline(0, color="0.6", lw=0.8, ls=":")
    ax.axhline(1, color="0.6", lw=0.8, ls=":")
    if log_x:
        ax.set_xscale("log")
        ax.set_xlabel("steps since an empty memory (log-spaced bins)")
    else:
        ax.set_xlabel("segment of the run")
    ax.set_ylabel("normalised score")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax


def plot_long_context(report: dict[str, Any]):
    """Label loss, online score and policy entropy against log(context length), one line per model of a
    :func:`omnirl_core.evaluation.long_context.long_context_report`; shaded: the score's 95% interval over tasks.
    The score panel names the reward it scores, and says on the plot when its intervals are too wide to read."""
    import matplotlib.pyplot as plt

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 3.9), layout="constrained")
    colours = ("tab:red", "tab:green", "tab:blue", "tab:purple", "tab:brown", "tab:cyan")
    for i, (name, curves) in enumerate(report["models"].items()):
        loss, score = curves["loss"], curves["score"]
        colour = colours[i % len(colours)]
        g = curves.get("gain")
        label = name + (f" (gain {g[0]:+.2f} [{g[1]:+.2f}, {g[2]:+.2f}])" if g else "")
        a1.plot(loss["position"], loss["loss"], marker="o", ms=3, color=colour, label=label)
        x = np.asarray(score["position"], dtype=float)
        y = np.asarray(score["score"], dtype=float)
        line, = a2.plot(x, y, marker="o", ms=3, color=colour)
        a2.fill_between(x, np.asarray(score["low"], dtype=float), np.asarray(score["high"], dtype=float),
                        color=line.get_color(), alpha=0.15)
        if "entropy" in curves:
            ent = curves["entropy"]
            a3.plot(ent["position"], ent["entropy"], marker="o", ms=3, color=line.get_color())
    a1.set(xscale="log", xlabel="position in the context (steps)", ylabel="label cross entropy (nats)",
           title=f"label loss, {report['loss_sequences']} sequences of {report['steps']:,} steps")
    reward = report.get("reward", "sampled")
    a2.set(xscale="log", xlabel="steps since an empty memory",
           ylabel="normalised score" + (" (expected reward)" if reward == "expected" else ""),
           title=f"online score, {report['suite']} ({report['n_tasks']} tasks, {reward} reward)")
    a2.axhline(0.0, color="0.6", lw=0.8)
    if not readable(report):  # say so on the figure itself, not only in a caption somewhere
        widest = max(score_half_width(c["score"]) for c in report["models"].values())
        a2.text(0.5, 0.5, f"intervals too wide to read\n(+-{widest:.2f} on average, {report['n_tasks']} tasks)",
                transform=a2.transAxes, ha="center", va="center", color="tab:red", fontsize=11, alpha=0.8)
    a3.set(xscale="log", xlabel="steps since an empty memory", ylabel="entropy of the policy (nats)",
           title="explore, then exploit")
    fig.legend(loc="outside lower center", ncols=min(3, len(report["models"])), fontsize=8, frameon=False)
    return fig
