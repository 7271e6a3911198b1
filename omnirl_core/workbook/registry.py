"""Which configuration class validates which notebook's parameters (imported by name, on first use).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, MutableMapping


class _LazyRegistry(MutableMapping):
    """Notebook stem -> configuration class; a ``"module:Class"`` entry is imported on first access, so that the
    config engine, which every subpackage imports, never imports them back."""

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
    "01_tasks": "omnirl_core.world.config:TasksConfig",
    "02_synthesis": "omnirl_core.synthesis.config:SynthesisConfig",
    "03_training": "omnirl_core.training.config:TrainConfig",
    "04_evaluation": "omnirl_core.evaluation.config:EvaluationConfig",
    "05_ablations": "omnirl_core.studies.ablations:AblationConfig",
})
"""Notebook stem (file name without ``.py``) -> its configuration class."""
