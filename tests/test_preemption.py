"""Preemption: SIGTERM (a cluster taking the node back) or SIGUSR1 (a warning ahead of a time limit) makes a
training run write a checkpoint at the next iteration boundary and exit with ``PREEMPTED_EXIT``; the same command
with ``--resume`` then ends with the weights of a run that was never interrupted. In one process and under
torchrun, where every rank stops at the same iteration although only one of them was signalled."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from omnirl_core.training import (
    CHECKPOINT,
    PREEMPTED_EXIT,
    PREEMPTED_FILE,
    WEIGHTS,
    TrainingPreempted,
    load_checkpoint,
    read_metrics,
    train,
)
from omnirl_core.workbook import config_to_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_training import tiny  # noqa: E402  (the tiny training configuration of the training tests)

STEPS = 60


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _cmd(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "omnirl_core.training", str(config), "--out", str(out), "--no-progress", *extra]


def _torchrun(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            *_cmd(config, out, *extra)[1:]]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """Checkpoints only at the end (checkpoint_every > steps): a checkpoint in between is the preemption's."""
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(tiny(steps=STEPS, checkpoint_every=1000, **{"eval.every": 0}))))
    return path


def _wait_for_iteration(out: Path, proc: subprocess.Popen, iteration: int) -> None:
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        rows = read_metrics(out)
        if rows and rows[-1]["step"] >= iteration:
            return
        time.sleep(0.01)
    raise AssertionError(f"the run never reached iteration {iteration} (exit {proc.poll()})")


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / WEIGHTS), load_file(b / WEIGHTS)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert (wa[k] == wb[k]).all(), k


@pytest.fixture(scope="module")
def uninterrupted(config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    res = subprocess.run(_cmd(config, out), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_train_in_process_stops_at_a_signal_and_restores_the_handlers(tmp_path, capfd):
    """The function the notebooks call: a SIGTERM during iteration 3 (sent by an evaluation hook) ends it with
    TrainingPreempted after that iteration's checkpoint; the caller's handlers are back afterwards, and the resume
    ends with the weights of an uninterrupted run."""
    cfg = tiny(steps=6, checkpoint_every=1000, **{"eval.every": 1})
    seen = []

    def own(signum, frame):
        seen.append(signum)

    def hook(ctx):
        seen.append(signal.getsignal(signal.SIGTERM))
        if ctx.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    before = {sig: signal.signal(sig, own) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        full = train(cfg, tmp_path / "full", progress=False, hooks=[])
        with pytest.raises(TrainingPreempted, match="stopped by SIGTERM after iteration 3") as stopped:
            train(cfg, tmp_path / "run", progress=False, hooks=[hook])
        assert stopped.value.step == 3 and load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"] == 3
        assert seen[:3] and all(h is not own and callable(h) for h in seen[:3])  # the training's, while it ran
        assert signal.getsignal(signal.SIGTERM) is own and signal.getsignal(signal.SIGUSR1) is own
        assert not [s for s in seen if s == signal.SIGTERM]  # the caller's handler was not called
        err = capfd.readouterr().err
        assert err.count("SIGTERM received") == 1 and err.count("checkpoint of iteration 3 written") == 1, err
        resumed = train(cfg, tmp_path / "run", resume=True, progress=False, hooks=[])
        assert signal.getsignal(signal.SIGTERM) is own
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_signal_at_a_random_iteration_checkpoints_exits_and_resumes_exactly(config, uninterrupted, tmp_path, sig):
    at = random.Random().randint(2, STEPS // 2)
    why = f"signal after iteration {at}"
    out, err = tmp_path / "run", tmp_path / "stderr.txt"
    with open(err, "w") as fh:
        proc = subprocess.Popen(_cmd(config, out, "--resume"), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=fh)
        try:
            _wait_for_iteration(out, proc, at)
            proc.send_signal(sig)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = err.read_text()
    assert proc.returncode == PREEMPTED_EXIT, f"{why}: exit {proc.returncode}\n{stderr[-3000:]}"
    step = load_checkpoint(out / CHECKPOINT)["step"]
    assert at <= step < STEPS, why
    assert stderr.count(f"{sig.name} received") == 1, stderr
    assert stderr.count(f"checkpoint of iteration {step} written") == 1, stderr
    assert json.loads((out / PREEMPTED_FILE).read_text())["step"] == step
    assert load_file(out / WEIGHTS).keys()  # the weights beside the checkpoint are the checkpoint's
    assert [r["step"] for r in read_metrics(out)] == list(range(1, step + 1))

    resumed = subprocess.run(_cmd(config, out, "--resume"), env=_env(), cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, f"{why}\n{resumed.stderr[-3000:]}"
    _same_weights(uninterrupted, out)
    assert load_checkpoint(out / CHECKPOINT)["step"] == STEPS
    assert [r["step"] for r in read_metrics(out)] == list(range(1, STEPS + 1))
    assert not (out / PREEMPTED_FILE).exists()  # a resumed run is not a preempted one


@pytest.mark.slow
def test_the_help_names_the_exit_code():
    res = subprocess.run([sys.executable, "-m", "omnirl_core.training", "--help"], env=_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and f"{PREEMPTED_EXIT}" in res.stdout and "SIGTERM" in res.stdout


def _rank_pid(parent: int, rank: int) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


@pytest.mark.slow
def test_under_torchrun_one_signalled_rank_stops_every_rank_at_the_same_iteration(config, tmp_path):
    full = tmp_path / "full"
    res = subprocess.run(_torchrun(config, full), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]

    at = random.Random().randint(2, STEPS // 2)
    out, err = tmp_path / "run", tmp_path / "stderr.txt"
    with open(err, "w") as fh:
        proc = subprocess.Popen(_torchrun(config, out, "--resume"), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=fh, start_new_session=True)
        try:
            _wait_for_iteration(out, proc, at)
            rank1 = _rank_pid(proc.pid, 1)
            assert rank1 is not None, "rank 1's process not found"
            os.kill(rank1, signal.SIGTERM)  # rank 1 alone: rank 0 learns of it through the iteration's all-reduce
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    stderr = err.read_text()
    assert proc.returncode != 0, stderr[-3000:]  # torchrun reports its ranks' exit code 75 as a failure
    assert f"exitcode  : {PREEMPTED_EXIT}" in stderr or f"exitcode: {PREEMPTED_EXIT}" in stderr, stderr[-3000:]
    step = load_checkpoint(out / CHECKPOINT)["step"]
    assert at <= step < STEPS, f"signal after iteration {at}"
    assert json.loads((out / PREEMPTED_FILE).read_text())["step"] == step
    assert stderr.count(f"checkpoint of iteration {step} written") == 1, stderr[-3000:]

    resumed = subprocess.run(_torchrun(config, out, "--resume"), env=_env(), cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same_weights(full, out)
    assert [r["step"] for r in read_metrics(out)] == list(range(1, STEPS + 1))
