"""A synthesis that cannot fit is refused before any work: a dataset larger than the free disk of its folder, or
workers far beyond the machine's cores; one line with the numbers, and ``force`` starts anyway."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from omnirl_core.synthesis import DatasetConfig, SynthesisError, check_fits, dataset_bytes, synthesize
from omnirl_core.synthesis import preflight as pf
from omnirl_core.workbook import load_config

ROOT = Path(__file__).resolve().parents[1]
Usage = namedtuple("Usage", "total used free")


def _cfg() -> DatasetConfig:
    return load_config(DatasetConfig, {"ns": 8, "na": 3, "seq_len": 64, "n_sequences": 8, "sequences_per_shard": 4,
                                       "batch_size": 4})


def test_dataset_bytes_is_what_the_shards_take(tmp_path):
    cfg = _cfg()
    synthesize(cfg, tmp_path, progress=False)
    files = list(tmp_path.glob("shard_*/*.npy"))
    on_disk = sum(f.stat().st_size for f in files)
    assert 0 <= on_disk - dataset_bytes(cfg) <= 128 * len(files)  # each .npy file's header aside
    assert dataset_bytes(cfg, 2) * 4 == dataset_bytes(cfg)


def test_a_dataset_larger_than_the_free_disk_is_refused_before_any_shard(tmp_path, monkeypatch):
    cfg = _cfg()
    monkeypatch.setattr(pf.shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(SynthesisError, match=r"8 sequences still to write need 0\.0 GB and the disk has 0\.0 GB free"):
        synthesize(cfg, tmp_path / "d", progress=False)
    assert not list((tmp_path / "d").glob("shard_*"))  # nothing started
    man = synthesize(cfg, tmp_path / "d", progress=False, force=True)  # the explicit override
    assert man["complete"]
    assert synthesize(cfg, tmp_path / "d", progress=False)["complete"]  # nothing left to write: nothing to refuse


def test_workers_far_beyond_the_cores_are_refused():
    cfg = _cfg()
    with pytest.raises(SynthesisError, match="workers 16 on a machine with 2 cores"):
        check_fits(cfg, ".", 8, 16, cores=2)
    check_fits(cfg, ".", 8, 4, cores=2)  # two per core: allowed
    check_fits(cfg, ".", 8, 16, cores=2, force=True)


@pytest.mark.skipif((os.cpu_count() or 1) > 8, reason="the paper's 16 workers are not too many here")
def test_the_paper_synthesis_on_a_small_machine_stops_in_one_line_before_any_work(tmp_path):
    res = subprocess.run([sys.executable, "-m", "omnirl_core.synthesis", "params/paper/02_synthesis.yaml", "--out",
                          str(tmp_path), "--only", "d_small"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()
    assert len(last) == 1 and ("GB free" in last[0] or "workers 16 on a machine" in last[0]), res.stderr
    assert not list(tmp_path.rglob("shard_*"))
