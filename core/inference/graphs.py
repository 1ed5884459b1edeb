"""The student's per-frame step as ONNX graphs, and the cache that holds them (`python -m core.export`).

Owns the split of `VOSNetwork` into graphs with dynamic frame size (H, W multiples of 16), object count K and
memory size N, the memory passed in and out explicitly:

- `key`:       image (1, 3, H, W) normalised → key (1, Ck, H/16, W/16), f4, f8, f16
- `value`:     image, f16, masks (1, K, H, W), outside (1, 1, H, W) → values (1, K, Cv, H/16, W/16)
- `segment`:   f4, f8, f16, key, memory_key (1, Ck, N), memory_sq (1, N, 1), memory_value (1, K, Cv, N)
               → logits (1, K, H/4, W/4)
- `aggregate`: logits (1, K, h, w) → probabilities (1, 1 + K, h, w), background first

and the cache folder `~/.cache/mobilevos/onnx/<digest>/` (or `$MOBILEVOS_CACHE/onnx/<digest>/`) named by a
digest of the network's weights and architecture, written atomically with a manifest of sha256s so a corrupt
or partial cache is detected and rebuilt. With `int8`, the key, value and segment graphs are also written
statically quantised (`<graph>-int8.onnx`: int8 per-channel weights, uint8 activations, QDQ), calibrated on the
graph inputs met while the float graphs track the bundled clips (`samples/`) at the default inference size
(the tracker's `calibration_feeds`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from core.io.files import staging_folder
from core.model.network import KeyFeatures, VOSNetwork
from core.weights import sha256

EXPORT_VERSION = 3  # bump when the graphs change: old caches are then ignored
OPSET = 17
GRAPHS = ("key", "value", "segment", "aggregate")
QUANTISED = ("key", "value", "segment")  # their int8 twins are named "<graph>-int8"
# (network, float graphs) → the inputs each quantised graph receives while tracking (core.inference.tracker's
# calibration_feeds): injected, because tracking is a layer above the graphs.
Calibrator = Callable[[VOSNetwork, dict[str, Path]], dict[str, list[dict[str, np.ndarray]]]]


class ExportError(RuntimeError):
    """An export that failed or a cache that cannot be written; the message is one line with the fix."""


class KeyGraph(nn.Module):
    """Normalised image → key and multi-scale features."""

    def __init__(self, network: VOSNetwork):
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> KeyFeatures:
        return self.network.encode_key(image)


class ValueGraph(nn.Module):
    """Normalised image, its stride-16 features, object and outside probabilities → values."""

    def __init__(self, network: VOSNetwork):
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor, f16: torch.Tensor, masks: torch.Tensor,
                outside: torch.Tensor) -> torch.Tensor:
        return self.network.value_encoder(image, f16, masks, outside)


class SegmentGraph(nn.Module):
    """Query features + memory → object logits at stride 4."""

    def __init__(self, network: VOSNetwork):
        super().__init__()
        self.network = network

    def forward(self, f4: torch.Tensor, f8: torch.Tensor, f16: torch.Tensor, key: torch.Tensor,
                memory_key: torch.Tensor, memory_sq: torch.Tensor, memory_value: torch.Tensor) -> torch.Tensor:
        feats = KeyFeatures(key, f4, f8, f16)
        return self.network.segment(feats, memory_key, memory_sq, memory_value)[0]


class AggregateGraph(nn.Module):
    """Object logits → probabilities with the background first."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return VOSNetwork.aggregate(logits)


def network_digest(network: VOSNetwork) -> str:
    """sha256 (first 16 hex digits) of the architecture, the weights and EXPORT_VERSION: the cache key."""
    digest = hashlib.sha256(json.dumps([EXPORT_VERSION, network.config.to_dict()]).encode())
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    """`$MOBILEVOS_CACHE/onnx`, else `~/.cache/mobilevos/onnx`."""
    base = os.environ.get("MOBILEVOS_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "mobilevos") / "onnx"


def _example_inputs(network: VOSNetwork, height: int = 64, width: int = 96,
                    objects: int = 2) -> dict[str, tuple[torch.Tensor, ...]]:
    """Small example inputs of every graph (shapes only matter; all axes but channels are dynamic)."""
    image = torch.randn(1, 3, height, width)
    with torch.inference_mode():
        feats = network.encode_key(image)
    masks = torch.rand(1, objects, height, width)
    outside = torch.rand(1, 1, height, width)
    with torch.inference_mode():
        values = network.encode_value(image, feats, masks, outside)
    memory_key = torch.cat([feats.key.flatten(2)] * 2, dim=2)  # (1, Ck, N)
    memory_sq = memory_key.pow(2).sum(dim=1).unsqueeze(2)  # (1, N, 1)
    memory_value = torch.cat([values.flatten(3)] * 2, dim=3)  # (1, K, Cv, N)
    return {
        "key": (image,),
        "value": (image, feats.f16, masks, outside),
        "segment": (feats.f4, feats.f8, feats.f16, feats.key, memory_key, memory_sq, memory_value),
        "aggregate": (torch.randn(1, objects, height, width),),
    }


_SPATIAL = {2: "H", 3: "W"}
_SPATIAL16 = {2: "h", 3: "w"}
_NAMES: dict[str, tuple[list[str], list[str], dict[str, dict[int, str]]]] = {
    "key": (["image"], ["key", "f4", "f8", "f16"],
            {"image": _SPATIAL, "key": _SPATIAL16, "f4": {2: "h4", 3: "w4"}, "f8": {2: "h8", 3: "w8"},
             "f16": _SPATIAL16}),
    "value": (["image", "f16", "masks", "outside"], ["values"],
              {"image": _SPATIAL, "f16": _SPATIAL16, "masks": {1: "K", **_SPATIAL}, "outside": _SPATIAL,
               "values": {1: "K", 3: "h", 4: "w"}}),
    "segment": (["f4", "f8", "f16", "key", "memory_key", "memory_sq", "memory_value"], ["logits"],
                {"f4": {2: "h4", 3: "w4"}, "f8": {2: "h8", 3: "w8"}, "f16": _SPATIAL16, "key": _SPATIAL16,
                 "memory_key": {2: "N"}, "memory_sq": {1: "N"}, "memory_value": {1: "K", 3: "N"},
                 "logits": {1: "K", 2: "h4", 3: "w4"}}),
    "aggregate": (["logits"], ["probabilities"], {"logits": {1: "K", **_SPATIAL},
                                                  "probabilities": {1: "K1", **_SPATIAL}}),
}


def _graph_module(name: str, network: VOSNetwork) -> nn.Module:
    """The wrapper module exported as graph `name`."""
    if name == "aggregate":
        return AggregateGraph().eval()
    return {"key": KeyGraph, "value": ValueGraph, "segment": SegmentGraph}[name](network).eval()


def export_graph(name: str, network: VOSNetwork, path: Path, example: tuple[torch.Tensor, ...]) -> None:
    """Export one graph (BatchNorms folded, dynamic axes) to `path`."""
    inputs, outputs, axes = _NAMES[name]
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings on shape arithmetic, which stays dynamic in the graph
        torch.onnx.export(_graph_module(name, network), example, str(path), input_names=inputs,
                          output_names=outputs, dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True,
                          dynamo=False)


def graph_names(int8: bool) -> list[str]:
    """The graphs of a cache folder: the float ones, plus the int8 twins when asked."""
    return [*GRAPHS, *([f"{g}-int8" for g in QUANTISED] if int8 else [])]


class _Feeds:
    """onnxruntime's calibration reader over recorded inputs."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_graph(source: Path, target: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """Static int8 quantisation of one graph's convolutions and matrix products (QDQ, per-channel weights)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    advice = _WithoutPreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    try:
        quantize_static(str(source), str(target), _Feeds(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul"])
    finally:
        logging.getLogger().removeFilter(advice)


class _WithoutPreprocessingAdvice(logging.Filter):
    """Drops ONNX Runtime's advice, logged twice per graph on the root logger, to pre-process a model before
    quantising it: six warnings with a link for whoever exports, who can do nothing about them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def export_all(network: VOSNetwork, folder: Path, int8: bool = False, progress: bool = False,
               calibrate: Calibrator | None = None) -> dict[str, Path]:
    """Write every graph (and the int8 ones when asked, calibrated by `calibrate`) plus `manifest.json` into
    `folder` atomically: built in a temporary sibling folder, then renamed into place. Returns graph → path."""
    if int8 and calibrate is None:
        raise ExportError(f"{folder}: int8 graphs need calibration inputs; export them through the tracker "
                          "(--backend onnx-int8) or `python -m core.export --int8`")
    network = copy.deepcopy(network).float().cpu().eval()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(folder)
    try:
        examples = _example_inputs(network)
        names = graph_names(int8)
        for name in tqdm(GRAPHS, desc="export onnx", unit="graph", disable=not progress, file=sys.stderr):
            export_graph(name, network, staging / f"{name}.onnx", examples[name])
        if int8:
            feeds = calibrate(network, {g: staging / f"{g}.onnx" for g in GRAPHS})
            for name in tqdm(QUANTISED, desc="quantise int8", unit="graph", disable=not progress, file=sys.stderr):
                quantize_graph(staging / f"{name}.onnx", staging / f"{name}-int8.onnx", feeds[name])
        manifest = {"version": EXPORT_VERSION, "opset": OPSET,
                    "files": {f"{n}.onnx": sha256(staging / f"{n}.onnx") for n in names}}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(staging, folder)
        except OSError:  # another process put its export there first: keep that one when it is whole
            if verified_graphs(folder, int8) is None:
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except Exception as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):
            raise ExportError(f"{folder}: cannot write the ONNX cache ({error.strerror}); "
                              "set MOBILEVOS_CACHE to a writable folder") from None
        raise
    return {n: folder / f"{n}.onnx" for n in names}


def verified_graphs(folder: Path, int8: bool = False) -> dict[str, Path] | None:
    """The graphs in `folder` when its manifest is ours and every file matches its sha256; else None."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    names = graph_names(int8)
    files = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    if manifest.get("version") != EXPORT_VERSION or any(f"{n}.onnx" not in files for n in names):
        return None
    for name in names:
        path = folder / f"{name}.onnx"
        if not path.is_file() or sha256(path) != files[f"{name}.onnx"]:
            return None
    return {n: folder / f"{n}.onnx" for n in names}


def cached_graphs(network: VOSNetwork, int8: bool = False, root: Path | None = None,
                  progress: bool = False, calibrate: Calibrator | None = None) -> dict[str, Path]:
    """The network's graphs from the cache, exported first when missing, partial or corrupt (int8 graphs are
    calibrated by `calibrate`)."""
    folder = (root or cache_root()) / network_digest(network)
    graphs = verified_graphs(folder, int8)
    if graphs is None:
        graphs = export_all(network, folder, int8=int8, progress=progress, calibrate=calibrate)
    return graphs
