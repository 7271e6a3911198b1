"""One writer per output folder: a POSIX record lock on a file in the folder, shared by every writer of the
package (a dataset synthesis, a training run), and the clean-up of temporary files that dead writers left.

The lock is released when its process ends, however it ends (``kill -9`` included), and is not inherited by
worker processes; while held, the lock file names the holder (process id, host, start time); it is emptied when
the holder is done, so a folder's bytes do not depend on who wrote it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from pathlib import Path

from .errors import InputError

LOCK_FILE = ".lock"
_TMP_PID = re.compile(r"^\..+\.(\d+)\.tmp$")  # ".<name>.<pid>.tmp": an atomic write in progress


class FolderBusy(InputError):
    """Another process is writing the same output folder."""


@contextlib.contextmanager
def folder_lock(root: Path, name: str = LOCK_FILE, *, busy: str = "another process is writing this folder",
                error: type[InputError] = FolderBusy):
    """Hold ``root/name`` locked for the block; a second holder is refused at once with ``error`` whose message is
    ``"ROOT: BUSY (HOLDER); wait for it to finish, or write to another folder"``."""
    import fcntl

    path = Path(root) / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = path.read_text(errors="replace").strip() or "a process that has not written its id yet"
            raise error(f"{root}: {busy} ({holder}); wait for it to finish, or write to another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                 .encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def remove_stale_temp_files(root: Path) -> list[Path]:
    """Remove ``root/.NAME.PID.tmp`` files (atomic writes) whose process is gone; call it holding the folder's
    lock. Returns the files removed. A file of a live process (another host's, or one not under the lock) stays."""
    removed = []
    for tmp in Path(root).glob(".*.tmp"):
        match = _TMP_PID.match(tmp.name)
        if match is None or not tmp.is_file():
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _alive(pid):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
