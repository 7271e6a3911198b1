"""PPO (stable-baselines3, optional extra ``ppo``: ``pip install -e .[ppo]``), Table 1's second online baseline:
one PPO trained alone on each run's environment, scored on test episodes as :mod:`.baselines` scores TQL-UCB,
tuned per task family over (learning rate, entropy coefficient) by :func:`~.tuning.pick_best`.

A run is costly (one PPO for the whole episode budget of one task), and the paper profile's grid of 3 x 2
settings on all 256 tasks of a suite is 1,536 runs, about 1.7B environment steps on AnyMDP(16) alone. Two
settings bring that down (``bench/ppo_cost.py`` measures the rate and projects the paper profile):

- ``tune_tasks`` (held-out tuning): the grid runs on that many tasks that are not reported
  (:func:`held_out_suite`), then only the chosen setting runs on the reported tasks: grid x tune_tasks + tasks
  runs instead of grid x tasks. 0 tunes on the reported runs themselves, which favours the tuned baseline a
  little.
- ``processes``: the runs are spread over that many spawned worker processes (one torch thread each). A run
  depends only on its environment and its seed, never on the process or the order it ran in, so the results are
  those of one process (tested). A worker exits within a second of its parent process ending, however it ends.

Seeds: reported run b takes the seed of environment b of the run (:func:`~.streams.env_seeds`, from
``SeedSequence([seed, b])``); tuning run i the seed of index 50,000 + i, apart from any reported run's.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace

import numpy as np

from ..workbook.errors import InputError
from ..workbook.orphans import die_with_parent
from .report import table_metrics
from .runs import RunResult
from .streams import env_seeds
from .suites import Suite, task_suite, test_seed
from .tuning import pick_best

TUNE_INDEX = 50_000
"""Seed index of tuning run 0 (the reported runs take 0..B-1); for AnyMDP also the test-seed index of the first
held-out task, as :func:`~.incontext.validation_suite` draws its tasks."""
PPO_DEFAULTS = dict(n_steps=256, batch_size=64, learning_rate=3e-4, gamma=0.99, ent_coef=0.01, verbose=0,
                    device="cpu")


# ---------------------------------------------------------------------------------------------- one run
def _train(env, test_env, seed: int, n_episodes: int, eval_every: int, eval_episodes: int, deterministic: bool,
           kwargs: dict) -> tuple[np.ndarray, np.ndarray]:
    """One PPO run on ``env``, tested on ``test_env`` after every ``eval_every`` training episodes: the test
    returns and the training steps at each test point. Trains on one torch thread (the small MLP runs fastest
    so, and the run is the same whichever process runs it); the caller's thread count is restored."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    K = int(n_episodes) // int(eval_every)
    returns, steps = np.full(K, np.nan), np.full(K, np.nan)

    class _Tester(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.episodes, self.k = 0, 0

        def _on_step(self) -> bool:
            self.episodes += int(np.sum(self.locals["dones"]))
            if self.episodes >= (self.k + 1) * eval_every and self.k < K:
                total = 0.0
                for _ in range(eval_episodes):
                    obs, _ = test_env.reset()
                    done = False
                    while not done:
                        a, _ = self.model.predict(obs, deterministic=deterministic)
                        obs, r, te, tr, _ = test_env.step(int(a))
                        total += float(r)
                        done = te or tr
                returns[self.k] = total / eval_episodes
                steps[self.k] = self.num_timesteps
                self.k += 1
            return self.k < K

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        env.reset(seed=seed)
        test_env.reset(seed=seed + 1)
        model = PPO("MlpPolicy", env, seed=seed, **{**PPO_DEFAULTS, **kwargs})
        model.learn(total_timesteps=10**12, callback=_Tester(), progress_bar=False)
    finally:
        torch.set_num_threads(threads)
    return returns, steps


def _train_sent(envs: bytes, *args) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_train` in a worker process, its two environments sent pickled."""
    env, test_env = pickle.loads(envs)
    return _train(env, test_env, *args)


class _Runs:
    """Runs PPO jobs in this process (``processes`` 1) or on ``processes`` spawned workers, at most two jobs per
    worker sent ahead (each carries its pickled environments), the results in job order. Leaving the ``with``
    block on an error (Ctrl-C included) stops the workers at once."""

    def __init__(self, processes: int) -> None:
        self.processes, self.pool = int(processes), None

    def __enter__(self) -> _Runs:
        if self.processes > 1:
            self.pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=die_with_parent, initargs=(os.getpid(),))
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if self.pool is None:
            return
        if kind is not None:
            self.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        """Terminate the workers (running jobs are lost)."""
        stop = getattr(self.pool, "terminate_workers", None)  # Python 3.14+
        if stop is not None:
            stop()
            return
        for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
            proc.terminate()

    def worker_pids(self) -> list[int]:
        return [p.pid for p in (getattr(self.pool, "_processes", None) or {}).values()]

    def run(self, jobs: Sequence[tuple[Callable[[], tuple], tuple]], done: Callable[[int], None] | None = None,
            name: str = "") -> list[tuple[np.ndarray, np.ndarray]]:
        """``jobs``: (make the two environments, the rest of :func:`_train`'s arguments); ``done(i)`` after job i;
        ``name``: the suite, for messages."""
        out: list = [None] * len(jobs)
        if self.pool is None:
            for i, (make, args) in enumerate(jobs):
                out[i] = _train(*make(), *args)
                if done:
                    done(i)
            return out
        pending, todo = {}, iter(enumerate(jobs))
        while True:
            for i, (make, args) in todo:
                envs = make()
                try:
                    sent = pickle.dumps(envs)
                except Exception as exc:
                    raise InputError(f"processes {self.processes}: the environments of suite {name} cannot be sent "
                                     f"to worker processes ({type(envs[0]).__name__}: {exc}); use processes 1 "
                                     "(ppo_processes: 1)") from exc
                pending[self.pool.submit(_train_sent, sent, *args)] = i
                if len(pending) >= 2 * self.processes:
                    break
            if not pending:
                return out
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = pending.pop(fut)
                out[i] = fut.result()
                if done:
                    done(i)


# ---------------------------------------------------------------------------------------------- suites, seeds
def tuning_seeds(seed: int, n: int) -> list[int]:
    """Seeds of tuning runs 0..n-1: those :func:`~.streams.env_seeds` gives environments 50,000 + i."""
    return [int(np.random.SeedSequence([int(seed), TUNE_INDEX + i]).generate_state(2, np.uint32).view(np.uint64)[0])
            for i in range(int(n))]


def held_out_suite(suite: Suite, n: int) -> tuple[Suite, str]:
    """``n`` tasks to tune PPO on for ``suite``, none of them a reported task, and what they are.

    AnyMDP and Garnet suites: other test tasks of the same family and size, test-seed indices 50,000 + i
    (:func:`~.suites.test_seed`; AnyMDP's are :func:`~.incontext.validation_suite`'s, which also choose OmniRL's
    checkpoints and temperatures); never a reported task nor a training task. Every other suite (CliffWalking,
    the FrozenLakes, DarkRoom, Pendulum, a suite of your own) has no other tasks to draw: tuning run i is the
    suite's environment i mod B (DarkRoom: every corner in turn) run with another seed (:func:`tuning_seeds`)."""
    family, ns = suite.info.get("family"), suite.info.get("ns")
    if family == "anymdp" and suite.tasks is not None:
        from .incontext import VALIDATION_INDEX, validation_suite

        return (validation_suite(int(ns), n, suite.na),
                f"{n} held-out AnyMDP tasks (test-seed indices {VALIDATION_INDEX}+)")
    if family == "garnet" and suite.tasks is not None:
        from ..world.garnet import sample_garnet

        # the draw of build_suite's Garnet tasks (branching 2) at other test-seed indices
        tasks = [sample_garnet(int(ns), suite.na, 2, seed=test_seed(1, int(ns), TUNE_INDEX + i)) for i in range(n)]
        return (task_suite(f"val_garnet_{ns}", tasks, info={"family": "garnet", "ns": ns}),
                f"{n} held-out Garnet tasks (test-seed indices {TUNE_INDEX}+)")
    B = suite.num_envs
    idx = np.arange(n) % B
    make = suite.make_single
    same = replace(suite, name=f"{suite.name} (tuning)", r_oracle=suite.r_oracle[idx], r_random=suite.r_random[idx],
                   oracle_actions=suite.oracle_actions[idx], tasks=None if suite.tasks is None else
                   [suite.tasks[i] for i in idx], make_single=None if make is None else (lambda i: make(int(i) % B)))
    return same, f"the suite's environments with {n} other seeds (seed indices {TUNE_INDEX}+)"


def _check_counts(tune_tasks: int, processes: int) -> None:
    if not isinstance(tune_tasks, (int, np.integer)) or isinstance(tune_tasks, bool) or tune_tasks < 0:
        raise InputError(f"tune_tasks {tune_tasks!r} is not allowed: must be an integer >= 0 (the held-out tasks "
                         "PPO is tuned on; 0 tunes on the reported tasks)")
    if not isinstance(processes, (int, np.integer)) or isinstance(processes, bool) or processes < 1:
        raise InputError(f"processes {processes!r} is not allowed: must be an integer >= 1 (worker processes of "
                         "the PPO runs; 1 runs them in this process)")


def _settings(runs: _Runs, suite: Suite, seeds: Sequence[int], settings: Sequence[dict], n_episodes: int,
              eval_every: int, eval_episodes: int, deterministic: bool, progress: bool) -> list[RunResult]:
    """Every run of every PPO setting (kwargs of SB3's PPO) on ``suite``: one :class:`RunResult` per setting."""
    if suite.make_single is None:
        raise InputError(f"suite {suite.name} cannot build single environments for PPO")
    B, K = suite.num_envs, int(n_episodes) // int(eval_every)
    if K < 1:
        raise InputError(f"no test point: n_episodes ({n_episodes}) must be at least eval_every ({eval_every})")
    jobs = []
    for kw in settings:
        for b in range(B):
            jobs.append((lambda b=b: (suite.make_single(b), suite.make_single(b)),
                         (int(seeds[b] % 2**31), int(n_episodes), int(eval_every), int(eval_episodes),
                          bool(deterministic), dict(kw))))

    def done(i: int) -> None:
        if progress:
            print(f"PPO on {suite.name}: run {i % B + 1}/{B} of setting {i // B + 1}/{len(settings)} done")

    curves = runs.run(jobs, done, suite.name)
    out = []
    for s in range(len(settings)):
        returns = np.stack([curves[s * B + b][0] for b in range(B)])
        steps = np.stack([curves[s * B + b][1] for b in range(B)])
        out.append(RunResult(suite=suite.name, agent="PPO", returns=returns, steps=steps, r_oracle=suite.r_oracle,
                             r_random=suite.r_random, valid=suite.valid,
                             info={"episode_index": ((np.arange(K) + 1) * int(eval_every)).tolist(),
                                   "eval_every": int(eval_every), "eval_episodes": int(eval_episodes),
                                   "scoring": "test", "policy": "deterministic" if deterministic else "sampled"}))
    return out


def _need_sb3() -> None:
    try:
        import stable_baselines3  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the PPO baseline needs stable-baselines3: pip install -e .[ppo]") from exc


# ---------------------------------------------------------------------------------------------- runs and tuning
def run_ppo(suite: Suite, n_episodes: int, *, eval_every: int = 100, eval_episodes: int = 5, seed: int = 0,
            deterministic: bool = True, progress: bool = False, processes: int = 1, **ppo_kwargs) -> RunResult:
    """PPO (stable-baselines3, optional extra ``ppo``) trained separately on every run's environment (a one-hot
    observation, SB3's MlpPolicy), tested with ``eval_episodes`` episodes after every ``eval_every`` training
    episodes on a second copy of that environment (own seed; test steps are not training steps). The test
    episodes play the policy's most probable action (``deterministic``; False samples the policy). Point k of
    the result is the test average after ``(k + 1) * eval_every`` training episodes, at the training step count
    reached then. ``ppo_kwargs`` override the defaults (n_steps 256, batch 64, lr 3e-4, gamma 0.99, entropy
    0.01; not tuned per family here). Every run trains on one torch thread; ``processes`` > 1 spreads the runs over
    that many worker processes (the same results)."""
    _check_counts(0, processes)
    _need_sb3()
    with _Runs(processes) as runs:
        return _settings(runs, suite, env_seeds(seed, suite.num_envs), [ppo_kwargs], n_episodes, eval_every,
                         eval_episodes, deterministic, progress)[0]


def tune_ppo(suite: Suite, n_episodes: int, *, lr_grid: Sequence[float] = (3e-4,), ent_grid: Sequence[float] = (0.01,),
             smooth: int = 5, smooth_tested: int | None = None, tune_tasks: int = 0, processes: int = 1,
             eval_every: int = 100, eval_episodes: int = 5, seed: int = 0, deterministic: bool = True,
             progress: bool = False, **ppo_kwargs) -> tuple[RunResult, dict]:
    """:func:`run_ppo` with every (learning rate, entropy coefficient) of the grid, tuned per task family as the
    paper tunes its PPO, by :func:`~.tuning.pick_best` on the Table-1 best score as :func:`~.baselines.tune_tql`
    is; returns the reported run and {(lr, ent): best score of the tuning runs}.

    ``tune_tasks`` 0: the grid runs on the reported tasks and the chosen setting's runs are reported. ``tune_tasks``
    n > 0: the grid runs on the n tasks of :func:`held_out_suite` (never a reported task), then the chosen setting
    alone runs on the reported tasks. ``processes``: worker processes for all these runs (the same results).
    ``res.info`` names the chosen setting (``learning_rate``, ``ent_coef``), ``tune_tasks``, ``tuned_on`` and
    every setting's tuning score (``tune_scores``: [lr, ent, score])."""

    _check_counts(tune_tasks, processes)
    _need_sb3()
    grid = [(float(lr), float(ent)) for lr in lr_grid for ent in ent_grid]
    if not grid:
        raise InputError("nothing to tune: lr_grid and ent_grid need a value each")
    common = dict(n_episodes=n_episodes, eval_every=eval_every, eval_episodes=eval_episodes,
                  deterministic=deterministic, progress=progress)
    reported_seeds = env_seeds(seed, suite.num_envs)
    with _Runs(processes) as runs:
        if tune_tasks:
            on, tuned_on = held_out_suite(suite, int(tune_tasks))
            seeds = tuning_seeds(seed, int(tune_tasks))
        else:
            on, tuned_on, seeds = suite, "the reported tasks", reported_seeds
        settings = [dict(ppo_kwargs, learning_rate=lr, ent_coef=ent) for lr, ent in grid]
        tried = dict(zip(grid, _settings(runs, on, seeds, settings, **common)))
        (lr, ent), res, scores = pick_best(grid, tried.__getitem__,
                                           lambda r: table_metrics(r, smooth, smooth_tested, n_boot=0)["best"])
        if tune_tasks:
            res = _settings(runs, suite, reported_seeds, [dict(ppo_kwargs, learning_rate=lr, ent_coef=ent)],
                            **common)[0]
    res.info.update(learning_rate=lr, ent_coef=ent, n_episodes=int(n_episodes), tune_tasks=int(tune_tasks),
                    tuned_on=tuned_on, tune_scores=[[a, b, v] for (a, b), v in scores.items()])
    return res, scores
