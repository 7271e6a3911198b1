"""Configuration of meta-training (notebook 03, ``python -m omnirl_core.training``): data, optimiser, losses,
evaluation during training, and the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import model as M
from ..workbook.fields import check, param


def _paper_model() -> M.ModelConfig:
    return M.ModelConfig()


@dataclass
class DataConfig:
    """Where training sequences come from."""

    path: str | None = None
    "Synthesised dataset folder (relative paths: to the repository); None = the built-in synthetic stand-in."
    batch_size: int = param(5, ge=1)
    "Sequences per optimiser step on each process (paper: 5 per GPU)."
    seq_len: int | None = param(12288, ge=2)
    "Steps per sequence T; a dataset's longer sequences are cut to T (shorter ones are an error); None = its length."
    verify: bool = True
    "Check every dataset file's sha256 when the dataset is opened."
    ns: int = param(16, ge=1)
    "Stand-in: number of states."
    na: int = param(5, ge=2)
    "Stand-in: number of actions."
    episode_len: int = param(50, ge=1)
    "Stand-in: steps per episode (an episode-end step follows each episode)."
    best_action_bias: float = param(0.4, ge=0, le=1)
    "Stand-in: probability that a state's best action is action 0 (else uniform), so marginals are learnable too."
    standin_share: float = param(0.0, ge=0, lt=1)
    "With a dataset: share of each batch's sequences replaced by stand-in sequences (keyed-memory practice); 0 = none."


@dataclass
class OptimConfig:
    """AdamW with linear warmup then 1/sqrt decay; gradient-norm clipping."""

    lr: float = param(2e-4, gt=0)
    "Peak learning rate."
    warmup_steps: int = param(2000, ge=0)
    "Linear warmup iterations; afterwards lr = peak * sqrt(warmup / step)."
    min_lr: float = param(0.0, ge=0)
    "Floor of the decayed learning rate."
    weight_decay: float = param(0.01, ge=0)
    "AdamW weight decay."
    betas: list[float] = param([0.9, 0.99], gt=0, lt=1, min_len=2, max_len=2)
    "AdamW (beta1, beta2)."
    eps: float = param(1e-8, gt=0)
    "AdamW epsilon."
    grad_clip: float = param(1.0, gt=0)
    "Maximum global gradient norm."


@dataclass
class LossConfig:
    """Loss terms, position weights and input state masking."""

    policy: float = param(1.0, ge=0)
    "Weight of the policy cross entropy against the oracle label a*_t."
    state: float = param(0.0, ge=0)
    "Weight of the world-model next-state cross entropy (needs model.world_model)."
    reward: float = param(0.0, ge=0)
    "Weight of the world-model reward mean squared error (needs model.world_model)."
    ramp_steps: int = param(512, ge=1)
    "Position weights rise linearly over this many steps of the sequence."
    ramp_start: float = param(1e-3, gt=0, le=1)
    "Position weight at step 0."
    state_mask_prob: float = param(0.15, ge=0, lt=1)
    "Probability that an input state is replaced by the masked id ns_max (regulariser)."


@dataclass
class EvalConfig:
    """Evaluation hooks run during training (rank 0)."""

    every: int = param(0, ge=0)
    "Run the hooks every this many iterations (and after the last); 0 = only after the last."
    batches: int = param(1, ge=1)
    "Batches of the built-in loss-against-position evaluation."
    position_bins: int = param(32, ge=1)
    "Bins along the sequence for the loss-against-position curve."


@dataclass
class LaunchConfig:
    """How notebook 03 runs the training (``omnirl_core.training.launch``)."""

    nproc_per_node: int = param(1, ge=1)
    "Processes on this node, one per GPU (8 on the paper's node); above 1 the notebook starts torchrun with them."
    poll_seconds: float = param(2.0, gt=0)
    "How often the notebook reads rank 0's metrics to move its progress bar."


@dataclass
class PostTrainingConfig:
    """The long-context stage after training (paper: D_Long, 12K sequences x 512K steps): the trained model
    continued on a dataset of long sequences (notebook 03, section 7; ``--post`` on the command line). Every
    setting not named here is the main run's."""

    data_path: str | None = None
    "Dataset of long sequences (notebook 02's data/d_long); None = no post-training stage."
    steps: int = param(1000, ge=1)
    "Iterations of the stage."
    seq_len: int | None = param(None, ge=2)
    "Steps per sequence; None = the dataset's length."
    batch_size: int = param(1, ge=1)
    "Sequences per iteration on each process."
    lr: float = param(1e-4, gt=0)
    "Peak learning rate of the stage (the paper gives none; below the main run's)."
    warmup_steps: int = param(100, ge=0)
    "Linear warmup iterations of the stage."


@dataclass
class TrainConfig:
    """Notebook 03 and ``python -m omnirl_core.training``: meta-training by chunked truncated BPTT (Algorithm 3)."""

    seed: int = param(0, ge=0)
    "Seed of the model initialisation, the stand-in data and the state masks."
    steps: int = param(100000, ge=1)
    "Optimiser iterations (one batch of sequences each)."
    chunk_len: int = param(2048, ge=1)
    "Steps per chunk; memory is carried across chunks with stop-gradient (paper: 2K)."
    model: M.ModelConfig = param(default_factory=_paper_model)
    "The OmniRL model."
    data: DataConfig = param(DataConfig())
    "Training data."
    optim: OptimConfig = param(OptimConfig())
    "Optimiser and learning-rate schedule."
    loss: LossConfig = param(LossConfig())
    "Loss terms and weights."
    eval: EvalConfig = param(EvalConfig())
    "Evaluation hooks."
    device: str = param("auto", choices=("auto", "cpu", "cuda"))
    "Device; auto = CUDA when available."
    bf16: bool = True
    "bf16 autocast on CUDA (ignored on CPU)."
    log_every: int = param(10, ge=1)
    "Write a metrics row every this many iterations."
    launch: LaunchConfig = param(LaunchConfig())
    "Notebook 03 only: one process in the kernel, or torchrun with several (the command line is run by torchrun)."
    tensorboard: str = param("auto", choices=("auto", "on", "off"))
    "TensorBoard events in RUN/tensorboard beside the CSV/JSONL files: auto (if installed; says so if not), on, off."
    checkpoint_every: int = param(500, ge=1)
    "Write the checkpoint every this many iterations (and after the last)."
    max_bad_steps: int = param(5, ge=1)
    "Stop with NonFiniteLossError after this many consecutive non-finite steps."
    inject_nan_steps: list[int] = param([], ge=0)
    "Iterations whose loss is replaced by NaN (to exercise the guard; leave empty)."
    torch_threads: int | None = param(None, ge=1)
    "Torch CPU threads while training (small models run fastest on 1); None keeps torch's default."
    init_from: str | None = None
    "Start from these weights (.pt/.safetensors, relative: the repo); tensors of another shape start fresh."
    post_training: PostTrainingConfig = param(PostTrainingConfig())
    "The long-context stage after this run (D_Long), started from this run's weights."

    def validate(self) -> None:
        wm = self.loss.state > 0 or self.loss.reward > 0
        check(wm or self.loss.policy > 0, "loss.policy", self.loss.policy, "> 0 when no world-model term is on")
        check(not wm or self.model.world_model, "model.world_model", self.model.world_model,
              "true when loss.state or loss.reward is > 0")
        if self.data.path is None or self.data.standin_share > 0:
            check(self.data.na == self.model.na, "data.na", self.data.na, f"equal to model.na ({self.model.na})")
            check(self.data.ns <= self.model.ns_max, "data.ns", self.data.ns,
                  f"<= model.ns_max ({self.model.ns_max})")
        if self.data.path is None:
            check(self.data.seq_len is not None, "data.seq_len", None, "set for the stand-in data")
        else:
            share = self.data.standin_share
            check(share == 0 or round(share * self.data.batch_size) >= 1, "data.standin_share", share,
                  f"0, or at least one sequence of data.batch_size ({self.data.batch_size})")






def post_training_config(cfg: TrainConfig, init_from: str | os.PathLike) -> TrainConfig:
    """The configuration of ``cfg``'s post-training stage: ``cfg`` with the stage's data, iterations, batch and
    learning rate, started from ``init_from`` (the main run's weights), and no stage after it."""
    from ..workbook.config import config_to_dict, load_config

    post = cfg.post_training
    check(post.data_path is not None, "post_training.data_path", None, "set to a dataset of long sequences")
    d = config_to_dict(cfg)
    d.update(steps=post.steps, init_from=str(init_from), post_training={"data_path": None})
    d["data"].update(path=post.data_path, seq_len=post.seq_len, batch_size=post.batch_size, standin_share=0.0)
    d["optim"].update(lr=post.lr, warmup_steps=post.warmup_steps)
    return load_config(TrainConfig, d)
