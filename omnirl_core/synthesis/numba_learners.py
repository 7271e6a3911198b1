"""Compiled (numba) tabular learners of the compiled synthesis engine, one sequence's arrays at a time: the same
updates as :class:`omnirl_core.world.learners.QLearner` and :class:`~omnirl_core.world.learners.ModelBasedLearner`
(``tests/test_synthesis_process.py`` checks them against those on the same transitions), and their acting rules.

Randomness: ``np.random.*`` inside compiled code is numba's own generator, seeded per sequence by the engine.
"""

# ruff: noqa: NPY002  (numba's compiled np.random functions, seeded per sequence by the engine)

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["learn_terminal", "mb_observe", "mb_plan", "q_observe"]


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
def q_observe(Q, n_sa, n_s, lterm, s, a, r, s2, term, gamma, alpha, H, ucb):
    """One Q-learner update (``omnirl_core.world.learners.QLearner.observe``), with the visit counts (shared with
    the model-based learner). The learned-terminal bookkeeping is :func:`learn_terminal`'s."""
    boot = 0.0
    if not term:
        boot = Q[s2, 0]
        for b in range(1, Q.shape[1]):
            boot = max(boot, Q[s2, b])
    target = r + gamma * boot
    n_sa[s, a] += 1
    n_s[s] += 1
    lterm[s] = False
    ratio = (H + 1.0) / (H + n_sa[s, a])
    lr = ratio if ucb else alpha * math.sqrt(max(ratio, 1e-3))
    Q[s, a] += lr * (target - Q[s, a])


@njit(cache=True)
def mb_observe(counts, r_mean, r_m2, n_into, n_term_into, s, a, r, s2, term):
    """One model-based learner update of its counts and reward statistics
    (``omnirl_core.world.learners.ModelBasedLearner.observe``)."""
    counts[s, a, s2] += 1.0
    cnt = counts[s, a, s2]
    delta = r - r_mean[s, a, s2]
    r_mean[s, a, s2] += delta / cnt
    r_m2[s, a, s2] += delta * (r - r_mean[s, a, s2])
    n_into[s2] += 1
    if term:
        n_term_into[s2] += 1


@njit(cache=True)
def learn_terminal(n_s, lterm, s2, term, Q, Qm, Qm2):
    """A state entered with termination and never acted from becomes terminal: its rows of Q are set to 0."""
    if term and n_s[s2] == 0 and not lterm[s2]:
        lterm[s2] = True
        for a in range(Q.shape[1]):
            Q[s2, a] = 0.0
            Qm[s2, a] = 0.0
            Qm2[s2, a] = 0.0


@njit(cache=True)
def mb_plan(counts, r_mean, n_sa, terminal, n_into, n_term_into, Qm, bonus, ns, na, gamma, c, prior):
    """One warm-started value-iteration sweep of the model-based learner and its bonus refresh
    (``omnirl_core.world.learners.ModelBasedLearner.end_episode``)."""
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
def _act_q(Q, n_sa, n_s, s, na, total, H, q_c, ucb, probs):
    if ucb:  # UCB-greedy, ties broken uniformly at random (reservoir draw over the maximal actions)
        best = -1e300
        for a in range(na):
            v = np.inf if n_sa[s, a] == 0 else Q[s, a] + q_c * math.sqrt(math.log(total + 1.0) / n_sa[s, a])
            best = max(best, v)
        base = 0
        nbest = 0
        for a in range(na):
            v = np.inf if n_sa[s, a] == 0 else Q[s, a] + q_c * math.sqrt(math.log(total + 1.0) / n_sa[s, a])
            if v >= best:
                nbest += 1
                if np.random.random() * nbest < 1.0:
                    base = a
        return base
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
    return _categorical(probs, na)


@njit(cache=True)
def _act_mb(Qm, bonus, s, na):
    best = -1e300
    base = 0
    for a in range(na):
        v = Qm[s, a] + bonus[s, a] * np.random.random()
        if v > best:
            best = v
            base = a
    return base
