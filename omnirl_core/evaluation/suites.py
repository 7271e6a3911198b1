"""Test suites of the evaluation (paper section 5): task families, Gymnasium wrappers and reference returns.

Every suite is a :class:`Suite`: ``B`` environments of the same observation and action counts, stepped
together by a batched environment with one independent random stream per environment (so a task's run does
not depend on which other tasks share its batch), plus per-environment reference returns ``R_oracle`` and
``R_random`` for the normalised score and an oracle action per observation.

Where the dynamics are known the suite holds tabular :class:`~omnirl_core.world.task.Task` objects and the
reference returns are exact (:func:`omnirl_core.world.oracle.policy_return`): unseen AnyMDP tasks, Garnet, the
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
  -0.05 per other step; CliffWalking +1 on reaching the goal / -1 on stepping into the cliff / -0.03 per
  other step; Pendulum ``r' = max(r / 30 + 0.1, -0.1)``.
- CliffWalking: as in the reference (airsoul OmniRL), falling off the cliff ends the episode (Gymnasium
  sends the agent back to the start and goes on). Here the fall terminates in the cliff cell entered
  (observation ids 37-46); the reference reports it as a truncation whose last observation is the start
  cell, which only a learner bootstrapping at truncation would tell apart (:func:`.gym_tasks.cliffwalking_task`).
- Episode limits: FrozenLake and CliffWalking 200 steps, Pendulum 200, as the reference evaluation caps an
  episode (its ``max_steps: 200``; its check ``step > max_steps`` lets a capped episode run a 201st step,
  not copied; Gymnasium's own limits are 100 for FrozenLake 4x4, none for CliffWalking, 200 for Pendulum).
  DarkRoom keeps ``4 N`` steps, a difference: the reference runs it for the same 200 steps but with a
  reward of -0.01 on every step off the goal (its ``DarkroomEnv``); with the paper's reward (+1 at the goal
  only) and 200 steps a uniform random walk reaches the goal of a 6 x 6 room 67% of the time (28% in
  10 x 10), leaving the normalised score little to measure, against 15% (8%) within ``4 N`` steps.
- Pendulum start: a fresh random start every episode by default; the reference evaluation starts every
  episode from the one state Gymnasium's ``reset(seed=123)`` gives, which the paper's numbers most likely used
  (``pendulum_start="reference"`` in :func:`build_suite`; see :mod:`.gym_tasks`).
- DarkRoom N x N: state ``row * N + col``; actions up, down, left, right, stay; the goal is a corner
  (one task per corner) and ends the episode with reward +1; starts are uniform over the other cells.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from ..workbook.errors import InputError
from ..workbook.plugins import Registry
from ..world.anymdp import sample_anymdp
from ..world.envs import BatchedAnyMDPEnv
from ..world.garnet import sample_garnet
from ..world.oracle import ORACLE_GAMMA, oracle_policy, oracle_return, policy_iteration, random_return
from ..world.task import Task
from .gym_tasks import (
    NA,
    PENDULUM_ANGLE_BINS,
    PENDULUM_SPEED_BINS,
    PENDULUM_TORQUES,
    BatchedDiscretePendulum,
    DiscretePendulum,
    DiscreteWrapper,
    Shaping,
    check_pendulum_start,
    cliffwalking_task,
    darkroom_task,
    estimate_pendulum_task,
    frozenlake_task,
    task_from_gym,
)
from .streams import EnvStreams, env_seeds

TEST_SEED_OFFSET = 2**32
PENDULUM_OBS = PENDULUM_ANGLE_BINS * PENDULUM_SPEED_BINS


_REGISTRY: Registry[SuiteSpec] = Registry(
    "suite", "or anymdp_<ns>, garnet_<ns>; register one with omnirl_core.evaluation.register_suite, or list its "
    "module in OMNIRL_PLUGINS")
SUITE_NAMES = _REGISTRY.view()
"""The registered suite names (a live, tuple-like view: the built-in ones below, then any registered later)."""

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


class TaskBatchEnv(BatchedAnyMDPEnv):
    """:class:`~omnirl_core.world.envs.BatchedAnyMDPEnv` whose randomness is one :class:`EnvStreams` stream per env.

    ``reset(seed=...)`` takes a sequence of per-environment seeds (or an int, expanded by :func:`env_seeds`).
    """

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            seeds = env_seeds(seed, self.num_envs) if isinstance(seed, (int, np.integer)) else list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed: an int or one seed per env ({self.num_envs}), got {len(seeds)} seeds")
            self._np_random = EnvStreams(seeds)
        elif not isinstance(getattr(self, "_np_random", None), EnvStreams):
            self._np_random = EnvStreams(env_seeds(0, self.num_envs))
        return super().reset(seed=None, options=options)

    def _sample_starts(self, idx: np.ndarray) -> np.ndarray:
        u = self._np_random.uniform(idx)[:, 0]
        return (self._start_cdf[idx] <= u[:, None]).sum(axis=1)


# ---------------------------------------------------------------------------------------------- tabular tasks
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
    from ..world.envs import AnyMDPEnv

    return Suite(name=name, na=tasks[0].na, n_obs=n_obs, make_env=lambda: TaskBatchEnv(tasks), r_oracle=r_or,
                 r_random=r_rand, oracle_actions=table, reference="exact", tasks=tasks, info=dict(info or {}),
                 make_single=lambda b: AnyMDPEnv(tasks[b]))


def pendulum_suite(g: float, num_envs: int, *, samples: int = 200, reference_episodes: int = 64, seed: int = 0,
                   name: str | None = None, start: str = "random") -> Suite:
    """Discrete Pendulum: oracle = optimal policy of :func:`estimate_pendulum_task`; R_oracle and R_random are
    Monte-Carlo means over ``reference_episodes`` episodes of that policy / the uniform policy in the real system
    (standard errors in ``info``). ``start`` (one of :data:`.gym_tasks.PENDULUM_STARTS`): the episodes' start
    state, the same for the suite's environments and for the episodes behind R_oracle and R_random."""
    check_pendulum_start(start)
    model = estimate_pendulum_task(g, samples=samples, seed=seed, start=start)
    Q, _ = policy_iteration(model, ORACLE_GAMMA)
    policy = Q.argmax(axis=-1)
    n = max(1, int(reference_episodes))
    refs = {}
    for kind in ("oracle", "random"):
        env = BatchedDiscretePendulum(g, n, start=start)
        obs, _ = env.reset(seed=[TEST_SEED_OFFSET + 7919 * (kind == "random") + i for i in range(n)])
        streams = EnvStreams([TEST_SEED_OFFSET + 104729 + i for i in range(n)])
        for _ in range(env.max_steps):
            act = policy[obs] if kind == "oracle" else streams.integers(0, env.na, n)
            obs, _, _, trunc, infos = env.step(act)
        refs[kind] = infos["final_return"].copy()
    r_or = np.full(num_envs, refs["oracle"].mean())
    r_rand = np.full(num_envs, refs["random"].mean())
    info = {"g": float(g), "reference_episodes": n, "start": start,
            "oracle_se": float(refs["oracle"].std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
            "random_se": float(refs["random"].std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")}
    return Suite(name=name or f"pendulum_g{g:g}", na=len(PENDULUM_TORQUES), n_obs=model.ns,
                 make_env=lambda: BatchedDiscretePendulum(g, num_envs, start=start), r_oracle=r_or,
                 r_random=r_rand, oracle_actions=np.tile(policy, (num_envs, 1)), reference="estimated", tasks=None,
                 info=info, make_single=lambda b: DiscretePendulum(g=g, start=start))


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


def model_fit(suite: Suite | SuiteSpec, ns_max: int, na: int) -> str:
    """Why a model with ``ns_max`` observation ids and ``na`` actions cannot run ``suite`` (a :class:`Suite` or a
    registered :class:`SuiteSpec`), "" when it can. Fewer actions than the model's are fine: the agent plays the
    model's action a as ``a mod suite.na``, as tasks with fewer actions do (paper)."""
    if suite.n_obs > ns_max:
        return f"the model takes at most {ns_max} observation ids, the suite has {suite.n_obs}"
    if suite.na > na:
        return f"the model takes at most {na} actions, the suite has {suite.na}"
    return ""


def is_simulated(name: str) -> bool:
    """Whether suite ``name`` is simulated (Pendulum): no tabular tasks, so its baselines take the numpy path."""
    return name.startswith("pendulum_g")


def build_suite(name: str, n_tasks: int = 64, *, na: int = NA, pendulum_samples: int = 200,
                pendulum_reference_episodes: int = 64, pendulum_start: str = "random") -> Suite:
    """A registered suite (:data:`SUITE_NAMES`), or ``anymdp_<ns>`` / ``garnet_<ns>`` of any size. ``n_tasks``:
    tasks for AnyMDP / Garnet, parallel copies for the single Gymnasium tasks and Pendulum (each copy is scored
    as its own run); DarkRoom has one task per corner, repeated to ``max(n_tasks, 4)`` rounded down to a multiple
    of 4. ``na``: the actions every suite exposes. ``pendulum_start``: Pendulum's start state, one of
    :data:`.gym_tasks.PENDULUM_STARTS` (random: a fresh start every episode; reference: the reference
    evaluation's fixed start), checked for every suite. The options are passed to the suite's builder."""
    check_pendulum_start(pendulum_start)
    options = {"na": na, "pendulum_samples": pendulum_samples,
               "pendulum_reference_episodes": pendulum_reference_episodes, "pendulum_start": pendulum_start}
    spec = _REGISTRY.find(name)
    if spec is None:
        builder = _family_member(name)
        if builder is not None:
            return builder(n_tasks, **options)
        raise InputError(f"unknown suite {name!r}; choose one of {', '.join(SUITE_NAMES)} (or anymdp_<ns>, "
                         "garnet_<ns>; a suite of your own: omnirl_core.evaluation.register_suite)")
    suite = spec.builder(n_tasks, **options)
    if not isinstance(suite, Suite):
        raise TypeError(f"the builder of suite {name!r} returned {type(suite).__name__}, not a Suite")
    if suite.name != name or suite.n_obs != spec.n_obs or (na == NA and suite.na != spec.na):
        raise ValueError(f"the builder of suite {name!r} returned suite {suite.name!r} with {suite.n_obs} observation "
                         f"ids and {suite.na} actions; it was registered as {name!r} with {spec.n_obs} and {spec.na}")
    return suite


# ---------------------------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class SuiteSpec:
    """A registered suite: ``builder(n_tasks, **options) -> Suite`` and what is known without building it (the
    observation ids and actions a model needs, its family, a line for help texts)."""

    name: str
    builder: Callable[..., Suite]
    n_obs: int
    na: int = NA
    family: str = "custom"
    description: str = ""


def register_suite(name: str, builder: Callable[..., Suite], *, n_obs: int, na: int = NA, family: str = "custom",
                   description: str = "", replace: bool = False) -> SuiteSpec:
    """Register suite ``name`` (a name already registered is an error unless ``replace=True``).

    ``builder(n_tasks, **options)`` returns the :class:`Suite` named ``name`` with ``n_tasks`` runs; ``options``
    are :func:`build_suite`'s keywords (``na``, ``pendulum_samples``, ``pendulum_reference_episodes``,
    ``pendulum_start``), which a builder may ignore but must accept. ``n_obs`` and ``na``: the suite's
    observation ids and actions (with the default options), known without building it, so a model that cannot
    run the suite is skipped before it is built; ``family`` groups suites (anymdp, garnet, gym, pendulum,
    darkroom, ...); ``description``: one line for help texts. The suite is accepted by name everywhere a suite
    name is: :func:`build_suite`, the configurations of notebooks 04 and 05, ``python -m
    omnirl_core.evaluation --suite``."""
    if not callable(builder):
        raise TypeError(f"suite {name!r}: builder must be callable, got {builder!r}")
    for key, value in (("n_obs", n_obs), ("na", na)):
        if not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"suite {name!r}: {key} must be an int >= 1, got {value!r}")
    spec = SuiteSpec(name, builder, int(n_obs), int(na), str(family), str(description))
    return _REGISTRY.register(name, spec, replace=replace)


def suite_spec(name: str) -> SuiteSpec:
    """The registered suite ``name`` (an :class:`~omnirl_core.workbook.errors.InputError` listing the names
    otherwise)."""
    return _REGISTRY.get(name)


def unregister_suite(name: str) -> SuiteSpec:
    """Remove a registered suite (for tests that register a temporary one)."""
    return _REGISTRY.unregister(name)


def suites_help() -> str:
    """One line per registered suite: name, observation ids x actions, description (for command-line help)."""
    return "; ".join(f"{s.name} ({s.n_obs} x {s.na}{': ' + s.description if s.description else ''})"
                     for s in map(_REGISTRY.get, _REGISTRY.names()))


def _family_member(name: str) -> Callable[..., Suite] | None:
    """The builder of an unregistered size of a built-in family (``anymdp_<ns>``, ``garnet_<ns>``,
    ``darkroom_<N>``, ``pendulum_g<g>``), or None."""
    family, _, tail = name.partition("_")
    if family in ("anymdp", "garnet") and tail.isdigit():
        return functools.partial(_sampled_suite, family, int(tail))
    if family == "darkroom" and tail.isdigit() and int(tail) >= 2:
        return functools.partial(_darkroom_suite, int(tail))
    if is_simulated(name):
        try:
            g = float(name[len("pendulum_g"):])
        except ValueError:
            return None
        return functools.partial(_pendulum, g) if math.isfinite(g) and f"pendulum_g{g:g}" == name else None
    return None


def _sampled_suite(family: str, ns: int, n_tasks: int, *, na: int = NA, **_) -> Suite:
    """``anymdp_<ns>`` / ``garnet_<ns>``: unseen tasks of the family at test seeds."""
    if family == "anymdp":
        tasks = [sample_anymdp(ns, na, seed=test_seed(0, ns, i)) for i in range(n_tasks)]
    else:
        tasks = [sample_garnet(ns, na, 2, seed=test_seed(1, ns, i)) for i in range(n_tasks)]
    return task_suite(f"{family}_{ns}", tasks, info={"family": family, "ns": ns})


def _gym_task_suite(name: str, make_task: Callable[[int], Task], n_tasks: int, *, na: int = NA, **_) -> Suite:
    return task_suite(name, [make_task(na)] * n_tasks)


def _darkroom_suite(size: int, n_tasks: int, *, na: int = NA, **_) -> Suite:
    corners = [darkroom_task(size, c, na=na) for c in range(4)]
    return task_suite(f"darkroom_{size}", [corners[i % 4] for i in range(max(4, n_tasks - n_tasks % 4))])


def _pendulum(g: float, n_tasks: int, *, pendulum_samples: int = 200, pendulum_reference_episodes: int = 64,
              pendulum_start: str = "random", **_) -> Suite:
    return pendulum_suite(g, n_tasks, samples=pendulum_samples, reference_episodes=pendulum_reference_episodes,
                          name=f"pendulum_g{g:g}", start=pendulum_start)


for _ns in (1, 16, 32, 64, 128):
    register_suite(f"anymdp_{_ns}", functools.partial(_sampled_suite, "anymdp", _ns), n_obs=_ns, family="anymdp",
                   description="unseen AnyMDP tasks" if _ns > 1 else "unseen AnyMDP bandits")
for _ns in (16, 64):
    register_suite(f"garnet_{_ns}", functools.partial(_sampled_suite, "garnet", _ns), n_obs=_ns, family="garnet",
                   description="unseen Garnet tasks, branching 2")
for _name, _make, _ns, _what in (
        ("cliffwalking", cliffwalking_task, 48, "Gymnasium CliffWalking, falling ends the episode"),
        ("frozenlake", functools.partial(frozenlake_task, False), 16, "Gymnasium FrozenLake 4x4"),
        ("frozenlake_slippery", functools.partial(frozenlake_task, True), 16, "Gymnasium FrozenLake 4x4, slippery")):
    register_suite(_name, functools.partial(_gym_task_suite, _name, _make), n_obs=_ns, family="gym", description=_what)
for _g in (1.0, 5.0, 9.8):
    register_suite(f"pendulum_g{_g:g}", functools.partial(_pendulum, _g), n_obs=PENDULUM_OBS, family="pendulum",
                   description=f"discrete Pendulum, g = {_g:g}")
for _size in (6, 8, 10):
    register_suite(f"darkroom_{_size}", functools.partial(_darkroom_suite, _size), n_obs=_size * _size,
                   family="darkroom", description=f"DarkRoom {_size} x {_size}, goal in a corner")
