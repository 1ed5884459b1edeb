#!/usr/bin/env bash
# The ImageNet-initialised fast student on the CPU, resumable: a static-image stage, then real clips warm-started
# from it. Rerun the same command after an interruption: each stage resumes from its run folder's state.pt.
# Usage (repo root): STATIC_STEPS=600 VIDEO_STEPS=4000 VIDEO_SECONDS=6000 THREADS=2 bash scripts/cpu_train.sh
set -euo pipefail
RUNS=${RUNS:-runs/cpu}
PY=${PY:-.venv/bin/python}
BATCH=${BATCH:-8}
THREADS=${THREADS:-2}  # 1 is faster when other work shares the 2 cores
# bfloat16 forward passes where the CPU has AMX (1.4-1.5x faster a step there; not measured elsewhere);
# BF16= turns them off
BF16=${BF16-$(grep -qw amx_bf16 /proc/cpuinfo 2>/dev/null && echo --bf16 || true)}
export PYTHONUNBUFFERED=1
mkdir -p "$RUNS"
$PY -m core.train --preset static-fast --out "$RUNS/static" --steps "${STATIC_STEPS:-600}" --batch "$BATCH" \
    --threads "$THREADS" --val-every "${STATIC_VAL_EVERY:-300}" $BF16
$PY -m core.train --preset s3-fast --out "$RUNS/video" --steps "${VIDEO_STEPS:-4000}" \
    --seconds "${VIDEO_SECONDS:-6000}" --batch "$BATCH" --threads "$THREADS" --val-every "${VIDEO_VAL_EVERY:-400}" \
    --init "$RUNS/static/last.pt" $BF16
