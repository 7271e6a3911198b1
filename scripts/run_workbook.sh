#!/usr/bin/env bash
# Run every notebook with the quick parameters (params/quick) into outputs/quick/.
# Extra arguments go to the runner, e.g.:  bash scripts/run_workbook.sh --only 01
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_venv.sh
exec .venv/bin/python -m omnirl_core.workbook run params/quick "$@"
