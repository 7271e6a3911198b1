"""Data synthesis: labels, boundary steps, tags, behaviours, presets, determinism and crash-safe resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from omnirl_core.synthesis import (
    BEHAVIOURS,
    BOUNDARY,
    LABEL_MASKED,
    LEARNER_PARAMS,
    SCHEMA_VERSION,
    TAG_UNKNOWN,
    DatasetConfig,
    SynthesisConfig,
    dataset_tasks,
    shard_tasks,
    synthesize,
    synthesize_shard,
    task_for,
)
from omnirl_core.workbook import load_config
from omnirl_core.world import oracle_policy

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _cfg(**kw) -> DatasetConfig:
    base = {"seq_len": 600, "n_sequences": 48, "sequences_per_shard": 48, "batch_size": 48, "seed": 3}
    base.update(kw)
    return load_config(DatasetConfig, base)


ENGINES = ["numba", "numpy"]


@pytest.fixture(scope="module", params=ENGINES)
def dpd(request):
    cfg = _cfg(n_sequences=160, sequences_per_shard=160, batch_size=160, seq_len=1500, engine=request.param)
    return cfg, synthesize_shard(cfg, 0)


def _tasks(cfg, data):
    tasks = shard_tasks(cfg, 0)
    assert [t.ns for t in tasks] == data["ns"].tolist()
    return tasks


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_shapes_and_dtypes(dpd):
    cfg, d = dpd
    n, T = cfg.n_sequences, cfg.seq_len
    for f in ("obs", "tag", "action", "label", "behaviour"):
        assert d[f].shape == (n, T) and d[f].dtype == np.uint8
    assert d["reward"].dtype == np.float32 and d["reward"].shape == (n, T)
    assert d["ns"].shape == d["na"].shape == d["task_seed"].shape == (n,)
    assert d["learner_params"].shape == (n, len(LEARNER_PARAMS)) and d["learner_params"].dtype == np.float64


def test_labels_are_the_oracle_action_at_every_non_boundary_step(dpd):
    cfg, d = dpd
    tasks = _tasks(cfg, d)
    pol = oracle_policy(tasks, 0.994)
    checked = 0
    for b, task in enumerate(tasks):
        real = d["behaviour"][b] != BOUNDARY
        inner = task.obs_to_state[d["obs"][b, real]]
        assert (inner >= 0).all()
        assert np.array_equal(d["label"][b, real], pol[b][inner])
        checked += real.sum()
    assert checked > 0.9 * d["obs"].size


def test_boundary_steps_have_the_specified_form(dpd):
    cfg, d = dpd
    tasks = _tasks(cfg, d)
    na = cfg.na
    bnd = d["behaviour"] == BOUNDARY
    assert bnd.any()
    assert (d["action"][bnd] == na).all() and (d["reward"][bnd] == 0).all()
    assert (d["tag"][bnd] == TAG_UNKNOWN).all() and (d["label"][bnd] == LABEL_MASKED).all()
    assert (d["action"][~bnd] < na).all() and (d["label"][~bnd] < na).all()
    n_term = n_trunc = 0
    for b, task in enumerate(tasks):
        idx = np.flatnonzero(bnd[b])
        inner = task.obs_to_state[d["obs"][b]]
        # every episode ends in a terminal state or at the step limit, and the next step is a start state
        starts = np.concatenate([[0], idx + 1])
        ends = np.concatenate([idx, [cfg.seq_len]])
        for s0, e in zip(starts, ends):
            if s0 < cfg.seq_len:
                assert task.start_prob[inner[s0]] > 0
            if e < cfg.seq_len:  # a complete episode: steps s0..e-1, then the boundary step e
                assert not bnd[b, s0:e].any()
                assert not task.terminal[inner[s0:e]].any()  # a terminal state is never acted from
                if task.terminal[inner[e]]:
                    n_term += 1
                else:
                    assert e - s0 == task.horizon
                    n_trunc += 1
    assert n_term > 0


def test_tag_masking_rates(dpd):
    cfg, d = dpd
    real = d["behaviour"] != BOUNDARY
    all_unknown = np.array([(d["tag"][b][real[b]] == TAG_UNKNOWN).all() for b in range(len(real))])
    assert abs(all_unknown.mean() - 0.15) < 0.08
    # in the other sequences, whole episodes are masked with probability 0.15
    fracs = []
    for b in np.flatnonzero(~all_unknown):
        bnd = np.flatnonzero(~real[b])
        eps = np.split(np.arange(cfg.seq_len), bnd + 1)
        for e in eps:
            e = e[real[b, e]]
            if e.size:
                fracs.append((d["tag"][b, e] == TAG_UNKNOWN).all())
    assert abs(np.mean(fracs) - 0.15) < 0.04
    # random actions of noisy behaviours carry tag 6, oracle steps tags 0-3 (oracle i: tag i), the model-based
    # learner tag 4, the Q-learner tag 5; every behaviour of the mixture acts and writes each of its tags
    tags = d["tag"][real]
    beh = d["behaviour"][real]
    shown = tags != TAG_UNKNOWN
    own = {"drift_random": {6}, "model_based": {4, 6}, "q_learning": {5, 6},
           "noisy_oracle_0.93": {2, 6}, "noisy_oracle_0.994": {3, 6},
           "oracle_0.5": {1}, "oracle_0.93": {2}, "oracle_0.994": {3}}
    for name, expected in own.items():
        counts = np.bincount(tags[shown & (beh == BEHAVIOURS.index(name))], minlength=8)
        assert set(np.flatnonzero(counts)) == expected, (name, counts)
        assert all(counts[t] >= 100 for t in expected), (name, counts)  # hundreds to thousands of steps each
    # model-based learner mixed with oracle i: its own tag 4, random actions 6 and, when the oracle acts, tag i
    mixed_oracle_steps = 0
    for i in range(4):
        counts = np.bincount(tags[shown & (beh == BEHAVIOURS.index(f"mb_oracle_{i}"))], minlength=8)
        assert set(np.flatnonzero(counts)) <= {i, 4, 6}, (i, counts)
        assert counts[4] >= 100 and counts[6] >= 100, (i, counts)
        mixed_oracle_steps += counts[i]
    # the oracle's share rises slowly from a negative start, so its steps are rare in each mixture (tens),
    # but hundreds over the four together
    assert mixed_oracle_steps >= 20


def test_behaviour_mixture_and_switching(dpd):
    cfg, d = dpd
    beh = d["behaviour"]
    n_beh = np.array([len(set(np.unique(row)) - {BOUNDARY}) for row in beh])
    assert (n_beh > 1).mean() > 0.4  # most sequences switch at some episode end
    assert (n_beh == 1).any()  # 15 % never switch
    first = beh[:, 0]
    counts = np.bincount(first, minlength=len(BEHAVIOURS))[:12]
    assert (counts > 0).sum() >= 9  # the mixture's behaviours all show up
    assert counts[BEHAVIOURS.index("oracle_0.5")] < counts[BEHAVIOURS.index("model_based")] + 8


def test_expected_rewards_are_ordered(dpd):
    cfg, d = dpd
    beh, r = d["behaviour"], d["reward"]

    def rate(name):
        m = beh == BEHAVIOURS.index(name)
        return r[m].mean()

    def per_sequence(name):  # each sequence's mean reward over its steps of this behaviour (>= 20 of them)
        m = beh == BEHAVIOURS.index(name)
        return np.array([r[b][m[b]].mean() for b in range(beh.shape[0]) if m[b].sum() >= 20])

    oracle, rnd = rate("oracle_0.994"), rate("drift_random")
    assert oracle > rnd + 0.01
    # a noisy oracle's epsilon decays within tens of steps: no better than the oracle, up to the spread of the
    # tasks the two happen to act on (the standard error over sequences)
    o, n = per_sequence("oracle_0.994"), per_sequence("noisy_oracle_0.994")
    se = np.sqrt(o.var(ddof=1) / o.size + n.var(ddof=1) / n.size)
    assert o.mean() >= n.mean() - 3 * se, (o.mean(), n.mean(), se)


@pytest.mark.parametrize("engine", ENGINES)
def test_learners_improve_along_a_sequence_and_oracle_is_flat(engine):
    cfg = _cfg(preset="ad", seq_len=4000, n_sequences=64, sequences_per_shard=64, batch_size=64, engine=engine)
    d = synthesize_shard(cfg, 0)
    real = d["behaviour"] != BOUNDARY
    q = d["reward"].copy()
    q[~real] = np.nan
    quarters = np.nanmean(q.reshape(64, 4, -1), axis=(0, 2))
    assert quarters[3] > quarters[0] + 0.04  # about +0.17 on these tasks (both engines)
    cfg_o = _cfg(preset="dpd", seq_len=2000, n_sequences=64, sequences_per_shard=64, batch_size=64, engine=engine,
                 mixture={"w_drift_random": 0, "w_model_based": 0, "w_q_learning": 0, "w_mb_oracle": [0, 0, 0, 0],
                          "w_noisy_oracle": [0, 0], "w_oracle": [0, 0, 1]})
    o = synthesize_shard(cfg_o, 0)
    r = np.where(o["behaviour"] != BOUNDARY, o["reward"], np.nan)
    halves = np.nanmean(r.reshape(64, 2, -1), axis=(0, 2))
    assert abs(halves[1] - halves[0]) < 0.04  # a fixed policy: only noise (about 0.02)
    assert halves.min() > quarters.max() + 0.3  # the oracle beats the learner throughout


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("preset", ["ad", "ad_eps", "dpt", "no_tags"])
def test_presets(preset, engine):
    cfg = _cfg(preset=preset, engine=engine)
    d = synthesize_shard(cfg, 0)
    real = d["behaviour"] != BOUNDARY
    beh = set(np.unique(d["behaviour"][real]).tolist())
    if preset == "ad":
        assert beh == {BEHAVIOURS.index("q_learning_pure")}
        assert np.array_equal(d["label"][real], d["action"][real])
    elif preset == "ad_eps":
        assert beh == {BEHAVIOURS.index("noisy_oracle_0.994")}
        assert np.array_equal(d["label"][real], d["action"][real])
        assert set(np.unique(d["tag"][real])) <= {3, 6, 7}
    elif preset == "dpt":
        assert beh <= {BEHAVIOURS.index(n) for n in ("oracle_0.994", "q_learning", "uniform_random")}
        assert len(beh) == 3
        pol = oracle_policy(_tasks(cfg, d), 0.994)
        tasks = _tasks(cfg, d)
        for b in range(3):
            inner = tasks[b].obs_to_state[d["obs"][b, real[b]]]
            assert np.array_equal(d["label"][b, real[b]], pol[b][inner])
    elif preset == "no_tags":
        assert set(np.unique(d["tag"])) == {TAG_UNKNOWN}
    assert (d["label"][~real] == LABEL_MASKED).all()


def test_task_sources_and_pool():
    cfg = _cfg(ns=16, ns_max=40, n_sequences=8, sequences_per_shard=2, batch_size=2, seq_len=100)
    ns = {dataset_tasks(cfg, k)[0] for k in range(4)}
    assert all(16 <= n <= 40 for n in ns) and len(ns) > 1
    pool = _cfg(task_pool=3, n_sequences=40, sequences_per_shard=10)
    seeds = np.concatenate([dataset_tasks(pool, k)[1] for k in range(4)])
    assert len(set(seeds.tolist())) == 3
    g = _cfg(task_source="garnet", n_sequences=4, sequences_per_shard=4, batch_size=4, seq_len=200)
    d = synthesize_shard(g, 0)
    assert task_for(g, 16, int(d["task_seed"][0])).kind == "garnet"
    assert (d["behaviour"] == BOUNDARY).any()  # truncation boundaries (Garnet has no terminal states)


@pytest.mark.parametrize("engine", ENGINES)
def test_determinism_across_worker_counts(tmp_path, engine):
    cfg = _cfg(n_sequences=12, sequences_per_shard=3, batch_size=2, seq_len=300, engine=engine)
    m1 = synthesize(cfg, tmp_path / "w1", workers=1, progress=False)
    m2 = synthesize(cfg, tmp_path / "w2", workers=2, progress=False)
    assert m1 == m2 and m1["complete"]
    assert _files(tmp_path / "w1") == _files(tmp_path / "w2")
    assert len(m1["shards"]) == 4
    # the per-sequence learner hyperparameters are stored and named
    assert m1["schema_version"] == SCHEMA_VERSION and m1["learner_params"] == list(LEARNER_PARAMS)
    rec = m1["shards"][0]
    assert rec["learner_params"] == list(LEARNER_PARAMS)
    assert rec["files"]["learner_params"]["shape"] == [3, len(LEARNER_PARAMS)]
    lp = np.load(tmp_path / "w1" / rec["dir"] / "learner_params.npy")
    assert np.array_equal(lp, synthesize_shard(cfg, 0)["learner_params"])
    # a second run changes nothing and regenerates nothing
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "w1").rglob("*.npy")}
    synthesize(cfg, tmp_path / "w1", workers=1, progress=False)
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "w1").rglob("*.npy")}


def test_resume_after_partial_run_and_corrupt_shard(tmp_path):
    cfg = _cfg(n_sequences=8, sequences_per_shard=2, batch_size=2, seq_len=200)
    full = tmp_path / "full"
    synthesize(cfg, full, progress=False)
    part = tmp_path / "part"
    man = synthesize(cfg, part, progress=False, max_shards=2)
    assert not man["complete"] and len(man["shards"]) == 2
    (part / ".tmp_shard_000003_junk").mkdir()  # a leftover of a killed writer
    (part / "shard_000001" / "reward.npy").write_bytes(b"garbage")
    synthesize(cfg, part, progress=False)
    assert _files(full) == _files(part)


def test_other_config_in_the_same_folder_is_refused(tmp_path):
    from omnirl_core.synthesis import SynthesisError

    synthesize(_cfg(n_sequences=2, sequences_per_shard=2, batch_size=2, seq_len=50), tmp_path, progress=False)
    with pytest.raises(SynthesisError, match="another configuration"):
        synthesize(_cfg(n_sequences=2, sequences_per_shard=2, batch_size=2, seq_len=60), tmp_path, progress=False)
    # a dataset of an older on-disk format is refused too, not extended
    path = tmp_path / "manifest.json"
    man = json.loads(path.read_text())
    path.write_text(json.dumps({**man, "schema_version": SCHEMA_VERSION - 1}))
    with pytest.raises(SynthesisError, match="schema version"):
        synthesize(_cfg(n_sequences=2, sequences_per_shard=2, batch_size=2, seq_len=50), tmp_path, progress=False)


def _write_params(path: Path, n_sequences: int) -> Path:
    ds = {"seed": 5, "ns": 16, "seq_len": 400, "n_sequences": n_sequences, "sequences_per_shard": 2, "batch_size": 2}
    path.write_text(yaml.safe_dump({"datasets": {"d": ds}, "workers": 2}))
    return path


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_is_byte_identical(tmp_path):
    params = _write_params(tmp_path / "p.yaml", 160)
    cmd = [PY, "-m", "omnirl_core.synthesis", str(params), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ref = subprocess.run(cmd + ["--out", str(tmp_path / "ref")], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=240)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "run"
    proc = subprocess.Popen(cmd + ["--out", str(out)], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((out / "d").glob("shard_*")):
            time.sleep(0.02)
        assert list((out / "d").glob("shard_*")), "no shard appeared"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its workers, as by kill -9
        proc.wait()
    man = json.loads((out / "d" / "manifest.json").read_text())
    assert not man["complete"], "the run finished before it was killed; make it longer"
    res = subprocess.run(cmd + ["--out", str(out)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    assert _files(tmp_path / "ref") == _files(out)


def test_a_sequence_does_not_depend_on_its_batch_in_the_compiled_engine():
    """The first 3 sequences of a batch of 6 are the batch of those 3 alone (each sequence seeds its own stream)."""
    from omnirl_core.synthesis import shard_tasks, synthesize_batch

    cfg = _cfg(n_sequences=6, sequences_per_shard=6, batch_size=6)
    tasks = shard_tasks(cfg, 0)
    three = synthesize_batch(tasks[:3], cfg, np.random.SeedSequence(7))
    six = synthesize_batch(tasks, cfg, np.random.SeedSequence(7))
    for k in three:
        assert np.array_equal(three[k], six[k][:3]), k
    assert not np.array_equal(six["action"][:3], six["action"][3:])  # the rows are different sequences


def test_real_params_build():
    for profile in ("quick", "paper"):
        cfg = load_config(SynthesisConfig, ROOT / "params" / profile / "02_synthesis.yaml")
        assert cfg.datasets


@pytest.mark.parametrize("preset", ["dpd", "dpt", "ad"])
def test_behaviour_draws_follow_the_weights(preset):
    from omnirl_core.synthesis import behaviour_weights
    from omnirl_core.synthesis.behaviours import _scan_table

    w = behaviour_weights(_cfg(preset=preset))
    table = _scan_table(w)
    u = np.random.default_rng(0).random(100_000)
    freq = np.bincount(np.argmax(u[:, None] < table[None, :], axis=1), minlength=len(w)) / u.size
    assert np.abs(freq - w).max() < 0.01
    assert (freq[w == 0] == 0).all()


def test_oracle_steps_act_like_the_label(dpd):
    cfg, d = dpd
    beh, tag = d["behaviour"], d["tag"]
    pure = beh == BEHAVIOURS.index("oracle_0.994")
    assert pure.any()
    assert np.array_equal(d["action"][pure], d["label"][pure])
    noisy = (beh == BEHAVIOURS.index("noisy_oracle_0.994")) & (tag == 3)  # its oracle (not random) steps
    assert noisy.any()
    assert np.array_equal(d["action"][noisy], d["label"][noisy])


# ---------------------------------------------------------------------------------------------- learner draws
def _col(name: str) -> int:
    return LEARNER_PARAMS.index(name)


@pytest.mark.parametrize("engine", ENGINES)
def test_learner_hyperparameters_are_drawn_per_sequence_as_specified(engine):
    n = 800
    cfg = _cfg(n_sequences=n, sequences_per_shard=n, batch_size=400, seq_len=20, engine=engine, seed=11)
    lp = synthesize_shard(cfg, 0)["learner_params"]
    unit = 1.0 / (cfg.ns * cfg.na)
    for learner, base_name, base in (("q", "alpha", 0.01), ("mb", "c", 0.005)):
        noisy = lp[:, _col(f"{learner}_noisy")]
        assert set(np.unique(noisy)) == {0.0, 1.0}
        noisy = noisy == 1.0
        assert abs(noisy.mean() - 0.5) < 4 * np.sqrt(0.25 / n)  # branch probability 0.5
        gamma = lp[:, _col(f"{learner}_gamma")]
        scale = lp[:, _col(f"{learner}_{base_name}")]
        start = lp[:, _col(f"{learner}_noise_start")]
        decay = lp[:, _col(f"{learner}_noise_decay")]
        # noise-free branch: fixed c / alpha, gamma ~ U(0.90, 0.99), no noise
        q = ~noisy
        assert (scale[q] == base).all()
        assert (gamma[q] >= 0.90).all() and (gamma[q] <= 0.99).all()
        assert stats.kstest(gamma[q], stats.uniform(0.90, 0.09).cdf).pvalue > 1e-3
        assert (start[q] == 0).all() and (decay[q] == 0).all()
        # noisy branch: gamma 0.99, c / alpha = base * Exp(1), noise start U(0.1, 0.5), decay U(0, 0.1 / (ns na))
        assert (gamma[noisy] == 0.99).all()
        ratio = scale[noisy] / base
        assert (ratio > 0).all()
        assert abs(ratio.mean() - 1.0) < 4 / np.sqrt(noisy.sum())
        assert stats.kstest(ratio, stats.expon().cdf).pvalue > 1e-3
        assert stats.kstest(start[noisy], stats.uniform(0.1, 0.4).cdf).pvalue > 1e-3
        assert (decay[noisy] >= 0).all() and (decay[noisy] <= 0.1 * unit).all()
        assert stats.kstest(decay[noisy] / (0.1 * unit), stats.uniform().cdf).pvalue > 1e-3
    # the two learners of a sequence are drawn independently
    both = (lp[:, _col("q_noisy")] == 1) & (lp[:, _col("mb_noisy")] == 1)
    assert abs(both.mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)
    # sequences draw different values
    assert len(np.unique(lp[:, _col("q_gamma")])) > n // 3


def test_learner_noise_acts_only_for_noisy_learners(dpd):
    cfg, d = dpd
    lp, beh, tag = d["learner_params"], d["behaviour"], d["tag"]
    for learner, name, own_tag in (("q", "q_learning", 5), ("mb", "model_based", 4)):
        noisy = lp[:, _col(f"{learner}_noisy")] == 1
        acts = (beh == BEHAVIOURS.index(name)) & (tag != TAG_UNKNOWN)
        quiet_tags = tag[acts & ~noisy[:, None]]
        noisy_tags = tag[acts & noisy[:, None]]
        assert quiet_tags.size and noisy_tags.size
        assert set(np.unique(quiet_tags)) == {own_tag}  # no noise in the noise-free branch
        assert set(np.unique(noisy_tags)) == {own_tag, 6}  # the decaying noise acts, tagged 6
        assert 0.02 < (noisy_tags == 6).mean() < 0.5


@pytest.mark.parametrize("engine", ENGINES)
def test_learner_hyperparameter_config_is_used(engine):
    mix = {"learner_noise_prob": 0.0, "learner_gamma_range": [0.95, 0.95], "learner_c_base": 0.2,
           "learner_alpha_base": 0.3}
    cfg = _cfg(n_sequences=6, sequences_per_shard=6, batch_size=6, seq_len=50, engine=engine, mixture=mix)
    lp = synthesize_shard(cfg, 0)["learner_params"]
    assert (lp[:, [_col("q_noisy"), _col("mb_noisy")]] == 0).all()
    assert (lp[:, [_col("q_gamma"), _col("mb_gamma")]] == 0.95).all()
    assert (lp[:, _col("mb_c")] == 0.2).all() and (lp[:, _col("q_alpha")] == 0.3).all()
    mix = {"learner_noise_prob": 1.0, "learner_noisy_gamma": 0.97, "learner_noise_range": [0.3, 0.3]}
    lp = synthesize_shard(_cfg(n_sequences=6, sequences_per_shard=6, batch_size=6, seq_len=50, engine=engine,
                               mixture=mix), 0)["learner_params"]
    assert (lp[:, [_col("q_gamma"), _col("mb_gamma")]] == 0.97).all()
    assert (lp[:, [_col("q_noise_start"), _col("mb_noise_start")]] == 0.3).all()
    with pytest.raises(Exception, match="learner_gamma_range"):
        _cfg(mixture={"learner_gamma_range": [0.99, 0.9]})


@pytest.mark.slow
def test_nodes_write_disjoint_parts_concurrently_and_one_run_joins_them(tmp_path):
    """Several nodes on one shared folder (``--part RANK/WORLD``), at the same time: the joined dataset has the
    bytes of a single-writer run."""
    import yaml

    from omnirl_core.synthesis.cli import parse_part
    from omnirl_core.workbook.errors import InputError

    params = {"datasets": {"d": {"ns": 1, "na": 5, "seq_len": 64, "n_sequences": 20, "sequences_per_shard": 4,
                                 "batch_size": 4}}, "workers": 1}
    path = tmp_path / "02.yaml"
    path.write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "omnirl_core.synthesis", str(path), "--out", str(tmp_path / "shared"),
           "--no-progress"]
    procs = [subprocess.Popen([*cmd, "--part", f"{r}/3"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for r in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    written = sorted(d.name for d in (tmp_path / "shared" / "d").glob("shard_*"))
    assert written == [f"shard_{k:06d}" for k in range(5)]
    assert not (tmp_path / "shared" / "d" / "manifest.json").exists()  # left to the run that joins the parts
    assert "part 1/3: 2 of 5 shards" in outs[1][0]  # shards 1 and 4
    joined = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert joined.returncode == 0, joined.stderr
    single = subprocess.run([*cmd[:5], str(tmp_path / "single"), "--no-progress"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    a = json.loads((tmp_path / "shared" / "d" / "manifest.json").read_text())
    b = json.loads((tmp_path / "single" / "d" / "manifest.json").read_text())
    assert a["complete"] and a == b  # every shard's sha256 is the same as a single writer's
    assert parse_part("env", {"SLURM_PROCID": "2", "SLURM_NTASKS": "4"}) == (2, 4)
    assert parse_part("env", {"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "7", "SLURM_NTASKS": "8"}) == (1, 2)
    for bad in ("3/3", "x/2", "1"):
        with pytest.raises(InputError, match="--part"):
            parse_part(bad)
