#!/usr/bin/env bash
# Trains the teacher, the students and the ablation rows on one GPU in ~9 minutes, runs in parallel per phase:
#   phase A: teacher (infinite memory, real clips) ‖ stage-0 (synthetic clips) pre-training of the 3 students
#   phase B: stage-1 (real clips) rows from the stage-0 weights, each with the same wall-clock budget
# then packs the checkpoints and logs into $OUT. Usage (repo root): DATA=.pack/davis240 bash scripts/gpu_train.sh
set -uo pipefail
DATA=${DATA:-.pack/davis240}
RUNS=${RUNS:-runs/gpu}
A=${PHASE_A_SECONDS:-190}
B=${PHASE_B_SECONDS:-250}
OUT=${OUT:-$RUNS/out}
PY=${PY:-python3}
EXTRA=${EXTRA:-}
export OMP_NUM_THREADS=2 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$RUNS" "$OUT"

train() {  # NAME ARGS… — one run, its console output in $RUNS/NAME.log
    local name=$1; shift
    $PY -m core.train --preset "$name" --out "$RUNS/$name" --data "$DATA" --steps 1000000 $EXTRA "$@" \
        > "$RUNS/$name.log" 2>&1
    echo "$(date +%T) $name exit $?"
}

date +%T; nvidia-smi -L 2>/dev/null; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
train teacher --seconds "$A" --val-every 100000 &
for v in mnv2aspp mnv2 resnet18; do train "s0-$v" --seconds "$A" --no-val & done
wait
T="$RUNS/teacher/best.pt"
for row in abl-seg abl-logit abl-rep-all abl-rep-boundary abl-omega0; do
    train "$row" --seconds "$B" --init "$RUNS/s0-mnv2aspp/best.pt" --teacher "$T" --val-every 800 &
done
train s1-mnv2 --seconds "$B" --init "$RUNS/s0-mnv2/best.pt" --teacher "$T" --val-every 800 &
train s1-resnet18 --seconds "$B" --init "$RUNS/s0-resnet18/best.pt" --teacher "$T" --val-every 800 &
wait
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv 2>/dev/null
for log in "$RUNS"/*/log.jsonl; do echo "$(dirname "$log" | xargs basename): $(grep validation_jf "$log" | tail -1)"; done
pack() { local name=$1; shift; local files=(); for r in "$@"; do [ -f "$RUNS/$r/best.pt" ] && files+=("$RUNS/$r/best.pt"); done
         [ ${#files[@]} -gt 0 ] && tar cf "$OUT/$name.tar" "${files[@]}"; }
pack ckpt-1 abl-seg abl-logit abl-rep-all
pack ckpt-2 abl-rep-boundary abl-omega0 s1-mnv2
pack ckpt-3 s1-resnet18
pack ckpt-4 teacher
tar czf "$OUT/logs.tgz" "$RUNS"/*.log "$RUNS"/*/log.jsonl
ls -la "$OUT"; date +%T
