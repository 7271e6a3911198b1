"""The drifting random policy of the mixture (behaviour ``drift_random``), as the reference's ``AnyPolicySolver``.

Each sequence draws a softmax table P0 (logits N(0, e1^2), e1 ~ Exp(mean ``drift_logit_scale``)) and one
transfer matrix M = clip(I + e2 N(0, 1), 0, 1), rows normalised (e2 ~ Exp(mean ``drift_scale``)), once, at its
start; the table is multiplied by that same M at every step, whoever acts, so at env step k it is P0 M^k: every
row moves steadily towards M's stationary distribution. The numpy engine brings a row to step k when it is read,
by the cached powers M^(2^j) over the binary digits of the steps since its last read (exact up to rounding); the
numba engine does the same in compiled code (``engine_numba._drift_row``).
"""

from __future__ import annotations

import numpy as np


def transfer_matrix(e2: float | np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The drifting policy's transfer matrix [..., na, na] from its standard normals ``noise`` and scale ``e2``:
    clip(I + e2 N, 0, 1) with rows normalised (row-stochastic, so P M stays a probability table)."""
    na = noise.shape[-1]
    m = np.clip(np.eye(na) + np.asarray(e2, dtype=float)[..., None, None] * noise, 0.0, 1.0)
    tot = m.sum(axis=-1, keepdims=True)
    return np.where(tot > 0, m / np.where(tot > 0, tot, 1.0), np.eye(na))  # an all-zero row (huge e2) stays put


def transfer_powers(m: np.ndarray, n_steps: int) -> np.ndarray:
    """[..., J, na, na] the powers M^(2^j), j < J, enough for any exponent up to ``n_steps``: M^k is then the
    product over the binary digits of k. Rows are renormalised after each squaring so that rounding never
    leaks probability."""
    out = [m]
    for _ in range(max(int(n_steps).bit_length(), 1) - 1):
        sq = out[-1] @ out[-1]
        out.append(sq / sq.sum(axis=-1, keepdims=True))
    return np.stack(out, axis=-3)


class DriftingTables:
    """Drifting random softmax policies of B sequences, one [ns, na] table each (see the module docstring)."""

    def __init__(self, B: int, ns: int, na: int, logit_scale: float, drift_scale: float, n_steps: int = 1) -> None:
        self.ns, self.na = ns, na
        self.logit_scale, self.drift_scale = logit_scale, drift_scale
        self.probs = np.full((B, ns, na), 1.0 / na)
        self.e2 = np.zeros(B)
        self.n_bits = max(int(n_steps).bit_length(), 1)
        self.powers = np.broadcast_to(np.eye(na), (B, self.n_bits, na, na)).copy()  # M^(2^j) per sequence
        self.row_at = np.zeros((B, ns), dtype=np.int64)  # the step each row of probs is brought to

    def draw(self, idx: np.ndarray, rng: np.random.Generator) -> None:
        k = idx.size
        e1 = rng.exponential(self.logit_scale, size=k) if self.logit_scale > 0 else np.zeros(k)
        self.e2[idx] = rng.exponential(self.drift_scale, size=k) if self.drift_scale > 0 else np.zeros(k)
        z = rng.standard_normal((k, self.ns, self.na)) * e1[:, None, None]
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        self.probs[idx] = z / z.sum(axis=-1, keepdims=True)
        m = transfer_matrix(self.e2[idx], rng.standard_normal((k, self.na, self.na)))
        self.powers[idx] = transfer_powers(m, 2 ** self.n_bits - 1)
        self.row_at[idx] = 0

    def rows(self, idx: np.ndarray, states: np.ndarray, clock: np.ndarray) -> np.ndarray:
        """[k] -> [k, na] the action probabilities of sequences ``idx`` in ``states`` at env steps ``clock``."""
        row = self.probs[idx, states]
        to = np.asarray(clock, dtype=np.int64)
        d = to - self.row_at[idx, states]
        if (d >> self.n_bits).any():
            raise ValueError(f"drifting table read at step {int(to.max())}, beyond the {2 ** self.n_bits - 1} "
                             "steps its powers were built for")
        for j in range(self.n_bits):
            on = np.flatnonzero((d >> j) & 1)
            if on.size:
                row[on] = np.einsum("ka,kab->kb", row[on], self.powers[idx[on], j])
        row /= row.sum(axis=-1, keepdims=True)
        self.probs[idx, states] = row
        self.row_at[idx, states] = to
        return row

    def act(self, idx: np.ndarray, states: np.ndarray, rng: np.random.Generator, clock: np.ndarray) -> np.ndarray:
        cdf = np.cumsum(self.rows(idx, states, clock), axis=-1)
        cdf /= cdf[:, -1:]
        cdf[:, -1] = 1.0
        return (cdf <= rng.random(idx.size)[:, None]).sum(axis=-1)


__all__ = ["DriftingTables", "transfer_matrix", "transfer_powers"]
