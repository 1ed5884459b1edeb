#!/usr/bin/env bash
# The paper's ablation at equal steps: every row the fast student from the same ImageNet trunk (no other start),
# the same seed, data and step count; only the loss differs (core/train/config.py: ABLATION_LOSSES). Rows run
# JOBS at a time and resume from their run folders, so an interrupted ablation continues where it stopped.
# Each row's last checkpoint is then scored with core.eval on the validation split (RUNS/ROW.eval.json).
# Usage (repo root): STEPS=300 JOBS=2 [TEACHER=CHECKPOINT] [ROWS="seg logit"] bash scripts/ablation.sh
set -euo pipefail
RUNS=${RUNS:-runs/ablation}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-.pack/davis240}
STEPS=${STEPS:-300}
BATCH=${BATCH:-8}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
ROWS=${ROWS:-seg logit rep-all rep-boundary omega0}
TEACHER=${TEACHER:-core/weights/mobilevos-teacher-s4gpu.pt}  # the shipped teacher (manifest.json)
EVAL_ROOT=${EVAL_ROOT:-../shared/data/davis2016-train}
export RUNS PY DATA STEPS BATCH THREADS TEACHER PYTHONUNBUFFERED=1
mkdir -p "$RUNS"
[ -d "$DATA" ] || "$PY" -m core.train.pack "$EVAL_ROOT" "$DATA" --quality 70  # the frames at 240p, made once

row() {  # ROW: train it (resuming), its console output in $RUNS/ROW.log
    "$PY" -m core.train --preset "abl-fast-$1" --out "$RUNS/$1" --data "$DATA" --steps "$STEPS" --batch "$BATCH" \
        --threads "$THREADS" --teacher "$TEACHER" --no-val --val-every 50 > "$RUNS/$1.log" 2>&1
    echo "$(date +%T) $1 trained"
}
export -f row
printf '%s\n' $ROWS | xargs -P "$JOBS" -I{} bash -c 'row {}'

sequences=$("$PY" -c "from core.train.config import VALIDATION_SEQUENCES as s; print(','.join(s))")
for r in $ROWS; do
    "$PY" -m core.eval "$EVAL_ROOT" --sequences "$sequences" --weights "$RUNS/$r/last.pt" --backend onnx \
        --json "$RUNS/$r.eval.json" 2>/dev/null | grep "^mean" | sed "s/^mean/$r:/"
done
