"""Tests of omnirl_core.world.learners: behaviour policies and learners on batches of AnyMDP tasks.

Learning tests run each learner for 24K steps per task on 8 AnyMDP(16, 5) tasks in the batched env and
evaluate the exact expected episodic return (oracle.policy_return) of its greedy policy at 17 checkpoints.
Statistical tests use fixed seeds and a significance level of 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from omnirl_core.world import (
    BatchedAnyMDPEnv,
    BatchedPolicy,
    DriftingSoftmaxPolicy,
    ModelBasedLearner,
    NoisyOraclePolicy,
    OraclePolicy,
    QLearner,
    RandomPolicy,
    Task,
    oracle_policy,
    oracle_return,
    policy_return,
    random_return,
    run_policy,
    sample_anymdp,
)
from omnirl_core.world.oracle import TaskArrays, stack_tasks

P_MIN = 1e-3
B = 8


# ---------------------------------------------------------------------------------------------- helpers
def anymdp_batch(base_seed: int = 0, n: int = B, ns: int = 16) -> list[Task]:
    return [sample_anymdp(ns, 5, seed=base_seed + i) for i in range(n)]


def finite_horizon_optimum(tasks) -> np.ndarray:
    """Best expected episodic return of ANY policy (non-stationary DP over each task's horizon).

    This, not the discounted oracle's return, bounds every stationary policy's return: the gamma-oracle
    ignores the step limit, and a learner's greedy policy can beat it on some tasks.
    """
    out = []
    for t in tasks:
        R, V = t.expected_reward, np.zeros(t.ns)
        for _ in range(t.horizon):
            V = (R + t.transition @ V).max(axis=-1)
        out.append(t.start_prob @ V)
    return np.array(out)


def chain_task(ns=3) -> Task:
    """0 -> 1 -> ... -> ns-1 (terminal) whatever the action; reward = action."""
    P = np.zeros((ns, 2, ns))
    for s in range(ns - 1):
        P[s, :, s + 1] = 1.0
    terminal = np.zeros(ns, dtype=bool)
    terminal[-1] = True
    return Task.from_arrays(P, np.tile(np.arange(2.0), (ns, 1)), terminal=terminal, max_steps=50)


def record_transitions(tasks, n_steps, seed=0):
    """Transitions of a uniform-random behaviour in the batched env: list of per-step tuples."""
    env = BatchedAnyMDPEnv(tasks)
    policy = RandomPolicy()
    rng = np.random.default_rng(seed)
    policy.reset(tasks, rng)
    record = []
    run_policy(env, policy, n_steps, rng, seed=seed, callback=lambda t, r: record.append(dict(r)))
    return record


# ---------------------------------------------------------------------------------------------- learning
# name: (constructor, steps per task, minimum gain of the mean normalised score from the first to the last
# quarter of the run, minimum mean score over the last quarter). The reference softmax rule (optimistic
# init, step size about alpha = 0.5) learns slowly and noisily, so it gets a longer run and a low floor.
LEARNERS = {
    "q-ucb": (lambda: QLearner(rule="ucb"), 24_000, 0.3, 0.45),
    "q-softmax": (lambda: QLearner(rule="softmax"), 64_000, 0.3, 0.25),
    "model-based": (lambda: ModelBasedLearner(), 16_000, 0.2, 0.85),
}


@pytest.fixture(scope="module")
def tasks16():
    return anymdp_batch(0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LEARNERS))
def test_learner_improves_and_never_beats_the_optimum(name, tasks16):
    tasks = tasks16
    make, n_steps, gain, floor = LEARNERS[name]
    learner = make()
    rng = np.random.default_rng(1)
    learner.reset(tasks, rng)
    env = BatchedAnyMDPEnv(tasks)
    env.reset(seed=2)
    r_opt = finite_horizon_optimum(tasks)
    r_orc, r_rnd = oracle_return(tasks), random_return(tasks)
    assert np.all(r_orc <= r_opt + 1e-9)

    def score():
        ret = policy_return(tasks, learner.greedy_actions())
        assert np.all(ret <= r_opt + 1e-9), (ret - r_opt).max()
        return float(np.mean((ret - r_rnd) / (r_orc - r_rnd)))

    scores = [score()]
    n_chunks = 16
    for _ in range(n_chunks):
        run_policy(env, learner, n_steps // n_chunks, rng)
        scores.append(score())
    first, last = np.mean(scores[: n_chunks // 4 + 1]), np.mean(scores[-(n_chunks // 4) :])
    assert last >= first + gain, (first, last, np.round(scores, 2))
    assert last >= floor, (first, last, np.round(scores, 2))
    assert np.all(learner.total_steps == n_steps)


def test_learners_learn_bandits():
    tasks = [sample_anymdp(1, 5, seed=i) for i in range(B)]
    R = np.stack([t.expected_reward[0] for t in tasks])
    for learner in (ModelBasedLearner(), QLearner(rule="ucb", H=1.0), QLearner(rule="softmax", H=1.0)):
        rng = np.random.default_rng(0)
        learner.reset(tasks, rng)
        returns = run_policy(BatchedAnyMDPEnv(tasks), learner, 1500, rng, seed=0)
        assert all(len(r) == 1500 for r in returns)  # every pull is an episode
        best = learner.greedy_actions()[:, 0]
        regret = (R.max(1) - R[np.arange(B), best]) / (R.max(1) - R.mean(1))
        assert np.mean(regret) < 0.1, (type(learner).__name__, regret)
        assert not learner.terminal.any()  # the arm state was acted from: never learned terminal


@pytest.mark.slow
def test_model_based_learner_model_converges(tasks16):
    tasks = tasks16[:4]
    learner, behaviour = ModelBasedLearner(), RandomPolicy()
    rng = np.random.default_rng(3)
    learner.reset(tasks, rng)
    behaviour.reset(tasks, rng)
    run_policy(BatchedAnyMDPEnv(tasks), behaviour, 20_000, rng, seed=3, learners=[learner])
    P = np.stack([t.transition for t in tasks])
    n = learner.n_sa
    well = n >= 200
    assert well.sum() > 100
    err = np.abs(learner.model() - P).max(axis=-1)
    # each probability estimate has std <= 0.5 / sqrt(n); allow 5 of them (p ~ 6e-7 each)
    assert np.all(err[well] < 5 * 0.5 / np.sqrt(n[well]))
    # learned terminals are true terminals, and every terminal that was entered is learned
    true_terminal = np.stack([t.terminal for t in tasks])
    assert not (learner.terminal & ~true_terminal).any()
    assert np.array_equal(learner.terminal, true_terminal & (learner.n_into > 0))
    assert np.all(learner.model()[learner.terminal] == 0)
    assert np.all(learner.Q[learner.terminal] == 0)
    assert np.all(learner.planned_episodes > 0)


# ---------------------------------------------------------------------------------------------- batching
def _feed(learner, record, rows=None):
    for r in record:
        sl = slice(None) if rows is None else rows
        learner.observe(
            r["states"][sl],
            r["actions"][sl],
            r["rewards"][sl],
            r["next_states"][sl],
            r["terminated"][sl],
            r["truncated"][sl],
        )
        done = (r["terminated"] | r["truncated"])[sl]
        if done.any():
            learner.end_episode(done)


@pytest.mark.parametrize(
    "make", [lambda: QLearner("ucb"), lambda: QLearner("softmax"), ModelBasedLearner], ids=["q-ucb", "q-softmax", "mb"]
)
def test_batched_updates_equal_separate_updates(make):
    tasks = anymdp_batch(50, n=4)
    record = record_transitions(tasks, 3000, seed=4)
    batched = make()
    batched.reset((4, 16, 5))
    _feed(batched, record)
    for b in range(4):
        single = make()
        single.reset((1, 16, 5))
        _feed(single, record, rows=slice(b, b + 1))
        assert np.allclose(single.Q[0], batched.Q[b], rtol=0, atol=1e-12)
        assert np.array_equal(single.n_sa[0], batched.n_sa[b])
        assert np.array_equal(single.terminal[0], batched.terminal[b])
        if isinstance(single, ModelBasedLearner):
            assert np.allclose(single.bonus[0], batched.bonus[b], rtol=0, atol=1e-12)
            assert np.allclose(single.reward_std[0], batched.reward_std[b], rtol=0, atol=1e-12)


GAMMAS = np.array([0.9, 0.5, 0.99, 0.93])
SCALES = np.array([0.01, 0.3, 1.0, 0.005])


@pytest.mark.parametrize(
    "make",
    [lambda g, x: QLearner("ucb", gamma=g, alpha=x), lambda g, x: QLearner("softmax", gamma=g, alpha=x),
     lambda g, x: ModelBasedLearner(gamma=g, c=x)],
    ids=["q-ucb", "q-softmax", "mb"],
)
def test_per_task_hyperparameters_equal_separate_scalar_learners(make):
    tasks = anymdp_batch(51, n=4)
    record = record_transitions(tasks, 3000, seed=5)
    batched = make(GAMMAS, SCALES)
    batched.reset((4, 16, 5))
    if isinstance(batched, QLearner):  # optimistic init follows each task's gamma
        assert np.allclose(batched.Q[:, 0, 0], 1.0 / (1.0 - GAMMAS))
    else:
        assert np.allclose(batched.bonus[:, 0, 0], SCALES / (1.0 - GAMMAS) * 0.01)
    _feed(batched, record)
    for b in range(4):
        single = make(float(GAMMAS[b]), float(SCALES[b]))
        single.reset((1, 16, 5))
        _feed(single, record, rows=slice(b, b + 1))
        assert np.allclose(single.Q[0], batched.Q[b], rtol=1e-12, atol=1e-12)
        if isinstance(single, ModelBasedLearner):
            assert np.allclose(single.bonus[0], batched.bonus[b], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="per-task"):
        make(GAMMAS, SCALES).reset((3, 16, 5))
    with pytest.raises(ValueError):
        make(np.array([0.5, 1.0]), 0.1)
    with pytest.raises(ValueError):
        make(0.5, np.array([[0.1]]))


def test_q_learner_update_rules_by_hand():
    task = chain_task()
    for rule in ("ucb", "softmax"):
        q = QLearner(rule=rule, gamma=0.9, alpha=0.5, H=3.0)
        q.reset([task])
        q.observe([0], [1], [2.0], [1], [False], [False])
        # N = 1: ratio (H + 1) / (H + 1) = 1; target = 2 + 0.9 * 10 (optimistic init 1 / (1 - 0.9))
        lr = 1.0 if rule == "ucb" else 0.5
        assert q.Q[0, 0, 1] == pytest.approx(10 + lr * (2 + 9 - 10))
        q.observe([1], [0], [1.0], [2], [True], [False])
        assert q.Q[0, 1, 0] == pytest.approx(10 + lr * (1 - 10))  # terminated: target is r alone
        assert q.terminal[0, 2] and np.all(q.Q[0, 2] == 0)
        q.observe([0], [1], [2.0], [1], [False], [False])
        ratio = 4.0 / 5.0
        lr2 = ratio if rule == "ucb" else 0.5 * np.sqrt(ratio)
        prev = 10 + lr * (2 + 9 - 10)
        target = 2 + 0.9 * q.Q[0, 1].max()
        assert q.Q[0, 0, 1] == pytest.approx(prev + lr2 * (target - prev))


def test_softmax_rule_samples_its_action_probs():
    q = QLearner(rule="softmax", H=10.0)
    q.reset((1, 2, 5))
    q.Q[0, 0] = [1.0, 1.5, 0.2, 1.4, 0.9]
    q.n_s[0, 0] = 7  # stiffness (10 + 1 + 7) / 11
    probs = q.action_probs()[0, 0]
    z = q.Q[0, 0] - 1.5
    expected = np.exp(z / z.std() * 18 / 11)
    assert np.allclose(probs, expected / expected.sum())
    rng = np.random.default_rng(0)
    counts = np.bincount(np.concatenate([q.act([0], rng) for _ in range(20_000)]), minlength=5)
    assert stats.chisquare(counts, 20_000 * probs).pvalue > P_MIN


def test_ucb_acts_on_unvisited_actions_first_and_bonus_shape():
    q = QLearner(rule="ucb", c=2.0)
    q.reset((1, 2, 3))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(3):
        a = int(q.act([0], rng)[0])
        assert a not in seen
        seen.add(a)
        q.observe([0], [a], [0.0], [1], [False], [False])
    assert seen == {0, 1, 2}
    probs = q.action_probs()
    assert np.allclose(probs.sum(-1), 1)
    assert np.allclose(probs[0, 1], 1 / 3)  # state 1 unvisited: every action tied at an infinite bonus


def test_model_based_planning_sweep_by_hand():
    task = chain_task()
    m = ModelBasedLearner(gamma=0.5, c=1.0, prior=0.01)
    m.reset([task])
    assert np.allclose(m.bonus, 1.0 / 0.5 * 0.01)
    m.observe([0], [1], [1.0], [1], [False], [False])
    m.observe([1], [1], [3.0], [2], [True], [False])
    m.end_episode([True])
    P = m.model()[0]
    assert P[0, 1, 1] == pytest.approx(1.01 / 1.03) and np.all(P[2] == 0)
    # one sweep from Q = 0: Q(s, a) = sum_s' P r_mean
    assert m.Q[0, 0, 1] == pytest.approx(P[0, 1, 1] * 1.0)
    assert m.Q[0, 1, 1] == pytest.approx(P[1, 1, 2] * 3.0)
    V1 = m.Q[0].max(axis=-1)
    assert V1[2] == 0
    m.end_episode([True])  # the second sweep bootstraps from the first one's values (terminal: 0)
    assert m.Q[0, 0, 1] == pytest.approx(P[0, 1, 1] * (1.0 + 0.5 * V1[1]) + P[0, 1, 0] * 0.5 * V1[0])
    assert m.Q[0, 1, 1] == pytest.approx(P[1, 1, 2] * 3.0 + 0.5 * (P[1, 1, 0] * V1[0] + P[1, 1, 1] * V1[1]))
    r_std = max(np.std(m.r_mean[0]), 0.01)
    assert m.bonus[0, 0, 1] == pytest.approx(1 / 0.5 * r_std / np.sqrt(2))
    assert m.bonus[0, 0, 0] == pytest.approx(1 / 0.5 * r_std / np.sqrt(1))
    with pytest.raises(ValueError):
        m.end_episode([True, False])


def test_model_based_acts_on_randomised_bonus():
    m = ModelBasedLearner()
    m.reset((1, 2, 3))
    m.Q[0, 0] = [0.0, 0.5, 0.4]
    m.bonus[0, 0] = [0.0, 0.0, 1.0]
    rng = np.random.default_rng(0)
    acts = np.concatenate([m.act([0], rng) for _ in range(4000)])
    # argmax(Q + b U): action 2 wins when 0.4 + U > 0.5, i.e. with probability 0.9; action 0 never
    assert set(acts) == {1, 2}
    assert stats.binomtest(int((acts == 2).sum()), 4000, 0.9).pvalue > P_MIN
    assert np.array_equal(m.greedy_actions()[0], [1, 0])


def test_model_based_bandit_values_do_not_bootstrap():
    # Every pull of a bandit terminates while the arm state is acted from again: values must stay r_mean.
    m = ModelBasedLearner(gamma=0.9)
    m.reset((1, 1, 3))
    for a, r in ((0, 1.0), (1, 2.0), (2, 0.5), (1, 4.0)):
        m.observe([0], [a], [r], [0], [True], [False])
        m.end_episode([True])
    m.end_episode([True])
    assert not m.terminal.any()
    assert np.allclose(m.Q[0, 0], [1.0, 3.0, 0.5])
    q = QLearner(rule="ucb", gamma=0.9, H=1.0)
    q.reset((1, 1, 3))
    q.observe([0], [1], [2.0], [0], [True], [False])
    assert q.Q[0, 0, 1] == pytest.approx(2.0) and not q.terminal.any()  # step size 1 at N = 1, target r


# ---------------------------------------------------------------------------------------------- random branches
def _action_counts(policy, n, na=5, ns=4, seed=0):
    rng = np.random.default_rng(seed)
    policy.reset((16, ns, na), rng)
    counts = np.zeros(na, dtype=np.int64)
    for _ in range(n):
        counts += np.bincount(policy.act(rng.integers(0, ns, size=16), rng), minlength=na)
    return counts


def test_random_policy_covers_every_action_uniformly():
    counts = _action_counts(RandomPolicy(), 2000)
    assert counts[-1] > 0 and np.all(counts > 0)
    assert stats.chisquare(counts).pvalue > P_MIN


def test_drifting_softmax_can_pick_every_action():
    counts = _action_counts(DriftingSoftmaxPolicy(logit_scale_mean=0.0), 2000)  # uniform tables
    assert counts[-1] > 0
    assert stats.chisquare(counts).pvalue > P_MIN


def test_noisy_oracle_random_branch_covers_every_action():
    tasks = anymdp_batch(0)
    pol = NoisyOraclePolicy(gamma=0.93, eps0=1.0, decay_max=0.0)
    rng = np.random.default_rng(0)
    pol.reset(tasks, rng)
    counts = np.zeros(5, dtype=np.int64)
    for _ in range(2000):
        a, was_random = pol.act_info(rng.integers(0, 16, size=B), rng)
        assert was_random.all()
        counts += np.bincount(a, minlength=5)
    assert counts[-1] > 0
    assert stats.chisquare(counts).pvalue > P_MIN


def test_noisy_oracle_decays_to_the_oracle():
    tasks = anymdp_batch(0)
    pol = NoisyOraclePolicy(gamma=0.994)
    rng = np.random.default_rng(5)
    pol.reset(tasks, rng)
    assert np.all((pol.decay >= 0) & (pol.decay <= 1 / 80))
    oracle = oracle_policy(tasks, 0.994)
    rows = np.arange(B)
    n_random = np.zeros(B)
    for k in range(1, 3001):
        s = rng.integers(0, 16, size=B)
        eps_before = pol.eps.copy()
        a, was_random = pol.act_info(s, rng)
        assert np.all(a[~was_random] == oracle[rows, s][~was_random])
        assert np.allclose(pol.eps, np.maximum(1.0 - k * pol.decay, 0.0))
        assert np.all(pol.eps <= eps_before)
        n_random += was_random
    # expected number of random branches: sum_k eps_k; check each task within 4.5 binomial-ish stds
    k = np.arange(3000)[:, None]
    eps = np.maximum(1.0 - k * pol.decay[None, :], 0.0)
    mean, var = eps.sum(0), (eps * (1 - eps)).sum(0)
    assert np.all(np.abs(n_random - mean) <= 4.5 * np.sqrt(var) + 1)
    probs = pol.action_probs()
    assert np.allclose(probs.sum(-1), 1)


def test_oracle_policy_matches_oracle_module():
    tasks = anymdp_batch(0)
    for gamma in (0.0, 0.5, 0.994):
        pol = OraclePolicy(gamma)
        pol.reset(tasks)
        assert np.array_equal(pol.policy, oracle_policy(tasks, gamma))
        s = np.arange(B) % 16
        assert np.array_equal(pol.act(s, np.random.default_rng(0)), pol.policy[np.arange(B), s])
    g0 = OraclePolicy(0.0)
    g0.reset(tasks)
    assert np.array_equal(g0.policy, np.stack([t.expected_reward.argmax(-1) for t in tasks]))
    with pytest.raises(ValueError, match="true tasks"):
        OraclePolicy(0.9).reset((B, 16, 5))


def test_drifting_softmax_rows_stay_probability_vectors():
    pol = DriftingSoftmaxPolicy(drift_scale_mean=0.05)  # strong drift so that clipping happens
    rng = np.random.default_rng(0)
    pol.reset((B, 16, 5), rng)
    start = pol.action_probs()
    assert np.allclose(start.sum(-1), 1) and np.all(start >= 0)
    clipped = False
    for _ in range(1000):
        pol.act(rng.integers(0, 16, size=B), rng)
        p = pol.probs
        assert np.all(p >= 0) and np.allclose(p.sum(-1), 1, atol=1e-12)
        clipped |= bool((p == 0).any())
    assert clipped
    assert not np.allclose(pol.probs, start)
    still = DriftingSoftmaxPolicy(drift_scale_mean=0.0)
    still.reset((2, 3, 5), rng)
    before = still.probs.copy()
    for _ in range(50):
        still.act(np.zeros(2, dtype=int), rng)
    assert np.allclose(still.probs, before)


# ---------------------------------------------------------------------------------------------- returns
def _first_episode_returns(tasks, policy, n_episodes, seed):
    """Returns of the first n_episodes[b] episodes of env b (fixed in advance, so the sample is unbiased)."""
    env = BatchedAnyMDPEnv(tasks)
    rng = np.random.default_rng(seed)
    policy.reset(tasks, rng)
    returns = [[] for _ in tasks]
    env.reset(seed=seed)
    while any(len(r) < n for r, n in zip(returns, n_episodes)):
        for r, got in zip(returns, run_policy(env, policy, 2000, rng)):
            r.extend(got)
    return [np.array(r[:n]) for r, n in zip(returns, n_episodes)]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["random", "oracle"])
def test_empirical_return_matches_exact_return(which):
    """Mean episodic return in the batched env vs the exact return of the same policy.

    Random-policy returns on tasks with pitfalls are short and very skewed (skewness ~4), so each task gets
    as many episodes as fit in about 20K steps, computed in advance from the exact mean episode length.
    """
    tasks = anymdp_batch(100)
    policy = RandomPolicy() if which == "random" else OraclePolicy(0.994)
    probs = np.full((B, 16, 5), 0.2) if which == "random" else np.eye(5)[oracle_policy(tasks, 0.994)]
    exact = policy_return(tasks, probs)
    assert np.allclose(exact, random_return(tasks) if which == "random" else oracle_return(tasks, 0.994))
    ones = stack_tasks(tasks)
    mean_length = policy_return(
        TaskArrays(ones.transition, np.ones_like(ones.reward), ones.start_prob, ones.terminal, ones.horizon), probs
    )
    n_episodes = np.maximum((20_000 / mean_length).astype(int), 100)
    returns = _first_episode_returns(tasks, policy, n_episodes, seed=7)
    z = np.array([(r.mean() - e) / (r.std(ddof=1) / np.sqrt(len(r))) for r, e in zip(returns, exact)])
    # pooled over tasks: sum z^2 ~ chi2(B) by the CLT
    assert stats.chi2.sf(np.sum(z**2), B) > P_MIN, z


# ---------------------------------------------------------------------------------------------- interface
def test_interface_errors():
    for pol in (RandomPolicy(), QLearner(), ModelBasedLearner()):
        with pytest.raises(RuntimeError, match="reset"):
            pol.act(np.zeros(2, dtype=int), np.random.default_rng(0))
        pol.reset((2, 4, 3), np.random.default_rng(0))
        with pytest.raises(ValueError, match="shape"):
            pol.act(np.zeros(3, dtype=int), np.random.default_rng(0))
    q = QLearner()
    q.reset((2, 4, 3))
    with pytest.raises(ValueError):
        q.observe([0, 0], [0, 3], [0.0, 0.0], [1, 1], [False, False], [False, False])
    with pytest.raises(ValueError):
        q.observe([0], [0], [0.0], [1], [False], [False])
    with pytest.raises(ValueError):
        QLearner(rule="greedy")
    assert isinstance(q, BatchedPolicy)


def test_act_info_tags():
    rng = np.random.default_rng(0)
    for pol, expected in (
        (RandomPolicy(), True),
        (DriftingSoftmaxPolicy(), True),
        (QLearner(), False),
        (ModelBasedLearner(), False),
    ):
        pol.reset((3, 4, 5), rng)
        a, was_random = pol.act_info(np.zeros(3, dtype=int), rng)
        assert a.shape == (3,) and np.all((a >= 0) & (a < 5))
        assert np.all(was_random == expected)


def test_run_policy_feeds_every_learner_off_policy():
    tasks = anymdp_batch(0, n=2)
    rng = np.random.default_rng(0)
    behaviour, q, m = RandomPolicy(), QLearner(), ModelBasedLearner()
    for p in (behaviour, q, m):
        p.reset(tasks, rng)
    returns = run_policy(BatchedAnyMDPEnv(tasks), behaviour, 1000, rng, seed=0, learners=[q, m, q])
    assert np.all(q.total_steps == 1000) and np.all(m.total_steps == 1000)  # q listed twice, fed once
    assert np.array_equal(q.n_sa, m.n_sa)
    assert np.all(m.planned_episodes == [len(r) for r in returns])
