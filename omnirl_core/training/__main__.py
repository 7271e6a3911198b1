"""``python -m omnirl_core.training``: see :mod:`omnirl_core.training.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
