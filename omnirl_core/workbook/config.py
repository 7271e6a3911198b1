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

Why not pydantic: it validates the same dataclasses, but its errors name a location tuple
(``('model', 'hidden_size')``) and not the file the values came from, it coerces ``"3"`` to ``3`` and ``1`` to
``True`` unless every model is set to strict mode, and it does not read the one-line field docstrings that
``describe`` turns into each notebook's parameter table. Ours is one dependency fewer and its messages name the
file, the dotted key, what was received and what is allowed, with a "did you mean" for a misspelt key.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from .atomic import write_text_atomic
from .fields import (
    ConfigError,
    _Constraints,
    _constraints,
    _fields,
    _got,
    _is_sequence_type,
    _is_union,
    _show,
    _show_plain,
    _strip_optional,
    _type_name,
    field_docs,
)
from .yamlfile import _read_yaml, _StrictLoader

T = TypeVar("T")
_INVALID = object()  # sentinel: conversion failed, an issue was recorded




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
                self.fail(_join(prefix, str(key)), unknown_key_message(key, names, prefix))
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


def unknown_key_message(key: Any, names: list[str], prefix: str = "",
                        extra: tuple[str, list[str]] | None = None) -> str:
    """The message for a key that names no field (its ``{key}`` is filled in by :class:`ConfigError`): the closest
    name as "did you mean", then the valid keys; ``extra`` is ``(label, names)`` of other names that are valid
    here too (a notebook's own parameters), listed after the fields and searched for the closest name as well."""
    label, others = extra if extra else ("", [])
    close = difflib.get_close_matches(str(key), [*names, *others], n=1, cutoff=0.6)
    hint = f" Did you mean '{_join(prefix, close[0])}'?" if close else ""
    tail = f"; {label}: {', '.join(others)}" if others else ""
    return f"unknown key '{{key}}'.{hint} Valid keys{_at(prefix)}: {', '.join(names)}{tail}"


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _at(prefix: str) -> str:
    return f" in '{prefix}'" if prefix else ""


def _is_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _run_validators(cfg: Any, prefix: str, issues: list[tuple[str, str]]) -> None:
    """Every ``validate()`` of ``cfg`` and of the configs inside it (fields, dicts and lists of them), innermost
    first; a config whose parts failed is not validated as a whole (its rules may assume valid parts)."""
    before = len(issues)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = _join(prefix, f.name)
        if _is_instance(value):
            _run_validators(value, key, issues)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                if _is_instance(v):
                    _run_validators(v, _join(key, str(k)), issues)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                if _is_instance(v):
                    _run_validators(v, f"{key}[{i}]", issues)
    if len(issues) > before:
        return
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


def repo_root() -> Path:
    """The repository checkout this package lives in (the folder holding ``pyproject.toml``)."""
    return Path(__file__).resolve().parents[2]


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


def _check_override_path(cls: type | None, data: Mapping, key: str, source: str) -> None:
    """A dotted override changes an entry of a name -> section mapping (``datasets.<name>``) that exists; it never
    creates one, which would hold every other value at its default (a misspelt name would run a new dataset)."""
    tp, node, parts = cls, data, str(key).split(".")
    for depth, part in enumerate(parts[:-1]):
        tp = _strip_optional(tp) if tp is not None else None
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            tp = {f.name: hint for f, hint in _fields(tp)}.get(part)
        elif typing.get_origin(tp) is dict:
            if isinstance(node, Mapping) and part not in node:
                prefix = ".".join(parts[:depth])
                names = [str(n) for n in node]
                close = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
                hint = f" Did you mean '{prefix}.{close[0]}'?" if close else ""
                raise ConfigError([(key, f"override of '{prefix}.{part}', which the file does not have: an override "
                                         f"changes an entry, it does not create one.{hint} Entries: "
                                         f"{', '.join(names) or 'none'}")], source=source)
            tp = typing.get_args(tp)[1] if len(typing.get_args(tp)) == 2 else None
        else:
            return
        node = node.get(part) if isinstance(node, Mapping) else None


def _apply_overrides(data: Any, overrides: Mapping[str, Any] | Iterable[str], cls: type | None = None,
                     source: str = "overrides") -> tuple[Any, list[str]]:
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
        _check_override_path(cls, data, key, source)
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
        data, shown = _apply_overrides(data, overrides, cls, source)
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
    write_text_atomic(path, text, fsync=False)
    return path


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
