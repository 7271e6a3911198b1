"""Gymnasium and DarkRoom tasks for the evaluation suites: tabular tasks converted from ``env.unwrapped.P`` with the
paper's reward shaping, DarkRoom grids, and discrete Pendulum (a discretising wrapper of the real continuous
system, batched, and a tabular model estimated from sampled transitions). See :mod:`.suites` for the
conventions (actions, shaping, episode limits).

Pendulum's start state (:data:`PENDULUM_STARTS`). Gymnasium draws theta ~ U(-pi, pi), theta_dot ~ U(-1, 1) at
every reset; ours does the same by default (``start="random"``: a fresh start every episode). The reference
evaluation (airsoul OmniRL, ``reset_env``) resets Pendulum with ``reset(seed=123, options={"low": -0.7,
"high": 0.5})`` before every episode: Gymnasium reads only the options ``x_init`` / ``y_init``, so the bounds are
ignored, and the fixed seed makes every episode start from one state (Gymnasium 1.4: theta 1.146, theta_dot
-0.892). The paper's Pendulum numbers come from that code, so they most likely used that fixed start;
``start="reference"`` reproduces it (every episode starts from the state ``reset(seed=123)`` gives), with the
tabular model's start distribution and the suite's reference returns measured from that same state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..workbook.errors import InputError
from ..world.task import Task
from .streams import EnvStreams, env_seeds

NA = 5
PENDULUM_ANGLE_BINS = 12
PENDULUM_SPEED_BINS = 5
PENDULUM_TORQUES = np.linspace(-2.0, 2.0, 5)
PENDULUM_MAX_SPEED = 8.0
PENDULUM_STARTS = ("random", "reference")
"""Pendulum start states: random (a fresh Gymnasium draw every episode) or reference (every episode from the
state Gymnasium's ``reset(seed=PENDULUM_REFERENCE_SEED)`` gives, as the reference evaluation)."""
PENDULUM_REFERENCE_SEED = 123


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
    """Paper shaping for CliffWalking: +1 on reaching the goal, -1 for the cliff (Gymnasium reward -100), else -0.03.

    Only the reward: in a :class:`DiscreteWrapper` a fall still sends the agent back to the start without ending
    the episode, as in Gymnasium; :func:`cliffwalking_task` (the suite) also ends the episode there."""

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
    P: dict | None = None,
) -> Task:
    """A tabular Task from a Gymnasium env with ``env.unwrapped.P`` (FrozenLake, CliffWalking, Taxi, ...).

    ``P[s][a]`` lists ``(prob, next_state, reward, terminated)`` (``P``: a table to use instead of the env's).
    A state is terminal when some transition terminates on entering it (its own rows are then dropped). The
    start distribution is ``env.unwrapped.initial_state_distrib`` when present, else the empirical distribution
    of 200 resets. ``shaping`` rewrites every reward; ``na`` expands the actions with ``a -> a mod n``.
    """
    u = env.unwrapped
    P = getattr(u, "P", None) if P is None else P
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


GYM_EPISODE_STEPS = 200
"""Episode limit of FrozenLake and CliffWalking: the reference evaluation's per-episode cap (airsoul OmniRL,
``max_steps: 200``; Gymnasium's own limits are 100 for FrozenLake 4x4 and none for CliffWalking)."""


def frozenlake_task(slippery: bool, na: int = NA, max_steps: int = GYM_EPISODE_STEPS) -> Task:
    """FrozenLake 4x4 as a Task with the paper's shaping (``max_steps`` limit, 200 as in the reference)."""
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=slippery)
    return task_from_gym(env, shaping=frozenlake_shaping(env.unwrapped.desc, slippery), max_steps=max_steps, na=na,
                         kind="frozenlake", meta={"slippery": bool(slippery)})


CLIFF_MOVES = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}  # up, right, down, left


def cliffwalking_task(na: int = NA, max_steps: int = GYM_EPISODE_STEPS) -> Task:
    """CliffWalking 4x12 as a Task with the paper's shaping and, as in the reference, the episode ending when the
    agent falls off the cliff (``max_steps`` limit, 200 as in the reference; Gymnasium has none).

    Gymnasium sends a falling agent back to the start and goes on; here the fall enters the cliff cell it steps
    on (observation ids 37-46, otherwise never occupied), a terminal state, with reward -1. The reference
    (airsoul's ``DiscreteEnvWrapper``) marks the fall as a truncation whose last observation is the start cell;
    the return is the same, only a learner that bootstraps at truncation would see a difference."""
    env = gym.make("CliffWalking-v1")
    u = env.unwrapped
    rows, cols = u.shape
    table = {}
    for s, per_action in u.P.items():
        table[s] = {}
        for a, outcomes in per_action.items():
            fixed = []
            for prob, s2, r, term in outcomes:
                if r <= -100:  # the fall: into the cliff cell the move enters, ending the episode
                    dr, dc = CLIFF_MOVES[int(a)]
                    row, col = divmod(int(s), cols)
                    s2 = min(max(row + dr, 0), rows - 1) * cols + min(max(col + dc, 0), cols - 1)
                    term = True
                fixed.append((prob, s2, r, term))
            table[s][a] = fixed
    return task_from_gym(env, shaping=cliffwalking_shaping(), max_steps=max_steps, na=na, kind="cliffwalking",
                         P=table, meta={"cliff_ends_episode": True})


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
    ``Pendulum-v1`` with ``g`` and ``max_episode_steps``). ``start``: one of :data:`PENDULUM_STARTS`; with
    "reference" every reset puts the pendulum in :func:`pendulum_reference_start` (seeds still seed the env)."""

    def __init__(self, env: gym.Env | None = None, g: float = 10.0, max_episode_steps: int = 200,
                 start: str = "random") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, g=g, max_episode_steps=max_episode_steps, start=start)
        self.start = check_pendulum_start(start)
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
        if self.start == "reference":
            th, thdot = pendulum_reference_start()
            self.env.unwrapped.state = np.array([th, thdot])
            obs = np.array([np.cos(th), np.sin(th), thdot], dtype=np.float32)  # as Pendulum-v1's observation
        return self._bin(obs), info

    def step(self, action):
        torque = np.array([PENDULUM_TORQUES[int(action)]], dtype=np.float32)
        obs, r, term, trunc, info = self.env.step(torque)
        return self._bin(obs), float(pendulum_shaping(r)), term, trunc, info


def check_pendulum_start(start: str) -> str:
    """``start`` if it is one of :data:`PENDULUM_STARTS`, else an :class:`InputError` naming it and the choices."""
    if start not in PENDULUM_STARTS:
        raise InputError(f"Pendulum start {start!r} is not one of: {', '.join(PENDULUM_STARTS)}")
    return start


@functools.cache
def pendulum_reference_start() -> tuple[float, float]:
    """(theta, theta_dot) of Gymnasium's Pendulum-v1 after ``reset(seed=123)`` (Gymnasium 1.4: 1.146, -0.892;
    gravity does not enter the draw): the start of every episode of the reference evaluation."""
    env = gym.make("Pendulum-v1")
    env.reset(seed=PENDULUM_REFERENCE_SEED)
    th, thdot = (float(x) for x in env.unwrapped.state)
    env.close()
    return th, thdot


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
    up to rounding); starts (``start``, :data:`PENDULUM_STARTS`) are theta ~ U(-pi, pi), theta_dot ~ U(-1, 1) from
    each env's own stream ("random") or :func:`pendulum_reference_start` for every episode ("reference")."""

    def __init__(self, g: float, num_envs: int, max_steps: int = 200, start: str = "random") -> None:
        self.start = check_pendulum_start(start)
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
        if self.start == "reference":
            self.th[idx], self.thdot[idx] = pendulum_reference_start()
        else:
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


def estimate_pendulum_task(g: float, samples: int = 200, seed: int = 0, start_samples: int = 20000,
                           start: str = "random") -> Task:
    """Tabular model of the discrete Pendulum: for every (bin, torque), ``samples`` states drawn uniformly within
    the bin are stepped through the true dynamics; P and the mean shaped reward per (bin, torque, next bin) are
    the empirical ones; the start distribution is that of ``start_samples`` random resets (``start="random"``)
    or the bin of :func:`pendulum_reference_start` (``"reference"``). 200-step limit."""
    check_pendulum_start(start)
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
    if start == "reference":
        th0, v0 = (np.array([x]) for x in pendulum_reference_start())
    else:
        th0, v0 = rng.uniform(-np.pi, np.pi, start_samples), rng.uniform(-1, 1, start_samples)
    start_prob = np.bincount(pendulum_bins(np.cos(th0), np.sin(th0), v0), minlength=ns) / th0.size
    return Task.from_arrays(T, R, start_prob=start_prob, max_steps=200.0, kind="pendulum_model",
                            meta={"g": float(g), "samples": int(samples), "start": start})


# ---------------------------------------------------------------------------------------------- suites
