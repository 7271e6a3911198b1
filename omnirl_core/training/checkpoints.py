"""Checkpoints of meta-training: written atomically, holding everything an exact resume needs (model, optimiser,
schedule position, RNG states, data position); and ``init_from``: starting a model from another's tensors.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import torch

from .. import model as M
from ..workbook.config import config_to_dict
from .config import TrainConfig
from .losses import lr_at

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.safetensors"
CKPT_FORMAT = "omnirl-train-checkpoint"
CKPT_VERSION = 1

class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a run with another model configuration (or is not a training checkpoint)."""


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


def init_weights_from(model: torch.nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Copy into ``model`` every tensor of the checkpoint at ``path`` with the same name and shape.

    Returns the names ``loaded`` and those kept ``fresh`` (absent there or of another shape). Raises
    ``ValueError`` when nothing fits (the checkpoint is of another architecture altogether)."""
    from ..workbook import repo_path

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
