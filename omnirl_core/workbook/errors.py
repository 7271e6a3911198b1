"""What every command line of the package does with an error: one line on stderr and an exit code.

- :class:`InputError`: bad input (a parameter file, a dataset folder, a checkpoint, a command-line value). The
  package's own error types derive from it (``ConfigError``, ``DatasetError``, ``SynthesisError``,
  ``CheckpointMismatchError``, ``CheckpointConfigError``, ...). Exit code 2.
- :class:`RunStopped`: a run that started and was stopped by a fault of the model or data (non-finite losses in
  training, non-finite model outputs in evaluation). Exit code 3.
- ``FileNotFoundError``, ``FileExistsError`` and other ``OSError`` about a named path are bad input too (exit 2),
  and so is a folder that cannot be written (read-only, full disk, quota): one line naming the file.

:func:`run_cli` runs a command line's ``main`` and turns these into ``PROG: error: <one line>`` (``PROG: stopped:
...`` for :class:`RunStopped`); anything else is a bug and keeps its traceback. ``--debug`` anywhere on the command
line, or ``OMNIRL_DEBUG=1`` in the environment, shows the traceback of every error. :class:`CliParser` is an
``argparse`` parser whose usage errors are one line too (exit 2) and which lists ``--debug`` in its help.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable, Sequence

DEBUG_ENV = "OMNIRL_DEBUG"
_STORAGE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3


class InputError(ValueError):
    """Bad input, reported by a command line as one line with exit code 2."""


class RunStopped(RuntimeError):
    """A run stopped by a fault of the model or its data (non-finite values); exit code 3 on a command line."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a multi-line message's lines joined by '; ')."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    lines = [line.strip().removeprefix("- ").strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    out = ""
    for line in lines:
        out += line if not out else (" " if out.endswith(":") else "; ") + line
    return out


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    """True when ``--debug`` is on the command line or ``OMNIRL_DEBUG`` is set to 1 (or true, yes)."""
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return "--debug" in argv or env in ("1", "true", "yes", "on")


class CliParser(argparse.ArgumentParser):
    """``argparse`` with one-line usage errors (``PROG: error: ... (see --help)``, exit 2) and ``--debug`` listed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true",
                          help=f"show the traceback of an error (or set {DEBUG_ENV}=1)")

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def run_cli(main: Callable[[list[str]], object], argv: Sequence[str] | None = None, *, prog: str) -> int:
    """Run ``main(argv)`` and return its exit code, reporting known errors as one line on stderr.

    ``argv`` defaults to ``sys.argv[1:]``; ``--debug`` is taken out of it (and, like ``OMNIRL_DEBUG=1``, makes
    every error propagate with its traceback). ``main`` returns its exit code (an int); anything else (None, a
report) counts as 0.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(args)
    args = [a for a in args if a != "--debug"]
    try:
        code = main(args)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except RunStopped as exc:
        if debug:
            raise
        print(f"{prog}: stopped: {one_line(exc)}", file=sys.stderr)
        return EXIT_STOPPED
    except (InputError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError) as exc:
        if debug:
            raise
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a folder that cannot be written (read-only, full): the machine's, not a bug
        if debug or exc.errno not in _STORAGE_ERRNOS:
            raise
        print(f"{prog}: error: {one_line(exc)} (what was written completely stays; run the same command again "
              "once there is room or write access, or write elsewhere)", file=sys.stderr)
        return EXIT_BAD_INPUT
    return code if isinstance(code, int) and not isinstance(code, bool) else 0
