"""One iteration's losses and gradients (Algorithm 3): the learning-rate schedule, sequence-level normalisers,
per-chunk losses accumulated with the memory carried across chunks, and the label loss by position.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import model as M
from .config import LossConfig, OptimConfig, TrainConfig


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
def position_loss(model: torch.nn.Module, batches: Sequence[dict], chunk_len: int, bins: int = 32, *,
                  edges: Sequence[int] | None = None) -> dict[str, list]:
    """Mean policy cross entropy (unweighted, labelled steps only) in ``bins`` equal bins along the sequence, or in
    the bins of ``edges`` (positions edges[i] .. edges[i+1] - 1; e.g. log-spaced ones); NaN for a bin without a
    labelled step (e.g. a one-step bin on a boundary step)."""
    model = model.module if hasattr(model, "module") else model
    was_training = model.training
    model.eval()
    na = model.cfg.na
    ce_sum, n_sum = None, None
    given = None if edges is None else np.asarray(edges, dtype=int)
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
        cut = np.linspace(0, T, bins + 1).astype(int) if given is None else given
        cs = torch.stack([(ce * mask)[:, a:z].sum() for a, z in zip(cut[:-1], cut[1:])])
        ns = torch.stack([mask[:, a:z].sum() for a, z in zip(cut[:-1], cut[1:])]).float()
        ce_sum = cs if ce_sum is None else ce_sum + cs
        n_sum = ns if n_sum is None else n_sum + ns
    model.train(was_training)
    centres = ((cut[:-1] + cut[1:]) / 2).tolist()
    mean = torch.where(n_sum > 0, ce_sum / n_sum.clamp_min(1), torch.full_like(ce_sum, float("nan")))
    return {"position": centres, "loss": mean.tolist()}  # NaN: a bin without labelled steps
