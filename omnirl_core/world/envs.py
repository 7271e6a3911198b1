"""Gymnasium environments for tabular tasks: one task (:class:`AnyMDPEnv`) or a batch (:class:`BatchedAnyMDPEnv`).

Semantics (both classes, see ``omnirl_core.world.task`` for the array conventions):

- ``reset``: the start inner state is drawn from ``task.start_prob``.
- ``step(a)``: the next inner state is drawn from ``P(. | s, a)``; the reward from
  ``N(reward[s, a, s'], reward_noise[s, a, s'])``; ``terminated`` when the next state is terminal, and on
  every step of a bandit (``task.is_bandit``); ``truncated`` when the episode has taken
  ``steps >= task.max_steps`` steps and did not terminate.
- Observations are ``task.state_mapping[inner]``; the inner state (hidden ranking index) is reported in
  the info dicts under ``"state"`` because data synthesis and the learners work on inner ids.

Randomness comes only from the environment's own Generator, seeded by ``reset(seed=...)``; numpy's global
RNG is never touched. Next states are drawn by inverse CDF on precomputed cumulative transition rows.

``import omnirl_core.world`` registers ``omnirl/AnyMDP-v0`` with Gymnasium, so
``gymnasium.make("omnirl/AnyMDP-v0", ns=16, na=5, seed=0)`` (a freshly sampled AnyMDP task) or
``gymnasium.make("omnirl/AnyMDP-v0", task=task)`` work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .anymdp import sample_anymdp
from .task import Task, as_flags

__all__ = [
    "ENV_ID",
    "AnyMDPEnv",
    "BatchedAnyMDPEnv",
    "InvalidActionError",
    "ResetNeeded",
    "register_envs",
]

ENV_ID = "omnirl/AnyMDP-v0"


class InvalidActionError(ValueError):
    """An action that is not an integer in ``[0, na)``."""


class ResetNeeded(RuntimeError):
    """``step`` was called before ``reset`` or after the episode ended."""


# ---------------------------------------------------------------------------------------------- helpers
def _cumulative(prob: np.ndarray) -> np.ndarray:
    """Cumulative rows normalised so that the last entry is exactly 1.0 (all-zero rows become all ones).

    With ``u ~ U[0, 1)``, ``(cdf <= u).sum(-1)`` is the index of the first entry with ``cdf > u``: it never
    lands on a zero-probability entry and never runs past the end.
    """
    cdf = np.cumsum(prob, axis=-1)
    total = cdf[..., -1:]
    safe = np.where(total > 0, total, 1.0)
    cdf = np.where(total > 0, cdf / safe, 1.0)
    cdf[..., -1] = 1.0
    return cdf


def _valid_single_action(action: Any, na: int) -> int:
    """The action as a Python int, or InvalidActionError naming it and the valid range."""
    value = None
    if isinstance(action, (bool, np.bool_)):
        value = None
    elif isinstance(action, (int, np.integer)):
        value = int(action)
    elif isinstance(action, np.ndarray) and action.shape == () and np.issubdtype(action.dtype, np.integer):
        value = int(action)
    if value is None or not 0 <= value < na:
        raise InvalidActionError(f"invalid action {action!r}: expected an integer in [0, {na})")
    return value


def _valid_batch_actions(actions: Any, num_envs: int, na: int) -> np.ndarray:
    """Actions as an int64 array [num_envs], or InvalidActionError naming the offending ones."""
    arr = actions if isinstance(actions, np.ndarray) else np.asarray(actions)
    if arr.shape != (num_envs,) or arr.dtype.kind not in "iu":
        raise InvalidActionError(
            f"invalid actions {actions!r} (shape {arr.shape}, dtype {arr.dtype}): expected an integer array of "
            f"shape ({num_envs},) with values in [0, {na})"
        )
    arr = arr.astype(np.int64, copy=False)
    bad = arr.view(np.uint64) >= na  # negative values wrap to huge unsigned ones
    if np.count_nonzero(bad):
        idx = np.flatnonzero(bad)
        raise InvalidActionError(
            f"invalid action {arr[idx[0]]!r} for env {idx[0]} ({idx.size} invalid): expected integers in [0, {na})"
        )
    return arr


# ---------------------------------------------------------------------------------------------- single env
class AnyMDPEnv(gym.Env):
    """One tabular task as a Gymnasium environment.

    Build it from a ``task`` or from ``ns, na, seed`` (then a task is drawn by
    ``omnirl_core.world.sample_anymdp(ns, na, seed=seed)``; ``seed`` seeds the task draw only, the episode
    randomness is seeded by ``reset(seed=...)``).

    Spaces: ``Discrete(task.n_obs)`` observations, ``Discrete(task.na)`` actions. ``info`` holds ``"state"``
    (inner state) and ``"steps"`` (steps taken in the current episode). ``render_mode="ansi"`` gives a
    one-line text description of the current step.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task: Task | None = None,
        *,
        ns: int | None = None,
        na: int = 5,
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if task is None:
            if ns is None:
                raise ValueError("AnyMDPEnv needs a task=Task or the size ns (and na, seed) of a task to sample")
            task = sample_anymdp(ns, na, seed=seed)
        elif not isinstance(task, Task):
            raise TypeError(f"task must be an omnirl_core.world.Task, got {type(task).__name__}")
        elif ns is not None and (ns != task.ns or na != task.na):
            raise ValueError(f"ns={ns}, na={na} disagree with the task's ({task.ns}, {task.na})")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.task = task
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(task.n_obs)
        self.action_space = spaces.Discrete(task.na)
        self._cdf = _cumulative(task.transition)  # [ns, na, ns]
        self._start_cdf = _cumulative(task.start_prob)  # [ns]
        self._state: int | None = None
        self._steps = 0
        self._done = True
        self._last_reward = 0.0

    # -------------------------------------------------------------- properties
    @property
    def state(self) -> int | None:
        """Current inner state (None before the first reset)."""
        return self._state

    @property
    def steps(self) -> int:
        """Steps taken in the current episode."""
        return self._steps

    def _obs(self) -> int:
        return int(self.task.state_mapping[self._state])

    def _info(self) -> dict[str, int]:
        return {"state": int(self._state), "steps": int(self._steps)}

    # -------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        """Start an episode. ``seed`` re-seeds ``self.np_random`` only (never numpy's global RNG)."""
        super().reset(seed=seed)
        u = self.np_random.random()
        self._state = int((self._start_cdf <= u).sum())
        self._steps = 0
        self._done = False
        self._last_reward = 0.0
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[int, float, bool, bool, dict]:
        a = _valid_single_action(action, self.task.na)
        if self._state is None:
            raise ResetNeeded("call reset() before step()")
        if self._done:
            raise ResetNeeded("the episode has ended (terminated or truncated): call reset() before stepping again")
        s = self._state
        u = self.np_random.random()
        nxt = int((self._cdf[s, a] <= u).sum())
        mean = self.task.reward[s, a, nxt]
        std = self.task.reward_noise[s, a, nxt]
        reward = float(mean + std * self.np_random.standard_normal()) if std > 0 else float(mean)
        self._state = nxt
        self._steps += 1
        terminated = bool(self.task.terminal[nxt] or self.task.is_bandit)
        truncated = bool(not terminated and self._steps >= self.task.max_steps)
        self._done = terminated or truncated
        self._last_reward = reward
        return self._obs(), reward, terminated, truncated, self._info()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._state is None:
            return "AnyMDPEnv: not reset"
        return f"state {self._state} (obs {self._obs()}) step {self._steps} last reward {self._last_reward:+.4f}" + (
            " [episode ended]" if self._done else ""
        )


# ---------------------------------------------------------------------------------------------- batched env
class BatchedAnyMDPEnv(VectorEnv):
    """``B`` tabular tasks of the same (ns, na) stepped together in numpy, with Gymnasium vector conventions.

    Build from a sequence of Tasks (different tasks allowed; they must share ns and na), or from one Task
    and ``num_envs`` copies. Observations ``[B]`` int64 in ``single_observation_space = Discrete(max n_obs)``.

    Autoreset follows Gymnasium's ``AutoresetMode.SAME_STEP``: when an episode ends at a step, that step
    returns the *new* episode's first observation, and the ended episode's last observation is in
    ``infos["final_obs"]``. Unlike Gymnasium's object arrays, the ``final_*`` entries are plain arrays that
    are always present; they are meaningful where ``infos["_final_obs"]`` is True (elsewhere they equal the
    returned obs/state).

    ``infos`` of ``step`` (all arrays of length B):

    - ``"state"``: inner state matching the returned obs (after autoreset);
    - ``"next_state"``: inner state reached by this step, before any autoreset (= ``"final_state"``);
    - ``"steps"``: steps taken in the current episode (0 where it was just reset);
    - ``"final_obs"``, ``"final_state"``, ``"final_steps"``, ``"final_return"`` and the mask ``"_final_obs"``:
      the episode that ended at this step (its last obs, inner state, length and undiscounted return).

    Attributes ``states``, ``steps`` and ``returns`` hold the current episodes' inner states, step counts and
    returns so far.

    One Generator for the whole batch, (re)seeded by ``reset(seed=...)``. ``reset(options={"reset_mask":
    mask})`` resets only the masked envs (the others keep their state; their returned obs is current).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, tasks: Task | Sequence[Task], num_envs: int | None = None) -> None:
        if isinstance(tasks, Task):
            tasks = [tasks] * (1 if num_envs is None else int(num_envs))
        else:
            tasks = list(tasks)
            if num_envs is not None and num_envs != len(tasks):
                raise ValueError(f"num_envs={num_envs} but {len(tasks)} tasks were given")
        if not tasks:
            raise ValueError("BatchedAnyMDPEnv needs at least one task")
        for t in tasks:
            if not isinstance(t, Task):
                raise TypeError(f"tasks must be omnirl_core.world.Task objects, got {type(t).__name__}")
        sizes = {(t.ns, t.na) for t in tasks}
        if len(sizes) != 1:
            raise ValueError(f"all tasks of a batch must share (ns, na); got {sorted(sizes)}")
        self.tasks = tasks
        self.num_envs = len(tasks)
        self.ns, self.na = sizes.pop()
        self.n_obs = max(t.n_obs for t in tasks)
        self.render_mode = None
        self.single_observation_space = spaces.Discrete(self.n_obs)
        self.single_action_space = spaces.Discrete(self.na)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        # Tables are kept once per distinct task (a batch often repeats tasks); env b uses task_index[b].
        unique: dict[int, int] = {}
        self.task_index = np.array([unique.setdefault(id(t), len(unique)) for t in tasks], dtype=np.int64)
        distinct: list[Task] = [None] * len(unique)  # type: ignore[list-item]
        for t in tasks:
            distinct[unique[id(t)]] = t
        self.transition = np.stack([t.transition for t in distinct])  # [U, ns, na, ns]
        self.reward = np.stack([t.reward for t in distinct])
        self.reward_noise = np.stack([t.reward_noise for t in distinct])
        self.start_prob = np.stack([t.start_prob for t in tasks])  # [B, ns]
        self.terminal = np.stack([t.terminal for t in distinct])  # [U, ns]
        self.max_steps = np.array([t.max_steps for t in tasks])  # [B]
        self.state_mapping = np.stack([t.state_mapping for t in tasks])  # [B, ns]
        self.is_bandit = self.ns == 1
        # Next states by inverse CDF over ONE flat, globally increasing array: row r = (task, s, a) holds
        # cdf(r) + r, so searchsorted(flat, r + u) lands in row r; O(B log) per step instead of O(B ns).
        cdf = _cumulative(self.transition).reshape(-1, self.ns)  # [U*ns*na, ns]
        self._row_base = self.task_index * (self.ns * self.na)  # first (s, a) row of each env's task
        self._flat_cdf = (cdf + np.arange(cdf.shape[0])[:, None]).ravel()
        self._flat_reward = self.reward.ravel()
        self._flat_noise = self.reward_noise.ravel()
        self._flat_terminal = self.terminal.ravel()
        self._state_base = self.task_index * self.ns  # env -> first state of its task in flat [U*ns] tables
        self._env_base = np.arange(self.num_envs) * self.ns  # env -> first entry of its row in state_mapping
        self._flat_mapping = self.state_mapping.ravel()
        self._start_cdf = _cumulative(self.start_prob)
        self._rows = np.arange(self.num_envs)
        self.states = np.zeros(self.num_envs, dtype=np.int64)
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self.returns = np.zeros(self.num_envs)  # undiscounted return of the current episodes so far
        self._needs_reset = True

    @property
    def needs_reset(self) -> bool:
        """True until the first ``reset``."""
        return self._needs_reset

    def _sample_starts(self, idx: np.ndarray) -> np.ndarray:
        u = self.np_random.random(idx.size)
        return (self._start_cdf[idx] <= u[:, None]).sum(axis=1)

    def _obs_of(self, states: np.ndarray) -> np.ndarray:
        return self.state_mapping[self._rows, states]

    def reset(
        self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Start new episodes. ``seed`` (an int, or a sequence of ints) re-seeds the batch's Generator."""
        if hasattr(seed, "__len__") and len(seed) != self.num_envs:
            raise ValueError(f"seed: an int or one seed per env ({self.num_envs}), got {len(seed)} seeds")
        if seed is not None:
            self._np_random = np.random.default_rng(seed)
            self._np_random_seed = int(seed) if isinstance(seed, (int, np.integer)) else -1
        mask = None if options is None else options.get("reset_mask")
        if mask is None:
            idx = self._rows
        else:
            mask = as_flags(mask, "reset_mask")
            if mask.shape != (self.num_envs,):
                raise ValueError(f"reset_mask must have shape ({self.num_envs},), got {mask.shape}")
            if self._needs_reset and not mask.all():
                raise ResetNeeded("the first reset() must reset every env (no reset_mask or an all-True mask)")
            idx = np.flatnonzero(mask)
        # Copy before writing: arrays handed out in earlier infos must not change under the caller.
        self.states, self.steps, self.returns = self.states.copy(), self.steps.copy(), self.returns.copy()
        self.states[idx] = self._sample_starts(idx)
        self.steps[idx] = 0
        self.returns[idx] = 0.0
        self._needs_reset = False
        return self._obs_of(self.states), {"state": self.states.copy(), "steps": self.steps.copy()}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        a = _valid_batch_actions(actions, self.num_envs, self.na)
        if self._needs_reset:
            raise ResetNeeded("call reset() before step()")
        rng = self.np_random
        s = self.states
        row = self._row_base + s * self.na + a  # [B] flat (task, s, a) rows
        u = rng.random(self.num_envs)
        nxt = np.searchsorted(self._flat_cdf, row + u, side="right") - row * self.ns
        np.minimum(nxt, self.ns - 1, out=nxt)  # guard against rounding at the very end of a row
        flat = row * self.ns + nxt
        noise = rng.standard_normal(self.num_envs)
        rewards = self._flat_reward[flat] + self._flat_noise[flat] * noise
        steps = self.steps + 1
        if self.is_bandit:
            terminated = np.ones(self.num_envs, dtype=bool)
        else:
            terminated = self._flat_terminal[self._state_base + nxt]
        truncated = ~terminated & (steps >= self.max_steps)
        done = terminated | truncated
        returns = self.returns + rewards
        final_obs = self._flat_mapping[self._env_base + nxt]
        # Fresh arrays every step, so the infos can share them without copies.
        if np.count_nonzero(done):
            idx = np.flatnonzero(done)
            new_states, new_steps, obs = nxt.copy(), steps.copy(), final_obs.copy()
            new_states[idx] = self._sample_starts(idx)
            new_steps[idx] = 0
            obs[idx] = self._flat_mapping[self._env_base[idx] + new_states[idx]]
            self.returns = np.where(done, 0.0, returns)
        else:
            new_states, new_steps, obs = nxt, steps, final_obs
            self.returns = returns
        self.states = new_states
        self.steps = new_steps
        infos = {
            "state": new_states,
            "next_state": nxt,
            "steps": new_steps,
            "final_obs": final_obs,
            "final_state": nxt,
            "final_steps": steps,
            "final_return": returns,
            "_final_obs": done,
        }
        return obs, rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        return None

    def __repr__(self) -> str:
        return f"BatchedAnyMDPEnv(num_envs={self.num_envs}, ns={self.ns}, na={self.na})"


# ---------------------------------------------------------------------------------------------- registration
def register_envs() -> None:
    """Register ``omnirl/AnyMDP-v0`` with Gymnasium (a no-op when already registered)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="omnirl_core.world.envs:AnyMDPEnv")


register_envs()
