#!/usr/bin/env bash
# One device-machine session, the chosen JOBS in parallel on one GPU for SECONDS_EACH seconds, then packed into $OUT:
#   student-val  the fast student continued from VAL_INIT on the 20 training sequences, validated on the 10
#   student-all  the same recipe and budget from ALL_INIT on all 30 sequences (the candidate to ship; not validated)
#   teacher      the infinite-memory teacher (core/model/variants.py: TEACHER) from the ImageNet trunk, validated
#   annotator    the click-and-box network continued from the shipped one, on the GPU, validated on the 10
#   annotator-all  the same recipe and budget on all 30 sequences (the candidate to ship; not validated)
# then (checkpoints packed first) `core.bench --device cuda` at 480p (50 and 500 frames; network input BENCH_SIZES,
# default 240 and 480).
# Each student continues its own twin (VAL_INIT never saw the validation sequences), so the pair stays comparable.
# The data: DAVIS at 480p packed as one H.264 file per sequence (28 MB, carried), unpacked on the device into $RUNS/data
# (the students load it at 240p, the annotator at ANNOTATOR_SHORT_SIDE); a DATA of JPEGs (an older 240p pack) is
# used as it is, then set ANNOTATOR_SHORT_SIDE=240.
# Usage (repo root): python -m core.train.pack ../shared/data/davis2016-train .pack/davis480v --short-side 480 \
#                        --video-crf 24
#                    SECONDS_EACH=390 bash scripts/gpu_session.sh      (test on a CPU: DEVICE=cpu SECONDS_EACH=20)
#                    JOBS="student-val student-all" SECONDS_EACH=480 bash scripts/gpu_session.sh   (the students only)
set -uo pipefail
DATA=${DATA:-.pack/davis480v}
ANNOTATOR_SHORT_SIDE=${ANNOTATOR_SHORT_SIDE:-480}
ANNOTATOR_LR=${ANNOTATOR_LR:-1e-4}  # continuing: stop 13's run at the default 3e-4 fell; stop 20's (1e-4) held
RUNS=${RUNS:-runs/gpu}
S=${SECONDS_EACH:-390}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-$RUNS/out}
PY=${PY:-python3}
VAL_INIT=${VAL_INIT:-core/weights/mobilevos-mnv2aspp-fast-s4gpu-val.pt}
ALL_INIT=${ALL_INIT:-core/weights/mobilevos-mnv2aspp-fast-s4gpu.pt}
STUDENT_LR=${STUDENT_LR:-5e-4}
JOBS=" ${JOBS:-student-val student-all teacher annotator annotator-all} "
export OMP_NUM_THREADS=${THREADS:-3} PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$RUNS" "$OUT"
if compgen -G "$DATA/JPEGImages/480p/*.mp4" > /dev/null; then  # a video pack: its frames back as JPEGs first
    $PY -m core.train.pack "$DATA" "$RUNS/data" --unpack || exit 1
    DATA=$RUNS/data
fi

vos() {  # RUN ARGS… — one core.train run, its console output in $RUNS/RUN.log
    local run=$1; shift
    $PY -m core.train --out "$RUNS/$run" --data "$DATA" --steps 1000000 --seconds "$S" --device "$DEVICE" "$@" \
        > "$RUNS/$run.log" 2>&1
    local rc=$?
    echo "$(date +%T) $run exit $rc"
}

annotator() {  # RUN ARGS… — one core.train.annotator run continuing the shipped network, output in $RUNS/RUN.log
    local run=$1; shift
    $PY -m core.train.annotator --out "$RUNS/$run" --init core/weights/annotator-mnv2.pt --data "$DATA" \
        --load-short-side "$ANNOTATOR_SHORT_SIDE" --device "$DEVICE" --batch 16 --lr "$ANNOTATOR_LR" --ema 0.998 \
        --steps 1000000 --seconds "$S" --val-every 1000 --threads "$OMP_NUM_THREADS" "$@" > "$RUNS/$run.log" 2>&1
    local rc=$?
    echo "$(date +%T) $run exit $rc"
}

date +%T; nvidia-smi -L 2>/dev/null; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
wanted() { [[ $JOBS == *" $1 "* ]]; }
STUDENT_ARGS=(--preset s3-fast --batch 32 --lr "$STUDENT_LR" --val-every 1000)
wanted student-val && vos student-val "${STUDENT_ARGS[@]}" --init "$VAL_INIT" &
wanted student-all && vos student-all "${STUDENT_ARGS[@]}" --init "$ALL_INIT" --all-sequences &
wanted teacher && vos teacher --preset teacher --init "$VAL_INIT" --batch 16 --val-every 1000 &
wanted annotator && annotator annotator &
wanted annotator-all && annotator annotator-all --hold-out "" &
wait
for log in "$RUNS"/*/log.jsonl; do
    echo "$(basename "$(dirname "$log")"): $(grep '"val' "$log" | tail -2 | tr '\n' ' ')"
done
for run in "$RUNS"/*/; do  # one file per run: the device returns files of at most 16 MiB
    [ -f "$run"last.pt ] || continue  # $OUT itself, or a run that saved nothing
    tar cf "$OUT/$(basename "$run").tar" "$run"best.pt "$run"last.pt
done
for size in ${BENCH_SIZES:-240 480}; do
    timeout 80 $PY -m core.bench --device "$DEVICE" --size 480x854 --frames "${BENCH_FRAMES:-50,500}" \
        --infer-size "$size" --json "$OUT/bench-$DEVICE-$size.json" 2>/dev/null
done
tar czf "$OUT/logs.tgz" "$RUNS"/*.log "$RUNS"/*/log.jsonl
ls -la "$OUT"; date +%T
