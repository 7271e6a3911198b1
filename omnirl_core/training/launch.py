"""Meta-training on several processes from a notebook: torchrun (``torch.distributed.run``) as a subprocess.

Notebook 03 calls :func:`train_or_launch`: with ``launch.nproc_per_node: 1`` it runs :func:`~.loop.train` in the
kernel; with more it writes the validated configuration to the run folder, starts ::

    python -m torch.distributed.run --standalone --nproc_per_node N -m omnirl_core.training CONFIG --out RUN --resume

(NCCL on GPUs, gloo on CPU), shows a progress bar fed by rank 0's metrics file, and on failure raises
:class:`LaunchError` with the failing rank's own error (each rank's output goes to ``RUN/launch_logs/``), or
:class:`~.preemption.TrainingPreempted` when the ranks were asked to stop by a signal and wrote a checkpoint. After
success it reads the checkpoint back, so the notebook continues exactly as after an in-kernel run. Several
nodes: run the same torchrun command on every node with rendezvous flags (docs/paper-scale.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..workbook import dump_config
from ..workbook.orphans import popen_kwargs
from .checkpoints import CHECKPOINT, WEIGHTS, load_checkpoint, load_model_weights
from .config import TrainConfig
from .loop import TrainResult, train
from .metrics import read_eval, read_metrics
from .preemption import PREEMPTED_FILE, TrainingPreempted


class LaunchError(RuntimeError):
    """A torchrun training run that failed; the message holds the failing rank's error."""


def train_or_launch(cfg: TrainConfig, out_dir: str | os.PathLike, *, resume: bool = True,
                    progress: bool = True) -> TrainResult:
    """:func:`train` in this process, or under torchrun when ``cfg.launch.nproc_per_node > 1``."""
    if cfg.launch.nproc_per_node <= 1:
        return train(cfg, out_dir, resume=resume, progress=progress)
    return run_torchrun(cfg, out_dir, resume=resume, progress=progress)


def torchrun_command(config_path: Path, out_dir: Path, nproc: int, log_dir: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(nproc), "--log-dir", str(log_dir), "--redirects", "3",
            "-m", "omnirl_core.training", str(config_path), "--out", str(out_dir), "--no-progress",
            *(["--resume"] if resume else [])]


def run_torchrun(cfg: TrainConfig, out_dir: str | os.PathLike, *, resume: bool = True, progress: bool = True,
           env: dict | None = None) -> TrainResult:
    """Run the training under torchrun with ``cfg.launch.nproc_per_node`` processes; see the module docstring."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path = dump_config(cfg, out / "launch.yaml", header="Configuration handed to torchrun by notebook 03.")
    log_dir = out / "launch_logs" / time.strftime("%Y%m%d-%H%M%S")
    cmd = torchrun_command(config_path, out, cfg.launch.nproc_per_node, log_dir, resume)
    child_env = {**os.environ, **(env or {})}
    log_dir.parent.mkdir(parents=True, exist_ok=True)
    (out / PREEMPTED_FILE).unlink(missing_ok=True)  # a record left by an earlier launch is not this one's
    with open(log_dir.parent / "torchrun.log", "a") as console:
        console.write(f"$ {' '.join(cmd)}\n")
        console.flush()
        proc = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, env=child_env, **popen_kwargs())
        _follow(proc, out, cfg, progress)
    if proc.returncode != 0 and (out / PREEMPTED_FILE).is_file():  # the ranks wrote a checkpoint and stopped
        record = json.loads((out / PREEMPTED_FILE).read_text())
        raise TrainingPreempted(f"stopped by {record['signal']} after iteration {record['step']}; its checkpoint is "
                                f"in {out}: run again to continue", int(record["step"]), record["signal"])
    if proc.returncode != 0:
        raise LaunchError(failure_report(out / "launch_logs" / "torchrun.log", log_dir, proc.returncode))
    return _result(cfg, out)


def _follow(proc: subprocess.Popen, out: Path, cfg: TrainConfig, progress: bool) -> None:
    """Wait for torchrun, moving a progress bar with the last step rank 0 wrote to ``metrics.jsonl``."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc=f"train x{cfg.launch.nproc_per_node}", unit="it")
    try:
        while proc.poll() is None:
            time.sleep(cfg.launch.poll_seconds)
            if bar is not None:
                rows = read_metrics(out)
                if rows:
                    bar.n = int(rows[-1]["step"])
                    bar.set_postfix(loss=f"{rows[-1]['loss']:.4f}")
                    bar.refresh()
    except BaseException:
        proc.terminate()  # an interrupted cell stops the run; the last checkpoint stays for --resume
        proc.wait(timeout=60)
        raise
    finally:
        if bar is not None:
            bar.close()


# Errors that a rank reports because another rank died (the root cause is elsewhere)
_PEER_FAILURE = re.compile(r"Connection closed by peer|remote worker|Connection reset|Broken pipe|"
                           r"NCCL (error|communicator).*(remote|abort)|collective.*timed? ?out", re.I)
# What an error looks like in a rank's stderr: a traceback, or the command line's one-line report
_OWN_ERROR = re.compile(r"Traceback|: (error|stopped): |Error: ", re.M)


def failure_report(console_log: Path, log_dir: Path, returncode: int) -> str:
    """The rank whose own error stopped the run, and the end of its stderr.

    torchrun lists every failed rank; a rank whose error is only that a peer went away is passed over for one
    whose error is its own."""
    console = console_log.read_text(errors="replace") if console_log.is_file() else ""
    logs = {p.parent.name: p for p in sorted(log_dir.rglob("stderr.log"))}
    listed = [local for _, local in re.findall(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)", console)]
    order = [r for r in dict.fromkeys(listed) if r in logs] + sorted(r for r in logs if r not in listed)
    texts = {r: logs[r].read_text(errors="replace") for r in order}
    failed = [r for r in order if _OWN_ERROR.search(texts[r])]
    own = [r for r in failed if not _PEER_FAILURE.search(texts[r])]
    if not (own or failed):
        tail = "\n".join(console.splitlines()[-30:])
        return f"torchrun exited with {returncode}; no rank left an error. torchrun's output:\n{tail}"
    rank = (own or failed)[0]
    lines = texts[rank].splitlines()
    return (f"torchrun exited with {returncode}: rank {rank} failed ({logs[rank]}). Its last lines:\n"
            + "\n".join(lines[-30:]))


def _result(cfg: TrainConfig, out: Path) -> TrainResult:
    """The finished run read back from its folder, as :func:`train` would have returned it."""
    from safetensors.torch import load_file

    from ..model import OmniRL

    ckpt = load_checkpoint(out / CHECKPOINT, cfg)
    model = OmniRL(cfg.model)
    load_model_weights(model, load_file(str(out / WEIGHTS)), out / WEIGHTS)
    rows = read_metrics(out)
    return TrainResult(int(ckpt["step"]), out, model.eval(), int(ckpt["counters"].get("bad_steps_total", 0)),
                       float(rows[-1]["loss"]) if rows else float("nan"), read_eval(out))


def describe_launch(cfg: TrainConfig, out_dir: str | os.PathLike) -> str:
    """One line for the notebook: how this run will be executed."""
    n = cfg.launch.nproc_per_node
    if n <= 1:
        return f"one process ({'cuda' if cfg.device != 'cpu' and torch.cuda.is_available() else 'cpu'})"
    backend = "nccl" if cfg.device != "cpu" and torch.cuda.is_available() else "gloo"
    return f"torchrun, {n} processes ({backend}), logs in {Path(out_dir) / 'launch_logs'}"


__all__ = ["LaunchError", "describe_launch", "failure_report", "run_torchrun", "torchrun_command", "train_or_launch"]
