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
- learned terminal states as in ``omnirl_core.world.learners``;
- the per-sequence learner hyperparameters (``_draw_learners``, the same map from uniforms as
  ``omnirl_core.synthesis._draw_learner_params``), written to ``out_lp``;
- the drifting softmax policy, the schedules, tags, masking and boundary steps of ``omnirl_core.synthesis``.

Randomness: inside compiled code ``np.random.*`` is numba's own generator (numpy's global RNG is never
touched); each sequence seeds it from its own seed, so a sequence's data does not depend on the other
sequences of its batch. The numbers differ from the numpy engine's (other random streams), not the process.
"""

# ruff: noqa: NPY002  (numba's compiled np.random functions, seeded per sequence; see the docstring)

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..world.oracle import BEHAVIOUR_GAMMAS, oracle_policy, stack_tasks
from ..world.task import Task
from .behaviours import _NOISE, _ORC, _SRC, _TAG, _scan_table, behaviour_weights
from .config import DatasetConfig
from .format import LEARNER_PARAMS, _dtype_obs

__all__ = ["run_sequences"]


@njit(cache=True)
def _categorical(p, n):
    tot = 0.0
    for i in range(n):
        tot += p[i]
    u = np.random.random() * tot
    acc = 0.0
    for i in range(n - 1):
        acc += p[i]
        if u < acc:
            return i
    return n - 1


@njit(cache=True)
def _next_state(cdf_row, ns):
    u = np.random.random()
    for j in range(ns - 1):
        if u < cdf_row[j]:
            return j
    return ns - 1


@njit(cache=True)
def _draw_learners(ns, na, fp, hp, lp):
    """Hyperparameters of a sequence's Q-learner (lp[0:5]) and model-based learner (lp[5:10]).

    Columns per learner: noisy (1/0), gamma, alpha or c, noise start, noise decay per step (see
    ``omnirl_core.synthesis.LEARNER_PARAMS``). hp = (c_base, alpha_base, gamma_lo, gamma_hi, noisy_gamma).
    """
    unit = 1.0 / (ns * na)
    for j in range(2):
        u = np.random.random(5)  # branch, gamma, Exp(1) by inversion, noise start, noise decay
        o = 5 * j
        base = hp[1] if j == 0 else hp[0]
        if u[0] < fp[0]:
            lp[o] = 1.0
            lp[o + 1] = hp[4]
            lp[o + 2] = base * max(-math.log1p(-u[2]), 1e-12)
            lp[o + 3] = fp[1] + (fp[2] - fp[1]) * u[3]
            lp[o + 4] = u[4] * fp[3] * unit
        else:
            lp[o] = 0.0
            lp[o + 1] = hp[2] + (hp[3] - hp[2]) * u[1]
            lp[o + 2] = base
            lp[o + 3] = 0.0
            lp[o + 4] = 0.0


@njit(cache=True)
def _draw_schedule(kind, src, ns, na, fp, sch, lp):
    # fp: learner_noise_prob, noise_lo, noise_hi, learner_noise_decay, rs_lo, rs_hi, rf_lo, rf_hi,
    #     os_lo, os_hi, oc_lo, oc_hi, mb_oracle_rate, noisy_oracle_decay
    # A learner behaviour (kind 1) takes its noise from its learner's draws lp (zero when noise-free).
    unit = 1.0 / (ns * na)
    u = np.random.random(8)
    for i in range(6):
        sch[i] = 0.0
    if kind == 1:
        o = 5 if src == 1 else 0
        sch[0] = lp[o + 3]
        sch[1] = lp[o + 4]
    elif kind == 2:
        sch[0] = fp[4] + (fp[5] - fp[4]) * u[1]
        sch[1] = u[2] * fp[12] * unit
        sch[2] = fp[6] + (fp[7] - fp[6]) * u[3]
        sch[3] = fp[8] + (fp[9] - fp[8]) * u[4]
        sch[4] = u[5] * fp[12] * unit
        sch[5] = fp[10] + (fp[11] - fp[10]) * u[6]
    elif kind == 3:
        sch[0] = 1.0
        sch[1] = u[7] * fp[13] * unit


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
def _drift_step(table, ns, na, e2):
    mix = np.eye(na)
    if e2 > 0:
        for i in range(na):
            for j in range(na):
                mix[i, j] += np.random.standard_normal() * e2
    out = np.zeros((ns, na))
    for s in range(ns):
        for k in range(na):
            t = table[s, k]
            for a in range(na):
                out[s, a] += t * mix[k, a]
    for s in range(ns):
        tot = 0.0
        for a in range(na):
            if out[s, a] < 0:
                out[s, a] = 0.0
            tot += out[s, a]
        for a in range(na):
            table[s, a] = out[s, a] / tot if tot > 0 else 1.0 / na


@njit(cache=True)
def _mb_plan(counts, r_mean, n_sa, terminal, n_into, n_term_into, Qm, bonus, ns, na, gamma, c, prior):
    V = np.zeros(ns)
    for s in range(ns):
        if not terminal[s]:
            m = Qm[s, 0]
            for a in range(1, na):
                m = max(m, Qm[s, a])
            rate = n_term_into[s] / max(n_into[s], 1)
            V[s] = (1.0 - rate) * m
    newQ = np.zeros((ns, na))
    for s in range(ns):
        if terminal[s]:
            continue
        for a in range(na):
            tot = 0.0
            for s2 in range(ns):
                tot += counts[s, a, s2] + prior
            acc = 0.0
            for s2 in range(ns):
                acc += (counts[s, a, s2] + prior) * (r_mean[s, a, s2] + gamma * V[s2])
            newQ[s, a] = acc / tot
    Qm[:, :] = newQ
    n = ns * na * ns
    mean = 0.0
    for s in range(ns):
        for a in range(na):
            for s2 in range(ns):
                mean += r_mean[s, a, s2]
    mean /= n
    var = 0.0
    for s in range(ns):
        for a in range(na):
            for s2 in range(ns):
                var += (r_mean[s, a, s2] - mean) ** 2
    scale = max(math.sqrt(var / n), 0.01)
    for s in range(ns):
        for a in range(na):
            bonus[s, a] = c / (1.0 - gamma) * scale / math.sqrt(n_sa[s, a] + 1.0)


@njit(cache=True)
def run_sequences(seeds, cdf, rmean, rnoise, start_cdf, terminal, max_steps, mapping, label_pol, orc, cum_w,
                  b_src, b_tag, b_orc, b_noise, fp, T, is_bandit, self_label, no_tags, q_ucb, qp, mbp, hp, dp,
                  out_obs, out_tag, out_act, out_rew, out_lab, out_beh, out_lp):
    """Fill out_* [B, T] and the learner hyperparameters out_lp [B, 10] for B sequences. qp = (H, UCB c);
    mbp = (prior,); hp = (c_base, alpha_base, gamma_lo, gamma_hi, noisy_gamma);
    dp = (logit_scale, drift_scale, switch_fraction, switch_prob, seq_mask_prob, episode_mask_prob)."""
    B = seeds.shape[0]
    ns = cdf.shape[1]
    na = cdf.shape[2]
    nb = cum_w.shape[0]
    H, q_c = qp[0], qp[1]
    prior = mbp[0]
    for b in range(B):
        np.random.seed(seeds[b])
        lp = out_lp[b]
        _draw_learners(ns, na, fp, hp, lp)
        q_gamma, q_alpha = lp[1], lp[2]
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
        table = np.full((ns, na), 1.0 / na)
        sch = np.zeros(6)
        probs = np.zeros(na)
        e2 = 0.0

        def draw_beh():
            u = np.random.random()
            for i in range(nb - 1):
                if u < cum_w[i]:
                    return i
            return nb - 1

        beh = draw_beh()
        _draw_schedule(b_noise[beh], b_src[beh], ns, na, fp, sch, lp)
        if b_src[beh] == 0:
            e2 = _draw_drift(table, ns, na, dp[0], dp[1])
        since = 0.0
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
                base = _categorical(table[s], na)
                _drift_step(table, ns, na, e2)
            elif src == 1:
                best = -1e300
                base = 0
                for a in range(na):
                    v = Qm[s, a] + bonus[s, a] * np.random.random()
                    if v > best:
                        best = v
                        base = a
            elif src == 2:
                if q_ucb:
                    best = -1e300
                    nbest = 0
                    for a in range(na):
                        if n_sa[s, a] == 0:
                            v = np.inf
                        else:
                            v = Q[s, a] + q_c * math.sqrt(math.log(total + 1.0) / n_sa[s, a])
                        if v > best:
                            best = v
                    base = 0
                    for a in range(na):
                        v = np.inf if n_sa[s, a] == 0 else Q[s, a] + q_c * math.sqrt(
                            math.log(total + 1.0) / n_sa[s, a])
                        if v >= best:
                            nbest += 1
                            if np.random.random() * nbest < 1.0:
                                base = a
                else:
                    mx = Q[s, 0]
                    for a in range(1, na):
                        mx = max(mx, Q[s, a])
                    mean = 0.0
                    for a in range(na):
                        mean += Q[s, a] - mx
                    mean /= na
                    var = 0.0
                    for a in range(na):
                        var += (Q[s, a] - mx - mean) ** 2
                    scale = max(math.sqrt(var / na), 0.01)
                    stiff = min((H + 1.0 + n_s[s]) / (H + 1.0), 10.0)
                    for a in range(na):
                        probs[a] = math.exp((Q[s, a] - mx) * stiff / scale)
                    base = _categorical(probs, na)
            elif src == 3:
                base = orc[oi, b, s]
            else:
                base = np.random.randint(0, na)
            # schedules: sch = r0, r_rate, r_floor, o0, o_rate, o_cap
            p_r = min(max(max(sch[0] - sch[1] * since, sch[2]), 0.0), 1.0)
            p_o = max(min(sch[3] + sch[4] * since, sch[5]), 0.0)
            p_o = min(p_o, 1.0 - p_r)
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
            boot = 0.0
            if not term:
                boot = Q[s2, 0]
                for a in range(1, na):
                    boot = max(boot, Q[s2, a])
            target = r + q_gamma * boot
            n_sa[s, action] += 1
            n_s[s] += 1
            total += 1
            lterm[s] = False
            ratio = (H + 1.0) / (H + n_sa[s, action])
            lr = ratio if q_ucb else q_alpha * math.sqrt(max(ratio, 1e-3))
            Q[s, action] += lr * (target - Q[s, action])
            counts[s, action, s2] += 1.0
            cnt = counts[s, action, s2]
            delta = r - r_mean[s, action, s2]
            r_mean[s, action, s2] += delta / cnt
            r_m2[s, action, s2] += delta * (r - r_mean[s, action, s2])
            n_into[s2] += 1
            if term:
                n_term_into[s2] += 1
                if n_s[s2] == 0 and not lterm[s2]:
                    lterm[s2] = True
                    for a in range(na):
                        Q[s2, a] = 0.0
                        Qm[s2, a] = 0.0
            # record
            p = pos
            out_obs[b, p] = mapping[b, s]
            out_tag[b, p] = tag
            out_act[b, p] = action
            out_rew[b, p] = r
            out_lab[b, p] = action if self_label else label_pol[b, s]
            out_beh[b, p] = beh
            pos += 1
            since += 1.0
            if term or trunc:
                _mb_plan(counts, r_mean, n_sa, lterm, n_into, n_term_into, Qm, bonus, ns, na, mb_gamma, mb_c, prior)
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
                    since = 0.0
                    _draw_schedule(b_noise[beh], b_src[beh], ns, na, fp, sch, lp)
                    if b_src[beh] == 0:
                        e2 = _draw_drift(table, ns, na, dp[0], dp[1])
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
    weights = behaviour_weights(cfg)
    support = np.flatnonzero(weights > 0)
    orc = np.zeros((len(BEHAVIOUR_GAMMAS), B, ns), dtype=np.int64)
    for i in sorted(set(_ORC[support][(_SRC[support] == 3) | (_NOISE[support] == 2)].tolist())):
        g = BEHAVIOUR_GAMMAS[i]
        orc[i] = label_pol if g == cfg.label_gamma else np.asarray(oracle_policy(arrays, g)).reshape(B, ns)
    cum = _scan_table(weights)
    fp = np.array([m.learner_noise_prob, *m.learner_noise_range, m.learner_noise_decay, *m.mb_oracle_random_start,
                   *m.mb_oracle_random_floor, *m.mb_oracle_oracle_start, *m.mb_oracle_oracle_cap, m.mb_oracle_rate,
                   m.noisy_oracle_decay], dtype=np.float64)
    seeds = seq.generate_state(B, np.uint32).astype(np.int64)
    out = {
        "obs": np.zeros((B, T), _dtype_obs(cfg)),
        "tag": np.zeros((B, T), np.uint8),
        "action": np.zeros((B, T), np.uint8),
        "reward": np.zeros((B, T), np.float32),
        "label": np.zeros((B, T), np.uint8),
        "behaviour": np.zeros((B, T), np.uint8),
        "learner_params": np.zeros((B, len(LEARNER_PARAMS))),
    }
    hp = np.array([m.learner_c_base, m.learner_alpha_base, *m.learner_gamma_range, m.learner_noisy_gamma])
    run_sequences(
        seeds, _cumulative(arrays.transition), np.stack([t.reward for t in tasks]),
        np.stack([t.reward_noise for t in tasks]), _cumulative(np.stack([t.start_prob for t in tasks])),
        np.stack([t.terminal for t in tasks]), np.array([t.max_steps for t in tasks]),
        np.stack([t.state_mapping for t in tasks]).astype(np.int64), label_pol.astype(np.int64), orc, cum,
        _SRC.astype(np.int64), _TAG.astype(np.int64), _ORC.astype(np.int64), _NOISE.astype(np.int64), fp, T,
        ns == 1, cfg.preset in ("ad", "ad_eps"), cfg.preset == "no_tags", m.q_rule == "ucb",
        np.array([4000.0, 1.0]), np.array([0.01]), hp,
        np.array([m.drift_logit_scale, m.drift_scale, m.switch_fraction, m.switch_prob, m.seq_mask_prob,
                  m.episode_mask_prob]),
        out["obs"], out["tag"], out["action"], out["reward"], out["label"], out["behaviour"], out["learner_params"],
    )
    return out
