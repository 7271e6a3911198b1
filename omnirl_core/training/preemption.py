"""Preemption: a training run asked to stop by a signal writes a checkpoint at the next iteration boundary and
exits with :data:`PREEMPTED_EXIT`, so that a requeue script can tell "stopped, resume me" from a failure.

Clusters take nodes back with SIGTERM (SLURM: then SIGKILL after ``KillWait``) and can warn ahead of a time
limit with SIGUSR1 (``#SBATCH --signal=USR1@300``). While :func:`~omnirl_core.training.loop.train` runs, both
only set a flag (:class:`StopRequest`); the loop reads it once per iteration (under DDP an all-reduce of every
rank's flag, so all ranks stop after the same iteration although one alone may have been signalled), writes the
checkpoint, records :data:`PREEMPTED_FILE` in the run folder and raises :class:`TrainingPreempted`; the command
line turns that into exit code :data:`PREEMPTED_EXIT`. The same command with ``--resume`` continues exactly.
The handlers that were installed before are restored when the run returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path

from ..workbook.atomic import write_text_atomic

PREEMPTED_EXIT = 75  # EX_TEMPFAIL of sysexits.h: "try again later"
"""Exit code of ``python -m omnirl_core.training`` after a stop asked by a signal (checkpoint written)."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
PREEMPTED_FILE = "preempted.json"
"""Written into the run folder beside the checkpoint of a preempted run (``{"step", "signal", "exit_code"}``) and
removed when a run starts there again: under torchrun, whose own exit code is 1 whatever its ranks returned, a
requeue script tests for this file."""


class TrainingPreempted(RuntimeError):
    """The run stopped at a signal's request after writing its checkpoint; run it again with ``resume`` to
    continue. ``step`` is the iteration of that checkpoint."""

    def __init__(self, message: str, step: int, signal_name: str):
        super().__init__(message)
        self.step, self.signal_name = step, signal_name


class StopRequest:
    """Set by SIGTERM or SIGUSR1 while installed (:meth:`installed`); ``signum`` is the first signal received
    (0: none). The handler only records it and says so once on stderr (one ``write``, no buffered stream that the
    interrupted code may be in the middle of)."""

    def __init__(self, label: str = ""):
        self.signum = 0
        self.label = label  # "[rank 1] " under DDP

    @property
    def requested(self) -> bool:
        return self.signum != 0

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - the signal module's signature
        if self.signum:
            return
        self.signum = signum
        note = (f"{self.label}{signal.Signals(signum).name} received: the run stops after this iteration and "
                f"writes a checkpoint (exit code {PREEMPTED_EXIT}; continue with --resume)\n")
        with contextlib.suppress(OSError):
            os.write(2, note.encode())

    @contextlib.contextmanager
    def installed(self):
        """Handle :data:`STOP_SIGNALS` inside the block and restore the previous handlers after it. Outside the
        main thread (where Python cannot install handlers) the signals keep their handlers."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def signal_name(signum: int) -> str:
    return signal.Signals(int(signum)).name


def write_preempted(out: Path, step: int, signum: int) -> None:
    """Record the preemption in the run folder (atomically)."""
    write_text_atomic(out / PREEMPTED_FILE,
                      json.dumps({"step": step, "signal": signal_name(signum), "exit_code": PREEMPTED_EXIT}) + "\n")


def clear_preempted(out: Path) -> None:
    (out / PREEMPTED_FILE).unlink(missing_ok=True)


__all__ = ["PREEMPTED_EXIT", "PREEMPTED_FILE", "STOP_SIGNALS", "StopRequest", "TrainingPreempted",
           "clear_preempted", "signal_name", "write_preempted"]
