"""The annotation network through ONNX Runtime on the CPU (about 3× eager PyTorch there).

`OnnxClickNet` is called like `ClickNet` (image, guidance → logits) and carries its config, so
`core.annotate.segmenter.predict` runs either. Its graph (dynamic height and width, BatchNorms folded) is
exported on first use into the tracker's ONNX cache folder (`core.inference.graphs.cache_root()`), named by a
digest of the network's architecture and weights, and re-exported when missing or unreadable.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from core.annotate.clicks import GUIDANCE_CHANNELS
from core.annotate.network import ClickNet
from core.inference.graphs import cache_root
from core.inference.onnx_backend import session_options

OPSET = 17


def annotator_digest(network: ClickNet) -> str:
    """sha256 (first 16 hex digits) of the network's config and weights: its graph's cache key."""
    digest = hashlib.sha256(json.dumps(asdict(network.config)).encode())
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def export_annotator_graph(network: ClickNet, path: Path) -> None:
    """Write `network` as an ONNX graph with dynamic height and width to `path`, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    example = (torch.rand(1, 3, 64, 96), torch.zeros(1, GUIDANCE_CHANNELS, 64, 96))
    axes = {"image": {2: "height", 3: "width"}, "guidance": {2: "height", 3: "width"},
            "logits": {2: "height", 3: "width"}}
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings on shape arithmetic, which stays dynamic
            torch.onnx.export(network.eval(), example, tmp, input_names=["image", "guidance"],
                              output_names=["logits"], dynamic_axes=axes, opset_version=OPSET,
                              do_constant_folding=True, dynamo=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class OnnxClickNet:
    """`ClickNet`'s ONNX Runtime twin: (image (B, 3, H, W), guidance (B, G, H, W)) → logits (B, 1, H, W)."""

    def __init__(self, network: ClickNet, threads: int | None = None, root: Path | None = None):
        self.config = network.config
        path = (root or cache_root()) / f"annotator-{annotator_digest(network)}.onnx"
        if not path.is_file():
            export_annotator_graph(network, path)
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - ONNX Runtime raises several types for a damaged file: rebuild it
            export_annotator_graph(network, path)
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])

    def __call__(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        feeds = {"image": np.ascontiguousarray(image.numpy(), np.float32),
                 "guidance": np.ascontiguousarray(guidance.numpy(), np.float32)}
        return torch.from_numpy(self.session.run(["logits"], feeds)[0])
