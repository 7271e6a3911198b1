"""The online baselines, TQL-UCB and PPO, scored as the paper scores them (section 5: "tested 5 episodes after
every 100 training episodes"): point k of a run's curve is the mean return of ``eval_episodes`` test episodes
of its exploitation policy after ``(k + 1) * eval_every`` training episodes, at the training steps taken then;
test steps are not counted. The paper does not say which policy the test episodes play; here TQL-UCB plays
greedy w.r.t. its Q without the exploration bonus, PPO the most probable action of its policy
(``deterministic=True``; ``False`` samples it). TQL-UCB's older scoring, on its own exploring training
episodes (one point per episode), stays available as ``scoring="training"``.

PPO is stable-baselines3, an optional extra (``pip install -e .[ppo]``); the offline CQL baseline is in
:mod:`.offline`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..workbook.errors import InputError
from .agents import TQLAgent
from .report import table_metrics
from .runs import RunResult, run_agent
from .suites import Suite
from .tested import run_tested

SCORINGS = ("test", "training")


def run_ppo(suite: Suite, n_episodes: int, *, eval_every: int = 100, eval_episodes: int = 5, seed: int = 0,
            deterministic: bool = True, progress: bool = False, **ppo_kwargs) -> RunResult:
    """PPO (stable-baselines3, optional extra ``ppo``) trained separately on every run's environment (a one-hot
    observation, SB3's MlpPolicy), tested with ``eval_episodes`` episodes after every ``eval_every`` training
    episodes on a second copy of that environment (own seed; test steps are not training steps). The test
    episodes play the policy's most probable action (``deterministic``; False samples the policy). Point k of
    the result is the test average after ``(k + 1) * eval_every`` training episodes, at the training step count
    reached then. ``ppo_kwargs`` override the defaults (n_steps 256, batch 64, lr 3e-4, gamma 0.99, entropy
    0.01; not tuned per family here)."""
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the PPO baseline needs stable-baselines3: pip install -e .[ppo]") from exc
    if suite.make_single is None:
        raise ValueError(f"suite {suite.name} cannot build single environments for PPO")
    from .streams import env_seeds

    B, K = suite.num_envs, int(n_episodes) // int(eval_every)
    if K < 1:
        raise InputError(f"no test point: n_episodes ({n_episodes}) must be at least eval_every ({eval_every})")
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
                        a, _ = self.model.predict(obs, deterministic=deterministic)
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
                     info={"episode_index": ((np.arange(K) + 1) * int(eval_every)).tolist(),
                           "eval_every": int(eval_every), "eval_episodes": int(eval_episodes), "scoring": "test",
                           "policy": "deterministic" if deterministic else "sampled"})


def run_tql(suite: Suite, n_episodes: int, *, c: float = 1.0, gamma: float = 0.99, scoring: str = "test",
            eval_every: int = 100, eval_episodes: int = 5, seed: int = 0, max_steps: int | None = None,
            progress: bool = False) -> RunResult:
    """TQL-UCB (:class:`~omnirl_core.evaluation.agents.TQLAgent`) for ``n_episodes`` training episodes per run.

    ``scoring="test"`` (default, the paper's): one point per ``eval_every`` training episodes, the mean return of
    ``eval_episodes`` test episodes of the greedy policy (argmax Q, no bonus, ties at random) on a separate copy
    of the environment (:func:`~omnirl_core.evaluation.tested.run_tested`). ``scoring="training"``: one point per
    training episode, the return of the exploring episode itself."""
    if scoring not in SCORINGS:
        raise InputError(f"scoring {scoring!r} is not allowed: choose one of {', '.join(SCORINGS)}")
    agent, desc = TQLAgent(c=c, gamma=gamma), f"TQL-UCB c={c:g} on {suite.name}"
    if scoring == "training":
        res = run_agent(suite, agent, n_episodes, seed=seed, max_steps=max_steps, progress=progress, desc=desc)
        res.info["scoring"] = "training"
        return res
    return run_tested(suite, agent, n_episodes, eval_every=eval_every, eval_episodes=eval_episodes, seed=seed,
                      max_steps=max_steps, progress=progress, desc=desc)[0]


def tune_tql(suite: Suite, c_grid: Sequence[float], n_episodes: int, *, gamma: float = 0.99, seed: int = 0,
             max_steps: int | None = None, smooth: int = 5, progress: bool = False, scoring: str = "test",
             eval_every: int = 100, eval_episodes: int = 5) -> tuple[RunResult, dict]:
    """:func:`run_tql` with each ``c`` of the grid; returns the run with the best Table-1 score and {c: best score}.

    Selection is on the reported runs themselves (tuned per task family, as in the paper), which favours the
    baseline slightly."""
    best, scores = None, {}
    for c in c_grid:
        res = run_tql(suite, n_episodes, c=c, gamma=gamma, scoring=scoring, eval_every=eval_every,
                      eval_episodes=eval_episodes, seed=seed, max_steps=max_steps, progress=progress)
        m = table_metrics(res, smooth)
        scores[float(c)] = m["best"]
        if best is None or (np.nan_to_num(m["best"], nan=-np.inf) > np.nan_to_num(best[1], nan=-np.inf)):
            best = (res, m["best"], c)
    res, _, c = best
    res.info["c"] = float(c)
    return res, scores
