"""Table 1's TQL-UCB column, ours beside the paper's: TQL-UCB, random and the oracle at the paper's budget
(10,000 episodes per task), scored as the paper scores them (5 test episodes after every 100 training
episodes), TQL-UCB tuned per suite over a grid of (c, H) as notebook 04 tunes it. One row per suite: the best
score of each agent with a 95% interval over tasks (the report's bootstrap), the paper's TQL-UCB best score,
the difference, and whether it lies within 5 points. A second table times the compiled path against the numpy
path of the same runs (identical results, checked here too).

    .venv/bin/python bench/table1_baselines.py                  # the quick Table 1's suites, 8 tasks
    .venv/bin/python bench/table1_baselines.py --n-tasks 64     # tighter intervals
    .venv/bin/python bench/table1_baselines.py --smoke          # seconds: 2 suites, 2 tasks, 300 episodes

Run it niced and on one thread on a shared machine (``OMP_NUM_THREADS=1 nice -n 10``); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from omnirl_core.evaluation.baselines import run_fixed, run_tql, tune_tql
from omnirl_core.evaluation.report import table_metrics
from omnirl_core.evaluation.suites import PAPER_TABLE1, build_suite

TABULAR = ["anymdp_1", "anymdp_16", "anymdp_32", "anymdp_64", "anymdp_128", "garnet_16", "cliffwalking", "frozenlake",
           "frozenlake_slippery", "darkroom_6", "darkroom_8", "darkroom_10"]


def _cell(m: dict) -> str:
    lo, hi = (m.get("best_ci") or [np.nan, np.nan])[:2]
    return f"{m['best']:.3f} [{lo:.3f}, {hi:.3f}]"


def compare(args) -> list[str]:
    rows = ["| suite | random | oracle | TQL-UCB (ours) | c, H | paper TQL-UCB | ours - paper | within 5 points |",
            "|---|---|---|---|---|---|---|---|"]
    kw = dict(eval_every=args.eval_every, eval_episodes=args.eval_episodes, seed=args.seed)
    for name in args.suites:
        t0 = time.perf_counter()
        suite = build_suite(name, args.n_tasks)
        window = dict(smooth=args.smooth, smooth_tested=args.smooth)  # test-point curves: the window in episodes
        rnd = table_metrics(run_fixed(suite, "random", args.episodes, **kw), **window)
        orc = table_metrics(run_fixed(suite, "oracle", args.episodes, **kw), **window)
        res, _ = tune_tql(suite, args.c_grid, args.episodes, H_grid=args.H_grid, **window, **kw)
        tql = table_metrics(res, **window)
        paper = PAPER_TABLE1.get(name, {}).get("TQL-UCB", (np.nan,))[0]
        diff = tql["best"] - paper
        rows.append(f"| {name} | {_cell(rnd)} | {_cell(orc)} | {_cell(tql)} | {res.info['c']:g}, {res.info['H']:g} | "
                    f"{paper:.3f} | {diff:+.3f} | {'yes' if abs(diff) <= 0.05 else 'no'} |")
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def timing(args) -> list[str]:
    """Seconds of the same TQL-UCB runs on the compiled and the numpy path (alternated, best of the repeats)."""
    rows = [
        "| suite | tasks x episodes | numpy path (s) | compiled (s) | speed-up | same results |",
        "|---|---|---|---|---|---|",
    ]
    for name, episodes in args.timing:
        suite = build_suite(name, args.n_tasks)
        kw = dict(c=0.1, H=4000.0, eval_every=min(args.eval_every, episodes), eval_episodes=args.eval_episodes,
                  seed=args.seed)
        run_tql(suite, episodes, fast=True, **kw)  # compile and warm up outside the timer
        best = {True: np.inf, False: np.inf}
        out = {}
        for _ in range(args.repeats):
            for fast in (False, True):
                t0 = time.perf_counter()
                out[fast] = run_tql(suite, episodes, fast=fast, **kw)
                best[fast] = min(best[fast], time.perf_counter() - t0)
        same = np.array_equal(out[True].returns, out[False].returns, equal_nan=True)
        rows.append(f"| {name} | {suite.num_envs} x {episodes} | {best[False]:.2f} | {best[True]:.3f} | "
                    f"{best[False] / best[True]:.0f}x | {'yes' if same else 'NO'} |")
        print(f"timing {name}: done", file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--suites", nargs="+", default=TABULAR)
    p.add_argument("--n-tasks", type=int, default=8, help="tasks (or parallel runs) per suite (quick profile: 8)")
    p.add_argument("--episodes", type=int, default=10_000, help="training episodes per task (the paper: 10,000)")
    p.add_argument("--c-grid", type=float, nargs="+", default=[0.1, 1.0, 10.0], help="as the quick profile")
    p.add_argument("--H-grid", type=float, nargs="+", default=[50.0, 200.0, 4000.0], help="as the quick profile")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--smooth", type=int, default=1000,
                   help="trailing window (training episodes) of the curve before its best (quick profile: 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2, help="timing repeats per path")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--smoke", action="store_true", help="a few seconds: 2 suites, 2 tasks, 300 episodes")
    args = p.parse_args(argv)
    args.timing = [("anymdp_16", 200), ("darkroom_6", 500)]
    if args.smoke:
        args.suites, args.n_tasks, args.episodes, args.repeats = ["frozenlake", "darkroom_6"], 2, 300, 1
        args.smooth = min(args.smooth, args.episodes)
        args.timing = [("darkroom_6", 100)]
    print(f"TQL-UCB, random and oracle: {args.episodes} episodes per task, {args.n_tasks} tasks per suite, tested "
          f"with {args.eval_episodes} episodes after every {args.eval_every}; TQL-UCB tuned over c in {args.c_grid} x "
          f"H in {args.H_grid}. Best score: the best of the task-mean curve after a trailing mean over {args.smooth} "
          "training episodes (full windows only), 95% basic bootstrap interval over tasks.\n")
    print("\n".join(compare(args)))
    if not args.no_timing:
        print("\nCompiled path against the numpy path (the same runs, one thread):\n")
        print("\n".join(timing(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
