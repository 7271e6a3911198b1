"""Meta-training of OmniRL (paper Algorithm 3), readable top to bottom.

One training iteration, for a batch of B sequences of T steps::

    w_t  = ramp from 1e-3 to 1 over the first 512 steps (position weights)
    N    = sum over the batch (all processes) of w_t * m_t          (m_t = 1 where the label counts)
    memory = empty
    for each chunk [t0, t1) of the sequence (2K steps by default):
        logits, aux, memory' = model(chunk inputs, memory)
        loss_k = sum_{t in chunk} w_t m_t CE(logits_t, a*_t) / N   (+ optional world-model terms)
        loss_k.backward()                                           # gradients accumulate over chunks
        memory = stop_gradient(memory')                             # truncated BPTT at chunk boundaries
    clip the gradient norm to 1.0, one AdamW step, lr = warmup then 1/sqrt decay

Because every chunk's loss is divided by the *same* N, the accumulated gradient is the gradient of the
sequence-level weighted loss, with back-propagation through time cut at chunk boundaries; with one chunk
(chunk_len >= T) it is exactly full back-propagation. Under DistributedDataParallel (``torchrun``) N is summed
over all processes and each process's loss is multiplied by the world size, so the gradients DDP averages equal
those of one process holding the combined batch.

Robustness: checkpoints are written atomically and hold everything needed for an exact resume (model,
optimiser, schedule position, RNG states, data position); a non-finite loss or gradient skips the step and is
counted, and ``max_bad_steps`` of them in a row stop the run with :class:`NonFiniteLossError` (the last checkpoint
is left as it was); a checkpoint written with another model configuration raises :class:`CheckpointMismatchError`
naming the differing keys.

Data: :class:`StandInData` (synthetic in-context bandit-like sequences, a pure function of (seed, step, sequence
index), used when ``data.path`` is unset) or :class:`DatasetStream` (a synthesised dataset folder read through
``omnirl_core.dataset.SequenceDataset``). Both yield dicts of [B, T] tensors: obs, tag, action, reward, label,
label_mask.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import omnirl_core.model as M
from omnirl_core.config import check, config_to_dict, dump_config, param, repo_path

__all__ = [
    "CheckpointMismatchError",
    "DataConfig",
    "DatasetStream",
    "EvalConfig",
    "LossConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "StandInData",
    "TrainConfig",
    "TrainResult",
    "accumulate_gradients",
    "load_checkpoint",
    "lr_at",
    "plot_loss_curves",
    "plot_position_loss",
    "position_loss",
    "position_loss_hook",
    "read_eval",
    "read_metrics",
    "save_checkpoint",
    "sequence_normalisers",
    "train",
]

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.safetensors"
CKPT_FORMAT = "omnirl-train-checkpoint"
CKPT_VERSION = 1


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


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
    "Steps per sequence T; a dataset's longer sequences are cut to T, None = the dataset's full length."
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
class TrainConfig:
    """Notebook 03 and ``python -m omnirl_core.train``: meta-training by chunked truncated BPTT (Algorithm 3)."""

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

    def validate(self) -> None:
        wm = self.loss.state > 0 or self.loss.reward > 0
        check(wm or self.loss.policy > 0, "loss.policy", self.loss.policy, "> 0 when no world-model term is on")
        check(not wm or self.model.world_model, "model.world_model", self.model.world_model,
              "true when loss.state or loss.reward is > 0")
        if self.data.path is None:
            check(self.data.na == self.model.na, "data.na", self.data.na, f"equal to model.na ({self.model.na})")
            check(self.data.ns <= self.model.ns_max, "data.ns", self.data.ns,
                  f"<= model.ns_max ({self.model.ns_max})")
            check(self.data.seq_len is not None, "data.seq_len", None, "set for the stand-in data")




class NonFiniteLossError(RuntimeError):
    """Too many consecutive iterations had a non-finite loss or gradient; the last checkpoint is untouched."""


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a run with another model configuration (or is not a training checkpoint)."""


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


class StandInData:
    """Synthetic sequences with the training batch format, a pure function of (seed, step, sequence index).

    Each sequence hides a best action per state; states are drawn uniformly, a behaviour acts
    epsilon-greedily (epsilon drawn per sequence, its quality given by the tag) and gets reward 1 for the
    best action; the label is the best action. The best action can only be inferred from context (plus a bias
    towards action 0), so the loss falls with position as a model learns in context. Sequence ``i`` of
    iteration ``k`` depends only on ``(seed, k, i)``: process ``r`` of ``W`` takes global indices
    ``r*B .. r*B+B-1``, so the processes together see exactly a single process's batch of ``W*B``.
    """

    def __init__(self, cfg: DataConfig, seed: int, rank: int = 0, world_size: int = 1):
        self.cfg, self.seed, self.rank, self.world_size = cfg, seed, rank, world_size
        self.step = 0

    def sequence(self, step: int, index: int) -> dict[str, np.ndarray]:
        c = self.cfg
        T, ns, na = c.seq_len, c.ns, c.na
        rng = np.random.default_rng([self.seed, step, index])
        p = np.full(na, (1 - c.best_action_bias) / na)
        p[0] += c.best_action_bias
        best = rng.choice(na, size=ns, p=p)
        eps = rng.uniform(0.1, 1.0)
        obs = rng.integers(0, ns, T)
        explore = rng.random(T) < eps
        action = np.where(explore, rng.integers(0, na, T), best[obs])
        reward = (action == best[obs]).astype(np.float32)
        tag = np.full(T, 1 if eps < 0.5 else 6) if rng.random() > 0.15 else np.full(T, 7)
        label = best[obs]
        end = (np.arange(T) % (c.episode_len + 1)) == c.episode_len  # episode-end steps
        action[end], reward[end], tag[end] = na, 0.0, 7
        return {"obs": obs, "tag": tag, "action": action, "reward": reward, "label": label, "label_mask": ~end}

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        B = self.cfg.batch_size
        seqs = [self.sequence(step, self.rank * B + j) for j in range(B)]
        out = {k: torch.from_numpy(np.stack([s[k] for s in seqs])) for k in seqs[0]}
        for k in ("obs", "tag", "action", "label"):
            out[k] = out[k].long()
        return out

    def next_batch(self) -> dict[str, torch.Tensor]:
        b = self.batch(self.step)
        self.step += 1
        return b

    def state_dict(self) -> dict:
        return {"kind": "stand-in", "step": self.step}

    def load_state_dict(self, sd: dict) -> None:
        self.step = int(sd["step"])


class DatasetStream:
    """Whole sequences (cut to ``seq_len``) from a synthesised dataset, epoch after epoch, with a resumable position."""

    def __init__(self, cfg: DataConfig, seed: int, rank: int = 0, world_size: int = 1):
        from omnirl_core.dataset import SequenceDataset, load_manifest

        root = repo_path(cfg.path)
        man = load_manifest(root)
        self.cfg, self.seq_len = cfg, min(cfg.seq_len or man["seq_len"], man["seq_len"])
        self.manifest = man
        self.ds = SequenceDataset(root, cfg.batch_size, man["seq_len"], rank=rank, world_size=world_size,
                                  seed=seed, verify=cfg.verify)
        if len(self.ds) == 0:
            raise ValueError(f"{root}: no full batch of {cfg.batch_size} sequences for process {rank} of {world_size}")
        self.epoch, self.pos, self._it = 0, 0, None

    def next_batch(self) -> dict[str, torch.Tensor]:
        if self._it is None:
            self.ds.set_epoch(self.epoch)
            self._it = iter(self.ds)
            for _ in range(self.pos):  # resume: skip what this epoch already used
                next(self._it)
        try:
            b = next(self._it)
        except StopIteration:
            self.epoch, self.pos, self._it = self.epoch + 1, 0, None
            return self.next_batch()
        self.pos += 1
        T = self.seq_len
        return {k: b[k][:, :T] for k in ("obs", "tag", "action", "reward", "label", "label_mask")}

    def state_dict(self) -> dict:
        return {"kind": "dataset", "epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, sd: dict) -> None:
        self.epoch, self.pos, self._it = int(sd["epoch"]), int(sd["pos"]), None


def make_data(cfg: TrainConfig, rank: int = 0, world_size: int = 1):
    """The data source of a run: the dataset at ``data.path`` (checked against the model) or the stand-in."""
    if cfg.data.path:
        stream = DatasetStream(cfg.data, cfg.seed, rank, world_size)
        dc = stream.manifest.get("config", {})
        ns = max(dc.get("ns") or 0, dc.get("ns_max") or 0)
        if dc.get("na") != cfg.model.na or ns > cfg.model.ns_max:
            raise ValueError(f"{cfg.data.path}: dataset has ns up to {ns} and na {dc.get('na')}; the model needs "
                             f"ns <= model.ns_max ({cfg.model.ns_max}) and na == model.na ({cfg.model.na})")
        return stream
    return StandInData(cfg.data, cfg.seed, rank, world_size)


def mask_states(obs: torch.Tensor, p: float, ns_max: int, seed: int, step: int, rank: int, world_size: int):
    """Replace each input state by the masked id with probability ``p``; the draw depends on (seed, step) and the
    sequence's global index only, so it is the same whatever the number of processes and after a resume."""
    if p <= 0:
        return obs
    B, T = obs.shape
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, 7]).generate_state(1)[0]))
    u = torch.rand(B * world_size, T, generator=g)[rank * B : (rank + 1) * B]
    return torch.where(u.to(obs.device) < p, torch.full_like(obs, ns_max), obs)


# --------------------------------------------------------------------------------------------------
# Schedule, loss, Algorithm 3
# --------------------------------------------------------------------------------------------------


def lr_at(step: int, cfg: OptimConfig) -> float:
    """Learning rate of iteration ``step`` (0-based): linear warmup to the peak, then peak * sqrt(warmup / step)."""
    w = cfg.warmup_steps
    if step < w:
        return cfg.lr * (step + 1) / w
    return max(cfg.min_lr, cfg.lr * math.sqrt(max(w, 1) / (step + 1)))


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(x)
    return x


def sequence_normalisers(batch: dict, cfg: LossConfig, world_model: bool) -> dict[str, torch.Tensor]:
    """Sum of w_t * m_t over the whole batch (all processes) for each loss term: the common denominator of every
    chunk's loss, so that per-chunk gradients add up to the gradient of the sequence loss."""
    B, T = batch["label"].shape
    w = M.ramp_weights(T, 0, cfg.ramp_steps, cfg.ramp_start, device=batch["label"].device)
    out = {"policy": (w * batch["label_mask"].float()).sum()}
    if world_model:
        out["state"] = w[: T - 1].sum() * B  # every step but the last has a next state
        out["reward"] = w.sum() * B
    flat = _all_reduce_sum(torch.stack(list(out.values())))
    return {k: flat[i].clamp_min(1e-8) for i, k in enumerate(out)}


def _chunk_losses(logits, aux, batch, t0, t1, norms, cfg: LossConfig, na: int, ns_max: int) -> dict[str, torch.Tensor]:
    """Weighted loss terms of chunk [t0, t1), each already divided by its sequence-level normaliser."""
    B, T = batch["label"].shape
    w = M.ramp_weights(t1 - t0, t0, cfg.ramp_steps, cfg.ramp_start, device=logits.device)  # [C]
    label = batch["label"][:, t0:t1]
    mask = batch["label_mask"][:, t0:t1].float() * ((label >= 0) & (label < na)).float()
    ce = F.cross_entropy(logits.float().reshape(-1, na), label.clamp(0, na - 1).reshape(-1), reduction="none")
    out = {"policy": (ce.view(B, -1) * w * mask).sum() / norms["policy"]}
    if "state" in norms:
        nxt = batch["obs"][:, t0 + 1 : t1 + 1]  # s_{t+1}, true (unmasked) states
        C = nxt.shape[1]  # the sequence's last step has no next state
        sl = aux["state_logits"][:, :C].float()
        valid = (nxt < ns_max).float()
        sce = F.cross_entropy(sl.reshape(-1, ns_max), nxt.clamp(max=ns_max - 1).reshape(-1), reduction="none")
        out["state"] = (sce.view(B, C) * w[:C] * valid).sum() / norms["state"]
        err = (aux["reward_pred"].float() - batch["reward"][:, t0:t1].float()) ** 2
        out["reward"] = (err * w).sum() / norms["reward"]
    return out


def accumulate_gradients(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    obs_in: torch.Tensor,
    cfg: TrainConfig,
    scale: float = 1.0,
    nan: bool = False,
) -> dict[str, float]:
    """Algorithm 3 for one batch: forward and backward chunk by chunk from the detached memory of the previous
    chunk, gradients accumulated in ``.grad``. ``obs_in`` are the (masked) input states, ``batch`` the targets.

    ``scale`` multiplies every loss (the world size under DDP, which averages gradients). Returns the loss terms
    (sums over chunks, as floats) and ``finite``. Under DDP, gradients are synchronised only after the last chunk.
    """
    mcfg: M.ModelConfig = (model.module if hasattr(model, "module") else model).cfg
    T = obs_in.shape[1]
    world_model = cfg.loss.state > 0 or cfg.loss.reward > 0
    norms = sequence_normalisers(batch, cfg.loss, world_model)
    weights = {"policy": cfg.loss.policy, "state": cfg.loss.state, "reward": cfg.loss.reward}
    dev = obs_in.device
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda" and cfg.bf16)
    totals: dict[str, float] = {k: 0.0 for k in norms}
    finite = True
    memory = None
    starts = list(range(0, T, cfg.chunk_len))
    for i, t0 in enumerate(starts):
        t1 = min(t0 + cfg.chunk_len, T)
        last = i == len(starts) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast:
                logits, aux, new_memory = model(
                    obs_in[:, t0:t1], batch["tag"][:, t0:t1], batch["action"][:, t0:t1], batch["reward"][:, t0:t1],
                    memory,
                )
            terms = _chunk_losses(logits, aux, batch, t0, t1, norms, cfg.loss, mcfg.na, mcfg.ns_max)
            loss = sum(weights[k] * v for k, v in terms.items())
            if nan:
                loss = loss * float("nan")
            (loss * scale).backward()
        memory = M.detach_state(new_memory)  # stop-gradient: the next chunk starts from this memory
        for k, v in terms.items():
            totals[k] += float(v.detach())
        finite = finite and bool(torch.isfinite(loss.detach()))
    totals["loss"] = sum(weights[k] * totals[k] for k in norms)
    totals["finite"] = finite
    return totals


@torch.no_grad()
def position_loss(model: torch.nn.Module, batches: Sequence[dict], chunk_len: int, bins: int) -> dict[str, list]:
    """Mean policy cross entropy (unweighted, labelled steps only) in ``bins`` equal bins along the sequence."""
    model = model.module if hasattr(model, "module") else model
    was_training = model.training
    model.eval()
    na = model.cfg.na
    ce_sum, n_sum = None, None
    for b in batches:
        B, T = b["label"].shape
        memory, parts = None, []
        dev = next(model.parameters()).device
        for t0 in range(0, T, chunk_len):
            sl = slice(t0, min(t0 + chunk_len, T))
            logits, _, memory = model(b["obs"][:, sl].to(dev), b["tag"][:, sl].to(dev), b["action"][:, sl].to(dev),
                                      b["reward"][:, sl].to(dev), memory)
            parts.append(logits.float().cpu())
        logits = torch.cat(parts, 1)
        label = b["label"]
        mask = b["label_mask"] & (label >= 0) & (label < na)
        ce = F.cross_entropy(logits.reshape(-1, na), label.clamp(0, na - 1).reshape(-1), reduction="none").view(B, T)
        edges = np.linspace(0, T, bins + 1).astype(int)
        cs = torch.stack([(ce * mask)[:, a:z].sum() for a, z in zip(edges[:-1], edges[1:])])
        ns = torch.stack([mask[:, a:z].sum() for a, z in zip(edges[:-1], edges[1:])]).float()
        ce_sum = cs if ce_sum is None else ce_sum + cs
        n_sum = ns if n_sum is None else n_sum + ns
    model.train(was_training)
    centres = ((edges[:-1] + edges[1:]) / 2).tolist()
    return {"position": centres, "loss": (ce_sum / n_sum.clamp_min(1)).tolist()}


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def _rng_state() -> dict:
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": {"version": version, "state": list(internal), "gauss": gauss}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(str(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(out_dir: Path, *, step: int, model, optimizer, data_states: list[dict], cfg: TrainConfig,
                    counters: dict) -> Path:
    """Write ``checkpoint.pt`` (everything for an exact resume) and ``model.safetensors`` (weights), atomically.

    ``data_states`` holds each process's data position (``data.state_dict()``), in rank order."""
    from safetensors.torch import save_file

    raw = model.module if hasattr(model, "module") else model
    sd = {k: v.detach().cpu().contiguous() for k, v in raw.state_dict().items()}
    ckpt = {
        "format": CKPT_FORMAT,
        "version": CKPT_VERSION,
        "step": step,  # iterations completed = the next iteration to run
        "model": sd,
        "optimizer": optimizer.state_dict(),
        "scheduler": {"kind": "warmup_inv_sqrt", "step": step, "lr": lr_at(max(step - 1, 0), cfg.optim)},
        "rng": _rng_state(),
        "data": data_states,  # one per process
        "counters": dict(counters),
        "model_config": config_to_dict(cfg.model),
        "train_config": json.dumps(config_to_dict(cfg)),
    }
    path = Path(out_dir) / CHECKPOINT
    _atomic(path, lambda p: torch.save(ckpt, p))
    meta = {"step": str(step), "model_config": json.dumps(config_to_dict(cfg.model))}
    _atomic(Path(out_dir) / WEIGHTS, lambda p: save_file(sd, p, metadata=meta))
    return path


def load_checkpoint(path: str | os.PathLike, cfg: TrainConfig | None = None) -> dict:
    """Read a training checkpoint (``weights_only=True``); with ``cfg``, check that its model configuration matches
    and raise :class:`CheckpointMismatchError` naming every differing key otherwise."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointMismatchError(f"{path}: not a readable training checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise CheckpointMismatchError(f"{path}: not an OmniRL training checkpoint")
    if cfg is not None:
        diffs = [f"model.{d}" for d in M.config_differences(ckpt["model_config"], cfg.model)]
        if diffs:
            raise CheckpointMismatchError(
                f"{path} was written with another model configuration:\n  " + "\n  ".join(diffs)
                + "\nUse the same model settings, or another output folder to start afresh."
            )
    return ckpt


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------

METRIC_COLUMNS = ["step", "loss", "policy", "state", "reward", "lr", "grad_norm", "skipped", "bad_steps_total",
                  "steps_per_s", "elapsed_s"]


class MetricsWriter:
    """Rows to ``metrics.csv`` and ``metrics.jsonl`` (and TensorBoard when installed): loss terms averaged over the
    iterations since the previous row, lr and gradient norm of the row's iteration. On resume, rows from
    iterations after the checkpoint are dropped so the files read like one run."""

    def __init__(self, out_dir: Path, start_step: int, enabled: bool):
        self.enabled = enabled
        self.csv, self.jsonl, self.eval = out_dir / "metrics.csv", out_dir / "metrics.jsonl", out_dir / "eval.jsonl"
        self.tb = None
        if not enabled:
            return
        for p in (self.jsonl, self.eval):
            rows = [r for r in _read_jsonl(p) if r.get("step", 0) <= start_step]
            p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        keep = [r for r in _read_csv(self.csv) if float(r["step"]) <= start_step]
        with open(self.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, METRIC_COLUMNS)
            w.writeheader()
            w.writerows(keep)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_step)
        except Exception:  # tensorboard not installed
            self.tb = None

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.jsonl, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        with open(self.csv, "a", newline="") as fh:
            csv.DictWriter(fh, METRIC_COLUMNS, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def log_eval(self, row: dict) -> None:
        if self.enabled:
            with open(self.eval, "a") as fh:
                fh.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut by a kill
            pass
    return out


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r.get("step") not in (None, "") and None not in r.values()]


def read_metrics(out_dir: str | os.PathLike) -> list[dict]:
    """The metric rows of a run folder."""
    return _read_jsonl(Path(out_dir) / "metrics.jsonl")


def read_eval(out_dir: str | os.PathLike) -> list[dict]:
    """The evaluation rows of a run folder."""
    return _read_jsonl(Path(out_dir) / "eval.jsonl")


# --------------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainContext:
    """What an evaluation hook sees."""

    step: int
    model: torch.nn.Module
    cfg: TrainConfig
    out_dir: Path
    eval_batches: list[dict]


Hook = Callable[[TrainContext], "dict | None"]


def position_loss_hook(ctx: TrainContext) -> dict:
    """Built-in hook: policy loss against position on fixed evaluation batches."""
    return {"hook": "position_loss", **position_loss(ctx.model, ctx.eval_batches, ctx.cfg.chunk_len,
                                                     ctx.cfg.eval.position_bins)}


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    step: int
    out_dir: Path
    model: torch.nn.Module
    bad_steps: int
    last_loss: float
    history: list[dict] = field(default_factory=list)


def init_weights_from(model: torch.nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Copy into ``model`` every tensor of the checkpoint at ``path`` with the same name and shape.

    Returns the names ``loaded`` and those kept ``fresh`` (absent there or of another shape). Raises
    ``ValueError`` when nothing fits (the checkpoint is of another architecture altogether)."""
    from .config import repo_path

    path = repo_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init_from: {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        source = load_file(str(path))
    else:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        source = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    own = model.state_dict()
    loaded = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    if not loaded:
        raise ValueError(f"init_from: no tensor of {path} fits this model (another architecture?)")
    model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in loaded.items()}})
    return {"loaded": sorted(loaded), "fresh": sorted(k for k in own if k not in loaded)}


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def _eval_batches(cfg: TrainConfig) -> list[dict]:
    if cfg.data.path:  # the first batches of the dataset (training data; a held-out split is not made here)
        stream = make_data(cfg)
        return [stream.next_batch() for _ in range(cfg.eval.batches)]
    held_out = StandInData(cfg.data, cfg.seed + 10**6)  # another seed: sequences never trained on
    return [held_out.batch(k) for k in range(cfg.eval.batches)]


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    hooks: Sequence[Hook] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Run (or with ``resume``, continue) meta-training; writes checkpoints and metrics under ``out_dir``.

    Works in one process or under ``torchrun`` (initialise ``torch.distributed`` first; :mod:`omnirl_core.train`
    does). ``hooks`` run on rank 0 every ``eval.every`` iterations and after the last one; their dicts go to
    ``eval.jsonl`` (default: :func:`position_loss_hook`).
    """
    rank, world = _dist()
    out = Path(out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml", header="Configuration of this training run.")
    device = _device(cfg)
    if cfg.torch_threads is not None and device.type == "cpu":
        torch.set_num_threads(cfg.torch_threads)
    hooks = [position_loss_hook] if hooks is None else list(hooks)

    # ---- model, optimiser, data ----------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = M.OmniRL(cfg.model).to(device)
    if cfg.init_from and not (resume and (out / CHECKPOINT).is_file()):
        kept = init_weights_from(model, cfg.init_from)
        if rank == 0:
            print(f"init_from {cfg.init_from}: {len(kept['loaded'])} tensors loaded, "
                  f"{len(kept['fresh'])} kept fresh ({', '.join(kept['fresh']) or 'none'})")
    o = cfg.optim
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr_at(0, o), betas=tuple(o.betas), eps=o.eps,
    )
    data = make_data(cfg, rank, world)
    start, counters = 0, {"bad_steps_total": 0, "bad_steps_in_a_row": 0}

    ckpt_path = out / CHECKPOINT
    if resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, cfg)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if len(ckpt["data"]) != world:
            raise CheckpointMismatchError(f"{ckpt_path} was written by {len(ckpt['data'])} processes, this run has "
                                          f"{world}: the data positions cannot be resumed exactly")
        data.load_state_dict(ckpt["data"][rank])
        _set_rng_state(ckpt["rng"])
        counters.update(ckpt["counters"])
        start = int(ckpt["step"])
    elif ckpt_path.is_file():
        raise FileExistsError(f"{ckpt_path} exists: pass resume=True (--resume) to continue, or use another folder")

    net = model
    if world > 1:
        unused_heads = cfg.model.world_model and not (cfg.loss.state > 0 or cfg.loss.reward > 0)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused_heads
        )
    metrics = MetricsWriter(out, start, enabled=rank == 0)
    eval_batches = _eval_batches(cfg) if rank == 0 and hooks else []
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc="train", unit="it")

    history: list[dict] = []
    last_loss = float("nan")
    t_start = time.perf_counter()
    t_log, steps_since_log, window = t_start, 0, {}
    model.train()
    for step in range(start, cfg.steps):
        # ---- one iteration of Algorithm 3 ------------------------------------------------------
        batch = {k: v.to(device) for k, v in data.next_batch().items()}
        obs_in = mask_states(batch["obs"], cfg.loss.state_mask_prob, cfg.model.ns_max, cfg.seed, step, rank, world)
        lr = lr_at(step, o)
        for g in optimizer.param_groups:
            g["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        terms = accumulate_gradients(net, batch, obs_in, cfg, scale=float(world), nan=step in cfg.inject_nan_steps)
        if world > 1:  # each process holds its share of the loss (divided by the global normaliser): add them
            keys = [k for k in terms if k != "finite"]
            summed = _all_reduce_sum(torch.tensor([terms[k] for k in keys], dtype=torch.float64, device=device))
            terms.update({k: float(v) for k, v in zip(keys, summed)})
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        ok = torch.tensor([float(terms["finite"] and bool(torch.isfinite(grad_norm)))], device=device)
        if world > 1:
            torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
        if ok.item() > 0:
            optimizer.step()
            counters["bad_steps_in_a_row"] = 0
        else:  # skip: keep the weights and optimiser state, count it
            optimizer.zero_grad(set_to_none=True)
            counters["bad_steps_total"] += 1
            counters["bad_steps_in_a_row"] += 1
            if counters["bad_steps_in_a_row"] >= cfg.max_bad_steps:
                metrics.close()
                raise NonFiniteLossError(
                    f"{counters['bad_steps_in_a_row']} consecutive iterations (up to {step}) had a non-finite loss or "
                    f"gradient; stopped. The last checkpoint ({ckpt_path}) is left as it was."
                )
        last_loss = terms["loss"]
        done = step + 1
        steps_since_log += 1
        for k in ("loss", "policy", "state", "reward"):
            window[k] = window.get(k, 0.0) + terms.get(k, 0.0)

        # ---- bookkeeping --------------------------------------------------------------------------
        if done % cfg.log_every == 0 or done == cfg.steps:
            now = time.perf_counter()
            sps = steps_since_log * batch["obs"].numel() * world / max(now - t_log, 1e-9)
            mean = {k: v / steps_since_log for k, v in window.items()}  # loss terms: mean since the last row
            row = {"step": done, **mean, "lr": lr, "grad_norm": float(grad_norm),
                   "skipped": int(ok.item() == 0), "bad_steps_total": counters["bad_steps_total"],
                   "steps_per_s": sps, "elapsed_s": now - t_start}
            history.append(row)
            metrics.log(row)
            t_log, steps_since_log, window = now, 0, {}
            if bar is not None:
                bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{lr:.2e}")
        if bar is not None:
            bar.update(1)
        if rank == 0 and hooks and ((cfg.eval.every and done % cfg.eval.every == 0) or done == cfg.steps):
            ctx = TrainContext(done, model, cfg, out, eval_batches)
            for hook in hooks:
                res = hook(ctx)
                if res:
                    metrics.log_eval({"step": done, **res})
        if (done % cfg.checkpoint_every == 0 or done == cfg.steps) and counters["bad_steps_in_a_row"] == 0:
            data_states = [data.state_dict()]
            if world > 1:
                data_states = [None] * world
                torch.distributed.all_gather_object(data_states, data.state_dict())
            if rank == 0:
                save_checkpoint(out, step=done, model=model, optimizer=optimizer, data_states=data_states, cfg=cfg,
                                counters=counters)
            if world > 1:
                torch.distributed.barrier()
    if bar is not None:
        bar.close()
    metrics.close()
    return TrainResult(cfg.steps, out, model, counters["bad_steps_total"], last_loss, history)


# --------------------------------------------------------------------------------------------------
# Figures (for the notebook)
# --------------------------------------------------------------------------------------------------


def plot_loss_curves(rows: Sequence[dict], title: str | None = None):
    """Training loss terms and learning rate against iteration, from :func:`read_metrics` rows."""
    import matplotlib.pyplot as plt

    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(11, 3.6))
    steps = [r["step"] for r in rows]
    for key in ("loss", "policy", "state", "reward"):
        vals = [r.get(key, 0.0) for r in rows]
        if key == "loss" or any(vals):
            ax.plot(steps, vals, label=key, lw=1.2 if key == "loss" else 0.9)
    skipped = [r["step"] for r in rows if r.get("skipped")]
    if skipped:
        ax.scatter(skipped, [rows[0]["loss"]] * len(skipped), marker="x", color="red", label="skipped (non-finite)")
    ax.set(xlabel="iteration", ylabel="weighted loss", title=title or "training loss")
    ax.legend()
    ax_lr.plot(steps, [r["lr"] for r in rows], color="tab:gray")
    ax_lr.set(xlabel="iteration", ylabel="learning rate", title="schedule: warmup, then 1/sqrt")
    fig.tight_layout()
    return fig


def plot_position_loss(eval_rows: Sequence[dict], title: str | None = None):
    """Policy loss against position in the context, one curve per evaluation (later = darker)."""
    import matplotlib.pyplot as plt

    rows = [r for r in eval_rows if r.get("hook") == "position_loss"]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    cmap = plt.get_cmap("viridis")
    for i, r in enumerate(rows):
        ax.plot(r["position"], r["loss"], marker=".", color=cmap(0.15 + 0.7 * i / max(len(rows) - 1, 1)),
                label=f"iteration {r['step']}")
    ax.set(xlabel="step in the sequence (context length)", ylabel="policy cross entropy",
           title=title or "loss against position in the context")
    if rows:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
