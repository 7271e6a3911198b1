"""The evaluation protocol of notebook 04: every configured agent (and OmniRL mode) on every configured suite, in
this process (:func:`evaluate`) or spread over the node's GPUs or this machine's cores, one suite per process
(:func:`evaluate_on_devices`); and the in-context measure of section 5 (:func:`incontext_panel`).

Rows: random and oracle (every episode); TQL-UCB with the best bonus of the grid and PPO, scored on test
episodes (:mod:`.baselines`; TQL-UCB on its training episodes with ``tql_scoring: training``, then the row says
so); OmniRL per mode; CQL trained on the offline mode's demonstrations (:mod:`.offline`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .agents import NoisyOracleAgent, OmniRLAgent, OracleAgent
from .baselines import baseline_episodes, run_fixed, tune_tql
from .config import EvaluationConfig
from .expected import expected_reward_suite, is_bandit
from .models import load_model
from .offline import CQL_MISSING, have_d3rlpy, run_cql
from .ppo import tune_ppo
from .runs import RunResult, run_agent
from .suites import Suite, build_suite, is_simulated, model_fit

# ---------------------------------------------------------------------------------------------- driver
SHIPPED = "shipped"
_LOADED_MODELS: dict[str, Any] = {}


POST_LABEL = "OmniRL (post-trained)"
"""Table 1's row of notebook 03's post-trained model (``post_checkpoint``)."""


def _model_for_suite(cfg: EvaluationConfig, suite: Suite, model, shipped: bool | str):
    """(model, temperature, reason when None) for OmniRL on ``suite``; ``shipped`` True: the shipped model covering
    it; "post": ``cfg.post_checkpoint``'s model."""
    if shipped == "post":
        if cfg.post_checkpoint not in _LOADED_MODELS:
            _LOADED_MODELS[cfg.post_checkpoint] = load_model(cfg.post_checkpoint, device=cfg.device)
        model, shipped = _LOADED_MODELS[cfg.post_checkpoint], False
    if shipped:
        from .models import load_shipped, shipped_model_for

        try:
            info = shipped_model_for(suite.n_obs)
        except LookupError as exc:
            return None, None, str(exc)
        if info.name not in _LOADED_MODELS:
            _LOADED_MODELS[info.name] = load_shipped(info.path, device=cfg.device)[0]
        model, temperature = _LOADED_MODELS[info.name], info.temperature
    elif model is None:
        return None, None, "no checkpoint configured"
    else:
        temperature = cfg.temperature
    why = model_fit(suite, model.cfg.ns_max, model.cfg.na)
    return (None, None, why) if why else (model, temperature, "")


def _omnirl_rows(cfg: EvaluationConfig, model, shipped: bool) -> list[tuple[str, bool | str]]:
    """(row label, whether it is the shipped model, or "post") of every OmniRL model to run."""
    rows: list[tuple[str, bool | str]] = [("OmniRL", shipped)]
    if cfg.post_checkpoint:
        rows.append((POST_LABEL, "post"))
    if cfg.also_shipped and not shipped:
        rows.append(("OmniRL-tiny (shipped)", True))
    return rows


def _omnirl_models(cfg: EvaluationConfig, name: str, suite: Suite, model, shipped: bool,
                   log: Callable[[str], None] | None, skipped: str):
    """(label, model, temperature) of every OmniRL row that can run on ``suite``; says why for the others."""
    for label, use_shipped in _omnirl_rows(cfg, model, shipped):
        suite_model, temperature, why = _model_for_suite(cfg, suite, model, use_shipped)
        if suite_model is None:
            if log:
                log(f"{name}: {label} {skipped} ({why})")
            continue
        yield label, suite_model, temperature


def _run_omnirl(cfg: EvaluationConfig, suite: Suite, model, temperature: float, label: str, common: dict):
    """One model in every configured mode on ``suite``."""
    import torch

    out = []
    for mode in cfg.modes:
        demo = None
        if mode == "offline":
            demo = NoisyOracleAgent(cfg.demo_noise)
        elif mode == "imitation":
            demo = OracleAgent()
        agent = OmniRLAgent(model, temperature, cfg.temperature_schedule, cfg.device)
        threads = torch.get_num_threads()
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        try:
            res = run_agent(suite, agent, cfg.n_episodes, demo=demo, demo_episodes=cfg.demo_episodes, **common)
        finally:
            torch.set_num_threads(threads)
        res.agent = label if mode == "online" else f"{label} ({mode})"
        out.append(res)
    return out


def config_suite(cfg: EvaluationConfig, name: str, n_tasks: int | None = None) -> Suite:
    """The suite ``name`` as an :class:`~.config.EvaluationConfig` builds it (its task count unless ``n_tasks``,
    Pendulum's samples, reference episodes and start)."""
    return build_suite(name, cfg.n_tasks if n_tasks is None else n_tasks, pendulum_samples=cfg.pendulum_samples,
                       pendulum_reference_episodes=cfg.pendulum_reference_episodes,
                       pendulum_start=cfg.pendulum_start)


def evaluate(cfg: EvaluationConfig, model=None, log: Callable[[str], None] | None = print) -> list[RunResult]:
    """Every configured agent (and OmniRL mode) on every configured suite. ``model``: a loaded OmniRL model
    (default: loaded from ``cfg.checkpoint`` when "omnirl" is among the agents)."""
    results: list[RunResult] = []
    shipped = model is None and cfg.checkpoint == SHIPPED
    if "omnirl" in cfg.agents and model is None and cfg.checkpoint and not shipped:
        model = load_model(cfg.checkpoint, device=cfg.device)
    for name in cfg.suites:
        suite = config_suite(cfg, name)
        results.extend(own := _run_suite(cfg, suite, model, shipped, log))
        if is_bandit(suite):
            results.extend(_expected_reward_rows(cfg, suite, model, shipped, own))
        if log:
            log(f"{name}: done ({suite.num_envs} runs, {int((~suite.valid).sum())} skipped, reference "
                f"{suite.reference})")
    return results


def _expected_reward_rows(cfg: EvaluationConfig, suite: Suite, model, shipped: bool,
                          sampled: list[RunResult]) -> list[RunResult]:
    """The bandit runs again on :func:`~.expected.expected_reward_suite`: the same steps (same seeds, same
    rewards seen), scored by each pulled arm's expected reward. TQL-UCB keeps the bonus the sampled runs chose;
    PPO and CQL are not rerun."""
    c_chosen = [r.info["c"] for r in sampled if "c" in r.info]
    rerun = replace(cfg, agents=[a for a in cfg.agents if a in ("random", "oracle", "tql_ucb", "omnirl")],
                    tql_c_grid=c_chosen[:1] or cfg.tql_c_grid,
                    tql_H_grid=[r.info["H"] for r in sampled if "H" in r.info][:1] or cfg.tql_H_grid)
    out = _run_suite(rerun, expected_reward_suite(suite), model, shipped, log=None)
    for r in out:
        r.info["reward"] = "expected"
    return out


def _run_suite(cfg: EvaluationConfig, suite: Suite, model, shipped: bool,
               log: Callable[[str], None] | None) -> list[RunResult]:
    """Every configured agent (and OmniRL mode) on one suite."""
    results: list[RunResult] = []
    name = suite.name
    common = dict(seed=cfg.seed, max_steps=cfg.max_steps, progress=cfg.progress)
    for agent in cfg.agents:
        if agent in ("random", "oracle"):  # scored like TQL-UCB, at its budget (the calibration rows)
            results.append(run_fixed(suite, agent, baseline_episodes(cfg, suite), scoring=cfg.tql_scoring,
                                     eval_every=cfg.tql_eval_every, eval_episodes=cfg.eval_episodes, **common))
        elif agent == "tql_ucb":
            res, _ = tune_tql(suite, cfg.tql_c_grid, baseline_episodes(cfg, suite), gamma=cfg.tql_gamma,
                              smooth=cfg.smooth, smooth_tested=cfg.smooth_tested, scoring=cfg.tql_scoring,
                              eval_every=cfg.tql_eval_every, eval_episodes=cfg.eval_episodes, H_grid=cfg.tql_H_grid,
                              **common)
            tail = "" if cfg.tql_scoring == "test" else ", training episodes"
            res.agent = f"TQL-UCB (c={res.info['c']:g}, H={res.info['H']:g}{tail})"
            results.append(res)
        elif agent == "omnirl":
            for label, suite_model, temperature in _omnirl_models(cfg, name, suite, model, shipped, log, "skipped"):
                results.extend(_run_omnirl(cfg, suite, suite_model, temperature, label, common))
        elif agent == "ppo":
            try:
                import stable_baselines3  # noqa: F401
            except ImportError:
                if log:
                    log(f"{name}: PPO skipped (stable-baselines3 is not installed: pip install -e .[ppo])")
                continue
            res, _ = tune_ppo(suite, cfg.baseline_budget(), lr_grid=cfg.ppo_lr_grid, ent_grid=cfg.ppo_ent_grid,
                              smooth=cfg.smooth, smooth_tested=cfg.smooth_tested, eval_every=cfg.ppo_eval_every,
                              eval_episodes=cfg.eval_episodes, tune_tasks=cfg.ppo_tune_tasks,
                              processes=cfg.ppo_processes, deterministic=cfg.ppo_deterministic, seed=cfg.seed,
                              progress=cfg.progress)
            if log:
                log(f"{name}: PPO lr={res.info['learning_rate']:g}, ent={res.info['ent_coef']:g}, tuned on "
                    f"{res.info['tuned_on']}")
            results.append(res)
        elif agent == "cql":
            if not have_d3rlpy():
                if log:
                    log(f"{name}: CQL skipped ({CQL_MISSING})")
                continue
            results.append(run_cql(suite, cfg.n_episodes, demo=NoisyOracleAgent(cfg.demo_noise),
                                   demo_episodes=cfg.demo_episodes, n_steps=cfg.cql_steps, **common))
    return results


def evaluate_on_devices(cfg: EvaluationConfig, out_dir: str | os.PathLike,
                        log: Callable[[str], None] | None = print) -> list[RunResult]:
    """:func:`evaluate`, one suite per process on each device of ``cfg.devices`` in turn, or without devices in
    ``cfg.cpu_processes`` processes on the CPU (:func:`~omnirl_core.workbook.devices.run_on_devices`), the results
    read back in the order of ``cfg.suites`` (each suite's results do not depend on where it ran). ``cfg.checkpoint``
    must be a path the processes can load (or ``shipped``); logs in ``OUT/devices/``."""
    import sys

    from ..workbook import dump_config
    from ..workbook.devices import run_on_devices, slots

    folder = Path(out_dir) / "devices"
    folder.mkdir(parents=True, exist_ok=True)
    code = "import sys; from omnirl_core.evaluation.protocol import _evaluate_file; _evaluate_file(*sys.argv[1:])"
    jobs = []
    # simulated suites first: their baselines take the numpy path, the longest jobs; Pendulum started last ran alone
    # for a minute at the end of the quick profile's two CPU slots (the results keep cfg.suites' order)
    for suite in sorted(cfg.suites, key=lambda name: not is_simulated(name)):
        for stale in (folder / suite).glob("*.npz"):  # an earlier run's results, perhaps of other agents
            stale.unlink()
        one = replace(cfg, suites=[suite], devices=[], cpu_processes=1, progress=False)
        path = dump_config(one, folder / f"{suite}.yaml")
        jobs.append((suite, [sys.executable, "-c", code, str(path), str(folder / suite)], folder / f"{suite}.log"))
    run_on_devices(jobs, slots(cfg.devices, cfg.cpu_processes), log=log)
    return [RunResult.load(p) for suite in cfg.suites for p in sorted((folder / suite).glob("*.npz"))]


def _evaluate_file(config_path: str, out: str) -> None:
    """The work of one device: :func:`evaluate` of a one-suite configuration, each result to ``out/NN.npz``."""
    from ..workbook import load_config

    cfg = load_config(EvaluationConfig, config_path)
    Path(out).mkdir(parents=True, exist_ok=True)
    for i, res in enumerate(evaluate(cfg)):
        res.save(Path(out) / f"{i:03d}.npz")


# ---------------------------------------------------------------------------------------------- in-context measure
def incontext_panel(cfg: EvaluationConfig, model=None, results: Sequence[RunResult] = (),
                    log: Callable[[str], None] | None = print) -> dict[str, dict[str, dict]]:
    """Suite -> agent -> :func:`~omnirl_core.evaluation.incontext.online_gain` summary, for every suite of
    ``cfg.incontext``: each OmniRL model of this configuration (``model``, and the shipped one with
    ``also_shipped``) and TQL-UCB at the (c, H) that Table 1 chose for the suite in ``results`` (else c = 1,
    H = 4000), all on the same unseen tasks from an empty memory."""
    import torch

    from .agents import OmniRLAgent, TQLAgent
    from .incontext import online_gain

    ic = cfg.incontext
    shipped = model is None and cfg.checkpoint == SHIPPED
    out: dict[str, dict[str, dict]] = {}
    for name in ic.suites:
        suite = config_suite(cfg, name, ic.n_tasks)
        rows: dict[str, dict] = {}
        if "omnirl" in cfg.agents:
            for label, m, temperature in _omnirl_models(cfg, name, suite, model, shipped, log, "not measured"):
                with torch.no_grad():
                    rows[label] = online_gain(suite, OmniRLAgent(m, temperature, cfg.temperature_schedule,
                                                                 cfg.device), ic.steps, seed=cfg.seed, bins=ic.bins)
                rows[label]["temperature"] = temperature
        chosen = [r.info for r in results if r.suite == name and "c" in r.info and "H" in r.info]
        c, H = (chosen[0]["c"], chosen[0]["H"]) if chosen else (1.0, 4000.0)
        rows[f"TQL-UCB (c={c:g}, H={H:g})"] = online_gain(suite, TQLAgent(c=c, gamma=cfg.tql_gamma, H=H), ic.steps,
                                                           seed=cfg.seed, bins=ic.bins)
        out[name] = rows
    return out
