"""The ONNX Runtime backends of the tracker: `--backend onnx` (float, the torch tracker's masks) and
`--backend onnx-int8` (key, value and segment graphs statically quantised to int8; masks differ a little, and it
is faster only for networks whose graphs are big enough to pay for the quantise/dequantise nodes).

Owns `OnnxNetwork`, a drop-in for `VOSNetwork` at inference: the same `encode_key`, `encode_value`, `segment`
and `aggregate` on CPU torch tensors, each running one of the graphs of `core.inference.graphs` in an ONNX Runtime
session (and the same small torch `upsample`). Tensors cross as zero-copy numpy views, so the tracker's group
logic and `core.inference.memory` (first + previous frame, keys' squared norms computed once per frame) serve both
backends unchanged. The graphs come from the cache, exported on first use from the torch network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from core.inference.graphs import GRAPHS, QUANTISED, Calibrator, cached_graphs
from core.model.network import KeyFeatures, VOSNetwork


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def session_options(threads: int | None) -> ort.SessionOptions:
    """All graph optimisations, `threads` intra-op threads (default: the available cores), sequential graph,
    no spinning between runs (on a shared 2-core machine spinning threads more than doubled the step time)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads yield the cores
    return options


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A float32 C-contiguous numpy view (a copy only when the tensor is strided or another dtype)."""
    return np.ascontiguousarray(tensor.detach().to(torch.float32).numpy())


def _session(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    """An ONNX Runtime session of the graph at `path` on the CPU."""
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _feed(session: ort.InferenceSession, inputs: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
    """`inputs` (in the graph's input order) named for `session`, as float32 numpy views."""
    return {meta.name: _array(t) for meta, t in zip(session.get_inputs(), inputs)}


class OnnxNetwork:
    """`VOSNetwork`'s inference methods, run by ONNX Runtime on the CPU. The inputs of the graphs named in
    `record` are kept in `recorded` (int8 calibration)."""

    def __init__(self, graphs: dict[str, Path], threads: int | None = None, record: Sequence[str] = ()):
        options = session_options(threads)
        self.graphs = graphs
        self.recorded: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in record}
        self.sessions = {name: _session(path, options) for name, path in graphs.items()}
        self._key_aside: ort.InferenceSession | None = None

    def _run(self, name: str, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Run graph `name` on `inputs` (in its input order); its outputs as CPU tensors."""
        session = self.sessions[name]
        feed = _feed(session, inputs)
        if name in self.recorded:
            self.recorded[name].append({key: array.copy() for key, array in feed.items()})
        return [torch.from_numpy(out) for out in session.run(None, feed)]

    def encode_key(self, image: torch.Tensor) -> KeyFeatures:
        """Normalised image (1, 3, H, W) → key and features."""
        return KeyFeatures(*self._run("key", image))

    def encode_key_aside(self, image: torch.Tensor) -> KeyFeatures:
        """`encode_key` for one thread beside the tracking thread (a pipeline's key stage), by a session of its own
        with one intra-op thread, made on first use: there the pipeline's other stages keep the cores busy, and a
        second thread in this session only added overhead (batch FPS +7 % at 720p, docs/RESULTS.md). The same
        features as `encode_key`."""
        if self._key_aside is None:
            self._key_aside = _session(self.graphs["key"], session_options(1))
        outputs = self._key_aside.run(None, _feed(self._key_aside, (image,)))
        return KeyFeatures(*(torch.from_numpy(out) for out in outputs))

    def encode_value(self, image: torch.Tensor, feats: KeyFeatures, masks: torch.Tensor,
                     outside: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised image, its features, masks (1, K, H, W), outside (1, 1, H, W) → values (1, K, Cv, h, w)."""
        if outside is None:
            outside = torch.zeros_like(masks[:, :1])
        return self._run("value", image, feats.f16, masks, outside)[0]

    def segment(self, feats: KeyFeatures, memory_key: torch.Tensor, memory_sq: torch.Tensor,
                memory_value: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Read the memory and decode → logits (1, K, H/4, W/4); the representation features are not exported."""
        logits = self._run("segment", feats.f4, feats.f8, feats.f16, feats.key, memory_key, memory_sq,
                           memory_value)[0]
        return logits, None

    def aggregate(self, logits: torch.Tensor) -> torch.Tensor:
        """Object logits (1, K, h, w) → probabilities (1, 1 + K, h, w), background first."""
        return self._run("aggregate", logits)[0]

    upsample = staticmethod(VOSNetwork.upsample)  # a small torch op, like the tracker's other glue


def load_onnx_network(network: VOSNetwork, threads: int | None = None, device: str = "cpu",
                      int8: bool = False, calibrate: Calibrator | None = None) -> OnnxNetwork:
    """The ONNX Runtime twin of `network` (graphs from the cache, exported when missing or corrupt); with
    `int8`, the key, value and segment graphs are the statically quantised ones (`--backend onnx-int8`),
    calibrated by `calibrate` when they are exported.

    Sets torch to one intra-op thread for this process: measured on 2 cores, torch's pool spinning after the
    tracker's small glue ops (pad, concatenation) slowed ONNX Runtime's convolutions about twofold."""
    if device == "cuda":
        raise RuntimeError("--backend onnx runs on the CPU; use --device cpu (or --backend torch for CUDA)")
    torch.set_num_threads(1)  # the glue ops left to torch are small; its spinning pool would steal ORT's cores
    graphs = cached_graphs(network, int8=int8, calibrate=calibrate)
    if int8:
        graphs.update({g: graphs[f"{g}-int8"] for g in QUANTISED})
    return OnnxNetwork({g: graphs[g] for g in GRAPHS}, threads)
