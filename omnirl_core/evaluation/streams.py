"""Independent random streams, one per environment of a batch, so that a task's run does not depend on which
other tasks share its batch (the agents and batched environments of the evaluation draw from them)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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
