"""``python -m omnirl_core.studies``: the ablation studies (see :func:`omnirl_core.studies.cli.main`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
