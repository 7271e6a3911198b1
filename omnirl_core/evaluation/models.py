"""Loading models for evaluation: a training checkpoint or safetensors file (:func:`load_model`), and the models
shipped in ``models/`` (:func:`shipped_models`, :func:`shipped_model_for`, :func:`load_shipped`), found through
their ``config.json`` so that notebooks and the task explorer can load one by default.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..workbook.config import repo_path


# ---------------------------------------------------------------------------------------------- checkpoints
class CheckpointConfigError(ValueError):
    """A model checkpoint that is unreadable or does not match the expected model configuration."""


def load_model(path: str | os.PathLike, model_config=None, device: str = "cpu"):
    """An :class:`~omnirl_core.model.OmniRL` from a training checkpoint (``checkpoint.pt``: keys ``model`` and
    ``model_config``) or ``model.safetensors`` (``model_config`` in its metadata).

    With ``model_config`` (a ModelConfig), a checkpoint written with another configuration raises
    :class:`CheckpointConfigError` naming every differing field (the kernel ``backend`` may differ)."""
    import torch

    from ..model import ModelConfig, OmniRL, config_differences
    from ..workbook import ConfigError, load_config

    path = Path(path)
    if not path.is_file():
        raise CheckpointConfigError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), "pt") as fh:
                meta = fh.metadata() or {}
            stored = json.loads(meta["model_config"]) if "model_config" in meta else None
            weights = load_file(str(path))
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(ckpt, dict) or "model" not in ckpt:
                raise CheckpointConfigError(f"{path}: not an OmniRL checkpoint (no 'model' entry)")
            stored, weights = ckpt.get("model_config"), ckpt["model"]
    except CheckpointConfigError:
        raise
    except Exception as exc:
        raise CheckpointConfigError(f"{path}: not a readable OmniRL checkpoint ({exc})") from None
    if stored is None:
        raise CheckpointConfigError(f"{path}: the checkpoint does not record its model configuration")
    if isinstance(stored, str):
        stored = json.loads(stored)
    try:
        cfg = load_config(ModelConfig, stored)
    except ConfigError as exc:
        raise CheckpointConfigError(f"{path}: its model configuration is invalid: {exc}") from None
    if model_config is not None:
        diffs = config_differences(stored, model_config)
        if diffs:
            raise CheckpointConfigError(f"{path} was written with another model configuration:\n  "
                                        + "\n  ".join(diffs))
        cfg.backend = model_config.backend
    model = OmniRL(cfg)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise CheckpointConfigError(f"{path}: the weights do not fit the recorded model configuration: {exc}") from None
    return model.to(device).eval()


MODELS_DIR = "models"


# ---------------------------------------------------------------------------------------------- shipped models
@dataclass(frozen=True)
class ShippedModel:
    """A model folder under ``models/``: weights, its ``config.json`` and what it covers."""

    name: str
    path: Path  # the folder
    ns_max: int  # largest number of observation ids it accepts
    na: int
    temperature: float  # sampling temperature chosen on validation tasks

    @property
    def weights(self) -> Path:
        return self.path / "model.safetensors"


def shipped_models(root: str | os.PathLike | None = None) -> list[ShippedModel]:
    """Every ``models/<name>/`` with ``model.safetensors`` and ``config.json``, smallest ``ns_max`` first."""
    root = repo_path(MODELS_DIR) if root is None else Path(root)
    found = []
    for cfg_path in sorted(root.glob("*/config.json")):
        folder = cfg_path.parent
        if not (folder / "model.safetensors").is_file():
            continue
        cfg = json.loads(cfg_path.read_text())
        found.append(ShippedModel(name=folder.name, path=folder, ns_max=int(cfg["model"]["ns_max"]),
                                  na=int(cfg["model"]["na"]), temperature=float(cfg.get("temperature", 1.0))))
    return sorted(found, key=lambda m: (m.ns_max, m.name))


def shipped_model_for(ns: int, root: str | os.PathLike | None = None) -> ShippedModel:
    """The shipped model trained for the smallest state count that still covers ``ns`` observation ids.

    Raises ``LookupError`` naming what is shipped when none covers ``ns``."""
    models = shipped_models(root)
    for m in models:
        if m.ns_max >= ns:
            return m
    have = ", ".join(f"{m.name} (ns <= {m.ns_max})" for m in models) or "none"
    raise LookupError(f"no shipped model covers tasks with {ns} states; shipped: {have}")


def load_shipped(which: str | int | os.PathLike = 1, device: str = "cpu"):
    """(model, ShippedModel) for a shipped model: by folder name or path, or (an int) the one covering that ns."""
    if isinstance(which, int):
        info = shipped_model_for(which)
    else:
        folder = Path(which)
        if not folder.is_dir():
            folder = repo_path(Path(MODELS_DIR) / str(which))
        matches = [m for m in shipped_models(folder.parent) if m.path.resolve() == folder.resolve()]
        if not matches:
            raise LookupError(f"{folder}: not a shipped model folder (needs model.safetensors and config.json)")
        info = matches[0]
    return load_model(info.weights, device=device), info
