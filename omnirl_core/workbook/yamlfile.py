"""Reading a parameter file: strict YAML (duplicate keys refused, ``1e-3`` read as a float) and the file-level
problems (missing, unreadable, invalid or empty), each a :class:`~omnirl_core.workbook.fields.ConfigError` that
names the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .fields import ConfigError


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
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError([("", f"not UTF-8 text (byte {exc.object[exc.start]:#04x} on line {line}); save the file "
                                "as UTF-8")], source=shown) from None
    except OSError as exc:
        raise ConfigError([("", f"cannot read the file: {exc}")], source=shown) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"invalid YAML: {' '.join(str(exc).split())}")], source=shown) from None
    if data is None:
        raise ConfigError([("", "the file is empty (no keys); write the parameters, or '{}' for every default")],
                          source=shown)
    return data
