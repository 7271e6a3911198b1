"""Figures of the evaluation: score curves per suite, and the in-context gain along a run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.long_context import readable, score_half_width
from ..evaluation.runs import RunResult


def plot_curves(results: Sequence[RunResult], out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """One figure per suite: mean score against episodes and against steps, one line per agent (dashed: a
    bandit's runs scored by expected rewards)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figs = {}
    for suite in dict.fromkeys(r.suite for r in results):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        for r in results:
            if r.suite != suite:
                continue
            curve, steps = r.curve()
            x = r.info.get("episode_index")
            expected = r.info.get("reward") == "expected"  # bandits: the same runs scored by the arms' means
            style = dict(ls="--", lw=1.0, label=f"{r.agent} (expected reward)") if expected else dict(label=r.agent)
            axes[0].plot(np.arange(1, len(curve) + 1) if x is None else x, curve, **style)
            axes[1].plot(steps, curve, **style)
        for ax, xl in zip(axes, ("episodes", "steps")):
            ax.set_xlabel(xl)
            ax.set_ylabel("normalised score")
            ax.axhline(1.0, color="grey", lw=0.5, ls="--")
            ax.axhline(0.0, color="grey", lw=0.5, ls=":")
        axes[1].set_xscale("log")  # steps start at 1 (an episode ends after one step at least)
        axes[1].set_xlim(left=1)
        axes[0].legend(fontsize=8)
        fig.suptitle(suite)
        fig.tight_layout()
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            fig.savefig(Path(out_dir) / f"curves_{suite}.png", dpi=100)
        figs[suite] = fig
    return figs


def plot_gain(summaries: dict[str, dict], title: str = "", ax=None, reference: dict[str, dict] | None = None):
    """Mean score per segment with 95% intervals, one line per entry of ``summaries`` (e.g. agent name)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.4))
    for label, summ in summaries.items():
        k = sum(1 for key in summ if key.startswith("q") and key[1:].isdigit())
        m = np.array([summ[f"q{i + 1}"] for i in range(k)])
        x = np.arange(1, k + 1)
        ax.errorbar(x, m[:, 0], yerr=[m[:, 0] - m[:, 1], m[:, 2] - m[:, 0]], marker="o", capsize=3,
                    label=f"{label} (gain {summ['gain'][0]:+.2f})")
    ax.axhline(0, color="0.6", lw=0.8, ls=":")
    ax.axhline(1, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("segment of the run")
    ax.set_ylabel("normalised score")
    ax.set_xticks(np.arange(1, k + 1))
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def plot_long_context(report: dict[str, Any]):
    """Label loss, online score and policy entropy against log(context length), one line per model of a
    :func:`omnirl_core.evaluation.long_context.long_context_report`; shaded: the score's 95% interval over tasks.
    The score panel names the reward it scores, and says on the plot when its intervals are too wide to read."""
    import matplotlib.pyplot as plt

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 3.6))
    for name, curves in report["models"].items():
        loss, score = curves["loss"], curves["score"]
        a1.plot(loss["position"], loss["loss"], marker="o", ms=3, label=name)
        x = np.asarray(score["position"], dtype=float)
        y = np.asarray(score["score"], dtype=float)
        line, = a2.plot(x, y, marker="o", ms=3, label=name)
        a2.fill_between(x, np.asarray(score["low"], dtype=float), np.asarray(score["high"], dtype=float),
                        color=line.get_color(), alpha=0.15)
        if "entropy" in curves:
            ent = curves["entropy"]
            a3.plot(ent["position"], ent["entropy"], marker="o", ms=3, color=line.get_color(), label=name)
    a1.set(xscale="log", xlabel="position in the context (steps)", ylabel="label cross entropy",
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
    for ax in (a1, a2, a3):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
