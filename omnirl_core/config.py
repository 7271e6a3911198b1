"""Typed, validated configuration shared by every notebook and command-line tool.

A configuration is a plain dataclass. Each field carries a one-line docstring (a string literal right
after the field, read from the source for help text) and, optionally, constraints declared with
:func:`param`::

    @dataclass
    class TrainConfig:
        seed: int = param(0, ge=0)
        "Base random seed."
        backbone: str = param("rwkv7", choices=("rwkv7", "gated_deltanet", "gsa", "mamba2"))
        "Sequence-model backbone."
        ns: list[int] = param([16, 32], rule=STATE_COUNT, min_len=1)
        "State counts to train on."

    cfg = load_config(TrainConfig, "params/quick/02_train.yaml", overrides={"seed": 3})

Supported field types: ``int``, ``float`` (ints are accepted and converted), ``bool`` (strict: only
``true``/``false``), ``str``, ``Optional[T]`` / ``T | None``, ``Literal[...]``, ``list[T]``,
``tuple[T, ...]``, fixed ``tuple[A, B]``, ``dict[str, T]`` and nested dataclasses (YAML mappings).

Bounds, ``choices`` and ``rule`` apply to the value of a scalar field and to *each element* of a
list/tuple field. A class may also define ``validate(self)`` for checks across fields; it reports a
problem with :func:`check`, which yields the same style of error as the built-in checks.

Every problem is reported as a :class:`ConfigError` (a ``ValueError``) before any work starts; the
message names the file, the dotted key, what was received and what is allowed.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import functools
import importlib
import inspect
import json
import os
import re
import tempfile
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

__all__ = [
    "NOTEBOOK_CONFIGS",
    "STATE_COUNT",
    "SynthesisConfig",
    "ConfigError",
    "DatasetConfig",
    "MixtureConfig",
    "Rule",
    "TasksConfig",
    "check",
    "config_to_dict",
    "describe",
    "dump_config",
    "field_docs",
    "load_config",
    "param",
    "repo_path",
    "repo_root",
    "validate_config",
]

T = TypeVar("T")

_META = "omnirl_config"
_INVALID = object()  # sentinel: conversion failed, an issue was recorded


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class ConfigError(ValueError):
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
    choices: tuple[Any, ...] | None = None
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
    element of a list/tuple; ``min_len``/``max_len`` bound the length of a list/tuple.
    """
    cons = _Constraints(
        ge=ge,
        gt=gt,
        le=le,
        lt=lt,
        choices=tuple(choices) if choices is not None else None,
        rule=rule,
        min_len=min_len,
        max_len=max_len,
    )
    if cons.choices is not None and not cons.choices:
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


# --------------------------------------------------------------------------------------------------
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


class _Builder:
    """Converts raw (YAML) data into a dataclass instance, collecting every problem found."""

    def __init__(self) -> None:
        self.issues: list[tuple[str, str]] = []

    def fail(self, key: str, message: str) -> object:
        self.issues.append((key, message))
        return _INVALID

    # -- classes ---------------------------------------------------------------------------------

    def build(self, cls: type, data: Any, prefix: str) -> Any:
        before = len(self.issues)
        if isinstance(data, cls):
            data = config_to_dict(data)
        if not isinstance(data, Mapping):
            what = "'{key}' must be" if prefix else "the configuration must be"
            return self.fail(prefix, f"{what} a mapping of keys for {cls.__name__}, {_got(data)}")
        fields = _fields(cls)
        names = [f.name for f, _ in fields]
        kwargs: dict[str, Any] = {}
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
                hint = f" Did you mean '{_join(prefix, close[0])}'?" if close else ""
                self.fail(
                    _join(prefix, str(key)), f"unknown key '{{key}}'.{hint} Valid keys{_at(prefix)}: {', '.join(names)}"
                )
        docs = field_docs(cls)
        ok = True
        for f, tp in fields:
            dotted = _join(prefix, f.name)
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    doc = docs.get(f.name)
                    self.fail(dotted, f"missing required key '{{key}}' ({_type_name(tp)}{': ' + doc if doc else ''})")
                    ok = False
                continue
            value = self.convert(data[f.name], tp, dotted)
            if value is _INVALID:
                ok = False
                continue
            if not self.constrain(value, tp, _constraints(f), dotted):
                ok = False
                continue
            kwargs[f.name] = value
        if not ok or len(self.issues) > before:
            return _INVALID
        try:
            instance = cls(**kwargs)
        except ConfigError as exc:
            for k, m in exc.issues:
                self.fail(_join(prefix, k), m)
            return _INVALID
        except (TypeError, ValueError) as exc:
            return self.fail(prefix, f"{cls.__name__} rejected the values: {exc}")
        return instance

    # -- types -----------------------------------------------------------------------------------

    def convert(self, value: Any, tp: Any, key: str) -> Any:
        if tp is Any:
            return value
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping) and not isinstance(value, tp):
                return self.fail(key, f"expected a mapping ({tp.__name__}), {_got(value)}")
            return self.build(tp, value, key)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if _is_union(tp):
            if value is None:
                if type(None) in args:
                    return None
                return self.fail(key, f"expected {_type_name(tp)}, got None")
            members = [a for a in args if a is not type(None)]
            for member in members:
                trial = _Builder()
                out = trial.convert(value, member, key)
                if out is not _INVALID:
                    return out
            if len(members) == 1:
                return self.convert(value, members[0], key)  # report the member's own message
            return self.fail(key, f"expected {_type_name(tp)}, {_got(value)}")
        if origin is Literal:
            for choice in args:
                if value == choice and type(value) is type(choice):
                    return choice
            return self.fail(key, f"{_show(value)} is not allowed: choose one of {', '.join(repr(a) for a in args)}")
        if origin in (list, tuple):
            if not isinstance(value, (list, tuple)):
                return self.fail(key, f"expected {_type_name(tp)} (a YAML list), {_got(value)}")
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis) and args:
                if len(value) != len(args):
                    return self.fail(key, f"expected {_type_name(tp)} with exactly {len(args)} items, got {len(value)}")
                item_types = list(args)
            else:
                item_types = [args[0] if args else Any] * len(value)
            out = [self.convert(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, item_types))]
            if any(v is _INVALID for v in out):
                return _INVALID
            return tuple(out) if origin is tuple else out
        if origin is dict:
            if not isinstance(value, Mapping):
                return self.fail(key, f"expected {_type_name(tp)} (a YAML mapping), {_got(value)}")
            ktp, vtp = args if args else (Any, Any)
            result = {}
            for k, v in value.items():
                ck = self.convert(k, ktp, f"{key} (key {_show(k)})")
                cv = self.convert(v, vtp, _join(key, str(k)))
                if ck is not _INVALID and cv is not _INVALID:
                    result[ck] = cv
            return result if len(result) == len(value) else _INVALID
        if tp is bool:
            if isinstance(value, bool):
                return value
            return self.fail(key, f"expected bool (true or false), {_got(value)}")
        if tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return self.fail(key, f"expected int, {_got(value)}")
        if tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            return self.fail(key, f"expected float, {_got(value)}")
        if tp is str:
            if isinstance(value, str):
                return value
            return self.fail(key, f"expected str, {_got(value)}")
        if isinstance(tp, type):
            if isinstance(value, tp):
                return value
            return self.fail(key, f"expected {tp.__name__}, {_got(value)}")
        raise TypeError(f"unsupported field type {tp!r} for '{key}'")

    # -- constraints -----------------------------------------------------------------------------

    def constrain(self, value: Any, tp: Any, cons: _Constraints, key: str) -> bool:
        if value is None:
            return True
        before = len(self.issues)
        if _is_sequence_type(tp) and isinstance(value, (list, tuple)):
            if cons.min_len is not None and len(value) < cons.min_len:
                self.fail(key, f"needs at least {cons.min_len} item(s), got {len(value)}")
            if cons.max_len is not None and len(value) > cons.max_len:
                self.fail(key, f"takes at most {cons.max_len} item(s), got {len(value)}")
            for i, item in enumerate(value):
                self._check_scalar(item, cons, f"{key}[{i}]")
        else:
            self._check_scalar(value, cons, key)
        return len(self.issues) == before

    def _check_scalar(self, value: Any, cons: _Constraints, key: str) -> None:
        if value is None:
            return
        bounds = [
            (">=", cons.ge, lambda v, b: v >= b),
            (">", cons.gt, lambda v, b: v > b),
            ("<=", cons.le, lambda v, b: v <= b),
            ("<", cons.lt, lambda v, b: v < b),
        ]
        for op, bound, ok in bounds:
            if bound is not None and not ok(value, bound):
                self.fail(key, f"{_show(value)} is out of range: must be {op} {bound}")
                return
        if cons.choices is not None and value not in cons.choices:
            listed = ", ".join(_show_plain(c) for c in cons.choices)
            self.fail(key, f"{_show(value)} is not allowed: choose one of {listed}")
            return
        if cons.rule is not None and not cons.rule.test(value):
            self.fail(key, f"{_show(value)} is not allowed: must be {cons.rule.text}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _at(prefix: str) -> str:
    return f" in '{prefix}'" if prefix else ""


def _run_validators(cfg: Any, prefix: str, issues: list[tuple[str, str]]) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            _run_validators(value, _join(prefix, f.name), issues)
    hook = getattr(cfg, "validate", None)
    if callable(hook):
        try:
            hook()
        except ConfigError as exc:
            issues.extend((_join(prefix, k) if k else prefix, m) for k, m in exc.issues)
        except ValueError as exc:
            issues.append((prefix, str(exc)))


def _build(cls: type[T], data: Any, source: str) -> T:
    builder = _Builder()
    cfg = builder.build(cls, data, "")
    if cfg is _INVALID or builder.issues:
        raise ConfigError(builder.issues, source=source, cls_name=cls.__name__)
    issues: list[tuple[str, str]] = []
    _run_validators(cfg, "", issues)
    if issues:
        raise ConfigError(issues, source=source, cls_name=cls.__name__)
    return cfg


# --------------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads ``1e-3`` as a float (YAML 1.2 style)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    result: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in result:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark)
        result[key] = loader.construct_object(value_node, deep=deep)
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(path: Path, shown: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("", "file not found")], source=shown) from None
    except OSError as exc:
        raise ConfigError([("", f"cannot read the file: {exc}")], source=shown) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"invalid YAML: {' '.join(str(exc).split())}")], source=shown) from None
    return {} if data is None else data


def repo_root() -> Path:
    """The repository checkout this package lives in (the folder holding ``pyproject.toml``)."""
    return Path(__file__).resolve().parent.parent


def repo_path(path: str | os.PathLike) -> Path:
    """An absolute path; a relative one is taken relative to the repository root (not the working directory).

    Lets a notebook opened interactively in ``notebooks/`` use the same ``run_dir = "outputs/quick"``
    as a run from the repository root.
    """
    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_root() / p


def _resolve_config_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    alt = repo_path(p)  # notebooks opened in notebooks/ still find params/... paths
    return alt if alt.exists() else p


def _apply_overrides(data: Any, overrides: Mapping[str, Any] | Iterable[str]) -> tuple[Any, list[str]]:
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        items = []
        for entry in overrides:
            if "=" not in entry:
                raise ConfigError([("", f"override {entry!r} must look like key=value")], source="overrides")
            key, raw = entry.split("=", 1)
            try:
                items.append((key.strip(), yaml.load(raw, Loader=_StrictLoader)))
            except yaml.YAMLError:
                items.append((key.strip(), raw))
    if not isinstance(data, Mapping):
        return data, []
    merged = copy.deepcopy(dict(data))
    shown = []
    for key, value in items:
        *parents, last = str(key).split(".")
        node = merged
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}  # a dotted override says this is a mapping; validation checks that
            node = node[part]
        node[last] = value
        shown.append(f"{key}={_show(value, 30)}")
    return merged, shown


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def load_config(
    cls: type[T],
    path_or_dict: str | os.PathLike | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | Iterable[str] | None = None,
) -> T:
    """Read, check and build a ``cls`` instance from a YAML file (or a mapping).

    ``overrides`` replaces values after loading: a mapping of dotted keys (``{"model.lr": 0.1}``) or
    ``"key=value"`` strings whose values are parsed as YAML. ``None`` for ``path_or_dict`` means
    "all defaults". Raises :class:`ConfigError` naming the file, the dotted key and what is allowed.
    """
    if path_or_dict is None:
        data: Any = {}
        source = "<defaults>"
    elif isinstance(path_or_dict, Mapping):
        data = dict(path_or_dict)
        source = "<dict>"
    elif not isinstance(path_or_dict, (str, os.PathLike)):
        data = path_or_dict
        source = f"<{type(path_or_dict).__name__}>"
    else:
        source = os.fspath(path_or_dict)
        data = _read_yaml(_resolve_config_path(path_or_dict), source)
    if overrides:
        data, shown = _apply_overrides(data, overrides)
        if shown:
            source = f"{source} (with overrides {', '.join(shown)})"
    return _build(cls, data, source)


def validate_config(cfg: T) -> T:
    """Run every check on an instance built directly in Python; returns it, or raises :class:`ConfigError`."""
    return _build(type(cfg), config_to_dict(cfg), f"<{type(cfg).__name__} instance>")


def config_to_dict(cfg: Any) -> Any:
    """A plain structure (dicts, lists, scalars) of a config, ready for YAML or JSON."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, Mapping):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, os.PathLike):
        return os.fspath(cfg)
    return cfg


def dump_config(cfg: Any, path: str | os.PathLike, header: str | None = None) -> Path:
    """Write a config as YAML (atomically: temp file + ``os.replace``); ``header`` becomes ``#`` comments."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None, allow_unicode=True)
    if header:
        text = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + text
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "*required*"
    if dataclasses.is_dataclass(value):
        return "(see below)"
    try:
        text = json.dumps(config_to_dict(value))
    except (TypeError, ValueError):
        text = repr(value)
    return f"`{_md(text)}`"


def _rows(cls: type, prefix: str) -> list[list[str]]:
    docs = field_docs(cls)
    rows = []
    for f, tp in _fields(cls):
        key = _join(prefix, f.name)
        cons = _constraints(f)
        allowed = cons.describe(per_element=_is_sequence_type(tp))
        base = _strip_optional(tp)
        if typing.get_origin(base) is Literal and not allowed:
            allowed = "one of " + ", ".join(_show_plain(a) for a in typing.get_args(base))
        rows.append([f"`{key}`", f"`{_md(_type_name(tp))}`", _default_text(f), _md(allowed), _md(docs.get(f.name, ""))])
        if isinstance(base, type) and dataclasses.is_dataclass(base):
            rows.extend(_rows(base, key))
    return rows


def describe(cls: type) -> str:
    """A Markdown table of ``cls``'s fields: key, type, default, allowed values and description."""
    head = ["key", "type", "default", "allowed", "description"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(cls, "")]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Notebook configurations
# --------------------------------------------------------------------------------------------------


@dataclass
class TasksConfig:
    """Notebook 01: sample AnyMDP tasks, compare their statistics with the reference, explore one."""

    seed: int = param(0, ge=0)
    "Base random seed; every task drawn in the notebook derives from it."
    na: int = param(5, ge=2)
    "Number of actions of every task."
    example_ns: list[int] = param([16], rule=STATE_COUNT, min_len=1)
    "State counts of the example tasks shown."
    stats_ns: list[int] = param([1, 16, 32], rule=STATE_COUNT, min_len=1)
    "State counts for the statistics-vs-reference table (1 = bandit)."
    stats_tasks_per_ns: int = param(20, ge=1)
    "Tasks drawn per state count for the statistics."
    explorer_ns: int = param(16, rule=STATE_COUNT)
    "State count of the task the interactive explorer opens with."
    timing_ns: list[int] = param([16, 32, 64], rule=STATE_COUNT, min_len=1)
    "State counts whose task-sampling time is measured."
    timing_repeats: int = param(3, ge=1)
    "Repeats of each timing measurement."
    play_steps: int = param(200, ge=1)
    "Steps taken by the explorer's play mode."


@dataclass
class MixtureConfig:
    """Behaviour mixture of decoupled policy distillation (paper section 2); defaults are the paper's."""

    w_drift_random: float = param(0.10, ge=0)
    "Weight of the drifting random softmax policy (tag 6)."
    w_model_based: float = param(0.10, ge=0)
    "Weight of the model-based learner with optimism bonus and decaying noise (tag 4, noise tag 6)."
    w_q_learning: float = param(0.10, ge=0)
    "Weight of the Q-learner with decaying noise (tag 5, noise tag 6)."
    w_mb_oracle: list[float] = param([0.10, 0.10, 0.10, 0.10], ge=0, min_len=4, max_len=4)
    "Weights of the model-based learner mixed with oracle_i, i = 0..3 (oracle gammas 0, 0.5, 0.93, 0.994)."
    w_noisy_oracle: list[float] = param([0.10, 0.10], ge=0, min_len=2, max_len=2)
    "Weights of the epsilon-noisy oracles with gamma 0.93 and 0.994."
    w_oracle: list[float] = param([0.02, 0.03, 0.05], ge=0, min_len=3, max_len=3)
    "Weights of the pure oracles with gamma 0.5, 0.93 and 0.994."
    switch_fraction: float = param(0.85, ge=0, le=1)
    "Fraction of sequences whose behaviour may be re-drawn at episode ends."
    switch_prob: float = param(0.2, ge=0, le=1)
    "Probability of re-drawing the behaviour at each episode end (in those sequences)."
    seq_mask_prob: float = param(0.15, ge=0, le=1)
    "Probability that every tag of a sequence is set to 7 (unknown)."
    episode_mask_prob: float = param(0.15, ge=0, le=1)
    "Probability that every tag of an episode is set to 7 (unknown), independently per episode."
    learner_noise_prob: float = param(0.5, ge=0, le=1)
    "Probability that a sequence's learner (drawn per learner) is in the noisy branch, else the noise-free one."
    learner_noise_range: list[float] = param([0.1, 0.5], ge=0, le=1, min_len=2, max_len=2)
    "Range of the initial noise probability of a noisy learner (uniform)."
    learner_noise_decay: float = param(0.1, ge=0)
    "Noise decays per step by U(0, learner_noise_decay / (ns * na))."
    learner_c_base: float = param(0.005, ge=0)
    "Model-based bonus scale c: exactly this in the noise-free branch, this * Exp(1) in the noisy branch."
    learner_alpha_base: float = param(0.01, gt=0)
    "Q-learner step-size scale alpha: exactly this in the noise-free branch, this * Exp(1) in the noisy branch."
    learner_gamma_range: list[float] = param([0.90, 0.99], ge=0, lt=1, min_len=2, max_len=2)
    "Range of a learner's discount in the noise-free branch (uniform)."
    learner_noisy_gamma: float = param(0.99, ge=0, lt=1)
    "Discount of a learner in the noisy branch."
    mb_oracle_random_start: list[float] = param([0.0, 1.0], min_len=2, max_len=2)
    "Range of the initial random-action probability of the model-based + oracle mixture."
    mb_oracle_random_floor: list[float] = param([-0.5, 0.5], min_len=2, max_len=2)
    "Range of the floor the random-action probability decays to (negative acts as 0)."
    mb_oracle_oracle_start: list[float] = param([-2.0, -0.5], min_len=2, max_len=2)
    "Range of the initial oracle probability (negative acts as 0)."
    mb_oracle_oracle_cap: list[float] = param([0.0, 0.2], min_len=2, max_len=2)
    "Range of the cap the oracle probability rises to."
    mb_oracle_rate: float = param(0.1, ge=0)
    "Both probabilities move per step by U(0, mb_oracle_rate / (ns * na))."
    noisy_oracle_decay: float = param(1.0, ge=0)
    "Epsilon of a noisy oracle starts at 1 and decays per step by U(0, noisy_oracle_decay / (ns * na))."
    drift_logit_scale: float = param(2.0, ge=0)
    "Mean of the exponential scale of the drifting policy's initial logits."
    drift_scale: float = param(1e-5, ge=0)
    "Mean of the exponential scale of the drifting policy's per-step perturbation."
    q_rule: str = param("softmax", choices=("softmax", "ucb"))
    "Exploration rule of the Q-learner behaviour (alpha is used by the softmax rule only)."

    def validate(self) -> None:
        for key in ("learner_noise_range", "learner_gamma_range"):
            lo, hi = getattr(self, key)
            check(lo <= hi, key, [lo, hi], "[low, high] with low <= high")


@dataclass
class DatasetConfig:
    """One synthesised dataset: everything that determines its bytes (with the seed)."""

    seed: int = param(0, ge=0)
    "Base seed; shard k is a pure function of (this config, seed, k)."
    preset: str = param("dpd", choices=("dpd", "ad", "ad_eps", "dpt", "no_tags"))
    "Data strategy: dpd (paper mixture), ad, ad_eps, dpt, no_tags (dpd with every tag 7)."
    task_source: str = param("anymdp", choices=("anymdp", "garnet"))
    "Task family of the sequences."
    ns: int = param(16, rule=STATE_COUNT)
    "Number of states (the lower end of the range when ns_max is set)."
    ns_max: int | None = param(None, rule=STATE_COUNT)
    "If set, each shard draws its ns uniformly from [ns, ns_max] (D_Large: 16..128)."
    na: int = param(5, ge=2, le=254)
    "Number of actions."
    garnet_branching: int = param(2, ge=1)
    "Successors per (s, a) of Garnet tasks."
    task_pool: int | None = param(None, ge=1)
    "If set, sequences draw their task from a fixed pool of this many distinct tasks (task-count ablation)."
    seq_len: int = param(8192, ge=2)
    "Steps per sequence T (boundary steps included)."
    n_sequences: int = param(131072, ge=1)
    "Number of sequences in the dataset."
    sequences_per_shard: int = param(256, ge=1)
    "Sequences per shard file set (the last shard may hold fewer)."
    batch_size: int = param(128, ge=1)
    "Sequences advanced together as arrays (part of the data's identity)."
    label_gamma: float = param(0.994, gt=0, lt=1)
    "Discount of the label oracle."
    engine: str = param("numba", choices=("numba", "numpy"))
    "Simulation engine: compiled per-sequence loop (numba) or numpy arrays over the batch (same process)."
    mixture: MixtureConfig = param(MixtureConfig())
    "Behaviour mixture, schedules and tag masking."

    def validate(self) -> None:
        if self.ns_max is not None:
            check(self.ns_max >= self.ns, "ns_max", self.ns_max, f">= ns ({self.ns})")
            check(self.task_pool is None, "task_pool", self.task_pool, "unset when ns_max is set (a pool has one ns)")
        check(self.ns <= 65535 and (self.ns_max or 0) <= 65535, "ns", self.ns, "<= 65535")
        check(self.task_source != "garnet" or self.ns >= 8, "ns", self.ns, ">= 8 for Garnet tasks (no Garnet bandit)")


@dataclass
class SynthesisConfig:
    """Notebook 02: synthesise datasets by decoupled policy distillation and look at them."""

    datasets: dict[str, DatasetConfig] = param({"d_small": DatasetConfig()})
    "Datasets to synthesise, by name (each goes to DATA_DIR/<name>)."
    data_dir: str = param("data")
    "Where datasets go, relative to the run folder (or absolute)."
    workers: int = param(2, ge=1)
    "Worker processes (does not change the data)."
    show_sequences: int = param(3, ge=0)
    "Sequences drawn in the look at the data."
    show_steps: int = param(300, ge=10)
    "Steps of each sequence drawn."
    curve_bins: int = param(16, ge=2)
    "Bins along the sequence for the per-tag reward curves."
    loader_batch: int = param(8, ge=1)
    "Batch size of the loader demonstration."
    loader_chunk: int = param(512, ge=1)
    "Chunk length of the loader demonstration."


class _LazyRegistry(MutableMapping):
    """Notebook stem -> configuration class; a ``"module:Class"`` entry is imported on first access, so that
    modules which import this one (training, evaluation, ablations) can be listed here without an import cycle."""

    def __init__(self, entries: Mapping[str, type | str]) -> None:
        self._entries = dict(entries)

    def __getitem__(self, stem: str) -> type:
        value = self._entries[stem]
        if isinstance(value, str):
            module, _, attr = value.partition(":")
            value = getattr(importlib.import_module(module), attr)
            self._entries[stem] = value
        return value

    def __setitem__(self, stem: str, cls: type) -> None:
        self._entries[stem] = cls

    def __delitem__(self, stem: str) -> None:
        del self._entries[stem]

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"NOTEBOOK_CONFIGS({', '.join(self._entries)})"


NOTEBOOK_CONFIGS: MutableMapping[str, type] = _LazyRegistry({
    "01_tasks": TasksConfig,
    "02_synthesis": SynthesisConfig,
    "03_training": "omnirl_core.training:TrainConfig",
    "04_evaluation": "omnirl_core.evaluation:EvaluationConfig",
    "05_ablations": "omnirl_core.ablations:AblationConfig",
})
"""Notebook stem (file name without ``.py``) -> its configuration class."""
