"""Data synthesis follows the reference's process, in both engines: schedules run from
the sequence start, one drifting table per sequence, the mixtures' own model-based learner, the oracle's share
after the random draw, the Q-learner's horizon, spread observation ids; the behaviour mixture against its weights
(chi-square, with a deliberately wrong mixture that the same checks reject); ``tags: false`` hides every tag and
changes nothing else, on every preset; the compiled engine's learner updates against ``omnirl_core.world.learners``
on the same transitions.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from omnirl_core.synthesis import (
    BEHAVIOURS,
    BOUNDARY,
    LEARNER_PARAMS,
    TAG_UNKNOWN,
    DatasetConfig,
    SynthesisError,
    load_manifest,
    shard_tasks,
    synthesize,
    synthesize_shard,
)
from omnirl_core.synthesis import numba_learners as nb
from omnirl_core.synthesis.behaviours import behaviour_weights
from omnirl_core.synthesis.drifting import DriftingTables
from omnirl_core.workbook import load_config
from omnirl_core.world import BatchedAnyMDPEnv, ModelBasedLearner, QLearner, RandomPolicy, run_policy, sample_anymdp

ENGINES = ["numba", "numpy"]
NO_MASKS = {"seq_mask_prob": 0.0, "episode_mask_prob": 0.0}
ZERO = {"w_drift_random": 0.0, "w_model_based": 0.0, "w_q_learning": 0.0, "w_mb_oracle": [0.0] * 4,
        "w_noisy_oracle": [0.0, 0.0], "w_oracle": [0.0, 0.0, 0.0]}


def _cfg(mixture: dict | None = None, **kw) -> DatasetConfig:
    base = {"seq_len": 600, "n_sequences": 64, "sequences_per_shard": 64, "batch_size": 64, "seed": 4, "ns": 8}
    base.update(kw)
    return load_config(DatasetConfig, {**base, "mixture": {**NO_MASKS, **(mixture or {})}})


def _env_clock(beh: np.ndarray) -> np.ndarray:
    """[B, T] environment steps before each step of its sequence (boundary steps do not count)."""
    real = beh != BOUNDARY
    return np.cumsum(real, axis=1) - real


# ---------------------------------------------------------------------------------------------- schedules
def _stint_clock(beh: np.ndarray) -> np.ndarray:
    """[B, T] environment steps since the behaviour last changed (what a schedule restarted at every switch
    would run on; a re-draw of the same behaviour is not seen)."""
    out = np.zeros(beh.shape)
    for b in range(beh.shape[0]):
        real = beh[b] != BOUNDARY
        ids = beh[b][real]
        k = np.arange(ids.size)
        starts = np.maximum.accumulate(np.where(np.r_[True, ids[1:] != ids[:-1]], k, 0))
        out[b][real] = k - starts
    return out


def _late_random_share_z(d: dict, ns: int, na: int, start: int, restart: bool = False) -> float:
    """z of the noisy oracle's random-action share at env clock >= ``start`` against the reference's schedule run
    from the sequence start: epsilon_k = max(1 - u k / (ns na), 0), u ~ U(0, 1) per sequence, whose mean over u
    is 1 - k / (2 ns na) below k = ns na and ns na / (2 k) above. One value per sequence (its share and its
    expectation over its own steps), so the standard error is the spread across sequences. ``restart``: the
    expectation of a schedule started again at every change of behaviour (the wrong process), same steps."""
    beh, tag, clock = d["behaviour"], d["tag"], _env_clock(d["behaviour"])
    k_of = _stint_clock(beh) if restart else clock
    noisy = beh == BEHAVIOURS.index("noisy_oracle_0.994")
    unit = ns * na
    diffs = []
    for b in range(beh.shape[0]):
        late = noisy[b] & (clock[b] >= start)
        if late.sum() < 20:
            continue
        k = k_of[b][late].astype(float)
        expected = np.where(k < unit, 1 - k / (2 * unit), unit / (2 * np.maximum(k, 1)))
        diffs.append((tag[b][late] == 6).mean() - expected.mean())
    diffs = np.array(diffs)
    assert diffs.size >= 20
    return float(diffs.mean() / (diffs.std(ddof=1) / np.sqrt(diffs.size)))


@pytest.mark.parametrize("engine", ENGINES)
def test_schedules_run_from_the_sequence_start_not_from_each_switch(engine):
    # a noisy oracle and the pure oracle, re-drawn at every episode end: a restarted epsilon stays near 1
    mix = {**ZERO, "w_noisy_oracle": [0.0, 1.0], "w_oracle": [0.0, 0.0, 1.0], "switch_fraction": 1.0,
           "switch_prob": 1.0}
    d = synthesize_shard(_cfg(mix, engine=engine, seq_len=1500), 0)
    z = {"from the start": _late_random_share_z(d, 8, 5, 400), "restarted": _late_random_share_z(d, 8, 5, 400, True)}
    assert abs(z["from the start"]) < 4.5, z
    assert z["restarted"] < -20, z  # the same check rejects schedules restarted at every switch


@pytest.mark.parametrize("engine", ENGINES)
def test_oracle_acts_after_the_random_draw(engine):
    # model-based learner mixed with oracle 3: random 0.5 throughout, oracle share 0.4 throughout
    mix = {**ZERO, "w_mb_oracle": [0.0, 0.0, 0.0, 1.0], "mb_oracle_random_start": [0.5, 0.5],
           "mb_oracle_random_floor": [0.5, 0.5], "mb_oracle_oracle_start": [0.4, 0.4],
           "mb_oracle_oracle_cap": [0.4, 0.4], "mb_oracle_rate": 0.0}
    expected = {6: 0.5, 3: 0.5 * 0.4, 4: 0.5 * 0.6}
    d = synthesize_shard(_cfg(mix, engine=engine, n_sequences=32, sequences_per_shard=32, batch_size=32), 0)
    tag = d["tag"][d["behaviour"] != BOUNDARY]
    for t, share in expected.items():
        se = np.sqrt(share * (1 - share) / tag.size)
        assert abs((tag == t).mean() - share) < 5 * se, (t, (tag == t).mean(), share)
    # the oracle taking min(p_oracle, 1 - p_random) = 0.4 of the steps is rejected by the same check
    assert abs((tag == 3).mean() - 0.4) > 50 * np.sqrt(0.24 / tag.size)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_mixtures_model_based_learner_has_its_own_gamma_and_c(engine):
    # reference: the mb_oracle mixture's learner uses mb_oracle_gamma / mb_oracle_c, not the drawn values
    mix = {**ZERO, "w_mb_oracle": [0.0, 0.0, 0.0, 1.0], "learner_noise_prob": 0.0}

    def steps(**extra):
        d = synthesize_shard(_cfg({**mix, **extra}, engine=engine, n_sequences=16, sequences_per_shard=16,
                                  batch_size=16, seq_len=800), 0)
        return np.concatenate([d[k].ravel().astype(float) for k in ("action", "tag", "reward")])

    ref = steps()
    assert np.array_equal(ref, steps(learner_c_base=5.0, learner_gamma_range=[0.5, 0.5]))
    assert not np.array_equal(ref, steps(mb_oracle_c=5.0))
    assert not np.array_equal(ref, steps(mb_oracle_gamma=0.5))
    # the drawn values do reach the model_based behaviour's own learner
    mine = {**ZERO, "w_model_based": 1.0, "learner_noise_prob": 0.0}
    d0, d1 = (synthesize_shard(_cfg({**mine, **extra}, engine=engine, n_sequences=16, sequences_per_shard=16,
                                    batch_size=16, seq_len=800), 0)
              for extra in ({}, {"learner_c_base": 5.0, "learner_gamma_range": [0.5, 0.5]}))
    assert not np.array_equal(d0["action"], d1["action"])


def _modal_share(d: dict, pool: int = 1) -> float:
    """Mean over (sequence, state) of the share of the drifting policy's steps that take its most common action;
    ``pool`` sequences taken as one (as if the table were drawn again for each of their parts)."""
    beh, obs, act = d["behaviour"], d["obs"], d["action"]
    drift = beh == BEHAVIOURS.index("drift_random")
    shares = []
    for b in range(0, beh.shape[0] - pool + 1, pool):
        rows = slice(b, b + pool)
        for s in np.unique(obs[rows][drift[rows]]):
            a = act[rows][drift[rows] & (obs[rows] == s)]
            if a.size >= 10:
                shares.append(np.bincount(a).max() / a.size)
    return float(np.mean(shares))


@pytest.mark.parametrize("engine", ENGINES)
def test_the_drifting_table_is_drawn_once_per_sequence(engine):
    # near-deterministic tables (logit scale 30), no drift, re-drawn behaviour at every episode end
    mix = {**ZERO, "w_drift_random": 1.0, "w_oracle": [0.0, 0.0, 1.0], "switch_fraction": 1.0, "switch_prob": 1.0,
           "drift_logit_scale": 30.0, "drift_scale": 0.0}
    d = synthesize_shard(_cfg(mix, engine=engine, seq_len=1500), 0)
    share = {"one sequence": _modal_share(d), "eight sequences pooled": _modal_share(d, pool=8)}
    # e1 ~ Exp(mean 30) is small in some sequences, so even one table is not always near-deterministic (measured:
    # 0.87-0.90 with one table per sequence; 0.61 with eight tables pooled, 0.47-0.49 with sixteen, as with a
    # table drawn again for every stint)
    assert share["one sequence"] > 0.8, share  # one table: each state keeps its action across every stint
    assert share["eight sequences pooled"] < 0.7, share  # several tables: the check tells them apart


def _direct_rows(p0: np.ndarray, m: np.ndarray, reads: list[tuple[int, int, int]]) -> np.ndarray:
    """The drifting table read directly: P0[b, s] M_b^k for each read (b, s, k)."""
    return np.array([p0[b, s] @ np.linalg.matrix_power(m[b], k) for b, s, k in reads])


def _reads(B: int, ns: int, n: int, seed: int) -> list[tuple[int, int, int]]:
    """n reads (sequence, state, env step) at steps rising by gaps 0-40, with a few long gaps (up to 3,000)."""
    rng = np.random.default_rng(seed)
    gaps = np.where(rng.random(n) < 0.05, rng.integers(500, 3000, n), rng.integers(0, 40, n))
    return list(zip(rng.integers(0, B, n).tolist(), rng.integers(0, ns, n).tolist(), np.cumsum(gaps).tolist()))


def _numba_drift_reads(p0, e2, reads, n_steps, seed):
    """The compiled engine's drifting table (``_draw_transfer`` / ``_drift_row``) read at ``reads``."""
    from omnirl_core.synthesis import engine_numba as en

    B, ns, na = p0.shape
    tables, rows_at = p0.copy(), np.zeros((B, ns), dtype=np.int64)
    powers = np.zeros((B, en._n_bits(n_steps), na, na))
    _seed_numba(seed)
    for b in range(B):
        en._draw_transfer(powers[b], na, e2[b])
    probs = np.zeros(na)
    out = []
    for b, s, k in reads:
        en._drift_row(tables[b], powers[b], rows_at[b], s, na, float(k), probs)
        out.append(probs.copy())
    return np.array(out), powers[:, 0]


def _seed_numba(seed):
    from numba import njit

    @njit
    def seed_it(x):
        np.random.seed(x)

    seed_it(seed)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_drifting_table_is_p0_times_powers_of_one_transfer_matrix(engine):
    B, ns, na, n = 6, 4, 5, 400
    reads = _reads(B, ns, n, seed=3)
    n_steps = reads[-1][2]
    if engine == "numpy":
        tables = DriftingTables(B, ns, na, logit_scale=2.0, drift_scale=0.003, n_steps=n_steps)
        tables.draw(np.arange(B), np.random.default_rng(7))
        p0, m = tables.probs.copy(), tables.powers[:, 0].copy()
        replay = np.random.default_rng(7)  # the draw's stream: e1, e2, logits, then the transfer noise
        replay.exponential(2.0, B)
        e2 = replay.exponential(0.003, B)
        replay.standard_normal((B, ns, na))
        raw = np.clip(np.eye(na) + e2[:, None, None] * replay.standard_normal((B, na, na)), 0.0, 1.0)
        np.testing.assert_allclose(m, raw / raw.sum(axis=-1, keepdims=True), rtol=1e-14)  # clip(I + e2 N, 0, 1)
        lazy = np.array([tables.rows(np.array([b]), np.array([s]), np.array([k]))[0] for b, s, k in reads])
    else:
        rng = np.random.default_rng(7)
        p0 = rng.dirichlet(np.ones(na), size=(B, ns))
        e2 = rng.exponential(0.003, B)
        lazy, m = _numba_drift_reads(p0, e2, reads, n_steps, seed=11)
        assert ((m >= 0) & (m <= 1)).all() and np.allclose(m.sum(axis=-1), 1.0)
        off = m[:, ~np.eye(na, dtype=bool)].reshape(B, -1)  # off-diagonal: max(e2 N, 0) / row sum
        assert 0.25 < (off == 0).mean() < 0.75 and np.allclose(off.max(axis=1) / e2, 2.0, atol=1.5)
    direct = _direct_rows(p0, m, reads)
    np.testing.assert_allclose(lazy, direct, rtol=0, atol=1e-10)  # rounding: 1e-12 after 1e5 steps
    # power: the check resolves one step of drift (over the first half of the reads, before the rows near M's
    # stationary distribution, a read one step late is typically 1e4 times the tolerance away; measured 9e-6),
    # and the table has drifted far from its start by the last reads (measured: mean TV 0.59)
    one_late = _direct_rows(p0, m, [(b, s, k + 1) for b, s, k in reads[: n // 2]])
    assert np.median(np.abs(one_late - direct[: n // 2]).max(axis=1)) > 1e-6
    start = np.array([p0[b, s] for b, s, _ in reads])
    assert 0.5 * np.abs(direct - start).sum(axis=1)[-50:].mean() > 0.1


# ---------------------------------------------------------------------------------------------- learners, ids
@pytest.mark.parametrize("engine", ENGINES)
def test_q_learner_horizon_is_the_sequence_length_or_uniform_in_the_noisy_branch(engine):
    T = 400
    lp = synthesize_shard(_cfg(engine=engine, seq_len=T, n_sequences=600, sequences_per_shard=600,
                               batch_size=300), 0)["learner_params"]
    H, noisy = lp[:, LEARNER_PARAMS.index("q_horizon")], lp[:, LEARNER_PARAMS.index("q_noisy")] == 1
    assert (H[~noisy] == T).all()
    assert stats.kstest(H[noisy], stats.uniform(100, T - 100).cdf).pvalue > 1e-3
    assert stats.kstest(H[noisy], stats.uniform(100, T).cdf).pvalue < 1e-6  # a wrong range is told apart


@pytest.mark.parametrize("engine", ENGINES)
def test_a_range_of_state_counts_spreads_observation_ids_over_the_largest(engine):
    cfg = _cfg(engine=engine, ns=8, ns_max=32, n_sequences=96, sequences_per_shard=16, batch_size=16, seq_len=300)
    seen = []
    for k in range(6):
        d = synthesize_shard(cfg, k)
        tasks = shard_tasks(cfg, k)
        for b, task in enumerate(tasks):
            ids = np.unique(d["obs"][b])
            assert set(ids) <= set(task.state_mapping.tolist()) and task.n_obs == 32
            assert len(set(task.state_mapping.tolist())) == task.ns
        seen.append(np.unique(d["obs"]))
        small = [t for t in tasks if t.ns < 16]
        if small:  # a small task's ids are not its first ids
            assert max(int(t.state_mapping.max()) for t in small) >= 16
    assert np.unique(np.concatenate(seen)).size > 28  # together they cover almost all of 0..31


# ---------------------------------------------------------------------------------------------- the mixture
def _mixture_pvalues(d: dict, w: np.ndarray, switch_prob: float) -> dict[str, float]:
    """p-values of the mixture's observable draws under weights ``w`` (every sequence switching):
    the first behaviour of each sequence (chi-square against w), the new behaviour at each change (chi-square
    against w_j / (1 - w_i) from the old behaviour i) and the number of changes (z against the sum over episode
    ends of switch_prob (1 - w_i); the draws are independent given the past, so the variance is the sum of
    p (1 - p))."""
    beh = d["behaviour"]
    first = np.bincount(beh[:, 0], minlength=w.size)
    support = w > 0
    out = {"first": stats.chisquare(first[support], w[support] * beh.shape[0]).pvalue}
    olds, news = [], []
    for row in beh:
        ends = np.flatnonzero(row == BOUNDARY)
        ends = ends[(ends > 0) & (ends + 1 < row.size)]
        olds.append(row[ends - 1])
        news.append(row[ends + 1])
    old, new = np.concatenate(olds), np.concatenate(news)
    changed = old != new
    expected = np.zeros(w.size)
    for i in np.flatnonzero(support):
        n_i = (changed & (old == i)).sum()
        expected += n_i * np.where(np.arange(w.size) == i, 0.0, w / (1 - w[i]))
    observed = np.bincount(new[changed], minlength=w.size)
    keep = expected > 0
    out["redraw"] = stats.chisquare(observed[keep], expected[keep] * observed[keep].sum() / expected[keep].sum()).pvalue
    p_change = switch_prob * (1 - w[old])
    z = (changed.sum() - p_change.sum()) / np.sqrt((p_change * (1 - p_change)).sum())
    out["switch rate"] = 2 * stats.norm.sf(abs(z))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_behaviour_mixture_follows_its_weights_and_a_wrong_mixture_is_rejected(engine):
    mix = {"switch_fraction": 1.0, "switch_prob": 0.3}
    cfg = _cfg(mix, engine=engine, n_sequences=1200, sequences_per_shard=1200, batch_size=400, seq_len=500)
    d = synthesize_shard(cfg, 0)
    w = behaviour_weights(cfg)
    good = _mixture_pvalues(d, w, 0.3)
    assert min(good.values()) > 1e-3, good
    # the same checks against a mixture that differs a little: two weights swapped, or another switch rate
    swapped = w.copy()
    i, j = BEHAVIOURS.index("oracle_0.994"), BEHAVIOURS.index("q_learning")  # 0.05 and 0.10
    swapped[[i, j]] = swapped[[j, i]]
    bad = _mixture_pvalues(d, swapped, 0.3)
    assert bad["first"] < 1e-6 and bad["redraw"] < 1e-6, bad
    assert _mixture_pvalues(d, w, 0.25)["switch rate"] < 1e-6
    # 15 % of sequences never switch (default switch_fraction), the others switch
    cfg = _cfg(engine=engine, n_sequences=800, sequences_per_shard=800, batch_size=400, seq_len=600)
    beh = synthesize_shard(cfg, 0)["behaviour"]
    never = np.array([np.unique(row[row != BOUNDARY]).size == 1 for row in beh])
    # a switching sequence with about 20 episode ends keeps its behaviour with probability below 0.03
    assert abs(never.mean() - 0.15) < 0.03 + 4 * np.sqrt(0.15 * 0.85 / never.size), never.mean()


# ---------------------------------------------------------------------------------------------- tags
TAGLESS = {"seq_len": 300, "n_sequences": 16, "sequences_per_shard": 16, "batch_size": 16}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("preset", ["ad", "ad_eps", "dpt"])
def test_tags_false_hides_every_tag_and_changes_nothing_else(preset, engine):
    """AD, AD-epsilon and DPT without prior information: every tag 7, the same steps as the tagged dataset's."""
    tagged = synthesize_shard(_cfg(preset=preset, engine=engine, **TAGLESS), 0)
    tagless = synthesize_shard(_cfg(preset=preset, engine=engine, tags=False, **TAGLESS), 0)
    real = tagged["behaviour"] != BOUNDARY
    assert (tagged["tag"][real] != TAG_UNKNOWN).all()  # no masking here: tagged, every acting step names its policy
    assert set(np.unique(tagless["tag"]).tolist()) == {TAG_UNKNOWN}
    assert set(tagged) == set(tagless)
    for key in sorted(set(tagged) - {"tag"}):
        np.testing.assert_array_equal(tagless[key], tagged[key], err_msg=key)


@pytest.mark.parametrize("engine", ENGINES)
def test_no_tags_preset_is_dpd_with_tags_false(engine):
    no_tags = synthesize_shard(_cfg(preset="no_tags", engine=engine, **TAGLESS), 0)
    dpd = synthesize_shard(_cfg(preset="dpd", engine=engine, tags=False, **TAGLESS), 0)
    assert set(np.unique(no_tags["tag"]).tolist()) == {TAG_UNKNOWN}
    for key in sorted(no_tags):
        np.testing.assert_array_equal(dpd[key], no_tags[key], err_msg=key)


def test_a_tagless_dataset_never_reuses_a_tagged_folder(tmp_path):
    small = {"preset": "ad", "seq_len": 60, "n_sequences": 2, "sequences_per_shard": 2, "batch_size": 2}
    man = synthesize(_cfg(**small), tmp_path / "tagged", progress=False)
    assert "tags" not in man["config"]  # tagged data keeps the identity it had before the field existed
    with pytest.raises(SynthesisError, match="another configuration"):
        synthesize(_cfg(tags=False, **small), tmp_path / "tagged", progress=False)
    man = synthesize(_cfg(tags=False, **small), tmp_path / "tagless", progress=False)
    assert man["config"]["tags"] is False and load_manifest(tmp_path / "tagless")["config"]["tags"] is False
    with pytest.raises(SynthesisError, match="another configuration"):
        synthesize(_cfg(**small), tmp_path / "tagless", progress=False)


# ---------------------------------------------------------------------------------------------- compiled learners
def _transitions(task, n_steps: int, seed: int) -> list[dict]:
    env = BatchedAnyMDPEnv([task])
    policy, rng = RandomPolicy(), np.random.default_rng(seed)
    policy.reset([task], rng)
    record: list[dict] = []
    run_policy(env, policy, n_steps, rng, seed=seed, callback=lambda t, r: record.append(dict(r)))
    return record


@pytest.mark.parametrize("ns", [1, 8, 16])
@pytest.mark.parametrize("rule", ["softmax", "ucb"])
def test_compiled_learner_updates_equal_the_numpy_learners(ns, rule):
    task = sample_anymdp(ns, 5, seed=ns)
    gamma, alpha, H, c_mb = 0.95, 0.3, 250.0, 0.05
    q = QLearner(rule=rule, gamma=gamma, alpha=alpha, H=H)
    mb = ModelBasedLearner(gamma=gamma, c=c_mb)
    for x in (q, mb):
        x.reset([task])
    na = task.na
    Q = np.full((ns, na), 1.0 / (1.0 - gamma))
    n_sa, n_s = np.zeros((ns, na)), np.zeros(ns)
    lterm = np.zeros(ns, dtype=np.bool_)
    counts, r_mean, r_m2 = (np.zeros((ns, na, ns)) for _ in range(3))
    n_into, n_term_into = np.zeros(ns), np.zeros(ns)
    Qm, Qm2 = np.zeros((ns, na)), np.zeros((ns, na))
    bonus = np.zeros((ns, na))
    ends = 0
    for rec in _transitions(task, 3000, seed=ns):
        s, a, r, s2 = (int(rec["states"][0]), int(rec["actions"][0]), float(rec["rewards"][0]),
                       int(rec["next_states"][0]))
        term, trunc = bool(rec["terminated"][0]), bool(rec["truncated"][0])
        for x in (q, mb):
            x.observe(rec["states"], rec["actions"], rec["rewards"], rec["next_states"], rec["terminated"],
                      rec["truncated"])
        nb.q_observe(Q, n_sa, n_s, lterm, s, a, r, s2, term, gamma, alpha, H, rule == "ucb")
        nb.mb_observe(counts, r_mean, r_m2, n_into, n_term_into, s, a, r, s2, term)
        nb.learn_terminal(n_s, lterm, s2, term, Q, Qm, Qm2)
        if term or trunc:
            mb.end_episode(np.array([True]))
            nb.mb_plan(counts, r_mean, n_sa, lterm, n_into, n_term_into, Qm, bonus, ns, na, gamma, c_mb, 0.01)
            ends += 1
            np.testing.assert_allclose(Qm, mb.Q[0], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(bonus, mb.bonus[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(Q, q.Q[0], rtol=1e-12, atol=1e-12)
    assert ends >= 5
    np.testing.assert_array_equal(n_sa, q.n_sa[0])
    np.testing.assert_array_equal(lterm, q.terminal[0])
    np.testing.assert_allclose(r_mean, mb.r_mean[0], rtol=1e-12, atol=1e-12)
