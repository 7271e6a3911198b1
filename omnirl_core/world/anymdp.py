"""The AnyMDP task distribution (paper Algorithm 1, as the reference sampler draws it), bandits included (ns = 1).

See :mod:`omnirl_core.world.task` for the array conventions.
"""

from __future__ import annotations

import numpy as np

from .task import Task, as_generator

# The AnyMDP distribution (paper Algorithm 1, as the reference sampler draws it). Inner index order is
# the hidden ranking: start states sit at the low end, the optional goal at the top, and transitions
# are banded so that the agent must climb the ranking to collect the larger rewards.

ADJUST_GAMMA = 0.99  # discount of the terminal-reward adjustment rounds
MAX_ADJUST_ROUNDS = 5
MIN_ORACLE_GAP = 2.0  # scaled value gap oracle - random required at every start state
MIN_GINI = 0.70
MIN_NORMALISED_ENTROPY = 0.35
SELF_LOOP_FACTOR = 0.5  # the self-loop weight of the average transition is halved


def band_limits(ns: int) -> tuple[int, int]:
    """(max forward leap, max backward leap) of the banded transition: b+ = ns//4 + 1, b- = ns//2 + 1."""
    return max(2, ns // 4 + 1), max(2, ns // 2 + 1)


class SamplingError(RuntimeError):
    """No acceptable task was found within the allowed number of draws."""


def _check_sizes(ns: int, na: int, *, allow_bandit: bool = True, ns_name: str = "ns") -> None:
    for name, v in ((ns_name, ns), ("na", na)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if na < 2:
        raise ValueError(f"na must be >= 2, got na={na}")
    if allow_bandit and ns == 1:
        return
    if ns < 8:
        allowed = f"{ns_name} = 1 (a bandit) or {ns_name} >= 8" if allow_bandit else f"{ns_name} >= 8"
        raise ValueError(f"invalid state count {ns_name}={ns}: need {allowed}")


def episode_limit(ns: int, rng: np.random.Generator) -> float:
    """Episode step limit: 1 for bandits, else U(max(4ns,100), max(min(8ns,500), lo+1))."""
    if ns == 1:
        return 1.0
    lo = max(4.0 * ns, 100.0)
    hi = max(min(8.0 * ns, 500.0), lo + 1.0)
    return float(rng.uniform(lo, hi))


def _sample_bandit(na: int, rng: np.random.Generator) -> dict:
    scale = np.clip(rng.exponential(1.0), 0.05, 2.0)
    noise_scale = max(rng.uniform(-0.3, 0.3), 0.0)
    # Redraw the arm means until they differ visibly (std > 0.01); candidates are drawn 16 at a time
    # and the first acceptable one is kept, which is the same distribution as drawing one by one.
    while True:
        means = rng.uniform(0.5 * scale, scale, size=(16, na))
        ok = np.flatnonzero(means.std(axis=1) > 0.01)
        if ok.size:
            means = means[ok[0]]
            break
    reward = means.reshape(1, na, 1)
    return dict(
        transition=np.ones((1, na, 1)),
        reward=reward,
        reward_noise=noise_scale * reward,
        start_prob=np.ones(1),
        terminal=np.zeros(1, bool),
    )


# Candidate draws are vectorised: K independent candidates of one task are drawn as arrays with a
# leading batch axis [K, ...], checked together, and the first accepted one (in candidate order) is
# kept. Taking the first success of i.i.d. candidates has the same distribution as the one-at-a-time
# rejection loop, and K fixed per ns keeps "same seed, same task".


def _redraw_until(draw, ok, shape_k: int):
    """Vectorised rejection: draw(n) -> array [n, ...]; redraw the rows where ok(rows) is False."""
    out = draw(shape_k)
    bad = ~ok(out)
    while bad.any():
        out[bad] = draw(int(bad.sum()))
        bad = ~ok(out)
    return out


def _sample_start_and_terminals(K: int, ns: int, rng: np.random.Generator):
    """Start distributions over inner states {0,1,2}, pitfalls, and the optional goal at the top: [K, ...]."""
    w = _redraw_until(lambda n: np.clip(rng.standard_normal((n, 3)), 0.0, None), lambda x: x.sum(1) > 1e-10, K)
    start_prob = np.zeros((K, ns))
    start_prob[:, :3] = w / w.sum(axis=1, keepdims=True)
    pit_rate = np.maximum(rng.uniform(-0.2, 0.4, size=K), 0.0)
    terminal = rng.random((K, ns)) < pit_rate[:, None]
    bad = terminal.sum(1) >= ns * pit_rate + 1  # too many pitfalls: redraw those rows
    while bad.any():
        terminal[bad] = rng.random((int(bad.sum()), ns)) < pit_rate[bad, None]
        bad = terminal.sum(1) >= ns * pit_rate + 1
    terminal[start_prob > 0] = False
    has_goal = rng.random(K) < 0.3
    terminal[:, -1] = has_goal
    return start_prob, terminal, has_goal


def _sample_bands(ns: int, terminal: np.ndarray, rng: np.random.Generator):
    """Band [lo, hi) of reachable next states for every state: lo, hi [K, ns]."""
    K = terminal.shape[0]
    s = np.arange(ns)
    max_leap, max_back = band_limits(ns)
    from_min = np.maximum(0, s - max_back)
    from_max = np.maximum.reduce([np.zeros(ns, int), s - 1, from_min + 1])
    to_max = np.minimum(ns, s + max_leap)
    to_min = np.minimum.reduce([np.full(ns, ns - 1), s + 1, to_max - 1])
    lo = from_min + np.floor(rng.random((K, ns)) * (from_max - from_min)).astype(int)
    hi = to_min + np.floor(rng.random((K, ns)) * (to_max - to_min)).astype(int)
    # Widen hi until at least two non-terminal states lie strictly between s and hi (or hi == ns).
    live_before = np.zeros((K, ns + 1), int)  # live_before[k, h] = number of live states in [0, h)
    np.cumsum(~terminal, axis=1, out=live_before[:, 1:])
    target = live_before[:, 1:] + 2  # [K, ns]: live count needed before hi, for state s
    reach = live_before[:, None, :] >= target[:, :, None]  # [K, ns, ns + 1]
    needed = np.where(reach.any(axis=2), reach.argmax(axis=2), ns)
    hi = np.minimum(np.maximum(hi, needed), ns)
    return lo, hi


def _sample_transition(ns: int, na: int, terminal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Banded per-action transitions [K, ns, na, ns]."""
    K = terminal.shape[0]
    lo, hi = _sample_bands(ns, terminal, rng)
    j = np.arange(ns)
    band = (j >= lo[..., None]) & (j < hi[..., None])  # [K, ns, ns]
    band &= ~terminal[:, :, None]
    # Average (action-free) transition: clipped Gaussian weights on the band, half self-loop.
    w = np.clip(rng.standard_normal((K, ns, ns)), 0.1, 1.0) * band
    w[:, j, j] *= SELF_LOOP_FACTOR
    w[:, ns - 1, ns - 1] = 0.0  # the top state never loops on itself
    row = w.sum(axis=2, keepdims=True)
    p_avg = np.divide(w, row, out=np.zeros_like(w), where=row > 0)
    # Split among actions: each action prefers next states near its centre c ~ U(lo - 1, hi).
    centre = (lo - 1)[..., None] + rng.random((K, ns, na)) * (hi - lo + 1)[..., None]
    sigma = np.clip(rng.exponential(1.0, size=(K, ns)), 0.2, 1.6)
    dist2 = (centre[..., None] - j) ** 2  # [K, ns, na, ns]
    aw = np.exp(-dist2 / sigma[..., None, None] ** 2)
    col = aw.sum(axis=2, keepdims=True)  # [K, ns, 1, ns]
    orphan = col < 1e-10  # no action reaches this next state: give it to the nearest action
    if orphan.any():
        nearest = dist2.argmin(axis=2)  # [K, ns, ns]
        one_hot = np.arange(na)[:, None] == nearest[:, :, None, :]
        aw = np.where(orphan, one_hot.astype(float), aw)
        col = aw.sum(axis=2, keepdims=True)
    P = aw / col * p_avg[:, :, None, :]
    rs = P.sum(axis=3, keepdims=True)
    P = np.divide(P, rs, out=np.zeros_like(P), where=rs > 0)
    P[terminal] = 0.0
    return P


def _fourier_potentials(K: int, ns: int, rng: np.random.Generator) -> np.ndarray:
    """phi [K, ns]: random 1-D Fourier series in x = s / (2 ns) (k in 1..3 terms plus a constant); zero
    amplitude for half of the tasks."""
    amplitude = np.where(rng.random(K) < 0.5, 0.0, np.clip(rng.exponential(1.0, size=K), 0.2, 5.0))
    box = np.maximum(rng.uniform(-1.0, 1.0, size=K) * amplitude, 0.0)
    k = rng.integers(1, 4, size=K)
    orders = np.zeros((K, 4))
    orders[:, 1:] = rng.integers(1, 6, size=(K, 3)) + rng.standard_normal((K, 3))
    coef = rng.standard_normal((K, 4, 2)) * rng.exponential(1.0, size=(K, 4, 2)) * (box / np.sqrt(k))[:, None, None]
    coef[np.arange(4)[None, :] > k[:, None]] = 0.0  # terms beyond k do not exist
    ox = orders[:, :, None] * (np.arange(ns) / (2.0 * ns))  # [K, 4, ns]
    return (coef[..., 0:1] * np.sin(ox) + coef[..., 1:2] * np.cos(ox)).sum(axis=1)


def _sample_rewards(ns: int, na: int, terminal: np.ndarray, has_goal: np.ndarray, rng: np.random.Generator):
    """Raw mean reward and noise std [K, ns, na, ns] (before terminal adjustments)."""
    K = terminal.shape[0]
    phi = _fourier_potentials(K, ns, rng)
    r_potential = phi[:, :, None, None] - phi[:, None, None, :]
    # Position reward on the next state: a random increasing profile minus a baseline.
    scale = rng.exponential(0.2, size=K)
    pdf = np.clip(rng.standard_normal((K, ns)), 0.0, None)
    pdf[:, -1] += 0.2
    pdf *= scale[:, None]
    cdf = np.cumsum(pdf, axis=1)
    r_position = cdf - rng.uniform(0.1, 0.9, size=K)[:, None] * cdf[:, -1:]
    n_position = np.clip(rng.uniform(-0.3, 0.3, size=(K, ns)), 0.0, None) * scale[:, None]
    r_position[terminal] = 0.0
    n_position[terminal] = 0.0
    # Sparse state-action cost.
    cost = np.clip(rng.exponential(0.05, size=K), 0.0, 0.1)[:, None, None]
    mask = rng.uniform(-0.7, 0.3, size=(K, ns, na)) > 0
    r_sa = cost * rng.standard_normal((K, ns, na)) * mask
    n_sa = 0.3 * cost * np.clip(rng.standard_normal((K, ns, na)), 0.0, None) * mask
    # Step reward: a small cost when there is a goal, a small survival bonus when only pitfalls exist.
    z = rng.standard_normal(K) * 0.01
    r_step = np.where(has_goal, np.minimum(z, 0.0), np.where(terminal.any(axis=1), np.maximum(z, 0.0), 0.0))
    reward = r_potential + r_position[:, None, None, :] + r_sa[..., None] + r_step[:, None, None, None]
    noise = n_position[:, None, None, :] + n_sa[..., None] + np.zeros((1, 1, 1, ns))
    return np.broadcast_to(reward, (K, ns, na, ns)).copy(), noise


def _terminal_adjustment(P, raw_reward, start_prob, terminal, has_goal, rng):
    """Shift the reward for entering pitfalls (down) and the top state (up) until pitfalls are the worst
    places and the top of the ranking is worth climbing to (up to 5 rounds).

    Returns (bonus [K, ns] added to every transition into each next state, ok [K])."""
    from .oracle import TaskArrays, policy_iteration

    K, ns = terminal.shape
    pitfalls = terminal.copy()
    pitfalls[has_goal, -1] = False
    live = ~terminal
    starts = start_prob > 0
    last = np.where(has_goal, ns - 2, ns - 1)
    bonus = np.zeros((K, ns))
    bonus[:, -1] = 1.0
    done = np.zeros(K, bool)
    policy = np.zeros((K, ns), int)
    active = np.arange(K)  # candidates still being adjusted: only these are solved again
    for _ in range(MAX_ADJUST_ROUNDS):
        rew = raw_reward[active] + bonus[active][:, None, None, :]
        Q, V = policy_iteration(TaskArrays(P[active], rew, terminal=terminal[active]), ADJUST_GAMMA,
                                policy0=policy[active])
        policy[active] = Q.argmax(axis=-1)
        b = bonus[active]
        pit_gain = b.min(axis=1) - np.where(live[active], V, np.inf).min(axis=1) + 1.0
        v_last = V[np.arange(active.size), last[active]]
        goal_fall = np.where(starts[active], V, -np.inf).max(axis=1) - v_last + rng.uniform(2.0, 5.0, size=active.size)
        finished = (pit_gain <= 0) & (goal_fall <= 0)
        done[active[finished]] = True
        lower = ~finished & (pit_gain > 0)
        b -= (lower * (pit_gain + rng.uniform(1.0, 10.0, size=active.size)))[:, None] * pitfalls[active]
        raise_top = ~finished & (goal_fall > 0)
        lift = np.maximum(2.0 * goal_fall, rng.uniform(1.0, 10.0, size=active.size))
        b[:, -1] += raise_top * np.where(has_goal[active], lift, (1.0 - ADJUST_GAMMA) * lift)
        bonus[active] = b
        active = active[~finished]
        if active.size == 0:
            break
    return bonus, done


def acceptance_statistics(P, reward, start_prob, terminal, max_steps) -> dict:
    """The quantities the acceptance check thresholds, for candidate tasks (arrays with or without a
    leading batch axis).

    gap: min over start states of the scaled value gap (oracle - random) at gamma 2^(-1/ns), values scaled
    by (1 - gamma) max_steps (the random policy's value taken as max_a of its Q, as the reference does);
    gini / entropy: min over start states of the Gini impurity and the normalised entropy of the oracle's
    long-run state distribution with resets. Returns arrays (or floats for one task).
    """
    from .oracle import TaskArrays, acceptance_gamma, policy_iteration, policy_value, q_values, stationary_distribution

    ns, na = P.shape[-1], P.shape[-2]
    gamma = acceptance_gamma(ns)
    arrays = TaskArrays(P, reward, start_prob, terminal)
    Q_opt, _ = policy_iteration(arrays, gamma)
    V_rand = policy_value(arrays, np.broadcast_to(np.full((ns, na), 1.0 / na), P.shape[:-1]), gamma)
    Q_rand = q_values(arrays, V_rand, gamma)
    max_steps = np.asarray(max_steps, dtype=np.float64)  # scalar, or one per candidate
    scale = (1.0 - gamma) * max_steps[..., None]
    starts = start_prob > 0
    gap = np.where(starts, (Q_opt.max(axis=-1) - Q_rand.max(axis=-1)) * scale, np.inf).min(axis=-1)
    # Long-run distribution: the reset chain raised to 2^n_sq, n_sq = floor(log2 max_steps) + 1.
    n_sq = np.broadcast_to(np.floor(np.log2(max_steps)).astype(int) + 1, P.shape[:-3])
    chain = stationary_distribution(arrays, Q_opt.argmax(axis=-1), 0)
    dist = np.empty_like(chain)
    for k in range(int(n_sq.max()) + 1):
        dist[n_sq == k] = chain[n_sq == k]
        chain = np.matmul(chain, chain)
    dist += 1e-12
    gini = np.where(starts, 1.0 - (dist**2).sum(axis=-1), np.inf).min(axis=-1)
    entropy = np.where(starts, -(dist * np.log(dist)).sum(axis=-1) / np.log(ns), np.inf).min(axis=-1)
    out = {"gap": gap, "gini": gini, "entropy": entropy}
    return {k: float(v) for k, v in out.items()} if np.ndim(gap) == 0 else out


def _accepted(stats: dict) -> np.ndarray:
    return (stats["gap"] >= MIN_ORACLE_GAP) & (stats["gini"] > MIN_GINI) & (stats["entropy"] > MIN_NORMALISED_ENTROPY)


def candidates_per_round(ns: int) -> int:
    """How many candidate draws are checked together: more for small ns, where more are rejected and
    each is cheap."""
    return int(np.clip(256 // ns, 2, 16))


def _draw_anymdp_candidates(K: int, ns: int, na: int, max_steps, rng: np.random.Generator):
    """K independent draws of Algorithm 1 for ns >= 8 real states: (arrays [K, ...], accepted [K]).

    ``max_steps`` is one limit for all candidates or one per candidate (the acceptance check uses it)."""
    start_prob, terminal, has_goal = _sample_start_and_terminals(K, ns, rng)
    P = _sample_transition(ns, na, terminal, rng)
    raw_reward, noise = _sample_rewards(ns, na, terminal, has_goal, rng)
    bonus, ok = _terminal_adjustment(P, raw_reward, start_prob, terminal, has_goal, rng)
    # An action whose weight underflows on every reachable state leaves an empty row; the reference's
    # normalisation turns that into NaN and its checks then reject the draw. Reject it explicitly.
    ok &= ~((P.sum(axis=3) == 0) & ~terminal[:, :, None]).any(axis=(1, 2))
    reward = raw_reward + bonus[:, None, None, :]
    idx = np.flatnonzero(ok)
    if idx.size:
        limits = np.broadcast_to(np.asarray(max_steps, dtype=np.float64), (K,))[idx]
        stats = acceptance_statistics(P[idx], reward[idx], start_prob[idx], terminal[idx], limits)
        ok[idx] = _accepted(stats)
    arrays = dict(transition=P, reward=reward, reward_noise=noise, start_prob=start_prob, terminal=terminal)
    return arrays, ok


def sample_anymdp(
    ns: int,
    na: int = 5,
    seed: int | np.random.Generator | None = None,
    *,
    min_state_space: int | None = None,
    max_draws: int = 100_000,
) -> Task:
    """Draw one AnyMDP task T(ns, na) (paper Algorithm 1).

    ``ns == 1`` gives a multi-armed bandit; otherwise ns >= 8. With ``min_state_space`` the number of
    real states is drawn from [min_state_space, ns] and the observation ids are a random subset of
    range(ns). ``seed`` is an int or a numpy Generator; numpy's global RNG is never used, and the same
    int seed always gives the same task.
    """
    _check_sizes(ns, na)
    ns, na = int(ns), int(na)  # numpy integers (np.int8(16)) would overflow in the size arithmetic below
    if isinstance(max_draws, (bool, np.bool_)) or not isinstance(max_draws, (int, np.integer)) or max_draws < 1:
        raise ValueError(f"max_draws must be an int >= 1, got {max_draws!r}")
    if min_state_space is not None:
        if isinstance(min_state_space, (bool, np.bool_)) or not isinstance(min_state_space, (int, np.integer)):
            raise TypeError(f"min_state_space must be an int, got {type(min_state_space).__name__}")
        _check_sizes(int(min_state_space), na, allow_bandit=False, ns_name="min_state_space")
        if ns > 1 and min_state_space > ns:
            raise ValueError(f"min_state_space={min_state_space} exceeds ns={ns}: need 8 <= min_state_space <= ns")
    rng = as_generator(seed)
    max_steps = episode_limit(ns, rng)
    n_real = ns
    if min_state_space is not None and ns > 1:
        n_real = int(rng.integers(min(min_state_space, ns), ns + 1))
    mapping = rng.permutation(ns)[:n_real]
    meta = {"sampler": "anymdp", "ns": int(ns), "na": int(na)}
    if isinstance(seed, (int, np.integer)):
        meta["seed"] = int(seed)
    if n_real == 1:
        arrays = _sample_bandit(na, rng)
        return Task(max_steps=max_steps, state_mapping=mapping, n_obs=ns, kind="bandit", meta=meta, **arrays)
    K = candidates_per_round(n_real)
    for round_ in range(max(1, max_draws // K)):
        arrays, ok = _draw_anymdp_candidates(K, n_real, na, max_steps, rng)
        if ok.any():
            first = int(np.argmax(ok))
            meta["draws"] = round_ * K + first + 1
            one = {k: v[first] for k, v in arrays.items()}
            return Task(max_steps=max_steps, state_mapping=mapping, n_obs=ns, kind="anymdp", meta=meta, **one)
    raise SamplingError(f"no acceptable AnyMDP({ns}, {na}) task in {max_draws} draws")


def sample_anymdp_batch(
    n_tasks: int,
    ns: int,
    na: int = 5,
    seed: int | np.random.Generator | None = None,
    *,
    candidates_per_task: int | None = None,
    max_rounds: int = 10_000,
) -> list[Task]:
    """Draw ``n_tasks`` independent AnyMDP(ns, na) tasks at once, sharing the linear algebra.

    Each task draws its episode limit and observation mapping, then candidate draws are made for all
    unfinished tasks together (candidate i of a round belongs to task i mod remaining) and each task
    keeps its first accepted candidate: per task, the same distribution as :func:`sample_anymdp`. The
    same seed gives the same list (but not the same tasks as ``sample_anymdp`` with per-task seeds).
    """
    _check_sizes(ns, na)
    if n_tasks < 0:
        raise ValueError(f"n_tasks must be >= 0, got {n_tasks}")
    rng = as_generator(seed)
    limits = np.array([episode_limit(ns, rng) for _ in range(n_tasks)])
    mappings = [rng.permutation(ns) for _ in range(n_tasks)]
    meta = {"sampler": "anymdp_batch", "ns": int(ns), "na": int(na)}
    if isinstance(seed, (int, np.integer)):
        meta["seed"] = int(seed)
    if ns == 1:
        return [
            Task(max_steps=1.0, state_mapping=m, kind="bandit", meta={**meta, "index": i}, **_sample_bandit(na, rng))
            for i, m in enumerate(mappings)
        ]
    per_task = candidates_per_task or max(1, candidates_per_round(ns) // 2)
    result: list[Task | None] = [None] * n_tasks
    pending = np.arange(n_tasks)
    for _ in range(max_rounds):
        if pending.size == 0:
            return result  # type: ignore[return-value]
        # Rounds have a fixed cost, so the last few stragglers get more candidates each.
        owner = np.tile(pending, max(per_task, (512 // ns) // pending.size))  # candidate -> task
        arrays, ok = _draw_anymdp_candidates(owner.size, ns, na, limits[owner], rng)
        for c in np.flatnonzero(ok):
            t = owner[c]
            if result[t] is None:
                one = {k: v[c] for k, v in arrays.items()}
                result[t] = Task(max_steps=limits[t], state_mapping=mappings[t], kind="anymdp",
                                 meta={**meta, "index": int(t)}, **one)
        pending = np.array([t for t in pending if result[t] is None], dtype=int)
    raise SamplingError(
        f"no acceptable AnyMDP({ns}, {na}) tasks for {pending.size} of {n_tasks} in {max_rounds} rounds"
    )
