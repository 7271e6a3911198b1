"""Data synthesis by decoupled policy distillation (paper section 2, Algorithm 2): sharded, resumable, vectorised.

A dataset is ``n_sequences`` sequences of exactly ``seq_len`` (T) steps, each sequence on one task. Per step we
store the observation ``obs`` (the task's ``state_mapping`` of the inner state), the tag ``tag`` (0-7, see
:data:`TAG_NAMES`), the executed action ``action`` (``na`` on a boundary step), the reward ``reward`` and the
label ``label`` (the action of the oracle at gamma 0.994 on the true task; :data:`LABEL_MASKED` = 255 where the
label is masked out of the loss), plus ``behaviour``, the id of the behaviour that acted (:data:`BEHAVIOURS`,
255 on boundary steps) for analysis. Per sequence: ``learner_params`` (float64 [n, len(LEARNER_PARAMS)], the
hyperparameters drawn for the sequence's learners, columns :data:`LEARNER_PARAMS`, also named in the manifest
and in each shard.json), ``ns``, ``na``, ``task_seed`` and ``task_index``: the
AnyMDP tasks of a shard are drawn together by ``sample_anymdp_batch(n, ns, na, seed=task_seed)`` (the sequence's
task is entry ``task_index``); Garnet tasks and members of a task pool by ``sample_garnet`` /
``sample_anymdp`` with their own ``task_seed``. :func:`shard_tasks` rebuilds the tasks of a shard.

Boundary step: after every terminated or truncated step one extra step is stored with the observation of the
state the episode ended in, action ``na``, reward 0, tag 7 and a masked label. Boundary steps count toward T;
the last episode is cut at T.

Behaviour mixture (preset ``dpd``; weights and schedules in :class:`~omnirl_core.config.MixtureConfig`): per
sequence a behaviour is drawn from the weights; in ``switch_fraction`` of the sequences it is re-drawn with
probability ``switch_prob`` at each episode end. Each sequence has its own Q-learner and model-based learner,
and both learn from every executed transition whoever acted. Random-action probabilities follow linear
schedules in the number of steps since the behaviour was drawn (a re-drawn behaviour starts its schedule
again). Tags: the acting component's tag (oracle i -> i, model-based 4, Q 5, any random action 6); all
tags of a sequence become 7 with probability ``seq_mask_prob``, those of an episode with ``episode_mask_prob``.

Learner hyperparameters (paper section 2, after the reference's behaviour solvers): each learner of a sequence
(its Q-learner and its model-based learner, independently) is drawn once, at the start of the sequence, in one
of two branches. With probability ``1 - learner_noise_prob`` the noise-free branch: gamma ~
U(``learner_gamma_range``), c = ``learner_c_base`` (model-based) or alpha = ``learner_alpha_base`` (Q), no
noise. Otherwise the noisy branch: gamma = ``learner_noisy_gamma``, c = ``learner_c_base`` * Exp(1) or alpha =
``learner_alpha_base`` * Exp(1) (Exp(1) draws floored at 1e-12 so that alpha stays positive), and a random-action
probability starting at U(``learner_noise_range``) and decaying per step by U(0, ``learner_noise_decay`` /
(ns * na)) (tag 6 where the noise acts, the learner's tag otherwise). The model-based bonus keeps its form
c / (1 - gamma) * max(std, 0.01) / sqrt(N + 1). The reference builds a fresh solver, with fresh draws, each time
a learner behaviour is chosen; here one Q-learner and one model-based learner per sequence learn from every
transition and are kept across behaviour switches, so their hyperparameters and noise branch belong to the
learner and are drawn once per sequence. A noisy learner's noise applies whenever its own behaviour
(``model_based`` or ``q_learning``) acts, on the schedule clock of that behaviour (steps since it was drawn);
the model-based learner inside the ``mb_oracle_*`` mixtures uses that mixture's schedules instead, and
``q_learning_pure`` (preset ``ad``) acts without noise. The Q-learner's alpha is its step-size scale
under the softmax rule (the UCB rule has its own step size and bonus scale 1).

Simplifications (documented, deliberate): the drifting softmax policy drifts on every step where any sequence
of its batch uses it; the D_Large ns range is drawn per shard (all sequences of a shard share ns so that they
advance as one batch), which gives the same ns distribution over the dataset.

Presets: ``dpd`` (the mixture above), ``no_tags`` (dpd with every tag 7), ``ad`` (Q-learner behaviour without
noise, labels = its own actions), ``ad_eps`` (noisy oracle gamma 0.994 behaviour, labels = its actions),
``dpt`` (oracle gamma 0.994, Q-learner and uniform random behaviours with equal weights, oracle labels).

Engines (``DatasetConfig.engine``): ``numba`` (default) runs each sequence step by step in compiled code
(``omnirl_core.synth_kernel``); ``numpy`` advances a batch of sequences together as arrays with the batched
env and learners of ``omnirl_core.envs`` / ``omnirl_core.learners``. Both implement the same process; their
random streams differ, so the engine is part of a dataset's identity.

Determinism: shard k is a pure function of (dataset config, seed, k); its RNG is
``SeedSequence([seed, k])``. Shards are written to a temporary folder and renamed into place, then the
manifest is rewritten atomically, so worker count and interruptions do not change a single byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import DatasetConfig, SynthesisConfig, config_to_dict, load_config, repo_path
from .envs import BatchedAnyMDPEnv
from .learners import ModelBasedLearner, QLearner
from .oracle import BEHAVIOUR_GAMMAS, oracle_policy, stack_tasks
from .tasks import Task, sample_anymdp, sample_anymdp_batch, sample_garnet

__all__ = [
    "BEHAVIOURS",
    "BOUNDARY",
    "LABEL_MASKED",
    "LEARNER_PARAMS",
    "SCHEMA_VERSION",
    "STEP_FIELDS",
    "TAG_NAMES",
    "TAG_UNKNOWN",
    "SynthesisError",
    "behaviour_weights",
    "dataset_tasks",
    "load_dataset_arrays",
    "main",
    "reward_curves",
    "shard_plan",
    "shard_tasks",
    "synthesize",
    "synthesize_batch",
    "synthesize_shard",
    "tag_statistics",
    "task_for",
    "verify_shard_dir",
]

SCHEMA_VERSION = 2  # 2: per-sequence learner hyperparameters (learner_params)
FORMAT = "omnirl-dpd-dataset"
LABEL_MASKED = 255
BOUNDARY = 255  # behaviour id of boundary steps
TAG_UNKNOWN = 7
TAG_RANDOM = 6
TAG_MODEL_BASED = 4
TAG_Q = 5
TAG_NAMES = (
    "oracle g=0",
    "oracle g=0.5",
    "oracle g=0.93",
    "oracle g=0.994",
    "model-based",
    "Q-learning",
    "random",
    "unknown",
)
STEP_FIELDS = ("obs", "tag", "action", "reward", "label", "behaviour")
SEQ_FIELDS = ("learner_params", "ns", "na", "task_seed", "task_index")
LEARNER_PARAMS = (
    "q_noisy",
    "q_gamma",
    "q_alpha",
    "q_noise_start",
    "q_noise_decay",
    "mb_noisy",
    "mb_gamma",
    "mb_c",
    "mb_noise_start",
    "mb_noise_decay",
)
"""Columns of the per-sequence ``learner_params`` array: for the Q-learner (``q_*``) and the model-based learner
(``mb_*``): 1.0 in the noisy branch (else 0.0), discount, alpha (Q) or bonus scale c (model-based), initial
random-action probability and its decay per step (both 0 in the noise-free branch)."""
_LP_Q, _LP_MB = 0, 5  # first column of each learner

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


class SynthesisError(RuntimeError):
    """A dataset folder that cannot be (re)used: other config, corrupt manifest, ..."""


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


def _data_identity(cfg: DatasetConfig) -> dict:
    return config_to_dict(cfg)


def shard_plan(cfg: DatasetConfig) -> list[int]:
    """Number of sequences of each shard."""
    n, per = cfg.n_sequences, cfg.sequences_per_shard
    return [min(per, n - k * per) for k in range((n + per - 1) // per)]


def _derive_int(*key: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, np.uint32)[0])


_POOL_KEY = 0x9E3779B1  # separates pool task seeds from shard seeds


def dataset_tasks(cfg: DatasetConfig, k: int) -> tuple[int, np.ndarray, np.ndarray, np.random.SeedSequence]:
    """(ns, task seeds [n], task indices [n], SeedSequence for the simulation) of shard ``k``.

    AnyMDP tasks of a shard are drawn together by ``sample_anymdp_batch(n, ns, na, seed)`` (every sequence
    stores that seed and its index in the draw); Garnet tasks and pool members have a seed each (index 0 and
    the pool index).
    """
    n = shard_plan(cfg)[k]
    root = np.random.SeedSequence([cfg.seed, k])
    task_ss, sim_ss = root.spawn(2)
    trng = np.random.default_rng(task_ss)
    ns = cfg.ns if cfg.ns_max is None else int(trng.integers(cfg.ns, cfg.ns_max + 1))
    if cfg.task_pool is not None:
        idx = trng.integers(0, cfg.task_pool, size=n).astype(np.uint32)
        seeds = np.array([_derive_int(cfg.seed, _POOL_KEY, int(i)) for i in idx], dtype=np.uint64)
    elif cfg.task_source == "garnet":
        seeds = trng.integers(0, 2**32, size=n, dtype=np.uint64)
        idx = np.zeros(n, dtype=np.uint32)
    else:
        seeds = np.full(n, trng.integers(0, 2**32, dtype=np.uint64), dtype=np.uint64)
        idx = np.arange(n, dtype=np.uint32)
    return ns, seeds, idx, sim_ss


def task_for(cfg: DatasetConfig, ns: int, task_seed: int) -> Task:
    """A task drawn on its own from ``task_seed`` (Garnet tasks and pool members)."""
    if cfg.task_source == "garnet":
        return sample_garnet(ns, cfg.na, cfg.garnet_branching, seed=int(task_seed))
    return sample_anymdp(ns, cfg.na, seed=int(task_seed))


def shard_tasks(cfg: DatasetConfig, k: int) -> list[Task]:
    """The tasks of the sequences of shard ``k``, in order (rebuilt from the config, seed and k)."""
    ns, seeds, _, _ = dataset_tasks(cfg, k)
    if cfg.task_pool is None and cfg.task_source == "anymdp":
        return sample_anymdp_batch(seeds.size, ns, cfg.na, seed=int(seeds[0])) if seeds.size else []
    cache: dict[int, Task] = {}
    for s in dict.fromkeys(seeds.tolist()):
        cache[s] = task_for(cfg, ns, s)
    return [cache[s] for s in seeds.tolist()]


# ---------------------------------------------------------------------------------------------- the batch loop
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

    Same process as :class:`omnirl_core.learners.DriftingSoftmaxPolicy` (logits N(0, e1^2), e1 ~ Exp(mean
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


def _dtype_obs(cfg: DatasetConfig) -> np.dtype:
    top = cfg.ns_max if cfg.ns_max is not None else cfg.ns
    return np.dtype(np.uint8) if top <= 256 else np.dtype(np.uint16)


def synthesize_batch(tasks: list[Task], cfg: DatasetConfig, seq: np.random.SeedSequence) -> dict[str, np.ndarray]:
    """Simulate ``len(tasks)`` sequences of ``cfg.seq_len`` steps together.

    Returns the per-step arrays [B, T] (:data:`STEP_FIELDS`) and ``learner_params`` [B, len(LEARNER_PARAMS)].
    """
    if cfg.engine == "numba":
        return _synthesize_batch_numba(tasks, cfg, seq)
    B, T, m = len(tasks), cfg.seq_len, cfg.mixture
    env_ss, beh_ss = seq.spawn(2)
    rng = np.random.default_rng(beh_ss)
    env = BatchedAnyMDPEnv(tasks)
    env.reset(seed=int(env_ss.generate_state(1, np.uint32)[0]))
    ns, na = env.ns, env.na
    arrays = stack_tasks(tasks)
    label_pol = np.asarray(oracle_policy(arrays, cfg.label_gamma)).reshape(B, ns)
    weights = behaviour_weights(cfg)
    support = np.flatnonzero(weights > 0)
    used_src = set(_SRC[support].tolist())
    orc_needed = sorted(set(_ORC[support][(_SRC[support] == 3) | (_NOISE[support] == 2)].tolist()))
    orc = np.zeros((len(BEHAVIOUR_GAMMAS), B, ns), dtype=np.int64)
    for i in orc_needed:
        g = BEHAVIOUR_GAMMAS[i]
        orc[i] = label_pol if g == cfg.label_gamma else np.asarray(oracle_policy(arrays, g)).reshape(B, ns)
    lp = _draw_learner_params(rng.random((B, 2, 5)), cfg, ns)  # drawn for every sequence, used or not
    q = mb = drift = None
    if 2 in used_src:
        q = QLearner(rule=m.q_rule, gamma=lp[:, _LP_Q + 1], alpha=lp[:, _LP_Q + 2])
        q.reset((B, ns, na))
    if 1 in used_src:
        mb = ModelBasedLearner(gamma=lp[:, _LP_MB + 1], c=lp[:, _LP_MB + 2])
        mb.reset((B, ns, na))
    if 0 in used_src:
        drift = _DriftingTables(B, ns, na, m.drift_logit_scale, m.drift_scale)
    learners = [x for x in (q, mb) if x is not None]

    rows = np.arange(B)
    mapping = env.state_mapping
    W = T + 2
    obs_dt = _dtype_obs(cfg)
    out = {
        "obs": np.zeros((B, W), obs_dt),
        "tag": np.zeros((B, W), np.uint8),
        "action": np.zeros((B, W), np.uint8),
        "reward": np.zeros((B, W), np.float32),
        "label": np.zeros((B, W), np.uint8),
        "behaviour": np.zeros((B, W), np.uint8),
    }
    cum = _scan_table(weights)

    def draw_beh(n: int) -> np.ndarray:
        return np.argmax(rng.random(n)[:, None] < cum[None, :], axis=1)

    beh = draw_beh(B)
    if drift is not None:
        drift.draw(np.flatnonzero(_SRC[beh] == 0), rng)
    since = np.zeros(B)
    sch = _Schedules(*(np.zeros(B) for _ in range(6)))
    _draw_schedules(beh, rows, sch, cfg, ns, rng, lp)
    switching = rng.random(B) < m.switch_fraction
    seq_masked = rng.random(B) < m.seq_mask_prob
    ep_masked = rng.random(B) < m.episode_mask_prob
    no_tags = cfg.preset == "no_tags"
    self_label = cfg.preset in ("ad", "ad_eps")
    pos = np.zeros(B, dtype=np.int64)
    while pos.min() < T:
        s = env.states.copy()
        present = np.bincount(_SRC[beh], minlength=len(_SOURCES)) > 0
        base = np.zeros(B, dtype=np.int64)
        src = _SRC[beh]
        if present[0]:
            idx = np.flatnonzero(src == 0)
            base[idx] = drift.act(idx, s[idx], rng)
        if present[1]:
            a = mb.act(s, rng)
            base = np.where(src == 1, a, base)
        if present[2]:
            a = q.act(s, rng)
            base = np.where(src == 2, a, base)
        oi = _ORC[beh]
        a_orc = orc[oi, rows, s]
        if present[3]:
            base = np.where(src == 3, a_orc, base)
        u = rng.random(B)
        rand_a = rng.integers(0, na, size=B)
        if present[4]:
            base = np.where(src == 4, rand_a, base)
        p_r, p_o = sch.probs(since)
        is_rand = u < p_r
        is_orc = ~is_rand & (u < p_r + p_o)
        action = np.where(is_rand, rand_a, np.where(is_orc, a_orc, base))
        tag = np.where(is_rand, TAG_RANDOM, np.where(is_orc, _ORACLE_TAGS[oi], _TAG[beh])).astype(np.uint8)
        tag[seq_masked | ep_masked] = TAG_UNKNOWN
        if no_tags:
            tag[:] = TAG_UNKNOWN
        _, reward, term, trunc, infos = env.step(action)
        nxt = infos["next_state"]
        for x in learners:
            x.observe(s, action, reward, nxt, term, trunc)
        done = term | trunc
        p = np.minimum(pos, T + 1)
        out["obs"][rows, p] = mapping[rows, s]
        out["tag"][rows, p] = tag
        out["action"][rows, p] = action
        out["reward"][rows, p] = reward
        out["label"][rows, p] = action if self_label else label_pol[rows, s]
        out["behaviour"][rows, p] = beh
        since += 1
        if done.any():
            d = np.flatnonzero(done)
            for x in learners:
                x.end_episode(done)
            p2 = np.minimum(pos[d] + 1, T + 1)
            out["obs"][d, p2] = mapping[d, nxt[d]]
            out["tag"][d, p2] = TAG_UNKNOWN
            out["action"][d, p2] = na
            out["reward"][d, p2] = 0.0
            out["label"][d, p2] = LABEL_MASKED
            out["behaviour"][d, p2] = BOUNDARY
            redraw = d[switching[d] & (rng.random(d.size) < m.switch_prob)]
            if redraw.size:
                beh[redraw] = draw_beh(redraw.size)
                since[redraw] = 0
                _draw_schedules(beh, redraw, sch, cfg, ns, rng, lp)
                if drift is not None:
                    drift.draw(redraw[_SRC[beh[redraw]] == 0], rng)
            ep_masked[d] = rng.random(d.size) < m.episode_mask_prob
        pos += 1 + done
    res = {k: np.ascontiguousarray(v[:, :T]) for k, v in out.items()}
    res["learner_params"] = lp
    return res


def _synthesize_batch_numba(tasks: list[Task], cfg: DatasetConfig, seq: np.random.SeedSequence) -> dict:
    """The compiled engine (``omnirl_core.synth_kernel``): same process, one sequence per loop."""
    from .envs import _cumulative
    from .synth_kernel import run_sequences

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


def synthesize_shard(cfg: DatasetConfig, k: int) -> dict[str, np.ndarray]:
    """All arrays of shard ``k`` (a pure function of the config, its seed and k)."""
    ns, seeds, idx, sim_ss = dataset_tasks(cfg, k)
    n = seeds.size
    tasks = shard_tasks(cfg, k)
    parts = []
    batch_ss = sim_ss.spawn((n + cfg.batch_size - 1) // cfg.batch_size)
    for j, start in enumerate(range(0, n, cfg.batch_size)):
        parts.append(synthesize_batch(tasks[start:start + cfg.batch_size], cfg, batch_ss[j]))
    data = {f: np.concatenate([p[f] for p in parts]) for f in (*STEP_FIELDS, "learner_params")}
    data["ns"] = np.full(n, ns, dtype=np.uint16)
    data["na"] = np.full(n, cfg.na, dtype=np.uint8)
    data["task_seed"] = seeds.astype(np.uint64)
    data["task_index"] = idx.astype(np.uint32)
    return data


# ---------------------------------------------------------------------------------------------- disk format
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_name(k: int) -> str:
    return f"shard_{k:06d}"


def _write_json_atomic(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".tmp_{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_shard(root: Path, k: int, data: dict[str, np.ndarray]) -> dict:
    """Write shard k atomically (temp folder, then rename); returns its record for the manifest."""
    final = root / shard_name(k)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp_{shard_name(k)}_", dir=root))
    try:
        files = {}
        for name, arr in data.items():
            path = tmp / f"{name}.npy"
            with open(path, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            files[name] = {"sha256": _sha256(path), "dtype": arr.dtype.str, "shape": list(arr.shape),
                           "bytes": path.stat().st_size}
        record = {"index": k, "dir": final.name, "n_sequences": int(data["obs"].shape[0]),
                  "ns": int(data["ns"][0]) if data["ns"].size else 0, "files": files,
                  "learner_params": list(LEARNER_PARAMS)}
        _write_json_atomic(tmp / "shard.json", record)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if verify_shard_dir(final) is None:  # someone else completed the same (deterministic) shard
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
        return record
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def verify_shard_dir(path: Path, record: dict | None = None) -> str | None:
    """None when the shard folder is complete and every file matches its checksum, else what is wrong."""
    path = Path(path)
    meta = path / "shard.json"
    if not meta.is_file():
        return f"{meta} is missing"
    try:
        own = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        return f"{meta} is unreadable: {exc}"
    if record is not None and own != record:
        return f"{meta} disagrees with the manifest"
    for name, info in own.get("files", {}).items():
        f = path / f"{name}.npy"
        if not f.is_file():
            return f"{f} is missing"
        size = f.stat().st_size
        if size != info["bytes"]:
            return f"{f} is truncated or grown: {size} bytes, expected {info['bytes']}"
        if _sha256(f) != info["sha256"]:
            return f"{f} fails its checksum (sha256 mismatch)"
    return None


def _manifest(cfg: DatasetConfig, records: dict[int, dict]) -> dict:
    plan = shard_plan(cfg)
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "seed": cfg.seed,
        "config": _data_identity(cfg),
        "n_shards": len(plan),
        "n_sequences": cfg.n_sequences,
        "seq_len": cfg.seq_len,
        "label_masked": LABEL_MASKED,
        "tag_names": list(TAG_NAMES),
        "behaviours": list(BEHAVIOURS),
        "learner_params": list(LEARNER_PARAMS),
        "complete": len(records) == len(plan),
        "shards": [records[k] for k in sorted(records)],
    }


def _worker(args: tuple[dict, str, int]) -> tuple[int, dict, float]:
    from threadpoolctl import threadpool_limits

    cfg_dict, root, k = args
    cfg = load_config(DatasetConfig, cfg_dict)
    t0 = time.perf_counter()
    # One BLAS thread per worker: the oracle solves and task sampling are many small systems, and a
    # multi-threaded BLAS on shared cores slows them down by an order of magnitude.
    with threadpool_limits(limits=1, user_api="blas"):
        data = synthesize_shard(cfg, k)
    return k, _write_shard(Path(root), k, data), time.perf_counter() - t0


def synthesize(cfg: DatasetConfig, out_dir: str | os.PathLike, workers: int = 1, progress: bool = True,
               max_shards: int | None = None) -> dict:
    """Synthesise (or resume) the dataset ``cfg`` into ``out_dir``; returns the manifest.

    Completed shards found on disk are verified (sha256) and kept; a corrupt one is regenerated; leftover
    temporary files are removed. ``max_shards`` stops after that many new shards (for tests and demos).
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    identity = _data_identity(cfg)
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except ValueError as exc:
            raise SynthesisError(f"{manifest_path} is unreadable: {exc}") from None
        if old.get("format") != FORMAT or old.get("config") != identity:
            raise SynthesisError(f"{root} holds a dataset of another configuration; use another folder")
        if old.get("schema_version") != SCHEMA_VERSION:
            raise SynthesisError(f"{root} holds a dataset of schema version {old.get('schema_version')}, this code "
                                 f"writes {SCHEMA_VERSION}; use another folder")
    for leftover in root.glob(".tmp_*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    plan = shard_plan(cfg)
    records: dict[int, dict] = {}
    for k in range(len(plan)):
        d = root / shard_name(k)
        if d.exists():
            problem = verify_shard_dir(d)
            if problem is None:
                records[k] = json.loads((d / "shard.json").read_text())
            else:
                print(f"regenerating {d.name}: {problem}", file=sys.stderr)
                shutil.rmtree(d)
    todo = [k for k in range(len(plan)) if k not in records]
    if max_shards is not None:
        todo = todo[:max_shards]
    _write_json_atomic(manifest_path, _manifest(cfg, records))
    jobs = [(identity, str(root), k) for k in todo]
    bar = None
    if progress and jobs:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(plan[k] for k in todo) * cfg.seq_len, unit="step", unit_scale=True,
                   desc=f"synthesis {root.name}")
    try:
        if workers <= 1 or len(jobs) <= 1:
            results: Iterable = map(_worker, jobs)
            pool = None
        else:
            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            pool = ctx.Pool(min(workers, len(jobs)))
            results = pool.imap_unordered(_worker, jobs)
        for k, record, _ in results:
            records[k] = record
            _write_json_atomic(manifest_path, _manifest(cfg, records))
            if bar is not None:
                bar.update(plan[k] * cfg.seq_len)
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        if bar is not None:
            bar.close()
    return _manifest(cfg, records)


# ---------------------------------------------------------------------------------------------- analysis
def tag_statistics(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Fractions over all steps: each tag, boundary steps, masked labels, fully masked sequences."""
    tag, beh = data["tag"], data["behaviour"]
    real = beh != BOUNDARY
    out = {f"tag {i} ({TAG_NAMES[i]})": float((tag == i).mean()) for i in range(8)}
    out["boundary steps"] = float((~real).mean())
    out["masked labels"] = float((data["label"] == LABEL_MASKED).mean())
    out["tag 7 among non-boundary steps"] = float((tag[real] == TAG_UNKNOWN).mean())
    out["sequences with every tag 7"] = float(np.mean([(t[r] == TAG_UNKNOWN).all() for t, r in zip(tag, real)]))
    return out


def reward_curves(data: dict[str, np.ndarray], bins: int, by: str = "tag") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Mean reward per step in ``bins`` position bins along the sequence, per tag (or per behaviour).

    Returns (bin centres, {name: [bins] mean reward, NaN where the bin holds no such step}); tag 7 and
    boundary steps are left out.
    """
    T = data["reward"].shape[1]
    edges = np.linspace(0, T, bins + 1).astype(int)
    centres = (edges[:-1] + edges[1:]) / 2
    key = data["tag"] if by == "tag" else data["behaviour"]
    names = TAG_NAMES[:7] if by == "tag" else BEHAVIOURS
    keep = data["behaviour"] != BOUNDARY
    if by == "tag":
        keep &= data["tag"] != TAG_UNKNOWN
    out = {}
    for i, name in enumerate(names):
        m = keep & (key == i)
        if not m.any():
            continue
        vals = np.full(bins, np.nan)
        for j in range(bins):
            mj = m[:, edges[j] : edges[j + 1]]
            if mj.any():
                vals[j] = data["reward"][:, edges[j] : edges[j + 1]][mj].mean()
        out[name] = vals
    return centres, out


def load_dataset_arrays(root: str | os.PathLike, max_shards: int | None = None) -> dict[str, np.ndarray]:
    """All arrays of (the first ``max_shards`` shards of) a dataset folder, concatenated, checksums verified."""
    from .dataset import load_manifest, load_shard

    man = load_manifest(root)
    recs = man["shards"][:max_shards]
    parts = [load_shard(root, r, verify=True, mmap=False) for r in recs]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ---------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m omnirl_core.synthesis", description=__doc__.splitlines()[0])
    ap.add_argument("params", help="a 02_synthesis YAML (SynthesisConfig)")
    ap.add_argument("--out", required=True, help="output folder; each dataset goes to OUT/<name>")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: the config's)")
    ap.add_argument("--only", action="append", default=None, help="synthesise only this dataset (repeatable)")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. datasets.d_small.n_sequences=8")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    cfg = load_config(SynthesisConfig, args.params, overrides=args.set)
    workers = args.workers or cfg.workers
    for name, dcfg in cfg.datasets.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        man = synthesize(dcfg, repo_path(args.out) / name, workers=workers, progress=not args.no_progress)
        dt = time.perf_counter() - t0
        steps = dcfg.n_sequences * dcfg.seq_len
        print(f"{name}: {man['n_shards']} shards, {steps} steps, {dt:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
