"""Scoring a learner on test episodes, as the paper scores its TQL-UCB and PPO baselines ("tested 5 episodes
after every 100 training episodes", section 5).

:func:`run_tested` trains an agent with :func:`~omnirl_core.evaluation.runs.run_agent` (its own exploring
episodes are the training episodes) and, each time a run has finished another ``eval_every`` training episodes,
takes a snapshot of the agent's test policy for that run (``agent.test_policy()``, [B, n_obs, na] action
probabilities; TQL-UCB's is greedy w.r.t. Q without the bonus). Each snapshot is then played for
``eval_episodes`` episodes on a separate copy of the suite's environment: the policy is frozen and nothing it
sees is learned from, and those test steps are not counted in the step budget (the paper does not say; its
steps-to-99% only make sense as training experience). Playing a frozen snapshot later gives what playing it at
once would: the test environment and the action draws have their own random streams, keyed by (run seed,
test point).

The result is a :class:`~omnirl_core.evaluation.runs.RunResult` like any other: ``returns[b, k]`` is the mean
return of the test episodes after ``(k + 1) * eval_every`` training episodes of run b, ``steps[b, k]`` the
training steps run b had taken then, ``info["episode_index"]`` the training episode counts, so the report's
Table-1 metrics and the plots read it as a curve against training episodes and steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..workbook.errors import InputError
from .runs import RunResult, run_agent
from .streams import EnvStreams, env_seeds
from .suites import Suite

TEST_SALT = 0x7E57


def test_seeds(seeds: Sequence[int], k: int) -> list[int]:
    """Seeds of the test episodes at test point ``k`` of the runs with ``seeds`` (apart from the training ones)."""
    out = []
    for s in seeds:
        s = int(s) & 0xFFFFFFFFFFFFFFFF
        ss = np.random.SeedSequence([s & 0xFFFFFFFF, s >> 32, int(k), TEST_SALT])
        out.append(int(ss.generate_state(2, np.uint32).view(np.uint64)[0]))
    return out


test_seeds.__test__ = False  # not a pytest test


def play_policy(suite: Suite, probs: np.ndarray, episodes: int, seeds: Sequence[int], env=None) -> np.ndarray:
    """[B] mean return of ``episodes`` episodes of each run's frozen policy ``probs[b]`` ([B, n_obs, na] action
    probabilities) on a batched environment of ``suite`` reset with ``seeds`` (``env``: one to reuse)."""
    B = suite.num_envs
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (B, suite.n_obs, suite.na):
        raise ValueError(f"policy of shape {probs.shape}, the suite needs ({B}, {suite.n_obs}, {suite.na})")
    cdf = np.cumsum(probs, axis=-1)
    cdf /= cdf[..., -1:]
    env = env if env is not None else suite.make_env()
    rng = EnvStreams([(int(s) ^ 0xA5A5A5A5A5A5A5A5) & 0xFFFFFFFFFFFFFFFF for s in seeds])
    obs, _ = env.reset(seed=list(seeds))
    count, total, rows = np.zeros(B, np.int64), np.zeros(B), np.arange(B)
    while (count < episodes).any():
        u = rng.random(B)
        actions = np.minimum((cdf[rows, obs] <= u[:, None]).sum(axis=1), suite.na - 1)
        obs, _, term, trunc, infos = env.step(actions)
        ended = (term | trunc) & (count < episodes)
        total[ended] += infos["final_return"][ended]
        count[ended] += 1
    return total / episodes


def run_tested(suite: Suite, agent, n_episodes: int, *, eval_every: int = 100, eval_episodes: int = 5,
               seed: int | Sequence[int] = 0, max_steps: int | None = None, progress: bool = False,
               desc: str | None = None) -> tuple[RunResult, RunResult]:
    """(test-episode result, training-episode result) of ``agent`` trained for ``n_episodes`` episodes per run
    (see the module docstring). ``agent`` needs ``test_policy() -> [B, n_obs, na]``. Test point k of a run that
    a ``max_steps`` cap stopped before it is NaN."""
    n_episodes, eval_every, eval_episodes = int(n_episodes), int(eval_every), int(eval_episodes)
    K = n_episodes // eval_every if eval_every >= 1 else 0
    if K < 1 or eval_episodes < 1:
        raise InputError(f"no test point: n_episodes ({n_episodes}) must be at least eval_every ({eval_every}) "
                         f"and eval_episodes ({eval_episodes}) at least 1")
    if not callable(getattr(agent, "test_policy", None)):
        raise InputError(f"agent {agent.name} has no test policy (test_policy()) to score on test episodes")
    B = suite.num_envs
    seeds = env_seeds(seed, B) if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    returns, steps = np.full((B, K), np.nan), np.full((B, K), np.nan)
    pending: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # k -> (policies [B, n_obs, na], taken [B])
    test_env = suite.make_env()

    def flush(k: int) -> None:
        probs, taken = pending.pop(k)
        probs[~taken] = 1.0 / suite.na  # runs that never got here: played, then discarded
        played = play_policy(suite, probs, eval_episodes, test_seeds(seeds, k), env=test_env)
        returns[taken, k] = played[taken]

    def on_episodes(ended: np.ndarray, n_done: np.ndarray, own_steps: np.ndarray) -> None:
        hit = ended & (n_done % eval_every == 0) & (n_done // eval_every <= K)
        if not hit.any():
            return
        policy = np.asarray(agent.test_policy(), dtype=np.float32)
        for b in np.flatnonzero(hit):
            k = int(n_done[b] // eval_every) - 1
            if k not in pending:
                pending[k] = (np.zeros((B, suite.n_obs, suite.na), np.float32), np.zeros(B, bool))
            pending[k][0][b] = policy[b]
            pending[k][1][b] = True
            steps[b, k] = own_steps[b]
            if pending[k][1].all():
                flush(k)

    training = run_agent(suite, agent, n_episodes, seed=seeds, max_steps=max_steps, progress=progress, desc=desc,
                         on_episodes=on_episodes)
    for k in sorted(pending):
        flush(k)
    info = {"episode_index": ((np.arange(K) + 1) * eval_every).tolist(), "eval_every": eval_every,
            "eval_episodes": eval_episodes, "scoring": "test", "batched_steps": training.info["batched_steps"]}
    tested = RunResult(suite=suite.name, agent=agent.name, returns=returns, steps=steps, r_oracle=suite.r_oracle,
                       r_random=suite.r_random, valid=suite.valid, info=info)
    return tested, training
