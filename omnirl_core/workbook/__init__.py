"""The workbook's machinery: the typed config engine every notebook and command line validates its parameters
with, and the papermill runner that executes the notebooks in order.

- :mod:`.fields` declaring fields (:func:`param`, :class:`Rule`), :class:`ConfigError`
- :mod:`.config` building and validating configs from YAML, dumping and describing them
- :mod:`.registry` which config class validates which notebook
- :mod:`.plugins` name-keyed registries (suites, backbones) and the plug-in modules of ``OMNIRL_PLUGINS``
- :mod:`.artefacts` what a notebook takes from the earlier notebooks of its run folder
- :mod:`.notebook` a notebook's configuration: its parameter file, then the values papermill injects
- :mod:`.runner`, :mod:`.cli` ``python -m omnirl_core.workbook run|check|audit|describe``
- :mod:`.figures` a figure shown once and saved; :mod:`.claims` a notebook's claims and their computed verdicts;
  :mod:`.audit` how an executed notebook reads; :mod:`.results` the quick run's numbers in the README

Only the config engine is imported here (it sits below every other subpackage); import the runner as
``omnirl_core.workbook.runner``.
"""

from .artefacts import MissingArtefact, run_artefact
from .config import config_to_dict, describe, dump_config, load_config, repo_path, repo_root, validate_config
from .fields import STATE_COUNT, ConfigError, Rule, check, field_docs, param
from .notebook import notebook_config

__all__ = [
    "ConfigError", "Rule", "STATE_COUNT", "check", "field_docs", "param",
    "load_config", "validate_config", "config_to_dict", "dump_config", "describe", "repo_path", "repo_root",
    "MissingArtefact", "run_artefact", "notebook_config",
]
