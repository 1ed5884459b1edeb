#!/usr/bin/env bash
# The batch issue's (#15) checks on the device machine, each result in $OUT:
#   stages-DEVICE.json/.txt     every stage per frame at 480p and 1080p, then core.batch end to end on a 1080p clip
#                               (E2E_FRAMES frames) with overlay + blur + PNG masks, the tracker on DEVICE
#   bench-DEVICE.json           core.bench at 480p for 50 and 500 frames (the paper's setting: a constant cost)
#   nvenc.txt                   whether PyAV's h264_nvenc opens there (`--encoder auto` falls back to libx264)
#   ray-DEVICE.txt, ray-summary.json   core.batch --ray over two copies of that clip, one GPU per task
# The device lacks PyAV and Ray: `bash scripts/pack_device_wheels.sh` here first. Then two calls, the second at once
# (a warm machine keeps .whl/av and the clips of the first):
#   run(carry=[".whl/av"], command="bash scripts/gpu_batch_check.sh")             all but Ray
#   run(carry=[".whl/ray"], command="STEPS=ray bash scripts/gpu_batch_check.sh")  Ray
# Test on a CPU (the packed wheels are for the device's Python 3.12, so none installed): DEVICE=cpu WHEELS= \
#   OUT=/tmp/check WORK=/tmp/check-work E2E_FRAMES=24 BENCH_ARGS="--frames 50 --variants student" \
#   PY=.venv/bin/python bash scripts/gpu_batch_check.sh
set -uo pipefail
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-runs/gpu-batch/out}
WORK=${WORK:-runs/gpu-batch/work}
PY=${PY:-python3}
STEPS=" ${STEPS:-stages bench nvenc ray} "
E2E_FRAMES=${E2E_FRAMES:-180}
WHEELS=${WHEELS-.whl}  # the packed wheels installed first (empty: none)
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
wanted() { [[ $STEPS == *" $1 "* ]]; }

mapfile -t wheels < <([ -n "$WHEELS" ] && ls "$WHEELS"/*/*.whl 2>/dev/null)
if [ ${#wheels[@]} -gt 0 ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${wheels[@]}" \
        || exit 1
    export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
date +%T; nvidia-smi -L 2>/dev/null
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

if wanted stages; then
    timeout 420 $PY -m core.evaluation.stages --heights 480 1080 --e2e-frames "$E2E_FRAMES" --device "$DEVICE" \
        --work "$WORK" --json "$OUT/stages-$DEVICE.json" > "$OUT/stages-$DEVICE.txt" 2>&1
    echo "$(date +%T) stages exit $?"; tail -n 25 "$OUT/stages-$DEVICE.txt"
fi
if wanted bench; then
    timeout 200 $PY -m core.bench --device "$DEVICE" --size 480x854 ${BENCH_ARGS:---frames 50,500} \
        --json "$OUT/bench-$DEVICE.json" 2>/dev/null | tee "$OUT/bench-$DEVICE.txt"
fi
if wanted nvenc; then
    $PY -c "from core.io.video import nvenc_available; print('h264_nvenc opens:', nvenc_available())" \
        | tee "$OUT/nvenc.txt"
fi
if wanted ray; then
    clip=$WORK/e2e/clip-1080p
    if ! $PY -c "import ray" 2>/dev/null; then
        echo "ray: not importable here; carry .whl/ray (scripts/pack_device_wheels.sh)" | tee "$OUT/ray-$DEVICE.txt"
    elif [ ! -f "$clip.mp4" ]; then
        echo "ray: no $clip.mp4; run the stages step first (same WORK)" | tee "$OUT/ray-$DEVICE.txt"
    else
        mkdir -p "$WORK/ray-in"
        for name in first second; do
            cp "$clip.mp4" "$WORK/ray-in/$name.mp4"; cp "$clip.png" "$WORK/ray-in/$name.png"
        done
        timeout 400 $PY -m core.batch "$WORK/ray-in" --out "$WORK/ray-out" --ray --workers 2 --device "$DEVICE" \
            --effect overlay --effect blur --overwrite > "$OUT/ray-$DEVICE.txt" 2>&1
        echo "$(date +%T) ray exit $?"; tail -n 6 "$OUT/ray-$DEVICE.txt"
        cp "$WORK/ray-out/summary.json" "$OUT/ray-summary.json" 2>/dev/null
    fi
fi
ls -la "$OUT"; date +%T
