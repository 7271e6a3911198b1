"""Exact planning: the two solvers agree, batches equal singles, exact returns equal loops and rollouts."""

import numpy as np
import pytest

from omnirl_core.world import (
    ORACLE_GAMMA,
    oracle_policy,
    oracle_return,
    policy_iteration,
    policy_return,
    random_return,
    sample_anymdp,
    sample_garnet,
)
from omnirl_core.world.oracle import (
    BEHAVIOUR_GAMMAS,
    acceptance_gamma,
    policy_value,
    stack_tasks,
    stationary_distribution,
    uniform_policy,
    value_iteration,
)


@pytest.fixture(scope="module")
def tasks16():
    return [sample_anymdp(16, 5, seed=s) for s in range(6)]


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.93, ORACLE_GAMMA, acceptance_gamma(16)])
def test_value_iteration_matches_policy_iteration(tasks16, gamma):
    for task in tasks16:
        Q_vi, V_vi = value_iteration(task, gamma, tol=1e-10)
        Q_pi, V_pi = policy_iteration(task, gamma)
        np.testing.assert_allclose(V_vi, V_pi, atol=1e-8 * max(1.0, np.abs(V_pi).max()))
        np.testing.assert_allclose(Q_vi, Q_pi, atol=1e-8 * max(1.0, np.abs(Q_pi).max()))
        # Bellman optimality holds at the fixed point, terminal values are 0
        np.testing.assert_array_equal(V_pi[task.terminal], 0.0)
        backup = task.expected_reward + gamma * task.transition @ Q_pi.max(-1)
        np.testing.assert_allclose(Q_pi, backup, atol=1e-8 * max(1.0, np.abs(Q_pi).max()))


def test_batched_solvers_equal_single_task(tasks16):
    batch = stack_tasks(tasks16)
    Qb, Vb = policy_iteration(batch, ORACLE_GAMMA)
    Qv, Vv = value_iteration(batch, 0.93, tol=1e-10)
    for i, task in enumerate(tasks16):
        np.testing.assert_allclose(Qb[i], policy_iteration(task, ORACLE_GAMMA)[0], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(Vv[i], value_iteration(task, 0.93, tol=1e-10)[1], rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(oracle_policy(batch), np.stack([oracle_policy(t) for t in tasks16]))
    np.testing.assert_allclose(oracle_return(batch), [oracle_return(t) for t in tasks16], rtol=1e-12)
    np.testing.assert_allclose(random_return(batch), [random_return(t) for t in tasks16], rtol=1e-12)


def test_gamma_zero_oracle_is_one_step_greedy(tasks16):
    for task in tasks16:
        np.testing.assert_array_equal(oracle_policy(task, 0.0), task.expected_reward.argmax(-1))


def test_policy_value_matches_linear_algebra(tasks16):
    task = tasks16[0]
    pi = uniform_policy(task.ns, task.na)
    V = policy_value(task, pi, 0.9)
    P_pi = np.einsum("ij,ijk->ik", pi, task.transition)
    r_pi = (pi * task.expected_reward).sum(-1)
    np.testing.assert_allclose(V, r_pi + 0.9 * P_pi @ V, atol=1e-9)


def loop_return(task, probs, horizon):
    """Reference implementation with explicit loops: distribution over states, step by step."""
    d = task.start_prob.copy()
    total = 0.0
    for _ in range(horizon):
        nxt = np.zeros(task.ns)
        for s in range(task.ns):
            if d[s] == 0 or task.terminal[s]:
                continue
            for a in range(task.na):
                for s2 in range(task.ns):
                    p = d[s] * probs[s, a] * task.transition[s, a, s2]
                    total += p * task.reward[s, a, s2]
                    if not task.terminal[s2]:
                        nxt[s2] += p
        d = nxt
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_policy_return_equals_loop(seed):
    task = sample_anymdp(8, 3, seed=seed)
    rng = np.random.default_rng(seed)
    stochastic = rng.dirichlet(np.ones(task.na), size=task.ns)
    deterministic = oracle_policy(task)
    for H in (1, 7, task.horizon):
        assert policy_return(task, stochastic, horizon=H) == pytest.approx(loop_return(task, stochastic, H), rel=1e-10)
        onehot = np.eye(task.na)[deterministic]
        assert policy_return(task, deterministic, horizon=H) == pytest.approx(loop_return(task, onehot, H), rel=1e-10)


def rollout_returns(task, probs, episodes, rng):
    """Monte Carlo episodes with an explicit per-step loop (independent of the package's envs)."""
    returns = np.empty(episodes)
    for e in range(episodes):
        s = rng.choice(task.ns, p=task.start_prob)
        total, steps = 0.0, 0
        while True:
            a = rng.choice(task.na, p=probs[s])
            s2 = rng.choice(task.ns, p=task.transition[s, a])
            total += rng.normal(task.reward[s, a, s2], task.reward_noise[s, a, s2])
            steps += 1
            s = s2
            if task.terminal[s] or steps >= task.max_steps:
                break
        returns[e] = total
    return returns


@pytest.mark.parametrize("ns, seed", [(1, 0), (8, 4), (16, 5)])
def test_policy_return_matches_monte_carlo(ns, seed):
    task = sample_anymdp(ns, 4, seed=seed)
    rng = np.random.default_rng(100 + seed)
    for probs in (np.eye(task.na)[oracle_policy(task)], uniform_policy(task.ns, task.na)):
        mc = rollout_returns(task, probs, 400, rng)
        exact = policy_return(task, probs)  # env horizon: ceil(max_steps) steps
        sem = mc.std(ddof=1) / np.sqrt(mc.size)
        assert abs(mc.mean() - exact) < 4.5 * sem + 1e-9, (mc.mean(), exact, sem)


def test_oracle_beats_random_and_every_behaviour_gamma(tasks16):
    for task in tasks16:
        r_oracle, r_random = oracle_return(task), random_return(task)
        assert r_oracle > r_random
        for gamma in BEHAVIOUR_GAMMAS[:2]:
            assert policy_return(task, oracle_policy(task, gamma)) <= r_oracle + 1e-6 * abs(r_oracle)


def test_stationary_distribution_rows_are_distributions(tasks16):
    for task in tasks16:
        dist = stationary_distribution(task, oracle_policy(task), 10)
        np.testing.assert_allclose(dist.sum(-1), 1.0, atol=1e-9)
        assert np.all(dist >= -1e-12)
        assert np.all(dist[:, task.terminal] < 1.0)


def test_garnet_is_solvable_and_errors_are_clear():
    task = sample_garnet(16, 5, b=2, seed=0)
    assert oracle_return(task) > random_return(task)
    with pytest.raises(ValueError, match="gamma"):
        value_iteration(task, 1.0)
    with pytest.raises(ValueError, match="policy"):
        policy_return(task, np.zeros(3, int))
    with pytest.raises(ValueError, match="actions"):
        policy_return(task, np.full(16, 9))
