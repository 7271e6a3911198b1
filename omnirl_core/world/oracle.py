"""Exact planning on known tabular tasks: Q-values, greedy oracles and exact episodic returns.

Every function works on one task or on a batch of tasks of the same (ns, na) at once: arrays carry
optional leading batch dimensions ``[..., ns, na, ns]``. Terminal states have value 0 (their
transition rows are zero, so nothing flows out of them).

Two solvers give the same fixed point Q* = R + gamma P max_a Q*:
- :func:`value_iteration`, vectorised Bellman backups until the sup-norm change is below ``tol``;
- :func:`policy_iteration`, exact policy evaluation by a batched linear solve, then greedy
  improvement; it converges in a handful of iterations and is what the samplers use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .task import Task

__all__ = [
    "ORACLE_GAMMA",
    "BEHAVIOUR_GAMMAS",
    "acceptance_gamma",
    "TaskArrays",
    "stack_tasks",
    "value_iteration",
    "policy_iteration",
    "policy_value",
    "q_values",
    "greedy_policy",
    "oracle_policy",
    "uniform_policy",
    "policy_return",
    "oracle_return",
    "random_return",
    "stationary_distribution",
]

ORACLE_GAMMA = 0.994  # the label oracle of data synthesis and the R_oracle of the normalised score
BEHAVIOUR_GAMMAS = (0.0, 0.5, 0.93, 0.994)  # oracles behind tags 0..3


def acceptance_gamma(ns: int) -> float:
    """Discount of the AnyMDP acceptance check: 2^(-1/ns)."""
    return float(2.0 ** (-1.0 / ns))


class TaskArrays:
    """Arrays of one task or of a batch of same-sized tasks: transition [..., ns, na, ns] and friends."""

    __slots__ = ("transition", "reward", "start_prob", "terminal", "horizon", "_expected_reward")

    def __init__(self, transition, reward, start_prob=None, terminal=None, horizon=None, expected_reward=None):
        self.transition = np.asarray(transition, dtype=np.float64)
        self.reward = np.asarray(reward, dtype=np.float64)
        self._expected_reward = expected_reward
        batch = self.transition.shape[:-3]
        ns = self.transition.shape[-1]
        self.start_prob = None if start_prob is None else np.asarray(start_prob, dtype=np.float64)
        self.terminal = np.zeros(batch + (ns,), bool) if terminal is None else np.asarray(terminal, bool)
        self.horizon = None if horizon is None else np.asarray(horizon, dtype=np.int64)

    @property
    def expected_reward(self) -> np.ndarray:
        """[..., ns, na] E[r | s, a] (computed once)."""
        if self._expected_reward is None:
            self._expected_reward = np.einsum("...ijk,...ijk->...ij", self.transition, self.reward)
        return self._expected_reward


def stack_tasks(tasks: Task | Sequence[Task] | TaskArrays) -> TaskArrays:
    """One Task gives unbatched arrays; a sequence of same-sized Tasks gives a batch [B, ...]."""
    if isinstance(tasks, TaskArrays):
        return tasks
    if isinstance(tasks, Task):
        return TaskArrays(tasks.transition, tasks.reward, tasks.start_prob, tasks.terminal, tasks.horizon)
    tasks = list(tasks)
    if not tasks:
        raise ValueError("stack_tasks needs at least one task")
    shapes = {t.transition.shape for t in tasks}
    if len(shapes) != 1:
        raise ValueError(f"tasks in a batch must share (ns, na); got shapes {sorted(shapes)}")
    return TaskArrays(
        np.stack([t.transition for t in tasks]),
        np.stack([t.reward for t in tasks]),
        np.stack([t.start_prob for t in tasks]),
        np.stack([t.terminal for t in tasks]),
        np.array([t.horizon for t in tasks]),
    )


def _check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    return gamma


def q_values(arrays: TaskArrays, V: np.ndarray, gamma: float) -> np.ndarray:
    """One Bellman backup: Q[..., s, a] = E[r] + gamma sum_s' P(s'|s,a) V[s'] (V of terminals forced to 0)."""
    V = np.where(arrays.terminal, 0.0, V)
    P = arrays.transition
    PV = np.matmul(P.reshape(P.shape[:-3] + (-1, P.shape[-1])), V[..., None]).reshape(P.shape[:-1])
    return arrays.expected_reward + gamma * PV


def value_iteration(
    tasks, gamma: float, *, tol: float = 1e-8, max_iter: int = 100_000, V0: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Synchronous value iteration, vectorised over states, actions and a batch of tasks.

    Returns (Q [..., ns, na], V [..., ns]). A task stops once max |V_k+1 - V_k| < tol * (1 - gamma),
    which bounds the error of its V by tol; converged tasks leave the batch, so a batch costs what
    its slowest task costs, not that times the batch size.
    """
    gamma = _check_gamma(gamma)
    arrays = stack_tasks(tasks)
    R = arrays.expected_reward  # [..., ns, na]
    batch, ns, na = R.shape[:-2], R.shape[-2], R.shape[-1]
    B = int(np.prod(batch, dtype=np.int64))
    # Flatten (s, a) so each sweep is one batched matrix-vector product: [B, ns*na, ns] @ [B, ns, 1].
    P_flat = arrays.transition.reshape(B, ns * na, ns)
    R_flat = R.reshape(B, ns * na)
    live = ~arrays.terminal.reshape(B, ns)
    V = np.zeros((B, ns)) if V0 is None else np.array(V0, dtype=np.float64).reshape(B, ns) * live
    threshold = tol * max(1.0 - gamma, 1e-12)
    active = np.arange(B)
    P_a, R_a, live_a, V_a = P_flat, R_flat, live, V.copy()
    for _ in range(max_iter):
        Q = R_a + gamma * np.matmul(P_a, V_a[:, :, None])[:, :, 0]
        V_new = Q.reshape(-1, ns, na).max(axis=-1) * live_a
        delta = np.abs(V_new - V_a).max(axis=-1)
        V_a = V_new
        done = delta < threshold
        if done.any():
            V[active[done]] = V_a[done]
            keep = ~done
            active, P_a, R_a, live_a, V_a = active[keep], P_a[keep], R_a[keep], live_a[keep], V_a[keep]
            if active.size == 0:
                break
    else:
        V[active] = V_a  # max_iter reached: return the last iterate
    V = V.reshape(batch + (ns,))
    return q_values(arrays, V, gamma), V


def policy_value(tasks, policy: np.ndarray, gamma: float) -> np.ndarray:
    """Exact discounted value V^pi [..., ns] by a (batched) linear solve.

    ``policy`` is [..., ns] actions or [..., ns, na] probabilities.
    """
    gamma = _check_gamma(gamma)
    arrays = stack_tasks(tasks)
    P_pi, r_pi = _policy_dynamics(arrays, policy)
    ns = P_pi.shape[-1]
    A = np.eye(ns) - gamma * P_pi
    return np.linalg.solve(A, r_pi[..., None])[..., 0]


def policy_iteration(
    tasks, gamma: float, *, max_iter: int = 1000, policy0: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Howard's policy iteration with exact batched evaluation. Returns (Q [..., ns, na], V [..., ns]).

    A state's action only changes when another is better by more than 1e-12 (relative), so ties never
    make it cycle. ``policy0`` warm-starts it (default: the one-step greedy policy).
    """
    gamma = _check_gamma(gamma)
    arrays = stack_tasks(tasks)
    R = arrays.expected_reward
    batch, ns, na = R.shape[:-2], R.shape[-2], R.shape[-1]
    B = int(np.prod(batch, dtype=np.int64))
    # Work on flat [B, ...] views; index arrays are built once.
    Pf = arrays.transition.reshape(B, ns, na, ns)
    Rf = R.reshape(B, ns, na)
    si = np.arange(ns)[None, :]
    eye = np.eye(ns)
    policy = Rf.argmax(axis=-1) if policy0 is None else np.array(policy0, dtype=np.int64).reshape(B, ns)
    Q_out, V_out = np.empty((B, ns, na)), np.empty((B, ns))
    active = np.arange(B)  # tasks whose policy is still changing; stable ones leave the batch
    P_a, R_a, pol = Pf, Rf, policy
    for _ in range(max_iter):
        bi = np.arange(active.size)[:, None]
        A = eye - gamma * P_a[bi, si, pol]
        V = np.linalg.solve(A, R_a[bi, si, pol][..., None])  # [b, ns, 1]
        Q = R_a + gamma * np.matmul(P_a.reshape(-1, ns * na, ns), V).reshape(-1, ns, na)
        current = Q[bi, si, pol]
        best_action = Q.argmax(axis=-1)
        best = Q[bi, si, best_action]
        improve = best > current + 1e-12 * np.maximum(1.0, np.abs(current))
        pol = np.where(improve, best_action, pol)
        stable = ~improve.any(axis=1)
        if stable.any():
            Q_out[active[stable]], V_out[active[stable]] = Q[stable], V[stable, :, 0]
            keep = ~stable
            active, P_a, R_a, pol = active[keep], P_a[keep], R_a[keep], pol[keep]
            if active.size == 0:
                return Q_out.reshape(R.shape), V_out.reshape(batch + (ns,))
    raise RuntimeError(f"policy iteration did not converge in {max_iter} iterations (gamma={gamma})")


def greedy_policy(Q: np.ndarray) -> np.ndarray:
    """[..., ns] argmax_a Q (lowest action on ties)."""
    return np.asarray(Q).argmax(axis=-1)


def oracle_policy(tasks, gamma: float = ORACLE_GAMMA) -> np.ndarray:
    """Greedy policy of the optimal Q at ``gamma`` ([..., ns] ints). gamma = 0 is the one-step greedy oracle."""
    gamma = _check_gamma(gamma)
    arrays = stack_tasks(tasks)
    if gamma == 0.0:
        return greedy_policy(arrays.expected_reward)
    Q, _ = policy_iteration(arrays, gamma)
    return greedy_policy(Q)


def uniform_policy(ns: int, na: int) -> np.ndarray:
    """[ns, na] uniform action probabilities."""
    return np.full((ns, na), 1.0 / na)


def _policy_dynamics(arrays: TaskArrays, policy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """State-to-state matrix P_pi [..., ns, ns] and reward r_pi [..., ns] of a stationary policy."""
    P, R = arrays.transition, arrays.expected_reward
    ns, na = R.shape[-2], R.shape[-1]
    policy = np.asarray(policy)
    if policy.shape[-1:] == (ns,) and np.issubdtype(policy.dtype, np.integer):
        if np.any(policy < 0) or np.any(policy >= na):
            raise ValueError(f"policy actions must lie in [0, {na})")
        probs = np.eye(na)[policy]  # [..., ns, na]
    elif policy.shape[-2:] == (ns, na):
        probs = policy.astype(np.float64)
        if np.any(probs < 0) or not np.allclose(probs.sum(-1), 1.0):
            raise ValueError("stochastic policy rows must be probability vectors")
    else:
        raise ValueError(f"policy must be [..., {ns}] ints or [..., {ns}, {na}] probabilities, got {policy.shape}")
    P_pi = np.einsum("...ij,...ijk->...ik", probs, P)
    r_pi = np.einsum("...ij,...ij->...i", probs, R)
    return P_pi, r_pi


def policy_return(tasks, policy: np.ndarray, horizon: int | np.ndarray | None = None) -> np.ndarray:
    """Exact expected undiscounted return of one episode from the start distribution.

    Finite-horizon dynamic programming: V_0 = 0, V_h = r_pi + P_pi V_{h-1}; the episode lasts at most
    ``horizon`` steps (default: each task's ceil(max_steps)) and stops on entering a terminal state
    (zero rows). Returns a float for one task or [B] for a batch.
    """
    arrays = stack_tasks(tasks)
    if arrays.start_prob is None:
        raise ValueError("policy_return needs start probabilities (pass Task objects)")
    P_pi, r_pi = _policy_dynamics(arrays, policy)
    H = arrays.horizon if horizon is None else np.asarray(horizon, dtype=np.int64)
    if H is None:
        raise ValueError("policy_return needs a horizon")
    H = np.broadcast_to(H, P_pi.shape[:-2])
    V = np.zeros(r_pi.shape)
    # Step the DP for the longest horizon; tasks with shorter ones freeze once their horizon is reached.
    for h in range(1, int(H.max()) + 1 if H.size else 1):
        V_next = r_pi + np.matmul(P_pi, V[..., None])[..., 0]
        V = np.where((h <= H)[..., None], V_next, V)
    out = np.einsum("...i,...i->...", arrays.start_prob, V)
    return float(out) if np.ndim(out) == 0 else out


def oracle_return(tasks, gamma: float = ORACLE_GAMMA) -> np.ndarray:
    """Exact episodic return of the greedy oracle at ``gamma`` (R_oracle of the normalised score)."""
    return policy_return(tasks, oracle_policy(tasks, gamma))


def random_return(tasks) -> np.ndarray:
    """Exact episodic return of the uniform-random policy (R_random of the normalised score)."""
    arrays = stack_tasks(tasks)
    ns, na = arrays.transition.shape[-1], arrays.transition.shape[-2]
    probs = np.broadcast_to(uniform_policy(ns, na), arrays.transition.shape[:-1])
    return policy_return(arrays, probs)


def stationary_distribution(tasks, policy: np.ndarray, n_squarings: int) -> np.ndarray:
    """Rows of (P_pi with terminal rows reset to the start distribution) ^ (2 ** n_squarings).

    Row s is the long-run state distribution of an agent that starts in s and restarts from the start
    distribution after each terminal. Shape [..., ns, ns].
    """
    arrays = stack_tasks(tasks)
    P_pi, _ = _policy_dynamics(arrays, policy)
    P_pi = np.where(arrays.terminal[..., :, None], arrays.start_prob[..., None, :], P_pi)
    for _ in range(n_squarings):
        P_pi = np.matmul(P_pi, P_pi)
    return P_pi
