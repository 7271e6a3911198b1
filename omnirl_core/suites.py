"""Test suites of the evaluation (paper section 5): task families, Gymnasium wrappers and reference returns.

Every suite is a :class:`Suite`: ``B`` environments of the same observation and action counts, stepped
together by a batched environment with one independent random stream per environment (so a task's run does
not depend on which other tasks share its batch), plus per-environment reference returns ``R_oracle`` and
``R_random`` for the normalised score and an oracle action per observation.

Where the dynamics are known the suite holds tabular :class:`~omnirl_core.tasks.Task` objects and the
reference returns are exact (:func:`omnirl_core.oracle.policy_return`): unseen AnyMDP tasks, Garnet, the
tabular Gymnasium tasks (converted from ``env.unwrapped.P`` with the paper's reward shaping) and DarkRoom.
Discrete Pendulum is stepped as the real continuous system with a discretising observation map; its oracle
plans on a tabular model estimated from many sampled transitions (uniform states within each bin), and both
reference returns are Monte-Carlo averages of that plan and of the uniform policy in the real system.

Conventions:

- Actions: every suite exposes ``na`` actions (5 by default); a task with fewer actions ``n`` maps
  ``a -> a mod n`` (for tabular tasks this is built into the Task by :func:`expand_actions`, so the uniform
  policy over the exposed actions is the reference random policy).
- Test seeds: training draws its task seeds from ``[0, 2**32)``; test tasks use seeds
  ``TEST_SEED_OFFSET + ...`` with ``TEST_SEED_OFFSET = 2**32``, so no test seed is ever a training seed.
- Reward shaping (paper): FrozenLake slippery +1 goal / -1 hole / 0 otherwise; non-slippery +1 / -1 /
  -0.05 per other step; CliffWalking +1 on reaching the goal / -1 on stepping into the cliff (which, as in
  Gymnasium, sends the agent back to the start without ending the episode) / -0.03 per other step;
  Pendulum ``r' = max(r / 30 + 0.1, -0.1)``.
- Episode limits (choices, documented): FrozenLake 100 steps (Gymnasium's), CliffWalking 100 steps
  (Gymnasium sets none), Pendulum 200 (Gymnasium's), DarkRoom ``4 N`` steps.
- DarkRoom N x N: state ``row * N + col``; actions up, down, left, right, stay; the goal is a corner
  (one task per corner) and ends the episode with reward +1; starts are uniform over the other cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .envs import BatchedAnyMDPEnv
from .oracle import ORACLE_GAMMA, oracle_policy, oracle_return, policy_iteration, random_return
from .tasks import Task, sample_anymdp, sample_garnet

__all__ = [
    "TEST_SEED_OFFSET",
    "SUITE_NAMES",
    "PAPER_TABLE1",
    "Suite",
    "EnvStreams",
    "TaskBatchEnv",
    "BatchedDiscretePendulum",
    "DiscreteWrapper",
    "DiscretePendulum",
    "test_seed",
    "expand_actions",
    "task_from_gym",
    "frozenlake_shaping",
    "cliffwalking_shaping",
    "pendulum_shaping",
    "frozenlake_task",
    "cliffwalking_task",
    "darkroom_task",
    "pendulum_bins",
    "estimate_pendulum_task",
    "task_suite",
    "build_suite",
    "GymBatchEnv",
    "gym_suite",
    "estimate_task_from_env",
    "env_seeds",
]

TEST_SEED_OFFSET = 2**32
NA = 5
PENDULUM_ANGLE_BINS = 12
PENDULUM_SPEED_BINS = 5
PENDULUM_TORQUES = np.linspace(-2.0, 2.0, 5)
PENDULUM_MAX_SPEED = 8.0

SUITE_NAMES = (
    "anymdp_1", "anymdp_16", "anymdp_32", "anymdp_64", "anymdp_128",
    "garnet_16", "garnet_64",
    "cliffwalking", "frozenlake", "frozenlake_slippery",
    "pendulum_g1", "pendulum_g5", "pendulum_g9.8",
    "darkroom_6", "darkroom_8", "darkroom_10",
)  # fmt: skip

PAPER_TABLE1: dict[str, dict[str, tuple[float, float | None]]] = {
    # suite -> method -> (best score, steps to 99% of best or None where the paper gives none)
    "anymdp_1": {"TQL-UCB": (0.921, 100), "PPO": (0.956, 1.2e3), "OmniRL": (0.825, 103)},
    "anymdp_16": {"TQL-UCB": (0.920, 297e3), "PPO": (0.906, 476e3), "OmniRL": (0.953, 2.0e3)},
    "anymdp_32": {"TQL-UCB": (0.847, 616e3), "PPO": (0.722, 618e3), "OmniRL": (0.903, 6.5e3)},
    "anymdp_64": {"TQL-UCB": (0.837, 1.1e6), "PPO": (0.583, 1.1e6), "OmniRL": (0.913, 7.7e3)},
    "anymdp_128": {"TQL-UCB": (0.732, 1.8e6), "PPO": (0.490, 1.3e6), "OmniRL": (0.802, 36.3e3)},
    "garnet_16": {"TQL-UCB": (0.988, 241e3), "PPO": (0.971, 57e3), "OmniRL": (0.859, 8.2e3)},
    "cliffwalking": {"TQL-UCB": (1.0, 3.1e3), "PPO": (0.959, 99.3e3), "OmniRL": (1.0, 3.0e3)},
    "frozenlake": {"TQL-UCB": (0.953, 23.6e3), "PPO": (0.968, 18.2e3), "OmniRL": (0.998, 0.3e3)},
    "frozenlake_slippery": {"TQL-UCB": (0.96, 208e3), "PPO": (0.956, 73.6e3), "OmniRL": (0.795, 7.7e3)},
    "pendulum_g1": {"TQL-UCB": (0.949, None), "PPO": (0.993, None), "OmniRL": (0.905, None)},
    "pendulum_g5": {"TQL-UCB": (0.997, None), "PPO": (0.998, None), "OmniRL": (0.918, None)},
    "pendulum_g9.8": {"TQL-UCB": (0.902, None), "PPO": (0.983, None), "OmniRL": (0.734, None)},
    "darkroom_6": {"TQL-UCB": (0.981, None), "PPO": (0.976, None), "OmniRL": (0.952, None)},
    "darkroom_8": {"TQL-UCB": (0.968, None), "PPO": (0.967, None), "OmniRL": (0.938, None)},
    "darkroom_10": {"TQL-UCB": (0.89, None), "PPO": (0.923, None), "OmniRL": (0.917, None)},
}
"""The paper's Table 1 (best average normalised score, steps to reach 99% of it)."""


def test_seed(family: int, size: int, index: int) -> int:
    """Seed of test task ``index`` of a family (0 AnyMDP, 1 Garnet) and size: always >= 2**32."""
    return TEST_SEED_OFFSET + (int(family) << 40) + (int(size) << 20) + int(index)


test_seed.__test__ = False  # not a pytest test


# ---------------------------------------------------------------------------------------------- randomness
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


class EnvStreams:
    """One counter-based random stream per environment: draw k of env b depends only on (seed_b, k).

    ``random(n)`` / ``random((n, m))`` and ``standard_normal(n)`` mimic the numpy Generator calls the batched
    environments and learners make with the full batch as the leading size; ``uniform(idx)`` draws for a
    subset of environments.
    """

    def __init__(self, seeds: Sequence[int]) -> None:
        seeds = np.asarray([int(s) & 0xFFFFFFFFFFFFFFFF for s in seeds], dtype=np.uint64)
        self.keys = _mix64(seeds ^ np.uint64(0x9E3779B97F4A7C15))
        self.counter = np.zeros(seeds.size, dtype=np.uint64)
        self.n = int(seeds.size)

    def uniform(self, idx: np.ndarray | None = None, k: int = 1) -> np.ndarray:
        """[len(idx), k] uniforms in [0, 1) for the environments ``idx`` (default all)."""
        idx = np.arange(self.n) if idx is None else np.asarray(idx, dtype=np.int64)
        j = np.arange(k, dtype=np.uint64)[None, :]
        with np.errstate(over="ignore"):
            x = self.keys[idx, None] + (self.counter[idx, None] + j) * np.uint64(0x9E3779B97F4A7C15)
        self.counter[idx] += np.uint64(k)
        return (_mix64(x) >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)

    def random(self, size: int | tuple = None) -> np.ndarray:
        shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
        if shape[0] != self.n:
            raise ValueError(f"EnvStreams draws need the batch size {self.n} first, got shape {shape}")
        k = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        return self.uniform(None, k).reshape(shape)

    def standard_normal(self, size: int | tuple = None) -> np.ndarray:
        u = self.random((self.n, 2))
        z = np.sqrt(-2.0 * np.log1p(-u[:, 0])) * np.cos(2.0 * np.pi * u[:, 1])
        return z.reshape((size,) if isinstance(size, (int, np.integer)) else size)

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        return low + np.minimum((self.random(size) * (high - low)).astype(np.int64), high - low - 1)

    def gumbel(self, size: tuple) -> np.ndarray:
        return -np.log(-np.log(np.clip(self.random(size), 1e-300, None)))


def env_seeds(seed: int, n: int) -> list[int]:
    """Per-environment seeds for a run: environment b gets the same seed whatever the batch size."""
    return [int(np.random.SeedSequence([int(seed), b]).generate_state(2, np.uint32).view(np.uint64)[0])
            for b in range(n)]


class TaskBatchEnv(BatchedAnyMDPEnv):
    """:class:`~omnirl_core.envs.BatchedAnyMDPEnv` whose randomness is one :class:`EnvStreams` stream per env.

    ``reset(seed=...)`` takes a sequence of per-environment seeds (or an int, expanded by :func:`env_seeds`).
    """

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            seeds = env_seeds(seed, self.num_envs) if isinstance(seed, (int, np.integer)) else list(seed)
            self._np_random = EnvStreams(seeds)
        elif not isinstance(getattr(self, "_np_random", None), EnvStreams):
            self._np_random = EnvStreams(env_seeds(0, self.num_envs))
        return super().reset(seed=None, options=options)

    def _sample_starts(self, idx: np.ndarray) -> np.ndarray:
        u = self._np_random.uniform(idx)[:, 0]
        return (self._start_cdf[idx] <= u[:, None]).sum(axis=1)


# ---------------------------------------------------------------------------------------------- tabular tasks
def expand_actions(task: Task, na: int = NA) -> Task:
    """The task with ``na`` actions, action a acting as ``a mod task.na`` (unchanged when na == task.na)."""
    if na == task.na:
        return task
    if na < task.na:
        raise ValueError(f"cannot shrink a task from {task.na} to {na} actions")
    idx = np.arange(na) % task.na
    return Task(
        transition=task.transition[:, idx], reward=task.reward[:, idx], reward_noise=task.reward_noise[:, idx],
        start_prob=task.start_prob, terminal=task.terminal, max_steps=task.max_steps,
        state_mapping=task.state_mapping, n_obs=task.n_obs, kind=task.kind,
        meta={**task.meta, "native_na": int(task.na)},
    )


Shaping = Callable[[int, int, int, float, bool], float]
"""shaping(state, action, next_state, reward, terminated) -> shaped reward."""


def frozenlake_shaping(desc: np.ndarray, slippery: bool) -> Shaping:
    """Paper shaping for FrozenLake: +1 goal, -1 hole, otherwise 0 (slippery) or -0.05 (non-slippery)."""
    letters = np.asarray(desc).astype("U1").ravel()
    step = 0.0 if slippery else -0.05

    def shape(s, a, s2, r, terminated):
        return 1.0 if letters[s2] == "G" else -1.0 if letters[s2] == "H" else step

    return shape


def cliffwalking_shaping(goal: int = 47) -> Shaping:
    """Paper shaping for CliffWalking: +1 on reaching the goal, -1 for the cliff (Gymnasium reward -100), else -0.03."""

    def shape(s, a, s2, r, terminated):
        return 1.0 if s2 == goal else -1.0 if r <= -100 else -0.03

    return shape


def pendulum_shaping(r):
    """Paper shaping for Pendulum: max(r / 30 + 0.1, -0.1) (works on scalars and arrays)."""
    return np.maximum(np.asarray(r, dtype=np.float64) / 30.0 + 0.1, -0.1)


def task_from_gym(
    env: gym.Env,
    *,
    shaping: Shaping | None = None,
    max_steps: float | None = None,
    na: int | None = None,
    kind: str = "gym",
    meta: dict | None = None,
) -> Task:
    """A tabular Task from a Gymnasium env with ``env.unwrapped.P`` (FrozenLake, CliffWalking, Taxi, ...).

    ``P[s][a]`` lists ``(prob, next_state, reward, terminated)``. A state is terminal when some transition
    terminates on entering it (its own rows are then dropped). The start distribution is
    ``env.unwrapped.initial_state_distrib`` when present, else the empirical distribution of 200 resets.
    ``shaping`` rewrites every reward; ``na`` expands the actions with ``a -> a mod n``.
    """
    u = env.unwrapped
    P = getattr(u, "P", None)
    if P is None:
        raise ValueError(f"{type(u).__name__} has no transition table P; use an estimated model instead")
    ns, n_act = int(u.observation_space.n), int(u.action_space.n)
    T = np.zeros((ns, n_act, ns))
    R = np.zeros((ns, n_act, ns))
    terminal = np.zeros(ns, bool)
    for s in range(ns):
        for a in range(n_act):
            for prob, s2, r, term in P[s][a]:
                s2 = int(s2)
                rr = float(r) if shaping is None else float(shaping(s, a, s2, float(r), bool(term)))
                if T[s, a, s2] > 0 and R[s, a, s2] != rr:
                    raise ValueError(f"P[{s}][{a}] reaches {s2} with two different rewards")
                T[s, a, s2] += prob
                R[s, a, s2] = rr
                terminal[s2] |= bool(term)
    T[terminal] = 0.0
    start = getattr(u, "initial_state_distrib", None)
    if start is None:
        start = np.bincount([int(env.reset(seed=i)[0]) for i in range(200)], minlength=ns) / 200.0
    if max_steps is None:
        max_steps = (env.spec.max_episode_steps if env.spec is not None else None) or 100
    task = Task.from_arrays(T, R, start_prob=np.asarray(start, float), terminal=terminal, max_steps=float(max_steps),
                            kind=kind, meta=meta or {})
    return expand_actions(task, na) if na is not None else task


def frozenlake_task(slippery: bool, na: int = NA) -> Task:
    """FrozenLake 4x4 as a Task with the paper's shaping (100-step limit)."""
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=slippery)
    return task_from_gym(env, shaping=frozenlake_shaping(env.unwrapped.desc, slippery), max_steps=100, na=na,
                         kind="frozenlake", meta={"slippery": bool(slippery)})


def cliffwalking_task(na: int = NA, max_steps: int = 100) -> Task:
    """CliffWalking 4x12 as a Task with the paper's shaping (``max_steps`` limit; Gymnasium has none)."""
    env = gym.make("CliffWalking-v1")
    return task_from_gym(env, shaping=cliffwalking_shaping(), max_steps=max_steps, na=na, kind="cliffwalking")


DARKROOM_MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1], [0, 0]])  # up, down, left, right, stay


def darkroom_task(size: int, corner: int = 3, n_actions: int = 5, na: int = NA, max_steps: float | None = None) -> Task:
    """DarkRoom size x size: goal in ``corner`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right),
    +1 on reaching it (the episode ends), uniform start over the other cells, walls block moves.

    ``n_actions`` 4 (moves) or 5 (moves and stay); ``na`` expands with ``a -> a mod n_actions``."""
    if size < 2 or n_actions not in (4, 5) or corner not in range(4):
        raise ValueError("need size >= 2, n_actions in (4, 5), corner in 0..3")
    gr, gc = (0 if corner < 2 else size - 1), (0 if corner % 2 == 0 else size - 1)
    goal = gr * size + gc
    ns = size * size
    T = np.zeros((ns, n_actions, ns))
    R = np.zeros((ns, n_actions, ns))
    for s in range(ns):
        if s == goal:
            continue
        r, c = divmod(s, size)
        for a in range(n_actions):
            nr = min(max(r + DARKROOM_MOVES[a, 0], 0), size - 1)
            nc = min(max(c + DARKROOM_MOVES[a, 1], 0), size - 1)
            s2 = nr * size + nc
            T[s, a, s2] = 1.0
            R[s, a, s2] = 1.0 if s2 == goal else 0.0
    start = np.ones(ns)
    start[goal] = 0.0
    terminal = np.zeros(ns, bool)
    terminal[goal] = True
    task = Task.from_arrays(T, R, start_prob=start / start.sum(), terminal=terminal,
                            max_steps=float(max_steps if max_steps is not None else 4 * size), kind="darkroom",
                            meta={"size": int(size), "corner": int(corner), "goal": int(goal)})
    return expand_actions(task, na)


# ---------------------------------------------------------------------------------------------- Gymnasium wrappers
class DiscreteWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Any Gymnasium env with Discrete observations and actions, exposed with ``na`` actions (``a -> a mod n``)
    and an optional reward ``shaping(state, action, next_state, reward, terminated)``."""

    def __init__(self, env: gym.Env, na: int = NA, shaping: Shaping | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, na=na, shaping=shaping)
        gym.Wrapper.__init__(self, env)
        if not isinstance(env.observation_space, spaces.Discrete) or not isinstance(env.action_space, spaces.Discrete):
            raise TypeError("DiscreteWrapper needs Discrete observation and action spaces")
        self.native_na = int(env.action_space.n)
        self.action_space = spaces.Discrete(int(na))
        self.shaping = shaping
        self._obs: int | None = None

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = int(obs)
        return obs, info

    def step(self, action):
        a = int(action) % self.native_na
        obs, r, term, trunc, info = self.env.step(a)
        if self.shaping is not None:
            r = float(self.shaping(self._obs, a, int(obs), float(r), bool(term)))
        self._obs = int(obs)
        return obs, r, term, trunc, info


def pendulum_bins(cos_th, sin_th, thdot) -> np.ndarray:
    """Observation id of Pendulum observations: angle atan2(sin, cos) in [0, 2 pi) into 12 equal bins, angular
    velocity in [-8, 8] into 5 equal bins; id = angle_bin * 5 + velocity_bin (60 ids)."""
    ang = np.mod(np.arctan2(sin_th, cos_th), 2 * np.pi)
    ab = np.clip((ang / (2 * np.pi / PENDULUM_ANGLE_BINS)).astype(np.int64), 0, PENDULUM_ANGLE_BINS - 1)
    width = 2 * PENDULUM_MAX_SPEED / PENDULUM_SPEED_BINS
    vb = np.clip(np.floor((np.asarray(thdot) + PENDULUM_MAX_SPEED) / width).astype(np.int64), 0,
                 PENDULUM_SPEED_BINS - 1)
    return ab * PENDULUM_SPEED_BINS + vb


class DiscretePendulum(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Gymnasium Pendulum-v1 with gravity ``g``: 60 discrete observations (:func:`pendulum_bins`), 5 torques evenly
    spaced in [-2, 2] and the paper's shaped reward (200-step limit). ``env``: a Pendulum to wrap (default: a new
    ``Pendulum-v1`` with ``g`` and ``max_episode_steps``)."""

    def __init__(self, env: gym.Env | None = None, g: float = 10.0, max_episode_steps: int = 200) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, g=g, max_episode_steps=max_episode_steps)
        if env is None:
            env = gym.make("Pendulum-v1", g=g, max_episode_steps=max_episode_steps)
        gym.Wrapper.__init__(self, env)
        self.observation_space = spaces.Discrete(PENDULUM_ANGLE_BINS * PENDULUM_SPEED_BINS)
        self.action_space = spaces.Discrete(len(PENDULUM_TORQUES))

    @staticmethod
    def _bin(obs) -> int:
        return int(pendulum_bins(obs[0], obs[1], obs[2]))

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._bin(obs), info

    def step(self, action):
        torque = np.array([PENDULUM_TORQUES[int(action)]], dtype=np.float32)
        obs, r, term, trunc, info = self.env.step(torque)
        return self._bin(obs), float(pendulum_shaping(r)), term, trunc, info


def _pendulum_step(th, thdot, u, g):
    """Gymnasium's Pendulum dynamics (m = l = 1, dt = 0.05) on arrays -> (th', thdot', raw reward)."""
    ang = ((th + np.pi) % (2 * np.pi)) - np.pi
    cost = ang**2 + 0.1 * thdot**2 + 0.001 * u**2
    new_thdot = np.clip(thdot + (3 * g / 2 * np.sin(th) + 3.0 * u) * 0.05, -PENDULUM_MAX_SPEED, PENDULUM_MAX_SPEED)
    return th + new_thdot * 0.05, new_thdot, -cost


class BatchedDiscretePendulum:
    """B discrete Pendulums in numpy, with the interface of :class:`TaskBatchEnv` (same-step autoreset, infos
    ``next_state`` / ``final_obs`` / ``final_return``; ``states`` holds the current observation ids).

    Dynamics are Gymnasium's in float64 (Gymnasium computes in float32 for observations, so trajectories agree
    up to rounding); starts are theta ~ U(-pi, pi), theta_dot ~ U(-1, 1) from each env's own stream."""

    def __init__(self, g: float, num_envs: int, max_steps: int = 200) -> None:
        self.g = float(g)
        self.num_envs = int(num_envs)
        self.na = len(PENDULUM_TORQUES)
        self.n_obs = PENDULUM_ANGLE_BINS * PENDULUM_SPEED_BINS
        self.max_steps = int(max_steps)
        self._streams = EnvStreams(env_seeds(0, self.num_envs))
        self.th = np.zeros(self.num_envs)
        self.thdot = np.zeros(self.num_envs)
        self.steps = np.zeros(self.num_envs, np.int64)
        self.returns = np.zeros(self.num_envs)
        self.states = np.zeros(self.num_envs, np.int64)

    def _obs(self) -> np.ndarray:
        return pendulum_bins(np.cos(self.th), np.sin(self.th), self.thdot)

    def _start(self, idx: np.ndarray) -> None:
        u = self._streams.uniform(idx, 2)
        self.th[idx] = -np.pi + 2 * np.pi * u[:, 0]
        self.thdot[idx] = -1.0 + 2.0 * u[:, 1]
        self.steps[idx] = 0
        self.returns[idx] = 0.0

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            seeds = env_seeds(seed, self.num_envs) if isinstance(seed, (int, np.integer)) else list(seed)
            self._streams = EnvStreams(seeds)
        self._start(np.arange(self.num_envs))
        self.states = self._obs()
        return self.states.copy(), {"state": self.states.copy()}

    def step(self, actions):
        a = np.asarray(actions, dtype=np.int64)
        self.th, self.thdot, raw = _pendulum_step(self.th, self.thdot, PENDULUM_TORQUES[a], self.g)
        rewards = pendulum_shaping(raw)
        self.steps = self.steps + 1
        returns = self.returns + rewards
        nxt = self._obs()
        terminated = np.zeros(self.num_envs, bool)
        truncated = self.steps >= self.max_steps
        self.returns = returns.copy()
        idx = np.flatnonzero(truncated)
        if idx.size:
            self._start(idx)
        self.states = self._obs()
        infos = {"next_state": nxt, "final_obs": nxt, "final_return": returns, "_final_obs": truncated,
                 "state": self.states.copy()}
        return self.states.copy(), rewards, terminated, truncated, infos


def estimate_pendulum_task(g: float, samples: int = 200, seed: int = 0, start_samples: int = 20000) -> Task:
    """Tabular model of the discrete Pendulum: for every (bin, torque), ``samples`` states drawn uniformly within
    the bin are stepped through the true dynamics; P and the mean shaped reward per (bin, torque, next bin) are
    the empirical ones; the start distribution is that of ``start_samples`` resets. 200-step limit."""
    rng = np.random.default_rng(seed)
    nA, nV = PENDULUM_ANGLE_BINS, PENDULUM_SPEED_BINS
    ns, na = nA * nV, len(PENDULUM_TORQUES)
    aw, vw = 2 * np.pi / nA, 2 * PENDULUM_MAX_SPEED / nV
    s = np.repeat(np.arange(ns), samples)
    th = (s // nV + rng.random(s.size)) * aw
    thdot = -PENDULUM_MAX_SPEED + (s % nV + rng.random(s.size)) * vw
    T = np.zeros((ns, na, ns))
    Rsum = np.zeros((ns, na, ns))
    for a in range(na):
        th2, thdot2, raw = _pendulum_step(th, thdot, np.full(s.size, PENDULUM_TORQUES[a]), g)
        s2 = pendulum_bins(np.cos(th2), np.sin(th2), thdot2)
        np.add.at(T[:, a], (s, s2), 1.0)
        np.add.at(Rsum[:, a], (s, s2), pendulum_shaping(raw))
    R = np.where(T > 0, Rsum / np.maximum(T, 1), 0.0)
    T /= samples
    th0, v0 = rng.uniform(-np.pi, np.pi, start_samples), rng.uniform(-1, 1, start_samples)
    start = np.bincount(pendulum_bins(np.cos(th0), np.sin(th0), v0), minlength=ns) / start_samples
    return Task.from_arrays(T, R, start_prob=start, max_steps=200.0, kind="pendulum_model",
                            meta={"g": float(g), "samples": int(samples)})


# ---------------------------------------------------------------------------------------------- suites
@dataclass
class Suite:
    """B environments evaluated together, with their reference returns.

    ``tasks``: the tabular tasks (exact dynamics) or None; ``make_env()``: a fresh batched environment;
    ``r_oracle`` / ``r_random`` [B]: reference returns; ``oracle_actions`` [B, n_obs]: the oracle's action per
    observation; ``reference``: "exact" or "estimated" (how the reference returns were obtained)."""

    name: str
    na: int
    n_obs: int
    make_env: Callable[[], Any]
    r_oracle: np.ndarray
    r_random: np.ndarray
    oracle_actions: np.ndarray
    reference: str = "exact"
    tasks: list[Task] | None = None
    info: dict = field(default_factory=dict)
    make_single: Callable[[int], gym.Env] | None = None
    "make_single(b): run b's environment as a plain Gymnasium env (for single-env learners such as PPO)."

    @property
    def num_envs(self) -> int:
        return int(self.r_oracle.shape[0])

    @property
    def valid(self) -> np.ndarray:
        """[B] tasks whose oracle and random returns differ (the others are skipped by the score)."""
        gap = self.r_oracle - self.r_random
        return np.abs(gap) > 1e-9 * np.maximum(1.0, np.abs(self.r_oracle))


def task_suite(name: str, tasks: Sequence[Task], gamma: float = ORACLE_GAMMA, info: dict | None = None) -> Suite:
    """A suite of tabular tasks (same ns and na) with exact reference returns."""
    tasks = list(tasks)
    pi = np.asarray(oracle_policy(tasks, gamma)).reshape(len(tasks), -1)
    n_obs = max(t.n_obs for t in tasks)
    table = np.zeros((len(tasks), n_obs), dtype=np.int64)
    for b, t in enumerate(tasks):
        table[b, t.state_mapping] = pi[b]
    r_or = np.atleast_1d(np.asarray(oracle_return(tasks, gamma), dtype=np.float64))
    r_rand = np.atleast_1d(np.asarray(random_return(tasks), dtype=np.float64))
    from .envs import AnyMDPEnv

    return Suite(name=name, na=tasks[0].na, n_obs=n_obs, make_env=lambda: TaskBatchEnv(tasks), r_oracle=r_or,
                 r_random=r_rand, oracle_actions=table, reference="exact", tasks=tasks, info=dict(info or {}),
                 make_single=lambda b: AnyMDPEnv(tasks[b]))


def pendulum_suite(g: float, num_envs: int, *, samples: int = 200, reference_episodes: int = 64, seed: int = 0,
                   name: str | None = None) -> Suite:
    """Discrete Pendulum: oracle = optimal policy of :func:`estimate_pendulum_task`; R_oracle and R_random are
    Monte-Carlo means over ``reference_episodes`` episodes of that policy / the uniform policy in the real system
    (standard errors in ``info``)."""
    model = estimate_pendulum_task(g, samples=samples, seed=seed)
    Q, _ = policy_iteration(model, ORACLE_GAMMA)
    policy = Q.argmax(axis=-1)
    n = max(1, int(reference_episodes))
    refs = {}
    for kind in ("oracle", "random"):
        env = BatchedDiscretePendulum(g, n)
        obs, _ = env.reset(seed=[TEST_SEED_OFFSET + 7919 * (kind == "random") + i for i in range(n)])
        streams = EnvStreams([TEST_SEED_OFFSET + 104729 + i for i in range(n)])
        for _ in range(env.max_steps):
            act = policy[obs] if kind == "oracle" else streams.integers(0, env.na, n)
            obs, _, _, trunc, infos = env.step(act)
        refs[kind] = infos["final_return"].copy()
    r_or = np.full(num_envs, refs["oracle"].mean())
    r_rand = np.full(num_envs, refs["random"].mean())
    info = {"g": float(g), "reference_episodes": n,
            "oracle_se": float(refs["oracle"].std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
            "random_se": float(refs["random"].std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")}
    return Suite(name=name or f"pendulum_g{g:g}", na=len(PENDULUM_TORQUES), n_obs=model.ns,
                 make_env=lambda: BatchedDiscretePendulum(g, num_envs), r_oracle=r_or, r_random=r_rand,
                 oracle_actions=np.tile(policy, (num_envs, 1)), reference="estimated", tasks=None, info=info,
                 make_single=lambda b: DiscretePendulum(g=g))


class GymBatchEnv:
    """B copies of a Gymnasium env with Discrete observations and actions, stepped in a Python loop behind the
    interface of :class:`TaskBatchEnv` (each copy wrapped by :class:`DiscreteWrapper`; copy b reset with its own
    seed once, then continuing its own random stream)."""

    def __init__(self, make_env: Callable[[], gym.Env], num_envs: int, na: int = NA,
                 shaping: Shaping | None = None) -> None:
        self.envs = [DiscreteWrapper(make_env(), na, shaping) for _ in range(int(num_envs))]
        self.num_envs = len(self.envs)
        self.na = int(na)
        self.n_obs = int(self.envs[0].observation_space.n)
        self.returns = np.zeros(self.num_envs)
        self.states = np.zeros(self.num_envs, np.int64)

    def reset(self, *, seed=None, options=None):
        seeds = [None] * self.num_envs if seed is None else (
            env_seeds(seed, self.num_envs) if isinstance(seed, (int, np.integer)) else list(seed))
        self.states = np.array([int(e.reset(seed=None if s is None else int(s) % 2**63)[0])
                                for e, s in zip(self.envs, seeds)], dtype=np.int64)
        self.returns = np.zeros(self.num_envs)
        return self.states.copy(), {"state": self.states.copy()}

    def step(self, actions):
        B = self.num_envs
        nxt, new = np.zeros(B, np.int64), np.zeros(B, np.int64)
        rewards, term, trunc = np.zeros(B), np.zeros(B, bool), np.zeros(B, bool)
        for b, (e, a) in enumerate(zip(self.envs, np.asarray(actions))):
            o, r, te, tr, _ = e.step(int(a))
            nxt[b], rewards[b], term[b], trunc[b] = int(o), float(r), bool(te), bool(tr)
            new[b] = int(e.reset()[0]) if (te or tr) else int(o)
        returns = self.returns + rewards
        done = term | trunc
        self.returns = np.where(done, 0.0, returns)
        self.states = new
        infos = {"next_state": nxt, "final_obs": nxt, "final_return": returns, "_final_obs": done,
                 "state": new.copy()}
        return new.copy(), rewards, term, trunc, infos


def _first_episode_returns(env, act: Callable[[np.ndarray], np.ndarray], seeds: Sequence[int]) -> np.ndarray:
    """Return of the first episode of every env of a batched env under ``act(obs) -> actions``."""
    obs, _ = env.reset(seed=list(seeds))
    out = np.full(env.num_envs, np.nan)
    while np.isnan(out).any():
        obs, _, term, trunc, infos = env.step(act(obs))
        first = (term | trunc) & np.isnan(out)
        out[first] = infos["final_return"][first]
    return out


def estimate_task_from_env(env, n_steps: int, seed: int = 0) -> Task:
    """Tabular model of a batched env from ``n_steps`` batched steps of uniform random actions: empirical
    transition frequencies and mean rewards over observation ids; unvisited (s, a) pairs stay in place with
    reward 0; states entered with termination and never acted from are terminal."""
    ns, na = env.n_obs, env.na
    counts, rsum = np.zeros((ns, na, ns)), np.zeros((ns, na, ns))
    acted, term_into = np.zeros(ns, bool), np.zeros(ns, bool)
    streams = EnvStreams(env_seeds(seed + 1, env.num_envs))
    obs, _ = env.reset(seed=seed)
    starts = np.bincount(obs, minlength=ns).astype(float)
    for _ in range(int(n_steps)):
        a = streams.integers(0, na, env.num_envs)
        new, r, term, trunc, infos = env.step(a)
        s2 = infos["final_obs"]
        np.add.at(counts, (obs, a, s2), 1.0)
        np.add.at(rsum, (obs, a, s2), r)
        acted[obs] = True
        term_into[s2[term]] = True
        done = term | trunc
        starts += np.bincount(new[done], minlength=ns)
        obs = new
    R = np.where(counts > 0, rsum / np.maximum(counts, 1), 0.0)
    n_sa = counts.sum(axis=2, keepdims=True)
    P = np.where(n_sa > 0, counts / np.maximum(n_sa, 1), np.eye(ns)[:, None, :])
    terminal = term_into & ~acted
    P[terminal] = 0.0
    start = np.where(terminal, 0.0, starts)
    return Task.from_arrays(P, R, start_prob=start / start.sum(), terminal=terminal, max_steps=1e9,
                            kind="estimated", meta={"steps": int(n_steps) * env.num_envs})


def gym_suite(name: str, make_env: Callable[[], gym.Env], num_envs: int, *, shaping: Shaping | None = None,
              na: int = NA, max_steps: float | None = None, model_steps: int = 20_000,
              reference_episodes: int = 64) -> Suite:
    """A suite from any Gymnasium env with Discrete observations and actions (bring your own task).

    With ``env.unwrapped.P`` the env becomes a tabular Task (exact references, shaping applied to P). Otherwise
    the copies run as real envs (:class:`GymBatchEnv`): the oracle is the optimal policy of a model estimated
    from ``model_steps`` batched random steps (:func:`estimate_task_from_env`), and R_oracle / R_random are
    Monte-Carlo means over ``reference_episodes`` first episodes (episodes end by the env's own limits).
    The suite exposes ``max(na, n)`` actions for an env with n actions."""
    probe = make_env()
    na = max(int(na), int(probe.action_space.n))  # never fewer actions than the env has
    if getattr(probe.unwrapped, "P", None) is not None:
        task = task_from_gym(probe, shaping=shaping, max_steps=max_steps, na=na, meta={"suite": name})
        return task_suite(name, [task] * num_envs)
    model = estimate_task_from_env(GymBatchEnv(make_env, 16, na, shaping), max(1, model_steps // 16))
    policy = oracle_policy(model)
    n = max(2, int(reference_episodes))
    ref_env = GymBatchEnv(make_env, n, na, shaping)
    seeds = [TEST_SEED_OFFSET + i for i in range(n)]
    streams = EnvStreams([TEST_SEED_OFFSET + 104729 + i for i in range(n)])
    r_or = _first_episode_returns(ref_env, lambda o: policy[o], seeds)
    r_rand = _first_episode_returns(ref_env, lambda o: streams.integers(0, na, n), seeds)
    info = {"oracle_se": float(r_or.std(ddof=1) / math.sqrt(n)), "random_se": float(r_rand.std(ddof=1) / math.sqrt(n))}
    return Suite(name=name, na=na, n_obs=model.ns, make_env=lambda: GymBatchEnv(make_env, num_envs, na, shaping),
                 r_oracle=np.full(num_envs, r_or.mean()), r_random=np.full(num_envs, r_rand.mean()),
                 oracle_actions=np.tile(policy, (num_envs, 1)), reference="estimated", info=info,
                 make_single=lambda b: DiscreteWrapper(make_env(), na, shaping))


def build_suite(name: str, n_tasks: int = 64, *, na: int = NA, pendulum_samples: int = 200,
                pendulum_reference_episodes: int = 64) -> Suite:
    """One of :data:`SUITE_NAMES`. ``n_tasks``: tasks for AnyMDP / Garnet, parallel copies for the single
    Gymnasium tasks and Pendulum (each copy is scored as its own run); DarkRoom has one task per corner, repeated
    to ``max(n_tasks, 4)`` rounded down to a multiple of 4."""
    if name.startswith("anymdp_"):
        ns = int(name.split("_")[1])
        tasks = [sample_anymdp(ns, na, seed=test_seed(0, ns, i)) for i in range(n_tasks)]
        return task_suite(name, tasks, info={"family": "anymdp", "ns": ns})
    if name.startswith("garnet_"):
        ns = int(name.split("_")[1])
        tasks = [sample_garnet(ns, na, 2, seed=test_seed(1, ns, i)) for i in range(n_tasks)]
        return task_suite(name, tasks, info={"family": "garnet", "ns": ns})
    if name == "cliffwalking":
        return task_suite(name, [cliffwalking_task(na)] * n_tasks)
    if name in ("frozenlake", "frozenlake_slippery"):
        return task_suite(name, [frozenlake_task(name.endswith("slippery"), na)] * n_tasks)
    if name.startswith("darkroom_"):
        size = int(name.split("_")[1])
        corners = [darkroom_task(size, c, na=na) for c in range(4)]
        return task_suite(name, [corners[i % 4] for i in range(max(4, n_tasks - n_tasks % 4))])
    if name.startswith("pendulum_g"):
        return pendulum_suite(float(name[len("pendulum_g"):]), n_tasks, samples=pendulum_samples,
                              reference_episodes=pendulum_reference_episodes, name=name)
    raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITE_NAMES)}")
