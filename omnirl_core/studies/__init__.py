"""Studies (paper section 6): the ablations of task count, tags, data strategy, backbone and Garnet training.

- :mod:`.ablations` study and variant configs, cached variant runs, summaries (notebook 05,
  ``python -m omnirl_core.studies``)
- :mod:`.cross_suite` every variant on further test suites, cached per suite, and the Table-1-style report
- :mod:`.seeds` a variant under several training seeds as one row (interval over seeds and tasks)
- :mod:`.archive` finished (variant, seed) results as small files kept across run folders (``results_dir``)
"""

from .ablations import (
           AblationConfig,
           StudyConfig,
           VariantResult,
           pool_results,
           run_studies,
           run_variant,
           summary_rows,
           variant_configs,
)
from .cross_suite import suite_table

__all__ = ["AblationConfig", "StudyConfig", "VariantResult", "pool_results", "run_studies", "run_variant",
           "summary_rows", "suite_table", "variant_configs"]
