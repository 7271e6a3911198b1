"""The world (paper section 2, Algorithm 1): tabular tasks, their samplers, exact planning, behaviour policies
and learners, Gymnasium environments and task statistics.

- :mod:`.task` the :class:`Task` container and its file format
- :mod:`.anymdp`, :mod:`.garnet` the AnyMDP (bandits are ns = 1) and Garnet samplers
- :mod:`.oracle` value and policy iteration, oracle policies, exact returns
- :mod:`.policies`, :mod:`.learners` behaviour policies and tabular learners, batched over tasks
- :mod:`.envs` ``omnirl/AnyMDP-v0`` and the batched environment
- :mod:`.stats` task statistics for comparing samplers
- :mod:`.config` notebook 01's parameters
"""

from . import anymdp, envs, garnet, learners, oracle, policies, stats, task
from .anymdp import SamplingError, acceptance_statistics, episode_limit, sample_anymdp, sample_anymdp_batch
from .config import TasksConfig
from .envs import AnyMDPEnv, BatchedAnyMDPEnv
from .garnet import sample_garnet
from .learners import ModelBasedLearner, QLearner, run_policy
from .oracle import ORACLE_GAMMA, oracle_policy, oracle_return, policy_iteration, policy_return, random_return
from .policies import BatchedPolicy, DriftingSoftmaxPolicy, NoisyOraclePolicy, OraclePolicy, RandomPolicy
from .stats import task_statistics
from .task import Task, TaskFileError, TaskValidationError, as_generator

__all__ = [
    "anymdp", "envs", "garnet", "learners", "oracle", "policies", "stats", "task",
    "Task", "TaskFileError", "TaskValidationError", "as_generator",
    "SamplingError", "acceptance_statistics", "episode_limit", "sample_anymdp", "sample_anymdp_batch", "sample_garnet",
    "ORACLE_GAMMA", "oracle_policy", "oracle_return", "policy_iteration", "policy_return", "random_return",
    "BatchedPolicy", "RandomPolicy", "DriftingSoftmaxPolicy", "OraclePolicy", "NoisyOraclePolicy",
    "QLearner", "ModelBasedLearner", "run_policy",
    "AnyMDPEnv", "BatchedAnyMDPEnv", "task_statistics", "TasksConfig",
]
