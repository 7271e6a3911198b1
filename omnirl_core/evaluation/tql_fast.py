"""Compiled (numba) runs of the tabular baselines on tabular suites: TQL-UCB scored on test episodes, and the
random and oracle policies, one task at a time in a compiled loop.

They give what the numpy path gives, draw for draw: :func:`~omnirl_core.evaluation.tested.run_tested` with a
:class:`~omnirl_core.evaluation.agents.TQLAgent` (the learner :class:`~omnirl_core.world.learners.QLearner`,
``rule="ucb"``) and :func:`~omnirl_core.evaluation.runs.run_agent` with the random or oracle agent. That holds
because every random stream of the evaluation is counter-based (:class:`~omnirl_core.evaluation.streams.EnvStreams`:
draw k of run b depends only on run b's seed and k), so run b can be replayed alone: its environment
(:class:`~omnirl_core.evaluation.suites.TaskBatchEnv`: one uniform for the next state, two for the reward
noise, one for a new start), its agent (TQL-UCB: one uniform per action for its random tie-breaking; random:
one per step) and its test episodes (their own environment and action streams per test point) draw exactly
what they draw in the batch. The kernels use the same tables as the batched environment (its flat
cumulative transition rows, searched the same way), so next states agree exactly; rewards of noisy tasks
may differ in the last bit (numpy's vectorised log/cos against the C library's), which only a tie between
two nearly equal Q values could ever turn into a different action.

Speed: about 10^7 steps per second on one core against about 3 x 10^4 batched steps per second of the numpy
path (``bench/table1_baselines.py`` measures it), which is what lets the quick profile run the paper's
10,000 episodes per task. :func:`fast_path_available` says whether a suite can take this path (tabular
tasks and numba); the callers say once when it cannot.
"""

from __future__ import annotations

import numpy as np

from .runs import RunResult
from .streams import EnvStreams, env_seeds
from .suites import Suite, TaskBatchEnv
from .tested import test_seeds

KIND_TQL, KIND_RANDOM, KIND_TABLE = 0, 1, 2
AGENT_SALT = 1  # Agent.salt of TQLAgent, RandomAgent and OracleAgent
_TEST_ACTION_XOR = 0xA5A5A5A5A5A5A5A5  # play_policy's action streams
_MASK64 = 0xFFFFFFFFFFFFFFFF

try:
    from numba import njit

    from ..synthesis.numba_learners import q_observe

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a dependency; this keeps the numpy path usable without it
    HAVE_NUMBA = False

    def njit(*args, **kwargs):
        return (lambda f: f) if not args or not callable(args[0]) else args[0]


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


# ---------------------------------------------------------------------------------------------- compiled parts
@njit(cache=True)
def _uniform(key, counter):
    """Draw ``counter`` of the stream ``key``: EnvStreams' splitmix64 of key + counter * golden, as a double."""
    x = key + counter * _GOLDEN
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return np.float64(x >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _start(start_cdf, key, ctr):
    """(start state, new counter): inverse CDF with one uniform, as TaskBatchEnv._sample_starts."""
    u = _uniform(key, ctr)
    s = 0
    for j in range(start_cdf.shape[0]):
        if start_cdf[j] <= u:
            s += 1
    return s, ctr + np.uint64(1)


@njit(cache=True)
def _env_step(s, a, env, b, key, ctr):
    """One step of run b's environment (BatchedAnyMDPEnv.step for one env): (next inner state, reward,
    terminated, new counter). ``env`` is the tuple of flat tables of :func:`_env_tables`."""
    flat_cdf, flat_reward, flat_noise, flat_terminal = env[0], env[1], env[2], env[3]
    row_base, state_base, ns, na, bandit = env[4], env[5], env[6], env[7], env[8]
    row = row_base[b] + s * na + a
    u = _uniform(key, ctr)
    nxt = np.searchsorted(flat_cdf, row + u, side="right") - row * ns
    if nxt > ns - 1:
        nxt = ns - 1
    flat = row * ns + nxt
    u0, u1 = _uniform(key, ctr + np.uint64(1)), _uniform(key, ctr + np.uint64(2))
    z = np.sqrt(-2.0 * np.log1p(-u0)) * np.cos(2.0 * np.pi * u1)
    r = flat_reward[flat] + flat_noise[flat] * z
    term = bandit or flat_terminal[state_base[b] + nxt]
    return nxt, r, term, ctr + np.uint64(3)


@njit(cache=True)
def _ucb_act(Q, n_sa, s, total, c, key, ctr):
    """TQL-UCB's action at observation s: argmax of Q + c sqrt(log(t + 1) / N), unvisited actions first, ties
    broken by one uniform key per action (QLearner._act with _argmax_random_ties)."""
    na = Q.shape[1]
    vals = np.empty(na)
    best = -np.inf
    for a in range(na):
        n = n_sa[s, a]
        bonus = np.inf if n == 0 else c * np.sqrt(np.log(total + 1.0) / max(n, 1))
        vals[a] = Q[s, a] + bonus
        best = max(best, vals[a])
    pick, top = 0, -2.0
    for a in range(na):
        k = _uniform(key, ctr + np.uint64(a))
        if vals[a] < best:
            k = -1.0
        if k > top:
            pick, top = a, k
    return pick, ctr + np.uint64(na)


@njit(cache=True)
def _ucb_observe(Q, n_sa, n_s, learned_terminal, total, s, a, r, o2, term, gamma, H):
    """QLearner.observe (rule "ucb") for one run, the update the compiled synthesis learners make; returns the new
    step count."""
    q_observe(Q, n_sa, n_s, learned_terminal, s, a, r, o2, term, gamma, 1.0, H, True)
    if term and n_s[o2] == 0 and not learned_terminal[o2]:
        learned_terminal[o2] = True
        Q[o2, :] = 0.0
    return total + 1


@njit(cache=True)
def _greedy_cdf(Q):
    """[n_obs, na] CDF of the greedy test policy, as play_policy builds it from TQLAgent.test_policy (ties
    shared equally, stored as float32, summed in float64)."""
    n_obs, na = Q.shape
    cdf = np.empty((n_obs, na))
    for o in range(n_obs):
        m = Q[o, 0]
        for a in range(1, na):
            m = max(m, Q[o, a])
        count = 0
        for a in range(na):
            if Q[o, a] >= m:
                count += 1
        acc = 0.0
        for a in range(na):
            p = np.float64(np.float32(1.0 / count)) if Q[o, a] >= m else 0.0
            acc += p
            cdf[o, a] = acc
        last = cdf[o, na - 1]
        for a in range(na):
            cdf[o, a] /= last
    return cdf


@njit(cache=True)
def _play(cdf, env, b, episodes, env_key, act_key):
    """Mean return of ``episodes`` test episodes of the frozen policy ``cdf`` on run b's test environment."""
    start_cdf, max_steps, mapping, env_base = env[9], env[10], env[11], env[12]
    na = cdf.shape[1]
    ctr, actr = np.uint64(0), np.uint64(0)
    s, ctr = _start(start_cdf[b], env_key, ctr)
    total, ret, steps, done = 0.0, 0.0, 0, 0
    while done < episodes:
        u = _uniform(act_key, actr)
        actr += np.uint64(1)
        o = mapping[env_base[b] + s]
        a = 0
        for j in range(na):
            if cdf[o, j] <= u:
                a += 1
        a = min(a, na - 1)
        s, r, term, ctr = _env_step(s, a, env, b, env_key, ctr)
        steps += 1
        ret += r
        if term or steps >= max_steps[b]:
            total += ret
            done += 1
            ret, steps = 0.0, 0
            s, ctr = _start(start_cdf[b], env_key, ctr)
    return total / episodes


@njit(cache=True)
def _fixed_cdf(kind, table_row, n_obs, na):
    """CDF of the test policy of the random agent (uniform) or of a table policy (its action), built as
    :func:`_greedy_cdf` builds TQL-UCB's (the numpy path plays the same probabilities)."""
    Q = np.zeros((n_obs, na))
    if kind == KIND_TABLE:
        for o in range(n_obs):
            Q[o, table_row[o]] = 1.0
    return _greedy_cdf(Q)


@njit(cache=True)
def _run_batch(kind, env, n_obs, env_keys, agent_keys, table, c, gamma, H, q_init, n_episodes, cap, eval_every,
               eval_episodes, test_env_keys, test_act_keys, train_ret, train_steps, test_ret, test_steps, taken):
    """Every run of the batch in turn: ``n_episodes`` training episodes (at most ``cap`` steps, -1: none) of
    TQL-UCB / random / the table policy, tested after every ``eval_every`` of them (``test_ret`` with K
    columns; K = 0: no tests). Fills the arrays."""
    start_cdf, max_steps, mapping, env_base, na = env[9], env[10], env[11], env[12], env[7]
    B, K = env_keys.shape[0], test_ret.shape[1]
    for b in range(B):
        Q = np.full((n_obs, na), q_init)
        n_sa = np.zeros((n_obs, na), np.int64)
        n_s = np.zeros(n_obs, np.int64)
        learned_terminal = np.zeros(n_obs, np.bool_)
        fixed = _fixed_cdf(kind, table[b], n_obs, na)
        ekey, akey = env_keys[b], agent_keys[b]
        ctr, actr = np.uint64(0), np.uint64(0)
        s, ctr = _start(start_cdf[b], ekey, ctr)
        total, ep_steps, ret, n_done, t = 0, 0, 0.0, 0, 0
        while n_done < n_episodes and (cap < 0 or t < cap):
            o = mapping[env_base[b] + s]
            if kind == KIND_TQL:
                a, actr = _ucb_act(Q, n_sa, o, total, c, akey, actr)
            elif kind == KIND_RANDOM:
                u = _uniform(akey, actr)
                actr += np.uint64(1)
                a = min(np.int64(u * na), na - 1)
            else:
                a = table[b, o]
            s2, r, term, ctr = _env_step(s, a, env, b, ekey, ctr)
            o2 = mapping[env_base[b] + s2]
            ep_steps += 1
            t += 1
            ret += r
            if kind == KIND_TQL:
                total = _ucb_observe(Q, n_sa, n_s, learned_terminal, total, o, a, r, o2, term, gamma, H)
            if term or ep_steps >= max_steps[b]:
                train_ret[b, n_done] = ret
                train_steps[b, n_done] = t
                n_done += 1
                ret, ep_steps = 0.0, 0
                s, ctr = _start(start_cdf[b], ekey, ctr)
                if K > 0 and n_done % eval_every == 0 and n_done // eval_every <= K:
                    k = n_done // eval_every - 1
                    cdf = _greedy_cdf(Q) if kind == KIND_TQL else fixed
                    test_ret[b, k] = _play(cdf, env, b, eval_episodes, test_env_keys[b, k], test_act_keys[b, k])
                    test_steps[b, k] = t
            else:
                s = s2
        taken[b] = t


# ---------------------------------------------------------------------------------------------- Python side
def fast_path_available(suite: Suite) -> tuple[bool, str]:
    """(whether ``suite`` runs on the compiled path, the reason when it does not)."""
    if not HAVE_NUMBA:
        return False, "numba is not installed"
    if suite.tasks is None:
        return False, f"suite {suite.name} has no tabular tasks (its environment is simulated)"
    if type(suite.make_env()) is not TaskBatchEnv:  # a subclass may score or step differently
        return False, f"suite {suite.name} steps another environment than TaskBatchEnv"
    return True, ""


def _keys(seeds) -> np.ndarray:
    return EnvStreams([int(s) for s in seeds]).keys.copy()


def _env_tables(env) -> tuple:
    """The flat tables of a TaskBatchEnv that the kernels read (the same arrays its own step uses)."""
    return (env._flat_cdf, env._flat_reward, env._flat_noise, env._flat_terminal.astype(np.bool_),
            env._row_base.astype(np.int64), env._state_base.astype(np.int64), np.int64(env.ns), np.int64(env.na),
            bool(env.is_bandit), env._start_cdf, env.max_steps.astype(np.float64),
            env._flat_mapping.astype(np.int64), env._env_base.astype(np.int64))


def run_fast(suite: Suite, agent: str, n_episodes: int, *, seed=0, max_steps: int | None = None, c: float = 1.0,
             gamma: float = 0.99, H: float = 4000.0, eval_every: int | None = 100, eval_episodes: int = 5,
             name: str | None = None) -> tuple[RunResult | None, RunResult]:
    """(test-episode result, training-episode result) of ``agent`` ("tql_ucb", "random" or "oracle") on a
    tabular suite: what :func:`~omnirl_core.evaluation.tested.run_tested` returns for the same seeds (the random
    and oracle agents test their own fixed policy), and the training result what
    :func:`~omnirl_core.evaluation.runs.run_agent` returns. ``eval_every=None``: no test episodes (the first
    result is None)."""
    ok, why = fast_path_available(suite)
    if not ok:
        raise ValueError(f"no compiled path: {why}")
    kinds = {"tql_ucb": KIND_TQL, "random": KIND_RANDOM, "oracle": KIND_TABLE}
    if agent not in kinds:
        raise ValueError(f"agent must be one of {', '.join(kinds)}, got {agent!r}")
    kind, B, n_episodes = kinds[agent], suite.num_envs, int(n_episodes)
    seeds = env_seeds(seed, B) if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if len(seeds) != B:
        raise ValueError(f"need {B} seeds, got {len(seeds)}")
    salt = (AGENT_SALT * 0x2545F4914F6CDD1D) & _MASK64
    agent_keys = _keys([(s ^ salt) & _MASK64 for s in seeds])
    K = n_episodes // int(eval_every) if eval_every else 0
    test_env_keys, test_act_keys = np.zeros((B, K), np.uint64), np.zeros((B, K), np.uint64)
    for k in range(K):
        ts = test_seeds(seeds, k)
        test_env_keys[:, k] = _keys(ts)
        test_act_keys[:, k] = _keys([(s ^ _TEST_ACTION_XOR) & _MASK64 for s in ts])
    env = suite.make_env()
    tables = _env_tables(env)
    table = np.ascontiguousarray(suite.oracle_actions, dtype=np.int64)
    train_ret, train_steps = np.full((B, n_episodes), np.nan), np.full((B, n_episodes), np.nan)
    test_ret, test_steps = np.full((B, K), np.nan), np.full((B, K), np.nan)
    taken = np.zeros(B, np.int64)
    _run_batch(kind, tables, int(suite.n_obs), _keys(seeds), agent_keys, table, float(c), float(gamma), float(H),
               1.0 / (1.0 - float(gamma)), n_episodes, -1 if max_steps is None else int(max_steps),
               int(eval_every or 1), int(eval_episodes), test_env_keys, test_act_keys, train_ret, train_steps, test_ret,
               test_steps, taken)
    label = name or {"tql_ucb": "TQL-UCB", "random": "random", "oracle": "oracle"}[agent]
    common = dict(suite=suite.name, agent=label, r_oracle=suite.r_oracle, r_random=suite.r_random,
                  valid=suite.valid)
    training = RunResult(returns=train_ret, steps=train_steps, info={"batched_steps": int(taken.max())}, **common)
    if K == 0:
        return None, training
    info = {"episode_index": ((np.arange(K) + 1) * int(eval_every)).tolist(), "eval_every": int(eval_every),
            "eval_episodes": int(eval_episodes), "scoring": "test", "batched_steps": int(taken.max())}
    return RunResult(returns=test_ret, steps=test_steps, info=info, **common), training
