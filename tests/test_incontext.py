"""The in-context gain measurement (segments of a run, CIs), shipped-model lookup and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from omnirl_core.evaluation import OracleAgent, RandomAgent, RunResult, TQLAgent, build_suite
from omnirl_core.evaluation import incontext as ic
from omnirl_core.evaluation.models import shipped_model_for, shipped_models


def _result(scores: np.ndarray, steps: np.ndarray) -> RunResult:
    """A RunResult whose normalised scores equal ``scores`` (oracle 1, random 0)."""
    b = scores.shape[0]
    return RunResult(suite="s", agent="a", returns=scores.astype(float), steps=steps.astype(float),
                     r_oracle=np.ones(b), r_random=np.zeros(b), valid=np.ones(b, bool))


def test_segments_assign_episodes_by_their_end_step():
    # run 0: episodes end at steps 3, 5, 8 (budget 8, two segments: steps 1-4 and 5-8)
    scores = np.array([[1.0, 2.0, 4.0, np.nan]])
    steps = np.array([[3, 5, 8, np.nan]])
    seg = ic.segment_scores(_result(scores, steps), budget=8, n_segments=2)
    np.testing.assert_allclose(seg, [[1.0, 3.0]])
    # an episode ending after the budget is ignored; a segment without an episode is NaN
    seg = ic.segment_scores(_result(np.array([[1.0, 9.0]]), np.array([[6, 9]])), budget=8, n_segments=2)
    assert np.isnan(seg[0, 0]) and seg[0, 1] == 1.0


def test_one_step_episodes_split_into_equal_quarters():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 400))
    steps = np.tile(np.arange(1, 401), (5, 1))
    seg = ic.segment_scores(_result(scores, steps), budget=400)
    want = np.stack([scores[:, i * 100:(i + 1) * 100].mean(axis=1) for i in range(4)], axis=1)
    np.testing.assert_allclose(seg, want)


def test_summary_intervals_and_dropped_runs():
    rng = np.random.default_rng(1)
    seg = rng.normal(size=(40, 4)) + np.array([0.0, 0.1, 0.2, 0.5])
    seg[3, 1] = np.nan
    s = ic.segment_summary(seg)
    assert s["n_tasks"] == 39 and s["n_dropped"] == 1
    keep = np.delete(seg, 3, axis=0)
    d = keep[:, 3] - keep[:, 0]
    half = stats.t.ppf(0.975, 38) * d.std(ddof=1) / np.sqrt(39)
    np.testing.assert_allclose(s["gain"], [d.mean(), d.mean() - half, d.mean() + half])
    np.testing.assert_allclose(s["q2"][0], keep[:, 1].mean())
    with pytest.raises(ValueError, match="every bin"):
        ic.segment_summary(np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="budget"):
        ic.segment_scores(_result(np.ones((1, 2)), np.ones((1, 2))), budget=3, n_segments=4)


def test_learner_gains_and_random_does_not():
    """TQL-UCB improves along 400 pulls of fresh bandits; the uniform random policy stays at 0."""
    suite = build_suite("anymdp_1", 48)
    tql = ic.online_gain(suite, TQLAgent(c=0.5), 400, seed=3)
    assert tql["gain"][1] > 0, tql["gain"]  # the whole 95% interval above 0
    rnd = ic.online_gain(suite, RandomAgent(), 400, seed=3)
    assert abs(rnd["gain"][0]) < 0.1 and tql["gain"][1] > rnd["gain"][2], (tql["gain"], rnd["gain"])
    assert all(abs(rnd[f"q{i}"][0]) < 0.15 for i in range(1, 5))


def test_mdp_budget_counts_steps_not_episodes():
    suite = build_suite("anymdp_16", 6)
    out = ic.online_gain(suite, RandomAgent(), 1200, seed=0)
    assert out["steps"] == 1200 and out["n_tasks"] + out["n_dropped"] == 6
    assert len(out["per_task"]) == out["n_tasks"] + out["n_dropped"]


def test_shipped_models_are_found_by_state_count(tmp_path):
    models = shipped_models()
    assert any(m.name == "omnirl-tiny-bandit" and m.ns_max == 1 for m in models)
    assert shipped_model_for(1).ns_max >= 1
    largest = max(m.ns_max for m in models)
    with pytest.raises(LookupError, match="omnirl-tiny-bandit"):
        shipped_model_for(largest + 1)
    model, info = ic.load_shipped("omnirl-tiny-bandit")
    assert model.cfg.ns_max == info.ns_max and info.temperature > 0
    with pytest.raises(LookupError, match="not a shipped model"):
        ic.load_shipped(tmp_path)
    assert shipped_models(tmp_path) == []


def test_command_line_writes_its_report(tmp_path, capsys):
    out = tmp_path / "gain.json"
    assert ic.main(["models/omnirl-tiny-bandit", "--n-tasks", "8", "--steps", "40", "--tql", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| omnirl | 8 |" in printed and "tql_ucb_c0.1" in printed
    report = json.loads(out.read_text())
    assert report["omnirl"]["temperature"] == shipped_model_for(1).temperature
    assert set(report) >= {"suite", "omnirl", "tql_ucb_c0.5"} and "per_task" not in report["omnirl"]


def test_validation_tasks_differ_from_the_test_suite():
    val = ic.validation_suite(16, 3)
    test = build_suite("anymdp_16", 3)
    assert not np.array_equal(val.tasks[0].transition, test.tasks[0].transition)


@pytest.fixture(scope="module")
def oracle_and_random_data(tmp_path_factory):
    """One shard of 8-state sequences acted by the label oracle (gamma 0.994) or the drifting random policy."""
    from omnirl_core.synthesis import DatasetConfig, synthesize
    from omnirl_core.workbook import load_config

    root = tmp_path_factory.mktemp("behaviours")
    mix = {"w_drift_random": 1.0, "w_model_based": 0.0, "w_q_learning": 0.0, "w_mb_oracle": [0.0] * 4,
           "w_noisy_oracle": [0.0, 0.0], "w_oracle": [0.0, 0.0, 1.0], "switch_prob": 0.5}
    cfg = load_config(DatasetConfig, {"ns": 8, "seq_len": 256, "n_sequences": 8, "sequences_per_shard": 8,
                                      "batch_size": 8, "seed": 5, "mixture": mix})
    synthesize(cfg, root, workers=1, progress=False)
    return root


class _Uniform(torch.nn.Module):
    """Equal logits for every action: the label cross entropy is log(na) everywhere."""

    def forward(self, obs, tag, action, reward, state=None):
        return torch.zeros(*obs.shape, 5), {}, None


def test_label_loss_by_behaviour_splits_steps_and_measures_agreement(oracle_and_random_data):
    from omnirl_core.synthesis import load_manifest, load_shard

    rows = {r["behaviour"]: r for r in ic.label_loss_by_behaviour(_Uniform(), oracle_and_random_data, 8)}
    assert set(rows) == {"drift_random", "oracle_0.994"}
    shard = load_shard(oracle_and_random_data, load_manifest(oracle_and_random_data)["shards"][-1])
    assert sum(r["steps"] for r in rows.values()) == int((np.asarray(shard["label"]) < 5).sum())
    assert rows["oracle_0.994"]["agreement"] == 1.0  # the label is this oracle's own action
    assert rows["drift_random"]["agreement"] < 0.6
    for r in rows.values():
        for key in ("ce", "ce_first", "ce_last"):
            assert r[key] == pytest.approx(np.log(5), abs=1e-6)


def test_label_loss_by_behaviour_runs_a_real_model_and_the_command_line(oracle_and_random_data, capsys, tmp_path):
    from safetensors.torch import save_file

    from omnirl_core.model import ModelConfig, OmniRL
    from omnirl_core.workbook import config_to_dict

    torch.manual_seed(0)
    model = OmniRL(ModelConfig(layout="compact", pair_embedding=True, ns_max=8, na=5, hidden_size=16,
                               num_layers=1, intermediate_size=16, head_dim=8, chunk_size=16, backend="torch"))
    rows = ic.label_loss_by_behaviour(model.eval(), oracle_and_random_data, 4, tag=None)
    assert rows and all(np.isfinite(r["ce"]) and r["steps"] > 0 for r in rows)
    path = tmp_path / "m.safetensors"
    save_file(model.state_dict(), str(path), metadata={"model_config": json.dumps(config_to_dict(model.cfg))})
    out = ic.run_command([str(path), "--loss-by-behaviour", str(oracle_and_random_data), "--allow-unverified"])
    assert {r["behaviour"] for r in out["loss_by_behaviour"]} == {"drift_random", "oracle_0.994"}
    assert "| oracle_0.994 |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="8 states.*ns_max 1"):  # the shipped bandit model cannot read 8 states
        ic.run_command(["models/omnirl-tiny-bandit", "--loss-by-behaviour", str(oracle_and_random_data)])


def test_log_edges_are_octaves_whose_first_bin_is_a_32nd_of_the_run():
    np.testing.assert_array_equal(ic.log_edges(400, 6), [0, 12, 25, 50, 100, 200, 400])
    e = ic.log_edges(16384, 12)
    assert e[1] == 8 and np.allclose(e[2:] / e[1:-1], 2.0)  # doubling widths from 8 steps
    np.testing.assert_array_equal(ic.log_edges(4, 6), [0, 1, 2, 3, 4])  # narrower than a step: merged


def test_online_gain_scores_bandits_by_the_expected_reward_of_the_pulled_arm():
    """The oracle always pulls the best arm: by expected reward every bin scores exactly 1; a measure that kept the
    sampled rewards (as noisy as the gap between the arms) would not."""
    suite = build_suite("anymdp_1", 8)
    out = ic.online_gain(suite, OracleAgent(), 64, seed=0, bins=4)
    assert out["reward"] == "expected" and out["edges"] == [0.0, 8.0, 16.0, 32.0, 64.0]
    for k in range(1, 5):
        assert out[f"q{k}"][0] == pytest.approx(1.0, abs=1e-9)
    assert out["early"] == out["q1"] and out["late"] == out["q4"] and out["gain"][0] == pytest.approx(0.0, abs=1e-9)
