"""Running an agent through a suite (Algorithm 4): :func:`run_agent` drives any agent through a suite's batched
environment until every run has finished ``n_episodes`` evaluation episodes (or a step cap), recording each
episode's return and the run's step count at its end. With a demonstrator (offline RL / imitation), each run
first executes ``demo_episodes`` episodes chosen by the demonstrator; the agent observes them with the
demonstrator's tags, then acts itself. Scoring on separate test episodes instead (the paper's protocol for
TQL-UCB and PPO) is in :mod:`.tested` and :mod:`.baselines`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .agents import TAG_UNKNOWN, Agent
from .suites import Suite

# ---------------------------------------------------------------------------------------------- memory
BYTES_PER_TASK_AND_STEP = 48
"""Memory of a run per task and step of its budget, besides 1 byte per bin: :func:`run_agent`'s returns and step
counts (two float64 [tasks, steps] arrays), and the scores and copies that scoring them in bins makes
(:func:`~.incontext.online_gain` measured at about 46.5 bytes with 6 bins)."""


def available_memory() -> int:
    """Bytes of memory a run can take now: the system's available memory (``MemAvailable``, else the physical
    memory), at most this process's cgroup limit."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            limit = fh.read().strip()
        if limit.isdigit():
            avail = min(avail, int(limit))
    except OSError:
        pass
    return avail


def run_memory(n_tasks: int, steps: int, bins: int) -> int:
    """Bytes a run of ``n_tasks`` tasks for ``steps`` steps, scored in ``bins`` bins, allocates at its peak."""
    return int(n_tasks) * int(steps) * (BYTES_PER_TASK_AND_STEP + int(bins))


# ---------------------------------------------------------------------------------------------- runs
def normalised_score(returns, r_oracle, r_random) -> np.ndarray:
    """The paper's score, the one definition every table and study uses: ``(R - R_random) / (R_oracle -
    R_random)``, per task. ``returns`` [B, ...] episodic returns, ``r_oracle`` and ``r_random`` [B] the mean
    returns of the oracle and the uniform-random policy on the same tasks; NaN where the two are equal (the paper
    skips such tasks) or either is NaN."""
    returns, r_orc, r_rnd = (np.asarray(x, dtype=float) for x in (returns, r_oracle, r_random))
    shape = (-1,) + (1,) * (returns.ndim - 1)
    gap = (r_orc - r_rnd).reshape(shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap != 0, (returns - r_rnd.reshape(shape)) / np.where(gap != 0, gap, 1.0), np.nan)


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

    def save(self, path: str | Path) -> None:
        """Write the result to ``path`` (``.npz``, no pickle)."""
        meta = json.dumps({"suite": self.suite, "agent": self.agent, "info": self.info})
        np.savez(path, returns=self.returns, steps=self.steps, r_oracle=self.r_oracle, r_random=self.r_random,
                 valid=self.valid, meta=np.array(meta))

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(meta["suite"], meta["agent"], z["returns"], z["steps"], z["r_oracle"], z["r_random"],
                       z["valid"], meta["info"])

    @property
    def n_skipped(self) -> int:
        return int((~self.valid).sum())

    @property
    def scores(self) -> np.ndarray:
        """[B, K] normalised scores (:func:`normalised_score`; NaN for skipped runs)."""
        return normalised_score(self.returns, np.where(self.valid, self.r_oracle, np.nan), self.r_random)

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
    on_episodes: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    finish_after: float | None = None,
) -> RunResult:
    """Run ``agent`` on every environment of ``suite`` for ``n_episodes`` evaluation episodes each.

    ``seed``: an int (per-run seeds derived from it, the same for run b whatever the batch) or one seed per run.
    ``demo`` / ``demo_episodes``: a demonstrator acting first (offline RL / imitation). ``on_step(t, record)``
    sees every transition (``obs``, ``actions``, ``rewards``, ``next_obs``, ``terminated``, ``truncated``,
    ``done``, ``tags``, ``in_demo``). ``on_episodes(ended, n_done, own_steps)`` is called after the agent's
    ``end_episode`` whenever some runs (mask ``ended`` [B]) finished one of their own (non-demonstration)
    episodes within the budget; ``n_done`` [B] counts those episodes, ``own_steps`` [B] the agent's own steps
    (scoring on test episodes, :mod:`.tested`, hooks in here). ``finish_after``: past ``max_steps``, the batch
    keeps stepping (at most ``max_steps`` more) while some run has ended no episode whose last step (0-based) is at
    or after ``finish_after``, so that the episode it was playing at the budget has a score
    (:func:`.incontext.online_gain`)."""
    from .streams import env_seeds

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
    last_end = np.zeros(B, dtype=np.int64)  # own steps at each run's last recorded episode end

    def unfinished(t: int) -> bool:
        if max_steps is None or t < max_steps:
            return True
        return finish_after is not None and t < 2 * max_steps and bool((last_end - 1 < finish_after).any())

    while (n_done < K).any() and unfinished(t):
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
            on_step(t, {"obs": obs, "actions": actions, "rewards": rewards, "next_obs": reached, "terminated": term,
                        "truncated": trunc, "done": done, "tags": tags, "in_demo": in_demo})
        if done.any():
            agent.end_episode(done, reached)
            before = int(np.minimum(n_done, K).sum())
            ended = np.zeros(B, bool)
            for b in np.flatnonzero(done):
                if in_demo[b]:
                    demo_left[b] -= 1
                elif n_done[b] < K:
                    returns[b, n_done[b]] = infos["final_return"][b]
                    steps_at[b, n_done[b]] = own_steps[b]
                    last_end[b] = own_steps[b]
                    n_done[b] += 1
                    ended[b] = True
            if on_episodes is not None and ended.any():
                on_episodes(ended, n_done.copy(), own_steps.copy())
            if bar is not None:
                bar.update(int(np.minimum(n_done, K).sum()) - before)
        obs = nxt_obs
        t += 1
    if bar is not None:
        bar.close()
    return RunResult(suite=suite.name, agent=agent.name, returns=returns, steps=steps_at, r_oracle=suite.r_oracle,
                     r_random=suite.r_random, valid=suite.valid, info={"batched_steps": t})
