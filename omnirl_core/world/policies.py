"""Behaviour policies (random, drifting softmax, oracle, noisy oracle) and their interface, batched over B tasks of
the same (ns, na).

Every policy here works on **inner state ids** (the hidden-ranking index of :mod:`omnirl_core.world.task`), not on
observations: the environments report inner states in their info dicts (``info["state"]``,
``infos["next_state"]``), and data synthesis maps them to observations itself. A learner that should see
only observations can be given ``state_mapping``-mapped ids and ``ns = n_obs``; nothing here depends on the
ranking.

Interface (:class:`BatchedPolicy`):

- ``reset(tasks, rng)``: start B new, independent tasks. ``tasks`` is a sequence of ``Task`` (or one
  ``Task``, or ``TaskArrays``), or just a shape ``(B, ns, na)`` for policies that do not need the true
  model (only the oracles do). All per-task state is cleared.
- ``act(states, rng) -> int[B]``: actions at the current inner states; ``act_info`` also returns a bool
  array ``was_random`` saying which actions came from a random branch (see each class).
- ``observe(states, actions, rewards, next_states, terminated, truncated)``: learn from one executed
  transition per task, whoever chose the action (learners learn off-policy from every transition).
  ``next_states`` are the states reached *before* any environment auto-reset.
- ``end_episode(mask)``: the masked tasks finished an episode (the model-based learner re-plans there).
- ``action_probs() -> [B, ns, na]``: the current acting distribution, where it is exact and cheap.

All work is vectorised with numpy over the batch (no Python loop over tasks or states per step). All
randomness comes from the ``numpy.random.Generator`` passed in; the global RNG is never used. Random
branches draw actions from the whole range ``[0, na)``, the last action included.

Terminal states are learned from experience: a state is *learned terminal* when an episode terminated on
entering it and it has never been acted from (a state acted from cannot be terminal; this keeps bandits,
whose every pull terminates while the arm state loops to itself, from being mistaken for terminals).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .oracle import TaskArrays, oracle_policy, stack_tasks
from .task import Task, as_generator


def _resolve(tasks: Any) -> tuple[int, int, int, TaskArrays | None]:
    """(B, ns, na, arrays or None) from tasks, TaskArrays or a (B, ns, na) shape."""
    if isinstance(tasks, tuple) and len(tasks) == 3 and all(isinstance(x, (int, np.integer)) for x in tasks):
        B, ns, na = (int(x) for x in tasks)
        if B < 1 or ns < 1 or na < 1:
            raise ValueError(f"shape (B, ns, na) must be positive, got {tasks}")
        return B, ns, na, None
    if isinstance(tasks, Task):
        tasks = [tasks]
    arrays = stack_tasks(tasks)
    if arrays.transition.ndim == 3:  # an unbatched TaskArrays
        arrays = TaskArrays(
            arrays.transition[None],
            arrays.reward[None],
            None if arrays.start_prob is None else arrays.start_prob[None],
            arrays.terminal[None],
            None if arrays.horizon is None else np.asarray(arrays.horizon).reshape(1),
        )
    if arrays.transition.ndim != 4:
        raise ValueError(f"expected a batch of tasks [B, ns, na, ns], got shape {arrays.transition.shape}")
    B, ns, na, _ = arrays.transition.shape
    return B, ns, na, arrays


def _categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of probs [B, n] by inverse CDF with one uniform per row."""
    cdf = np.cumsum(probs, axis=-1)
    cdf /= cdf[:, -1:]
    cdf[:, -1] = 1.0  # exactly: u < 1 never runs past the end, zero-probability entries are never hit
    u = rng.random(probs.shape[0])
    return (cdf <= u[:, None]).sum(axis=-1)


def _argmax_random_ties(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmax of values [B, n] with ties broken uniformly at random."""
    best = values.max(axis=-1, keepdims=True)
    keys = rng.random(values.shape)
    keys[values < best] = -1.0
    return keys.argmax(axis=-1)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _hyper(value: Any, name: str) -> float | np.ndarray:
    """A learner hyperparameter: a scalar (shared by every task) or a 1-D array with one value per task."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return float(arr)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a scalar or a 1-D array with one value per task, got shape {arr.shape}")
    return arr.copy()


def _per_task(value: float | np.ndarray, B: int, name: str) -> np.ndarray:
    """[B] values of a hyperparameter (a scalar broadcast, or its per-task array checked against B)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 1 and arr.shape != (B,):
        raise ValueError(f"{name} has {arr.size} per-task values but the learner was reset for {B} tasks")
    return np.broadcast_to(arr, (B,)).copy()


def _ties_to_probs(values: np.ndarray) -> np.ndarray:
    """Uniform distribution over each row's maximal entries ([..., n] -> [..., n])."""
    best = values.max(axis=-1, keepdims=True)
    mask = (values >= best).astype(np.float64)
    return mask / mask.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------- base
class BatchedPolicy:
    """Base class: B independent tasks of the same (ns, na); see the module docstring for the interface."""

    #: whether this policy's actions count as "random behaviour" (tag 6 of data synthesis) in ``act_info``
    is_random: bool = False

    def __init__(self) -> None:
        self.batch_size = 0
        self.ns = 0
        self.na = 0
        self._rows = np.zeros(0, dtype=np.int64)

    # -------------------------------------------------------------- lifecycle
    def reset(self, tasks: Any, rng: np.random.Generator | int | None = None) -> None:
        """Start B new tasks (see the module docstring for what ``tasks`` may be)."""
        B, ns, na, arrays = _resolve(tasks)
        self.batch_size, self.ns, self.na = B, ns, na
        self._rows = np.arange(B)
        self._reset(arrays, rng)

    def _reset(self, arrays: TaskArrays | None, rng: np.random.Generator | int | None) -> None:
        pass

    def _check_ready(self) -> None:
        if self.batch_size == 0:
            raise RuntimeError(f"{type(self).__name__}: call reset(tasks, rng) before use")

    def _states(self, states: Any) -> np.ndarray:
        self._check_ready()
        s = np.asarray(states)
        if s.shape != (self.batch_size,):
            raise ValueError(f"states must have shape ({self.batch_size},), got {s.shape}")
        return s.astype(np.int64, copy=False)

    # -------------------------------------------------------------- acting
    def act(self, states: Any, rng: np.random.Generator) -> np.ndarray:
        """int[B] actions at inner states [B]."""
        return self.act_info(states, rng)[0]

    def act_info(self, states: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(actions int[B], was_random bool[B]); by default was_random is ``is_random`` for every task."""
        s = self._states(states)
        return self._act(s, rng), np.full(self.batch_size, self.is_random)

    def _act(self, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def action_probs(self) -> np.ndarray:
        """[B, ns, na] current acting distribution."""
        raise NotImplementedError(f"{type(self).__name__} has no exact action distribution")

    # -------------------------------------------------------------- learning
    def observe(self, states, actions, rewards, next_states, terminated, truncated) -> None:
        """Learn from one transition per task (no-op for fixed policies)."""

    def end_episode(self, mask: Any) -> None:
        """The masked tasks finished an episode (no-op by default)."""


# ---------------------------------------------------------------------------------------------- fixed policies
class RandomPolicy(BatchedPolicy):
    """Uniform random actions over [0, na)."""

    is_random = True

    def _act(self, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.na, size=self.batch_size)

    def action_probs(self) -> np.ndarray:
        self._check_ready()
        return np.full((self.batch_size, self.ns, self.na), 1.0 / self.na)


class DriftingSoftmaxPolicy(BatchedPolicy):
    """Random per-state softmax policy whose probability table drifts slowly.

    At reset, per task: e1 ~ Exp(mean ``logit_scale_mean``), logits ~ N(0, e1^2) per (s, a) (e1 is the std),
    table = softmax(logits); e2 ~ Exp(mean ``drift_scale_mean``). After every ``act`` the [ns, na] table is
    multiplied on the right by a near-identity matrix I + N(0, e2^2) (a fresh [na, na] draw per task),
    clipped to >= 0 and renormalised (a row that clips to all zeros becomes uniform).
    Its actions count as random behaviour (``is_random``).
    """

    is_random = True

    def __init__(self, logit_scale_mean: float = 2.0, drift_scale_mean: float = 1e-5) -> None:
        super().__init__()
        if logit_scale_mean < 0 or drift_scale_mean < 0:
            raise ValueError("logit_scale_mean and drift_scale_mean must be >= 0")
        self.logit_scale_mean = float(logit_scale_mean)
        self.drift_scale_mean = float(drift_scale_mean)

    def _reset(self, arrays, rng) -> None:
        rng = as_generator(rng)
        B, ns, na = self.batch_size, self.ns, self.na
        self.logit_scale = rng.exponential(self.logit_scale_mean, size=B) if self.logit_scale_mean > 0 else np.zeros(B)
        self.drift_scale = rng.exponential(self.drift_scale_mean, size=B) if self.drift_scale_mean > 0 else np.zeros(B)
        logits = rng.standard_normal((B, ns, na)) * self.logit_scale[:, None, None]
        self.probs = _softmax(logits)

    def _act(self, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        actions = _categorical(self.probs[self._rows, states], rng)
        self._drift(rng)
        return actions

    def _drift(self, rng: np.random.Generator) -> None:
        B, na = self.batch_size, self.na
        mix = np.eye(na)[None] + rng.standard_normal((B, na, na)) * self.drift_scale[:, None, None]
        probs = np.clip(np.matmul(self.probs, mix), 0.0, None)
        total = probs.sum(axis=-1, keepdims=True)
        self.probs = np.where(total > 0, probs / np.where(total > 0, total, 1.0), 1.0 / na)

    def action_probs(self) -> np.ndarray:
        self._check_ready()
        return self.probs.copy()


class OraclePolicy(BatchedPolicy):
    """Greedy action of the optimal Q at ``gamma`` on the true task (gamma 0: argmax of expected reward).

    ``reset`` needs the true tasks (Task objects or TaskArrays), not just a shape.
    """

    def __init__(self, gamma: float) -> None:
        super().__init__()
        if not 0.0 <= float(gamma) < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {gamma}")
        self.gamma = float(gamma)

    def _reset(self, arrays, rng) -> None:
        if arrays is None:
            raise ValueError(f"{type(self).__name__} needs the true tasks at reset, not a shape")
        self.policy = np.asarray(oracle_policy(arrays, self.gamma)).reshape(self.batch_size, self.ns)

    def _act(self, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.policy[self._rows, states]

    def action_probs(self) -> np.ndarray:
        self._check_ready()
        return np.eye(self.na)[self.policy]


class NoisyOraclePolicy(OraclePolicy):
    """Epsilon-oracle: with probability eps a uniform random action over [0, na), else the oracle's.

    eps starts at ``eps0`` and after every ``act`` decreases linearly by a per-task rate drawn at reset from
    U(0, ``decay_max``) (default ``decay_max = 1 / (ns * na)``), down to ``eps_min``. ``act_info`` returns
    ``was_random`` True exactly where the random branch acted.
    """

    def __init__(self, gamma: float, eps0: float = 1.0, decay_max: float | None = None, eps_min: float = 0.0) -> None:
        super().__init__(gamma)
        if not 0.0 <= eps_min <= eps0 <= 1.0:
            raise ValueError(f"need 0 <= eps_min <= eps0 <= 1, got eps_min={eps_min}, eps0={eps0}")
        if decay_max is not None and decay_max < 0:
            raise ValueError(f"decay_max must be >= 0, got {decay_max}")
        self.eps0 = float(eps0)
        self.eps_min = float(eps_min)
        self.decay_max = decay_max

    def _reset(self, arrays, rng) -> None:
        super()._reset(arrays, rng)
        rng = as_generator(rng)
        top = 1.0 / (self.ns * self.na) if self.decay_max is None else float(self.decay_max)
        self.decay = rng.uniform(0.0, top, size=self.batch_size)
        self.eps = np.full(self.batch_size, self.eps0)

    def act_info(self, states: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s = self._states(states)
        was_random = rng.random(self.batch_size) < self.eps
        noise = rng.integers(0, self.na, size=self.batch_size)
        actions = np.where(was_random, noise, self.policy[self._rows, s])
        self.eps = np.maximum(self.eps - self.decay, self.eps_min)
        return actions, was_random

    def action_probs(self) -> np.ndarray:
        greedy = super().action_probs()
        eps = self.eps[:, None, None]
        return eps / self.na + (1.0 - eps) * greedy
