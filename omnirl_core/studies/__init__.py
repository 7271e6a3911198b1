"""Studies (paper section 6): the ablations of task count, tags, data strategy, backbone and Garnet training.

- :mod:`.ablations` study and variant configs, cached variant runs, summaries (notebook 05,
  ``python -m omnirl_core.studies``)
"""

from .ablations import (
           AblationConfig,
           StudyConfig,
           VariantResult,
           run_studies,
           run_variant,
           summary_rows,
           variant_configs,
)

__all__ = ["AblationConfig", "StudyConfig", "VariantResult", "run_studies", "run_variant", "summary_rows",
           "variant_configs"]
