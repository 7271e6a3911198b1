"""Table-1 metrics and the report, read by one rule for every agent. The task-averaged score curve is smoothed
by a mean over windows of the same number of *evaluated episodes*: ``smooth`` episodes of an agent scored on
every episode (OmniRL), ``ceil(smooth / eval_episodes)`` test points of an agent scored by test episodes after
every ``eval_every`` training episodes (TQL-UCB, PPO, and random and oracle beside them; ``info["eval_every"]``,
``info["eval_episodes"]``), so both columns carry the same noise; ``smooth_tested`` (training episodes) overrides
the test-point window. A run shorter than its window is one window.

- best: the largest mean of a full window (a mean of fewer episodes would let early noise set the maximum);
- final: the last full window;
- episodes (steps) to 99%: the first episode of the first full window whose mean reaches 99% of the best, and
  the mean step count up to it. Reading a window at its first episode leaves no floor: an agent at its best
  from episode ``j`` reads ``j`` (within ``w / 100`` episodes), where reading it at its last episode would
  read ``j + w - 1`` and no agent could read below the window;
- 95% bootstrap intervals over tasks of best and final (:func:`bootstrap_best_final`); as rows, a Markdown
  table, and files.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .runs import RunResult
from .suites import PAPER_TABLE1

# ---------------------------------------------------------------------------------------------- metrics
N_BOOT = 1000
"""Bootstrap resamples of the tasks behind every interval of the table."""


def window_points(result: RunResult, smooth: int, smooth_tested: int | None = None) -> int:
    """Points in a window of ``result``'s curve: ``smooth`` episodes; on a curve of test points
    ``ceil(smooth / eval_episodes)`` points (the same number of evaluated episodes), or ``smooth_tested //
    eval_every`` points where ``smooth_tested`` is given; at least 1 and at most the curve's length."""
    n_points = int(result.returns.shape[1])
    if "eval_every" not in result.info:
        w = int(smooth)
    elif smooth_tested:
        w = int(smooth_tested) // int(result.info["eval_every"])
    else:
        w = math.ceil(int(smooth) / int(result.info.get("eval_episodes", 1)))
    return max(1, min(w, n_points))


def trailing_mean(curves: np.ndarray, w: int, full_only: bool = True) -> np.ndarray:
    """Trailing mean over ``w`` points along the last axis of ``curves`` [..., K] (NaN points left out).

    ``full_only``: NaN wherever the window is not full (fewer than ``w`` points before it, or a NaN among
    them), so no value averages fewer episodes than the others. ``False`` averages what there is: the first
    points average 1, 2, ... episodes, which lets their noise set a maximum."""
    ok = np.isfinite(curves)
    zero = np.zeros(curves.shape[:-1] + (1,))
    cs = np.concatenate([zero, np.cumsum(np.where(ok, curves, 0.0), axis=-1)], axis=-1)
    cnt = np.concatenate([zero, np.cumsum(ok, axis=-1)], axis=-1)
    k = np.arange(1, curves.shape[-1] + 1)
    lo = np.maximum(k - w, 0)
    total, count = cs[..., k] - cs[..., lo], cnt[..., k] - cnt[..., lo]
    keep = count == w if full_only else count > 0
    return np.where(keep, total / np.maximum(count, 1), np.nan)


def _best_final(smoothed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(maximum, last finite value) along the last axis; NaN where a row has no finite point."""
    ok = np.isfinite(smoothed)
    best = np.where(ok.any(axis=-1), np.where(ok, smoothed, -np.inf).max(axis=-1), np.nan)
    last = np.where(ok.any(axis=-1), ok.shape[-1] - 1 - np.argmax(ok[..., ::-1], axis=-1), 0)
    final = np.where(ok.any(axis=-1), np.take_along_axis(smoothed, last[..., None], axis=-1)[..., 0], np.nan)
    return best, final


def first_within_99(values: np.ndarray) -> tuple[int, int]:
    """(index of the maximum, first index whose value reaches 99% of it) of ``values`` (NaN never reaches): the
    "99% of the best" rule of Table 1 and of the ablations' steps to adapt."""
    v = np.nan_to_num(np.asarray(values, dtype=float), nan=-np.inf)
    k = int(np.argmax(v))
    return k, int(np.flatnonzero(v >= v[k] - 0.01 * abs(v[k]))[0])


def bootstrap_best_final(scores: np.ndarray, w: int, *, n_boot: int = N_BOOT, seed: int = 0,
                         full_only: bool = True, interval: str = "basic", chunk: int = 100) -> np.ndarray:
    """[2, 2]: 95% intervals [low, high] of the best and the final value of the task-averaged, trailing-mean
    curve, from ``n_boot`` resamples of the tasks (rows of ``scores`` [n, K], NaN where a run did not reach an
    episode): each resample averages its tasks' curves, smooths and takes both statistics again. Rows of NaN
    where fewer than 2 tasks.

    ``interval="basic"`` (default): ``[2 t - q97.5, 2 t - q2.5]`` around the statistic ``t`` of the data.
    A maximum over a noisy curve lies above the curve's level, and a resample's maximum lies above the data's
    by about as much, so the percentile interval ``[q2.5, q97.5]`` (``"percentile"``) sits wholly above the
    estimate (random's best on 8 bandits: 0.13 with [0.05, 0.31]); the basic interval reflects that shift
    back (there: [-0.05, 0.21]). For the final value, a mean, both nearly agree."""
    if interval not in ("basic", "percentile"):
        raise ValueError(f"interval must be 'basic' or 'percentile', got {interval!r}")
    n = scores.shape[0]
    out = np.full((2, 2), np.nan)
    if n < 2 or n_boot < 1:
        return out
    rng = np.random.default_rng(seed)
    ok = np.isfinite(scores)
    filled = np.where(ok, scores, 0.0)
    stats = []
    for start in range(0, n_boot, chunk):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_boot - start)).astype(float)
        den = counts @ ok
        curves = np.where(den > 0, (counts @ filled) / np.maximum(den, 1), np.nan)
        stats.append(np.stack(_best_final(trailing_mean(curves, w, full_only)), axis=1))
    stats = np.concatenate(stats)  # [n_boot, 2]
    observed = np.stack(_best_final(trailing_mean(_mean_curve(scores), w, full_only)))
    for j in range(2):
        kept = stats[np.isfinite(stats[:, j]), j]
        if kept.size and np.isfinite(observed[j]):
            q = np.percentile(kept, [2.5, 97.5])
            out[j] = q if interval == "percentile" else 2 * observed[j] - q[::-1]
    return out


def _mean_curve(scores: np.ndarray) -> np.ndarray:
    """Mean over rows, NaN (quietly) where no row has a value."""
    ok = np.isfinite(scores)
    den = ok.sum(axis=0)
    return np.where(den > 0, np.where(ok, scores, 0.0).sum(axis=0) / np.maximum(den, 1), np.nan)


def table_metrics(result: RunResult, smooth: int = 5, smooth_tested: int | None = None, *, n_boot: int = N_BOOT,
                  seed: int = 0, full_only: bool = True, interval: str = "basic") -> dict:
    """The module's rule on one run: best value of the task-averaged score curve over full windows of
    :func:`window_points` points; the episodes and (mean) steps up to the first episode of the first window that
    reaches 99% of it; its final value; 95% bootstrap intervals over tasks of best and final (``n_boot=0``:
    none). NaN where no window is full."""
    curve, steps = result.curve()
    out = {"best": math.nan, "episodes_99": math.nan, "steps_99": math.nan, "final": math.nan,
           "best_ci": [math.nan, math.nan], "final_ci": [math.nan, math.nan],
           "n_runs": int(result.valid.size), "n_skipped": result.n_skipped}
    w = window_points(result, smooth, smooth_tested)
    smoothed = trailing_mean(curve, w, full_only)
    if not np.isfinite(smoothed).any():
        return out
    best, final = (float(x) for x in _best_final(smoothed))
    end = first_within_99(smoothed)[1]
    k = max(0, end - w + 1)  # the window's first point
    index = result.info.get("episode_index")
    episodes_99 = int(index[k]) if index is not None else k + 1
    steps_99 = float(steps[k]) if not np.isnan(steps[k]) else math.nan
    ci = bootstrap_best_final(result.scores[result.valid], w, n_boot=n_boot, seed=seed, full_only=full_only,
                              interval=interval)
    out.update(best=best, episodes_99=episodes_99, steps_99=steps_99, final=final, best_ci=ci[0].tolist(),
               final_ci=ci[1].tolist())
    return out


def reward_kind(result: RunResult) -> str:
    """"sampled" (the rewards the agent saw) or "expected" (each action's expected reward, :mod:`.expected`)."""
    return str(result.info.get("reward", "sampled"))


def episode_budget(result: RunResult) -> int:
    """Training episodes per run of ``result`` (the baselines run the paper's budget, OmniRL its own)."""
    return int(result.info.get("n_episodes", result.returns.shape[1]))


def table_rows(results: Sequence[RunResult], smooth: int = 5, smooth_tested: int | None = None) -> list[dict]:
    """One row per (suite, agent): our metrics (:func:`table_metrics`) and the paper's numbers for that method
    where it has them."""
    paper_name = {"TQL-UCB": "TQL-UCB", "PPO": "PPO", "OmniRL": "OmniRL"}
    rows = []
    for r in results:
        m = table_metrics(r, smooth, smooth_tested)
        base = r.agent.split(" ")[0]
        paper = PAPER_TABLE1.get(r.suite, {}).get(paper_name.get(base, ""), (math.nan, None))
        rows.append({
            "suite": r.suite, "agent": r.agent, "reward": reward_kind(r), "episodes": episode_budget(r),
            "best_score": m["best"],
            "best_low": m["best_ci"][0], "best_high": m["best_ci"][1], "episodes_to_99": m["episodes_99"],
            "steps_to_99": m["steps_99"], "final_score": m["final"], "final_low": m["final_ci"][0],
            "final_high": m["final_ci"][1], "runs": m["n_runs"], "skipped": m["n_skipped"],
            "paper_best_score": paper[0], "paper_steps_to_99": math.nan if paper[1] is None else paper[1],
            "c": r.info.get("c", ""),
        })
    return rows


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        if abs(x) >= 1000:
            return f"{x / 1000:.1f}K" if abs(x) < 1e6 else f"{x / 1e6:.2f}M"
        return f"{x:.3f}" if abs(x) < 10 else f"{x:.0f}"
    return str(x)


def _fmt_steps(x: Any) -> str:
    if isinstance(x, (int, np.integer)) or (isinstance(x, float) and not math.isnan(x) and abs(x) < 1000):
        return f"{float(x):.0f}"
    return _fmt(x)


def _fmt_ci(row: dict, key: str) -> str:
    """``value [low, high]`` of ``row[key + "_score"]`` and its interval (``-`` for a missing bound)."""
    value, low, high = row[f"{key}_score"], row[f"{key}_low"], row[f"{key}_high"]
    if isinstance(low, float) and math.isnan(low):
        return _fmt(value)
    return f"{_fmt(value)} [{low:+.2f}, {high:+.2f}]"


def markdown_table(rows: Sequence[dict]) -> str:
    """The rows as Markdown; best and final score each with its 95% interval over tasks."""
    cols = ["suite", "agent", "reward", "episodes", "best_score [95% CI]", "final_score [95% CI]", "episodes_to_99",
            "steps_to_99", "paper_best_score", "paper_steps_to_99", "runs", "skipped"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = []
        for c in cols:
            if c.endswith("[95% CI]"):
                cells.append(_fmt_ci(row, c.split("_")[0]))
            else:
                cells.append(_fmt_steps(row[c]) if "steps" in c or "episodes_" in c else _fmt(row[c]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def caption(smooth: int, smooth_tested: int | None = None, eval_episodes: int | None = None) -> str:
    """What the table's numbers are (printed above it in ``table1.md``)."""
    if smooth_tested:
        tested = f"over the test points of {smooth_tested} training episodes"
    elif eval_episodes:
        tested = (f"over {math.ceil(smooth / eval_episodes)} test points of {eval_episodes} test episodes each, the "
                  "same number of evaluated episodes")
    else:
        tested = f"over test points holding {smooth} test episodes"
    return (f"Best score: the maximum of the task-averaged normalised score curve, smoothed by a mean over windows of "
            f"{smooth} episodes (curves of test points: {tested}), taken only over full windows (a mean of fewer "
            "episodes would let early noise set the maximum); final score: the last full window; episodes and steps "
            "to 99%: up to the first episode of the first window whose mean reaches 99% of the best (no floor: an "
            "agent at its best from its first episode reads 1). Intervals: 95% over tasks, basic bootstrap "
            f"({N_BOOT} resamples of the tasks, each giving its own mean curve, best and final). The maximum of a "
            "noisy curve lies above its level even so; the calibration rows (random ~0, oracle ~1) show by how "
            "much, and on a flat noisy curve the first window to reach 99% of that maximum falls anywhere in the "
            "run. Reward column: `sampled` scores the rewards the agent received; `expected` (bandits) the same "
            "runs scored by the expected reward of each arm pulled (the pseudo-reward), which is free of the reward "
            "noise. Paper columns: the paper's Table 1 for the same method (10,000 episodes). Episodes: the "
            "training episodes per run of that row (the quick profile gives OmniRL fewer than the baselines); a row "
            "with fewer episodes than the window takes them all as one window.")


def write_report(results: Sequence[RunResult], out_dir: str | os.PathLike, smooth: int = 5,
                 smooth_tested: int | None = None) -> dict[str, Path]:
    """Write ``table1.csv``, ``table1.md`` (with :func:`caption`) and ``curves.csv`` (mean score and steps per
    episode) under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(results, smooth, smooth_tested)
    paths = {"csv": out / "table1.csv", "md": out / "table1.md", "curves": out / "curves.csv"}
    with open(paths["csv"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["suite"])
        w.writeheader()
        w.writerows(rows)
    tested = [int(r.info["eval_episodes"]) for r in results if "eval_episodes" in r.info]
    text = (f"# Table 1 (reproduction)\n\n{caption(smooth, smooth_tested, tested[0] if tested else None)}\n\n"
            f"{markdown_table(rows)}\n")
    paths["md"].write_text(text)
    with open(paths["curves"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["suite", "agent", "episode", "mean_score", "mean_steps", "reward"])
        for r in results:
            curve, steps = r.curve()
            index = r.info.get("episode_index")
            index = range(1, len(curve) + 1) if index is None else index
            for e, s, n in zip(index, curve, steps):
                w.writerow([r.suite, r.agent, int(e), f"{s:.6g}", f"{n:.6g}", reward_kind(r)])
    return paths
