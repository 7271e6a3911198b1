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
from ..workbook.errors import InputError


# ---------------------------------------------------------------------------------------------- checkpoints
class CheckpointConfigError(InputError):
    """A model checkpoint that is unreadable, fails its checksum, holds non-finite weights, or does not match the
    expected model configuration."""


def load_model(path: str | os.PathLike, model_config=None, device: str = "cpu", *, allow_unverified: bool = False):
    """An :class:`~omnirl_core.model.OmniRL` from a training checkpoint (``checkpoint.pt``: keys ``model`` and
    ``model_config``) or ``model.safetensors`` (``model_config`` in its metadata).

    The weights are verified against the checksum recorded with them (a file without one is refused unless
    ``allow_unverified``, which says so on stderr) and must be finite. With ``model_config`` (a ModelConfig), a
    checkpoint written with another configuration raises :class:`CheckpointConfigError` naming every differing
    field (the kernel ``backend`` may differ). The model remembers its file as ``model.source_path``, which
    :class:`~omnirl_core.evaluation.agents.OmniRLAgent` names when the model outputs a non-finite value."""
    from ..model import ModelConfig, OmniRL, config_differences
    from ..training.checkpoints import CheckpointMismatchError, read_weights
    from ..workbook import ConfigError, load_config

    path = Path(path)
    if not path.is_file():
        raise CheckpointConfigError(f"{path}: no such checkpoint file")
    try:
        weights, stored = read_weights(path, allow_unverified=allow_unverified)
    except CheckpointMismatchError as exc:
        raise CheckpointConfigError(str(exc)) from None
    if stored is None:
        raise CheckpointConfigError(f"{path}: the checkpoint does not record its model configuration")
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
    model.source_path = str(path)
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


class ShippedModelError(InputError, LookupError):
    """No shipped model of that name, or none that covers the asked state count."""


def shipped_model_for(ns: int, root: str | os.PathLike | None = None) -> ShippedModel:
    """The shipped model trained for the smallest state count that still covers ``ns`` observation ids.

    Raises ``LookupError`` naming what is shipped when none covers ``ns``."""
    models = shipped_models(root)
    for m in models:
        if m.ns_max >= ns:
            return m
    have = ", ".join(f"{m.name} (ns <= {m.ns_max})" for m in models) or "none"
    raise ShippedModelError(f"no shipped model covers tasks with {ns} states; shipped: {have}")


def load_shipped(which: str | int | os.PathLike = 1, device: str = "cpu"):
    """(model, ShippedModel) for a shipped model: by folder name (``omnirl-tiny-bandit``: under ``models/``) or path,
    or (an int) the one covering that ns. The weights must match the checksum in the folder's ``config.json``
    (``weights_sha256``) as well as the one in their own file."""
    if isinstance(which, int):
        info = shipped_model_for(which)
    else:
        folder = Path(which)
        if not folder.is_dir() and len(folder.parts) == 1:  # a bare name: a folder of models/
            folder = repo_path(Path(MODELS_DIR) / str(which))
        matches = [m for m in shipped_models(folder.parent) if m.path.resolve() == folder.resolve()] \
            if folder.is_dir() else []
        if not matches:
            have = ", ".join(m.name for m in shipped_models()) or "none"
            raise ShippedModelError(f"{which}: not a shipped model folder (one with model.safetensors and "
                                    f"config.json) nor a checkpoint file; shipped in {MODELS_DIR}/: {have}")
        info = matches[0]
    model = load_model(info.weights, device=device)
    recorded = json.loads((info.path / "config.json").read_text()).get("weights_sha256")
    from ..training.checkpoints import DIGEST_KEY, tensor_digest

    actual = tensor_digest(model.state_dict())
    if recorded != actual:
        why = "records no weights_sha256" if recorded is None else f"records weights_sha256 {recorded[:12]}..."
        raise CheckpointConfigError(f"{info.path / 'config.json'} {why}, but {info.weights} holds weights with "
                                    f"{DIGEST_KEY} {actual[:12]}...: the folder's files do not belong together")
    return model, info
