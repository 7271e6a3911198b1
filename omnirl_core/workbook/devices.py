"""Spreading work over a node's GPUs, or over a small machine's CPU cores: one process per slot at a time.

A slot is a GPU (its CUDA index, set as ``CUDA_VISIBLE_DEVICES`` for the process) or a CPU core (``None``: the
process sees the machine as it is; each such process runs torch on one thread, so two of them use two cores
where one process would leave the second idle). :func:`slots` turns a configuration's ``devices`` and
``cpu_processes`` into the list. Notebook 04 spreads its suites and long-context models and notebook 05 its
variants with :func:`run_on_devices`; every process writes its output to a log file (a file, not a pipe: progress
bars would fill a pipe and block the child), and a failure stops the others and raises with the failing job's
last lines.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .orphans import popen_kwargs


class DeviceJobError(RuntimeError):
    """A job that failed on its device; the message holds the end of its log."""


def slots(devices: Sequence[int], cpu_processes: int = 1) -> list[int | None]:
    """The slots to spread work over: the GPUs ``devices`` when any are listed, else ``cpu_processes`` CPU slots."""
    return list(devices) if devices else [None] * max(int(cpu_processes), 1)


def spreads(devices: Sequence[int], cpu_processes: int = 1) -> bool:
    """Whether work is spread over processes at all (some GPU listed, or more than one CPU process)."""
    return bool(devices) or int(cpu_processes) > 1


def run_on_devices(jobs: Sequence[tuple[str, list[str], Path]], devices: Sequence[int | None],
                   log: Callable[[str], None] | None = print, poll_seconds: float = 0.5) -> None:
    """Run each ``(name, command, log_path)`` with one slot of ``devices`` (a CUDA index, or ``None`` for a CPU
    slot, :func:`slots`) to itself, as many at once as there are slots, in the order given; returns when all
    succeeded."""
    pending, running, free = list(jobs), [], list(devices) or [None]
    while pending or running:
        while pending and free:
            (name, cmd, log_path), device = pending.pop(0), free.pop(0)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ) if device is None else {**os.environ, "CUDA_VISIBLE_DEVICES": str(device)}
            with open(log_path, "w") as fh:
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, **popen_kwargs())
            running.append((proc, name, device, log_path))
            if log:
                log(f"{name}: started on {_where(device)}")
        while all(job[0].poll() is None for job in running):
            time.sleep(poll_seconds)
        done = next(job for job in running if job[0].poll() is not None)
        running.remove(done)
        proc, name, device, log_path = done
        if proc.returncode != 0:
            for other, *_ in running:
                other.terminate()
            tail = log_path.read_text(errors="replace").splitlines()[-20:]
            raise DeviceJobError(f"{name} failed on {_where(device)} (exit {proc.returncode}, log {log_path}):\n"
                                 + "\n".join(tail))
        if log:
            log(f"{name}: done on {_where(device)}")
        free.append(device)


def _where(device: int | None) -> str:
    return "a CPU process" if device is None else f"device {device}"
