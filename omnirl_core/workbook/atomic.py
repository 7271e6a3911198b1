"""Files written whole or not at all: the package's one atomic write.

A file is written to a temporary file beside it (``.NAME.PID.tmp``, which
:func:`~omnirl_core.workbook.locks.remove_stale_temp_files` clears once its process is gone), flushed to disk,
given the usual permissions and moved over ``path`` with ``os.replace``: a reader sees the old file or the new one,
never half of one. A write that fails removes its temporary file, leaves ``path`` as it was and raises an
``OSError`` that names ``path`` (a failed ``write`` names no file, a failed ``open`` the temporary one).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def temporary_path(path: str | os.PathLike) -> Path:
    """``.NAME.PID.tmp`` beside ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def named(exc: OSError, path: str | os.PathLike) -> OSError:
    """``exc`` naming ``path``, the file being written."""
    return OSError(exc.errno, exc.strerror or str(exc), os.fspath(path))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, fsync: bool = True,
                 tmp: str | os.PathLike | None = None) -> Path:
    """Write ``path`` by ``write(temporary path)`` (which creates the file), then ``fsync`` (unless ``fsync`` is
    False: figures, configuration copies), permissions ``0666 & ~umask`` and ``os.replace``. ``tmp``: another
    temporary name beside ``path`` (a folder whose own cleanup looks for it). Returns ``path``."""
    path = Path(path)
    tmp = temporary_path(path) if tmp is None else Path(tmp)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise named(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = True,
                      tmp: str | os.PathLike | None = None) -> Path:
    """:func:`atomic_write` of ``text`` (UTF-8)."""
    return atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"), fsync=fsync, tmp=tmp)
