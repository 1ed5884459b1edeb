#!/usr/bin/env bash
# Trains the fast student architectures (core/train/config.py: s2-fast, s2-light-value) on one GPU, in parallel,
# warm-started from the shipped student (tensors whose name and shape match), then packs checkpoints and logs
# into $OUT. Usage (repo root): DATA=.pack/davis240 SECONDS_EACH=450 bash scripts/gpu_train_fast.sh
set -uo pipefail
DATA=${DATA:-.pack/davis240}
RUNS=${RUNS:-runs/fast}
S=${SECONDS_EACH:-450}
OUT=${OUT:-$RUNS/out}
PY=${PY:-python3}
INIT=${INIT:-core/weights/mobilevos-mnv2aspp-s1.pt}
export OMP_NUM_THREADS=2 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$RUNS" "$OUT"

train() {  # RUN PRESET ARGS… — one run, its console output in $RUNS/RUN.log
    local run=$1 name=$2; shift 2
    $PY -m core.train --preset "$name" --out "$RUNS/$run" --data "$DATA" --steps 1000000 --seconds "$S" \
        --init "$INIT" --val-every 1000 "$@" > "$RUNS/$run.log" 2>&1
    echo "$(date +%T) $run exit $?"
}

date +%T; nvidia-smi -L 2>/dev/null; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
train s2-fast s2-fast &
train s2-fast-lr5e-4 s2-fast --lr 5e-4 &
train s2-light-value s2-light-value &
wait
for log in "$RUNS"/*/log.jsonl; do echo "$(dirname "$log" | xargs basename): $(grep validation_jf "$log" | tail -1)"; done
tar cf "$OUT/ckpt.tar" "$RUNS"/*/best.pt "$RUNS"/*/last.pt
tar czf "$OUT/logs.tgz" "$RUNS"/*.log "$RUNS"/*/log.jsonl
ls -la "$OUT"; date +%T
