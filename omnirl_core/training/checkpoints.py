"""Checkpoints of meta-training: written atomically, holding everything an exact resume needs (model, optimiser,
schedule position, RNG states, data position); and ``init_from``: starting a model from another's tensors.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .. import model as M
from ..workbook.atomic import atomic_write
from ..workbook.config import config_to_dict
from ..workbook.errors import InputError
from .config import TrainConfig
from .losses import lr_at

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.safetensors"
CKPT_FORMAT = "omnirl-train-checkpoint"
CKPT_VERSION = 2  # 2: sha256 checksums of the weights and the optimiser state (1: none)
DIGEST_KEY = "weights_sha256"  # in a safetensors file's metadata and a shipped model's config.json

RESUMABLE_CHANGES = ("steps", "log_every", "checkpoint_every", "eval", "tensorboard", "torch_threads", "data.verify",
                     "init_from", "max_bad_steps", "launch", "post_training")
"""Keys of a :class:`TrainConfig` that a resume may change: how long the run goes on, how often it logs, writes
checkpoints and evaluates, its safety stop, how it is launched (a changed process count is refused by the
data positions) and the stage after it; none changes what the iterations compute."""


class CheckpointMismatchError(InputError):
    """A checkpoint that cannot be used as asked: written by a run with another configuration, not a training
    checkpoint, unreadable, altered since it was written (checksum), or holding non-finite weights."""


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors`` (in name order): the checksum recorded with
    every checkpoint and shipped model, independent of the file format that holds them."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _optimizer_tensors(state: dict) -> dict[str, torch.Tensor]:
    return {f"{pid}.{name}": v for pid, entry in state.get("state", {}).items() for name, v in entry.items()
            if isinstance(v, torch.Tensor)}


def non_finite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _unverified(path: Path, allow_unverified: bool) -> None:
    if not allow_unverified:
        raise CheckpointMismatchError(
            f"{path}: no checksum recorded (written before checksums were, or by another program); refusing to use "
            "weights that cannot be verified. To use it anyway, pass allow_unverified=True (command line: "
            "--allow-unverified)")
    print(f"warning: {path}: no checksum recorded; used unverified (allow_unverified)", file=sys.stderr)


def read_weights(path: str | os.PathLike, *, allow_unverified: bool = False) -> tuple[dict, dict | None]:
    """(tensors, recorded model configuration or None) of a ``.safetensors`` file or a training checkpoint
    (``weights_only=True``), verified: the checksum recorded with them must match (a file without one is refused
    unless ``allow_unverified``, which says so on stderr) and every tensor must be finite.
    Raises :class:`CheckpointMismatchError` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointMismatchError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), "pt") as fh:
                meta = fh.metadata() or {}
            weights = load_file(str(path))
            stored = meta.get("model_config")
            recorded = meta.get(DIGEST_KEY)
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
                weights, stored = ckpt["model"], ckpt.get("model_config")
                recorded = (ckpt.get("checksums") or {}).get("model")
            elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
                weights, stored, recorded = ckpt, None, None  # a bare state dict
            else:
                raise CheckpointMismatchError(f"{path}: not an OmniRL checkpoint (no 'model' entry)")
        if isinstance(stored, str):
            stored = json.loads(stored)
    except CheckpointMismatchError:
        raise
    except Exception as exc:  # torch and safetensors raise many types for a damaged file
        raise CheckpointMismatchError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                                      f"{' '.join(str(exc).split())[:200]})") from None
    if recorded is None:
        _unverified(path, allow_unverified)
    elif tensor_digest(weights) != recorded:
        raise CheckpointMismatchError(f"{path}: the weights fail their checksum (sha256 differs from the one "
                                      "recorded when the file was written): the file was altered or damaged")
    bad = non_finite(weights)
    if bad:
        raise CheckpointMismatchError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values "
                                      f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})")
    return weights, stored


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def train_config_differences(stored: dict | str, cfg: TrainConfig) -> list[str]:
    """Keys outside ``model`` and :data:`RESUMABLE_CHANGES` whose value differs between the configuration recorded
    in a checkpoint and ``cfg``, as ``"key: checkpoint X, now Y"`` (a key the checkpoint lacks counts at its
    default)."""
    from ..workbook.config import load_config

    if isinstance(stored, str):
        stored = json.loads(stored)
    try:
        old = config_to_dict(load_config(TrainConfig, stored))
    except InputError:
        old = stored
    a, b = _flat(old), _flat(config_to_dict(cfg))
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key.startswith("model.") or any(key == r or key.startswith(r + ".") for r in RESUMABLE_CHANGES):
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            diffs.append(f"{key}: checkpoint {a.get(key, '<absent>')!r}, now {b.get(key, '<absent>')!r}")
    return diffs


def data_fingerprint(cfg: TrainConfig) -> str | None:
    """sha256 of the dataset at ``data.path`` as its manifest describes it (seed, configuration, every shard
    file's sha256): another synthesis into the same folder (another seed, other settings) changes it, and it costs
    one small file read, not a pass over the data. None for stand-in data or a folder without a readable manifest
    (the data stream reports that)."""
    if not cfg.data.path:
        return None
    from ..workbook.config import repo_path

    try:
        man = json.loads((repo_path(cfg.data.path) / "manifest.json").read_text())
        shards = [[rec.get("index"), {name: f.get("sha256") for name, f in sorted(rec.get("files", {}).items())}]
                  for rec in man.get("shards", [])]
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    blob = json.dumps({"seed": man.get("seed"), "config": man.get("config"), "shards": shards}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


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
    """:func:`~omnirl_core.workbook.atomic.atomic_write` of ``write(temporary path)``."""
    def guarded(tmp: Path) -> None:
        try:
            write(str(tmp))
        except RuntimeError as exc:  # torch.save reports a failed write (a full disk) as a RuntimeError
            raise OSError(errno.EIO, f"writing failed ({' '.join(str(exc).split())[:120]})", str(path)) from exc

    atomic_write(path, guarded)


def save_checkpoint(out_dir: Path, *, step: int, model, optimizer, data_states: list[dict], cfg: TrainConfig,
                    counters: dict, last_loss: float | None = None) -> Path:
    """Write ``checkpoint.pt`` (everything for an exact resume) and ``model.safetensors`` (weights), atomically.

    ``data_states`` holds each process's data position (``data.state_dict()``), in rank order."""
    raw = model.module if hasattr(model, "module") else model
    sd = {k: v.detach().cpu().contiguous() for k, v in raw.state_dict().items()}
    bad = non_finite(sd)
    if bad:
        raise ValueError(f"refusing to write a checkpoint with non-finite weights ({', '.join(bad[:3])})")
    opt_state = optimizer.state_dict()
    digest = tensor_digest(sd)
    ckpt = {
        "format": CKPT_FORMAT,
        "version": CKPT_VERSION,
        "step": step,  # iterations completed = the next iteration to run
        "model": sd,
        "optimizer": opt_state,
        "checksums": {"model": digest, "optimizer": tensor_digest(_optimizer_tensors(opt_state))},
        "scheduler": {"kind": "warmup_inv_sqrt", "step": step, "lr": lr_at(max(step - 1, 0), cfg.optim)},
        "rng": _rng_state(),
        "data": data_states,  # one per process
        "counters": dict(counters),
        "model_config": config_to_dict(cfg.model),
        "train_config": json.dumps(config_to_dict(cfg)),
        "data_fingerprint": data_fingerprint(cfg),
        "last_loss": float("nan") if last_loss is None else float(last_loss),
    }
    path = Path(out_dir) / CHECKPOINT
    _atomic(path, lambda p: torch.save(ckpt, p))
    write_weights(Path(out_dir), sd, step=step, model_config=config_to_dict(cfg.model), digest=digest)
    return path


def _weights_bytes(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A ``.safetensors`` file's bytes with its metadata in sorted key order: safetensors writes the metadata
    from a hash map whose order changes from process to process, so the same weights would give other bytes
    (another sha256) in every run."""
    from safetensors.torch import save

    raw = save(dict(tensors), metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the tensor data stays 8-byte aligned, as safetensors writes it
    return len(text).to_bytes(8, "little") + text + raw[8 + n:]


def write_weights(out_dir: Path, sd: Mapping[str, torch.Tensor], *, step: int, model_config: dict,
                  digest: str | None = None) -> Path:
    """Write ``model.safetensors`` (the weights, their iteration, model configuration and checksum) atomically;
    the same weights give the same bytes."""
    digest = tensor_digest(sd) if digest is None else digest
    meta = {"step": str(step), "model_config": json.dumps(model_config, sort_keys=True), DIGEST_KEY: digest}
    path = Path(out_dir) / WEIGHTS
    data = _weights_bytes(sd, meta)
    _atomic(path, lambda p: Path(p).write_bytes(data))
    return path


def weights_disagreement(out_dir: Path, ckpt: dict) -> str | None:
    """None when ``model.safetensors`` in ``out_dir`` holds the weights of ``ckpt`` (the loaded checkpoint.pt of
    that folder): the same iteration and the same tensors (checksum). Else why not, in words."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(out_dir) / WEIGHTS
    if not path.is_file():
        return "it is missing"
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        weights = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for a damaged file
        return f"it is unreadable ({type(exc).__name__})"
    if meta.get("step") != str(ckpt["step"]):
        return f"it holds the weights of iteration {meta.get('step', '<not recorded>')}"
    if tensor_digest(weights) != tensor_digest(ckpt["model"]):
        return "its weights differ from the checkpoint's"
    return None


def sync_weights(out_dir: Path, ckpt: dict, cfg: TrainConfig) -> str | None:
    """Make ``model.safetensors`` agree with the checkpoint (a write that failed or was cut between the two
    files leaves it older); returns what was wrong with it when it was rewritten, else None."""
    wrong = weights_disagreement(out_dir, ckpt)
    if wrong is not None:
        write_weights(Path(out_dir), ckpt["model"], step=int(ckpt["step"]), model_config=config_to_dict(cfg.model))
    return wrong


def _tensor_names(names: list[str], first: int = 3) -> str:
    shown = ", ".join(names[:first])
    return shown + (f" and {len(names) - first} more" if len(names) > first else "")


def load_model_weights(model: torch.nn.Module, weights: Mapping[str, torch.Tensor], path: Path) -> None:
    """``model.load_state_dict(weights)``, with a short :class:`CheckpointMismatchError` naming ``path``, the
    number of tensors that do not fit and the first few of them (torch's own error lists every tensor)."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in weights)
    extra = sorted(k for k in weights if k not in own)
    shapes = sorted(k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape))
    if missing or extra or shapes:
        parts = [f"{len(v)} {what} ({_tensor_names(v)})" for what, v in
                 (("of another shape", shapes), ("missing", missing), ("unknown to the model", extra)) if v]
        raise CheckpointMismatchError(
            f"{path}: its weights do not fit the model of its recorded configuration: {'; '.join(parts)} of "
            f"{len(own)} tensors; the file was altered or written by another version: use another output folder "
            "to start afresh")
    model.load_state_dict(dict(weights))


def load_checkpoint(path: str | os.PathLike, cfg: TrainConfig | None = None, *, allow_unverified: bool = False,
                    allow_changes: bool = False) -> dict:
    """Read a training checkpoint (``weights_only=True``) and verify it: its checksums (a checkpoint without them,
    version 1, is refused unless ``allow_unverified``) and finite weights.

    With ``cfg`` (a resume), check that it was written with the same configuration: any model difference raises
    :class:`CheckpointMismatchError` naming every differing key; so does any other difference that would make the
    resume inexact (seed, learning rate, batch size, data, ...; not :data:`RESUMABLE_CHANGES`) unless
    ``allow_changes``, in which case they are listed in ``ckpt["changes"]``."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointMismatchError(f"{path}: not a readable training checkpoint ({type(exc).__name__}: "
                                      f"{' '.join(str(exc).split())[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise CheckpointMismatchError(f"{path}: not an OmniRL training checkpoint")
    sums = ckpt.get("checksums")
    if not isinstance(sums, dict):
        _unverified(path, allow_unverified)
    elif (tensor_digest(ckpt["model"]) != sums.get("model")
          or tensor_digest(_optimizer_tensors(ckpt["optimizer"])) != sums.get("optimizer")):
        raise CheckpointMismatchError(f"{path}: fails its checksum (the weights or optimiser state differ from what "
                                      "was written): the file was altered or damaged; start afresh in another folder")
    bad = non_finite(ckpt["model"])
    if bad:
        raise CheckpointMismatchError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values")
    ckpt["changes"] = []
    if cfg is not None:
        diffs = [f"model.{d}" for d in M.config_differences(ckpt["model_config"], cfg.model)]
        if diffs:
            raise CheckpointMismatchError(
                f"{path} was written with another model configuration:\n  " + "\n  ".join(diffs)
                + "\nUse the same model settings, or another output folder to start afresh."
            )
        changes = train_config_differences(ckpt.get("train_config") or "{}", cfg)
        old_data, new_data = ckpt.get("data_fingerprint"), data_fingerprint(cfg)
        if old_data and new_data and old_data != new_data:
            changes.append(f"data: the dataset at {cfg.data.path} is not the one the checkpoint was trained on "
                           f"(synthesised again since? manifest fingerprint {old_data[:12]}, now {new_data[:12]})")
        if changes and not allow_changes:
            raise CheckpointMismatchError(
                f"{path} was written with other settings, and resuming with them would not continue the run "
                "exactly:\n  " + "\n  ".join(changes) + "\nUse the same settings, another output folder to start "
                "afresh, or allow_changes=True (command line: --allow-changes) to resume with them anyway.")
        ckpt["changes"] = changes
    return ckpt


def init_weights_from(model: torch.nn.Module, path: str | os.PathLike, *,
                      allow_unverified: bool = False) -> dict[str, list[str]]:
    """Copy into ``model`` every tensor of the checkpoint at ``path`` with the same name and shape.

    The file is verified first (:func:`read_weights`: checksum, finite values). Returns the names ``loaded`` and
    those kept ``fresh`` (absent there or of another shape), and the ``differences`` of the model configuration
    recorded in the file from ``model.cfg`` (as :func:`~omnirl_core.model.config_differences`). Raises
    ``FileNotFoundError`` for a missing file and :class:`CheckpointMismatchError` for one that is unreadable,
    altered or non-finite, or when nothing fits (another architecture altogether)."""
    from ..workbook import repo_path

    path = repo_path(path)
    if path.is_dir():  # a model folder (models/<name>, a run folder), as the evaluation command line takes one
        if not (path / WEIGHTS).is_file():
            raise FileNotFoundError(f"init_from: {path} is a folder without {WEIGHTS}; name a weights file or a model "
                                    "folder holding one")
        path = path / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"init_from: {path} does not exist")
    try:
        source, stored = read_weights(path, allow_unverified=allow_unverified)
    except CheckpointMismatchError as exc:
        raise CheckpointMismatchError(f"init_from: {exc}") from None
    own = model.state_dict()
    loaded = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    differences = M.config_differences(stored, model.cfg) if isinstance(stored, dict) and hasattr(model, "cfg") else []
    if not loaded:
        raise CheckpointMismatchError(f"init_from: no tensor of {path} fits this model (another architecture"
                                      + (f": {'; '.join(differences)})" if differences else "?)"))
    model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in loaded.items()}})
    return {"loaded": sorted(loaded), "fresh": sorted(k for k in own if k not in loaded), "differences": differences}


def describe_init(path, kept: dict[str, list[str]]) -> str:
    """One line on what :func:`init_weights_from` did: counts, the configuration fields in which the file's model
    differs, and the first few tensors kept fresh."""
    loaded, fresh = kept["loaded"], kept["fresh"]
    line = f"init_from {path}: {len(loaded)} of {len(loaded) + len(fresh)} tensors loaded, {len(fresh)} kept fresh"
    if kept.get("differences"):
        line += f" (the file's model differs: {'; '.join(kept['differences'])})"
    return line + (f": {_tensor_names(fresh)}" if fresh else "")
