"""Spreading work over a node's GPUs: one process per device at a time, each with ``CUDA_VISIBLE_DEVICES`` set.

Notebook 04 spreads its suites and notebook 05 its variants with :func:`run_on_devices`; every process writes its
output to a log file (a file, not a pipe: progress bars would fill a pipe and block the child), and a failure
stops the others and raises with the failing job's last lines.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class DeviceJobError(RuntimeError):
    """A job that failed on its device; the message holds the end of its log."""


def run_on_devices(jobs: Sequence[tuple[str, list[str], Path]], devices: Sequence[int],
                   log: Callable[[str], None] | None = print, poll_seconds: float = 0.5) -> None:
    """Run each ``(name, command, log_path)`` with one device of ``devices`` to itself, as many at once as there
    are devices; returns when all succeeded."""
    pending, running, free = list(jobs), [], list(devices) or [0]
    while pending or running:
        while pending and free:
            (name, cmd, log_path), device = pending.pop(0), free.pop(0)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "w") as fh:
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                        env={**os.environ, "CUDA_VISIBLE_DEVICES": str(device)})
            running.append((proc, name, device, log_path))
            if log:
                log(f"{name}: started on device {device}")
        while all(job[0].poll() is None for job in running):
            time.sleep(poll_seconds)
        done = next(job for job in running if job[0].poll() is not None)
        running.remove(done)
        proc, name, device, log_path = done
        if proc.returncode != 0:
            for other, *_ in running:
                other.terminate()
            tail = log_path.read_text(errors="replace").splitlines()[-20:]
            raise DeviceJobError(f"{name} failed on device {device} (exit {proc.returncode}, log {log_path}):\n"
                                 + "\n".join(tail))
        if log:
            log(f"{name}: done on device {device}")
        free.append(device)
