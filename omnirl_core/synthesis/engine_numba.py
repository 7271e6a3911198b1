"""Compiled (numba) engine of data synthesis: the same process as the numpy engine, one sequence per loop.

``omnirl_core.synthesis`` runs a batch of sequences either with numpy arrays over the batch (``engine="numpy"``,
the batched env and learners of ``omnirl_core.world.envs`` / ``omnirl_core.world.learners``) or with this kernel
(``engine="numba"``), which walks each sequence step by step in compiled code. The kernel implements the same
environment, learners and mixture:

- environment: inverse-CDF next state, Gaussian reward noise, termination on entering a terminal state (every
  step of a bandit), truncation at ``max_steps``;
- Q-learner (``QLearner``): optimistic init ``1/(1-gamma)``, target ``r + gamma max Q(s')`` (``r`` on
  termination), step size ``alpha sqrt(max((H+1)/(H+N), 1e-3))`` (softmax rule) or ``(H+1)/(H+N)`` (UCB rule),
  softmax acting with stiffness, or UCB-greedy acting with random tie-breaking;
- model-based learner (``ModelBasedLearner``): counts with a 0.01 prior, running mean rewards, terminal rates,
  one warm-started value-iteration sweep and a bonus refresh at every episode end, acting by
  ``argmax Q + b U(0, 1)``;
- learned terminal states as in ``omnirl_core.world.learners`` (the learner updates live in
  ``omnirl_core.synthesis.numba_learners``, tested against the numpy learners on the same transitions);
- the drifting softmax policy (``omnirl_core.synthesis.drifting``), tags, masking and boundary steps of
  ``omnirl_core.synthesis``.

The learners' hyperparameters, the behaviours' schedules and the oracles' actions are computed before, in numpy,
by the functions the numpy engine calls (``omnirl_core.synthesis.schedules``), and passed in: both engines hold
the same values.

Randomness: inside compiled code ``np.random.*`` is numba's own generator (numpy's global RNG is never
touched); each sequence seeds it from its own seed, so a sequence's data does not depend on the other
sequences of its batch. The numbers differ from the numpy engine's (other random streams), not the process.
"""

# ruff: noqa: NPY002  (numba's compiled np.random functions, seeded per sequence; see the docstring)

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..world.oracle import oracle_policy, stack_tasks
from ..world.task import Task
from .behaviours import _scan_table, behaviour_table, behaviour_weights
from .config import DatasetConfig
from .format import _dtype_obs
from .numba_learners import _act_mb, _act_q, _categorical, learn_terminal, mb_observe, mb_plan, q_observe
from .schedules import draw_learner_params, draw_schedules, oracle_actions

__all__ = ["run_sequences"]


@njit(cache=True)
def _next_state(cdf_row, ns):
    u = np.random.random()
    for j in range(ns - 1):
        if u < cdf_row[j]:
            return j
    return ns - 1


@njit(cache=True)
def _draw_drift(table, ns, na, logit_scale, drift_scale):
    e1 = np.random.exponential(logit_scale) if logit_scale > 0 else 0.0
    e2 = np.random.exponential(drift_scale) if drift_scale > 0 else 0.0
    for s in range(ns):
        mx = -1e300
        for a in range(na):
            table[s, a] = np.random.standard_normal() * e1
            mx = max(mx, table[s, a])
        tot = 0.0
        for a in range(na):
            table[s, a] = math.exp(table[s, a] - mx)
            tot += table[s, a]
        for a in range(na):
            table[s, a] /= tot
    return e2


@njit(cache=True)
def _draw_transfer(powers, na, e2):
    """The transfer matrix M = clip(I + e2 N(0, 1), 0, 1), rows normalised, into powers[0] and its
    repeated squares M^(2^j) into powers[j] (``behaviours.transfer_matrix`` / ``transfer_powers``)."""
    m = powers[0]
    for i in range(na):
        tot = 0.0
        for j in range(na):
            v = (1.0 if i == j else 0.0) + e2 * np.random.standard_normal()
            m[i, j] = min(max(v, 0.0), 1.0)
            tot += m[i, j]
        for j in range(na):
            m[i, j] = m[i, j] / tot if tot > 0 else (1.0 if i == j else 0.0)
    for q in range(1, powers.shape[0]):
        for i in range(na):
            tot = 0.0
            for j in range(na):
                v = 0.0
                for k in range(na):
                    v += powers[q - 1, i, k] * powers[q - 1, k, j]
                powers[q, i, j] = v
                tot += v
            for j in range(na):
                powers[q, i, j] /= tot


@njit(cache=True)
def _drift_row(table, powers, row_at, s, na, clock, probs):
    """Row s of the drifting table brought to env step ``clock`` into probs (and stored): times
    M^d for the d steps since it was last read, one cached power M^(2^q) per binary digit of d."""
    d = int(clock) - row_at[s]
    q = 0
    while d > 0:
        if d & 1:
            for j in range(na):
                v = 0.0
                for k in range(na):
                    v += table[s, k] * powers[q, k, j]
                probs[j] = v
            for j in range(na):
                table[s, j] = probs[j]
        d >>= 1
        q += 1
    tot = 0.0
    for j in range(na):
        tot += table[s, j]
    for j in range(na):
        table[s, j] /= tot
        probs[j] = table[s, j]
    row_at[s] = int(clock)


def _n_bits(n):
    """Binary digits of n (at least 1): the powers M^(2^j) needed for any exponent up to n."""
    return max(int(n).bit_length(), 1)


@njit(cache=True)
def run_sequences(seeds, cdf, rmean, rnoise, start_cdf, terminal, max_steps, mapping, label_pol, orc, cum_w,
                  b_src, b_tag, b_orc, b_noise, lp_all, sch_all, T, is_bandit, self_label, no_tags, q_ucb, mbp, dp,
                  drift_used, n_bits, out_obs, out_tag, out_act, out_rew, out_lab, out_beh):
    """Fill out_* [B, T] for B sequences with learner hyperparameters lp_all [B, 11] and schedules sch_all
    [B, nb, 6] (``omnirl_core.synthesis.schedules``). mbp = (prior, mb_oracle gamma, mb_oracle c); dp =
    (logit_scale, drift_scale, switch_fraction, switch_prob, seq_mask_prob, episode_mask_prob); n_bits: the powers
    of the drifting policy's transfer matrix kept."""
    B = seeds.shape[0]
    ns = cdf.shape[1]
    na = cdf.shape[2]
    nb = cum_w.shape[0]
    prior = mbp[0]
    mbo_gamma, mbo_c = mbp[1], mbp[2]
    for b in range(B):
        np.random.seed(seeds[b])
        lp = lp_all[b]
        sch = sch_all[b]
        q_gamma, q_alpha, H = lp[1], lp[2], lp[10]
        mb_gamma, mb_c = lp[6], lp[7]
        Q = np.full((ns, na), 1.0 / (1.0 - q_gamma))
        n_sa = np.zeros((ns, na))
        n_s = np.zeros(ns)
        total = 0.0
        lterm = np.zeros(ns, dtype=np.bool_)
        counts = np.zeros((ns, na, ns))
        r_mean = np.zeros((ns, na, ns))
        r_m2 = np.zeros((ns, na, ns))
        n_into = np.zeros(ns)
        n_term_into = np.zeros(ns)
        Qm = np.zeros((ns, na))
        bonus = np.full((ns, na), mb_c / (1.0 - mb_gamma) * 0.01)
        Qm2 = np.zeros((ns, na))  # the mb_oracle mixtures' model-based learner
        bonus2 = np.full((ns, na), mbo_c / (1.0 - mbo_gamma) * 0.01)
        table = np.full((ns, na), 1.0 / na)
        powers = np.zeros((n_bits, na, na))  # the transfer matrix's powers M^(2^j)
        row_at = np.zeros(ns, dtype=np.int64)  # the env step each table row is brought to
        probs = np.zeros(na)

        def draw_beh():
            u = np.random.random()
            for i in range(nb - 1):
                if u < cum_w[i]:
                    return i
            return nb - 1

        beh = draw_beh()
        if drift_used:
            e2 = _draw_drift(table, ns, na, dp[0], dp[1])
            _draw_transfer(powers, na, e2)
        clock = 0.0
        switching = np.random.random() < dp[2]
        seq_masked = np.random.random() < dp[4]
        ep_masked = np.random.random() < dp[5]
        s = _next_state(start_cdf[b], ns)
        steps = 0
        pos = 0
        while pos < T:
            src = b_src[beh]
            oi = b_orc[beh]
            if src == 0:
                _drift_row(table, powers, row_at, s, na, clock, probs)
                base = _categorical(probs, na)
            elif src == 1:
                if b_noise[beh] == 2:
                    base = _act_mb(Qm2, bonus2, s, na)
                else:
                    base = _act_mb(Qm, bonus, s, na)
            elif src == 2:
                base = _act_q(Q, n_sa, n_s, s, na, total, H, 1.0, q_ucb, probs)
            elif src == 3:
                base = orc[oi, b, s]
            else:
                base = np.random.randint(0, na)
            # schedules: sch[beh] = r0, r_rate, r_floor, o0, o_rate, o_cap
            c = sch[beh]
            p_r = min(max(max(c[0] - c[1] * clock, c[2]), 0.0), 1.0)
            p_o = (1.0 - p_r) * min(max(min(c[3] + c[4] * clock, c[5]), 0.0), 1.0)
            u = np.random.random()
            if u < p_r:
                action = np.random.randint(0, na)
                tag = 6
            elif u < p_r + p_o:
                action = orc[oi, b, s]
                tag = oi
            else:
                action = base
                tag = b_tag[beh]
            if seq_masked or ep_masked or no_tags:
                tag = 7
            # environment step
            s2 = _next_state(cdf[b, s, action], ns)
            r = rmean[b, s, action, s2] + rnoise[b, s, action, s2] * np.random.standard_normal()
            steps += 1
            term = is_bandit or terminal[b, s2]
            trunc = (not term) and steps >= max_steps[b]
            # learners (every transition)
            q_observe(Q, n_sa, n_s, lterm, s, action, r, s2, term, q_gamma, q_alpha, H, q_ucb)
            total += 1
            mb_observe(counts, r_mean, r_m2, n_into, n_term_into, s, action, r, s2, term)
            learn_terminal(n_s, lterm, s2, term, Q, Qm, Qm2)
            # record
            p = pos
            out_obs[b, p] = mapping[b, s]
            out_tag[b, p] = tag
            out_act[b, p] = action
            out_rew[b, p] = r
            out_lab[b, p] = action if self_label else label_pol[b, s]
            out_beh[b, p] = beh
            pos += 1
            clock += 1.0
            if term or trunc:
                mb_plan(counts, r_mean, n_sa, lterm, n_into, n_term_into, Qm, bonus, ns, na, mb_gamma, mb_c, prior)
                mb_plan(counts, r_mean, n_sa, lterm, n_into, n_term_into, Qm2, bonus2, ns, na, mbo_gamma, mbo_c,
                        prior)
                if pos < T:
                    out_obs[b, pos] = mapping[b, s2]
                    out_tag[b, pos] = 7
                    out_act[b, pos] = na
                    out_rew[b, pos] = 0.0
                    out_lab[b, pos] = 255
                    out_beh[b, pos] = 255
                    pos += 1
                if switching and np.random.random() < dp[3]:
                    beh = draw_beh()
                ep_masked = np.random.random() < dp[5]
                s = _next_state(start_cdf[b], ns)
                steps = 0
            else:
                s = s2


def _synthesize_batch_numba(tasks: list[Task], cfg: DatasetConfig, seq: np.random.SeedSequence) -> dict:
    """The compiled engine (``omnirl_core.synthesis.engine_numba``): same process, one sequence per loop."""
    from ..world.envs import _cumulative

    B, T, m = len(tasks), cfg.seq_len, cfg.mixture
    ns = tasks[0].ns
    arrays = stack_tasks(tasks)
    label_pol = np.asarray(oracle_policy(arrays, cfg.label_gamma)).reshape(B, ns)
    table = behaviour_table()
    weights = behaviour_weights(cfg)
    support = np.flatnonzero(weights > 0)
    orc = oracle_actions(table, weights, arrays, label_pol, cfg.label_gamma)
    lp = draw_learner_params(cfg, ns, B, seq)
    sch = draw_schedules(table, weights, lp, cfg, ns, seq)
    seeds = seq.generate_state(B, np.uint32).astype(np.int64)
    out = {
        "obs": np.zeros((B, T), _dtype_obs(cfg)),
        "tag": np.zeros((B, T), np.uint8),
        "action": np.zeros((B, T), np.uint8),
        "reward": np.zeros((B, T), np.float32),
        "label": np.zeros((B, T), np.uint8),
        "behaviour": np.zeros((B, T), np.uint8),
    }
    run_sequences(
        seeds, _cumulative(arrays.transition), np.stack([t.reward for t in tasks]),
        np.stack([t.reward_noise for t in tasks]), _cumulative(np.stack([t.start_prob for t in tasks])),
        np.stack([t.terminal for t in tasks]), np.array([t.max_steps for t in tasks]),
        np.stack([t.state_mapping for t in tasks]).astype(np.int64), label_pol.astype(np.int64), orc,
        _scan_table(weights), table.src.astype(np.int64), table.tag.astype(np.int64), table.orc.astype(np.int64),
        table.noise.astype(np.int64), lp, sch, T, ns == 1, cfg.preset in ("ad", "ad_eps"), cfg.tagless,
        m.q_rule == "ucb", np.array([0.01, m.mb_oracle_gamma, m.mb_oracle_c]),
        np.array([m.drift_logit_scale, m.drift_scale, m.switch_fraction, m.switch_prob, m.seq_mask_prob,
                  m.episode_mask_prob]),
        bool((table.src[support] == 0).any()), _n_bits(T + 2),
        out["obs"], out["tag"], out["action"], out["reward"], out["label"], out["behaviour"],
    )
    out["learner_params"] = lp
    return out
