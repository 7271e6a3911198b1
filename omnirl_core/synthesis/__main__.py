"""``python -m omnirl_core.synthesis``: see :mod:`omnirl_core.synthesis.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
