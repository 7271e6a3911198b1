"""Tabular tasks: the `Task` container and the AnyMDP / Garnet samplers.

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
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Task",
    "TaskValidationError",
    "TaskFileError",
    "as_generator",
    "SamplingError",
    "sample_anymdp",
    "sample_anymdp_batch",
    "sample_garnet",
    "episode_limit",
    "acceptance_statistics",
]

TASK_FILE_FORMAT = "omnirl-task"
TASK_FILE_VERSION = 1
_ROW_SUM_TOL = 1e-6


class TaskValidationError(ValueError):
    """A task's arrays are inconsistent (shapes, probabilities, terminal rows)."""


class TaskFileError(ValueError):
    """A task file is missing, corrupt, or not a task file."""


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
        object.__setattr__(self, "terminal", np.array(self.terminal, dtype=bool, copy=True))
        object.__setattr__(self, "state_mapping", np.array(self.state_mapping, dtype=np.int64, copy=True))
        object.__setattr__(self, "max_steps", float(self.max_steps))
        if self.n_obs == -1:
            object.__setattr__(self, "n_obs", int(self.transition.shape[0]) if self.transition.ndim else 0)
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
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh,
                    header=np.array(header),
                    transition=self.transition,
                    reward=self.reward,
                    reward_noise=self.reward_noise,
                    start_prob=self.start_prob,
                    terminal=self.terminal,
                    state_mapping=self.state_mapping,
                )
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
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
        try:
            return cls(
                max_steps=header["max_steps"],
                n_obs=header["n_obs"],
                kind=header["kind"],
                meta=header.get("meta", {}),
                **arrays,
            )
        except TaskValidationError as exc:
            raise TaskFileError(f"{path} holds an invalid task: {exc}") from exc


# ====================================================================== samplers
# The AnyMDP distribution (paper Algorithm 1, as the reference sampler draws it). Inner index order is
# the hidden ranking: start states sit at the low end, the optional goal at the top, and transitions
# are banded so that the agent must climb the ranking to collect the larger rewards.

ADJUST_GAMMA = 0.99  # discount of the terminal-reward adjustment rounds
MAX_ADJUST_ROUNDS = 5
MIN_ORACLE_GAP = 2.0  # scaled value gap oracle - random required at every start state
MIN_GINI = 0.70
MIN_NORMALISED_ENTROPY = 0.35
SELF_LOOP_FACTOR = 0.5  # the self-loop weight of the average transition is halved


def band_limits(ns: int) -> tuple[int, int]:
    """(max forward leap, max backward leap) of the banded transition: b+ = ns//4 + 1, b- = ns//2 + 1."""
    return max(2, ns // 4 + 1), max(2, ns // 2 + 1)


class SamplingError(RuntimeError):
    """No acceptable task was found within the allowed number of draws."""


def _check_sizes(ns: int, na: int, *, allow_bandit: bool = True) -> None:
    for name, v in (("ns", ns), ("na", na)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if na < 2:
        raise ValueError(f"na must be >= 2, got na={na}")
    if allow_bandit and ns == 1:
        return
    if ns < 8:
        allowed = "ns = 1 (a bandit) or ns >= 8" if allow_bandit else "ns >= 8"
        raise ValueError(f"invalid state count ns={ns}: need {allowed}")


def episode_limit(ns: int, rng: np.random.Generator) -> float:
    """Episode step limit: 1 for bandits, else U(max(4ns,100), max(min(8ns,500), lo+1))."""
    if ns == 1:
        return 1.0
    lo = max(4.0 * ns, 100.0)
    hi = max(min(8.0 * ns, 500.0), lo + 1.0)
    return float(rng.uniform(lo, hi))


def _sample_bandit(na: int, rng: np.random.Generator) -> dict:
    scale = np.clip(rng.exponential(1.0), 0.05, 2.0)
    noise_scale = max(rng.uniform(-0.3, 0.3), 0.0)
    # Redraw the arm means until they differ visibly (std > 0.01); candidates are drawn 16 at a time
    # and the first acceptable one is kept, which is the same distribution as drawing one by one.
    while True:
        means = rng.uniform(0.5 * scale, scale, size=(16, na))
        ok = np.flatnonzero(means.std(axis=1) > 0.01)
        if ok.size:
            means = means[ok[0]]
            break
    reward = means.reshape(1, na, 1)
    return dict(
        transition=np.ones((1, na, 1)),
        reward=reward,
        reward_noise=noise_scale * reward,
        start_prob=np.ones(1),
        terminal=np.zeros(1, bool),
    )


# Candidate draws are vectorised: K independent candidates of one task are drawn as arrays with a
# leading batch axis [K, ...], checked together, and the first accepted one (in candidate order) is
# kept. Taking the first success of i.i.d. candidates has the same distribution as the one-at-a-time
# rejection loop, and K fixed per ns keeps "same seed, same task".


def _redraw_until(draw, ok, shape_k: int):
    """Vectorised rejection: draw(n) -> array [n, ...]; redraw the rows where ok(rows) is False."""
    out = draw(shape_k)
    bad = ~ok(out)
    while bad.any():
        out[bad] = draw(int(bad.sum()))
        bad = ~ok(out)
    return out


def _sample_start_and_terminals(K: int, ns: int, rng: np.random.Generator):
    """Start distributions over inner states {0,1,2}, pitfalls, and the optional goal at the top: [K, ...]."""
    w = _redraw_until(lambda n: np.clip(rng.standard_normal((n, 3)), 0.0, None), lambda x: x.sum(1) > 1e-10, K)
    start_prob = np.zeros((K, ns))
    start_prob[:, :3] = w / w.sum(axis=1, keepdims=True)
    pit_rate = np.maximum(rng.uniform(-0.2, 0.4, size=K), 0.0)
    terminal = rng.random((K, ns)) < pit_rate[:, None]
    bad = terminal.sum(1) >= ns * pit_rate + 1  # too many pitfalls: redraw those rows
    while bad.any():
        terminal[bad] = rng.random((int(bad.sum()), ns)) < pit_rate[bad, None]
        bad = terminal.sum(1) >= ns * pit_rate + 1
    terminal[start_prob > 0] = False
    has_goal = rng.random(K) < 0.3
    terminal[:, -1] = has_goal
    return start_prob, terminal, has_goal


def _sample_bands(ns: int, terminal: np.ndarray, rng: np.random.Generator):
    """Band [lo, hi) of reachable next states for every state: lo, hi [K, ns]."""
    K = terminal.shape[0]
    s = np.arange(ns)
    max_leap, max_back = band_limits(ns)
    from_min = np.maximum(0, s - max_back)
    from_max = np.maximum.reduce([np.zeros(ns, int), s - 1, from_min + 1])
    to_max = np.minimum(ns, s + max_leap)
    to_min = np.minimum.reduce([np.full(ns, ns - 1), s + 1, to_max - 1])
    lo = from_min + np.floor(rng.random((K, ns)) * (from_max - from_min)).astype(int)
    hi = to_min + np.floor(rng.random((K, ns)) * (to_max - to_min)).astype(int)
    # Widen hi until at least two non-terminal states lie strictly between s and hi (or hi == ns).
    live_before = np.zeros((K, ns + 1), int)  # live_before[k, h] = number of live states in [0, h)
    np.cumsum(~terminal, axis=1, out=live_before[:, 1:])
    target = live_before[:, 1:] + 2  # [K, ns]: live count needed before hi, for state s
    reach = live_before[:, None, :] >= target[:, :, None]  # [K, ns, ns + 1]
    needed = np.where(reach.any(axis=2), reach.argmax(axis=2), ns)
    hi = np.minimum(np.maximum(hi, needed), ns)
    return lo, hi


def _sample_transition(ns: int, na: int, terminal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Banded per-action transitions [K, ns, na, ns]."""
    K = terminal.shape[0]
    lo, hi = _sample_bands(ns, terminal, rng)
    j = np.arange(ns)
    band = (j >= lo[..., None]) & (j < hi[..., None])  # [K, ns, ns]
    band &= ~terminal[:, :, None]
    # Average (action-free) transition: clipped Gaussian weights on the band, half self-loop.
    w = np.clip(rng.standard_normal((K, ns, ns)), 0.1, 1.0) * band
    w[:, j, j] *= SELF_LOOP_FACTOR
    w[:, ns - 1, ns - 1] = 0.0  # the top state never loops on itself
    row = w.sum(axis=2, keepdims=True)
    p_avg = np.divide(w, row, out=np.zeros_like(w), where=row > 0)
    # Split among actions: each action prefers next states near its centre c ~ U(lo - 1, hi).
    centre = (lo - 1)[..., None] + rng.random((K, ns, na)) * (hi - lo + 1)[..., None]
    sigma = np.clip(rng.exponential(1.0, size=(K, ns)), 0.2, 1.6)
    dist2 = (centre[..., None] - j) ** 2  # [K, ns, na, ns]
    aw = np.exp(-dist2 / sigma[..., None, None] ** 2)
    col = aw.sum(axis=2, keepdims=True)  # [K, ns, 1, ns]
    orphan = col < 1e-10  # no action reaches this next state: give it to the nearest action
    if orphan.any():
        nearest = dist2.argmin(axis=2)  # [K, ns, ns]
        one_hot = np.arange(na)[:, None] == nearest[:, :, None, :]
        aw = np.where(orphan, one_hot.astype(float), aw)
        col = aw.sum(axis=2, keepdims=True)
    P = aw / col * p_avg[:, :, None, :]
    rs = P.sum(axis=3, keepdims=True)
    P = np.divide(P, rs, out=np.zeros_like(P), where=rs > 0)
    P[terminal] = 0.0
    return P


def _fourier_potentials(K: int, ns: int, rng: np.random.Generator) -> np.ndarray:
    """phi [K, ns]: random 1-D Fourier series in x = s / (2 ns) (k in 1..3 terms plus a constant); zero
    amplitude for half of the tasks."""
    amplitude = np.where(rng.random(K) < 0.5, 0.0, np.clip(rng.exponential(1.0, size=K), 0.2, 5.0))
    box = np.maximum(rng.uniform(-1.0, 1.0, size=K) * amplitude, 0.0)
    k = rng.integers(1, 4, size=K)
    orders = np.zeros((K, 4))
    orders[:, 1:] = rng.integers(1, 6, size=(K, 3)) + rng.standard_normal((K, 3))
    coef = rng.standard_normal((K, 4, 2)) * rng.exponential(1.0, size=(K, 4, 2)) * (box / np.sqrt(k))[:, None, None]
    coef[np.arange(4)[None, :] > k[:, None]] = 0.0  # terms beyond k do not exist
    ox = orders[:, :, None] * (np.arange(ns) / (2.0 * ns))  # [K, 4, ns]
    return (coef[..., 0:1] * np.sin(ox) + coef[..., 1:2] * np.cos(ox)).sum(axis=1)


def _sample_rewards(ns: int, na: int, terminal: np.ndarray, has_goal: np.ndarray, rng: np.random.Generator):
    """Raw mean reward and noise std [K, ns, na, ns] (before terminal adjustments)."""
    K = terminal.shape[0]
    phi = _fourier_potentials(K, ns, rng)
    r_potential = phi[:, :, None, None] - phi[:, None, None, :]
    # Position reward on the next state: a random increasing profile minus a baseline.
    scale = rng.exponential(0.2, size=K)
    pdf = np.clip(rng.standard_normal((K, ns)), 0.0, None)
    pdf[:, -1] += 0.2
    pdf *= scale[:, None]
    cdf = np.cumsum(pdf, axis=1)
    r_position = cdf - rng.uniform(0.1, 0.9, size=K)[:, None] * cdf[:, -1:]
    n_position = np.clip(rng.uniform(-0.3, 0.3, size=(K, ns)), 0.0, None) * scale[:, None]
    r_position[terminal] = 0.0
    n_position[terminal] = 0.0
    # Sparse state-action cost.
    cost = np.clip(rng.exponential(0.05, size=K), 0.0, 0.1)[:, None, None]
    mask = rng.uniform(-0.7, 0.3, size=(K, ns, na)) > 0
    r_sa = cost * rng.standard_normal((K, ns, na)) * mask
    n_sa = 0.3 * cost * np.clip(rng.standard_normal((K, ns, na)), 0.0, None) * mask
    # Step reward: a small cost when there is a goal, a small survival bonus when only pitfalls exist.
    z = rng.standard_normal(K) * 0.01
    r_step = np.where(has_goal, np.minimum(z, 0.0), np.where(terminal.any(axis=1), np.maximum(z, 0.0), 0.0))
    reward = r_potential + r_position[:, None, None, :] + r_sa[..., None] + r_step[:, None, None, None]
    noise = n_position[:, None, None, :] + n_sa[..., None] + np.zeros((1, 1, 1, ns))
    return np.broadcast_to(reward, (K, ns, na, ns)).copy(), noise


def _terminal_adjustment(P, raw_reward, start_prob, terminal, has_goal, rng):
    """Shift the reward for entering pitfalls (down) and the top state (up) until pitfalls are the worst
    places and the top of the ranking is worth climbing to (up to 5 rounds).

    Returns (bonus [K, ns] added to every transition into each next state, ok [K])."""
    from .oracle import TaskArrays, policy_iteration

    K, ns = terminal.shape
    pitfalls = terminal.copy()
    pitfalls[has_goal, -1] = False
    live = ~terminal
    starts = start_prob > 0
    last = np.where(has_goal, ns - 2, ns - 1)
    bonus = np.zeros((K, ns))
    bonus[:, -1] = 1.0
    done = np.zeros(K, bool)
    policy = np.zeros((K, ns), int)
    active = np.arange(K)  # candidates still being adjusted: only these are solved again
    for _ in range(MAX_ADJUST_ROUNDS):
        rew = raw_reward[active] + bonus[active][:, None, None, :]
        Q, V = policy_iteration(TaskArrays(P[active], rew, terminal=terminal[active]), ADJUST_GAMMA,
                                policy0=policy[active])
        policy[active] = Q.argmax(axis=-1)
        b = bonus[active]
        pit_gain = b.min(axis=1) - np.where(live[active], V, np.inf).min(axis=1) + 1.0
        v_last = V[np.arange(active.size), last[active]]
        goal_fall = np.where(starts[active], V, -np.inf).max(axis=1) - v_last + rng.uniform(2.0, 5.0, size=active.size)
        finished = (pit_gain <= 0) & (goal_fall <= 0)
        done[active[finished]] = True
        lower = ~finished & (pit_gain > 0)
        b -= (lower * (pit_gain + rng.uniform(1.0, 10.0, size=active.size)))[:, None] * pitfalls[active]
        raise_top = ~finished & (goal_fall > 0)
        lift = np.maximum(2.0 * goal_fall, rng.uniform(1.0, 10.0, size=active.size))
        b[:, -1] += raise_top * np.where(has_goal[active], lift, (1.0 - ADJUST_GAMMA) * lift)
        bonus[active] = b
        active = active[~finished]
        if active.size == 0:
            break
    return bonus, done


def acceptance_statistics(P, reward, start_prob, terminal, max_steps) -> dict:
    """The quantities the acceptance check thresholds, for candidate tasks (arrays with or without a
    leading batch axis).

    gap: min over start states of the scaled value gap (oracle - random) at gamma 2^(-1/ns), values scaled
    by (1 - gamma) max_steps (the random policy's value taken as max_a of its Q, as the reference does);
    gini / entropy: min over start states of the Gini impurity and the normalised entropy of the oracle's
    long-run state distribution with resets. Returns arrays (or floats for one task).
    """
    from .oracle import TaskArrays, acceptance_gamma, policy_iteration, policy_value, q_values, stationary_distribution

    ns, na = P.shape[-1], P.shape[-2]
    gamma = acceptance_gamma(ns)
    arrays = TaskArrays(P, reward, start_prob, terminal)
    Q_opt, _ = policy_iteration(arrays, gamma)
    V_rand = policy_value(arrays, np.broadcast_to(np.full((ns, na), 1.0 / na), P.shape[:-1]), gamma)
    Q_rand = q_values(arrays, V_rand, gamma)
    max_steps = np.asarray(max_steps, dtype=np.float64)  # scalar, or one per candidate
    scale = (1.0 - gamma) * max_steps[..., None]
    starts = start_prob > 0
    gap = np.where(starts, (Q_opt.max(axis=-1) - Q_rand.max(axis=-1)) * scale, np.inf).min(axis=-1)
    # Long-run distribution: the reset chain raised to 2^n_sq, n_sq = floor(log2 max_steps) + 1.
    n_sq = np.broadcast_to(np.floor(np.log2(max_steps)).astype(int) + 1, P.shape[:-3])
    chain = stationary_distribution(arrays, Q_opt.argmax(axis=-1), 0)
    dist = np.empty_like(chain)
    for k in range(int(n_sq.max()) + 1):
        dist[n_sq == k] = chain[n_sq == k]
        chain = np.matmul(chain, chain)
    dist += 1e-12
    gini = np.where(starts, 1.0 - (dist**2).sum(axis=-1), np.inf).min(axis=-1)
    entropy = np.where(starts, -(dist * np.log(dist)).sum(axis=-1) / np.log(ns), np.inf).min(axis=-1)
    out = {"gap": gap, "gini": gini, "entropy": entropy}
    return {k: float(v) for k, v in out.items()} if np.ndim(gap) == 0 else out


def _accepted(stats: dict) -> np.ndarray:
    return (stats["gap"] >= MIN_ORACLE_GAP) & (stats["gini"] > MIN_GINI) & (stats["entropy"] > MIN_NORMALISED_ENTROPY)


def candidates_per_round(ns: int) -> int:
    """How many candidate draws are checked together: more for small ns, where more are rejected and
    each is cheap."""
    return int(np.clip(256 // ns, 2, 16))


def _draw_anymdp_candidates(K: int, ns: int, na: int, max_steps, rng: np.random.Generator):
    """K independent draws of Algorithm 1 for ns >= 8 real states: (arrays [K, ...], accepted [K]).

    ``max_steps`` is one limit for all candidates or one per candidate (the acceptance check uses it)."""
    start_prob, terminal, has_goal = _sample_start_and_terminals(K, ns, rng)
    P = _sample_transition(ns, na, terminal, rng)
    raw_reward, noise = _sample_rewards(ns, na, terminal, has_goal, rng)
    bonus, ok = _terminal_adjustment(P, raw_reward, start_prob, terminal, has_goal, rng)
    # An action whose weight underflows on every reachable state leaves an empty row; the reference's
    # normalisation turns that into NaN and its checks then reject the draw. Reject it explicitly.
    ok &= ~((P.sum(axis=3) == 0) & ~terminal[:, :, None]).any(axis=(1, 2))
    reward = raw_reward + bonus[:, None, None, :]
    idx = np.flatnonzero(ok)
    if idx.size:
        limits = np.broadcast_to(np.asarray(max_steps, dtype=np.float64), (K,))[idx]
        stats = acceptance_statistics(P[idx], reward[idx], start_prob[idx], terminal[idx], limits)
        ok[idx] = _accepted(stats)
    arrays = dict(transition=P, reward=reward, reward_noise=noise, start_prob=start_prob, terminal=terminal)
    return arrays, ok


def sample_anymdp(
    ns: int,
    na: int = 5,
    seed: int | np.random.Generator | None = None,
    *,
    min_state_space: int | None = None,
    max_draws: int = 100_000,
) -> Task:
    """Draw one AnyMDP task T(ns, na) (paper Algorithm 1).

    ``ns == 1`` gives a multi-armed bandit; otherwise ns >= 8. With ``min_state_space`` the number of
    real states is drawn from [min_state_space, ns] and the observation ids are a random subset of
    range(ns). ``seed`` is an int or a numpy Generator; numpy's global RNG is never used, and the same
    int seed always gives the same task.
    """
    _check_sizes(ns, na)
    if min_state_space is not None:
        _check_sizes(int(min_state_space), na, allow_bandit=False)
    rng = as_generator(seed)
    max_steps = episode_limit(ns, rng)
    n_real = ns
    if min_state_space is not None and ns > 1:
        n_real = int(rng.integers(min(min_state_space, ns), ns + 1))
    mapping = rng.permutation(ns)[:n_real]
    meta = {"sampler": "anymdp", "ns": int(ns), "na": int(na)}
    if isinstance(seed, (int, np.integer)):
        meta["seed"] = int(seed)
    if n_real == 1:
        arrays = _sample_bandit(na, rng)
        return Task(max_steps=max_steps, state_mapping=mapping, n_obs=ns, kind="bandit", meta=meta, **arrays)
    K = candidates_per_round(n_real)
    for round_ in range(max(1, max_draws // K)):
        arrays, ok = _draw_anymdp_candidates(K, n_real, na, max_steps, rng)
        if ok.any():
            first = int(np.argmax(ok))
            meta["draws"] = round_ * K + first + 1
            one = {k: v[first] for k, v in arrays.items()}
            return Task(max_steps=max_steps, state_mapping=mapping, n_obs=ns, kind="anymdp", meta=meta, **one)
    raise SamplingError(f"no acceptable AnyMDP({ns}, {na}) task in {max_draws} draws")


def sample_anymdp_batch(
    n_tasks: int,
    ns: int,
    na: int = 5,
    seed: int | np.random.Generator | None = None,
    *,
    candidates_per_task: int | None = None,
    max_rounds: int = 10_000,
) -> list[Task]:
    """Draw ``n_tasks`` independent AnyMDP(ns, na) tasks at once, sharing the linear algebra.

    Each task draws its episode limit and observation mapping, then candidate draws are made for all
    unfinished tasks together (candidate i of a round belongs to task i mod remaining) and each task
    keeps its first accepted candidate: per task, the same distribution as :func:`sample_anymdp`. The
    same seed gives the same list (but not the same tasks as ``sample_anymdp`` with per-task seeds).
    """
    _check_sizes(ns, na)
    if n_tasks < 0:
        raise ValueError(f"n_tasks must be >= 0, got {n_tasks}")
    rng = as_generator(seed)
    limits = np.array([episode_limit(ns, rng) for _ in range(n_tasks)])
    mappings = [rng.permutation(ns) for _ in range(n_tasks)]
    meta = {"sampler": "anymdp_batch", "ns": int(ns), "na": int(na)}
    if isinstance(seed, (int, np.integer)):
        meta["seed"] = int(seed)
    if ns == 1:
        return [
            Task(max_steps=1.0, state_mapping=m, kind="bandit", meta={**meta, "index": i}, **_sample_bandit(na, rng))
            for i, m in enumerate(mappings)
        ]
    per_task = candidates_per_task or max(1, candidates_per_round(ns) // 2)
    result: list[Task | None] = [None] * n_tasks
    pending = np.arange(n_tasks)
    for _ in range(max_rounds):
        if pending.size == 0:
            return result  # type: ignore[return-value]
        # Rounds have a fixed cost, so the last few stragglers get more candidates each.
        owner = np.tile(pending, max(per_task, (512 // ns) // pending.size))  # candidate -> task
        arrays, ok = _draw_anymdp_candidates(owner.size, ns, na, limits[owner], rng)
        for c in np.flatnonzero(ok):
            t = owner[c]
            if result[t] is None:
                one = {k: v[c] for k, v in arrays.items()}
                result[t] = Task(max_steps=limits[t], state_mapping=mappings[t], kind="anymdp",
                                 meta={**meta, "index": int(t)}, **one)
        pending = np.array([t for t in pending if result[t] is None], dtype=int)
    raise SamplingError(
        f"no acceptable AnyMDP({ns}, {na}) tasks for {pending.size} of {n_tasks} in {max_rounds} rounds"
    )


def sample_garnet(
    ns: int, na: int = 5, b: int = 2, seed: int | np.random.Generator | None = None, *, sigma: float = 0.1
) -> Task:
    """Garnet(ns, na, b): b distinct random successors per (s, a) with a uniform random partition of 1 as
    probabilities, mean rewards N(0, sigma^2) per (s, a, s'), no noise, start in state 0, no terminals."""
    _check_sizes(ns, na, allow_bandit=False)
    if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, np.integer)) or not 1 <= b <= ns:
        raise ValueError(f"branching b must be an int in [1, ns={ns}], got {b!r}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    rng = as_generator(seed)
    max_steps = episode_limit(ns, rng)
    mapping = rng.permutation(ns)
    successors = np.argsort(rng.random((ns, na, ns)), axis=2)[:, :, :b]  # b distinct states, uniformly
    cuts = np.sort(rng.random((ns, na, b - 1)), axis=2)
    probs = np.diff(np.concatenate([np.zeros((ns, na, 1)), cuts, np.ones((ns, na, 1))], axis=2), axis=2)
    P = np.zeros((ns, na, ns))
    np.put_along_axis(P, successors, probs, axis=2)
    reward = rng.standard_normal((ns, na, ns)) * sigma
    meta = {"sampler": "garnet", "ns": int(ns), "na": int(na), "b": int(b), "sigma": float(sigma)}
    if isinstance(seed, (int, np.integer)):
        meta["seed"] = int(seed)
    return Task(
        transition=P,
        reward=reward,
        reward_noise=np.zeros_like(reward),
        start_prob=np.eye(ns)[0],
        terminal=np.zeros(ns, bool),
        max_steps=max_steps,
        state_mapping=mapping,
        kind="garnet",
        meta=meta,
    )
