#!/usr/bin/env bash
# The wheels `scripts/gpu_batch_check.sh` needs on the device machine (CPython 3.12), which has neither PyAV nor Ray:
#   .whl/av   PyAV (36 MB), the version of this venv: carried by the first call
#   .whl/ray  Ray without its Java jars and unused libraries, LZMA-compressed (31 MB), and the four of Ray's needs
#             the device lacks: carried by the second call (the working tree is 26 MB of the 64 MiB a call carries)
# Usage (repo root, network to PyPI): bash scripts/pack_device_wheels.sh
set -euo pipefail
PIP=${PIP:-.venv/bin/python -m pip}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
fetch() {  # FOLDER NAME==VERSION … — wheels for CPython 3.12 on the device, without their needs
    local folder=$1; shift
    mkdir -p "$folder"
    $PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
        -d "$folder" "$@"
}
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
fetch .whl/av "av==$(version av)"
RAY=$(version ray)
fetch .whl/ray-full "ray==$RAY"
fetch .whl/ray jsonschema jsonschema-specifications referencing rpds-py
wheel=$(ls .whl/ray-full/ray-"$RAY"-*.whl)
.venv/bin/python scripts/strip_wheel.py "$wheel" ".whl/ray/$(basename "$wheel")" \
    ray/jars ray/rllib ray/llm ray/serve ray/data ray/tune ray/train
rm -r .whl/ray-full
du -sh .whl/av .whl/ray
