"""The numpy engine: a batch of sequences advanced together as arrays with the batched environment and learners of
:mod:`omnirl_core.world`. :func:`synthesize_batch` also dispatches to the compiled engine.
"""

from __future__ import annotations

import numpy as np

from ..world.envs import BatchedAnyMDPEnv
from ..world.learners import ModelBasedLearner, QLearner
from ..world.oracle import oracle_policy, stack_tasks
from ..world.task import Task
from .behaviours import ActContext, _scan_table, behaviour_table, behaviour_weights, named_stream
from .config import DatasetConfig
from .drifting import DriftingTables
from .engine_numba import _synthesize_batch_numba
from .format import _LP_H, _LP_MB, _LP_Q, BOUNDARY, LABEL_MASKED, TAG_RANDOM, TAG_UNKNOWN, _dtype_obs
from .registry import PLUGIN_SOURCE
from .schedules import Schedules, draw_learner_params, draw_schedules, oracle_actions

_ORACLE_TAGS = np.arange(4, dtype=np.uint8)  # oracle i acts -> tag i
_said_numpy: set[str] = set()


def synthesize_batch(tasks: list[Task], cfg: DatasetConfig, seq: np.random.SeedSequence) -> dict[str, np.ndarray]:
    """Simulate ``len(tasks)`` sequences of ``cfg.seq_len`` steps together.

    Returns the per-step arrays [B, T] (:data:`STEP_FIELDS`) and ``learner_params`` [B, len(LEARNER_PARAMS)].
    """
    table = behaviour_table()
    weights = behaviour_weights(cfg)
    support = np.flatnonzero(weights > 0)
    plugins = [table.names[j] for j in support if table.src[j] == PLUGIN_SOURCE]
    if cfg.engine == "numba":
        if not plugins:
            return _synthesize_batch_numba(tasks, cfg, seq)
        if tuple(plugins) not in _said_numpy:
            _said_numpy.add(tuple(plugins))
            print(f"[omnirl synthesis] behaviour {', '.join(plugins)} has no compiled path: these sequences run on "
                  "the numpy engine (engine: numba asked for)", flush=True)
    B, T, m = len(tasks), cfg.seq_len, cfg.mixture
    env_ss, beh_ss = seq.spawn(2)
    rng = np.random.default_rng(beh_ss)
    env = BatchedAnyMDPEnv(tasks)
    env.reset(seed=int(env_ss.generate_state(1, np.uint32)[0]))
    ns, na = env.ns, env.na
    arrays = stack_tasks(tasks)
    label_pol = np.asarray(oracle_policy(arrays, cfg.label_gamma)).reshape(B, ns)
    src_of, noise_of, orc_of, tag_of = table.src, table.noise, table.orc, table.tag
    used_src = set(src_of[support].tolist())
    orc = oracle_actions(table, weights, arrays, label_pol, cfg.label_gamma)
    lp = draw_learner_params(cfg, ns, B, seq)  # every sequence, used or not
    sch = Schedules(draw_schedules(table, weights, lp, cfg, ns, seq))
    plugin_rng = {int(j): named_stream(seq, table.names[j]) for j in support if src_of[j] == PLUGIN_SOURCE}
    for gen in plugin_rng.values():  # past the 8 uniforms per sequence of its schedule draws
        gen.random((B, 8))
    q = mb = mbo = drift = None
    if 2 in used_src:
        q = QLearner(rule=m.q_rule, gamma=lp[:, _LP_Q + 1], alpha=lp[:, _LP_Q + 2], H=lp[:, _LP_H])
        q.reset((B, ns, na))
    # one solver per behaviour: the mixtures' model-based learner has its own gamma and c
    if ((src_of[support] == 1) & (noise_of[support] != 2)).any():
        mb = ModelBasedLearner(gamma=lp[:, _LP_MB + 1], c=lp[:, _LP_MB + 2])
        mb.reset((B, ns, na))
    if (noise_of[support] == 2).any():
        mbo = ModelBasedLearner(gamma=m.mb_oracle_gamma, c=m.mb_oracle_c)
        mbo.reset((B, ns, na))
    if 0 in used_src:
        drift = DriftingTables(B, ns, na, m.drift_logit_scale, m.drift_scale, n_steps=T + 2)
    learners = [x for x in (q, mb, mbo) if x is not None]

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
        drift.draw(rows, rng)
    clock = np.zeros(B)  # environment steps since the sequence start
    prev_action = np.full(B, -1, dtype=np.int64)
    switching = rng.random(B) < m.switch_fraction
    seq_masked = rng.random(B) < m.seq_mask_prob
    ep_masked = rng.random(B) < m.episode_mask_prob
    no_tags = cfg.tagless
    self_label = cfg.preset in ("ad", "ad_eps")
    pos = np.zeros(B, dtype=np.int64)
    while pos.min() < T:
        s = env.states.copy()
        src = src_of[beh]
        present = np.bincount(src, minlength=PLUGIN_SOURCE + 1) > 0
        base = np.zeros(B, dtype=np.int64)
        if present[0]:
            idx = np.flatnonzero(src == 0)
            base[idx] = drift.act(idx, s[idx], rng, clock[idx])
        if present[1]:
            mixed = noise_of[beh] == 2
            if mb is not None and (~mixed & (src == 1)).any():
                base = np.where((src == 1) & ~mixed, mb.act(s, rng), base)
            if mbo is not None and mixed.any():
                base = np.where(mixed, mbo.act(s, rng), base)
        if present[2]:
            a = q.act(s, rng)
            base = np.where(src == 2, a, base)
        oi = orc_of[beh]
        a_orc = orc[oi, rows, s]
        if present[3]:
            base = np.where(src == 3, a_orc, base)
        u = rng.random(B)
        rand_a = rng.integers(0, na, size=B)
        if present[4]:
            base = np.where(src == 4, rand_a, base)
        if present[PLUGIN_SOURCE]:
            for j, gen in plugin_rng.items():
                idx = np.flatnonzero(beh == j)
                if idx.size:
                    base[idx] = _plugin_actions(table.entries[j], ActContext(
                        idx, s[idx], clock[idx], prev_action[idx], label_pol[idx, s[idx]], na, ns, B, gen))
        p_r, p_o = sch.probs(beh, clock)
        is_rand = u < p_r
        is_orc = ~is_rand & (u < p_r + p_o)
        action = np.where(is_rand, rand_a, np.where(is_orc, a_orc, base))
        tag = np.where(is_rand, TAG_RANDOM, np.where(is_orc, _ORACLE_TAGS[oi], tag_of[beh])).astype(np.uint8)
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
        prev_action = action.astype(np.int64)
        clock += 1
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
            ep_masked[d] = rng.random(d.size) < m.episode_mask_prob
        pos += 1 + done
    res = {k: np.ascontiguousarray(v[:, :T]) for k, v in out.items()}
    res["learner_params"] = lp
    return res


def _plugin_actions(b, ctx: ActContext) -> np.ndarray:
    """A plug-in's actions, checked: one int per sequence it acts in, each in 0 .. na - 1."""
    a = np.asarray(b.act(ctx))
    if a.shape != ctx.states.shape or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"behaviour {b.name!r}: act returned {a.dtype} {a.shape}, expected integer actions of shape "
                         f"{ctx.states.shape}")
    if a.size and (a.min() < 0 or a.max() >= ctx.na):
        raise ValueError(f"behaviour {b.name!r}: act returned actions outside 0 .. {ctx.na - 1} "
                         f"(min {a.min()}, max {a.max()})")
    return a
