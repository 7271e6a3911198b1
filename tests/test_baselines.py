"""Baselines scored as the paper scores them: TQL-UCB and PPO on test episodes after every ``eval_every``
training episodes, PPO learning (and a frozen PPO not), CQL trained on the offline mode's demonstrations."""

from __future__ import annotations

import os

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


# held-out tuning and worker processes (omnirl_core.evaluation.ppo)
TINY_PPO = dict(eval_every=100, eval_episodes=2, n_steps=32, batch_size=32)
GRID = dict(lr_grid=[1e-4, 1e-3], ent_grid=[0.0, 0.01])


def _recording_train(monkeypatch):
    """Replace the PPO run by a record of what it ran on: (task, seed, lr, entropy). Its test returns favour lr
    1e-3 with entropy 0.01 on held-out runs and lr 1e-4 with entropy 0 on the reported runs (their seeds), so a
    tuning on the reported runs chooses another setting."""
    from omnirl_core.evaluation import ppo
    from omnirl_core.evaluation.streams import env_seeds

    calls, reported_seeds = [], [s % 2**31 for s in env_seeds(0, 2)]

    def fake(env, test_env, seed, n_episodes, eval_every, eval_episodes, deterministic, kwargs):
        task = getattr(env, "task", None)
        lr, ent = kwargs["learning_rate"], kwargs["ent_coef"]
        calls.append((task, seed, lr, ent))
        reported = seed in reported_seeds
        value = float(lr == 1e-4 and ent == 0.0) if reported else float(lr == 1e-3 and ent == 0.01)
        K = n_episodes // eval_every
        return np.full(K, value), np.arange(1.0, K + 1) * 100

    monkeypatch.setattr(ppo, "_train", fake)
    return calls


@pytest.mark.parametrize("name", ["anymdp_16", "garnet_16", "frozenlake"])
def test_ppo_held_out_tuning_never_runs_the_grid_on_the_reported_tasks(monkeypatch, name):
    pytest.importorskip("stable_baselines3")
    from omnirl_core.evaluation.ppo import tune_ppo
    from omnirl_core.evaluation.streams import env_seeds

    suite = build_suite(name, 2)
    calls = _recording_train(monkeypatch)
    res, scores = tune_ppo(suite, 200, tune_tasks=3, **GRID, **TINY_PPO)
    reported_seeds = [s % 2**31 for s in env_seeds(0, 2)]
    grid_runs, reported_runs = calls[:12], calls[12:]
    assert len(grid_runs) == 4 * 3 and len(reported_runs) == 2  # the grid on 3 tasks, then the chosen setting once
    for task, seed, _, _ in grid_runs:
        assert seed not in reported_seeds
        if name != "frozenlake":  # AnyMDP and Garnet tune on other tasks; a single task on other seeds
            assert all(not np.array_equal(task.transition, t.transition) for t in suite.tasks)
    assert [(t, s) for t, s, _, _ in reported_runs] == list(zip(suite.tasks, reported_seeds))
    assert {(lr, ent) for _, _, lr, ent in reported_runs} == {(1e-3, 0.01)}  # the setting the tuning chose
    assert max(scores, key=scores.get) == (1e-3, 0.01)
    assert (res.info["learning_rate"], res.info["ent_coef"], res.info["tune_tasks"]) == (1e-3, 0.01, 3)
    assert res.returns.shape == (2, 2) and res.info["tuned_on"].startswith(
        "the suite's environments with 3 other seeds" if name == "frozenlake" else "3 held-out")


def test_ppo_tuning_on_the_reported_tasks_is_still_there(monkeypatch):
    pytest.importorskip("stable_baselines3")
    from omnirl_core.evaluation.ppo import tune_ppo

    suite = build_suite("anymdp_16", 2)
    calls = _recording_train(monkeypatch)
    res, _ = tune_ppo(suite, 200, **GRID, **TINY_PPO)
    assert len(calls) == 4 * 2 and all(any(t is r for r in suite.tasks) for t, *_ in calls)  # no run after the grid
    assert (res.info["learning_rate"], res.info["ent_coef"], res.info["tune_tasks"]) == (1e-4, 0.0, 0)
    assert res.info["tuned_on"] == "the reported tasks"


def test_evaluate_tunes_ppo_on_the_configured_held_out_tasks(monkeypatch):
    pytest.importorskip("stable_baselines3")
    from omnirl_core.evaluation import evaluate

    calls = _recording_train(monkeypatch)
    cfg = load_config(EvaluationConfig, {"suites": ["anymdp_16"], "n_tasks": 2, "n_episodes": 200, "agents": ["ppo"],
                                         "ppo_lr_grid": [1e-4, 1e-3], "ppo_ent_grid": [0.0, 0.01],
                                         "ppo_tune_tasks": 3, "checkpoint": None, "progress": False})
    logs: list[str] = []
    [res] = evaluate(cfg, log=logs.append)
    assert len(calls) == 4 * 3 + 2 and res.info["tune_tasks"] == 3
    assert {(lr, ent) for *_, lr, ent in calls[12:]} == {(1e-3, 0.01)}  # the reported runs: the chosen setting
    assert "anymdp_16: PPO lr=0.001, ent=0.01, tuned on 3 held-out AnyMDP tasks (test-seed indices 50000+)" in logs

def test_ppo_in_worker_processes_gives_the_results_of_one_process():
    """Real PPO runs (2 bandits, 200 pulls, a grid of 2 on 2 held-out bandits): 2 worker processes, the same."""
    pytest.importorskip("stable_baselines3")
    from omnirl_core.evaluation.ppo import tune_ppo

    suite = build_suite("anymdp_1", 2)
    kw = dict(lr_grid=[1e-4, 3e-3], ent_grid=[0.0], tune_tasks=2, **TINY_PPO)
    one, one_scores = tune_ppo(suite, 200, **kw)
    two, two_scores = tune_ppo(suite, 200, processes=2, **kw)
    assert np.isfinite(one.returns).all() and one.returns.shape == (2, 2)
    assert not np.array_equal(one.returns[0], one.returns[1])  # two tasks, two different runs
    assert np.array_equal(one.returns, two.returns) and np.array_equal(one.steps, two.steps)
    assert one_scores == two_scores and one.info == two.info


def test_ppo_workers_end_with_their_parent(tmp_path):
    """A parent killed outright (no cleanup runs) leaves no PPO worker behind."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    code = ("import os, signal, time\n"
            "from omnirl_core.evaluation.ppo import _Runs\n"
            "with _Runs(2) as runs:\n"
            "    [f.result() for f in [runs.pool.submit(os.getpid) for _ in range(4)]]  # the workers are up\n"
            "    futures = [runs.pool.submit(time.sleep, 120) for _ in range(2)]\n"
            "    print(*runs.worker_pids(), flush=True)\n"
            "    time.sleep(0.5)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    log = tmp_path / "parent.log"
    with open(log, "w") as fh:  # a file, not a pipe: a worker left behind would hold a pipe open
        rc = subprocess.run([sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT, timeout=120).returncode
    printed = [line.split() for line in log.read_text().splitlines() if line.split() and
               all(t.isdigit() for t in line.split())]  # the workers' pids (the resource tracker may warn after)
    pids = [int(p) for p in printed[0]] if printed else []
    assert len(pids) == 2 and rc == -signal.SIGKILL, log.read_text()[-2000:]

    def alive(pid: int) -> bool:
        status = Path(f"/proc/{pid}/status")
        try:
            return "\tZ" not in next(x for x in status.read_text().splitlines() if x.startswith("State:"))
        except (OSError, StopIteration):
            return False

    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for p in left:  # this test's own workers, should the check fail
        os.kill(p, signal.SIGKILL)
    assert not left


def test_ppo_counts_are_checked(tmp_path):
    pytest.importorskip("stable_baselines3")
    from omnirl_core.evaluation.ppo import run_ppo, tune_ppo
    from omnirl_core.workbook.errors import InputError

    for key, value in (("ppo_tune_tasks", -1), ("ppo_processes", 0)):
        path = tmp_path / "04_evaluation.yaml"
        path.write_text(f"{key}: {value}\n")
        with pytest.raises(ConfigError) as err:
            load_config(EvaluationConfig, path)
        assert "04_evaluation.yaml" in str(err.value) and key in str(err.value) and str(value) in str(err.value)
    suite = build_suite("anymdp_1", 2)
    for bad in (dict(tune_tasks=-1), dict(processes=0), dict(processes=1.5), dict(tune_tasks=True)):
        with pytest.raises(InputError, match=rf"{next(iter(bad))} {next(iter(bad.values()))!r} is not allowed"):
            tune_ppo(suite, 200, **bad, **TINY_PPO)
    with pytest.raises(InputError, match="processes 0 is not allowed"):
        run_ppo(suite, 200, processes=0, **TINY_PPO)


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
