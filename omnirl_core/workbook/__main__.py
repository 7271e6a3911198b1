"""``python -m omnirl_core.workbook run|check|describe``: see :mod:`omnirl_core.workbook.runner`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
