"""Scores from the expected reward of each action taken (the pseudo-reward of the bandit literature).

A bandit pull's sampled reward is the arm's mean plus Gaussian noise, and on AnyMDP bandits that noise is as wide
as the gap between the arms, so a score built on it is mostly noise. The pseudo-reward replaces every sampled
reward by its expectation given the state and the action, ``sum_s' P(s'|s, a) R(s, a, s')``: the same runs,
scored by what the chosen actions are worth. Its expectation is the expected return again (so the score keeps
random at 0 and the oracle at 1), and for a bandit it depends on the chosen arm alone: the oracle scores exactly
1 on every pull.

:func:`expected_reward_suite` gives the suite whose environment reports the expected return of each episode in
``infos["final_return"]``; the rewards the agent observes, and every random draw, stay those of the suite's own
environment, so a run on it takes the very steps of the run on the original suite with the same seeds. The copy
holds no ``tasks``, so every run on it goes through that environment (never a compiled replay of the tables).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .suites import Suite, TaskBatchEnv


class ExpectedReturnEnv(TaskBatchEnv):
    """:class:`~omnirl_core.evaluation.suites.TaskBatchEnv` whose ``final_return`` sums expected rewards."""

    def __init__(self, tasks) -> None:
        super().__init__(tasks)
        mean = (self.transition * self.reward).sum(axis=-1)  # [U, ns, na]: E[r | s, a]
        self._flat_mean = mean.ravel()
        self.expected_returns = np.zeros(self.num_envs)

    def reset(self, *, seed=None, options=None):
        out = super().reset(seed=seed, options=options)
        mask = None if options is None else options.get("reset_mask")
        self.expected_returns = np.where(np.ones(self.num_envs, bool) if mask is None else mask, 0.0,
                                         self.expected_returns)
        return out

    def step(self, actions):
        row = self._row_base + self.states * self.na + np.asarray(actions, dtype=np.int64)  # before the step
        obs, rewards, term, trunc, infos = super().step(actions)
        totals = self.expected_returns + self._flat_mean[row]
        done = term | trunc
        self.expected_returns = np.where(done, 0.0, totals)
        infos = {**infos, "final_return": totals, "sampled_return": infos["final_return"]}
        return obs, rewards, term, trunc, infos


def is_bandit(suite: Suite) -> bool:
    """A suite of one-state tabular tasks (every episode one pull)."""
    return suite.tasks is not None and all(t.ns == 1 for t in suite.tasks)


def expected_reward_suite(suite: Suite) -> Suite:
    """``suite`` scored by expected rewards (module docstring); needs its tabular tasks."""
    if suite.tasks is None:
        raise ValueError(f"suite {suite.name} has no tabular tasks, so no expected rewards")
    tasks = suite.tasks
    # No tasks on the copy: the compiled baselines (:mod:`.tql_fast`) replay the task tables themselves and would
    # score the sampled rewards; without tables every run goes through ExpectedReturnEnv.
    return replace(suite, make_env=lambda: ExpectedReturnEnv(tasks), tasks=None,
                   info={**suite.info, "reward": "expected", "tasks": len(tasks)})
