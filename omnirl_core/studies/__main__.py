"""``python -m omnirl_core.studies``: the ablation studies (see :func:`omnirl_core.studies.ablations.main`)."""

import sys

from .ablations import main

if __name__ == "__main__":
    sys.exit(main())
