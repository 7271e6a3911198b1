"""Evaluation loop, agents (OmniRL mechanics with a tiny untrained model), metrics, reports, checkpoints."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from omnirl_core.evaluation import (
    CheckpointConfigError,
    EvaluationConfig,
    NoisyOracleAgent,
    OmniRLAgent,
    OracleAgent,
    RandomAgent,
    RunResult,
    TQLAgent,
    build_suite,
    evaluate,
    load_model,
    run_agent,
    table_metrics,
    table_rows,
    task_suite,
    write_report,
)
from omnirl_core.model import ModelConfig, OmniRL
from omnirl_core.workbook import config_to_dict, load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def tiny_config(**kw) -> ModelConfig:
    base = dict(backbone="rwkv7", ns_max=64, na=5, hidden_size=32, num_layers=2, intermediate_size=48, head_dim=8,
                chunk_size=8, backend="torch")
    base.update(kw)
    return ModelConfig(**base)


def tiny_model(seed: int = 0, **kw) -> OmniRL:
    torch.manual_seed(seed)
    return OmniRL(tiny_config(**kw)).eval()


@pytest.fixture(scope="module")
def anymdp16():
    return build_suite("anymdp_16", 3)


def _record(store):
    def on_step(t, rec):
        store.append({k: np.array(v, copy=True) for k, v in rec.items()})

    return on_step


def _actions(records, b):
    return np.array([r["actions"][b] for r in records])


# ---------------------------------------------------------------------------------------------- batched == single
@pytest.mark.parametrize("make_agent", [lambda: OmniRLAgent(tiny_model()), lambda: TQLAgent(c=0.5), RandomAgent],
                         ids=["omnirl", "tql_ucb", "random"])
def test_batched_loop_equals_single_task_loop(anymdp16, make_agent):
    seeds = [101, 202, 303]
    batched: list = []
    res = run_agent(anymdp16, make_agent(), 2, seed=seeds, on_step=_record(batched))
    for b in range(3):
        single_suite = task_suite("one", [anymdp16.tasks[b]])
        single: list = []
        one = run_agent(single_suite, make_agent(), 2, seed=[seeds[b]], on_step=_record(single))
        n = len(single)
        assert np.array_equal(_actions(batched[:n], b), _actions(single, 0))
        assert np.allclose(res.returns[b], one.returns[0])


def test_runs_are_deterministic_and_depend_on_the_seed(anymdp16):
    a = run_agent(anymdp16, OmniRLAgent(tiny_model()), 2, seed=5)
    b = run_agent(anymdp16, OmniRLAgent(tiny_model()), 2, seed=5)
    c = run_agent(anymdp16, OmniRLAgent(tiny_model()), 2, seed=6)
    assert np.array_equal(a.returns, b.returns) and np.array_equal(a.steps, b.steps)
    assert not np.array_equal(a.returns, c.returns)
    assert a.returns.shape == (3, 2) and not np.isnan(a.returns).any()


# ---------------------------------------------------------------------------------------------- OmniRL mechanics
def test_omnirl_online_uses_tag_7_and_writes_boundary_steps(anymdp16):
    model = tiny_model()
    calls = []
    orig = model.step

    def spy(obs, tag, action, reward, state=None):
        calls.append((tag.clone(), action.clone(), reward.clone()))
        return orig(obs, tag, action, reward, state)

    joint = []  # steps where every run ended an episode: the boundary token goes with the next act, in one pass
    orig_joint = model.act_after_end
    model.step = spy
    model.act_after_end = lambda final_obs, obs, state: joint.append(final_obs.clone()) or orig_joint(final_obs, obs,
                                                                                                       state)
    records: list = []
    res = run_agent(anymdp16, OmniRLAgent(model), 2, seed=1, on_step=_record(records))
    assert all((r["tags"] == 7).all() for r in records)
    n_episode_ends = sum(int(r["done"].any()) for r in records)
    n_all = sum(int(r["done"].all()) for r in records[:-1])  # (the last step's token: no act follows)
    assert len(joint) == n_all
    assert len(calls) + len(joint) + int(records[-1]["done"].all()) == n_episode_ends > len(joint)  # one per step
    for tag, action, reward in calls:
        assert (tag == 7).all() and (action == 5).all() and (reward == 0).all()
    assert np.all(res.steps[:, 1] > res.steps[:, 0])


def test_boundary_step_only_changes_the_memory_of_finished_runs(anymdp16):
    agent = OmniRLAgent(tiny_model())
    agent.reset(anymdp16, [1, 2, 3])
    obs = np.array([0, 1, 2])
    agent.act(obs)
    agent.observe(obs, np.array([0, 1, 2]), np.zeros(3), obs, np.zeros(3, bool), np.zeros(3, bool), np.full(3, 7))
    before = [t.clone() for t in _tensors(agent.state)]
    agent.end_episode(np.array([False, True, False]), obs)
    after = _tensors(agent.state)
    for x, y in zip(before, after):
        assert torch.equal(x[0], y[0]) and torch.equal(x[2], y[2])
    assert any(not torch.equal(x[1], y[1]) for x, y in zip(before, after))


def _tensors(state):
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in _tensors(v)]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in _tensors(v)]
    return []


def test_demonstrations_fill_the_context_with_their_tags(anymdp16):
    records: list = []
    res = run_agent(anymdp16, OmniRLAgent(tiny_model()), 1, seed=2, demo=NoisyOracleAgent(0.5), demo_episodes=2,
                    on_step=_record(records))
    tags = np.stack([r["tags"] for r in records])  # [T, B]
    for b in range(3):
        col = tags[:, b]
        first_own = int(np.argmax(col == 7))
        assert set(np.unique(col[:first_own])) <= {3, 6} and {3, 6} <= set(np.unique(col[:first_own]))
        assert (col[first_own:] == 7).all()
        ends = np.flatnonzero([r["done"][b] for r in records])
        assert first_own == ends[1] + 1  # two demonstration episodes, then the agent acts
    assert res.returns.shape == (3, 1) and not np.isnan(res.returns).any()
    # Imitation: the oracle's own tag and actions
    records = []
    run_agent(anymdp16, RandomAgent(), 1, seed=2, demo=OracleAgent(), demo_episodes=1, on_step=_record(records))
    assert records[0]["tags"].tolist() == [3, 3, 3]


def test_temperature_schedule(anymdp16):
    agent = OmniRLAgent(tiny_model(), schedule="decay", decay_steps=100)
    agent.reset(anymdp16, [0, 1, 2])
    assert np.allclose(agent._temperature(), 1.0)
    agent.t[:] = [50, 100, 1000]
    assert np.allclose(agent._temperature(), [0.55, 0.1, 0.1])
    const = OmniRLAgent(tiny_model(), temperature=0.5)
    const.reset(anymdp16, [0, 1, 2])
    assert np.allclose(const._temperature(), 0.5)


# ---------------------------------------------------------------------------------------------- baselines
def test_tql_ucb_improves_with_experience_on_anymdp16():
    suite = build_suite("anymdp_16", 8)
    res = run_agent(suite, TQLAgent(c=0.5), 60, seed=0)
    s = res.scores
    early, late = np.nanmean(s[:, :10]), np.nanmean(s[:, -10:])
    assert late > early + 0.3, (early, late)
    assert late > 0.2


def test_ppo_baseline_protocol():
    pytest.importorskip("stable_baselines3")
    from omnirl_core.evaluation import run_ppo

    suite = build_suite("frozenlake", 1)
    res = run_ppo(suite, 200, eval_every=100, n_steps=128)
    assert res.returns.shape == (1, 2) and not np.isnan(res.returns).any()
    assert res.steps[0, 1] > res.steps[0, 0] > 0  # training steps at each test point
    assert table_metrics(res)["episodes_99"] in (100, 200)


# ---------------------------------------------------------------------------------------------- metrics and report
def _result(curve, steps_per_episode=10.0, n=2):
    K = len(curve)
    returns = np.tile(np.asarray(curve, float), (n, 1))
    steps = np.tile(np.cumsum(np.full(K, steps_per_episode)), (n, 1))
    return RunResult("anymdp_16", "TQL-UCB (c=1)", returns, steps, np.ones(n), np.zeros(n), np.ones(n, bool),
                     info={"c": 1.0})


def test_table_metrics_best_and_time_to_99_percent():
    m = table_metrics(_result([0.0, 0.5, 0.9, 0.95, 0.995, 1.0, 0.2]), smooth=1)
    assert m["best"] == pytest.approx(1.0)
    assert m["episodes_99"] == 5 and m["steps_99"] == pytest.approx(50.0)  # 0.995 is the first within 1%
    m2 = table_metrics(_result([0.0, 1.0, 1.0, 1.0]), smooth=2)
    assert m2["best"] == pytest.approx(1.0) and m2["episodes_99"] == 2  # the first window at 1 starts at episode 2


@pytest.mark.parametrize("start", [1, 30])
def test_steps_to_99_has_no_floor_at_the_window(start):
    """An agent at its best from episode ``start`` reads ``start`` whatever the window (50 episodes, as the paper
    profile): a window is read at its first episode. Read at its last, the first 49 episodes could never be
    reached (the old rule read 50 and 79)."""
    curve = np.r_[np.zeros(start - 1), np.ones(300)]
    m = table_metrics(_result(curve), smooth=50)
    assert m["best"] == pytest.approx(1.0) and m["episodes_99"] == start
    assert m["steps_99"] == pytest.approx(10.0 * start)


def test_test_point_windows_hold_as_many_evaluated_episodes_as_the_episode_windows():
    """One rule for both columns: a window of 50 episodes is, on a curve of test points of 5 episodes each, 10 test
    points (1,000 training episodes at one point per 100), unless ``smooth_tested`` names the span; a perfect
    learner reads the first test point."""
    from omnirl_core.evaluation.report import window_points

    curve = np.r_[np.linspace(0, 1, 20), np.ones(80)]
    res = _result(curve)
    res.info.update(eval_every=100, eval_episodes=5, episode_index=list(range(100, 10_001, 100)))
    assert window_points(res, 50) == 10 and window_points(res, 20) == 4 and window_points(res, 50, 300) == 3
    assert window_points(res, 50, 10**6) == 100 and window_points(_result(curve), 50) == 50
    assert window_points(_result(np.ones(7)), 50) == 7  # a run shorter than its window is one window
    flat = _result(np.ones(100))
    flat.info.update(res.info)
    assert table_metrics(flat, 50)["episodes_99"] == 100
    m = table_metrics(res, 50)
    # the window of points 19-28 averages (0.947 + 9) / 10 = 0.995, that of 18-27 0.984: the 19th point, 1,900
    assert m["best"] == pytest.approx(1.0) and m["episodes_99"] == 1900


def test_report_files_and_paper_columns(tmp_path):
    rows = table_rows([_result([0.1, 0.9])])
    assert rows[0]["paper_best_score"] == pytest.approx(0.92) and rows[0]["paper_steps_to_99"] == 297e3
    paths = write_report([_result([0.1, 0.9])], tmp_path)
    assert paths["csv"].is_file() and "anymdp_16" in paths["md"].read_text()
    assert len(paths["curves"].read_text().splitlines()) == 3


def test_evaluate_scores_the_post_trained_checkpoint_in_rows_of_its_own():
    """Table 1 for both of notebook 03's models: ``post_checkpoint`` adds rows "OmniRL (post-trained)" (per mode)
    of that file's model, run as the main checkpoint's rows are (here the shipped bandit and AnyMDP(16) models)."""
    from omnirl_core.evaluation.protocol import POST_LABEL

    path, post = "models/omnirl-tiny-bandit/model.safetensors", "models/omnirl-tiny-anymdp16/model.safetensors"
    cfg = load_config(EvaluationConfig, {"suites": ["anymdp_1"], "n_tasks": 2, "n_episodes": 6, "agents": ["omnirl"],
                                         "checkpoint": path, "post_checkpoint": post, "also_shipped": False,
                                         "modes": ["online", "imitation"], "demo_episodes": 2, "progress": False})
    results = [r for r in evaluate(cfg, log=None) if r.info.get("reward", "sampled") == "sampled"]
    agents = [r.agent for r in results]
    assert agents == ["OmniRL", "OmniRL (imitation)", POST_LABEL, f"{POST_LABEL} (imitation)"], agents
    alone = evaluate(replace(cfg, checkpoint=post, post_checkpoint=None), log=None)[0]  # the post model as the main
    np.testing.assert_array_equal(results[2].returns, alone.returns)
    assert not np.array_equal(results[0].returns, results[2].returns)
    assert "OmniRL (post-trained)" not in [r.agent for r in evaluate(replace(cfg, post_checkpoint=None), log=None)]


def test_evaluate_driver_runs_baselines_and_skips_omnirl_without_checkpoint():
    cfg = load_config(EvaluationConfig, {"suites": ["frozenlake"], "n_tasks": 2, "n_episodes": 6,
                                         "agents": ["random", "oracle", "tql_ucb", "omnirl"], "tql_c_grid": [0.5],
                                         "tql_eval_every": 3, "checkpoint": None, "progress": False})
    logs = []
    results = evaluate(cfg, log=logs.append)
    assert [r.agent for r in results] == ["random", "oracle", "TQL-UCB (c=0.5, H=4000)"]
    assert any("OmniRL skipped" in line for line in logs)
    assert table_metrics(results[1])["best"] == pytest.approx(1.0)
    assert results[2].returns.shape == (2, 2) and results[2].info["episode_index"] == [3, 6]  # test points
    cfg.tql_scoring = "training"
    cfg.agents = ["tql_ucb"]
    (old,) = evaluate(cfg, log=None)
    assert old.agent == "TQL-UCB (c=0.5, H=4000, training episodes)" and old.returns.shape == (2, 6)


def test_evaluate_runs_omnirl_online_offline_and_by_imitation_with_the_right_contexts(monkeypatch):
    """Each mode's rows, and what the model saw before acting itself: nothing (online), the perturbed oracle's
    demonstrations with tags 3 and 6 (offline), the oracle's with tag 3 (imitation)."""
    from omnirl_core.evaluation import agents, protocol

    seen: list[tuple[int, set]] = []  # per OmniRL run: (demonstration steps observed, their tags)

    class Recording(agents.OmniRLAgent):
        def reset(self, suite, seeds):
            super().reset(suite, seeds)
            seen.append((0, set()))

        def observe(self, obs, actions, rewards, next_obs, terminated, truncated, tags):
            demo = tags != 7
            n, t = seen[-1]
            seen[-1] = (n + int(demo.sum()), t | set(tags[demo].tolist()))
            super().observe(obs, actions, rewards, next_obs, terminated, truncated, tags)

    monkeypatch.setattr(protocol, "OmniRLAgent", Recording)
    cfg = load_config(EvaluationConfig, {"suites": ["anymdp_1"], "n_tasks": 4, "n_episodes": 6, "agents": ["omnirl"],
                                         "modes": ["online", "offline", "imitation"], "demo_episodes": 20,
                                         "demo_noise": 0.5, "checkpoint": None, "progress": False})
    results = evaluate(cfg, model=tiny_model(ns_max=1), log=None)
    assert [r.agent for r in results] == ["OmniRL", "OmniRL (offline)", "OmniRL (imitation)"] * 2
    assert [r.info.get("reward", "sampled") for r in results] == ["sampled"] * 3 + ["expected"] * 3  # bandits
    assert all(r.returns.shape == (4, 6) and np.isfinite(r.returns).all() for r in results)
    assert seen[3:] == seen[:3]  # the expected-reward rows rerun the same runs, with the same contexts
    (n_on, tags_on), (n_off, tags_off), (n_im, tags_im) = seen[:3]
    assert n_on == 0 and tags_on == set()
    assert n_off == n_im == 4 * 20  # bandit episodes are one pull: 20 demonstration steps per run
    assert tags_off == {3, 6} and tags_im == {3}


@pytest.mark.parametrize("where,started", [({"devices": [0, 1]}, ["device 1", "device 0"]),
                                           ({"cpu_processes": 2}, ["a CPU process"] * 2)])
def test_suites_spread_over_devices_give_the_results_of_one_process(tmp_path, where, started):
    from omnirl_core.evaluation import evaluate_on_devices

    cfg = load_config(EvaluationConfig, {"suites": ["frozenlake", "darkroom_6"], "n_tasks": 2, "n_episodes": 4,
                                         "agents": ["random", "oracle"], "checkpoint": None, "progress": False,
                                         "tql_eval_every": 2, **where})
    logs: list[str] = []
    (tmp_path / "devices" / "frozenlake").mkdir(parents=True)
    (tmp_path / "devices" / "frozenlake" / "999.npz").write_bytes(b"")  # an earlier run's file: not read back
    spread = evaluate_on_devices(cfg, tmp_path, log=logs.append)
    here = evaluate(cfg, log=None)
    assert sorted(line for line in logs if "started" in line) == [f"darkroom_6: started on {started[0]}",
                                                                  f"frozenlake: started on {started[1]}"]
    assert [(r.suite, r.agent) for r in spread] == [(r.suite, r.agent) for r in here]
    for a, b in zip(spread, here):
        assert np.array_equal(a.returns, b.returns, equal_nan=True) and np.array_equal(a.valid, b.valid)


def test_config_rejects_unknown_suites_and_agents():
    from omnirl_core.workbook import ConfigError

    with pytest.raises(ConfigError, match="suites"):
        load_config(EvaluationConfig, {"suites": ["nope"]})
    with pytest.raises(ConfigError, match="agents"):
        load_config(EvaluationConfig, {"agents": ["dqn"]})


# ---------------------------------------------------------------------------------------------- checkpoints
def _save(path, model, cfg):
    from omnirl_core.training.checkpoints import tensor_digest

    sd = model.state_dict()
    torch.save({"format": "omnirl-checkpoint", "model": sd, "model_config": config_to_dict(cfg),
                "checksums": {"model": tensor_digest(sd)}}, path)


def test_checkpoint_round_trip(tmp_path, anymdp16):
    model = tiny_model(seed=3)
    _save(tmp_path / "checkpoint.pt", model, model.cfg)
    loaded = load_model(tmp_path / "checkpoint.pt", tiny_config())
    obs = torch.tensor([0, 1, 2])
    assert torch.allclose(model.act(obs)[0], loaded.act(obs)[0])
    a = run_agent(anymdp16, OmniRLAgent(model), 1, seed=0)
    b = run_agent(anymdp16, OmniRLAgent(load_model(tmp_path / "checkpoint.pt")), 1, seed=0)
    assert np.array_equal(a.returns, b.returns)


def test_checkpoint_from_another_config_fails_clearly(tmp_path):
    model = tiny_model(hidden_size=48, intermediate_size=64)
    _save(tmp_path / "checkpoint.pt", model, model.cfg)
    with pytest.raises(CheckpointConfigError, match=r"another model configuration(.|\n)*hidden_size"):
        load_model(tmp_path / "checkpoint.pt", tiny_config())
    # weights that do not fit the configuration they claim
    _save(tmp_path / "bad.pt", model, tiny_config())
    with pytest.raises(CheckpointConfigError, match="do not fit"):
        load_model(tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointConfigError, match="not a readable"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointConfigError, match="no such"):
        load_model(tmp_path / "missing.pt")


def test_shipped_checkpoint_runs_where_a_shipped_model_covers_the_suite():
    from omnirl_core.evaluation import shipped_model_for
    from omnirl_core.evaluation.protocol import SHIPPED

    cfg = load_config(EvaluationConfig, {"suites": ["anymdp_1", "garnet_64"], "n_tasks": 4, "n_episodes": 20,
                                         "agents": ["omnirl"], "checkpoint": SHIPPED, "progress": False})
    logs: list[str] = []
    res = evaluate(cfg, log=logs.append)
    # bandits: the sampled-reward row, then the same runs scored by the chosen arm's expected reward
    assert [(r.suite, r.agent, r.info.get("reward")) for r in res] == [("anymdp_1", "OmniRL", None),
                                                                       ("anymdp_1", "OmniRL", "expected")]
    assert np.isfinite(res[0].scores).all() and res[0].returns.shape == (4, 20)
    assert any("garnet_64: OmniRL skipped (no shipped model covers tasks with 64 states" in m for m in logs)
    assert shipped_model_for(1).ns_max >= 1
    # a user checkpoint that is too small for a suite is skipped with the reason, not a crash
    small = OmniRL(ModelConfig(backbone="rwkv7", layout="compact", ns_max=1, na=5, hidden_size=16, num_layers=1,
                               intermediate_size=16, head_dim=8, backend="torch"))
    cfg.checkpoint = None
    logs.clear()
    res = evaluate(cfg, model=small, log=logs.append)
    assert [r.suite for r in res] == ["anymdp_1", "anymdp_1"]
    assert any("at most 1 observation ids, the suite has 64" in m for m in logs)


def _wide_task(na: int):
    """One state, ``na`` arms; the last arm pays 1."""
    from omnirl_core.world import Task

    reward = np.zeros((1, na))
    reward[0, -1] = 1.0
    return Task.from_arrays(np.ones((1, na, 1)), reward, max_steps=4)


@pytest.mark.parametrize("na,skipped", [(6, True), (3, False)])
def test_a_suite_with_more_actions_than_the_model_is_skipped(na, skipped):
    from omnirl_core.evaluation import config_suite, register_suite, unregister_suite

    name = f"wide_{na}"
    register_suite(name, lambda n, **_: task_suite(name, [_wide_task(na)] * n), n_obs=1, na=na)
    try:
        cfg = load_config(EvaluationConfig, {"suites": [name], "n_tasks": 2, "n_episodes": 3, "agents": ["omnirl"],
                                             "checkpoint": None, "progress": False})
        logs: list[str] = []
        res = evaluate(cfg, model=tiny_model(ns_max=4, na=5), log=logs.append)
        if skipped:  # the model could not play action 5: skipped with the reason, not a crash
            assert res == [] and f"{name}: OmniRL skipped (the model takes at most 5 actions, the suite has 6)" in logs
            with pytest.raises(ValueError, match="suite wide_6 has 6 actions, the model .* only 5"):
                OmniRLAgent(tiny_model(ns_max=4, na=5)).reset(config_suite(cfg, name), [0, 1])
        else:  # fewer actions are fine: the model's action a plays a mod 3
            assert res and {r.suite for r in res} == {name} and not any("OmniRL skipped" in m for m in logs)
            assert np.isfinite(res[0].returns).all()
    finally:
        unregister_suite(name)


def test_score_curves_use_a_log_steps_axis_from_the_first_step(tmp_path):
    from omnirl_core.views import plot_curves

    cfg = load_config(EvaluationConfig, {"suites": ["frozenlake"], "n_tasks": 2, "n_episodes": 12,
                                         "agents": ["random", "oracle"], "checkpoint": None, "progress": False,
                                         "tql_eval_every": 3})
    figs = plot_curves(evaluate(cfg, log=None), tmp_path)
    ax = figs["frozenlake"].axes[1]
    assert ax.get_xscale() == "log" and ax.get_xlim()[0] == 1
    assert all(tick >= 1 for tick in ax.get_xticks() if ax.get_xlim()[0] <= tick <= ax.get_xlim()[1])
    assert (tmp_path / "curves_frozenlake.png").is_file()

    assert figs["frozenlake"].axes[0].get_xscale() == "log"  # episodes too: budgets differ a hundredfold
    # one colour per agent, the same in every figure; a panel of two points is not drawn, and says why
    from omnirl_core.views.evaluation import agent_colour

    assert agent_colour("TQL-UCB (c=10, H=50)") == agent_colour("TQL-UCB (c=0.1, H=4000)") != agent_colour("oracle")
    assert agent_colour("OmniRL-tiny (shipped)") != agent_colour("OmniRL")
    short = plot_curves(evaluate(load_config(EvaluationConfig, {**cfg.__dict__, "n_episodes": 6}), log=None))
    assert "at most 2 point(s)" in short["frozenlake"]
