"""What both engines compute before a batch is simulated: the learners' hyperparameters and every behaviour's
schedules (per-sequence draws), and the oracles' actions the mixture uses.

Both are drawn in numpy, before a batch is simulated, from named random streams
(:func:`~.behaviours.named_stream`): the learners' from ``learners``, a behaviour's schedules from its own name.
The numba engine receives the arrays, so the two engines hold the same values for the same sequence.

A schedule is linear in the sequence's clock k (environment steps since its start): the random-action
probability ``clip(max(r0 - r_rate k, r_floor), 0, 1)`` and the oracle's share ``clip(min(o0 + o_rate k, o_cap),
0, 1)``; the random draw comes first, so the oracle acts with probability (1 - p_random) p_oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..world.oracle import BEHAVIOUR_GAMMAS, oracle_policy
from .behaviours import BehaviourTable, named_stream
from .config import DatasetConfig
from .format import _LP_H, _LP_MB, _LP_Q, LEARNER_PARAMS

LEARNER_UNIFORMS = 6
"""Uniforms per learner of a sequence: branch, gamma, Exp(1) by inversion, noise start, noise decay, horizon."""


def draw_learner_params(cfg: DatasetConfig, ns: int, B: int, seq: np.random.SeedSequence) -> np.ndarray:
    """[B, len(LEARNER_PARAMS)] hyperparameters of the learners of a batch's B sequences (stream ``learners``)."""
    return learner_params(named_stream(seq, "learners").random((B, 2, LEARNER_UNIFORMS)), cfg, ns)


def learner_params(u: np.ndarray, cfg: DatasetConfig, ns: int) -> np.ndarray:
    """[n, len(LEARNER_PARAMS)] hyperparameters of the learners of n sequences from uniforms u [n, 2, 6].

    Per learner (0: Q, 1: model-based): the noisy branch with probability ``learner_noise_prob``, else the
    noise-free one (see :class:`~.config.MixtureConfig`); the Q-learner's horizon is T in the noise-free branch
    and U(q_noisy_horizon_min, T) in the noisy one.
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
    T = float(cfg.seq_len)
    lo = min(float(m.q_noisy_horizon_min), T)
    out[:, _LP_H] = np.where(out[:, _LP_Q] == 1, lo + (T - lo) * u[:, 0, 5], T)
    return out


def schedule_params(kind: np.ndarray, src: np.ndarray, lp: np.ndarray, u: np.ndarray, cfg: DatasetConfig,
                    ns: int) -> np.ndarray:
    """[n, 6] schedule parameters (r0, r_rate, r_floor, o0, o_rate, o_cap) of n (sequence, behaviour) pairs with
    noise kinds ``kind`` [n] and sources ``src`` [n], from uniforms ``u`` [n, 8].

    A learner behaviour takes its noise (start, decay; zero in the noise-free branch) from its learner's
    per-sequence draws ``lp`` [n, len(LEARNER_PARAMS)].
    """
    m = cfg.mixture
    unit = 1.0 / (ns * cfg.na)
    out = np.zeros((kind.size, 6))
    le = kind == 1
    col = np.where(src == 1, _LP_MB, _LP_Q)[le]
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


def draw_schedules(table: BehaviourTable, weights: np.ndarray, lp: np.ndarray, cfg: DatasetConfig, ns: int,
                   seq: np.random.SeedSequence) -> np.ndarray:
    """[B, nb, 6] schedules of every behaviour with weight of a batch's B sequences, each from its own stream (8
    uniforms per sequence); zero rows (never mixing) for the others, which draw nothing."""
    B, nb = lp.shape[0], len(table.names)
    out = np.zeros((B, nb, 6))
    for j in np.flatnonzero(weights > 0):
        u = named_stream(seq, table.names[j]).random((B, 8))
        out[:, j] = schedule_params(np.full(B, table.noise[j]), np.full(B, table.src[j]), lp, u, cfg, ns)
    return out


def oracle_actions(table: BehaviourTable, weights: np.ndarray, arrays, label_pol: np.ndarray,
                   label_gamma: float) -> np.ndarray:
    """[len(BEHAVIOUR_GAMMAS), B, ns] the actions of the oracles that the behaviours with weight use (as themselves
    or in their schedules' mixture); the label's oracle ``label_pol`` [B, ns] is reused, the others are solved on
    the stacked tasks ``arrays``; zeros for oracles no behaviour uses."""
    B, ns = label_pol.shape
    support = np.flatnonzero(weights > 0)
    used = (table.src[support] == 3) | (table.noise[support] == 2)
    out = np.zeros((len(BEHAVIOUR_GAMMAS), B, ns), dtype=np.int64)
    for i in sorted(set(table.orc[support][used].tolist())):
        g = BEHAVIOUR_GAMMAS[i]
        out[i] = label_pol if g == label_gamma else np.asarray(oracle_policy(arrays, g)).reshape(B, ns)
    return out


@dataclass
class Schedules:
    """The schedules of a batch: ``params`` [B, nb, 6] (:func:`draw_schedules`)."""

    params: np.ndarray

    def probs(self, beh: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p_random, p_oracle) [B] of behaviours ``beh`` [B] at clocks ``k`` [B]: the probabilities that the
        step's action is a uniform random one and that it is the mixed oracle's (else the base behaviour's)."""
        r0, r_rate, r_floor, o0, o_rate, o_cap = np.moveaxis(self.params[np.arange(beh.size), beh], -1, 0)
        p_r = np.clip(np.maximum(r0 - r_rate * k, r_floor), 0.0, 1.0)
        p_o = np.clip(np.minimum(o0 + o_rate * k, o_cap), 0.0, 1.0)
        return p_r, (1.0 - p_r) * p_o


__all__ = ["LEARNER_UNIFORMS", "Schedules", "draw_learner_params", "draw_schedules", "learner_params",
           "oracle_actions", "schedule_params"]
