"""Tabular learners that improve along a sequence (Q-learning, model-based with an optimism bonus), batched
over B tasks, and :func:`run_policy`, which steps any batched policy on real environments.

The interface and conventions are those of :mod:`omnirl_core.world.policies`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .policies import BatchedPolicy, _argmax_random_ties, _hyper, _per_task, _softmax, _ties_to_probs


class _TabularLearner(BatchedPolicy):
    """Shared bookkeeping: visit counts and learned terminal states."""

    def _reset_counts(self) -> None:
        B, ns, na = self.batch_size, self.ns, self.na
        self.n_sa = np.zeros((B, ns, na), dtype=np.int64)  # visits of (s, a)
        self.n_s = np.zeros((B, ns), dtype=np.int64)  # visits of s (as the state acted from)
        self.total_steps = np.zeros(B, dtype=np.int64)  # transitions observed per task
        self.terminal = np.zeros((B, ns), dtype=bool)  # learned terminal states

    def _unpack(self, states, actions, rewards, next_states, terminated, truncated):
        self._check_ready()
        B = self.batch_size
        s = np.asarray(states, dtype=np.int64)
        a = np.asarray(actions, dtype=np.int64)
        r = np.asarray(rewards, dtype=np.float64)
        s2 = np.asarray(next_states, dtype=np.int64)
        term = np.asarray(terminated, dtype=bool)
        trunc = np.asarray(truncated, dtype=bool)
        if not s.shape == a.shape == r.shape == s2.shape == term.shape == trunc.shape == (B,):
            shapes = {
                n: x.shape
                for n, x in zip(
                    ("states", "actions", "rewards", "next_states", "terminated", "truncated"),
                    (s, a, r, s2, term, trunc),
                )
            }
            raise ValueError(f"every transition array must have shape ({B},), got {shapes}")
        if np.count_nonzero(a.view(np.uint64) >= self.na):
            raise ValueError(f"actions must lie in [0, {self.na}), got {a}")
        return s, a, r, s2, term, trunc

    def _count(self, s: np.ndarray, a: np.ndarray) -> None:
        rows = self._rows
        self.n_sa[rows, s, a] += 1
        self.n_s[rows, s] += 1
        self.total_steps += 1
        self.terminal[rows, s] = False  # acted from: not terminal

    def _new_terminals(self, s2: np.ndarray, term: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(task ids, states) newly learned terminal: entered with termination, never acted from."""
        if not np.count_nonzero(term):
            return self._rows[:0], s2[:0]
        new = term & (self.n_s[self._rows, s2] == 0) & ~self.terminal[self._rows, s2]
        b = np.flatnonzero(new)
        self.terminal[b, s2[b]] = True
        return b, s2[b]

    def greedy_actions(self) -> np.ndarray:
        """[B, ns] argmax_a Q(s, a) (lowest action on ties): the learner's exploitation policy."""
        self._check_ready()
        return self.Q.argmax(axis=-1)


class QLearner(_TabularLearner):
    """Tabular Q-learning, batched [B, ns, na], with two exploration rules.

    Shared: target ``r + gamma * max_a' Q(s', a')``, or ``r`` alone when the transition terminated (truncation
    bootstraps); the row of a learned terminal state is set to 0. ``N(s, a)`` below counts visits including
    the current one (1 at the first visit).

    ``rule="ucb"`` (default; the TQL-UCB baseline, after Jin et al. 2018): Q starts at
    ``reward_scale / (1 - gamma)``; step size ``(H + 1) / (H + N(s, a))``; acts greedily w.r.t.
    ``Q(s, a) + c * sqrt(log(t + 1) / N(s, a))`` with t the task's observed steps and N the visits so far;
    unvisited actions get an infinite bonus (tried first); ties are broken uniformly at random. ``c``
    (default 1.0) scales exploration; ``H`` plays the role of the episode horizon of the analysis (4000 by
    default; a task's ``max_steps`` is the textbook choice).

    ``rule="softmax"`` (the data-synthesis reference rule): Q starts at ``reward_scale / (1 - gamma)``; step
    size ``alpha * sqrt(max((H + 1) / (H + N(s, a)), 1e-3))``; acts by sampling
    ``softmax((Q(s) - max Q(s)) / max(std Q(s), 0.01) * stiffness)`` with
    ``stiffness = min((H + N(s)) / (H + 1), 10)``, N(s) = 1 + visits of s so far.

    ``gamma``, ``alpha`` and ``H`` are scalars shared by every task, or arrays [B] with one value per task (then
    ``reset`` must be given B tasks); ``q_init`` follows (scalar or [B]).
    """

    def __init__(
        self,
        rule: str = "ucb",
        gamma: float | np.ndarray = 0.99,
        alpha: float | np.ndarray = 0.5,
        H: float | np.ndarray = 4000.0,
        c: float = 1.0,
        reward_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if rule not in ("ucb", "softmax"):
            raise ValueError(f"rule must be 'ucb' or 'softmax', got {rule!r}")
        gamma, alpha, H = _hyper(gamma, "gamma"), _hyper(alpha, "alpha"), _hyper(H, "H")
        if not np.all((np.asarray(gamma) >= 0.0) & (np.asarray(gamma) < 1.0)):
            raise ValueError(f"gamma must be in [0, 1), got {gamma}")
        if not np.all(np.asarray(alpha) > 0) or not np.all(np.asarray(H) > 0) or c < 0:
            raise ValueError("need alpha > 0, H > 0, c >= 0")
        self.rule = rule
        self.gamma = gamma
        self.alpha = alpha
        self.H = H
        self.c = float(c)
        self.q_init = float(reward_scale) / (1.0 - gamma)

    def _reset(self, arrays, rng) -> None:
        self._reset_counts()
        B = self.batch_size
        self._gamma = _per_task(self.gamma, B, "gamma")
        self._alpha = _per_task(self.alpha, B, "alpha")
        self._H = _per_task(self.H, B, "H")
        q0 = _per_task(self.q_init, B, "gamma")
        self.Q = np.broadcast_to(q0[:, None, None], (B, self.ns, self.na)).copy()

    # -------------------------------------------------------------- acting
    def _bonus(self, n: np.ndarray, t: np.ndarray) -> np.ndarray:
        """UCB bonus for visit counts n [..., na] and task steps t broadcast to n."""
        bonus = self.c * np.sqrt(np.log(t + 1.0) / np.maximum(n, 1))
        bonus[n == 0] = np.inf
        return bonus

    def _softmax_logits(self, Q: np.ndarray, n_s: np.ndarray) -> np.ndarray:
        z = Q - Q.max(axis=-1, keepdims=True)
        scale = np.maximum(z.std(axis=-1, keepdims=True), 0.01)
        H = self._H.reshape((-1,) + (1,) * (n_s.ndim - 1))[..., None]  # [B, 1(, 1)]: per task
        stiffness = np.minimum((H + 1.0 + n_s[..., None]) / (H + 1.0), 10.0)
        return z * (stiffness / scale)

    def _act(self, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rows = self._rows
        q = self.Q[rows, states]
        if self.rule == "ucb":
            bonus = self._bonus(self.n_sa[rows, states], self.total_steps[:, None])
            return _argmax_random_ties(q + bonus, rng)
        # Gumbel-max: argmax(logits + Gumbel noise) is an exact draw from softmax(logits)
        logits = self._softmax_logits(q, self.n_s[rows, states])
        return (logits + rng.gumbel(size=logits.shape)).argmax(axis=-1)

    def action_probs(self) -> np.ndarray:
        """[B, ns, na]: the softmax table, or the UCB-greedy choice (ties shared equally)."""
        self._check_ready()
        if self.rule == "ucb":
            return _ties_to_probs(self.Q + self._bonus(self.n_sa, self.total_steps[:, None, None]))
        return _softmax(self._softmax_logits(self.Q, self.n_s))

    # -------------------------------------------------------------- learning
    def observe(self, states, actions, rewards, next_states, terminated, truncated) -> None:
        s, a, r, s2, term, _ = self._unpack(states, actions, rewards, next_states, terminated, truncated)
        rows = self._rows
        bootstrap = np.where(term, 0.0, self.Q[rows, s2].max(axis=-1))
        target = r + self._gamma * bootstrap
        self._count(s, a)
        n = self.n_sa[rows, s, a]
        ratio = (self._H + 1.0) / (self._H + n)
        lr = ratio if self.rule == "ucb" else self._alpha * np.sqrt(np.maximum(ratio, 1e-3))
        self.Q[rows, s, a] += lr * (target - self.Q[rows, s, a])
        b, t = self._new_terminals(s2, term)
        self.Q[b, t] = 0.0


class ModelBasedLearner(_TabularLearner):
    """Model-based learner with an optimistic, randomised bonus ("optimistic Thompson-style").

    Model per task: transition counts ``C(s, a, s')`` with a prior of ``prior`` (0.01) per entry, the running
    mean reward ``r_mean(s, a, s')`` and its spread (``reward_std``, Welford), and for each next state the
    fraction of entries into it that terminated the episode (``term_rate``; this makes bandits, where every
    pull terminates, come out right).

    Planning: Q starts at 0. On every ``end_episode`` the masked tasks re-normalise the model,
    ``P(s'|s,a) = (C + prior) / sum_s'(C + prior)`` (zero rows for learned terminal states), and run ONE
    value-iteration sweep warm-started from the previous Q:
    ``Q(s,a) = sum_s' P(s'|s,a) [r_mean(s,a,s') + gamma (1 - term_rate(s')) max_a' Q_old(s',a')]``.
    The bonus is refreshed there too:
    ``b(s, a) = c / (1 - gamma) * max(std over all entries of r_mean, 0.01) / sqrt(N(s, a) + 1)``
    (the +1 avoids dividing by zero for unvisited pairs; the std is a per-task reward scale).

    Acting: ``argmax_a Q(s, a) + b(s, a) * U(0, 1)`` with an independent uniform per action.

    ``gamma`` and ``c`` are scalars shared by every task, or arrays [B] with one value per task (then
    ``reset`` must be given B tasks).
    """

    def __init__(self, gamma: float | np.ndarray = 0.99, c: float | np.ndarray = 1.0, prior: float = 0.01) -> None:
        super().__init__()
        gamma, c = _hyper(gamma, "gamma"), _hyper(c, "c")
        if not np.all((np.asarray(gamma) >= 0.0) & (np.asarray(gamma) < 1.0)):
            raise ValueError(f"gamma must be in [0, 1), got {gamma}")
        if not np.all(np.asarray(c) >= 0) or prior <= 0:
            raise ValueError("need c >= 0 and prior > 0")
        self.gamma = gamma
        self.c = c
        self.prior = float(prior)

    def _reset(self, arrays, rng) -> None:
        self._reset_counts()
        B, ns, na = self.batch_size, self.ns, self.na
        self._gamma = _per_task(self.gamma, B, "gamma")
        self._scale = _per_task(self.c, B, "c") / (1.0 - self._gamma)  # c / (1 - gamma) per task
        self.counts = np.zeros((B, ns, na, ns))
        self.r_mean = np.zeros((B, ns, na, ns))
        self._r_m2 = np.zeros((B, ns, na, ns))
        self.n_into = np.zeros((B, ns), dtype=np.int64)
        self.n_term_into = np.zeros((B, ns), dtype=np.int64)
        self.Q = np.zeros((B, ns, na))
        self.bonus = np.broadcast_to((self._scale * 0.01)[:, None, None], (B, ns, na)).copy()
        self.planned_episodes = np.zeros(B, dtype=np.int64)

    @property
    def reward_std(self) -> np.ndarray:
        """[B, ns, na, ns] sample std of the observed rewards of each (s, a, s') (0 below two visits)."""
        n = self.counts
        return np.sqrt(np.where(n > 1, self._r_m2 / np.maximum(n - 1, 1), 0.0))

    @property
    def term_rate(self) -> np.ndarray:
        """[B, ns] fraction of entries into each state that terminated the episode."""
        return self.n_term_into / np.maximum(self.n_into, 1)

    def model(self) -> np.ndarray:
        """[B, ns, na, ns] current transition estimate (zero rows for learned terminal states)."""
        return self._model(self._rows)

    def _model(self, idx: np.ndarray) -> np.ndarray:
        C = self.counts[idx] + self.prior
        P = C / C.sum(axis=-1, keepdims=True)
        P[self.terminal[idx]] = 0.0
        return P

    def _act(self, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rows = self._rows
        u = rng.random((self.batch_size, self.na))
        return (self.Q[rows, states] + self.bonus[rows, states] * u).argmax(axis=-1)

    def observe(self, states, actions, rewards, next_states, terminated, truncated) -> None:
        s, a, r, s2, term, _ = self._unpack(states, actions, rewards, next_states, terminated, truncated)
        rows = self._rows
        self._count(s, a)
        self.counts[rows, s, a, s2] += 1.0
        n = self.counts[rows, s, a, s2]
        delta = r - self.r_mean[rows, s, a, s2]
        self.r_mean[rows, s, a, s2] += delta / n
        self._r_m2[rows, s, a, s2] += delta * (r - self.r_mean[rows, s, a, s2])
        self.n_into[rows, s2] += 1
        self.n_term_into[rows, s2] += term
        b, t = self._new_terminals(s2, term)
        self.Q[b, t] = 0.0

    def end_episode(self, mask: Any) -> None:
        """Re-normalise the model of the masked tasks and run one value-iteration sweep for them."""
        self._check_ready()
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.batch_size,):
            raise ValueError(f"mask must have shape ({self.batch_size},), got {mask.shape}")
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        self.Q[idx] = self._sweep(idx)
        k = idx.size
        r_scale = np.maximum(self.r_mean[idx].reshape(k, -1).std(axis=-1), 0.01)
        self.bonus[idx] = (self._scale[idx] * r_scale)[:, None, None] / np.sqrt(self.n_sa[idx] + 1.0)
        self.planned_episodes[idx] += 1

    def _sweep(self, idx: np.ndarray) -> np.ndarray:
        """One Jacobi value-iteration sweep for tasks ``idx``: the new Q [k, ns, na], every entry from the old Q."""
        P = self._model(idx)  # [k, ns, na, ns]
        terminal = self.terminal[idx]
        V = np.where(terminal, 0.0, self.Q[idx].max(axis=-1))
        cont = (1.0 - self.term_rate[idx]) * V  # [k, ns]
        gamma = self._gamma[idx, None, None]
        Q = np.einsum("ksan,ksan->ksa", P, self.r_mean[idx]) + gamma * np.einsum("ksan,kn->ksa", P, cont)
        Q[terminal] = 0.0
        return Q


# ---------------------------------------------------------------------------------------------- runner
def run_policy(
    env: Any,
    policy: BatchedPolicy,
    n_steps: int,
    rng: np.random.Generator,
    *,
    learners: Sequence[BatchedPolicy] = (),
    seed: int | None = None,
    callback: Callable[[int, dict[str, np.ndarray]], None] | None = None,
) -> list[list[float]]:
    """Run ``policy`` for ``n_steps`` batched steps in a :class:`~omnirl_core.world.envs.BatchedAnyMDPEnv`.

    The env is reset (with ``seed``) when ``seed`` is given or it was never reset; otherwise it continues
    from its current states. The policy and every extra ``learners`` observe each transition and get
    ``end_episode`` calls (policies must already be ``reset`` for the env's tasks). ``callback(t, record)``
    is called after each step with the transition arrays. Returns, per env, the returns of the episodes
    that ended during the run (whole episodes, also those begun in an earlier call).
    """
    if seed is not None or getattr(env, "needs_reset", False):
        env.reset(seed=seed)
    members: list[BatchedPolicy] = [policy]
    for learner in learners:
        if all(learner is not m for m in members):
            members.append(learner)
    returns: list[list[float]] = [[] for _ in range(env.num_envs)]
    for t in range(int(n_steps)):
        states = env.states.copy()
        actions = policy.act(states, rng)
        _, rewards, terminated, truncated, infos = env.step(actions)
        nxt = infos["next_state"]
        for m in members:
            m.observe(states, actions, rewards, nxt, terminated, truncated)
        done = terminated | truncated
        if np.count_nonzero(done):
            for m in members:
                m.end_episode(done)
            for b in np.flatnonzero(done):
                returns[b].append(float(infos["final_return"][b]))
        if callback is not None:
            callback(
                t,
                {
                    "states": states,
                    "actions": actions,
                    "rewards": rewards,
                    "next_states": nxt,
                    "terminated": terminated,
                    "truncated": truncated,
                },
            )
    return returns
