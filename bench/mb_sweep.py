"""The model-based learner's planning sweep: ours (Jacobi) against the reference's (Gauss-Seidel, reward prior).

Usage:
    python bench/mb_sweep.py            # about a minute: 64 AnyMDP(16, 5) tasks x 8,192 steps, three sweeps
    python bench/mb_sweep.py --smoke    # seconds: 4 tasks x 512 steps (checks that the script runs)

The learner (``omnirl_core.world.learners.ModelBasedLearner``) plans with one value-iteration sweep at every
episode end, warm-started from its previous Q. Ours is a Jacobi sweep: every Q(s, a) from the previous Q. The
reference (airsoul ``anymdp_behavior_solver.py``) sweeps the states in order, in place (Gauss-Seidel: a state
later in the sweep already sees the values updated in it), and its reward estimate starts at 0 with a pseudo-count
of 0.01. The variants here change only the sweep (and, for the third, the reward estimate); everything else is
our learner, run on the same tasks with the same seeds. The table gives the learner's own episodes, scored
(R - R_random) / (R_oracle - R_random) per task, averaged in each quarter of the run, with 95% intervals over
tasks, and the sweeps' difference per task in the last quarter.
"""

from __future__ import annotations

import argparse

import numpy as np

from omnirl_core.evaluation.runs import normalised_score
from omnirl_core.world import BatchedAnyMDPEnv, ModelBasedLearner, run_policy, sample_anymdp
from omnirl_core.world.oracle import oracle_return, random_return


class GaussSeidelLearner(ModelBasedLearner):
    """Our learner with the reference's sweep (``_sweep``): states in order, each using the values already updated.
    ``reward_prior``: the reward estimate starts at 0 with this pseudo-count (reference: 0.01; 0: plain mean)."""

    def __init__(self, *args, reward_prior: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reward_prior = float(reward_prior)

    def _sweep(self, idx: np.ndarray) -> np.ndarray:
        P = self._model(idx)  # [k, ns, na, ns]
        n = self.counts[idx]
        r = self.r_mean[idx] * n / (n + self.reward_prior) if self.reward_prior else self.r_mean[idx]
        terminal = self.terminal[idx]
        stay = 1.0 - self.term_rate[idx]  # [k, ns]
        gamma = self._gamma[idx, None]
        Q = self.Q[idx].copy()
        V = np.where(terminal, 0.0, Q.max(axis=-1))  # [k, ns], updated in place as the sweep goes
        expected_r = np.einsum("ksan,ksan->ksa", P, r)
        for s in range(self.ns):
            Q[:, s] = expected_r[:, s] + gamma * np.einsum("kan,kn->ka", P[:, s], stay * V)
            Q[terminal[:, s], s] = 0.0
            V[:, s] = np.where(terminal[:, s], 0.0, Q[:, s].max(axis=-1))
        return Q


def quarter_scores(returns: list[list[float]], ends: list[list[int]], steps: int, r_orc, r_rnd) -> np.ndarray:
    """[tasks, 4] mean normalised score of the episodes ending in each quarter of the run (NaN: none ended)."""
    out = np.full((len(returns), 4), np.nan)
    for b, (rets, at) in enumerate(zip(returns, ends)):
        rets, q = np.asarray(rets), np.minimum(np.asarray(at) * 4 // steps, 3)
        score = normalised_score(rets[None], r_orc[b:b + 1], r_rnd[b:b + 1])[0]
        for k in range(4):
            if np.any(q == k):
                out[b, k] = score[q == k].mean()
    return out


def run(learner, tasks, steps: int, seed: int) -> np.ndarray:
    env = BatchedAnyMDPEnv(tasks)
    learner.reset(tasks, np.random.default_rng(seed))
    ends: list[list[int]] = [[] for _ in tasks]

    def record(t, rec):
        for b in np.flatnonzero(rec["terminated"] | rec["truncated"]):
            ends[b].append(t)

    returns = run_policy(env, learner, steps, np.random.default_rng(seed + 1), seed=seed, callback=record)
    return quarter_scores(returns, ends, steps, oracle_return(tasks), random_return(tasks))


def mean_ci(x: np.ndarray) -> str:
    x = x[np.isfinite(x)]
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else np.nan
    return f"{x.mean():.3f} [{x.mean() - half:.3f}, {x.mean() + half:.3f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=None, help="AnyMDP tasks [64; smoke 4]")
    p.add_argument("--steps", type=int, default=None, help="steps per task [8192; smoke 512]")
    p.add_argument("--ns", type=int, default=16, help="states per task [16]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="seconds: tiny sizes (checks that the script runs)")
    a = p.parse_args()
    n_tasks = a.tasks or (4 if a.smoke else 64)
    steps = a.steps or (512 if a.smoke else 8192)
    rng = np.random.default_rng(a.seed)
    tasks = [sample_anymdp(a.ns, 5, rng) for _ in range(n_tasks)]
    # the behaviour solver's setting of the synthesis (mb_oracle mixtures: gamma 0.99, c 0.005)
    learners = {"Jacobi (ours)": ModelBasedLearner(gamma=0.99, c=0.005),
                "Gauss-Seidel": GaussSeidelLearner(gamma=0.99, c=0.005),
                "Gauss-Seidel + reward prior 0.01 (reference)": GaussSeidelLearner(gamma=0.99, c=0.005,
                                                                                   reward_prior=0.01)}
    scores = {name: run(learner, tasks, steps, a.seed) for name, learner in learners.items()}
    print(f"Model-based learner on {n_tasks} AnyMDP({a.ns}, 5) tasks x {steps} steps (gamma 0.99, c 0.005): "
          "mean normalised score of its episodes per quarter of the run, 95% interval over tasks.\n")
    print("| sweep | Q1 | Q2 | Q3 | Q4 |\n|---|---|---|---|---|")
    for name, s in scores.items():
        print(f"| {name} | " + " | ".join(mean_ci(s[:, k]) for k in range(4)) + " |")
    # the two sweeps must share their fixed point: iterate each from the same Q on the model the run ended with
    gs, every = learners["Gauss-Seidel"], np.arange(n_tasks)
    q0 = gs.Q.copy()
    for _ in range(3000):  # gamma 0.99: 0.99^3000 ~ 1e-13
        gs.Q[every] = ModelBasedLearner._sweep(gs, every)
    q_jacobi, gs.Q = gs.Q.copy(), q0
    for _ in range(3000):
        gs.Q[every] = gs._sweep(every)
    gap = float(np.abs(gs.Q - q_jacobi).max() / max(np.abs(q_jacobi).max(), 1e-12))
    print("\nFixed point check (3,000 sweeps of each from the same Q): "
          f"largest |Q_GS - Q_Jacobi| / max |Q| = {gap:.1e}")
    base = scores["Jacobi (ours)"][:, 3]
    print("\n| against Jacobi, last quarter | difference per task [95% CI] |\n|---|---|")
    for name, s in list(scores.items())[1:]:
        print(f"| {name} | {mean_ci(s[:, 3] - base)} |")


if __name__ == "__main__":
    main()
