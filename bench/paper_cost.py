"""What the paper profile's notebooks 04 and 05 cost on an 8-GPU node: a projection from the parameter files.

Every count comes from ``params/paper/04_evaluation.yaml`` and ``params/paper/05_ablations.yaml`` (suites, task
counts, episodes, modes, models, steps, studies, variants, seeds, iterations); episode lengths are measured here
(the uniform-random policy's mean on a few tasks of each suite: an upper bound for a learner that reaches goals);
two rates are assumptions, given on the command line and printed with the table:

- ``--iter-s``: seconds per training iteration of one variant on one GPU (default 5.3, the paper's rate for its
  RWKV-7 18 x 512 on 5 x 8K-step sequences, as the 05 file's comments use);
- ``--step-ms``: milliseconds of one online step of the paper's model for a whole batch of tasks (the evaluation
  runs every task of a suite as one batch, step after step with the memory carried; default 4 ms, kernel-launch
  bound at 18 blocks; ``bench/gpu_check.py`` measures it on a GPU).

OmniRL's online runs are sequential in steps, so a run costs its steps x ``step-ms`` whatever the batch; runs of
different suites, models and modes go to different GPUs (``devices``). The baselines (TQL-UCB compiled, PPO) run
on the CPU and are costed by ``bench/table1_baselines.py`` and ``bench/ppo_cost.py``.

    .venv/bin/python bench/paper_cost.py                        # prints the table (about a minute)
    .venv/bin/python bench/paper_cost.py --step-ms 6 --iter-s 8
    .venv/bin/python bench/paper_cost.py --smoke                # seconds: one task, two episodes per suite
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omnirl_core.evaluation import EvaluationConfig, RandomAgent, run_agent  # noqa: E402
from omnirl_core.evaluation.protocol import config_suite  # noqa: E402
from omnirl_core.evaluation.suites import suite_spec  # noqa: E402
from omnirl_core.studies.ablations import AblationConfig, run_key, variant_configs  # noqa: E402
from omnirl_core.studies.cross_suite import eval_settings  # noqa: E402
from omnirl_core.workbook import load_config  # noqa: E402


def episode_length(cfg: EvaluationConfig, name: str, tasks: int, episodes: int) -> float:
    """Mean steps per episode of the uniform-random policy on ``tasks`` tasks of suite ``name``."""
    suite = config_suite(cfg, name, tasks)
    res = run_agent(suite, RandomAgent(), episodes, seed=0)
    lengths = np.diff(np.concatenate([np.zeros((res.steps.shape[0], 1)), res.steps], axis=1), axis=1)
    return float(np.nanmean(lengths))


def evaluation_rows(cfg: EvaluationConfig, args) -> tuple[list[str], float]:
    """Per suite: OmniRL's sequential steps over its models and modes, and the GPU-hours at ``step_ms``."""
    models = 1 + bool(cfg.post_checkpoint)
    rows, total, longest = [], 0.0, (0.0, "")
    for name in cfg.suites:
        length = episode_length(cfg, name, args.tasks, args.episodes)
        per_mode = {m: cfg.n_episodes * length + (cfg.demo_episodes * length if m != "online" else 0)
                    for m in cfg.modes}
        steps = models * sum(per_mode.values())
        hours = steps * args.step_ms / 1000 / 3600
        total += hours
        longest = max(longest, (hours, name))
        rows.append(f"| {name} | {length:.0f} | {models} x {len(cfg.modes)} | {steps / 1e6:.1f}M | {hours:.1f} |")
    ic = cfg.incontext
    if ic.enabled:
        steps = models * len(ic.suites) * ic.steps
        hours = steps * args.step_ms / 1000 / 3600
        total += hours
        rows.append(f"| in-context measure ({len(ic.suites)} suites) | - | {models} | {steps / 1e6:.2f}M | "
                    f"{hours:.2f} |")
    lc = cfg.long_context
    if lc.enabled:
        steps = len(lc.checkpoints) * lc.steps
        hours = steps * args.step_ms / 1000 / 3600
        total += hours
        rows.append(f"| long-context measure | - | {len(lc.checkpoints)} | {steps / 1e6:.2f}M | {hours:.1f} |")
    args.longest = longest
    return rows, total


def ablation_rows(cfg: AblationConfig, ev: EvaluationConfig, args) -> tuple[list[str], float, float]:
    """Per study: distinct training runs (variants shared across studies count once, in the first study that
    has them), their GPU-hours at ``iter_s``, and the online test steps of every (variant, seed)."""
    seen: set[str] = set()
    rows, train_total, test_total = [], 0.0, 0.0
    for study in cfg.studies_to_run:
        suite, steps = eval_settings(cfg, study)
        also = cfg.studies[study].also_suites
        also = cfg.also_suites if also is None else also
        runs, train_h, test_steps = 0, 0.0, 0
        for variant in cfg.studies[study].variants:
            for seed in range(cfg.seeds):
                dataset, training = variant_configs(cfg, study, variant, seed)
                key = run_key(cfg, study, dataset, training)
                fits = [n for n in also if n != suite and suite_spec(n).n_obs <= training.model.ns_max]
                test_steps += steps * (1 + len(fits))
                if key in seen:
                    continue
                seen.add(key)
                runs += 1
                train_h += training.steps * args.iter_s / 3600
        test_h = test_steps * args.step_ms / 1000 / 3600
        train_total += train_h
        test_total += test_h
        rows.append(f"| {study} | {len(cfg.studies[study].variants)} x {cfg.seeds} | {runs} | {train_h:.0f} | "
                    f"{steps:,} | {test_steps / 1e6:.2f}M | {test_h:.1f} |")
    return rows, train_total, test_total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--step-ms", type=float, default=4.0, help="ms per online step of a batch (assumed: 4)")
    p.add_argument("--iter-s", type=float, default=5.3, help="s per training iteration on one GPU (the paper: 5.3)")
    p.add_argument("--gpus", type=int, default=8, help="GPUs of the node")
    p.add_argument("--tasks", type=int, default=4, help="tasks per suite for the episode lengths")
    p.add_argument("--episodes", type=int, default=20, help="random episodes per task for the episode lengths")
    p.add_argument("--smoke", action="store_true", help="seconds: 1 task x 2 episodes per suite for the lengths")
    args = p.parse_args(argv)
    if args.smoke:
        args.tasks, args.episodes = 1, 2
    ev = load_config(EvaluationConfig, ROOT / "params/paper/04_evaluation.yaml")
    if args.smoke:  # Pendulum's model from a few samples: its lengths are 200 steps whatever the model
        ev = replace(ev, pendulum_samples=5, pendulum_reference_episodes=2)
    ab = load_config(AblationConfig, ROOT / "params/paper/05_ablations.yaml")
    print(f"Paper profile, projected: online steps at {args.step_ms:g} ms per batch step (assumed), training at "
          f"{args.iter_s:g} s per iteration per GPU (the paper's rate), {args.gpus} GPUs; episode lengths: the "
          f"uniform-random policy's mean over {args.tasks} tasks x {args.episodes} episodes (an upper bound).\n")
    rows, ev_total = evaluation_rows(ev, args)
    print(f"Notebook 04, OmniRL's runs ({ev.n_episodes:,} episodes, modes {', '.join(ev.modes)}, models: "
          f"checkpoint{' and post_checkpoint' if ev.post_checkpoint else ''}):\n")
    print("| suite | steps per episode | models x modes | sequential steps | GPU-hours |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"| **total** | | | | **{ev_total:.0f}** |\n")
    hours, name = args.longest
    print(f"One suite per GPU at a time: at least {max(ev_total / args.gpus, hours):.0f} h on {args.gpus} GPUs, "
          f"the longest suite ({name}: {hours:.0f} h, its models and modes one after another) setting the floor.\n")
    rows, train_h, test_h = ablation_rows(ab, ev, args)
    print(f"Notebook 05 (studies {', '.join(ab.studies_to_run)}; {ab.eval_tasks} test tasks per suite as one batch):\n")
    print("| study | variants x seeds | distinct training runs | training GPU-hours | test steps | "
          "online steps (all suites) | test GPU-hours |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    total = train_h + test_h
    print(f"| **total** | | | **{train_h:.0f}** | | | **{test_h:.0f}** |\n")
    print(f"Notebook 05 in all: {total:.0f} GPU-hours, {total / args.gpus / 24:.1f} days on {args.gpus} GPUs; "
          f"notebooks 04 and 05 together {(total + ev_total) / args.gpus / 24:.1f} days.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
