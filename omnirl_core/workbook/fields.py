"""Declaring configuration fields: errors, constraints (:func:`param`, :class:`Rule`) and field docstrings.

The first half of the typed config engine (:mod:`omnirl_core.workbook.config` builds and validates);
every configuration dataclass in the package declares its fields with :func:`param`.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Union

from .errors import InputError
from .plugins import Names

_META = "omnirl_config"


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class ConfigError(InputError):
    """One or more problems in a configuration.

    ``issues`` is a list of ``(dotted_key, message)`` pairs (the key is ``""`` for whole-file
    problems; a message may spell its key as ``{key}``); ``source`` names where the values came
    from (a file path, or ``<dict>``).
    """

    def __init__(self, issues: Iterable[tuple[str, str]], source: str | None = None, cls_name: str | None = None):
        self.issues = list(issues)
        self.source = source
        self.cls_name = cls_name
        super().__init__(str(self))

    @property
    def key(self) -> str:
        """Dotted key of the first problem."""
        return self.issues[0][0] if self.issues else ""

    def __str__(self) -> str:
        where = self.source or "<config>"
        what = f" ({self.cls_name})" if self.cls_name else ""
        lines = [_issue_text(k, m) for k, m in self.issues]
        if len(lines) == 1:
            return f"{where}{what}: {lines[0]}"
        return f"{where}{what}: {len(lines)} problems:\n" + "\n".join(f"  - {line}" for line in lines)

    def _render_traceback_(self) -> list[str]:
        # IPython (a notebook cell, papermill's report) shows this in place of the traceback: the message already
        # names the file and the key, and the frames of the config engine would only bury it.
        return [f"{type(self).__name__}: {line}" if i == 0 else line for i, line in enumerate(str(self).splitlines())]


def _issue_text(key: str, message: str) -> str:
    # A message naming its key writes "{key}"; otherwise the key is put in front.
    if "{key}" in message:
        return message.replace("{key}", key)
    return f"'{key}': {message}" if key else message


def check(condition: bool, key: str, value: Any, allowed: str) -> None:
    """Inside a config's ``validate()``: fail with a :class:`ConfigError` unless ``condition`` holds.

    ``key`` is relative to the class being validated (e.g. ``"stats_ns[2]"``); ``allowed`` says
    what is accepted (e.g. ``"1 or >= 8"``).
    """
    if not condition:
        raise ConfigError([(key, f"{_show(value)} is not allowed: must be {allowed}")])


# --------------------------------------------------------------------------------------------------
# Declaring fields
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A named predicate on a value (or on each element of a list), e.g. ``Rule(f, "1 or >= 8")``."""

    test: Callable[[Any], bool]
    text: str


STATE_COUNT = Rule(lambda n: n == 1 or n >= 8, "1 or >= 8")
"""AnyMDP state counts: 1 (a bandit) or at least 8 states."""


@dataclass(frozen=True)
class _Constraints:
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | Names | None = None
    rule: Rule | None = None
    min_len: int | None = None
    max_len: int | None = None

    def describe(self, per_element: bool) -> str:
        parts = []
        for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)):
            if bound is not None:
                parts.append(f"{op} {bound}")
        if self.choices is not None:
            parts.append("one of " + ", ".join(_show_plain(c) for c in self.choices))
        if self.rule is not None:
            parts.append(self.rule.text)
        text = ", ".join(parts)
        if text and per_element:
            text = "each " + text
        lens = []
        if self.min_len is not None:
            lens.append(f"at least {self.min_len} item{'s' if self.min_len != 1 else ''}")
        if self.max_len is not None:
            lens.append(f"at most {self.max_len} item{'s' if self.max_len != 1 else ''}")
        return "; ".join(p for p in (text, ", ".join(lens)) if p)


def param(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Iterable[Any] | None = None,
    rule: Rule | None = None,
    min_len: int | None = None,
    max_len: int | None = None,
) -> Any:
    """A dataclass field with constraints.

    Leave out ``default`` (and ``default_factory``) for a required field. Mutable defaults (lists,
    dicts, dataclass instances) are copied for each instance, so ``param([1, 2])`` is fine.
    Bounds (``ge``/``gt``/``le``/``lt``), ``choices`` and ``rule`` apply to a scalar value or to each
    element of a list/tuple; ``min_len``/``max_len`` bound the length of a list/tuple. ``choices`` may be a live
    :class:`~omnirl_core.workbook.plugins.Names` view (a registry's names): it is read when a value is checked.
    """
    live = isinstance(choices, Names)
    cons = _Constraints(
        ge=ge,
        gt=gt,
        le=le,
        lt=lt,
        choices=choices if live or choices is None else tuple(choices),
        rule=rule,
        min_len=min_len,
        max_len=max_len,
    )
    if cons.choices is not None and not live and not cons.choices:
        raise ValueError("param(choices=...) must not be empty")
    metadata = {_META: cons}
    if default is not dataclasses.MISSING and default_factory is not dataclasses.MISSING:
        raise ValueError("param() takes default or default_factory, not both")
    if default is not dataclasses.MISSING and (
        isinstance(default, (list, dict, set)) or dataclasses.is_dataclass(default)
    ):
        frozen = copy.deepcopy(default)
        return dataclasses.field(default_factory=lambda: copy.deepcopy(frozen), metadata=metadata)
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _constraints(f: dataclasses.Field) -> _Constraints:
    return f.metadata.get(_META, _Constraints())


# --------------------------------------------------------------------------------------------------
# Introspection: field docstrings and resolved types
# --------------------------------------------------------------------------------------------------


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the string literal written right after the field in the class body (inherited too)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        cdef = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
        if cdef is None:
            continue
        body = cdef.body
        for stmt, nxt in zip(body, body[1:] + [None]):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception as exc:  # unresolved forward reference, etc.
        raise TypeError(f"cannot resolve the field types of {cls.__name__}: {exc}") from exc


def _fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass type")
    hints = _hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def _is_optional(tp: Any) -> bool:
    return _is_union(tp) and type(None) in typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _strip_optional(tp: Any) -> Any:
    if _is_optional(tp):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        return rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007
    return tp


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if tp is Any:
        return "any"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp.__name__
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if _is_union(tp):
        return " | ".join(_type_name(a) for a in args)
    if origin in (list, tuple, dict):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"tuple[{_type_name(args[0])}, ...]"
        return f"{origin.__name__}[" + ", ".join(_type_name(a) for a in args) + "]"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp)


def _is_sequence_type(tp: Any) -> bool:
    return typing.get_origin(_strip_optional(tp)) in (list, tuple)


# Conversion and validation
# --------------------------------------------------------------------------------------------------


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _show_plain(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _got(value: Any) -> str:
    return f"got {type(value).__name__} {_show(value)}"
