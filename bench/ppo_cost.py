#!/usr/bin/env python
"""PPO's cost: stable-baselines3 PPO's rate on this CPU (training steps per CPU-second of one process on one thread),
and the paper profile's PPO column projected from it, before and after held-out tuning and worker processes.

Measured: short PPO runs (``omnirl_core.evaluation.ppo.run_ppo``, tested as the profile tests: 5 episodes after
every 100) on a few suites, one process, one thread; the rate is training steps over the process's CPU seconds
(on a shared machine the wall-clock also counts other work), the test episodes' time included (their steps are
not training steps). Surveyed: the mean steps per episode of the
uniform-random and the oracle policy on each suite's first tasks (the compiled baseline path; Pendulum on the
numpy path). Projected, for every suite of the paper profile (``params/paper/04_evaluation.yaml``: its suites,
n_tasks, baseline episodes, PPO grid, ppo_tune_tasks):

- environment steps of one run = episodes x steps per episode, where steps per episode is the larger of the
  random and the oracle policy's mean (a learning run moves from the one towards the other; it may end its
  episodes earlier or, stuck in a loop, run them to the cap, which the table also shows);
- CPU-hours before = grid x tasks runs (the grid on the reported tasks), after = grid x ppo_tune_tasks + tasks;
- wall-clock on a node of ``--cores`` cores with ppo_processes = cores: runs of one suite take the same time,
  (ceil(grid x tune_tasks / cores) + ceil(tasks / cores)) runs one after another (the chosen setting's runs
  start when the tuning is done); before, ceil(grid x tasks / cores) runs (processes alone) and grid x tasks
  (today's one process).

    .venv/bin/python bench/ppo_cost.py                     # about 2-3 minutes on one core
    .venv/bin/python bench/ppo_cost.py --cores 64 --out bench/results/ppo_cost.md
    .venv/bin/python bench/ppo_cost.py --smoke             # seconds: tiny runs, checks that the script runs

Run it on one thread (``OMP_NUM_THREADS=1``, set here before numpy is imported); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# measured suite -> (tasks, training episodes per task): a few thousand episodes in all, about 70 s on one core
MEASURE = {"anymdp_16": (2, 200), "frozenlake": (2, 1000), "darkroom_6": (4, 300), "pendulum_g9.8": (1, 50)}
SMOKE = {"frozenlake": (1, 100)}
FAMILIES = ("anymdp_", "garnet_", "cliffwalking", "frozenlake", "pendulum_", "darkroom_")
SAME_RATE = {"anymdp_": "anymdp_16", "garnet_": "anymdp_16", "cliffwalking": "frozenlake", "frozenlake": "frozenlake",
             "pendulum_": "pendulum_g9.8", "darkroom_": "darkroom_6"}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(x.split(":", 1)[1].strip() for x in lines if x.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _family(name: str) -> str:
    return next((f for f in FAMILIES if name.startswith(f)), name)


def measure(plan: dict[str, tuple[int, int]], eval_every: int, eval_episodes: int, seed: int) -> dict[str, dict]:
    """Rate of PPO on each suite of ``plan``: training steps per CPU-second of one process on one thread (its CPU
    time, not the wall-clock, so that other work on a shared machine does not lower it)."""
    import torch

    from omnirl_core.evaluation import build_suite
    from omnirl_core.evaluation.ppo import run_ppo

    torch.set_num_threads(1)
    out = {}
    for name, (n_tasks, episodes) in plan.items():
        suite = build_suite(name, n_tasks, pendulum_samples=50, pendulum_reference_episodes=8)
        every = min(eval_every, episodes)
        t0, c0 = time.perf_counter(), time.process_time()
        res = run_ppo(suite, episodes, eval_every=every, eval_episodes=eval_episodes, seed=seed)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        steps = float(np.nansum(res.steps[:, -1]))
        out[name] = {"tasks": n_tasks, "episodes": episodes, "steps": steps, "seconds": seconds, "cpu": cpu,
                     "rate": steps / cpu, "per_episode": steps / (n_tasks * episodes)}
        _say(f"measured {name}: {steps:.0f} steps in {seconds:.1f} s ({cpu:.1f} s of CPU)")
    return out


def survey(names: list[str], n_tasks: int, episodes: int) -> dict[str, dict]:
    """Mean steps per episode of the random and the oracle policy, and the episode cap, on each suite."""
    from omnirl_core.evaluation import build_suite
    from omnirl_core.evaluation.baselines import run_fixed

    out = {}
    for name in names:
        pendulum = name.startswith("pendulum_")
        n, eps = (min(n_tasks, 4), min(episodes, 10)) if pendulum else (n_tasks, episodes)
        suite = build_suite(name, n, pendulum_samples=50, pendulum_reference_episodes=8)
        per = {}
        for agent in ("random", "oracle"):
            res = run_fixed(suite, agent, eps, scoring="training")
            per[agent] = float(np.nanmean(res.steps[:, -1])) / eps
        cap = float(np.mean([t.max_steps for t in suite.tasks])) if suite.tasks else 200.0  # Pendulum: 200
        out[name] = {**per, "cap": cap, "tasks": suite.num_envs, "episodes": eps}
        _say(f"surveyed {name}")
    return out


def project(cfg, rates: dict, lengths: dict, cores: int) -> tuple[list[str], dict]:
    """The projection table (Markdown lines) and its totals."""
    grid = len(cfg.ppo_lr_grid) * len(cfg.ppo_ent_grid)
    T = cfg.ppo_tune_tasks
    fallback = float(np.mean([r["rate"] for r in rates.values()]))
    rows = [f"| suite | tasks | episodes per run | steps per episode: random, oracle, cap | steps per episode used | "
            f"rate (steps per CPU-s, from) | env steps before | CPU-h before | env steps after | CPU-h after | "
            f"wall h, {cores} cores, before | wall h, {cores} cores, after |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    tot = dict(before_steps=0.0, after_steps=0.0, before_h=0.0, after_h=0.0, wall_one=0.0, wall_before=0.0,
               wall_after=0.0, cap_before_h=0.0, cap_after_h=0.0)
    from omnirl_core.evaluation.suites import build_suite

    for name in cfg.suites:
        B = build_suite(name, cfg.n_tasks, pendulum_samples=5, pendulum_reference_episodes=2).num_envs \
            if name.startswith("darkroom_") else cfg.n_tasks  # DarkRoom rounds its task count to corners
        episodes = cfg.baseline_budget()  # notebook 04's PPO budget on every suite
        L = lengths[name]
        per_ep = max(L["random"], L["oracle"])
        src = SAME_RATE.get(_family(name))
        rate, where = (rates[src]["rate"], src) if src in rates else (fallback, "mean of the measured")
        run_steps = episodes * per_ep
        run_h = run_steps / rate / 3600
        before_runs, after_runs = grid * B, grid * T + B
        wall_before = math.ceil(before_runs / cores) * run_h
        wall_after = (math.ceil(grid * T / cores) + math.ceil(B / cores)) * run_h
        cap_h = episodes * L["cap"] / rate / 3600
        for key, value in (("before_steps", before_runs * run_steps), ("after_steps", after_runs * run_steps),
                           ("before_h", before_runs * run_h), ("after_h", after_runs * run_h),
                           ("wall_one", before_runs * run_h), ("wall_before", wall_before),
                           ("wall_after", wall_after), ("cap_before_h", before_runs * cap_h),
                           ("cap_after_h", after_runs * cap_h)):
            tot[key] += value
        rows.append(f"| {name} | {B} | {episodes:,} | {L['random']:.1f}, {L['oracle']:.1f}, {L['cap']:.0f} | "
                    f"{per_ep:.1f} | {rate:,.0f} ({where}) | {before_runs * run_steps / 1e9:.2f}B | "
                    f"{before_runs * run_h:,.0f} | {after_runs * run_steps / 1e9:.2f}B | {after_runs * run_h:,.0f} | "
                    f"{wall_before:.1f} | {wall_after:.1f} |")
    rows.append(f"| **all {len(cfg.suites)} suites** | | | | | | {tot['before_steps'] / 1e9:.1f}B | "
                f"{tot['before_h']:,.0f} | {tot['after_steps'] / 1e9:.1f}B | {tot['after_h']:,.0f} | "
                f"{tot['wall_before']:.1f} | {tot['wall_after']:.1f} |")
    return rows, tot


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cores", type=int, default=96, help="CPU cores of the node of the projection (ppo_processes = "
                   "cores); default 96")
    p.add_argument("--params", default="params/paper/04_evaluation.yaml", help="the profile projected")
    p.add_argument("--survey-tasks", type=int, default=32, help="tasks per suite of the steps-per-episode survey")
    p.add_argument("--survey-episodes", type=int, default=100, help="episodes per task of the survey")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the report to this file")
    p.add_argument("--smoke", action="store_true", help="seconds: one tiny measured run, a small survey")
    args = p.parse_args(argv)
    if args.cores < 1:
        p.error(f"--cores {args.cores}: must be >= 1")

    import stable_baselines3
    import torch

    from omnirl_core.evaluation import EvaluationConfig
    from omnirl_core.workbook import load_config

    cfg = load_config(EvaluationConfig, ROOT / args.params)
    plan = SMOKE if args.smoke else MEASURE
    if args.smoke:
        args.survey_tasks, args.survey_episodes = 2, 10
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the library's notes are progress here, not the report
        rates = measure(plan, cfg.ppo_eval_every, cfg.eval_episodes, args.seed)
        lengths = survey(list(cfg.suites), args.survey_tasks, args.survey_episodes)
    rows, tot = project(cfg, rates, lengths, args.cores)
    grid = len(cfg.ppo_lr_grid) * len(cfg.ppo_ent_grid)
    at_once = len(cfg.devices) or cfg.cpu_processes
    command = "OMP_NUM_THREADS=1 .venv/bin/python bench/ppo_cost.py " + shlex.join(argv if argv is not None
                                                                                   else sys.argv[1:])
    lines = [
        f"`{command.strip()}`",
        "",
        f"Machine: {_cpu_model()}, {os.cpu_count()} cores; python "
        f"{platform.python_version()}, torch {torch.__version__}, stable-baselines3 {stable_baselines3.__version__}; "
        f"one process, one thread; load average {load_start} at start, "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at end; {time.perf_counter() - t0:.0f} s in all.",
        "",
        "PPO's rate on this CPU (SB3 defaults of the workbook: n_steps 256, batch 64, 10 epochs, MlpPolicy; "
        f"tested with {cfg.eval_episodes} episodes after every {cfg.ppo_eval_every}, test time included; the rate is "
        "over the process's CPU time, which a shared machine's other work does not inflate):",
        "",
        "| suite | tasks x episodes | training steps | wall s | CPU s | steps per CPU-second (1 thread) | "
        "steps per episode |",
        "|---|---|---|---|---|---|---|",
        *[f"| {n} | {r['tasks']} x {r['episodes']:,} | {r['steps']:,.0f} | {r['seconds']:.1f} | {r['cpu']:.1f} | "
          f"{r['rate']:,.0f} | {r['per_episode']:.1f} |" for n, r in rates.items()],
        "",
        f"Projection for {args.params}: {len(cfg.suites)} suites, {cfg.n_tasks} tasks, "
        f"{cfg.baseline_budget():,} episodes per run, grid {len(cfg.ppo_lr_grid)} x {len(cfg.ppo_ent_grid)} = {grid}, "
        f"ppo_tune_tasks {cfg.ppo_tune_tasks}; before: the grid on every reported task (ppo_tune_tasks 0), after: "
        f"the grid on {cfg.ppo_tune_tasks} held-out tasks, then the chosen setting on every task. Wall-clock on "
        f"{args.cores} cores with ppo_processes = {args.cores}, suites one after another (today's one process "
        f"takes the CPU-hours before as wall-clock hours).",
        "",
        *rows,
        "",
        f"- Before: {tot['before_h']:,.0f} CPU-hours ({tot['before_h'] / 24 / 365:.1f} years in one process); "
        f"after: {tot['after_h']:,.0f} CPU-hours ({tot['before_h'] / tot['after_h']:.1f}x fewer), "
        f"{tot['wall_after']:.0f} hours of wall-clock on {args.cores} cores ({tot['wall_before']:.0f} with processes "
        f"alone).",
        f"- Steps per episode: the larger of the random and the oracle policy's mean over the survey's "
        f"{args.survey_tasks} first tasks x {args.survey_episodes} episodes (Pendulum: {min(args.survey_tasks, 4)} x "
        f"{min(args.survey_episodes, 10)}; its episodes always run to 200). A learning run moves from random towards "
        "oracle episodes and may end episodes earlier than either; a run stuck in a loop runs them to the cap. "
        "With every episode at its cap the column would take "
        f"{tot['cap_before_h']:,.0f} CPU-hours before and {tot['cap_after_h']:,.0f} after (an upper bound).",
        "- Rates: each suite takes the rate measured on its family's suite (AnyMDP and Garnet: anymdp_16; "
        "CliffWalking and FrozenLake: frozenlake; DarkRoom: darkroom_6; Pendulum: pendulum_g9.8). A short run "
        "counts PPO's start-up and its first, longest test episodes, so the rate is if anything low.",
        f"- Wall-clock assumes runs of equal length and {args.cores} free cores for one suite at a time. The profile "
        f"runs {at_once} suites at once (devices), so it sets ppo_processes to the cores over {at_once} "
        f"(ppo_processes {cfg.ppo_processes}); the column then takes about CPU-hours / cores, "
        f"{tot['after_h'] / args.cores:.0f} hours on {args.cores} cores.",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
