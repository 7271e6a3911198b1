"""Table-1 metrics and the report: on the task-averaged score curve, smoothed by a trailing mean over ``smooth``
episodes, the best value within the episode budget, and the first episode (and the mean step count there) at
which the curve reaches 99% of it; as rows, a Markdown table, and files.

A curve of test points (TQL-UCB and PPO, one point per ``eval_every`` training episodes, each already a mean
over its test episodes; ``info["eval_every"]``) is smoothed over ``max(1, smooth // eval_every)`` points, the
same span of training episodes, and its episodes are the training episode counts of its points.
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
def table_metrics(result: RunResult, smooth: int = 5) -> dict:
    """Best smoothed average score within the budget; episodes and (mean) steps to reach 99% of it."""
    curve, steps = result.curve()
    n = len(curve)
    out = {"best": math.nan, "episodes_99": math.nan, "steps_99": math.nan, "final": math.nan,
           "n_runs": int(result.valid.size), "n_skipped": result.n_skipped}
    ok = ~np.isnan(curve)
    if not ok.any():
        return out
    c = np.where(ok, curve, 0.0)
    w = max(1, int(smooth) // int(result.info.get("eval_every", 1)))
    cs = np.cumsum(c)
    cnt = np.cumsum(ok)
    lo = np.arange(n) - w
    sm_sum = cs - np.where(lo >= 0, cs[np.maximum(lo, 0)], 0.0)
    sm_cnt = cnt - np.where(lo >= 0, cnt[np.maximum(lo, 0)], 0)
    smooth_curve = np.where(sm_cnt > 0, sm_sum / np.maximum(sm_cnt, 1), np.nan)
    best = float(np.nanmax(smooth_curve))
    target = best - 0.01 * abs(best)
    k = int(np.flatnonzero(smooth_curve >= target)[0])
    index = result.info.get("episode_index")
    episodes_99 = int(index[k]) if index is not None else k + 1
    steps_99 = float(steps[k]) if not np.isnan(steps[k]) else math.nan
    out.update(best=best, episodes_99=episodes_99, steps_99=steps_99, final=float(smooth_curve[ok][-1]))
    return out


def table_rows(results: Sequence[RunResult], smooth: int = 5) -> list[dict]:
    """One row per (suite, agent): our metrics and the paper's numbers for that method where it has them."""
    paper_name = {"TQL-UCB": "TQL-UCB", "PPO": "PPO", "OmniRL": "OmniRL"}
    rows = []
    for r in results:
        m = table_metrics(r, smooth)
        base = r.agent.split(" ")[0]
        paper = PAPER_TABLE1.get(r.suite, {}).get(paper_name.get(base, ""), (math.nan, None))
        rows.append({
            "suite": r.suite, "agent": r.agent, "best_score": m["best"], "episodes_to_99": m["episodes_99"],
            "steps_to_99": m["steps_99"], "final_score": m["final"], "runs": m["n_runs"], "skipped": m["n_skipped"],
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


def markdown_table(rows: Sequence[dict]) -> str:
    cols = ["suite", "agent", "best_score", "episodes_to_99", "steps_to_99", "paper_best_score", "paper_steps_to_99",
            "runs", "skipped"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt_steps(row[c]) if "steps" in c or "episodes" in c else _fmt(row[c])
                                       for c in cols) + " |")
    return "\n".join(lines)


def write_report(results: Sequence[RunResult], out_dir: str | os.PathLike, smooth: int = 5) -> dict[str, Path]:
    """Write ``table1.csv``, ``table1.md`` and ``curves.csv`` (mean score and steps per episode) under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(results, smooth)
    paths = {"csv": out / "table1.csv", "md": out / "table1.md", "curves": out / "curves.csv"}
    with open(paths["csv"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["suite"])
        w.writeheader()
        w.writerows(rows)
    paths["md"].write_text(
        "# Table 1 (reproduction)\n\nBest average normalised score within the episode budget (trailing mean over "
        f"{smooth} episodes), episodes and steps to reach 99% of it; paper columns: the paper's Table 1 for the same "
        "method.\n\n" + markdown_table(rows) + "\n")
    with open(paths["curves"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["suite", "agent", "episode", "mean_score", "mean_steps"])
        for r in results:
            curve, steps = r.curve()
            index = r.info.get("episode_index")
            index = range(1, len(curve) + 1) if index is None else index
            for e, s, n in zip(index, curve, steps):
                w.writerow([r.suite, r.agent, int(e), f"{s:.6g}", f"{n:.6g}"])
    return paths
