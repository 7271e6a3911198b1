"""``python -m omnirl_core.training``: see :mod:`omnirl_core.training.cli`."""

import os
import sys

from .cli import main

if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A rank of torchrun ends here after its process group is destroyed and every file is written (atomically,
        # fsynced). It skips the interpreter's finalisation: gloo's worker threads still alive there have aborted a
        # rank (SIGABRT, "terminate called without an active exception") after a run that had finished.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
