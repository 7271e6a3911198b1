"""Name-keyed registries that code outside the package extends, and the plug-in modules that extend them.

The package keeps two registries built on :class:`Registry`: the evaluation suites
(:func:`omnirl_core.evaluation.suites.register_suite`) and the model's backbones
(:func:`omnirl_core.model.backbones.register_backbone`). Both register their built-in entries through the same
function outside code calls, and every place that accepts a suite or backbone name (configuration validation,
command-line choices and help, the studies' rules) asks the registry, so a registered name is accepted everywhere.

Plug-in modules: ``OMNIRL_PLUGINS=module1,module2`` (comma-separated importable module names; the current folder
is importable under ``python -m``, else extend ``PYTHONPATH``) lists modules that register entries when imported.
Every registry imports them before its first lookup, so each command line, notebook kernel and worker process
sees the same names without an option of its own. In Python code, importing the module has the same effect.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from .errors import InputError

__all__ = ["PLUGINS_ENV", "Names", "Registry", "load_plugins"]

PLUGINS_ENV = "OMNIRL_PLUGINS"
T = TypeVar("T")

_loaded: set[str] = set()  # plug-in modules imported by load_plugins
_loading: set[str] = set()  # being imported now (a lookup inside a plug-in does not import it again)


def load_plugins(modules: str | Sequence[str] | None = None) -> list[str]:
    """Import the plug-in modules (default: those of ``$OMNIRL_PLUGINS``) not imported yet; the names imported.

    A module that cannot be imported raises :class:`~omnirl_core.workbook.errors.InputError` naming it (and again
    at the next lookup); the others stay registered."""
    if modules is None:
        modules = os.environ.get(PLUGINS_ENV, "")
    names = [m.strip() for m in (modules.split(",") if isinstance(modules, str) else modules) if m.strip()]
    done = []
    for name in names:
        if name in _loaded or name in _loading:
            continue
        _loading.add(name)
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise InputError(f"{PLUGINS_ENV}: plug-in module {name!r} cannot be imported: "
                             f"{type(exc).__name__}: {exc}") from exc
        finally:
            _loading.discard(name)
        _loaded.add(name)
        done.append(name)
    return done


class Registry(Generic[T]):
    """Name -> entry, in registration order. :meth:`register` adds one (a name already there is an error unless
    ``replace=True``); every lookup (:meth:`get`, ``in``, :meth:`names`) first imports the plug-in modules
    (:func:`load_plugins`)."""

    def __init__(self, what: str, hint: str = "") -> None:
        self.what = what  # "suite", "backbone": used in error messages
        self.hint = hint  # how to add one, appended to the unknown-name error
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"a {self.what} name is a non-empty string without surrounding spaces, got {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.what} {name!r} is registered already; pass replace=True to replace it")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove ``name`` (and return its entry): a test that registers a temporary entry removes it afterwards."""
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        """The entry of ``name``; :class:`~omnirl_core.workbook.errors.InputError` listing the names otherwise."""
        load_plugins()
        if name not in self._entries:
            raise InputError(f"unknown {self.what} {name!r}; choose one of {', '.join(self._entries)}"
                             + (f" ({self.hint})" if self.hint else ""))
        return self._entries[name]

    def find(self, name: str) -> T | None:
        """The entry of ``name``, or None."""
        load_plugins()
        return self._entries.get(name)

    def names(self) -> tuple[str, ...]:
        load_plugins()
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def view(self) -> Names:
        """A live, tuple-like view of the names (see :class:`Names`)."""
        return Names(self.names)


class Names(Sequence[str]):
    """A read-only sequence of names read from a function at every use (a registry's names, plug-ins included), so
    a module-level constant such as ``SUITE_NAMES`` always lists what is registered now. It iterates, indexes,
    tests membership and joins like a tuple; ``tuple(view)`` takes a snapshot. Given as a configuration field's
    ``choices`` (:func:`~omnirl_core.workbook.fields.param`), the field accepts what is registered when checked."""

    def __init__(self, names: Callable[[], Sequence[str]]) -> None:
        self._names = names

    def __getitem__(self, index):  # type: ignore[override]
        return tuple(self._names())[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._names()))

    def __contains__(self, name: object) -> bool:
        return name in tuple(self._names())

    def __add__(self, other):
        return tuple(self) + tuple(other)

    def __repr__(self) -> str:
        return repr(tuple(self))
