"""Worker processes die with the process that started them: stopping a notebook, its kernel or the runner (even
with SIGKILL) leaves no synthesis worker, PPO worker, device job or torchrun behind under ppid 1.

:func:`die_with_parent` is called first in a pool worker (``initializer=``); :func:`popen_kwargs` gives
``subprocess.Popen`` the same for a child program. On Linux the kernel sends the child SIGTERM when its parent
exits (``prctl(PR_SET_PDEATHSIG)``, which survives ``exec``); a pool worker also watches its parent id once a
second, which covers other systems and a parent that ends before the request is made.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def _ask_kernel(parent: int) -> None:
    """SIGTERM to this process when its parent dies (Linux); then, if the parent is already gone, exit."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watcher below (pool workers) is left
            pass
    if os.getppid() != parent:  # died before the request: nobody would send the signal
        os._exit(1)


def die_with_parent(parent: int) -> None:
    """In a pool worker started by process ``parent``: end when it ends (``initializer=die_with_parent,
    initargs=(os.getpid(),)``)."""
    _ask_kernel(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def popen_kwargs() -> dict:
    """Keyword arguments for ``subprocess.Popen`` of a child that must end with this process (Linux; elsewhere
    none)."""
    if not sys.platform.startswith("linux"):
        return {}
    parent = os.getpid()
    return {"preexec_fn": lambda: _ask_kernel(parent)}
