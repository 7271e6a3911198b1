"""Tests of omnirl_core.world.envs: Gymnasium API, reproducibility, sampling statistics, episode ends, autoreset.

Statistical tests pool every (s, a) row (chi-square on transition counts) or every (s, a, s') cell (z and
variance tests on rewards) into one statistic and require p > 1e-3. Seeds are fixed, so the tests are
deterministic; a correct sampler fails one of them with probability about 1e-3 per test for a fresh seed.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from scipy import stats

from omnirl_core.world import AnyMDPEnv, BatchedAnyMDPEnv, Task, sample_anymdp
from omnirl_core.world.envs import ENV_ID, InvalidActionError, ResetNeeded, register_envs

P_MIN = 1e-3  # significance threshold of the statistical tests


# ---------------------------------------------------------------------------------------------- helpers
def random_task(ns=8, na=5, seed=0, terminals=(5,), max_steps=40.5, noise=0.3, width=4) -> Task:
    """A small task with random banded transitions, Gaussian reward noise and a shuffled observation map."""
    rng = np.random.default_rng(seed)
    P = np.zeros((ns, na, ns))
    for s in range(ns):
        for a in range(na):
            lo = max(0, s - width // 2 + a % 2)
            P[s, a, lo : lo + width] = rng.random(min(width, ns - lo)) + 0.05
    terminal = np.zeros(ns, dtype=bool)
    terminal[list(terminals)] = True
    P[terminal] = 0.0
    P /= np.maximum(P.sum(-1, keepdims=True), 1e-300)
    reward = rng.normal(size=(ns, na, ns))
    reward_noise = noise * rng.random((ns, na, ns))
    start = np.zeros(ns)
    start[:2] = [0.7, 0.3]
    return Task.from_arrays(
        P,
        reward,
        reward_noise=reward_noise,
        start_prob=start,
        terminal=terminal,
        max_steps=max_steps,
        state_mapping=rng.permutation(ns),
    )


def chain_task(ns=4, terminal_last=True, max_steps=100.0) -> Task:
    """Deterministic chain 0 -> 1 -> ... -> ns-1 for every action; reward = 10 * s + a (no noise)."""
    P = np.zeros((ns, 2, ns))
    for s in range(ns - 1):
        P[s, :, s + 1] = 1.0
    terminal = np.zeros(ns, dtype=bool)
    if terminal_last:
        terminal[-1] = True
    else:
        P[-1, :, 0] = 1.0
    reward = 10.0 * np.arange(ns)[:, None] + np.arange(2)[None, :]
    return Task.from_arrays(P, reward, terminal=terminal, max_steps=max_steps, state_mapping=np.arange(ns)[::-1])


def pooled_chi2_pvalue(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> tuple[float, int]:
    """p-value of one chi-square statistic pooled over rows of counts/probs [rows, k].

    Cells with probability 0 must have count 0 (asserted). In each row, cells expected below
    ``min_expected`` are merged into one cell (and into the largest cell if still too small).
    Returns (p-value, degrees of freedom); (1.0, 0) when no row has two outcomes to compare.
    """
    stat, dof = 0.0, 0
    for c, p in zip(counts, probs):
        n = c.sum()
        assert np.all(c[p == 0] == 0), "a zero-probability outcome was sampled"
        if n == 0:
            continue
        e = n * p[p > 0]
        o = c[p > 0].astype(float)
        small = e < min_expected
        if small.any():
            e_big, o_big = list(e[~small]), list(o[~small])
            e_rest, o_rest = e[small].sum(), o[small].sum()
            if e_rest >= min_expected or not e_big:
                e_big.append(e_rest)
                o_big.append(o_rest)
            else:
                i = int(np.argmax(e_big))
                e_big[i] += e_rest
                o_big[i] += o_rest
            e, o = np.array(e_big), np.array(o_big)
        if len(e) < 2:
            continue
        stat += float(((o - e) ** 2 / e).sum())
        dof += len(e) - 1
    if dof == 0:  # nothing random to test (e.g. a single start state)
        return 1.0, 0
    return float(stats.chi2.sf(stat, dof)), dof


def reward_pvalues(sums, sq_sums, counts, mean, std, min_count=20) -> tuple[float, float, int]:
    """(p of the pooled z-test of reward means, p of the pooled two-sided variance test, cells used).

    Cells with noise std 0 must reproduce the mean exactly (asserted); they are not in the tests.
    """
    used = counts >= min_count
    exact = used & (std == 0)
    emp_mean = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    assert np.allclose(emp_mean[exact], mean[exact], atol=1e-12)
    cells = used & (std > 0)
    n = counts[cells].astype(float)
    m = emp_mean[cells]
    z = (m - mean[cells]) / (std[cells] / np.sqrt(n))
    p_mean = float(stats.chi2.sf((z**2).sum(), cells.sum()))
    # (n - 1) s^2 / sigma^2 ~ chi2(n - 1), independent over cells: pool and test both tails.
    ss = sq_sums[cells] - n * m**2
    var_stat = float((ss / std[cells] ** 2).sum())
    dof = float((n - 1).sum())
    p_var = float(2 * min(stats.chi2.sf(var_stat, dof), stats.chi2.cdf(var_stat, dof)))
    return p_mean, p_var, int(cells.sum())


# ---------------------------------------------------------------------------------------------- API
def test_check_env_passes_without_warnings():
    task = random_task()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(ENV_ID, task=task)
        check_env(env.unwrapped)
        env.close()
    messages = [str(w.message) for w in caught]
    assert messages == []


def test_check_env_on_direct_instance():
    env = AnyMDPEnv(task=random_task(seed=3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    # The only remaining warning is about the missing spec (the env was not built by gymnasium.make).
    assert all("spec" in str(w.message) for w in caught)


def test_make_samples_an_anymdp_task():
    env = gym.make(ENV_ID, ns=16, na=5, seed=0)
    task = env.unwrapped.task
    assert task.equals(sample_anymdp(16, 5, seed=0))
    assert env.observation_space == gym.spaces.Discrete(task.n_obs)
    assert env.action_space == gym.spaces.Discrete(5)
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert obs == task.state_mapping[info["state"]]
    obs, reward, terminated, truncated, info = env.step(4)
    assert env.observation_space.contains(obs) and isinstance(reward, float)
    assert info["steps"] == 1 and obs == task.state_mapping[info["state"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


def test_registration_is_idempotent():
    register_envs()
    register_envs()
    assert ENV_ID in gym.registry
    # the module-qualified id imports omnirl_core.world.envs first, so it works without a prior import
    env = gym.make(f"omnirl_core.world.envs:{ENV_ID}", task=chain_task())
    assert isinstance(env.unwrapped, AnyMDPEnv)


def test_constructor_errors():
    with pytest.raises(ValueError, match="ns"):
        AnyMDPEnv()
    with pytest.raises(TypeError):
        AnyMDPEnv(task="not a task")
    with pytest.raises(ValueError, match="render_mode"):
        AnyMDPEnv(task=random_task(), render_mode="human")
    with pytest.raises(ValueError, match=r"share \(ns, na\)"):
        BatchedAnyMDPEnv([random_task(ns=8), random_task(ns=9)])
    with pytest.raises(ValueError):
        BatchedAnyMDPEnv([])


def test_render_ansi():
    env = AnyMDPEnv(task=chain_task(), render_mode="ansi")
    env.reset(seed=0)
    env.step(1)
    text = env.render()
    assert "state 1" in text and "step 1" in text


# ---------------------------------------------------------------------------------------------- reproducibility
def _rollout_single(env, seed, n=300):
    rng = np.random.default_rng(99)  # the action stream is fixed separately
    out = []
    obs, info = env.reset(seed=seed)
    out.append((obs, info["state"]))
    for _ in range(n):
        obs, r, term, trunc, info = env.step(int(rng.integers(0, env.action_space.n)))
        out.append((obs, r, term, trunc, info["state"]))
        if term or trunc:
            obs, info = env.reset()
            out.append((obs, info["state"]))
    return out


def test_single_reset_seed_reproducible_and_global_rng_untouched():
    np.random.seed(12345)
    before = np.random.get_state()
    env = AnyMDPEnv(task=random_task())
    a = _rollout_single(env, seed=7)
    b = _rollout_single(env, seed=7)
    c = _rollout_single(env, seed=8)
    after = np.random.get_state()
    assert a == b
    assert a != c
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


def test_batched_reset_seed_reproducible_and_global_rng_untouched():
    np.random.seed(54321)
    before = np.random.get_state()
    tasks = [random_task(seed=i) for i in range(4)]

    def roll(seed):
        env = BatchedAnyMDPEnv(tasks)
        rng = np.random.default_rng(5)
        obs, info = env.reset(seed=seed)
        trace = [obs.copy(), info["state"].copy()]
        for _ in range(200):
            obs, r, term, trunc, info = env.step(rng.integers(0, 5, size=4))
            trace += [obs, r, term, trunc, info["state"], info["next_state"]]
        return trace

    a, b, c = roll(3), roll(3), roll(4)
    after = np.random.get_state()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


# ---------------------------------------------------------------------------------------------- statistics
def _collect_single(task: Task, n_steps: int, seed: int):
    ns, na = task.ns, task.na
    counts = np.zeros((ns, na, ns), dtype=np.int64)
    sums = np.zeros((ns, na, ns))
    sq = np.zeros((ns, na, ns))
    starts = np.zeros(ns, dtype=np.int64)
    env = AnyMDPEnv(task=task)
    rng = np.random.default_rng(seed + 1)
    _, info = env.reset(seed=seed)
    starts[info["state"]] += 1
    for _ in range(n_steps):
        s = info["state"]
        a = int(rng.integers(0, na))
        _, r, term, trunc, info = env.step(a)
        s2 = info["state"]
        counts[s, a, s2] += 1
        sums[s, a, s2] += r
        sq[s, a, s2] += r * r
        if term or trunc:
            _, info = env.reset()
            starts[info["state"]] += 1
    return counts, sums, sq, starts


def _collect_batched(tasks, n_steps: int, seed: int):
    B, ns, na = len(tasks), tasks[0].ns, tasks[0].na
    S, A, S2 = (np.zeros((n_steps, B), dtype=np.int64) for _ in range(3))
    R = np.zeros((n_steps, B))
    starts = np.zeros((B, ns), dtype=np.int64)
    env = BatchedAnyMDPEnv(tasks)
    rng = np.random.default_rng(seed + 1)
    rows = np.arange(B)
    _, info = env.reset(seed=seed)
    np.add.at(starts, (rows, info["state"]), 1)
    for t in range(n_steps):
        S[t] = info["state"]
        A[t] = rng.integers(0, na, size=B)
        _, R[t], term, trunc, info = env.step(A[t])
        S2[t] = info["next_state"]
        done = term | trunc
        np.add.at(starts, (rows[done], info["state"][done]), 1)
    flat = (((rows[None, :] * ns + S) * na + A) * ns + S2).ravel()
    size = B * ns * na * ns
    shape = (B, ns, na, ns)
    counts = np.bincount(flat, minlength=size).reshape(shape)
    sums = np.bincount(flat, weights=R.ravel(), minlength=size).reshape(shape)
    sq = np.bincount(flat, weights=(R**2).ravel(), minlength=size).reshape(shape)
    return counts, sums, sq, starts


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["handmade", "anymdp"])
def test_single_env_transition_and_reward_statistics(kind):
    task = random_task(seed=11) if kind == "handmade" else sample_anymdp(16, 5, seed=3)
    counts, sums, sq, starts = _collect_single(task, 60_000, seed=21)
    live = ~task.terminal
    p_trans, dof = pooled_chi2_pvalue(counts[live].reshape(-1, task.ns), task.transition[live].reshape(-1, task.ns))
    assert dof > 50 if kind == "handmade" else dof > 20
    assert p_trans > P_MIN, p_trans
    p_start, _ = pooled_chi2_pvalue(starts[None], task.start_prob[None])
    assert p_start > P_MIN
    p_mean, p_var, cells = reward_pvalues(sums, sq, counts, task.reward, task.reward_noise)
    assert cells >= 30
    assert p_mean > P_MIN and p_var > P_MIN, (p_mean, p_var)


@pytest.mark.slow
def test_batched_env_transition_and_reward_statistics():
    tasks = [random_task(seed=30 + i, terminals=(2 + i,)) for i in range(6)]
    counts, sums, sq, starts = _collect_batched(tasks, 25_000, seed=5)
    for b, task in enumerate(tasks):
        live = ~task.terminal
        p, _ = pooled_chi2_pvalue(counts[b][live].reshape(-1, task.ns), task.transition[live].reshape(-1, task.ns))
        assert p > P_MIN, (b, p)
        p_start, _ = pooled_chi2_pvalue(starts[b][None], task.start_prob[None])
        assert p_start > P_MIN
        p_mean, p_var, cells = reward_pvalues(sums[b], sq[b], counts[b], task.reward, task.reward_noise)
        assert cells >= 30
        assert p_mean > P_MIN and p_var > P_MIN, (b, p_mean, p_var)


@pytest.mark.slow
def test_batched_env_statistics_on_anymdp_tasks():
    tasks = [sample_anymdp(16, 5, seed=40 + i) for i in range(4)]
    counts, sums, sq, _ = _collect_batched(tasks, 30_000, seed=9)
    for b, task in enumerate(tasks):
        live = ~task.terminal
        p, _ = pooled_chi2_pvalue(counts[b][live].reshape(-1, task.ns), task.transition[live].reshape(-1, task.ns))
        assert p > P_MIN, (b, p)
        p_mean, p_var, _ = reward_pvalues(sums[b], sq[b], counts[b], task.reward, task.reward_noise)
        assert p_mean > P_MIN and p_var > P_MIN, (b, p_mean, p_var)


def test_chi2_helper_detects_a_wrong_distribution():
    # The pooled test must be able to fail: counts drawn from a slightly different distribution.
    rng = np.random.default_rng(0)
    p = np.array([0.2, 0.3, 0.5])
    q = np.array([0.23, 0.3, 0.47])
    counts = rng.multinomial(20_000, q, size=10)
    assert pooled_chi2_pvalue(counts, np.tile(p, (10, 1)))[0] < P_MIN
    counts = rng.multinomial(20_000, p, size=10)
    assert pooled_chi2_pvalue(counts, np.tile(p, (10, 1)))[0] > P_MIN


# ---------------------------------------------------------------------------------------------- episode ends
@pytest.mark.parametrize("max_steps, length", [(10.0, 10), (10.5, 11), (1.0, 1)])
def test_single_truncation_at_max_steps(max_steps, length):
    task = random_task(terminals=(), max_steps=max_steps)
    env = AnyMDPEnv(task=task)
    env.reset(seed=0)
    for t in range(1, length + 1):
        _, _, term, trunc, info = env.step(0)
        assert not term
        assert info["steps"] == t
        assert trunc == (t == length)
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(0)


def test_step_before_reset_raises():
    with pytest.raises(ResetNeeded, match="reset"):
        AnyMDPEnv(task=chain_task()).step(0)
    with pytest.raises(ResetNeeded, match="reset"):
        BatchedAnyMDPEnv([chain_task()]).step(np.zeros(1, dtype=int))


def test_single_terminal_then_reset_required():
    env = AnyMDPEnv(task=chain_task(ns=3))
    obs, info = env.reset(seed=0)
    assert info["state"] == 0 and obs == 2
    assert env.step(1) == (1, 1.0, False, False, {"state": 1, "steps": 1})
    obs, r, term, trunc, info = env.step(0)
    assert (obs, r, term, trunc, info["state"]) == (0, 10.0, True, False, 2)
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(0)
    env.reset()
    env.step(0)


def test_bandit_terminates_every_step():
    task = sample_anymdp(1, 5, seed=2)
    assert task.is_bandit
    env = AnyMDPEnv(task=task)
    for k in range(20):
        obs, info = env.reset(seed=k)
        obs2, r, term, trunc, info = env.step(k % 5)
        assert term and not trunc and info["steps"] == 1 and obs2 == obs == task.state_mapping[0]
    benv = BatchedAnyMDPEnv(task, num_envs=3)
    benv.reset(seed=0)
    for _ in range(20):
        obs, r, term, trunc, info = benv.step(np.array([0, 2, 4]))
        assert term.all() and not trunc.any() and info["_final_obs"].all()
        assert np.all(info["steps"] == 0) and np.all(info["final_steps"] == 1)


def test_bandit_reward_statistics():
    task = sample_anymdp(1, 5, seed=4)
    env = BatchedAnyMDPEnv(task, num_envs=5)
    env.reset(seed=1)
    rewards = np.array([env.step(np.arange(5))[1] for _ in range(4000)])  # env b always pulls arm b
    mean, std = task.reward[0, :, 0], task.reward_noise[0, :, 0]
    for a in range(5):
        if std[a] == 0:
            assert np.all(rewards[:, a] == mean[a])
        else:
            z = (rewards[:, a].mean() - mean[a]) / (std[a] / np.sqrt(len(rewards)))
            assert abs(z) < 3.3  # two-sided p ~ 1e-3


# ---------------------------------------------------------------------------------------------- invalid actions
@pytest.mark.parametrize("action", [7, 5, -1, 2.5, 2.0, "x", None, True, np.array([1, 2]), np.array([[1]])])
def test_single_invalid_actions_raise(action):
    env = AnyMDPEnv(task=random_task())
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\[0, 5\)") as err:
        env.step(action)
    assert isinstance(err.value, InvalidActionError)
    assert repr(action)[:5] in str(err.value)
    env.step(np.int64(4))  # valid integer types still work after a rejected action
    env.step(np.array(0))


@pytest.mark.parametrize(
    "actions",
    [np.array([0, 1, 5]), np.array([0, -1, 2]), np.array([0.0, 1.0, 2.0]), np.array([0, 1]), [[0, 1, 2]], "abc"],
)
def test_batched_invalid_actions_raise(actions):
    env = BatchedAnyMDPEnv([random_task(seed=i) for i in range(3)])
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"\[0, 5\)"):
        env.step(actions)
    env.step([0, 1, 4])  # lists of ints are fine


# ---------------------------------------------------------------------------------------------- batched semantics
def test_batched_spaces_follow_vector_conventions():
    tasks = [random_task(seed=i) for i in range(3)]
    env = BatchedAnyMDPEnv(tasks)
    assert env.num_envs == 3
    assert env.single_observation_space == gym.spaces.Discrete(8)
    assert env.single_action_space == gym.spaces.Discrete(5)
    assert env.observation_space == gym.spaces.MultiDiscrete([8, 8, 8])
    assert env.action_space == gym.spaces.MultiDiscrete([5, 5, 5])
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert np.array_equal(obs, [t.state_mapping[s] for t, s in zip(tasks, info["state"])])
    env.action_space.seed(0)
    obs, r, term, trunc, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and r.shape == (3,) and r.dtype == np.float64
    assert term.dtype == bool and trunc.dtype == bool


def test_batched_same_step_autoreset():
    # Env 0: 0 -> 1 -> 2 (terminal); env 1: same chain without terminal, truncated after 2 steps.
    env = BatchedAnyMDPEnv([chain_task(ns=3), chain_task(ns=3, terminal_last=False, max_steps=2)])
    obs, info = env.reset(seed=0)
    assert np.array_equal(info["state"], [0, 0]) and np.array_equal(obs, [2, 2])
    obs, r, term, trunc, info = env.step(np.array([1, 0]))
    assert np.array_equal(r, [1.0, 0.0]) and not term.any() and not trunc.any()
    assert np.array_equal(info["state"], [1, 1]) and np.array_equal(info["steps"], [1, 1])
    assert not info["_final_obs"].any()
    obs, r, term, trunc, info = env.step(np.array([0, 1]))
    assert np.array_equal(r, [10.0, 11.0])
    assert np.array_equal(term, [True, False]) and np.array_equal(trunc, [False, True])
    # same-step autoreset: the returned obs is the new episode's first one, the ended one is in final_*
    assert np.array_equal(info["state"], [0, 0]) and np.array_equal(obs, [2, 2])
    assert np.array_equal(info["next_state"], [2, 2]) and np.array_equal(info["final_state"], [2, 2])
    assert np.array_equal(info["final_obs"], [0, 0]) and info["_final_obs"].all()
    assert np.array_equal(info["steps"], [0, 0]) and np.array_equal(info["final_steps"], [2, 2])
    obs, r, term, trunc, info = env.step(np.array([0, 0]))
    assert np.array_equal(r, [0.0, 0.0]) and np.array_equal(info["state"], [1, 1])


def test_batched_partial_reset_mask():
    env = BatchedAnyMDPEnv(chain_task(ns=5), num_envs=2)
    env.reset(seed=0)
    env.step(np.array([0, 0]))
    obs, info = env.reset(options={"reset_mask": np.array([True, False])})
    assert np.array_equal(info["state"], [0, 1]) and np.array_equal(info["steps"], [0, 1])
    with pytest.raises(ValueError):
        env.reset(options={"reset_mask": np.array([True])})


def test_batched_truncation_uses_each_tasks_limit():
    tasks = [random_task(seed=i, terminals=(), max_steps=m) for i, m in enumerate([3, 4.5, 7])]
    env = BatchedAnyMDPEnv(tasks)
    env.reset(seed=0)
    ends = [[] for _ in tasks]
    for t in range(1, 31):
        _, _, term, trunc, info = env.step(np.zeros(3, dtype=int))
        assert not term.any()
        for b in np.flatnonzero(trunc):
            ends[b].append(t)
        assert np.array_equal(info["final_steps"][trunc], np.array([3, 5, 7])[trunc])
    assert ends[0] == list(range(3, 31, 3))
    assert ends[1] == list(range(5, 31, 5))
    assert ends[2] == list(range(7, 31, 7))


def test_batched_matches_single_env_semantics_on_mapping():
    task = random_task(seed=2)
    env = BatchedAnyMDPEnv(task, num_envs=4)
    obs, info = env.reset(seed=0)
    for _ in range(100):
        obs, r, term, trunc, info = env.step(np.array([0, 1, 2, 3]))
        assert np.array_equal(obs, task.state_mapping[info["state"]])
        assert np.array_equal(info["final_obs"], task.state_mapping[info["next_state"]])
        assert np.array_equal(term, task.terminal[info["next_state"]])


def test_batched_infos_are_not_mutated_by_later_steps_or_partial_resets():
    from omnirl_core.world import BatchedAnyMDPEnv, sample_anymdp

    env = BatchedAnyMDPEnv([sample_anymdp(16, 5, seed=s) for s in range(4)])
    env.reset(seed=0)
    _, _, _, _, infos = env.step(np.zeros(4, dtype=np.int64))
    kept = {k: v.copy() for k, v in infos.items()}
    env.step(np.ones(4, dtype=np.int64))
    env.reset(options={"reset_mask": np.array([True, False, True, False])})
    for key, value in kept.items():
        np.testing.assert_array_equal(infos[key], value, err_msg=key)
