"""Evaluation (paper section 5, Algorithm 4): the test suites, OmniRL and the baseline agents, runs online,
offline and by imitation, the normalised score and Table-1 metrics, and the in-context gain.

- :mod:`.suites`, :mod:`.gym_tasks` unseen AnyMDP and Garnet tasks, Gymnasium tasks, DarkRoom, Pendulum; the
  suite registry (:func:`register_suite`)
- :mod:`.agents` OmniRL, random, oracle, noisy oracle, TQL-UCB, a fixed policy table
- :mod:`.runs` running an agent through a suite (with demonstrations for offline and imitation)
- :mod:`.tested` scoring a learner on test episodes after every ``eval_every`` training episodes
- :mod:`.baselines` TQL-UCB tuned on the suite, PPO (optional extra), both scored on test episodes
- :mod:`.offline` CQL (optional d3rlpy) trained on the offline mode's demonstrations
- :mod:`.report` Table-1 metrics, tables and report files
- :mod:`.expected` bandit scores from the expected reward of the pulled arm (the pseudo-reward)
- :mod:`.models` loading checkpoints and the shipped models in ``models/``
- :mod:`.protocol` :func:`evaluate`, notebook 04's protocol
- :mod:`.incontext` the in-context gain along a run (``python -m omnirl_core.evaluation``)
- :mod:`.config` notebook 04's parameters
"""

from .agents import Agent, NoisyOracleAgent, OmniRLAgent, OracleAgent, RandomAgent, TablePolicyAgent, TQLAgent
from .baselines import run_tql, tune_tql
from .config import EvaluationConfig
from .incontext import online_gain, segment_summary, validation_suite
from .models import CheckpointConfigError, ShippedModel, load_model, load_shipped, shipped_model_for, shipped_models
from .offline import collect_demonstrations, run_cql
from .ppo import run_ppo, tune_ppo
from .protocol import SHIPPED, config_suite, evaluate, evaluate_on_devices, incontext_panel
from .report import markdown_table, table_metrics, table_rows, write_report
from .runs import RunResult, run_agent
from .suites import (
    PAPER_TABLE1,
    SUITE_NAMES,
    Suite,
    build_suite,
    register_suite,
    suite_spec,
    task_suite,
    test_seed,
    unregister_suite,
)
from .tested import play_policy, run_tested

__all__ = [
    "EvaluationConfig", "Suite", "SUITE_NAMES", "PAPER_TABLE1", "build_suite", "task_suite", "test_seed",
    "register_suite", "suite_spec", "unregister_suite",
    "Agent", "RandomAgent", "OracleAgent", "NoisyOracleAgent", "TQLAgent", "OmniRLAgent", "TablePolicyAgent",
    "RunResult", "run_agent", "run_tested", "play_policy", "run_tql", "tune_tql", "run_ppo", "tune_ppo",
    "collect_demonstrations", "run_cql",
    "table_metrics", "table_rows", "markdown_table", "write_report",
    "CheckpointConfigError", "load_model", "ShippedModel", "shipped_models", "shipped_model_for", "load_shipped",
    "SHIPPED", "config_suite", "evaluate", "evaluate_on_devices", "incontext_panel", "online_gain", "segment_summary",
    "validation_suite",
]
