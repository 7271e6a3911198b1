"""Meta-training (paper Algorithm 3): chunked truncated back-propagation through time over long sequences,
the recurrent memory carried across chunks, AdamW, DistributedDataParallel under ``torchrun``.

- :mod:`.config` :class:`TrainConfig` and its parts
- :mod:`.data` the data streams (a synthesised dataset, or the stand-in)
- :mod:`.losses` the schedule, normalisers, per-chunk losses and gradients, label loss by position
- :mod:`.checkpoints` atomic checkpoints for exact resume, ``init_from``
- :mod:`.metrics` metrics files
- :mod:`.loop` :func:`train`, the loop itself, readable top to bottom
- :mod:`.preemption` SIGTERM or SIGUSR1: a checkpoint at the next iteration boundary, exit code 75
- :mod:`.launch` notebook 03's way to run it: in the kernel, or torchrun with several processes
- :mod:`.cli` ``python -m omnirl_core.training`` (and ``torchrun -m omnirl_core.training``)
"""

from .checkpoints import (
    CHECKPOINT,
    WEIGHTS,
    CheckpointMismatchError,
    init_weights_from,
    load_checkpoint,
    save_checkpoint,
)
from .config import (
    DataConfig,
    EvalConfig,
    LaunchConfig,
    LossConfig,
    OptimConfig,
    PostTrainingConfig,
    TrainConfig,
    post_training_config,
)
from .data import DatasetStream, StandInData, make_data, mask_states
from .launch import LaunchError, describe_launch, run_torchrun, train_or_launch
from .loop import NonFiniteLossError, TrainContext, TrainResult, position_loss_hook, train
from .losses import accumulate_gradients, lr_at, position_loss, sequence_normalisers
from .metrics import MetricsWriter, read_eval, read_metrics
from .preemption import PREEMPTED_EXIT, PREEMPTED_FILE, TrainingPreempted

__all__ = [
    "TrainConfig", "DataConfig", "OptimConfig", "LossConfig", "EvalConfig",
    "PostTrainingConfig", "post_training_config",
    "StandInData", "DatasetStream", "make_data", "mask_states",
    "lr_at", "sequence_normalisers", "accumulate_gradients", "position_loss",
    "CHECKPOINT", "WEIGHTS", "CheckpointMismatchError", "save_checkpoint", "load_checkpoint", "init_weights_from",
    "MetricsWriter", "read_metrics", "read_eval",
    "TrainContext", "TrainResult", "NonFiniteLossError", "position_loss_hook", "train",
    "PREEMPTED_EXIT", "PREEMPTED_FILE", "TrainingPreempted",
    "LaunchConfig", "LaunchError", "describe_launch", "run_torchrun", "train_or_launch",
]
