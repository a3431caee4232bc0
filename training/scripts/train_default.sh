#!/usr/bin/env bash
# Re-train a model from scratch, end to end: phantom cohort -> fit -> evaluate (test split, beside
# thresholding) -> bundle with its training and evaluation summary.
#
#   training/scripts/train_default.sh OUT_DIR
#
# Settings (environment; defaults re-train the shipped default model on the CPU):
#   PATIENTS=72 SEED=2026 SIZE=256 SLICES=16 FRAMES=40 WORKERS=2   phantom cohort
#   PERFUSION_METHOD=model   method(s) of the cohort's maps (e.g. bcsvd+correction,model; default the product's default method)
#   CONFIG=default_model   training config (training/configs/<name>.json or a path)
#   SETTINGS="--set lr=1e-4 ..."   extra overrides;  MAX_MINUTES=60  training time box
#   DEVICE=auto  MODEL_ID=sf-pmsn-small  VERSION=1.0.0
#   TRAIN=strokeperfusionseg-train   the training command (e.g. TRAIN=.venv/bin/strokeperfusionseg-train)
# Smoke test (about two minutes; one cohort part, so that 10 patients fill every split):
#   PATIENTS=10 WORKERS=1 SIZE=64 SLICES=4 FRAMES=30 SETTINGS="--set max_epochs=1 --set model.image_size=64" \
#     training/scripts/train_default.sh /tmp/smoke
# A rerun with the same OUT_DIR reuses the cohort and resumes the run.
set -euo pipefail

OUT=${1:?usage: train_default.sh OUT_DIR}
read -r -a TRAIN <<< "${TRAIN:-strokeperfusionseg-train}"
PATIENTS=${PATIENTS:-72} SEED=${SEED:-2026} SIZE=${SIZE:-256} SLICES=${SLICES:-16} FRAMES=${FRAMES:-40}
WORKERS=${WORKERS:-2} CONFIG=${CONFIG:-default_model} MAX_MINUTES=${MAX_MINUTES:-60} DEVICE=${DEVICE:-auto}
MODEL_ID=${MODEL_ID:-sf-pmsn-small} VERSION=${VERSION:-1.0.0}
read -r -a EXTRA <<< "${SETTINGS:-}"
mkdir -p "$OUT"
LOG="$OUT/timings.txt"
stage() { echo "$(date -u +%FT%TZ) $*" | tee -a "$LOG"; }

COHORT_CMD=("${TRAIN[@]}" cohort --out "$OUT/cohort" --patients "$PATIENTS" --seed "$SEED" --workers "$WORKERS"
            --size "$SIZE" --slices "$SLICES" --frames "$FRAMES")
METHOD_ARGS=()
if [ -n "${PERFUSION_METHOD:-}" ]; then
  METHOD_ARGS=(--perfusion-method "$PERFUSION_METHOD")
  COHORT_CMD+=("${METHOD_ARGS[@]}")
fi
if [ ! -f "$OUT/cohort/cases.csv" ]; then
  stage "cohort: ${COHORT_CMD[*]}"
  start=$SECONDS
  OMP_NUM_THREADS=1 "${COHORT_CMD[@]}"
  stage "cohort done in $((SECONDS - start)) s"
fi
CASES="$OUT/cohort/cases.csv"

stage "fit: $CONFIG ${EXTRA[*]:-} (max $MAX_MINUTES min)"
start=$SECONDS
"${TRAIN[@]}" fit "$CONFIG" --cohort "$CASES" --out "$OUT/run" --device "$DEVICE" \
  --max-minutes "$MAX_MINUTES" "${EXTRA[@]}"
FIT_S=$((SECONDS - start))
stage "fit done in $FIT_S s"

stage "evaluate on the test split"
"${TRAIN[@]}" evaluate --model "$MODEL_ID=$OUT/run" --cohort "$CASES" --split test \
  --out "$OUT/evaluation" --device "$DEVICE" > /dev/null
stage "export $MODEL_ID $VERSION"
rm -rf "${OUT:?}/$MODEL_ID"
"${TRAIN[@]}" export "$OUT/run" --out "$OUT" --model-id "$MODEL_ID" --version "$VERSION" \
  --evaluation "$OUT/evaluation/summary.json" \
  --record "cohort=strokeperfusionseg-train cohort --patients $PATIENTS --seed $SEED --workers $WORKERS --size $SIZE --slices $SLICES --frames $FRAMES${METHOD_ARGS[*]:+ ${METHOD_ARGS[*]}}" --record "config=$CONFIG ${EXTRA[*]:-}" \
  --record "script_fit_wall_s=$FIT_S"
stage "done: bundle $OUT/$MODEL_ID, report $OUT/evaluation/report.md"
