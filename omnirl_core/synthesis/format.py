"""The on-disk format of a synthesised dataset, shared by the writer and the reader: field names, tags, schema
version, shard folders with per-file sha256, and the manifest.

A dataset folder holds ``manifest.json`` and one folder per shard (``shard_000000/``: one ``.npy`` per field and
``shard.json`` with each file's dtype, shape, size and sha256). Files are written to temporary names and
renamed into place.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..workbook.atomic import write_text_atomic
from ..workbook.errors import InputError
from .config import DatasetConfig
from .registry import TAG_MODEL_BASED, TAG_Q, TAG_RANDOM, TAG_UNKNOWN  # noqa: F401  (re-exported with TAG_NAMES)

SCHEMA_VERSION = 4  # 2: per-sequence learner hyperparameters (learner_params); 3: their q_horizon column;
# 4: named random streams (the behaviour registry); one process
READABLE_SCHEMA_VERSIONS = (3, 4)  # the same files and fields: a schema-3 dataset is read, never resumed
FORMAT = "omnirl-dpd-dataset"
LABEL_MASKED = 255
BOUNDARY = 255  # behaviour id of boundary steps
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
    "q_horizon",
)
"""Columns of the per-sequence ``learner_params`` array: for the Q-learner (``q_*``) and the model-based learner
(``mb_*``): 1.0 in the noisy branch (else 0.0), discount, alpha (Q) or bonus scale c (model-based), initial
random-action probability and its decay per step (both 0 in the noise-free branch); last, the Q-learner's
horizon H of its step size and stiffness."""
_LP_Q, _LP_MB, _LP_H = 0, 5, 10  # first column of each learner; the Q-learner's horizon


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
    # named .tmp_*: a dataset folder's own cleanup (the synthesis writer) removes such leftovers
    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True) + "\n",
                      tmp=Path(path).with_name(f".tmp_{Path(path).name}.{os.getpid()}"))


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


class SynthesisError(InputError):
    """A dataset folder that cannot be (re)used or written: other config, corrupt manifest, another synthesis
    writing it, more than the disk or the cores can take."""


class DatasetError(InputError):
    """A dataset that cannot be read as recorded: missing, truncated or corrupt files, wrong dtype or shape, a
    manifest that contradicts itself or its shards."""


_MANIFEST_KEYS = {"format": str, "schema_version": int, "seed": int, "config": dict, "n_shards": int,
                  "n_sequences": int, "seq_len": int, "complete": bool, "shards": list}
_RECORD_KEYS = {"index": int, "dir": str, "n_sequences": int, "ns": int, "files": dict}
_FILE_KEYS = {"sha256": str, "dtype": str, "shape": list, "bytes": int}


def _typed(obj: dict, keys: dict[str, type], where: str) -> None:
    for key, tp in keys.items():
        if key not in obj:
            raise DatasetError(f"{where}: missing key '{key}'")
        value = obj[key]
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise DatasetError(f"{where}: '{key}' must be {tp.__name__}, got {type(value).__name__} {value!r:.60}")


def expected_shapes(n: int, seq_len: int) -> dict[str, list[int]]:
    """The shape of every file of a shard of ``n`` sequences of ``seq_len`` steps (the schema)."""
    shapes = {f: [n, seq_len] for f in STEP_FIELDS}
    shapes.update({"learner_params": [n, len(LEARNER_PARAMS)], "ns": [n], "na": [n], "task_seed": [n],
                   "task_index": [n]})
    return shapes


def check_manifest(man: Any, path: Path) -> dict:
    """``man`` (the parsed ``manifest.json`` at ``path``) checked against itself: keys and types, format and schema
    version, the recorded configuration, shard records unique and named by their index, each shard's sequence
    count and file shapes as the configuration and the schema give them, and ``complete`` true exactly when
    every shard is listed and they hold ``n_sequences`` sequences. Raises :class:`DatasetError` naming the
    first problem; returns ``man``."""
    from ..workbook.config import load_config

    if not isinstance(man, dict):
        raise DatasetError(f"{path}: not a dataset manifest (a JSON object), got {type(man).__name__}")
    if man.get("format") != FORMAT:
        raise DatasetError(f"{path}: format {man.get('format')!r}, expected {FORMAT!r}")
    if man.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
        raise DatasetError(f"{path}: schema version {man.get('schema_version')}, this code reads "
                           f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}")
    _typed(man, _MANIFEST_KEYS, str(path))
    recorded = copy.deepcopy(man["config"])
    weights = (recorded.get("mixture") or {}).get("weights")
    if isinstance(weights, dict):  # reading needs no behaviour's code: a plug-in's name need not be registered here
        weights.clear()
    try:
        cfg = load_config(DatasetConfig, recorded)
    except InputError as exc:
        raise DatasetError(f"{path}: its recorded dataset configuration is invalid: {exc}") from None
    n, per, T = cfg.n_sequences, cfg.sequences_per_shard, cfg.seq_len
    plan = [min(per, n - k * per) for k in range((n + per - 1) // per)]
    for key, want in (("seq_len", T), ("n_sequences", n), ("n_shards", len(plan)), ("seed", cfg.seed)):
        if man[key] != want:
            raise DatasetError(f"{path}: '{key}' is {man[key]}, but its recorded configuration gives {want}")
    seen: dict[int, int] = {}
    dirs: set[str] = set()
    for pos, rec in enumerate(man["shards"]):
        where = f"{path}: shards[{pos}]"
        if not isinstance(rec, dict):
            raise DatasetError(f"{where}: not a shard record (a JSON object)")
        _typed(rec, _RECORD_KEYS, where)
        k = rec["index"]
        if not 0 <= k < len(plan):
            raise DatasetError(f"{where}: index {k} is out of range: the dataset has shards 0..{len(plan) - 1}")
        if k in seen:
            raise DatasetError(f"{where}: shard {k} is listed twice (also shards[{seen[k]}])")
        seen[k] = pos
        if rec["dir"] != shard_name(k) or rec["dir"] in dirs:
            raise DatasetError(f"{where}: folder {rec['dir']!r}, expected {shard_name(k)!r} for shard {k}")
        dirs.add(rec["dir"])
        if rec["n_sequences"] != plan[k]:
            raise DatasetError(f"{where}: {rec['n_sequences']} sequences, the configuration gives shard {k} "
                               f"{plan[k]}")
        shapes = expected_shapes(plan[k], T)
        if set(rec["files"]) != set(shapes):
            raise DatasetError(f"{where}: files {sorted(rec['files'])}, the schema has {sorted(shapes)}")
        for name, info in rec["files"].items():
            if not isinstance(info, dict):
                raise DatasetError(f"{where}: files.{name} is not a file record (a JSON object)")
            _typed(info, _FILE_KEYS, f"{where}: files.{name}")
            if info["shape"] != shapes[name]:
                raise DatasetError(f"{where}: {name}.npy has shape {info['shape']}, the schema gives {shapes[name]} "
                                   f"({plan[k]} sequences of {T} steps)")
    full = len(seen) == len(plan)
    if man["complete"] != full:
        state = "complete" if man["complete"] else "incomplete"
        raise DatasetError(f"{path}: marked {state}, but it lists {len(seen)} of {len(plan)} shards")
    return man


def load_manifest(root: str | Path) -> dict:
    """The manifest of a complete dataset folder, checked against itself (:func:`check_manifest`)."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise DatasetError(f"{path}: missing (not a synthesised dataset folder)")
    try:
        man = json.loads(path.read_text())
    except ValueError as exc:
        raise DatasetError(f"{path}: unreadable JSON ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc})") from None
    if isinstance(man, dict) and man.get("complete") is False and isinstance(man.get("shards"), list):
        check_manifest(man, path)
        raise DatasetError(f"{path}: the dataset is incomplete ({len(man['shards'])} of {man['n_shards']} shards); "
                           "re-run the synthesis to finish it")
    return check_manifest(man, path)


def _check_file(path: Path, info: dict, verify: bool) -> None:
    if not path.is_file():
        raise DatasetError(f"{path}: missing file")
    size = path.stat().st_size
    if size != info["bytes"]:
        raise DatasetError(f"{path}: truncated or altered: {size} bytes, expected {info['bytes']}")
    if verify and _sha256(path) != info["sha256"]:
        raise DatasetError(f"{path}: checksum mismatch (sha256 differs from the manifest)")


def load_shard(root: str | Path, record: dict, verify: bool = True, mmap: bool = True) -> dict[str, np.ndarray]:
    """Arrays of one shard (memory-mapped), checked against its manifest record (with ``verify``: also its own
    ``shard.json`` and every file's sha256)."""
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
    if verify:
        meta = folder / "shard.json"
        try:
            own = json.loads(meta.read_text())
        except FileNotFoundError:
            raise DatasetError(f"{meta}: missing file") from None
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{meta}: unreadable ({exc})") from None
        if own != record:
            raise DatasetError(f"{meta}: disagrees with the manifest's record of shard {record.get('index')}")
    return out
