"""Agents of the evaluation (paper section 5, Algorithm 4): OmniRL and the baselines, on the suites of
:mod:`omnirl_core.evaluation.suites`.

Agents share one batched interface over **observation ids** (what a learner may see):

- ``reset(suite, seeds)``: start ``B = suite.num_envs`` independent runs; ``seeds[b]`` seeds run b's own
  random stream (so run b does the same whatever else is in its batch);
- ``act(obs [B]) -> actions [B]``;
- ``observe(obs, actions, rewards, next_obs, terminated, truncated, tags)``: the executed transition
  (``next_obs`` before any auto-reset; ``tags`` the behaviour tags, 7 where the agent itself acted);
- ``end_episode(mask, final_obs)``: the masked runs ended an episode in ``final_obs``.

OmniRL (:class:`OmniRLAgent`) acts from an empty memory with tag 7 at every step, sampling from
``softmax(logits / temperature)`` (0.5; optionally decaying 1.0 -> 0.1 linearly over 10K steps of the run);
its memory carries over all episodes of a run, and after every episode a boundary step is written as in
training (the observation the episode ended in, tag 7, action ``na``, reward 0); when every run of the batch ended
an episode (a bandit: every step), that step goes into the same pass as the next observation.

A learner scored on test episodes (:mod:`.tested`) also has ``test_policy() -> [B, n_obs, na]``, the action
probabilities its test episodes play (TQL-UCB: greedy, no bonus).

Scores, runs and Table-1 metrics are in :mod:`.runs` and :mod:`.report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..workbook.errors import InputError, RunStopped
from ..world.learners import QLearner
from .streams import EnvStreams
from .suites import Suite

TAG_UNKNOWN = 7
TAG_ORACLE = 3  # the oracle at gamma 0.994 (BEHAVIOUR_GAMMAS[3])
TAG_RANDOM = 6


# ---------------------------------------------------------------------------------------------- agents
def _agent_streams(seeds: Sequence[int], salt: int) -> EnvStreams:
    return EnvStreams([(int(s) ^ (salt * 0x2545F4914F6CDD1D)) & 0xFFFFFFFFFFFFFFFF for s in seeds])


class Agent:
    """Base class of the batched agent interface (see the module docstring)."""

    name = "agent"
    salt = 1

    def reset(self, suite: Suite, seeds: Sequence[int]) -> None:
        self.suite = suite
        self.num_envs = suite.num_envs
        self.na = suite.na
        self.rng = _agent_streams(seeds, self.salt)

    def act(self, obs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def act_tags(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(actions, tags): the tags a demonstrator writes (7 by default)."""
        return self.act(obs), np.full(self.num_envs, TAG_UNKNOWN)

    def observe(self, obs, actions, rewards, next_obs, terminated, truncated, tags) -> None:
        pass

    def end_episode(self, mask: np.ndarray, final_obs: np.ndarray) -> None:
        pass


class RandomAgent(Agent):
    """Uniform random actions over the suite's actions."""

    name = "random"

    def act(self, obs):
        return self.rng.integers(0, self.na, self.num_envs)

    def act_tags(self, obs):
        return self.act(obs), np.full(self.num_envs, TAG_RANDOM)


class OracleAgent(Agent):
    """The suite's oracle action per observation (tag 3 as a demonstrator)."""

    name = "oracle"

    def act(self, obs):
        return self.suite.oracle_actions[np.arange(self.num_envs), np.asarray(obs)]

    def act_tags(self, obs):
        return self.act(obs), np.full(self.num_envs, TAG_ORACLE)


class NoisyOracleAgent(OracleAgent):
    """Perturbed oracle: a uniform random action (tag 6) with probability ``eps``, else the oracle's (tag 3)."""

    name = "noisy_oracle"

    def __init__(self, eps: float) -> None:
        self.eps = float(eps)

    def act_tags(self, obs):
        u = self.rng.random(self.num_envs)
        noise = self.rng.integers(0, self.na, self.num_envs)
        rand = u < self.eps
        return np.where(rand, noise, super().act(obs)), np.where(rand, TAG_RANDOM, TAG_ORACLE)

    def act(self, obs):
        return self.act_tags(obs)[0]


class TablePolicyAgent(Agent):
    """A fixed deterministic policy per run: ``actions[b, obs]`` (e.g. an offline learner's greedy policy)."""

    def __init__(self, actions: np.ndarray, name: str = "policy") -> None:
        self.actions = np.asarray(actions, dtype=np.int64)
        self.name = name

    def reset(self, suite, seeds):
        super().reset(suite, seeds)
        if self.actions.shape != (self.num_envs, suite.n_obs):
            raise ValueError(f"policy table of shape {self.actions.shape}, the suite needs ({self.num_envs}, "
                             f"{suite.n_obs})")

    def act(self, obs):
        return self.actions[np.arange(self.num_envs), np.asarray(obs)]


class TQLAgent(Agent):
    """TQL-UCB: :class:`~omnirl_core.world.learners.QLearner` with ``rule="ucb"`` on observation ids.

    :meth:`test_policy` is its exploitation policy for test episodes: greedy w.r.t. the learned Q, without the
    exploration bonus, ties shared equally (observations never visited keep the optimistic initial Q on every
    action, so their test policy is uniform)."""

    name = "TQL-UCB"

    def __init__(self, c: float = 1.0, gamma: float = 0.99, H: float = 4000.0) -> None:
        self.c, self.gamma, self.H = float(c), float(gamma), float(H)

    def reset(self, suite, seeds):
        super().reset(suite, seeds)
        self.learner = QLearner(rule="ucb", gamma=self.gamma, c=self.c, H=self.H)
        self.learner.reset((self.num_envs, suite.n_obs, suite.na))

    def act(self, obs):
        return self.learner.act(np.asarray(obs), self.rng)

    def observe(self, obs, actions, rewards, next_obs, terminated, truncated, tags):
        self.learner.observe(obs, actions, rewards, next_obs, terminated, truncated)

    def end_episode(self, mask, final_obs):
        self.learner.end_episode(mask)

    def test_policy(self) -> np.ndarray:
        """[B, n_obs, na] action probabilities of the greedy policy (no bonus, ties shared equally)."""
        Q = self.learner.Q
        best = Q >= Q.max(axis=-1, keepdims=True)
        return best / best.sum(axis=-1, keepdims=True)


def _merge_state(new: Any, old: Any, mask):
    """Memory with ``new`` where mask [B] is True and ``old`` elsewhere (recursively over dicts and lists)."""
    import torch

    if isinstance(new, torch.Tensor):
        m = mask.view((-1,) + (1,) * (new.dim() - 1))
        return torch.where(m, new, old)
    if isinstance(new, dict):
        return {k: _merge_state(v, old[k] if old is not None else None, mask) for k, v in new.items()}
    if isinstance(new, (list, tuple)):
        return type(new)(_merge_state(v, o, mask) for v, o in zip(new, old))
    return new


class NonFiniteOutputError(RunStopped):
    """The model produced a NaN or infinite logit while acting: its scores would be meaningless."""


class OmniRLAgent(Agent):
    """OmniRL acting in context (see the module docstring). ``model`` is an :class:`~omnirl_core.model.OmniRL`.

    ``temperature`` must be finite and > 0, ``schedule`` ``constant`` or ``decay``. A non-finite logit stops the
    run with :class:`NonFiniteOutputError` naming ``source`` (default: the file the model was loaded from, as
    recorded by :func:`~omnirl_core.evaluation.models.load_model`)."""

    name = "OmniRL"
    salt = 3

    def __init__(self, model, temperature: float = 0.5, schedule: str = "constant", device: str = "cpu",
                 decay_steps: int = 10_000, source: str | None = None) -> None:
        temperature = float(temperature)
        if not (np.isfinite(temperature) and temperature > 0):
            raise InputError(f"temperature {temperature!r} is not allowed: must be a finite number > 0")
        if schedule not in ("constant", "decay"):
            raise InputError(f"schedule {schedule!r} is not allowed: choose 'constant' or 'decay'")
        if int(decay_steps) < 1:
            raise InputError(f"decay_steps {decay_steps!r} is not allowed: must be >= 1")
        self.model = model.eval()
        self.temperature = temperature
        self.schedule = schedule
        self.device = device
        self.decay_steps = int(decay_steps)
        self.source = source or getattr(model, "source_path", None) or "the model (loaded from no file)"

    def reset(self, suite, seeds):
        super().reset(suite, seeds)
        cfg = self.model.cfg
        if suite.n_obs > cfg.ns_max:
            raise InputError(f"suite {suite.name} has {suite.n_obs} observation ids, the model "
                             f"({self.source}) only {cfg.ns_max} (model.ns_max)")
        if suite.na > cfg.na:
            raise InputError(f"suite {suite.name} has {suite.na} actions, the model ({self.source}) only {cfg.na} "
                             "(model.na)")
        self.state = None
        self.ended_on: np.ndarray | None = None  # final observations of an episode every run ended, not yet fed
        self.t = np.zeros(self.num_envs, dtype=np.int64)

    def _temperature(self) -> np.ndarray:
        if self.schedule == "decay":
            return np.maximum(1.0 - 0.9 * self.t / self.decay_steps, 0.1)
        return np.full(self.num_envs, self.temperature)

    def _tensor(self, x, dtype):
        import torch

        return torch.as_tensor(np.asarray(x), dtype=dtype, device=self.device)

    def act(self, obs):
        import torch

        if self.ended_on is not None:  # the end-of-episode token and this step's in one pass
            logits, self.state = self.model.act_after_end(self._tensor(self.ended_on, torch.long),
                                                          self._tensor(obs, torch.long), self.state)
            self.ended_on = None
        else:
            logits, self.state = self.model.act(self._tensor(obs, torch.long), self.state)
        z = logits.double().cpu().numpy()
        if not np.isfinite(z).all():
            bad = np.flatnonzero(~np.isfinite(z).all(axis=1))
            raise NonFiniteOutputError(
                f"{self.source}: the model output non-finite logits ({z[bad[0]].tolist()}) at step "
                f"{int(self.t[bad[0]]) + 1} of run {int(bad[0])} of suite {self.suite.name}; its scores would be "
                "meaningless (a damaged or diverged checkpoint?)")
        z = z / self._temperature()[:, None]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        self.last_probs = p / p.sum(axis=1, keepdims=True)  # [B, na] the distribution this step sampled from
        cdf = np.cumsum(p, axis=1)
        cdf /= cdf[:, -1:]
        cdf[:, -1] = 1.0
        u = self.rng.random(self.num_envs)
        a = (cdf <= u[:, None]).sum(axis=1)
        self.t += 1
        return a % self.na

    def observe(self, obs, actions, rewards, next_obs, terminated, truncated, tags):
        import torch

        self._feed_ended()  # (act feeds it; here only when a caller observes without acting)
        _, self.state = self.model.observe(self._tensor(tags, torch.long), self._tensor(actions, torch.long),
                                           self._tensor(rewards, torch.float32), self.state)

    def end_episode(self, mask, final_obs):
        """The masked runs feed their end-of-episode token (``final_obs``, tag unknown, action ``na``, reward 0).
        When every run ended one, the token waits for the next :meth:`act`, which feeds both in one pass
        (:meth:`~omnirl_core.model.OmniRL.act_after_end`): the same tokens, half the passes for bandits."""
        import torch

        mask = np.asarray(mask, bool)
        if not mask.any():
            return
        self._feed_ended()
        if mask.all():
            self.ended_on = np.array(final_obs, dtype=np.int64)
            return
        new = self._end_token(final_obs)
        self.state = _merge_state(new, self.state, self._tensor(mask, torch.bool))

    def _end_token(self, final_obs) -> dict:
        """The memory after every run feeds its end-of-episode token."""
        import torch

        B = self.num_envs
        _, _, new = self.model.step(
            self._tensor(final_obs, torch.long), self._tensor(np.full(B, TAG_UNKNOWN), torch.long),
            self._tensor(np.full(B, self.model.cfg.na), torch.long), self._tensor(np.zeros(B), torch.float32),
            self.state)
        return new

    def _feed_ended(self) -> None:
        """Feed the end-of-episode token kept for the next act now."""
        if self.ended_on is not None:
            self.state, self.ended_on = self._end_token(self.ended_on), None
