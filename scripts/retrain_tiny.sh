#!/usr/bin/env bash
# Re-train OmniRL-tiny (bandits) from scratch with the recipe in params/tiny/ (the shipped model's own recipe is
# this script at git tag data-process-v1; today's: bench/results/omnirl_tiny_bandit_retrained.md), on CPU:
# synthesis (~15 s), training (~4 min on one core of a 2-core machine), then the online evaluation of the
# result beside the shipped checkpoint on the same 64 unseen bandits. Nothing under models/ is touched;
# pass --install to copy the new weights over the shipped ones afterwards.
#   bash scripts/retrain_tiny.sh [--install] [--out outputs/tiny]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT=outputs/tiny
INSTALL=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --install) INSTALL=1; shift ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "usage: bash scripts/retrain_tiny.sh [--install] [--out DIR]" >&2; exit 2 ;;
    esac
done
bash scripts/setup_venv.sh
PY=.venv/bin/python
export OMP_NUM_THREADS=1  # a 0.1M-parameter model trains fastest on one thread
$PY -m omnirl_core.synthesis params/tiny/02_synthesis.yaml --out "$OUT/02_synthesis"
$PY -m omnirl_core.training params/tiny/03_training.yaml --out "$OUT/03_training" \
    data.path="$OUT/02_synthesis/dpd_bandit" --resume  # --resume: continue an interrupted run
echo "== re-trained model"
$PY -m omnirl_core.evaluation "$OUT/03_training/model.safetensors" --suite anymdp_1 --steps 400 --temperature 1.0 \
    --out "$OUT/online_anymdp_1.json"
echo "== shipped model (models/omnirl-tiny-bandit)"
$PY -m omnirl_core.evaluation models/omnirl-tiny-bandit --suite anymdp_1 --steps 400
if [[ $INSTALL == 1 ]]; then
    cp "$OUT/03_training/model.safetensors" models/omnirl-tiny-bandit/model.safetensors
    # the folder's config.json records the checksum of the weights it ships (checked on load)
    $PY - <<'PYEOF'
import json
from pathlib import Path
from safetensors import safe_open
path = Path("models/omnirl-tiny-bandit")
with safe_open(str(path / "model.safetensors"), "pt") as fh:
    digest = (fh.metadata() or {})["weights_sha256"]
cfg = json.loads((path / "config.json").read_text())
cfg["weights_sha256"] = digest
(path / "config.json").write_text(json.dumps(cfg, indent=1))
PYEOF
    echo "installed $OUT/03_training/model.safetensors as models/omnirl-tiny-bandit/model.safetensors"
fi
