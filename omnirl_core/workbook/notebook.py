"""A notebook's configuration from its parameter file and from the values papermill injects.

Every notebook loads its configuration with one call in the cell after its ``parameters`` cell::

    cfg = notebook_config("01_tasks", globals())

The call reads the YAML file named by ``config_path`` (the runner passes it; by hand it is the parameters cell's
default), then applies the values papermill injected (``-p NAME VALUE``, ``-f FILE``, ``-y YAML``) that name fields
of the notebook's configuration: the file first, then the injected values, all validated by the config engine.
A nested field is given as a mapping (``-y 'optim: {lr: 0.01}'``); a mapping merges into the file's mapping key by
key, at every depth, as the runner's ``--set optim.lr=0.01`` does (and, as there, it changes an entry of a name ->
section mapping such as ``datasets`` but never adds one); a list or a scalar replaces the file's value.
An injected name that is neither a field nor one of the notebook's own parameters (``config_path``, ``run_dir``)
stops the notebook there, naming the closest valid name. The configuration that runs is written to
``RUN_DIR/NN_name.config.yaml``.

Papermill writes what it injects as a cell of assignments starting ``# Parameters`` right after the parameters
cell; IPython keeps each executed cell's source in ``In``. The names that cell assigns are the injected ones, and
the names the cell before it assigns are the notebook's own parameters; their values are read from the notebook's
globals. A notebook run without papermill (JupyterLab, a script) has no such cell: the file alone is the
configuration.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from .config import (
    ConfigError,
    _build,
    _check_override_path,
    _resolve_config_path,
    dump_config,
    repo_path,
    unknown_key_message,
)
from .fields import _fields, _is_union, _show
from .registry import NOTEBOOK_CONFIGS
from .yamlfile import _read_yaml, _StrictLoader

INJECTED_HEADER = "# Parameters"
"""The comment papermill puts at the top of the cell of values it injects (Python kernels)."""


@dataclasses.dataclass
class Injected:
    """What papermill injected into a notebook: the values by name, and the notebook's own parameter names."""

    values: dict[str, Any]
    notebook_parameters: list[str]


def _assigned_names(source: str) -> list[str] | None:
    """The names a cell's source assigns at top level, in order; None when it is not plain Python."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name) and leaf.id not in names:
                    names.append(leaf.id)
    return names


def _only_assignments(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return all(isinstance(node, ast.Assign) for node in tree.body)


def injected_parameters(namespace: Mapping[str, Any]) -> Injected | None:
    """The values papermill injected into the kernel whose globals are ``namespace`` (its latest injected cell),
    or None when nothing was injected (no papermill, or papermill without parameters)."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return None
    for index in range(len(history) - 1, 0, -1):
        source = history[index]
        if isinstance(source, str) and source.lstrip().startswith(INJECTED_HEADER) and _only_assignments(source):
            names = _assigned_names(source) or []
            before = _assigned_names(history[index - 1]) if index > 1 else None
            return Injected(values={n: namespace[n] for n in names if n in namespace},
                            notebook_parameters=before or [])
    return None


def _accepts_text(tp: Any) -> bool:
    if tp is Any or tp is str:
        return True
    if _is_union(tp):
        return any(_accepts_text(member) for member in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return any(isinstance(choice, str) for choice in typing.get_args(tp))
    return False


def _retyped(value: Any, tp: Any) -> Any:
    """``value`` with text read as YAML where the field does not take text.

    Papermill passes ``-p also_shipped false`` and ``-p stats_ns "[1, 16]"`` as text, and reads ``-f``/``-y``
    files as YAML 1.1, where ``1e-3`` is text; the runner's ``--set`` reads such values as YAML, and so does this.
    """
    if isinstance(value, str):
        if _accepts_text(tp):
            return value
        try:
            return yaml.load(value, Loader=_StrictLoader)
        except yaml.YAMLError:
            return value
    if _is_union(tp):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        return _retyped(value, members[0]) if len(members) == 1 else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
        types = {f.name: t for f, t in _fields(tp)}
        return {k: _retyped(v, types[k]) if k in types else v for k, v in value.items()}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is dict and isinstance(value, Mapping) and len(args) == 2:
        return {k: _retyped(v, args[1]) for k, v in value.items()}
    if origin in (list, tuple) and isinstance(value, (list, tuple)) and args:
        fixed = origin is tuple and not (len(args) == 2 and args[1] is Ellipsis) and len(args) == len(value)
        item_types = list(args) if fixed else [args[0]] * len(value)
        return [_retyped(v, t) for v, t in zip(value, item_types)]
    return value


def _leaves(values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of the leaves of nested mappings (an empty mapping is a leaf)."""
    out: list[str] = []
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        out += _leaves(value, dotted + ".") if isinstance(value, Mapping) and value else [dotted]
    return out


def _merged(base: Any, extra: Any) -> Any:
    """``extra`` over ``base``: mappings merge key by key at every depth; anything else replaces."""
    if isinstance(base, Mapping) and isinstance(extra, Mapping):
        out = dict(base)
        for key, value in extra.items():
            out[key] = _merged(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(extra)


def notebook_config(stem: str, namespace: Mapping[str, Any], *, echo: bool = True) -> Any:
    """The validated configuration of notebook ``stem`` (e.g. ``"01_tasks"``, a key of
    :data:`~omnirl_core.workbook.registry.NOTEBOOK_CONFIGS`), from the file ``namespace["config_path"]`` and the
    values papermill injected into ``namespace`` (the notebook's ``globals()``); written to
    ``RUN_DIR/<stem>.config.yaml`` (``namespace["run_dir"]``, relative to the repository). Raises
    :class:`~omnirl_core.workbook.fields.ConfigError` naming the file, the injected values and the key."""
    cls = NOTEBOOK_CONFIGS[stem]
    config_path = namespace.get("config_path")
    if not isinstance(config_path, (str, os.PathLike)):
        raise ConfigError([("config_path", f"must be the path of a parameter file, got {_show(config_path)}")],
                          source=f"notebook {stem}")
    source = os.fspath(config_path)
    data = _read_yaml(_resolve_config_path(config_path), source)
    injected = injected_parameters(namespace)
    if injected is not None:
        fields = {f.name: tp for f, tp in _fields(cls)}
        own = [n for n in injected.notebook_parameters if n not in fields] or ["config_path", "run_dir"]
        unknown = [n for n in injected.values if n not in fields and n not in own]
        if unknown:
            extra = (f"notebook {stem}'s own parameters", own)
            raise ConfigError([(n, unknown_key_message(n, list(fields), extra=extra)) for n in unknown],
                              source=f"papermill parameters of notebook {stem}", cls_name=cls.__name__)
        values = {n: _retyped(v, fields[n]) for n, v in injected.values.items() if n in fields}
        if values:
            shown = ", ".join(f"{n}={_show(v, 30)}" for n, v in values.items())
            source = f"{source} with papermill parameters {shown}"
            if isinstance(data, Mapping):
                for key in _leaves(values):  # as --set: a value changes an entry of datasets.<name>, never adds one
                    _check_override_path(cls, data, key, source)
                data = _merged(data, values)
    cfg = _build(cls, data, source)
    run_dir = namespace.get("run_dir")
    if isinstance(run_dir, (str, os.PathLike)):
        saved = dump_config(cfg, repo_path(run_dir) / f"{stem}.config.yaml",
                            header=f"Parameters notebook {stem} ran with: {source}")
        if echo:
            print(f"{stem}: {source} ({cls.__name__}); saved as {_relative(saved)}")
    return cfg


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
