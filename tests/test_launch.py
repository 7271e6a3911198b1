"""Notebook 03's launcher: torchrun with several (gloo) processes from Python, progress from rank 0's metrics, the
failing rank's own error on failure, exact resume after a kill, and the run read back as an in-kernel run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from omnirl_core.synthesis import DatasetConfig, synthesize
from omnirl_core.training import (
    CHECKPOINT,
    WEIGHTS,
    LaunchError,
    TrainConfig,
    load_checkpoint,
    read_metrics,
    run_torchrun,
)
from omnirl_core.training.launch import torchrun_command
from omnirl_core.workbook import dump_config, load_config

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "seed": 0, "steps": 6, "chunk_len": 16, "device": "cpu", "torch_threads": 1, "log_every": 1,
    "checkpoint_every": 2, "launch": {"nproc_per_node": 2, "poll_seconds": 0.2},
    "model": {"backbone": "rwkv7", "layout": "compact", "ns_max": 8, "na": 5, "hidden_size": 32, "num_layers": 2,
              "intermediate_size": 48, "head_dim": 8, "chunk_size": 8, "backend": "torch"},
    "data": {"batch_size": 2, "seq_len": 48, "ns": 8, "na": 5, "episode_len": 15},
    "optim": {"lr": 3e-3, "warmup_steps": 2}, "loss": {"ramp_steps": 16}, "eval": {"position_bins": 4},
}
ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
pytestmark = pytest.mark.slow


def tiny(**overrides) -> TrainConfig:
    return load_config(TrainConfig, TINY, overrides=overrides)


def test_a_failing_rank_fails_with_its_own_error(tmp_path):
    """A dataset of one shard: rank 1 of 2 has no sequences and stops; the error is rank 1's, not torchrun's."""
    data = DatasetConfig(ns=1, na=5, seq_len=48, n_sequences=4, sequences_per_shard=4, batch_size=4)
    synthesize(data, tmp_path / "one_shard", progress=False)
    with pytest.raises(LaunchError, match=r"(?s)rank 1 failed.*process 1 of 2"):
        run_torchrun(tiny(**{"data.path": str(tmp_path / "one_shard"), "model.ns_max": 8}), tmp_path / "run",
               progress=False, env=ENV)


def test_killed_launch_resumes_to_the_same_weights(tmp_path):
    """Two processes train, and the run reads back as an in-kernel run (the returned model is the saved one);
    the same run killed (torchrun and both ranks) once it has a checkpoint, then launched again, ends with
    exactly those weights."""
    cfg = tiny(steps=24, checkpoint_every=2, **{"eval.every": 0})
    full = run_torchrun(cfg, tmp_path / "full", progress=False, env=ENV)
    assert full.step == 24 and full.bad_steps == 0
    assert [r["step"] for r in read_metrics(tmp_path / "full")] == list(range(1, 25))
    saved = load_file(tmp_path / "full" / WEIGHTS)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert (tmp_path / "full" / "launch.yaml").is_file()  # the configuration the processes ran with

    out = tmp_path / "killed"
    out.mkdir()
    config = dump_config(cfg, out / "launch.yaml")
    proc = subprocess.Popen(torchrun_command(config, out, 2, out / "logs", resume=True), cwd=ROOT,
                            env={**os.environ, **ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    while not (out / CHECKPOINT).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks, as a node failure would
    proc.wait()
    step_at_kill = load_checkpoint(out / CHECKPOINT)["step"]
    assert 0 < step_at_kill < 24, "the run finished before it could be killed"

    resumed = run_torchrun(cfg, out, progress=False, env=ENV)
    assert resumed.step == 24
    a, b = load_file(tmp_path / "full" / WEIGHTS), load_file(out / WEIGHTS)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["step"] for r in read_metrics(out)] == list(range(1, 25))
