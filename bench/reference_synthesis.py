#!/usr/bin/env python
"""Reference-style DPD data loop for ``bench/bench_synthesis.py``: one task at a time, Python per step.

Runs in the reference venv (``bench/.ref-venv``, made by ``bench/setup_reference.sh``) with Xenoverse
0.1.14.0's own environment and behaviour solvers, the way its data-generation scripts use them: per
sequence, one ``AnyMDPEnv`` and one task; ``AnyMDPSolverQ`` and ``AnyMDPSolverMBRL`` learn from every step;
``AnyMDPSolverOpt`` gives the oracle actions (gammas 0.5, 0.93, 0.994; the 0.994 one also the label); a
behaviour is drawn from a DPD-like mixture and re-drawn at episode ends; per step the observation, tag,
action, reward and label are appended to Python lists, plus a boundary step after each episode.

Prints one JSON line: steps, seconds (the stepping loop only), setup seconds (task sampling and solver
construction, oracle solves included), steps per second of the loop and end to end. A short warm-up sequence
(numba compilation of the solvers) runs before any timer.

    bench/.ref-venv/bin/python bench/reference_synthesis.py --steps 20000 --ns 16 --seq-len 4000
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

try:
    from xenoverse.anymdp import AnyMDPEnv, AnyMDPSolverMBRL, AnyMDPSolverOpt, AnyMDPSolverQ, AnyMDPTaskSampler

    MISSING: ImportError | None = None
except ImportError as exc:  # not the reference venv: main() says so in one line, after --help has had its say
    MISSING = exc

# behaviour: (kind, tag); kinds: q, mb, opt0.5, opt0.93, opt0.994, noisy0.93, noisy0.994, random
MIXTURE = [("random", 6, 0.1), ("mb", 4, 0.1), ("q", 5, 0.1), ("mb_opt", 4, 0.4), ("noisy0.93", 2, 0.1),
           ("noisy0.994", 3, 0.1), ("opt0.5", 1, 0.02), ("opt0.93", 2, 0.03), ("opt0.994", 3, 0.05)]


def run_sequence(ns: int, na: int, T: int, seed: int, rng: np.random.Generator) -> tuple[int, float, float]:
    t0 = time.perf_counter()
    task = AnyMDPTaskSampler(ns, na, seed=seed)
    env = AnyMDPEnv(max_steps=int(np.ceil(task["max_steps"])))
    env.set_task(task)
    q, mb = AnyMDPSolverQ(env), AnyMDPSolverMBRL(env)
    opt = {g: AnyMDPSolverOpt(env, gamma=g) for g in (0.5, 0.93, 0.994)}
    t_setup = time.perf_counter() - t0
    weights = np.array([w for _, _, w in MIXTURE])
    weights /= weights.sum()
    record: dict[str, list] = {k: [] for k in ("obs", "tag", "action", "reward", "label")}
    t0 = time.perf_counter()
    state, _ = env.reset()
    beh = rng.choice(len(MIXTURE), p=weights)
    eps, noise = 1.0, 0.3
    steps = 0
    while steps < T:
        kind, tag, _ = MIXTURE[beh]
        label = opt[0.994].policy(state)
        if kind == "random" or rng.random() < (eps if kind.startswith("noisy") else noise * (kind in ("q", "mb"))):
            action, tag = int(rng.integers(na)), 6
        elif kind == "q":
            action = q.policy(state)
        elif kind in ("mb", "mb_opt"):
            action = mb.policy(state)
        else:
            action = opt[float(kind.removeprefix("noisy").removeprefix("opt"))].policy(state)
        eps = max(eps - rng.random() / (ns * na), 0.0)
        nxt, reward, terminated, truncated, _ = env.step(action)
        q.learner(state, action, nxt, reward, terminated, truncated)
        mb.learner(state, action, nxt, reward, terminated, truncated)
        for k, v in zip(record, (state, tag, action, reward, label)):
            record[k].append(v)
        steps += 1
        state = nxt
        if terminated or truncated:
            for k, v in zip(record, (state, 7, na, 0.0, -1)):
                record[k].append(v)
            steps += 1
            state, _ = env.reset()
            if rng.random() < 0.2:
                beh = rng.choice(len(MIXTURE), p=weights)
    return steps, time.perf_counter() - t0, t_setup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--seq-len", type=int, default=4000)
    ap.add_argument("--ns", type=int, default=16)
    ap.add_argument("--na", type=int, default=5)
    args = ap.parse_args()
    if MISSING is not None:
        sys.exit(
            f"reference_synthesis.py: cannot import xenoverse ({MISSING}); it runs in the reference venv: "
            "bash bench/setup_reference.sh, then bench/.ref-venv/bin/python bench/reference_synthesis.py"
        )
    rng = np.random.default_rng(0)
    run_sequence(args.ns, args.na, 200, 999, rng)  # warm-up: numba compilation of the solvers, first imports
    total, secs, setup, seed = 0, 0.0, 0.0, 1000
    while total < args.steps:
        n, dt, ds = run_sequence(args.ns, args.na, min(args.seq_len, args.steps - total), seed, rng)
        total, secs, setup, seed = total + n, secs + dt, setup + ds, seed + 1
    print(json.dumps({"steps": total, "seconds": secs, "setup_seconds": setup, "steps_per_s": total / secs,
                      "e2e_steps_per_s": total / (secs + setup)}))


if __name__ == "__main__":
    main()
