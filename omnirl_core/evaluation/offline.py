"""The offline RL baseline: discrete CQL (d3rlpy's ``DiscreteCQL``, an optional dependency) trained on the
demonstrations that OmniRL's offline mode gets in its context, then scored on the task.

:func:`collect_demonstrations` records, per run, the transitions of the demonstrator's ``demo_episodes``
episodes through the same :func:`~omnirl_core.evaluation.runs.run_agent` path (same seeds, same demonstrator
and random streams) that fills OmniRL's context in :func:`~omnirl_core.evaluation.protocol.evaluate`'s offline
mode (the perturbed oracle :class:`~omnirl_core.evaluation.agents.NoisyOracleAgent` with ``demo_noise``) and
imitation mode (the oracle). :func:`run_cql` trains one CQL per run on its run's transitions alone (observation
ids one-hot), then plays the greedy policy of the learned Q for ``n_episodes`` episodes on that run's task, with
no further learning; the result is a :class:`~omnirl_core.evaluation.runs.RunResult` (one point per episode,
steps counted from the end of the demonstrations, the same form as OmniRL's offline rows).

d3rlpy 2.x pins ``gymnasium==1.0.0``, which has no ``CliffWalking-v1``; so it is installed without its
dependencies, after the ``cql`` extra that carries them: ``pip install -e .[cql] && pip install --no-deps
d3rlpy``. The training keeps the global numpy and torch random states as it found them (d3rlpy samples its
minibatches from numpy's global generator; here that generator is seeded per run inside and restored after);
d3rlpy's structlog output is filtered to warnings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..workbook.errors import InputError
from .agents import Agent, RandomAgent, TablePolicyAgent
from .runs import RunResult, run_agent
from .streams import env_seeds
from .suites import Suite

CQL_INSTALL = "pip install -e .[cql] && pip install --no-deps d3rlpy"
CQL_MISSING = f"the CQL baseline needs d3rlpy (optional extra cql): {CQL_INSTALL}"


def have_d3rlpy() -> bool:
    """Whether d3rlpy can be imported."""
    try:
        import d3rlpy  # noqa: F401
    except ImportError:
        return False
    return True


def collect_demonstrations(suite: Suite, demo: Agent, demo_episodes: int, *,
                           seed: int | Sequence[int] = 0) -> list[dict[str, np.ndarray]]:
    """Per run b, the demonstrator's transitions as arrays ``obs``, ``actions``, ``rewards``, ``next_obs``,
    ``terminated``, ``truncated`` (``next_obs`` the observation reached, before any reset): exactly what
    :func:`~omnirl_core.evaluation.runs.run_agent` with ``demo`` / ``demo_episodes`` and this ``seed`` shows
    an agent before it acts itself."""
    if int(demo_episodes) < 1:
        raise InputError(f"demo_episodes {demo_episodes!r} is not allowed: offline training needs >= 1")
    B = suite.num_envs
    keys = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")
    rows: list[dict[str, list]] = [{k: [] for k in keys} for _ in range(B)]

    def on_step(t: int, rec: dict) -> None:
        for b in np.flatnonzero(rec["in_demo"]):
            for k in keys:
                rows[b][k].append(rec[k][b])

    # The agent's own single episode after the demonstrations is not recorded.
    run_agent(suite, RandomAgent(), 1, seed=seed, demo=demo, demo_episodes=int(demo_episodes), on_step=on_step)
    return [{k: np.asarray(r[k]) for k in keys} for r in rows]


def _mdp_dataset(d: dict[str, np.ndarray], n_obs: int, na: int):
    """d3rlpy dataset of one run's transitions, each its own episode: a terminated transition as a one-step
    terminal episode (next observation zero, no bootstrap), any other as a two-observation episode cut by a
    timeout (so its one transition bootstraps from the observation reached, also at truncation)."""
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset

    term = d["terminated"].astype(bool)
    if term.size == 0:
        raise InputError("no demonstration transitions to train CQL on")
    size = np.where(term, 1, 2)
    first = np.cumsum(size) - size  # row of each transition's observation
    rows = int(size.sum())
    obs = np.zeros(rows, np.int64)
    actions = np.zeros(rows, np.int64)
    rewards = np.zeros(rows, np.float32)
    terminals = np.zeros(rows, np.float32)
    timeouts = np.zeros(rows, np.float32)
    obs[first] = d["obs"]
    actions[first] = d["actions"]
    rewards[first] = d["rewards"]
    terminals[first[term]] = 1.0
    nxt = first[~term] + 1
    obs[nxt] = d["next_obs"][~term]
    timeouts[nxt] = 1.0
    onehot = np.eye(n_obs, dtype=np.float32)[obs]
    return MDPDataset(onehot, actions[:, None], rewards[:, None], terminals, timeouts,
                      action_space=ActionSpace.DISCRETE, action_size=na)


def train_cql(demos: dict[str, np.ndarray], n_obs: int, na: int, *, n_steps: int = 2000, seed: int = 0,
              **cql_kwargs) -> np.ndarray:
    """Greedy actions [n_obs] of a DiscreteCQL trained for ``n_steps`` minibatch updates on one run's
    transitions. ``cql_kwargs`` override the defaults (lr 1e-3, batch 32, gamma 0.99, alpha 1.0, target
    update every 100 updates, an MLP of 64 x 64)."""
    try:
        import structlog
        from d3rlpy.algos import DiscreteCQLConfig
        from d3rlpy.logging import NoopAdapterFactory
        from d3rlpy.models.encoders import VectorEncoderFactory
    except ImportError as exc:
        raise ImportError(CQL_MISSING) from exc
    import torch

    kwargs = dict(learning_rate=1e-3, batch_size=32, gamma=0.99, alpha=1.0, target_update_interval=100,
                  encoder_factory=VectorEncoderFactory(hidden_units=[64, 64]))
    kwargs.update(cql_kwargs)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # d3rlpy's info lines
    # d3rlpy samples minibatches from numpy's global generator: seed it for this run, then put it back as it was.
    np_state = np.random.get_state()  # noqa: NPY002
    try:
        with torch.random.fork_rng(devices=[]):
            np.random.seed(int(seed) % 2**32)  # noqa: NPY002
            torch.manual_seed(int(seed) % 2**63)
            dataset = _mdp_dataset(demos, n_obs, na)  # d3rlpy draws from numpy's global generator here too
            algo = DiscreteCQLConfig(**kwargs).create(device="cpu:0")
            algo.fit(dataset, n_steps=int(n_steps), n_steps_per_epoch=int(n_steps), show_progress=False,
                     logger_adapter=NoopAdapterFactory(), experiment_name="cql", with_timestamp=False,
                     save_interval=10**9)
            return np.asarray(algo.predict(np.eye(n_obs, dtype=np.float32)), dtype=np.int64).reshape(n_obs)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002


def run_cql(suite: Suite, n_episodes: int, *, demo: Agent, demo_episodes: int, seed: int = 0, n_steps: int = 2000,
            max_steps: int | None = None, progress: bool = False, **cql_kwargs) -> RunResult:
    """CQL on every run of ``suite``: trained offline on the run's demonstrations (:func:`collect_demonstrations`
    with ``demo``, ``demo_episodes``, ``seed``), scored on ``n_episodes`` episodes of its greedy policy (the
    environment continues from the end of the demonstrations, as in OmniRL's offline mode). Raises
    ImportError naming the extra when d3rlpy is missing."""
    if not have_d3rlpy():
        raise ImportError(CQL_MISSING)
    B = suite.num_envs
    seeds = env_seeds(seed, B)
    demos = collect_demonstrations(suite, demo, demo_episodes, seed=seeds)
    table = np.zeros((B, suite.n_obs), np.int64)
    for b in range(B):
        table[b] = train_cql(demos[b], suite.n_obs, suite.na, n_steps=n_steps, seed=seeds[b], **cql_kwargs)
        if progress:
            print(f"CQL on {suite.name}: run {b + 1}/{B} trained on {demos[b]['obs'].size} transitions")
    res = run_agent(suite, TablePolicyAgent(table, "CQL"), n_episodes, seed=seeds, max_steps=max_steps,
                    demo=demo, demo_episodes=demo_episodes, progress=progress, desc=f"CQL on {suite.name}")
    res.info.update({"demo_episodes": int(demo_episodes), "cql_steps": int(n_steps), "scoring": "greedy policy"})
    return res
