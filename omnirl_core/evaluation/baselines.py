"""The online baselines, TQL-UCB and PPO, scored as the paper scores them (section 5: "tested 5 episodes after
every 100 training episodes"): point k of a run's curve is the mean return of ``eval_episodes`` test episodes
of its exploitation policy after ``(k + 1) * eval_every`` training episodes, at the training steps taken then;
test steps are not counted. The paper does not say which policy the test episodes play; here TQL-UCB plays
greedy w.r.t. its Q without the exploration bonus, PPO the most probable action of its policy
(``deterministic=True``; ``False`` samples it). TQL-UCB's older scoring, on its own exploring training
episodes (one point per episode), stays available as ``scoring="training"``.

PPO is stable-baselines3, an optional extra (``pip install -e .[ppo]``), in :mod:`.ppo`; the offline CQL baseline
is in :mod:`.offline`. Both tuners choose by :func:`~.tuning.pick_best`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..workbook.errors import InputError
from .agents import OracleAgent, RandomAgent, TQLAgent
from .report import table_metrics
from .runs import RunResult, run_agent
from .suites import Suite
from .tested import run_tested
from .tql_fast import fast_path_available, run_fast
from .tuning import pick_best

SCORINGS = ("test", "training")

_TOLD: set[str] = set()


def _compiled(suite: Suite, fast: bool | None) -> bool:
    """Whether a tabular baseline on ``suite`` takes the compiled path (:mod:`.tql_fast`); says once per suite
    and reason when it does not (``fast``: None automatic, False never, True required)."""
    if fast is False:
        return False
    ok, why = fast_path_available(suite)
    if not ok and fast:
        raise InputError(f"no compiled baseline path on {suite.name}: {why}")
    if not ok and why not in _TOLD:
        _TOLD.add(why)
        print(f"baselines on {suite.name}: the numpy path, not the compiled one ({why})")
    return ok


def run_tql(suite: Suite, n_episodes: int, *, c: float = 1.0, gamma: float = 0.99, H: float = 4000.0,
            scoring: str = "test", eval_every: int = 100, eval_episodes: int = 5, seed: int = 0,
            max_steps: int | None = None, progress: bool = False, fast: bool | None = None) -> RunResult:
    """TQL-UCB (:class:`~omnirl_core.evaluation.agents.TQLAgent`) for ``n_episodes`` training episodes per run.

    ``scoring="test"`` (default, the paper's): one point per ``eval_every`` training episodes, the mean return of
    ``eval_episodes`` test episodes of the greedy policy (argmax Q, no bonus, ties at random) on a separate copy
    of the environment (:func:`~omnirl_core.evaluation.tested.run_tested`). ``scoring="training"``: one point per
    training episode, the return of the exploring episode itself. ``H``: the step-size horizon of the learner,
    ``(H + 1) / (H + N)``. Tabular suites run compiled (:mod:`.tql_fast`, the same draws and results as the
    numpy path; ``fast=False`` forces numpy)."""
    if scoring not in SCORINGS:
        raise InputError(f"scoring {scoring!r} is not allowed: choose one of {', '.join(SCORINGS)}")
    tested = scoring == "test"
    if tested and (int(eval_every) < 1 or int(n_episodes) // int(eval_every) < 1 or int(eval_episodes) < 1):
        raise InputError(f"no test point: n_episodes ({n_episodes}) must be at least eval_every ({eval_every}) "
                         f"and eval_episodes ({eval_episodes}) at least 1")
    agent, desc = TQLAgent(c=c, gamma=gamma, H=H), f"TQL-UCB c={c:g} H={H:g} on {suite.name}"
    if _compiled(suite, fast):
        test, train = run_fast(suite, "tql_ucb", n_episodes, seed=seed, max_steps=max_steps, c=c, gamma=gamma, H=H,
                               eval_every=eval_every if tested else None, eval_episodes=eval_episodes)
        res = test if tested else train
    elif not tested:
        res = run_agent(suite, agent, n_episodes, seed=seed, max_steps=max_steps, progress=progress, desc=desc)
    else:
        res = run_tested(suite, agent, n_episodes, eval_every=eval_every, eval_episodes=eval_episodes, seed=seed,
                         max_steps=max_steps, progress=progress, desc=desc)[0]
    res.info.update(scoring=scoring, c=float(c), H=float(H), n_episodes=int(n_episodes))
    return res


class _TestedRandom(RandomAgent):
    """The random agent with the test policy of :mod:`.tested` (uniform)."""

    def test_policy(self) -> np.ndarray:
        return np.full((self.num_envs, self.suite.n_obs, self.na), 1.0 / self.na)


class _TestedOracle(OracleAgent):
    """The oracle agent with the test policy of :mod:`.tested` (its own action)."""

    def test_policy(self) -> np.ndarray:
        return np.eye(self.na)[self.suite.oracle_actions]


def run_fixed(suite: Suite, agent: str, n_episodes: int, *, scoring: str = "test", eval_every: int = 100,
              eval_episodes: int = 5, seed: int = 0, max_steps: int | None = None, progress: bool = False,
              fast: bool | None = None) -> RunResult:
    """The calibration rows, ``agent`` "random" or "oracle", scored as TQL-UCB is (``scoring="test"``: the mean
    of ``eval_episodes`` test episodes after every ``eval_every`` episodes, so their best score carries the same
    noise as the learner's) or on every episode (``"training"``). Compiled on tabular suites."""
    if agent not in ("random", "oracle"):
        raise InputError(f"agent {agent!r} is not allowed: choose random or oracle")
    if scoring not in SCORINGS:
        raise InputError(f"scoring {scoring!r} is not allowed: choose one of {', '.join(SCORINGS)}")
    tested = scoring == "test"
    if tested and int(n_episodes) // max(int(eval_every), 1) < 1:
        raise InputError(f"no test point: n_episodes ({n_episodes}) must be at least eval_every ({eval_every})")
    if _compiled(suite, fast):
        test, train = run_fast(suite, agent, n_episodes, seed=seed, max_steps=max_steps,
                               eval_every=eval_every if tested else None, eval_episodes=eval_episodes)
        res = test if tested else train
    else:
        obj = _TestedRandom() if agent == "random" else _TestedOracle()
        if tested:
            res = run_tested(suite, obj, n_episodes, eval_every=eval_every, eval_episodes=eval_episodes, seed=seed,
                             max_steps=max_steps, progress=progress)[0]
        else:
            res = run_agent(suite, obj, n_episodes, seed=seed, max_steps=max_steps, progress=progress)
        res.agent = agent
    res.info.update(scoring=scoring, n_episodes=int(n_episodes))
    return res


def tune_tql(suite: Suite, c_grid: Sequence[float], n_episodes: int, *, gamma: float = 0.99, seed: int = 0,
             max_steps: int | None = None, smooth: int = 5, smooth_tested: int | None = None, progress: bool = False,
             scoring: str = "test", eval_every: int = 100, eval_episodes: int = 5, H_grid: Sequence[float] = (4000.0,),
             fast: bool | None = None) -> tuple[RunResult, dict]:
    """:func:`run_tql` with each ``c`` of the grid and each step-size horizon ``H`` of ``H_grid``, chosen by
    :func:`pick_best` on the Table-1 best score read as the report reads it (:func:`~.report.table_metrics`
    with ``smooth`` and ``smooth_tested``); returns the chosen run and the best score of every setting, keyed by
    ``c`` (one ``H``) or ``(c, H)``. ``res.info`` names the chosen ``c`` and ``H``."""
    grid = [(float(c), float(H)) for H in H_grid for c in c_grid]

    def run(setting):
        c, H = setting
        return run_tql(suite, n_episodes, c=c, gamma=gamma, H=H, scoring=scoring, eval_every=eval_every,
                       eval_episodes=eval_episodes, seed=seed, max_steps=max_steps, progress=progress, fast=fast)

    _, res, scores = pick_best(grid, run, lambda r: table_metrics(r, smooth, smooth_tested, n_boot=0)["best"])
    if len(H_grid) == 1:
        scores = {c: v for (c, _), v in scores.items()}
    return res, scores


def baseline_episodes(cfg, suite: Suite) -> int:
    """Episode budget of the baselines on ``suite`` under an :class:`~.config.EvaluationConfig`: ``baseline_episodes``
    on suites with tabular tables (exact references), ``simulated_baseline_episodes`` on the others (Pendulum)."""
    return cfg.baseline_budget(suite.reference == "exact")
