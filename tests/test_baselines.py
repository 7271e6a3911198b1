"""Baselines scored as the paper scores them: TQL-UCB and PPO on test episodes after every ``eval_every``
training episodes, PPO learning (and a frozen PPO not), CQL trained on the offline mode's demonstrations."""

from __future__ import annotations

import numpy as np
import pytest

from omnirl_core.evaluation import (
    EvaluationConfig,
    NoisyOracleAgent,
    OracleAgent,
    RandomAgent,
    RunResult,
    TQLAgent,
    build_suite,
    run_agent,
    table_metrics,
    tune_tql,
    write_report,
)
from omnirl_core.evaluation.agents import OmniRLAgent
from omnirl_core.evaluation.baselines import run_tql
from omnirl_core.evaluation.models import load_shipped
from omnirl_core.evaluation.offline import CQL_MISSING, collect_demonstrations, have_d3rlpy, run_cql
from omnirl_core.evaluation.tested import play_policy, run_tested
from omnirl_core.workbook import ConfigError, load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _one_hot(actions: np.ndarray, na: int) -> np.ndarray:
    return np.eye(na)[actions]


# ---------------------------------------------------------------------------------------------- test episodes
def test_playing_the_oracle_policy_gives_the_oracle_return():
    suite = build_suite("frozenlake", 3)
    probs = _one_hot(suite.oracle_actions, suite.na)
    assert np.allclose(play_policy(suite, probs, 4, [1, 2, 3]), suite.r_oracle)  # deterministic task
    anymdp = build_suite("anymdp_16", 4)
    got = play_policy(anymdp, _one_hot(anymdp.oracle_actions, anymdp.na), 300, [5, 6, 7, 8])
    spread = np.abs(anymdp.r_oracle) + np.abs(anymdp.r_random)
    assert np.all(np.abs(got - anymdp.r_oracle) < 0.15 * spread), (got, anymdp.r_oracle)


def test_tql_greedy_test_policy_has_no_bonus_and_shares_ties():
    suite = build_suite("anymdp_16", 2)
    agent = TQLAgent(c=5.0)
    agent.reset(suite, [0, 1])
    agent.learner.Q[:] = 0.0
    agent.learner.Q[0, 3] = [1.0, 2.0, 2.0, 0.0, -1.0]
    p = agent.test_policy()
    assert p.shape == (2, suite.n_obs, suite.na)
    assert np.allclose(p[0, 3], [0, 0.5, 0.5, 0, 0]) and np.allclose(p[1, 3], 0.2)


def test_tested_runs_leave_training_alone_and_count_only_training_steps():
    suite = build_suite("anymdp_16", 4)
    tested, training = run_tested(suite, TQLAgent(c=0.5), 30, eval_every=10, eval_episodes=3, seed=0)
    plain = run_agent(suite, TQLAgent(c=0.5), 30, seed=0)
    assert np.array_equal(training.returns, plain.returns, equal_nan=True)  # testing does not perturb training
    assert tested.returns.shape == (4, 3) and np.isfinite(tested.returns).all()
    assert np.array_equal(tested.steps, plain.steps[:, 9::10])  # training steps after 10, 20, 30 episodes
    assert tested.info["episode_index"] == [10, 20, 30] and tested.info["scoring"] == "test"
    again, _ = run_tested(suite, TQLAgent(c=0.5), 30, eval_every=10, eval_episodes=3, seed=0)
    assert np.array_equal(again.returns, tested.returns)
    # a step cap leaves the test points a run did not reach empty
    capped, _ = run_tested(suite, TQLAgent(c=0.5), 30, eval_every=10, eval_episodes=3, seed=0, max_steps=300)
    assert np.isnan(capped.returns).any() and np.isfinite(capped.returns).any()
    assert np.array_equal(np.isnan(capped.returns), np.isnan(capped.steps))


def test_greedy_tql_on_frozenlake_scores_the_oracle_where_its_training_episodes_still_explore():
    suite = build_suite("frozenlake", 4)
    tested = run_tql(suite, 400, c=1.0, gamma=0.9, eval_every=100, eval_episodes=2, seed=0)
    training = run_tql(suite, 400, c=1.0, gamma=0.9, scoring="training", seed=0)
    assert np.allclose(tested.scores, 1.0)  # the greedy policy has the shortest path from the first test point
    assert np.nanmean(training.scores[:, -100:]) < 0.95  # while the bonus still sends episodes astray (0.87)


def test_tune_tql_scores_on_test_episodes_by_default_and_on_training_episodes_on_request():
    suite = build_suite("anymdp_16", 2)
    res, scores = tune_tql(suite, [0.1, 1.0], 20, eval_every=10)
    assert res.returns.shape == (2, 2) and set(scores) == {0.1, 1.0} and res.info["scoring"] == "test"
    old, _ = tune_tql(suite, [0.1, 1.0], 20, scoring="training")
    assert old.returns.shape == (2, 20) and old.info["scoring"] == "training"
    with pytest.raises(Exception, match="no test point"):
        run_tql(suite, 5, eval_every=10)


def test_report_reads_test_points_as_training_episodes(tmp_path):
    n = 2
    returns = np.tile([0.2, 0.6, 1.0, 0.8], (n, 1))
    res = RunResult("anymdp_16", "TQL-UCB (c=1)", returns, np.tile([50.0, 100, 150, 200], (n, 1)), np.ones(n),
                    np.zeros(n), np.ones(n, bool),
                    info={"episode_index": [100, 200, 300, 400], "eval_every": 100, "eval_episodes": 5})
    m = table_metrics(res, smooth=5)  # 5 evaluated episodes: one test point, no smoothing across points
    assert m["best"] == pytest.approx(1.0) and m["episodes_99"] == 300 and m["steps_99"] == 150
    for two_points in (dict(smooth=10), dict(smooth=5, smooth_tested=200)):  # 10 test episodes, or 200 training
        m = table_metrics(res, **two_points)
        assert m["best"] == pytest.approx(0.9) and m["episodes_99"] == 300  # the window of points 3 and 4
    lines = write_report([res], tmp_path)["curves"].read_text().splitlines()
    assert [line.split(",")[2] for line in lines[1:]] == ["100", "200", "300", "400"]
    res.save(tmp_path / "r.npz")
    assert RunResult.load(tmp_path / "r.npz").info["episode_index"] == [100, 200, 300, 400]


def test_config_needs_a_test_point_within_the_budget():
    with pytest.raises(ConfigError, match="tql_eval_every"):
        load_config(EvaluationConfig, {"n_episodes": 5, "tql_eval_every": 10})
    load_config(EvaluationConfig, {"n_episodes": 5, "tql_eval_every": 10, "tql_scoring": "training"})
    with pytest.raises(ConfigError, match="ppo_eval_every"):
        load_config(EvaluationConfig, {"n_episodes": 50, "agents": ["ppo"]})


# ---------------------------------------------------------------------------------------------- PPO
@pytest.mark.slow
def test_ppo_learns_bandits_and_a_frozen_ppo_does_not():
    """12 unseen 5-armed bandits, 800 pulls: the test score (20 greedy pulls per point, every 200 pulls) of PPO
    ends near the oracle's (measured 1.02 over the last two points); the same PPO with learning rate 0 stays at the
    score of its initial arbitrary arms (0.27), and one trained on rewards drawn at random from its own earlier
    rewards (the test episodes' rewards kept true) reaches 0.43: both fail the bar."""
    pytest.importorskip("stable_baselines3")
    from omnirl_core.evaluation import run_ppo

    suite = build_suite("anymdp_1", 12)
    kw = dict(eval_every=200, eval_episodes=20, n_steps=128)
    learned = run_ppo(suite, 800, **kw)
    frozen = run_ppo(suite, 800, learning_rate=0.0, **kw)
    late, late_frozen = np.nanmean(learned.scores[:, -2:]), np.nanmean(frozen.scores[:, -2:])
    assert learned.returns.shape == (12, 4) and learned.info["policy"] == "deterministic"
    assert late > 0.8, late
    assert late_frozen < 0.5, late_frozen  # a PPO that does not learn fails the bar above


# ---------------------------------------------------------------------------------------------- CQL
def test_demonstrations_are_what_omnirl_offline_sees():
    suite = build_suite("anymdp_16", 3)
    demos = collect_demonstrations(suite, NoisyOracleAgent(0.3), 4, seed=0)
    seen = [[] for _ in range(3)]

    class Recording(RandomAgent):
        def observe(self, obs, actions, rewards, next_obs, terminated, truncated, tags):
            for b in np.flatnonzero(tags != 7):
                seen[b].append((obs[b], actions[b], rewards[b], next_obs[b], terminated[b], truncated[b]))

    run_agent(suite, Recording(), 2, seed=0, demo=NoisyOracleAgent(0.3), demo_episodes=4)
    for b in range(3):
        d = demos[b]
        got = list(zip(d["obs"], d["actions"], d["rewards"], d["next_obs"], d["terminated"], d["truncated"]))
        assert got == seen[b]
        assert int((d["terminated"] | d["truncated"]).sum()) == 4


def test_cql_without_d3rlpy_names_the_extra(monkeypatch):
    from omnirl_core.evaluation import offline

    monkeypatch.setattr(offline, "have_d3rlpy", lambda: False)
    with pytest.raises(ImportError, match=r"optional extra cql\): pip install -e \.\[cql\]"):
        run_cql(build_suite("frozenlake", 1), 2, demo=OracleAgent(), demo_episodes=1)
    assert "\n" not in CQL_MISSING


@pytest.mark.slow
@pytest.mark.skipif(not have_d3rlpy(), reason="d3rlpy is not installed (" + CQL_MISSING + ")")
def test_cql_on_demonstrations_of_a_good_policy_scores_well_above_random():
    suite = build_suite("frozenlake", 4)
    state = np.random.get_state()[1].copy()
    res = run_cql(suite, 10, demo=NoisyOracleAgent(0.3), demo_episodes=10, n_steps=1000)
    rand = run_agent(suite, RandomAgent(), 10)
    assert np.array_equal(np.random.get_state()[1], state)  # the global numpy generator is left alone
    assert res.returns.shape == (4, 10) and res.agent == "CQL"
    assert np.nanmean(res.scores) > 0.8 and abs(np.nanmean(rand.scores)) < 0.5, (res.scores, rand.scores)


def test_evaluate_skips_cql_with_the_install_line_when_d3rlpy_is_missing(monkeypatch):
    from omnirl_core.evaluation import evaluate, protocol

    monkeypatch.setattr(protocol, "have_d3rlpy", lambda: False)
    cfg = load_config(EvaluationConfig, {"suites": ["frozenlake"], "n_tasks": 1, "n_episodes": 2, "agents": ["cql"],
                                         "checkpoint": None, "progress": False})
    logs: list[str] = []
    assert evaluate(cfg, log=logs.append) == []
    assert f"frozenlake: CQL skipped ({CQL_MISSING})" in logs


# -------------------------------------------------------------------------------- demonstrations in context
DEMO_BANDITS, DEMO_EPISODES, EARLY_EPISODES = 32, 20, 8


class _ForgetsDemonstrations(OmniRLAgent):
    """Broken on purpose: empties its memory when its own episodes start (every bandit demonstration is one step, so
    all runs leave the demonstration at the same step), so the demonstrations never reach the context."""

    def act(self, obs):
        self._calls = getattr(self, "_calls", 0) + 1
        if self._calls == DEMO_EPISODES + 1:
            self.state = None
        return super().act(obs)


def _demonstration_gain(agent_cls, demo) -> tuple[float, float]:
    """Paired over the bandits (same seeds): mean score of the first EARLY_EPISODES own episodes after
    DEMO_EPISODES demonstrations minus that with an empty context (online); (mean, standard error)."""
    model, info = load_shipped("models/omnirl-tiny-bandit")
    suite = build_suite("anymdp_1", DEMO_BANDITS)
    online = run_agent(suite, agent_cls(model, info.temperature), EARLY_EPISODES, seed=0)
    shown = run_agent(suite, agent_cls(model, info.temperature), EARLY_EPISODES, seed=0, demo=demo,
                      demo_episodes=DEMO_EPISODES)
    d = shown.scores.mean(axis=1) - online.scores.mean(axis=1)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))


@pytest.mark.parametrize("mode", ["offline", "imitation"])
def test_demonstrations_in_context_raise_the_shipped_bandit_models_early_score(mode):
    demo = NoisyOracleAgent(0.3) if mode == "offline" else OracleAgent()  # the protocol's demonstrators
    gain, se = _demonstration_gain(OmniRLAgent, demo)
    assert gain - 3 * se > 0.3, (mode, gain, se)


def test_demonstration_gain_check_rejects_a_model_that_forgets_the_demonstrations():
    gain, se = _demonstration_gain(_ForgetsDemonstrations, OracleAgent())
    assert not gain - 3 * se > 0.3, (gain, se)
