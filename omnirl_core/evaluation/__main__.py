"""``python -m omnirl_core.evaluation``: the in-context gain report of a model
(see :func:`omnirl_core.evaluation.incontext.main`)."""

import sys

from .incontext import main

if __name__ == "__main__":
    sys.exit(main())
