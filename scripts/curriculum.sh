#!/usr/bin/env bash
# The OmniRL-tiny curriculum over the number of keys (params/tiny/curriculum/), stage by stage, each init_from the
# last: stand-in contextual bandits with 1 -> 4 states, 4 states for longer with the learning rate floored (where
# keyed memory appears), 8, 16 states, then AnyMDP(8) DPD data. Every stage resumes from its checkpoint, so
# rerunning the script after an interruption continues where it stopped; a finished stage is not repeated.
#   bash scripts/curriculum.sh            # into outputs/tiny/curriculum/<stage> (the YAMLs' init_from paths)
#   bash scripts/curriculum.sh --stage6   # only stage 6: the shipped AnyMDP model, 800 more iterations on its own
#                                         # data, without (6a) and with (6b) stand-in sequences, then both online
# About 40 minutes for the stand-in stages and ~25 more for the AnyMDP stage on one core; stage 6 about 1.5 hours
# (its data, 1.2 GB, about 3 minutes with one worker).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_venv.sh
OUT="outputs/tiny/curriculum"
PY=".venv/bin/python"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [[ "${1:-}" == "--stage6" ]]; then
    DATA=outputs/tiny/anymdp16/02_synthesis
    $PY -m omnirl_core.synthesis params/tiny/anymdp16_attempt/02_synthesis.yaml --out "$DATA" --workers 1 --no-progress
    for stage in 6a_anymdp16_continue 6b_anymdp16_mix; do
        echo "[curriculum] stage $stage" >&2
        $PY -m omnirl_core.training "params/tiny/curriculum/$stage.yaml" --out "$OUT/$stage" --resume --no-progress
        $PY -m omnirl_core.evaluation "$OUT/$stage/model.safetensors" --suite anymdp_16 --steps 4000 --val \
            --n-tasks 128 --threads 1 --out "$OUT/$stage/online_val_anymdp_16.json"
        $PY -m omnirl_core.evaluation "$OUT/$stage/model.safetensors" --loss-by-behaviour "$DATA/dpd_mdp" \
            --threads 1 --out "$OUT/$stage/loss_by_behaviour.json"
    done
    exit 0
fi
STAGES=(1_standin_ns1 2_standin_ns4 probe_standin_ns4_long 3b_standin_ns8 4b_standin_ns16 5_anymdp8)
for stage in "${STAGES[@]}"; do
    if [[ "$stage" == 5_anymdp8 ]]; then
        echo "[curriculum] synthesis of the AnyMDP(8) data" >&2
        $PY -m omnirl_core.synthesis params/tiny/curriculum/5_synthesis_anymdp8.yaml --out "$OUT/5_synthesis" \
            --workers 1 --no-progress
    fi
    echo "[curriculum] stage $stage" >&2
    $PY -m omnirl_core.training "params/tiny/curriculum/$stage.yaml" --out "$OUT/$stage" --resume --no-progress
    if [[ "$stage" == *standin* ]]; then
        ns="${stage##*ns}"; ns="${ns%%_*}"
        $PY scripts/keyed_diag.py "$ns" "$OUT/$stage/model.safetensors" | tee "$OUT/$stage/keyed_diag.txt"
    fi
done
echo "[curriculum] done; the last model: $OUT/5_anymdp8/model.safetensors" >&2
