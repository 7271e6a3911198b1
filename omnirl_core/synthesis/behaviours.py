"""The behaviour mixture of decoupled policy distillation: the behaviour table (source, tag, oracle, noise), the
preset weights, per-sequence schedules and learner hyperparameters, and the drifting random policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import DatasetConfig
from .format import _LP_MB, _LP_Q, LEARNER_PARAMS, TAG_MODEL_BASED, TAG_Q, TAG_RANDOM

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
    """Per-sequence linear schedules of the random-action and oracle probabilities."""

    r0: np.ndarray
    r_rate: np.ndarray
    r_floor: np.ndarray
    o0: np.ndarray
    o_rate: np.ndarray
    o_cap: np.ndarray

    def probs(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p_r = np.clip(np.maximum(self.r0 - self.r_rate * k, self.r_floor), 0.0, 1.0)
        p_o = np.clip(np.minimum(self.o0 + self.o_rate * k, self.o_cap), 0.0, None)
        return p_r, np.minimum(p_o, 1.0 - p_r)


def _draw_schedules(beh: np.ndarray, idx: np.ndarray, sch: _Schedules, cfg: DatasetConfig, ns: int,
                    rng: np.random.Generator, lp: np.ndarray) -> None:
    """Fill the schedules of the sequences ``idx`` for their (new) behaviours ``beh[idx]``.

    A learner behaviour takes its noise (start, decay; zero in the noise-free branch) from its learner's
    per-sequence draws ``lp`` [B, len(LEARNER_PARAMS)].
    """
    m, n = cfg.mixture, idx.size
    unit = 1.0 / (ns * cfg.na)
    kind = _NOISE[beh[idx]]
    u = rng.random((n, 8))  # fixed draw count per sequence, whatever the kind
    r0 = np.zeros(n)
    r_rate = np.zeros(n)
    r_floor = np.zeros(n)
    o0 = np.zeros(n)
    o_rate = np.zeros(n)
    o_cap = np.zeros(n)
    le = kind == 1
    col = np.where(_SRC[beh[idx]] == 1, _LP_MB, _LP_Q)[le]
    r0[le] = lp[idx[le], col + 3]
    r_rate[le] = lp[idx[le], col + 4]
    mo = kind == 2

    def _rng(bounds, col):
        return bounds[0] + (bounds[1] - bounds[0]) * u[mo, col]

    r0[mo] = _rng(m.mb_oracle_random_start, 1)
    r_rate[mo] = u[mo, 2] * m.mb_oracle_rate * unit
    r_floor[mo] = _rng(m.mb_oracle_random_floor, 3)
    o0[mo] = _rng(m.mb_oracle_oracle_start, 4)
    o_rate[mo] = u[mo, 5] * m.mb_oracle_rate * unit
    o_cap[mo] = _rng(m.mb_oracle_oracle_cap, 6)
    ep = kind == 3
    r0[ep] = 1.0
    r_rate[ep] = u[ep, 7] * m.noisy_oracle_decay * unit
    for name, val in (("r0", r0), ("r_rate", r_rate), ("r_floor", r_floor), ("o0", o0), ("o_rate", o_rate),
                      ("o_cap", o_cap)):
        getattr(sch, name)[idx] = val


def _draw_learner_params(u: np.ndarray, cfg: DatasetConfig, ns: int) -> np.ndarray:
    """[n, len(LEARNER_PARAMS)] hyperparameters of the learners of n sequences from uniforms u [n, 2, 5].

    Per learner (0: Q, 1: model-based), uniforms: branch, gamma, Exp(1) (by inversion), noise start, noise decay.
    The compiled engine's ``_draw_learners`` maps its uniforms the same way.
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
    return out


class _DriftingTables:
    """Drifting random softmax policies of the sequences that currently use one (behaviour ``drift_random``).

    Same process as :class:`omnirl_core.world.learners.DriftingSoftmaxPolicy` (logits N(0, e1^2), e1 ~ Exp(mean
    ``logit_scale``); after every action the [ns, na] table is multiplied by I + N(0, e2^2), e2 ~ Exp(mean
    ``drift_scale``), clipped and renormalised), but a fresh table is drawn whenever a sequence draws this
    behaviour, and only the tables in use drift (the reference builds a new policy at each draw).
    """

    def __init__(self, B: int, ns: int, na: int, logit_scale: float, drift_scale: float) -> None:
        self.ns, self.na = ns, na
        self.logit_scale, self.drift_scale = logit_scale, drift_scale
        self.probs = np.full((B, ns, na), 1.0 / na)
        self.e2 = np.zeros(B)

    def draw(self, idx: np.ndarray, rng: np.random.Generator) -> None:
        k = idx.size
        e1 = rng.exponential(self.logit_scale, size=k) if self.logit_scale > 0 else np.zeros(k)
        self.e2[idx] = rng.exponential(self.drift_scale, size=k) if self.drift_scale > 0 else np.zeros(k)
        z = rng.standard_normal((k, self.ns, self.na)) * e1[:, None, None]
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        self.probs[idx] = z / z.sum(axis=-1, keepdims=True)

    def act(self, idx: np.ndarray, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cdf = np.cumsum(self.probs[idx, states], axis=-1)
        cdf /= cdf[:, -1:]
        cdf[:, -1] = 1.0
        actions = (cdf <= rng.random(idx.size)[:, None]).sum(axis=-1)
        mix = np.eye(self.na) + rng.standard_normal((idx.size, self.na, self.na)) * self.e2[idx, None, None]
        p = np.clip(np.matmul(self.probs[idx], mix), 0.0, None)
        tot = p.sum(axis=-1, keepdims=True)
        self.probs[idx] = np.where(tot > 0, p / np.where(tot > 0, tot, 1.0), 1.0 / self.na)
        return actions
