"""Writing a dataset: shards computed by worker processes, written atomically, verified and resumed; the
manifest rewritten after every shard.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..workbook.config import load_config
from ..workbook.locks import LOCK_FILE, folder_lock
from ..workbook.orphans import die_with_parent
from .behaviours import BEHAVIOURS
from .config import DatasetConfig
from .engine_numpy import synthesize_batch
from .format import (
    FORMAT,
    LABEL_MASKED,
    LEARNER_PARAMS,
    SCHEMA_VERSION,
    STEP_FIELDS,
    TAG_NAMES,
    SynthesisError,
    _sha256,
    shard_name,
    verify_shard_dir,
    write_json_atomic,
)
from .preflight import check_fits
from .shards import _data_identity, dataset_tasks, shard_plan, shard_tasks


def writer_lock(root: Path, name: str = LOCK_FILE):
    """Hold the dataset folder's writer lock (``root/.lock``, or a part's own lock file ``name``) for the block:
    :func:`omnirl_core.workbook.locks.folder_lock` (the lock every writer of the package uses). A second writer of
    the same folder is refused at once with :class:`SynthesisError` naming the holder."""
    return folder_lock(root, name, busy="another synthesis is writing this dataset folder", error=SynthesisError)


def synthesize_shard(cfg: DatasetConfig, k: int) -> dict[str, np.ndarray]:
    """All arrays of shard ``k`` (a pure function of the config, its seed and k)."""
    ns, seeds, idx, sim_ss = dataset_tasks(cfg, k)
    n = seeds.size
    tasks = shard_tasks(cfg, k)
    parts = []
    batch_ss = sim_ss.spawn((n + cfg.batch_size - 1) // cfg.batch_size)
    for j, start in enumerate(range(0, n, cfg.batch_size)):
        parts.append(synthesize_batch(tasks[start:start + cfg.batch_size], cfg, batch_ss[j]))
    data = {f: np.concatenate([p[f] for p in parts]) for f in (*STEP_FIELDS, "learner_params")}
    data["ns"] = np.full(n, ns, dtype=np.uint16)
    data["na"] = np.full(n, cfg.na, dtype=np.uint8)
    data["task_seed"] = seeds.astype(np.uint64)
    data["task_index"] = idx.astype(np.uint32)
    return data


def _write_shard(root: Path, k: int, data: dict[str, np.ndarray]) -> dict:
    """Write shard k atomically (temp folder, then rename); returns its record for the manifest."""
    final = root / shard_name(k)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp_{shard_name(k)}_", dir=root))
    try:
        files = {}
        for name, arr in data.items():
            path = tmp / f"{name}.npy"
            with open(path, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            files[name] = {"sha256": _sha256(path), "dtype": arr.dtype.str, "shape": list(arr.shape),
                           "bytes": path.stat().st_size}
        record = {"index": k, "dir": final.name, "n_sequences": int(data["obs"].shape[0]),
                  "ns": int(data["ns"][0]) if data["ns"].size else 0, "files": files,
                  "learner_params": list(LEARNER_PARAMS)}
        write_json_atomic(tmp / "shard.json", record)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if verify_shard_dir(final) is None:  # someone else completed the same (deterministic) shard
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
        return record
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _manifest(cfg: DatasetConfig, records: dict[int, dict]) -> dict:
    plan = shard_plan(cfg)
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "seed": cfg.seed,
        "config": _data_identity(cfg),
        "n_shards": len(plan),
        "n_sequences": cfg.n_sequences,
        "seq_len": cfg.seq_len,
        "label_masked": LABEL_MASKED,
        "tag_names": list(TAG_NAMES),
        "behaviours": list(BEHAVIOURS),
        "learner_params": list(LEARNER_PARAMS),
        "complete": len(records) == len(plan),
        "shards": [records[k] for k in sorted(records)],
    }


def _worker(args: tuple[dict, str, int]) -> tuple[int, dict, float]:
    from threadpoolctl import threadpool_limits

    cfg_dict, root, k = args
    cfg = load_config(DatasetConfig, cfg_dict)
    t0 = time.perf_counter()
    # One BLAS thread per worker: the oracle solves and task sampling are many small systems, and a
    # multi-threaded BLAS on shared cores slows them down by an order of magnitude.
    with threadpool_limits(limits=1, user_api="blas"):
        data = synthesize_shard(cfg, k)
    return k, _write_shard(Path(root), k, data), time.perf_counter() - t0


def synthesize(cfg: DatasetConfig, out_dir: str | os.PathLike, workers: int = 1, progress: bool = True,
               max_shards: int | None = None, part: tuple[int, int] | None = None, force: bool = False) -> dict:
    """Synthesise (or resume) the dataset ``cfg`` into ``out_dir``; returns the manifest.

    Completed shards found on disk are verified (sha256) and kept; a corrupt one is regenerated; leftover
    temporary files are removed. ``max_shards`` stops after that many new shards (for tests and demos). One writer
    per folder: a second one, while the first runs, is refused with :class:`SynthesisError` (:func:`writer_lock`).

    ``part=(rank, world)``: several nodes share one dataset folder, each writing the shards ``k`` with
    ``k % world == rank`` (shards are pure functions of (config, k), so the split changes no byte) under its own
    lock, leaving ``manifest.json`` alone; the returned manifest covers its shards only. One run without ``part``
    afterwards verifies every shard and writes the complete manifest.

    Before any shard, what is left to write must fit the free disk and ``workers`` the machine's cores
    (:func:`~.preflight.check_fits`; ``force`` starts anyway).
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if part is not None and not (len(part) == 2 and 0 <= part[0] < part[1]):
        raise ValueError(f"part must be (rank, world) with 0 <= rank < world, got {part!r}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    lock = LOCK_FILE if part is None else f"{LOCK_FILE}.part{part[0]}of{part[1]}"
    with writer_lock(root, lock):
        return _synthesize_locked(cfg, root, workers, progress, max_shards, part, force)


def _synthesize_locked(cfg: DatasetConfig, root: Path, workers: int, progress: bool, max_shards: int | None,
                       part: tuple[int, int] | None = None, force: bool = False) -> dict:
    manifest_path = root / "manifest.json"
    identity = _data_identity(cfg)
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except ValueError as exc:
            raise SynthesisError(f"{manifest_path} is unreadable: {exc}") from None
        # a manifest without a shard (a synthesis that stopped before its first one) holds nothing to lose
        if (old.get("format") != FORMAT or old.get("config") != identity) and old.get("shards", True):
            raise SynthesisError(f"{root} holds a dataset of another configuration; use another folder")
        if old.get("schema_version") != SCHEMA_VERSION:
            raise SynthesisError(f"{root} holds a dataset of schema version {old.get('schema_version')}, this code "
                                 f"writes {SCHEMA_VERSION}; use another folder")
    plan = shard_plan(cfg)
    mine = [k for k in range(len(plan)) if part is None or k % part[1] == part[0]]
    # a part removes only its own shards' leftovers: the other parts may be writing theirs right now
    patterns = [".tmp_*"] if part is None else [f".tmp_{shard_name(k)}_*" for k in mine]
    for leftover in (p for pattern in patterns for p in root.glob(pattern)):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    records: dict[int, dict] = {}
    for k in mine:
        d = root / shard_name(k)
        if d.exists():
            problem = verify_shard_dir(d)
            if problem is None:
                records[k] = json.loads((d / "shard.json").read_text())
            else:
                print(f"regenerating {d.name}: {problem}", file=sys.stderr)
                shutil.rmtree(d)
    todo = [k for k in mine if k not in records]
    if max_shards is not None:
        todo = todo[:max_shards]
    check_fits(cfg, root, sum(plan[k] for k in todo), min(workers, max(len(todo), 1)), force=force)
    write_manifest = part is None  # parts leave the manifest to the run that joins them
    if write_manifest:
        write_json_atomic(manifest_path, _manifest(cfg, records))
    jobs = [(identity, str(root), k) for k in todo]
    bar = None
    if progress and jobs:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(plan[k] for k in todo) * cfg.seq_len, unit="step", unit_scale=True,
                   desc=f"synthesis {root.name}")
    try:
        if workers <= 1 or len(jobs) <= 1:
            results: Iterable = map(_worker, jobs)
            pool = None
        else:
            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            pool = ctx.Pool(min(workers, len(jobs)), initializer=die_with_parent, initargs=(os.getpid(),))
            results = pool.imap_unordered(_worker, jobs)
        for k, record, _ in results:
            records[k] = record
            if write_manifest:
                write_json_atomic(manifest_path, _manifest(cfg, records))
            if bar is not None:
                bar.update(plan[k] * cfg.seq_len)
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        if bar is not None:
            bar.close()
    return _manifest(cfg, records)
