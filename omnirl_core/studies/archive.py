"""Finished (variant, seed) results as small files in a folder that is kept (committed) when run folders are not.

A study's run folder holds datasets, checkpoints and models (megabytes, rebuilt at will); a study that runs over
several working days needs its *results* to outlive that folder. With ``results_dir`` set every finished
(variant, seed) is also written there as ``<study>/<variant>.seed<s>.json`` (the result with its per-task
scores, the further suites, both configurations, the code version and the date it was measured) and
``<study>/<variant>.seed<s>.metrics.csv`` (the training curve), a few kilobytes each.

A result found there is reused instead of retrained, found by its *archive key*: the hash of everything that
decides the result except the code version, with each configuration by its non-default values
(:func:`result_key`), so a result survives edits of the package between working days, and a configuration
field added later at its default; the record names the code version it was measured under. To measure a variant
again under today's code, delete its files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["archive_path", "result_key", "find_archived", "save_archived", "restore_archived"]


def non_default(values: dict, defaults: dict) -> dict:
    """The entries of ``values`` (nested dicts compared key by key) that differ from ``defaults`` or are not in it."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            if sub := non_default(value, defaults[key]):
                out[key] = sub
        elif key not in defaults or value != defaults[key]:
            out[key] = value
    return out


def result_key(ident: dict, defaults: dict[str, dict]) -> str:
    """Archive key of a run identity (its ``dataset``, ``training``, ``test``, ``schema`` and ``code``): the hash
    without ``code``, each of ``defaults``' parts by its non-default values, so that neither an edit of the code
    nor a configuration field added later (at its default) loses a kept result."""
    kept = {k: (non_default(v, defaults[k]) if k in defaults else v) for k, v in ident.items() if k != "code"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def archive_path(results_dir: str | Path, study: str, variant: str, seed: int) -> Path:
    return Path(results_dir) / study / f"{variant}.seed{seed}.json"


def find_archived(results_dir: str | Path, key: str) -> dict | None:
    """The archived record whose ``archive_key`` is ``key`` (any study's: equal runs are shared), else None."""
    for path in sorted(Path(results_dir).glob("*/*.seed*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):  # a file being written by another process: not finished
            continue
        if record.get("archive_key") == key:
            return record
    return None


def save_archived(results_dir: str | Path, study: str, variant: str, seed: int, record: dict,
                  metrics: Path | None = None) -> Path:
    """Write ``record`` (atomically, only when it changed) and copy the run's ``metrics.csv`` beside it."""
    from ..synthesis import write_json_atomic

    path = archive_path(results_dir, study, variant, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        same = json.loads(path.read_text()) == json.loads(json.dumps(record))
    except (OSError, json.JSONDecodeError):
        same = False
    if not same:
        write_json_atomic(path, record)
    if metrics is not None and metrics.is_file():
        target = path.with_suffix(".metrics.csv")
        tmp = target.with_suffix(".csv.tmp")
        shutil.copyfile(metrics, tmp)
        tmp.replace(target)
    return path


def restore_archived(record: dict, folder: Path, ident_of: Callable[[str], dict]) -> None:
    """Put an archived result back into a run folder (``gain.json`` and ``suites/<suite>.json``), as if measured
    there. A suite result is restored when it was measured under today's settings (``ident_of(suite)``), its
    code version aside (the archive's rule)."""
    from ..synthesis import write_json_atomic

    folder.mkdir(parents=True, exist_ok=True)
    for name, saved in (record.get("suite_files") or {}).items():
        now = ident_of(name)
        if {k: v for k, v in saved["test"].items() if k != "code"} == {k: v for k, v in now.items() if k != "code"}:
            (folder / "suites").mkdir(exist_ok=True)
            write_json_atomic(folder / "suites" / f"{name}.json", {"test": now, "result": saved["result"]})
    write_json_atomic(folder / "gain.json", {k: v for k, v in record.items() if k not in ("suite_files", "suites")})
