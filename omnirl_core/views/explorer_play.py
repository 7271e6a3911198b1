"""What the explorer plays (:mod:`.explorer`): the policies it offers for a task, the default, the shipped model's
standing, and one run of a policy in a task (:func:`play_policy`, :class:`PlayResult`), all without widgets.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import world
from ..world import oracle
from ..world.task import Task

NS_CHOICES = (1, 8, 12, 16, 24, 32, 48, 64, 96, 128)
POLICIES = {
    "oracle": "oracle (greedy, γ=0.994)",
    "random": "random",
    "q_ucb": "Q-learning (UCB)",
    "model_based": "model-based learner",
    "omnirl": "OmniRL-tiny (shipped model, in context)",
}
LEARNERS = ("oracle", "random", "q_ucb", "model_based")  # offered for every task
# The shipped model is the default policy only where its recorded online evaluation puts it at least this far from
# the random policy (0) towards the oracle (1); elsewhere it is offered and the oracle is the default.
SHIPPED_DEFAULT_MIN_SCORE = 0.5


@dataclass
class PlayResult:
    """One run of ``steps`` environment steps (episodes restart automatically)."""

    policy: str
    states: np.ndarray  # [T] inner state in which each action was taken
    actions: np.ndarray  # [T]
    rewards: np.ndarray  # [T]
    dones: np.ndarray  # [T] episode ended after this step
    oracle_return: float  # exact expected episode return of the oracle
    random_return: float  # exact expected episode return of the uniform-random policy
    seconds: float = 0.0
    horizon: int | None = None  # most steps an episode of the task can last (None: not known)
    episode_returns: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        ends = np.flatnonzero(self.dones)
        bounds = np.concatenate([[-1], ends])
        self.episode_returns = np.array([self.rewards[bounds[i] + 1: bounds[i + 1] + 1].sum()
                                         for i in range(len(ends))])

    @property
    def steps(self) -> int:
        return int(len(self.states))

    @property
    def total_return(self) -> float:
        """Sum of all rewards of the run."""
        return float(self.rewards.sum())

    @property
    def n_episodes(self) -> int:
        """Number of episodes that finished within the run."""
        return int(len(self.episode_returns))

    @property
    def mean_episode_return(self) -> float:
        """Mean return of the finished episodes (NaN when none finished; :meth:`episodes_text` says so in words)."""
        return float(self.episode_returns.mean()) if len(self.episode_returns) else float("nan")

    def episodes_text(self) -> str:
        """The finished episodes in words: their number and mean return, or that none finished in the run."""
        if not self.n_episodes:
            longest = f" (an episode of this task lasts up to {self.horizon} steps)" if self.horizon else ""
            return f"no episode finished in {self.steps} steps{longest}"
        noun = "episode" if self.n_episodes == 1 else "episodes"
        return f"{self.n_episodes} finished {noun}, mean episode return {self.mean_episode_return:.3f}"


def make_policy(name: str):
    """A fresh batched policy of :mod:`omnirl_core.world.learners` by its key in :data:`POLICIES`."""
    if name == "oracle":
        return world.OraclePolicy(gamma=oracle.ORACLE_GAMMA)
    if name == "random":
        return world.RandomPolicy()
    if name == "q_ucb":
        return world.QLearner(rule="ucb")
    if name == "model_based":
        return world.ModelBasedLearner()
    raise ValueError(f"unknown policy {name!r}; choose one of {sorted(POLICIES)}")


_SHIPPED_CACHE: dict[str, tuple] = {}


def shipped_model_covering(n_obs: int, na: int):
    """The :class:`~omnirl_core.evaluation.models.ShippedModel` trained for the fewest states that still covers
    ``n_obs`` observation ids with exactly ``na`` actions (the number it was trained with), or None."""
    from ..evaluation.models import shipped_models

    for info in shipped_models():  # fewest states first
        if info.ns_max >= int(n_obs) and info.na == int(na):
            return info
    return None


def _not_covered(n_obs: int, na: int) -> str:
    from ..evaluation.models import shipped_models

    have = ", ".join(f"{m.name} (ns <= {m.ns_max}, na = {m.na})" for m in shipped_models()) or "none"
    return f"no shipped model covers tasks with {n_obs} states and {na} actions (shipped: {have})"


def _shipped_for(task: Task):
    """(model, ShippedModel) of the shipped OmniRL-tiny covering ``task``, loaded once per process."""
    from ..evaluation.models import ShippedModelError, load_shipped

    info = shipped_model_covering(task.n_obs, task.na)
    if info is None:
        raise ShippedModelError(_not_covered(task.n_obs, task.na))
    if info.name not in _SHIPPED_CACHE:
        _SHIPPED_CACHE[info.name] = load_shipped(info.path)
    return _SHIPPED_CACHE[info.name]


@lru_cache(maxsize=16)
def _recorded_evaluation(folder: str) -> dict | None:
    for path in sorted(Path(folder).glob("online_*.json")):
        try:
            data = json.loads(path.read_text())
            om = data["omnirl"]
            record = {"mean": float(om["mean"]), "q1": float(om["q1"][0]), "q4": float(om["q4"][0]),
                      "n_tasks": int(om.get("n_tasks", data.get("n_tasks", 0))),
                      "steps": int(om.get("steps", data.get("steps", 0))), "suite": str(data.get("suite", "?")),
                      "file": path.name}
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
        if math.isfinite(record["mean"]):
            return record
    return None


def shipped_standing(info) -> dict | None:
    """What a shipped model's recorded online evaluation (``models/<name>/online_*.json``) measured: its mean
    normalised score (0 = the random policy, 1 = the oracle) over the run (``mean``), in the run's first and last
    quarters (``q1``, ``q4``), on ``n_tasks`` unseen tasks of ``suite`` with ``steps`` steps each; None when the
    folder records none."""
    return _recorded_evaluation(str(info.path))


def _standing_text(info) -> str:
    rec = shipped_standing(info)
    if rec is None:
        return f"(models/{info.name}) has no recorded evaluation"
    return (f"(models/{info.name}) measured on {rec['n_tasks']} unseen {rec['suite']} tasks, {rec['steps']:,} steps "
            f"each from an empty memory: {rec['mean']:.2f} of the way from the random policy (0) to the oracle (1) "
            f"over the run, {rec['q4']:.2f} in its last quarter")


def offered_policies(task: Task) -> list[str]:
    """The keys of :data:`POLICIES` that can play ``task``: the learners and the oracle always, the shipped model
    where one covers the task's observation ids and actions (:func:`shipped_model_covering`)."""
    covered = shipped_model_covering(task.n_obs, task.na) is not None
    return [key for key in POLICIES if key in LEARNERS or (key == "omnirl" and covered)]


def default_policy(task: Task) -> str:
    """The shipped model where one covers ``task`` and its recorded evaluation scores at least
    :data:`SHIPPED_DEFAULT_MIN_SCORE` (the bandit model), else the oracle."""
    info = shipped_model_covering(task.n_obs, task.na)
    rec = shipped_standing(info) if info is not None else None
    return "omnirl" if rec is not None and rec["mean"] >= SHIPPED_DEFAULT_MIN_SCORE else "oracle"


def policy_note(task: Task) -> str:
    """One line on the shipped model for ``task``: its measured standing, or that none covers the task."""
    info = shipped_model_covering(task.n_obs, task.na)
    if info is None:
        return f"OmniRL-tiny is not offered: {_not_covered(task.n_obs, task.na)}"
    default = default_policy(task) == "omnirl"
    return (f"OmniRL-tiny {_standing_text(info)}" + ("" if default else
            "; a single run may score below the random policy, so the oracle is the default"))


def play_shipped_model(task: Task, steps: int, seed: int) -> tuple[np.ndarray, ...]:
    """Let the shipped OmniRL-tiny act in ``task`` from an empty memory (tag 7, its validated temperature).

    Returns (inner states, actions, rewards, dones), each [steps]. Raises ``LookupError`` (a
    ``ShippedModelError``) when no shipped model covers the task's states and actions."""
    import torch

    from ..evaluation import OmniRLAgent, run_agent
    from ..evaluation.suites import task_suite

    model, info = _shipped_for(task)
    trace: dict[str, list] = {"obs": [], "actions": [], "rewards": [], "done": []}

    def record(_t: int, step: dict) -> None:
        for key in trace:
            trace[key].append(int(step[key][0]) if key != "rewards" else float(step[key][0]))

    suite = task_suite("explorer", [task])
    with torch.no_grad():
        run_agent(suite, OmniRLAgent(model, temperature=info.temperature), n_episodes=steps, max_steps=steps,
                  seed=[int(seed)], on_step=record)
    inner_of_obs = np.full(task.n_obs, -1, dtype=np.int64)  # state_mapping: inner state -> observation id
    inner_of_obs[task.state_mapping] = np.arange(task.ns)
    states = inner_of_obs[np.asarray(trace["obs"], dtype=np.int64)]
    return (states, np.asarray(trace["actions"], dtype=np.int64), np.asarray(trace["rewards"]),
            np.asarray(trace["done"], dtype=bool))


def play_policy(
    task: Task,
    policy: str = "oracle",
    steps: int = 200,
    seed: int = 0,
    *,
    exact_returns: tuple[float, float] | None = None,
) -> PlayResult:
    """Step :class:`omnirl_core.world.envs.AnyMDPEnv` for ``steps`` steps with the named policy (a batch of one
    task for the learners of :mod:`omnirl_core.world.learners`, which act on inner states), restarting episodes
    as they end. ``seed`` seeds both the environment and the policy's random choices. ``exact_returns``
    (oracle, random) skips recomputing the task's exact returns when the caller has them."""
    from ..world.envs import AnyMDPEnv

    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {sorted(POLICIES)}")
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t0 = time.perf_counter()
    if exact_returns is None:
        exact_returns = (float(oracle.oracle_return(task)), float(oracle.random_return(task)))
    if policy == "omnirl":
        states, actions, rewards, dones = play_shipped_model(task, steps, seed)
        return PlayResult(policy=policy, states=states, actions=actions, rewards=rewards, dones=dones,
                          oracle_return=float(exact_returns[0]), random_return=float(exact_returns[1]),
                          seconds=time.perf_counter() - t0, horizon=task.horizon)
    rng = np.random.default_rng([int(seed), 1])
    agent = make_policy(policy)
    agent.reset([task], rng)
    env = AnyMDPEnv(task=task)
    _, info = env.reset(seed=int(seed))
    states = np.zeros(steps, dtype=np.int64)
    actions = np.zeros(steps, dtype=np.int64)
    rewards = np.zeros(steps)
    dones = np.zeros(steps, dtype=bool)
    for t in range(steps):
        s = np.array([info["state"]])
        a = agent.act(s, rng)
        _, r, term, trunc, info = env.step(int(a[0]))
        agent.observe(s, a, np.array([r]), np.array([info["state"]]), np.array([term]), np.array([trunc]))
        states[t], actions[t], rewards[t], dones[t] = s[0], a[0], r, term or trunc
        if term or trunc:
            agent.end_episode(np.array([True]))
            _, info = env.reset()
    return PlayResult(
        policy=policy,
        states=states,
        actions=actions,
        rewards=rewards,
        dones=dones,
        oracle_return=float(exact_returns[0]),
        random_return=float(exact_returns[1]),
        seconds=time.perf_counter() - t0,
        horizon=task.horizon,
    )


