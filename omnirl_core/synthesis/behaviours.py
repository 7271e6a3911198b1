"""The behaviour mixture of decoupled policy distillation: the behaviour table (source, tag, oracle, noise), the
preset weights, per-sequence schedules and learner hyperparameters, and the drifting random policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import DatasetConfig
from .format import _LP_H, _LP_MB, _LP_Q, LEARNER_PARAMS, TAG_MODEL_BASED, TAG_Q, TAG_RANDOM

# Behaviour table: name, base source, base tag, oracle index (BEHAVIOUR_GAMMAS) of the base or mixed oracle,
# noise kind. Sources: drift, mb, q, oracle, uniform. Noise: none, learner, mb_oracle, eps.
_B = [
    ("drift_random", "drift", TAG_RANDOM, 0, "none"),
    ("model_based", "mb", TAG_MODEL_BASED, 0, "learner"),
    ("q_learning", "q", TAG_Q, 0, "learner"),
    ("mb_oracle_0", "mb", TAG_MODEL_BASED, 0, "mb_oracle"),
    ("mb_oracle_1", "mb", TAG_MODEL_BASED, 1, "mb_oracle"),
    ("mb_oracle_2", "mb", TAG_MODEL_BASED, 2, "mb_oracle"),
    ("mb_oracle_3", "mb", TAG_MODEL_BASED, 3, "mb_oracle"),
    ("noisy_oracle_0.93", "oracle", 2, 2, "eps"),
    ("noisy_oracle_0.994", "oracle", 3, 3, "eps"),
    ("oracle_0.5", "oracle", 1, 1, "none"),
    ("oracle_0.93", "oracle", 2, 2, "none"),
    ("oracle_0.994", "oracle", 3, 3, "none"),
    ("uniform_random", "uniform", TAG_RANDOM, 0, "none"),
    ("q_learning_pure", "q", TAG_Q, 0, "none"),
]
BEHAVIOURS = tuple(b[0] for b in _B)
"""Behaviour id -> name (the ``behaviour`` array; 255 marks boundary steps)."""
_SOURCES = ("drift", "mb", "q", "oracle", "uniform")
_SRC = np.array([_SOURCES.index(b[1]) for b in _B])
_TAG = np.array([b[2] for b in _B], dtype=np.uint8)
_ORC = np.array([b[3] for b in _B])
_NOISE = np.array([("none", "learner", "mb_oracle", "eps").index(b[4]) for b in _B])
_ORACLE_TAGS = np.arange(4, dtype=np.uint8)  # oracle i acts -> tag i


# ---------------------------------------------------------------------------------------------- config helpers
def behaviour_weights(cfg: DatasetConfig) -> np.ndarray:
    """Normalised weights over :data:`BEHAVIOURS` for the config's preset."""
    m = cfg.mixture
    w = np.zeros(len(_B))
    if cfg.preset in ("dpd", "no_tags"):
        w[0], w[1], w[2] = m.w_drift_random, m.w_model_based, m.w_q_learning
        w[3:7] = m.w_mb_oracle
        w[7:9] = m.w_noisy_oracle
        w[9:12] = m.w_oracle
    elif cfg.preset == "dpt":
        w[[11, 2, 12]] = 1.0
    elif cfg.preset == "ad":
        w[BEHAVIOURS.index("q_learning_pure")] = 1.0
    elif cfg.preset == "ad_eps":
        w[BEHAVIOURS.index("noisy_oracle_0.994")] = 1.0
    else:  # pragma: no cover - the config validates presets
        raise ValueError(f"unknown preset {cfg.preset!r}")
    if w.sum() <= 0:
        raise ValueError("the behaviour weights of the mixture are all zero")
    return w / w.sum()


def _scan_table(weights: np.ndarray) -> np.ndarray:
    """Cumulative weights for drawing by scan: behaviour = first i with u < table[i], u ~ U[0, 1).

    Zero-weight behaviours get -1 (never drawn), the last behaviour with weight gets exactly 1.0 (so rounding
    never lets the draw run past it); entries after it get 2.0 (never reached).
    """
    table = np.cumsum(weights)
    last = int(np.flatnonzero(weights > 0)[-1])
    table[last] = 1.0
    table[last + 1 :] = 2.0
    table[weights <= 0] = np.where(np.arange(len(weights))[weights <= 0] > last, 2.0, -1.0)
    return table


@dataclass
class _Schedules:
    """Linear schedules of the random-action and oracle probabilities, per sequence and behaviour.

    ``params`` [B, n_behaviours, 6] holds (r0, r_rate, r_floor, o0, o_rate, o_cap) of each behaviour of each
    sequence; at clock k the random-action probability is ``clip(max(r0 - r_rate k, r_floor), 0, 1)`` and the
    oracle's share ``clip(min(o0 + o_rate k, o_cap), 0, 1)``.
    """

    params: np.ndarray
    process: str

    def probs(self, beh: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p_random, p_oracle) [B] of behaviours ``beh`` [B] at clocks ``k`` [B]: the probabilities that the
        step's action is a uniform random one and that it is the mixed oracle's (else the base behaviour's).

        reference: the oracle acts with probability (1 - p_random) * p_oracle (its draw comes after the random
        one's); workbench_v1: with probability min(p_oracle, 1 - p_random)."""
        r0, r_rate, r_floor, o0, o_rate, o_cap = np.moveaxis(self.params[np.arange(beh.size), beh], -1, 0)
        p_r = np.clip(np.maximum(r0 - r_rate * k, r_floor), 0.0, 1.0)
        p_o = np.clip(np.minimum(o0 + o_rate * k, o_cap), 0.0, 1.0)
        if self.process == "reference":
            return p_r, (1.0 - p_r) * p_o
        return p_r, np.minimum(p_o, 1.0 - p_r)


def _schedule_params(beh: np.ndarray, lp: np.ndarray, u: np.ndarray, cfg: DatasetConfig, ns: int) -> np.ndarray:
    """[n, 6] schedule parameters of behaviours ``beh`` [n] from uniforms ``u`` [n, 8].

    A learner behaviour takes its noise (start, decay; zero in the noise-free branch) from its learner's
    per-sequence draws ``lp`` [n, len(LEARNER_PARAMS)] (the rows of the sequences concerned). The compiled
    engine's ``_draw_schedule`` maps its uniforms the same way.
    """
    m = cfg.mixture
    unit = 1.0 / (ns * cfg.na)
    kind = _NOISE[beh]
    out = np.zeros((beh.size, 6))
    le = kind == 1
    col = np.where(_SRC[beh] == 1, _LP_MB, _LP_Q)[le]
    out[le, 0] = lp[le, col + 3]
    out[le, 1] = lp[le, col + 4]
    mo = kind == 2

    def _between(bounds, j):
        return bounds[0] + (bounds[1] - bounds[0]) * u[mo, j]

    out[mo, 0] = _between(m.mb_oracle_random_start, 1)
    out[mo, 1] = u[mo, 2] * m.mb_oracle_rate * unit
    out[mo, 2] = _between(m.mb_oracle_random_floor, 3)
    out[mo, 3] = _between(m.mb_oracle_oracle_start, 4)
    out[mo, 4] = u[mo, 5] * m.mb_oracle_rate * unit
    out[mo, 5] = _between(m.mb_oracle_oracle_cap, 6)
    ep = kind == 3
    out[ep, 0] = 1.0
    out[ep, 1] = u[ep, 7] * m.noisy_oracle_decay * unit
    return out


def _start_schedules(beh: np.ndarray, cfg: DatasetConfig, ns: int, rng: np.random.Generator,
                     lp: np.ndarray) -> _Schedules:
    """The schedules of B sequences at their start: reference, every behaviour's (8 uniforms each, drawn once
    for the sequence); workbench_v1, the first behaviour's only (8 uniforms), redrawn at every switch."""
    B, nb = beh.size, len(_B)
    sch = _Schedules(np.zeros((B, nb, 6)), cfg.process)
    if cfg.process == "reference":
        every = np.tile(np.arange(nb), B)
        u = rng.random((B * nb, 8))
        sch.params[:] = _schedule_params(every, np.repeat(lp, nb, axis=0), u, cfg, ns).reshape(B, nb, 6)
    else:
        _redraw_schedules(sch, np.arange(B), beh, cfg, ns, rng, lp)
    return sch


def _redraw_schedules(sch: _Schedules, idx: np.ndarray, beh: np.ndarray, cfg: DatasetConfig, ns: int,
                      rng: np.random.Generator, lp: np.ndarray) -> None:
    """workbench_v1: fresh schedules for the sequences ``idx`` and their new behaviours ``beh[idx]``."""
    u = rng.random((idx.size, 8))  # fixed draw count per sequence, whatever the kind
    sch.params[idx, beh[idx]] = _schedule_params(beh[idx], lp[idx], u, cfg, ns)


V1_Q_HORIZON = 4000.0
"""The Q-learner's horizon H in process workbench_v1 (fixed; the reference ties it to the sequence length)."""


def _draw_learner_params(u: np.ndarray, cfg: DatasetConfig, ns: int) -> np.ndarray:
    """[n, len(LEARNER_PARAMS)] hyperparameters of the learners of n sequences from uniforms u [n, 2, k].

    Per learner (0: Q, 1: model-based), uniforms: branch, gamma, Exp(1) (by inversion), noise start, noise decay,
    and (k = 6, process reference) the Q-learner's horizon: T in the noise-free branch, U(q_noisy_horizon_min, T)
    in the noisy one; workbench_v1 (k = 5) has H = 4000. The compiled engine's ``_draw_learners`` maps its
    uniforms the same way.
    """
    m = cfg.mixture
    n = u.shape[0]
    unit = 1.0 / (ns * cfg.na)
    out = np.zeros((n, len(LEARNER_PARAMS)))
    g_lo, g_hi = m.learner_gamma_range
    n_lo, n_hi = m.learner_noise_range
    for j, (col, base) in enumerate(((_LP_Q, m.learner_alpha_base), (_LP_MB, m.learner_c_base))):
        v = u[:, j]
        noisy = v[:, 0] < m.learner_noise_prob
        expo = np.maximum(-np.log1p(-v[:, 2]), 1e-12)
        out[:, col] = noisy
        out[:, col + 1] = np.where(noisy, m.learner_noisy_gamma, g_lo + (g_hi - g_lo) * v[:, 1])
        out[:, col + 2] = np.where(noisy, base * expo, base)
        out[:, col + 3] = np.where(noisy, n_lo + (n_hi - n_lo) * v[:, 3], 0.0)
        out[:, col + 4] = np.where(noisy, v[:, 4] * m.learner_noise_decay * unit, 0.0)
    if u.shape[2] > 5:
        T = float(cfg.seq_len)
        lo = min(float(m.q_noisy_horizon_min), T)
        out[:, _LP_H] = np.where(out[:, _LP_Q] == 1, lo + (T - lo) * u[:, 0, 5], T)
    else:
        out[:, _LP_H] = V1_Q_HORIZON
    return out


def learner_uniforms(cfg: DatasetConfig) -> int:
    """Uniforms drawn per learner of a sequence: 6 (process reference: with the Q-learner's horizon) or 5."""
    return 6 if cfg.process == "reference" else 5


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


class _DriftingTables:
    """Drifting random softmax policies, one [ns, na] table per sequence (behaviour ``drift_random``).

    Initial table: softmax of logits N(0, e1^2), e1 ~ Exp(mean ``logit_scale``); e2 ~ Exp(mean ``drift_scale``).

    reference (``every_step``), the reference's ``AnyPolicySolver``: each sequence draws its table P0 and one
    transfer matrix M = clip(I + e2 N(0, 1), 0, 1), rows normalised (:func:`transfer_matrix`), once, at its
    start, and the table is multiplied by that same M at every step, whoever acts, so at env step k it is
    P0 M^k: every row moves steadily towards M's stationary distribution. The rows are advanced lazily: each
    (sequence, state) row remembers the step it was last brought to, and a read after d more steps multiplies it
    by M^d, the product of the cached powers M^(2^j) over the binary digits of d (:func:`transfer_powers`).
    workbench_v1: a fresh table whenever a sequence draws this behaviour, and only the tables in use drift,
    multiplied after each action by a fresh I + e2 N(0, 1), clipped and renormalised (the process of
    :class:`omnirl_core.world.policies.DriftingSoftmaxPolicy`).
    """

    def __init__(self, B: int, ns: int, na: int, logit_scale: float, drift_scale: float,
                 every_step: bool = False, n_steps: int = 1) -> None:
        self.ns, self.na = ns, na
        self.logit_scale, self.drift_scale = logit_scale, drift_scale
        self.every_step = every_step
        self.probs = np.full((B, ns, na), 1.0 / na)
        self.e2 = np.zeros(B)
        if every_step:
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
        if self.every_step:
            m = transfer_matrix(self.e2[idx], rng.standard_normal((k, self.na, self.na)))
            self.powers[idx] = transfer_powers(m, 2 ** self.n_bits - 1)
            self.row_at[idx] = 0

    def _rows(self, idx: np.ndarray, states: np.ndarray, clock: np.ndarray | None) -> np.ndarray:
        """[k, na] the action probabilities of sequences ``idx`` in ``states`` at env step ``clock`` [k]."""
        row = self.probs[idx, states]
        if not self.every_step:
            return row
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

    def act(self, idx: np.ndarray, states: np.ndarray, rng: np.random.Generator,
            clock: np.ndarray | None = None) -> np.ndarray:
        cdf = np.cumsum(self._rows(idx, states, clock), axis=-1)
        cdf /= cdf[:, -1:]
        cdf[:, -1] = 1.0
        actions = (cdf <= rng.random(idx.size)[:, None]).sum(axis=-1)
        if not self.every_step:
            mix = np.eye(self.na) + rng.standard_normal((idx.size, self.na, self.na)) * self.e2[idx, None, None]
            p = np.clip(np.matmul(self.probs[idx], mix), 0.0, None)
            tot = p.sum(axis=-1, keepdims=True)
            self.probs[idx] = np.where(tot > 0, p / np.where(tot > 0, tot, 1.0), 1.0 / self.na)
        return actions
