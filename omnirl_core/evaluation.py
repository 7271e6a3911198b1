"""Evaluation of in-context RL (paper section 5, Algorithm 4) and of the baselines, on the suites of
:mod:`omnirl_core.suites`.

Agents share one batched interface over **observation ids** (what a learner may see):

- ``reset(suite, seeds)``: start ``B = suite.num_envs`` independent runs; ``seeds[b]`` seeds run b's own
  random stream (so run b does the same whatever else is in its batch);
- ``act(obs [B]) -> actions [B]``;
- ``observe(obs, actions, rewards, next_obs, terminated, truncated, tags)``: the executed transition
  (``next_obs`` before any auto-reset; ``tags`` the behaviour tags, 7 where the agent itself acted);
- ``end_episode(mask, final_obs)``: the masked runs ended an episode in ``final_obs``.

:func:`run_agent` drives any agent through a suite's batched environment until every run has finished
``n_episodes`` evaluation episodes (or a step cap), recording each episode's return and the run's step count at
its end. With a demonstrator (offline RL / imitation), each run first executes ``demo_episodes`` episodes
chosen by the demonstrator; the agent observes them with the demonstrator's tags, then acts itself.

OmniRL (:class:`OmniRLAgent`) acts from an empty memory with tag 7 at every step, sampling from
``softmax(logits / temperature)`` (0.5; optionally decaying 1.0 -> 0.1 linearly over 10K steps of the run);
its memory carries over all episodes of a run, and after every episode a boundary step is written as in
training (the observation the episode ended in, tag 7, action ``na``, reward 0).

Score of an episode: ``(R - R_random) / (R_oracle - R_random)`` with the suite's reference returns; runs whose
two reference returns are equal are skipped (and counted). Table-1 metrics (:func:`table_metrics`): on the
task-averaged score curve, smoothed by a trailing mean over ``smooth`` episodes, the best value within the
episode budget, and the first episode (and the mean step count there) at which the curve reaches 99% of it.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .learners import QLearner
from .suites import PAPER_TABLE1, EnvStreams, Suite, build_suite

__all__ = [
    "EvaluationConfig",
    "Agent",
    "RandomAgent",
    "OracleAgent",
    "NoisyOracleAgent",
    "TQLAgent",
    "OmniRLAgent",
    "CheckpointConfigError",
    "RunResult",
    "run_agent",
    "tune_tql",
    "run_ppo",
    "load_model",
    "table_metrics",
    "table_rows",
    "write_report",
    "plot_curves",
    "evaluate",
]

TAG_UNKNOWN = 7
TAG_ORACLE = 3  # the oracle at gamma 0.994 (BEHAVIOUR_GAMMAS[3])
TAG_RANDOM = 6
AGENT_CHOICES = ("random", "oracle", "tql_ucb", "omnirl", "ppo")
MODE_CHOICES = ("online", "offline", "imitation")


# ---------------------------------------------------------------------------------------------- configuration
@dataclass
class EvaluationConfig:
    """Notebook 04: evaluate OmniRL and the baselines on the test suites; Table-1 style report."""

    seed: int = 0
    "Base seed of the runs (environments and agents); test tasks use their own fixed seed space."
    suites: list[str] = field(default_factory=lambda: ["anymdp_16", "frozenlake", "darkroom_6"])
    "Suites to evaluate (omnirl_core.suites.SUITE_NAMES)."
    n_tasks: int = 8
    "Tasks per AnyMDP / Garnet suite; parallel runs for the single Gymnasium tasks, Pendulum and DarkRoom."
    n_episodes: int = 50
    "Episode budget per run (the paper: 10,000)."
    max_steps: int | None = None
    "Optional cap on the batched steps of a run (None: until every run has its episodes)."
    agents: list[str] = field(default_factory=lambda: ["random", "oracle", "tql_ucb"])
    "Agents: random, oracle, tql_ucb, omnirl (needs checkpoint), ppo (needs stable-baselines3)."
    tql_c_grid: list[float] = field(default_factory=lambda: [0.1, 0.5, 2.0])
    "UCB bonus scales tried for TQL-UCB per suite; the best (by best average score) is reported."
    tql_gamma: float = 0.99
    "Discount of TQL-UCB."
    ppo_eval_every: int = 100
    "PPO is tested (5 episodes) after every this many training episodes."
    checkpoint: str | None = "shipped"
    "OmniRL checkpoint (.pt/.safetensors; relative: run folder, then repo); 'shipped': models/ per suite; None: skip."
    modes: list[str] = field(default_factory=lambda: ["online"])
    "OmniRL modes: online, offline (perturbed-oracle demonstrations), imitation (oracle demonstrations)."
    demo_episodes: int = 10
    "Demonstration episodes per run in the offline and imitation modes (the paper: 100)."
    demo_noise: float = 0.3
    "Random-action probability of the perturbed oracle (offline mode)."
    temperature: float = 0.5
    "Sampling temperature of OmniRL."
    temperature_schedule: str = "constant"
    "constant, or decay (1.0 -> 0.1 linearly over 10K steps of a run)."
    smooth: int = 5
    "Trailing window (episodes) of the score curve before taking the best value."
    pendulum_samples: int = 100
    "Sampled states per (bin, torque) for the Pendulum model behind its oracle."
    pendulum_reference_episodes: int = 32
    "Monte-Carlo episodes for Pendulum's R_oracle and R_random."
    device: str = "cpu"
    "Torch device of the OmniRL model."
    torch_threads: int | None = 1
    "Torch CPU threads while OmniRL acts (single-token steps run fastest on one thread); null keeps torch's."
    progress: bool = True
    "Show progress bars."

    def validate(self) -> None:
        from .config import check
        from .suites import SUITE_NAMES

        check(len(self.suites) >= 1, "suites", self.suites, "at least one suite")
        for i, s in enumerate(self.suites):
            check(s in SUITE_NAMES, f"suites[{i}]", s, "one of " + ", ".join(SUITE_NAMES))
        for i, a in enumerate(self.agents):
            check(a in AGENT_CHOICES, f"agents[{i}]", a, "one of " + ", ".join(AGENT_CHOICES))
        for i, m in enumerate(self.modes):
            check(m in MODE_CHOICES, f"modes[{i}]", m, "one of " + ", ".join(MODE_CHOICES))
        check(self.seed >= 0, "seed", self.seed, ">= 0")
        check(self.n_tasks >= 1, "n_tasks", self.n_tasks, ">= 1")
        check(self.n_episodes >= 1, "n_episodes", self.n_episodes, ">= 1")
        check(self.max_steps is None or self.max_steps >= 1, "max_steps", self.max_steps, ">= 1 or null")
        check(all(c >= 0 for c in self.tql_c_grid) and len(self.tql_c_grid) >= 1, "tql_c_grid", self.tql_c_grid,
              "at least one value, each >= 0")
        check(0 <= self.tql_gamma < 1, "tql_gamma", self.tql_gamma, "in [0, 1)")
        check(self.ppo_eval_every >= 1, "ppo_eval_every", self.ppo_eval_every, ">= 1")
        check(self.demo_episodes >= 0, "demo_episodes", self.demo_episodes, ">= 0")
        check(0 <= self.demo_noise <= 1, "demo_noise", self.demo_noise, "in [0, 1]")
        check(self.temperature > 0, "temperature", self.temperature, "> 0")
        check(self.temperature_schedule in ("constant", "decay"), "temperature_schedule", self.temperature_schedule,
              "constant or decay")
        check(self.smooth >= 1, "smooth", self.smooth, ">= 1")
        check(self.torch_threads is None or self.torch_threads >= 1, "torch_threads", self.torch_threads,
              ">= 1 or null")
        check(self.pendulum_samples >= 1, "pendulum_samples", self.pendulum_samples, ">= 1")
        check(self.pendulum_reference_episodes >= 2, "pendulum_reference_episodes",
              self.pendulum_reference_episodes, ">= 2")


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


class TQLAgent(Agent):
    """TQL-UCB: :class:`~omnirl_core.learners.QLearner` with ``rule="ucb"`` on observation ids."""

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


class OmniRLAgent(Agent):
    """OmniRL acting in context (see the module docstring). ``model`` is an :class:`~omnirl_core.model.OmniRL`."""

    name = "OmniRL"
    salt = 3

    def __init__(self, model, temperature: float = 0.5, schedule: str = "constant", device: str = "cpu",
                 decay_steps: int = 10_000) -> None:
        self.model = model.eval()
        self.temperature = float(temperature)
        self.schedule = schedule
        self.device = device
        self.decay_steps = int(decay_steps)

    def reset(self, suite, seeds):
        super().reset(suite, seeds)
        cfg = self.model.cfg
        if suite.n_obs > cfg.ns_max:
            raise ValueError(f"suite {suite.name} has {suite.n_obs} observation ids, the model only {cfg.ns_max}")
        self.state = None
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

        logits, self.state = self.model.act(self._tensor(obs, torch.long), self.state)
        z = logits.double().cpu().numpy() / self._temperature()[:, None]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        cdf = np.cumsum(p, axis=1)
        cdf /= cdf[:, -1:]
        cdf[:, -1] = 1.0
        u = self.rng.random(self.num_envs)
        a = (cdf <= u[:, None]).sum(axis=1)
        self.t += 1
        return a % self.na

    def observe(self, obs, actions, rewards, next_obs, terminated, truncated, tags):
        import torch

        _, self.state = self.model.observe(self._tensor(tags, torch.long), self._tensor(actions, torch.long),
                                           self._tensor(rewards, torch.float32), self.state)

    def end_episode(self, mask, final_obs):
        import torch

        mask = np.asarray(mask, bool)
        if not mask.any():
            return
        B, na = self.num_envs, self.model.cfg.na
        _, _, new = self.model.step(
            self._tensor(final_obs, torch.long), self._tensor(np.full(B, TAG_UNKNOWN), torch.long),
            self._tensor(np.full(B, na), torch.long), self._tensor(np.zeros(B), torch.float32), self.state,
        )
        self.state = new if mask.all() else _merge_state(new, self.state, self._tensor(mask, torch.bool))


# ---------------------------------------------------------------------------------------------- checkpoints
class CheckpointConfigError(ValueError):
    """A model checkpoint that is unreadable or does not match the expected model configuration."""


def load_model(path: str | os.PathLike, model_config=None, device: str = "cpu"):
    """An :class:`~omnirl_core.model.OmniRL` from a training checkpoint (``checkpoint.pt``: keys ``model`` and
    ``model_config``) or ``model.safetensors`` (``model_config`` in its metadata).

    With ``model_config`` (a ModelConfig), a checkpoint written with another configuration raises
    :class:`CheckpointConfigError` naming every differing field (the kernel ``backend`` may differ)."""
    import torch

    from .config import ConfigError, load_config
    from .model import ModelConfig, OmniRL, config_differences

    path = Path(path)
    if not path.is_file():
        raise CheckpointConfigError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), "pt") as fh:
                meta = fh.metadata() or {}
            stored = json.loads(meta["model_config"]) if "model_config" in meta else None
            weights = load_file(str(path))
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(ckpt, dict) or "model" not in ckpt:
                raise CheckpointConfigError(f"{path}: not an OmniRL checkpoint (no 'model' entry)")
            stored, weights = ckpt.get("model_config"), ckpt["model"]
    except CheckpointConfigError:
        raise
    except Exception as exc:
        raise CheckpointConfigError(f"{path}: not a readable OmniRL checkpoint ({exc})") from None
    if stored is None:
        raise CheckpointConfigError(f"{path}: the checkpoint does not record its model configuration")
    if isinstance(stored, str):
        stored = json.loads(stored)
    try:
        cfg = load_config(ModelConfig, stored)
    except ConfigError as exc:
        raise CheckpointConfigError(f"{path}: its model configuration is invalid: {exc}") from None
    if model_config is not None:
        diffs = config_differences(stored, model_config)
        if diffs:
            raise CheckpointConfigError(f"{path} was written with another model configuration:\n  "
                                        + "\n  ".join(diffs))
        cfg.backend = model_config.backend
    model = OmniRL(cfg)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise CheckpointConfigError(f"{path}: the weights do not fit the recorded model configuration: {exc}") from None
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------- runs
@dataclass
class RunResult:
    """Episode returns of one agent on one suite: ``returns`` / ``steps`` [B, K] (NaN where a run did not
    reach episode k); ``steps[b, k]`` is run b's step count (demonstrations excluded) when episode k ended."""

    suite: str
    agent: str
    returns: np.ndarray
    steps: np.ndarray
    r_oracle: np.ndarray
    r_random: np.ndarray
    valid: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def n_skipped(self) -> int:
        return int((~self.valid).sum())

    @property
    def scores(self) -> np.ndarray:
        """[B, K] normalised scores (NaN for skipped runs)."""
        gap = np.where(self.valid, self.r_oracle - self.r_random, np.nan)
        return (self.returns - self.r_random[:, None]) / gap[:, None]

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean score [K] over the valid runs, mean step count [K] at each episode's end)."""
        s = self.scores[self.valid]
        if s.size == 0:
            k = self.returns.shape[1]
            return np.full(k, np.nan), np.full(k, np.nan)
        import warnings

        with warnings.catch_warnings():  # all-NaN columns (episodes no run reached) give NaN quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(s, axis=0), np.nanmean(self.steps[self.valid], axis=0)


def run_agent(
    suite: Suite,
    agent: Agent,
    n_episodes: int,
    *,
    seed: int | Sequence[int] = 0,
    max_steps: int | None = None,
    demo: Agent | None = None,
    demo_episodes: int = 0,
    progress: bool = False,
    desc: str | None = None,
    on_step: Callable[[int, dict], None] | None = None,
) -> RunResult:
    """Run ``agent`` on every environment of ``suite`` for ``n_episodes`` evaluation episodes each.

    ``seed``: an int (per-run seeds derived from it, the same for run b whatever the batch) or one seed per run.
    ``demo`` / ``demo_episodes``: a demonstrator acting first (offline RL / imitation). ``on_step(t, record)``
    sees every transition (for tests and debugging)."""
    from .suites import env_seeds

    B, K = suite.num_envs, int(n_episodes)
    seeds = env_seeds(seed, B) if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if len(seeds) != B:
        raise ValueError(f"need {B} seeds, got {len(seeds)}")
    env = suite.make_env()
    obs, _ = env.reset(seed=seeds)
    agent.reset(suite, seeds)
    if demo is not None:
        demo.reset(suite, seeds)
    demo_left = np.full(B, int(demo_episodes) if demo is not None else 0)
    returns = np.full((B, K), np.nan)
    steps_at = np.full((B, K), np.nan)
    n_done = np.zeros(B, dtype=np.int64)
    own_steps = np.zeros(B, dtype=np.int64)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=B * K, desc=desc or f"{agent.name} on {suite.name}", unit="ep", leave=False)
    t = 0
    while (n_done < K).any() and (max_steps is None or t < max_steps):
        in_demo = demo_left > 0
        actions = np.asarray(agent.act(obs), dtype=np.int64)
        tags = np.full(B, TAG_UNKNOWN)
        if in_demo.any():
            d_act, d_tag = demo.act_tags(obs)
            actions = np.where(in_demo, d_act, actions)
            tags = np.where(in_demo, d_tag, tags)
        nxt_obs, rewards, term, trunc, infos = env.step(actions)
        reached = np.asarray(infos["final_obs"])
        agent.observe(obs, actions, rewards, reached, term, trunc, tags)
        own_steps += ~in_demo
        done = term | trunc
        if on_step is not None:
            on_step(t, {"obs": obs, "actions": actions, "rewards": rewards, "next_obs": reached, "done": done,
                        "tags": tags})
        if done.any():
            agent.end_episode(done, reached)
            before = int(np.minimum(n_done, K).sum())
            for b in np.flatnonzero(done):
                if in_demo[b]:
                    demo_left[b] -= 1
                elif n_done[b] < K:
                    returns[b, n_done[b]] = infos["final_return"][b]
                    steps_at[b, n_done[b]] = own_steps[b]
                    n_done[b] += 1
            if bar is not None:
                bar.update(int(np.minimum(n_done, K).sum()) - before)
        obs = nxt_obs
        t += 1
    if bar is not None:
        bar.close()
    return RunResult(suite=suite.name, agent=agent.name, returns=returns, steps=steps_at, r_oracle=suite.r_oracle,
                     r_random=suite.r_random, valid=suite.valid, info={"batched_steps": t})


def run_ppo(suite: Suite, n_episodes: int, *, eval_every: int = 100, eval_episodes: int = 5, seed: int = 0,
            progress: bool = False, **ppo_kwargs) -> RunResult:
    """PPO (stable-baselines3, optional extra ``ppo``) trained separately on every run's environment, tested with
    ``eval_episodes`` episodes of its stochastic policy after every ``eval_every`` training episodes (the paper's
    protocol). Point k of the result is the test average after ``(k + 1) * eval_every`` training episodes, at
    the training step count reached then. ``ppo_kwargs`` override the defaults (n_steps 256, batch 64,
    lr 3e-4, gamma 0.99, entropy 0.01; not tuned per family here)."""
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the PPO baseline needs stable-baselines3: pip install -e .[ppo]") from exc
    if suite.make_single is None:
        raise ValueError(f"suite {suite.name} cannot build single environments for PPO")
    from .suites import env_seeds

    B, K = suite.num_envs, max(1, int(n_episodes) // int(eval_every))
    returns, steps = np.full((B, K), np.nan), np.full((B, K), np.nan)
    seeds = env_seeds(seed, B)
    kwargs = dict(n_steps=256, batch_size=64, learning_rate=3e-4, gamma=0.99, ent_coef=0.01, verbose=0, device="cpu")
    kwargs.update(ppo_kwargs)

    class _Tester(BaseCallback):
        def __init__(self, b: int, test_env) -> None:
            super().__init__()
            self.b, self.test_env, self.episodes, self.k = b, test_env, 0, 0

        def _on_step(self) -> bool:
            self.episodes += int(np.sum(self.locals["dones"]))
            if self.episodes >= (self.k + 1) * eval_every and self.k < K:
                total = 0.0
                for _ in range(eval_episodes):
                    obs, _ = self.test_env.reset()
                    done = False
                    while not done:
                        a, _ = self.model.predict(obs, deterministic=False)
                        obs, r, te, tr, _ = self.test_env.step(int(a))
                        total += float(r)
                        done = te or tr
                returns[self.b, self.k] = total / eval_episodes
                steps[self.b, self.k] = self.num_timesteps
                self.k += 1
            return self.k < K

    for b in range(B):
        s32 = int(seeds[b] % 2**31)
        env, test_env = suite.make_single(b), suite.make_single(b)
        env.reset(seed=s32)
        test_env.reset(seed=s32 + 1)
        model = PPO("MlpPolicy", env, seed=s32, **kwargs)
        model.learn(total_timesteps=10**12, callback=_Tester(b, test_env), progress_bar=False)
        if progress:
            print(f"PPO on {suite.name}: run {b + 1}/{B} done")
    return RunResult(suite=suite.name, agent="PPO", returns=returns, steps=steps, r_oracle=suite.r_oracle,
                     r_random=suite.r_random, valid=suite.valid,
                     info={"episode_index": (np.arange(K) + 1) * int(eval_every)})


def tune_tql(suite: Suite, c_grid: Sequence[float], n_episodes: int, *, gamma: float = 0.99, seed: int = 0,
             max_steps: int | None = None, smooth: int = 5, progress: bool = False) -> tuple[RunResult, dict]:
    """TQL-UCB with each ``c`` of the grid; returns the run with the best Table-1 score and {c: best score}.

    Selection is on the reported runs themselves (tuned per task family, as in the paper), which favours the
    baseline slightly."""
    best, scores = None, {}
    for c in c_grid:
        res = run_agent(suite, TQLAgent(c=c, gamma=gamma), n_episodes, seed=seed, max_steps=max_steps,
                        progress=progress, desc=f"TQL-UCB c={c:g} on {suite.name}")
        m = table_metrics(res, smooth)
        scores[float(c)] = m["best"]
        if best is None or (np.nan_to_num(m["best"], nan=-np.inf) > np.nan_to_num(best[1], nan=-np.inf)):
            best = (res, m["best"], c)
    res, _, c = best
    res.info["c"] = float(c)
    return res, scores


# ---------------------------------------------------------------------------------------------- metrics
def table_metrics(result: RunResult, smooth: int = 5) -> dict:
    """Best smoothed average score within the budget; episodes and (mean) steps to reach 99% of it."""
    curve, steps = result.curve()
    n = len(curve)
    out = {"best": math.nan, "episodes_99": math.nan, "steps_99": math.nan, "final": math.nan,
           "n_runs": int(result.valid.size), "n_skipped": result.n_skipped}
    ok = ~np.isnan(curve)
    if not ok.any():
        return out
    c = np.where(ok, curve, 0.0)
    w = max(1, int(smooth))
    cs = np.cumsum(c)
    cnt = np.cumsum(ok)
    lo = np.arange(n) - w
    sm_sum = cs - np.where(lo >= 0, cs[np.maximum(lo, 0)], 0.0)
    sm_cnt = cnt - np.where(lo >= 0, cnt[np.maximum(lo, 0)], 0)
    smooth_curve = np.where(sm_cnt > 0, sm_sum / np.maximum(sm_cnt, 1), np.nan)
    best = float(np.nanmax(smooth_curve))
    target = best - 0.01 * abs(best)
    k = int(np.flatnonzero(smooth_curve >= target)[0])
    index = result.info.get("episode_index")
    episodes_99 = int(index[k]) if index is not None else k + 1
    steps_99 = float(steps[k]) if not np.isnan(steps[k]) else math.nan
    out.update(best=best, episodes_99=episodes_99, steps_99=steps_99, final=float(smooth_curve[ok][-1]))
    return out


def table_rows(results: Sequence[RunResult], smooth: int = 5) -> list[dict]:
    """One row per (suite, agent): our metrics and the paper's numbers for that method where it has them."""
    paper_name = {"TQL-UCB": "TQL-UCB", "PPO": "PPO", "OmniRL": "OmniRL"}
    rows = []
    for r in results:
        m = table_metrics(r, smooth)
        base = r.agent.split(" ")[0]
        paper = PAPER_TABLE1.get(r.suite, {}).get(paper_name.get(base, ""), (math.nan, None))
        rows.append({
            "suite": r.suite, "agent": r.agent, "best_score": m["best"], "episodes_to_99": m["episodes_99"],
            "steps_to_99": m["steps_99"], "final_score": m["final"], "runs": m["n_runs"], "skipped": m["n_skipped"],
            "paper_best_score": paper[0], "paper_steps_to_99": math.nan if paper[1] is None else paper[1],
            "c": r.info.get("c", ""),
        })
    return rows


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        if abs(x) >= 1000:
            return f"{x / 1000:.1f}K" if abs(x) < 1e6 else f"{x / 1e6:.2f}M"
        return f"{x:.3f}" if abs(x) < 10 else f"{x:.0f}"
    return str(x)


def _fmt_steps(x: Any) -> str:
    if isinstance(x, (int, np.integer)) or (isinstance(x, float) and not math.isnan(x) and abs(x) < 1000):
        return f"{float(x):.0f}"
    return _fmt(x)


def markdown_table(rows: Sequence[dict]) -> str:
    cols = ["suite", "agent", "best_score", "episodes_to_99", "steps_to_99", "paper_best_score", "paper_steps_to_99",
            "runs", "skipped"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt_steps(row[c]) if "steps" in c or "episodes" in c else _fmt(row[c])
                                       for c in cols) + " |")
    return "\n".join(lines)


def write_report(results: Sequence[RunResult], out_dir: str | os.PathLike, smooth: int = 5) -> dict[str, Path]:
    """Write ``table1.csv``, ``table1.md`` and ``curves.csv`` (mean score and steps per episode) under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(results, smooth)
    paths = {"csv": out / "table1.csv", "md": out / "table1.md", "curves": out / "curves.csv"}
    with open(paths["csv"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["suite"])
        w.writeheader()
        w.writerows(rows)
    paths["md"].write_text(
        "# Table 1 (reproduction)\n\nBest average normalised score within the episode budget (trailing mean over "
        f"{smooth} episodes), episodes and steps to reach 99% of it; paper columns: the paper's Table 1 for the same "
        "method.\n\n" + markdown_table(rows) + "\n")
    with open(paths["curves"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["suite", "agent", "episode", "mean_score", "mean_steps"])
        for r in results:
            curve, steps = r.curve()
            for k, (s, n) in enumerate(zip(curve, steps)):
                w.writerow([r.suite, r.agent, k + 1, f"{s:.6g}", f"{n:.6g}"])
    return paths


def plot_curves(results: Sequence[RunResult], out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """One figure per suite: mean score against episodes and against steps, one line per agent."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figs = {}
    for suite in dict.fromkeys(r.suite for r in results):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        for r in results:
            if r.suite != suite:
                continue
            curve, steps = r.curve()
            x = r.info.get("episode_index")
            axes[0].plot(np.arange(1, len(curve) + 1) if x is None else x, curve, label=r.agent)
            axes[1].plot(steps, curve, label=r.agent)
        for ax, xl in zip(axes, ("episodes", "steps")):
            ax.set_xlabel(xl)
            ax.set_ylabel("normalised score")
            ax.axhline(1.0, color="grey", lw=0.5, ls="--")
            ax.axhline(0.0, color="grey", lw=0.5, ls=":")
        axes[1].set_xscale("symlog")
        axes[0].legend(fontsize=8)
        fig.suptitle(suite)
        fig.tight_layout()
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            fig.savefig(Path(out_dir) / f"curves_{suite}.png", dpi=100)
        figs[suite] = fig
    return figs


# ---------------------------------------------------------------------------------------------- driver
SHIPPED = "shipped"
_SHIPPED_MODELS: dict[str, Any] = {}


def _model_for_suite(cfg: EvaluationConfig, suite: Suite, model, shipped: bool):
    """(model, temperature, reason when None) for OmniRL on ``suite``."""
    if shipped:
        from .incontext import load_shipped, shipped_model_for

        try:
            info = shipped_model_for(suite.n_obs)
        except LookupError as exc:
            return None, None, str(exc)
        if info.name not in _SHIPPED_MODELS:
            _SHIPPED_MODELS[info.name] = load_shipped(info.path, device=cfg.device)[0]
        return _SHIPPED_MODELS[info.name], info.temperature, ""
    if model is None:
        return None, None, "no checkpoint configured"
    if suite.n_obs > model.cfg.ns_max:
        return None, None, f"the model takes at most {model.cfg.ns_max} observation ids, the suite has {suite.n_obs}"
    return model, cfg.temperature, ""


def evaluate(cfg: EvaluationConfig, model=None, log: Callable[[str], None] | None = print) -> list[RunResult]:
    """Every configured agent (and OmniRL mode) on every configured suite. ``model``: a loaded OmniRL model
    (default: loaded from ``cfg.checkpoint`` when "omnirl" is among the agents)."""
    results: list[RunResult] = []
    shipped = model is None and cfg.checkpoint == SHIPPED
    if "omnirl" in cfg.agents and model is None and cfg.checkpoint and not shipped:
        model = load_model(cfg.checkpoint, device=cfg.device)
    for name in cfg.suites:
        suite = build_suite(name, cfg.n_tasks, pendulum_samples=cfg.pendulum_samples,
                            pendulum_reference_episodes=cfg.pendulum_reference_episodes)
        common = dict(seed=cfg.seed, max_steps=cfg.max_steps, progress=cfg.progress)
        for agent in cfg.agents:
            if agent == "random":
                results.append(run_agent(suite, RandomAgent(), cfg.n_episodes, **common))
            elif agent == "oracle":
                results.append(run_agent(suite, OracleAgent(), cfg.n_episodes, **common))
            elif agent == "tql_ucb":
                res, _ = tune_tql(suite, cfg.tql_c_grid, cfg.n_episodes, gamma=cfg.tql_gamma, smooth=cfg.smooth,
                                  **common)
                res.agent = f"TQL-UCB (c={res.info['c']:g})"
                results.append(res)
            elif agent == "omnirl":
                suite_model, temperature, why = _model_for_suite(cfg, suite, model, shipped)
                if suite_model is None:
                    if log:
                        log(f"{name}: OmniRL skipped ({why})")
                    continue
                for mode in cfg.modes:
                    demo = None
                    if mode == "offline":
                        demo = NoisyOracleAgent(cfg.demo_noise)
                    elif mode == "imitation":
                        demo = OracleAgent()
                    ag = OmniRLAgent(suite_model, temperature, cfg.temperature_schedule, cfg.device)
                    import torch

                    threads = torch.get_num_threads()
                    if cfg.torch_threads:
                        torch.set_num_threads(cfg.torch_threads)
                    try:
                        res = run_agent(suite, ag, cfg.n_episodes, demo=demo, demo_episodes=cfg.demo_episodes,
                                        **common)
                    finally:
                        torch.set_num_threads(threads)
                    res.agent = "OmniRL" if mode == "online" else f"OmniRL ({mode})"
                    results.append(res)
            elif agent == "ppo":
                try:
                    import stable_baselines3  # noqa: F401
                except ImportError:
                    if log:
                        log(f"{name}: PPO skipped (stable-baselines3 is not installed: pip install -e .[ppo])")
                    continue
                results.append(run_ppo(suite, cfg.n_episodes, eval_every=cfg.ppo_eval_every, seed=cfg.seed,
                                       progress=cfg.progress))
        if log:
            log(f"{name}: done ({suite.num_envs} runs, {int((~suite.valid).sum())} skipped, reference "
                f"{suite.reference})")
    return results
