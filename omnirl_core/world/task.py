"""The :class:`Task` container: a tabular task's arrays, their checks, and its file format.

Conventions (used everywhere in the package):
- Inner state index order IS the hidden ranking (low to high value). An agent only ever sees
  ``state_mapping[inner]``, an observation id in ``range(n_obs)``.
- ``transition[s, a, s']`` is P(s' | s, a). Terminal states have all-zero rows: the episode ends on
  entering them.
- ``reward[s, a, s']`` is the mean reward, ``reward_noise[s, a, s']`` the std of the Gaussian noise.
- ``max_steps`` is a float step limit: an episode is truncated once ``steps >= max_steps``, so an
  episode lasts at most ``horizon = ceil(max_steps)`` steps.
- Bandits are ``ns == 1`` tasks whose single state loops to itself and whose every pull ends the
  episode (``max_steps == 1``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..workbook.atomic import atomic_write

TASK_FILE_FORMAT = "omnirl-task"
TASK_FILE_VERSION = 1
_ROW_SUM_TOL = 1e-6


class TaskValidationError(ValueError):
    """A task's arrays are inconsistent (shapes, probabilities, terminal rows)."""


class TaskFileError(ValueError):
    """A task file is missing, corrupt, or not a task file."""


def as_flags(values, name: str) -> np.ndarray:
    """``values`` as a bool array, refusing numbers other than 0 and 1 (a cast would make 0.5 or 2 True)."""
    arr = np.asarray(values)
    if arr.dtype != bool:
        if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
            bad = arr.ravel()[~np.isin(arr.ravel(), (0, 1))][:3].tolist() if arr.dtype.kind in "iuf" else arr.dtype
            raise TaskValidationError(f"{name} must hold booleans (or 0/1), got {bad}")
    return arr.astype(bool)


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """An independent numpy Generator from an int seed, or the Generator itself.

    Never touches numpy's global RNG.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or numpy.random.Generator, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng(int(seed))


@dataclass(frozen=True, eq=False)
class Task:
    """One tabular episodic task. Validated on construction; arrays are read-only copies."""

    transition: np.ndarray  # [ns, na, ns] P(s'|s,a); zero rows for terminal s
    reward: np.ndarray  # [ns, na, ns] mean reward
    reward_noise: np.ndarray  # [ns, na, ns] Gaussian noise std (>= 0)
    start_prob: np.ndarray  # [ns] start distribution
    terminal: np.ndarray  # [ns] bool
    max_steps: float  # truncate when steps >= max_steps
    state_mapping: np.ndarray  # [ns] observation id of each inner state
    n_obs: int = -1  # size of the observation space (>= ns); -1 means ns
    kind: str = "custom"  # "anymdp" | "bandit" | "garnet" | "custom"
    meta: dict = field(default_factory=dict)  # provenance (sampler, seed, ...); JSON-able scalars

    # ------------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        f64 = lambda x: np.array(x, dtype=np.float64, copy=True)  # noqa: E731
        object.__setattr__(self, "transition", f64(self.transition))
        object.__setattr__(self, "reward", f64(self.reward))
        object.__setattr__(self, "reward_noise", f64(self.reward_noise))
        object.__setattr__(self, "start_prob", f64(self.start_prob))
        object.__setattr__(self, "terminal", as_flags(self.terminal, "terminal").copy())
        object.__setattr__(self, "state_mapping", np.array(self.state_mapping, dtype=np.int64, copy=True))
        object.__setattr__(self, "max_steps", float(self.max_steps))
        if self.n_obs == -1:
            object.__setattr__(self, "n_obs", int(self.transition.shape[0]) if self.transition.ndim else 0)
        whole = isinstance(self.n_obs, (int, np.integer)) or (
            isinstance(self.n_obs, (float, np.floating)) and float(self.n_obs).is_integer())
        if isinstance(self.n_obs, (bool, np.bool_)) or not whole:
            raise TaskValidationError(f"n_obs must be an int, got {self.n_obs!r}")
        object.__setattr__(self, "n_obs", int(self.n_obs))
        object.__setattr__(self, "meta", dict(self.meta))
        self._validate()
        for name in ("transition", "reward", "reward_noise", "start_prob", "terminal", "state_mapping"):
            getattr(self, name).setflags(write=False)

    @classmethod
    def from_arrays(
        cls,
        transition,
        reward,
        *,
        reward_noise=None,
        start_prob=None,
        terminal=None,
        max_steps: float = 100.0,
        state_mapping=None,
        n_obs: int | None = None,
        kind: str = "custom",
        meta: dict | None = None,
    ) -> Task:
        """Build a task from arrays of any source, filling sensible defaults.

        ``reward`` may be [ns, na, ns] or [ns, na] (broadcast over next states). Defaults: no noise,
        start in state 0, no terminal states, identity observation mapping.
        """
        transition = np.asarray(transition, dtype=np.float64)
        if transition.ndim != 3:
            raise TaskValidationError(f"transition must be [ns, na, ns], got shape {transition.shape}")
        ns, na, _ = transition.shape
        if ns < 1 or na < 1:
            raise TaskValidationError(f"transition must have shape [ns, na, ns] with ns, na >= 1, got "
                                      f"{transition.shape}")
        reward = np.asarray(reward, dtype=np.float64)
        if reward.shape == (ns, na):
            reward = np.repeat(reward[:, :, None], ns, axis=2)
        if reward_noise is None:
            reward_noise = np.zeros((ns, na, ns))
        if start_prob is None:
            start_prob = np.eye(ns)[0]
        if terminal is None:
            terminal = np.zeros(ns, dtype=bool)
        if state_mapping is None:
            state_mapping = np.arange(ns)
        return cls(
            transition=transition,
            reward=reward,
            reward_noise=reward_noise,
            start_prob=start_prob,
            terminal=terminal,
            max_steps=max_steps,
            state_mapping=state_mapping,
            n_obs=ns if n_obs is None else n_obs,
            kind=kind,
            meta=meta or {},
        )

    def _validate(self) -> None:
        P = self.transition
        if P.ndim != 3 or P.shape[0] != P.shape[2] or P.shape[0] < 1 or P.shape[1] < 1:
            raise TaskValidationError(f"transition must have shape [ns, na, ns] with ns, na >= 1, got {P.shape}")
        ns, na, _ = P.shape
        for name in ("reward", "reward_noise"):
            arr = getattr(self, name)
            if arr.shape != P.shape:
                raise TaskValidationError(f"{name} has shape {arr.shape}, expected {P.shape} like transition")
            if not np.all(np.isfinite(arr)):
                raise TaskValidationError(f"{name} contains NaN or inf")
        if np.any(self.reward_noise < 0):
            raise TaskValidationError("reward_noise (a standard deviation) must be >= 0")
        if self.start_prob.shape != (ns,):
            raise TaskValidationError(f"start_prob has shape {self.start_prob.shape}, expected ({ns},)")
        if self.terminal.shape != (ns,):
            raise TaskValidationError(f"terminal has shape {self.terminal.shape}, expected ({ns},)")
        if self.state_mapping.shape != (ns,):
            raise TaskValidationError(f"state_mapping has shape {self.state_mapping.shape}, expected ({ns},)")
        if not np.all(np.isfinite(P)) or np.any(P < 0):
            raise TaskValidationError("transition probabilities must be finite and >= 0")
        sums = P.sum(axis=2)  # [ns, na]
        live = ~self.terminal
        bad = np.abs(sums[live] - 1.0) > _ROW_SUM_TOL
        if np.any(bad):
            s_idx, a_idx = np.nonzero(bad)
            s = np.flatnonzero(live)[s_idx[0]]
            raise TaskValidationError(
                f"transition rows of non-terminal states must sum to 1: P(.|s={s}, a={a_idx[0]}) sums to "
                f"{sums[s, a_idx[0]]:.6g} ({int(bad.sum())} bad rows)"
            )
        if np.any(P[self.terminal] != 0):
            raise TaskValidationError("terminal states must have all-zero transition rows")
        sp = self.start_prob
        if not np.all(np.isfinite(sp)) or np.any(sp < 0) or abs(sp.sum() - 1.0) > _ROW_SUM_TOL:
            raise TaskValidationError(f"start_prob must be a probability vector, sums to {sp.sum():.6g}")
        if np.any(sp[self.terminal] > 0):
            raise TaskValidationError("start states must not be terminal")
        if not self.max_steps >= 1 or not math.isfinite(self.max_steps):
            raise TaskValidationError(f"max_steps must be a finite number >= 1, got {self.max_steps}")
        if self.n_obs < ns:
            raise TaskValidationError(f"n_obs ({self.n_obs}) must be >= ns ({ns})")
        m = self.state_mapping
        if np.any(m < 0) or np.any(m >= self.n_obs) or len(np.unique(m)) != ns:
            raise TaskValidationError(f"state_mapping must hold {ns} distinct ids in [0, {self.n_obs})")

    # ------------------------------------------------------------------ views
    @property
    def ns(self) -> int:
        """Number of inner states."""
        return int(self.transition.shape[0])

    @property
    def na(self) -> int:
        """Number of actions."""
        return int(self.transition.shape[1])

    @property
    def is_bandit(self) -> bool:
        return self.ns == 1

    @property
    def horizon(self) -> int:
        """Most steps an episode can last: ceil(max_steps)."""
        return int(math.ceil(self.max_steps - 1e-9))

    @property
    def expected_reward(self) -> np.ndarray:
        """[ns, na] E[r | s, a] = sum_s' P(s'|s,a) r(s,a,s')."""
        return np.einsum("ijk,ijk->ij", self.transition, self.reward)

    @property
    def obs_to_state(self) -> np.ndarray:
        """[n_obs] inner state of each observation id (-1 for ids no state uses)."""
        inv = np.full(self.n_obs, -1, dtype=np.int64)
        inv[self.state_mapping] = np.arange(self.ns)
        return inv

    def __repr__(self) -> str:
        return (
            f"Task(kind={self.kind!r}, ns={self.ns}, na={self.na}, terminals={int(self.terminal.sum())}, "
            f"max_steps={self.max_steps:.1f}, meta={self.meta})"
        )

    def equals(self, other: Task) -> bool:
        """Exact equality of every array and scalar."""
        return (
            isinstance(other, Task)
            and all(
                np.array_equal(getattr(self, k), getattr(other, k))
                for k in ("transition", "reward", "reward_noise", "start_prob", "terminal", "state_mapping")
            )
            and self.max_steps == other.max_steps
            and self.n_obs == other.n_obs
            and self.kind == other.kind
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the task to ``path`` (.npz) atomically (temp file + rename)."""
        import json

        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        header = json.dumps(
            {
                "format": TASK_FILE_FORMAT,
                "version": TASK_FILE_VERSION,
                "max_steps": self.max_steps,
                "n_obs": self.n_obs,
                "kind": self.kind,
                "meta": self.meta,
            }
        )
        arrays = dict(header=np.array(header), transition=self.transition, reward=self.reward,
                      reward_noise=self.reward_noise, start_prob=self.start_prob, terminal=self.terminal,
                      state_mapping=self.state_mapping)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to a name
                np.savez(fh, **arrays)

        atomic_write(path, write)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Task:
        """Read a task written by :meth:`save`; a missing, corrupt or foreign file raises TaskFileError."""
        import json
        import zipfile

        path = Path(path)
        if not path.exists():
            raise TaskFileError(f"task file not found: {path}")
        keys = ("transition", "reward", "reward_noise", "start_prob", "terminal", "state_mapping")
        try:
            with np.load(path, allow_pickle=False) as data:
                if "header" not in data.files:
                    raise TaskFileError(f"{path} is not an OmniRL task file (no header; arrays: {data.files})")
                header = json.loads(str(data["header"]))
                if not isinstance(header, dict):
                    raise TaskFileError(f"{path}: its header is a {type(header).__name__}, not a mapping")
                if header.get("format") != TASK_FILE_FORMAT:
                    raise TaskFileError(f"{path} is not an OmniRL task file (format={header.get('format')!r})")
                if header.get("version") != TASK_FILE_VERSION:
                    raise TaskFileError(
                        f"{path} has task file version {header.get('version')}, this library reads {TASK_FILE_VERSION}"
                    )
                missing = [k for k in keys if k not in data.files]
                if missing:
                    raise TaskFileError(f"{path} is missing arrays {missing}")
                arrays = {k: data[k] for k in keys}
        except TaskFileError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
            raise TaskFileError(f"{path} is corrupt or not a task file: {type(exc).__name__}: {exc}") from exc
        absent = [k for k in ("max_steps", "n_obs", "kind") if k not in header]
        if absent:
            raise TaskFileError(f"{path}: its header lacks {', '.join(absent)}")
        try:
            return cls(
                max_steps=header["max_steps"],
                n_obs=header["n_obs"],
                kind=header["kind"],
                meta=header.get("meta", {}),
                **arrays,
            )
        except (TaskValidationError, TypeError, ValueError) as exc:
            raise TaskFileError(f"{path} holds an invalid task: {exc}") from exc
