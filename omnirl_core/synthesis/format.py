"""The on-disk format of a synthesised dataset, shared by the writer and the reader: field names, tags, schema
version, shard folders with per-file sha256, and the manifest.

A dataset folder holds ``manifest.json`` and one folder per shard (``shard_000000/``: one ``.npy`` per field and
``shard.json`` with each file's dtype, shape, size and sha256). Files are written to temporary names and
renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .config import DatasetConfig

SCHEMA_VERSION = 2  # 2: per-sequence learner hyperparameters (learner_params)
FORMAT = "omnirl-dpd-dataset"
LABEL_MASKED = 255
BOUNDARY = 255  # behaviour id of boundary steps
TAG_UNKNOWN = 7
TAG_RANDOM = 6
TAG_MODEL_BASED = 4
TAG_Q = 5
TAG_NAMES = (
    "oracle g=0",
    "oracle g=0.5",
    "oracle g=0.93",
    "oracle g=0.994",
    "model-based",
    "Q-learning",
    "random",
    "unknown",
)
STEP_FIELDS = ("obs", "tag", "action", "reward", "label", "behaviour")
SEQ_FIELDS = ("learner_params", "ns", "na", "task_seed", "task_index")
LEARNER_PARAMS = (
    "q_noisy",
    "q_gamma",
    "q_alpha",
    "q_noise_start",
    "q_noise_decay",
    "mb_noisy",
    "mb_gamma",
    "mb_c",
    "mb_noise_start",
    "mb_noise_decay",
)
"""Columns of the per-sequence ``learner_params`` array: for the Q-learner (``q_*``) and the model-based learner
(``mb_*``): 1.0 in the noisy branch (else 0.0), discount, alpha (Q) or bonus scale c (model-based), initial
random-action probability and its decay per step (both 0 in the noise-free branch)."""
_LP_Q, _LP_MB = 0, 5  # first column of each learner


def _dtype_obs(cfg: DatasetConfig) -> np.dtype:
    top = cfg.ns_max if cfg.ns_max is not None else cfg.ns
    return np.dtype(np.uint8) if top <= 256 else np.dtype(np.uint16)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_name(k: int) -> str:
    return f"shard_{k:06d}"


def write_json_atomic(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".tmp_{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def verify_shard_dir(path: Path, record: dict | None = None) -> str | None:
    """None when the shard folder is complete and every file matches its checksum, else what is wrong."""
    path = Path(path)
    meta = path / "shard.json"
    if not meta.is_file():
        return f"{meta} is missing"
    try:
        own = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        return f"{meta} is unreadable: {exc}"
    if record is not None and own != record:
        return f"{meta} disagrees with the manifest"
    for name, info in own.get("files", {}).items():
        f = path / f"{name}.npy"
        if not f.is_file():
            return f"{f} is missing"
        size = f.stat().st_size
        if size != info["bytes"]:
            return f"{f} is truncated or grown: {size} bytes, expected {info['bytes']}"
        if _sha256(f) != info["sha256"]:
            return f"{f} fails its checksum (sha256 mismatch)"
    return None


_INT_FIELDS = ("obs", "tag", "action", "label")


class DatasetError(ValueError):
    """A dataset that cannot be read as recorded: missing, truncated or corrupt files, wrong dtype or shape."""


def load_manifest(root: str | Path) -> dict:
    """The manifest of a dataset folder (checked: format, schema version, completeness)."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise DatasetError(f"{path}: missing (not a synthesised dataset folder)")
    try:
        man = json.loads(path.read_text())
    except ValueError as exc:
        raise DatasetError(f"{path}: unreadable JSON ({exc})") from None
    if man.get("format") != FORMAT:
        raise DatasetError(f"{path}: format {man.get('format')!r}, expected {FORMAT!r}")
    if man.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"{path}: schema version {man.get('schema_version')}, this code reads {SCHEMA_VERSION}")
    if not man.get("complete"):
        raise DatasetError(f"{path}: the dataset is incomplete ({len(man['shards'])} of {man['n_shards']} shards); "
                           "re-run the synthesis to finish it")
    return man


def _check_file(path: Path, info: dict, verify: bool) -> None:
    if not path.is_file():
        raise DatasetError(f"{path}: missing file")
    size = path.stat().st_size
    if size != info["bytes"]:
        raise DatasetError(f"{path}: truncated or altered: {size} bytes, expected {info['bytes']}")
    if verify and _sha256(path) != info["sha256"]:
        raise DatasetError(f"{path}: checksum mismatch (sha256 differs from the manifest)")


def load_shard(root: str | Path, record: dict, verify: bool = True, mmap: bool = True) -> dict[str, np.ndarray]:
    """Arrays of one shard (memory-mapped), checked against its manifest record."""
    folder = Path(root) / record["dir"]
    out = {}
    for name, info in record["files"].items():
        path = folder / f"{name}.npy"
        _check_file(path, info, verify)
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DatasetError(f"{path}: unreadable .npy ({exc})") from None
        if arr.dtype.str != info["dtype"] or list(arr.shape) != info["shape"]:
            raise DatasetError(f"{path}: wrong dtype/shape {arr.dtype.str} {list(arr.shape)}, "
                               f"expected {info['dtype']} {info['shape']}")
        out[name] = arr
    return out
