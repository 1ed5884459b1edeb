"""Checkpoints: the shipped default verifies and loads; missing, corrupt and foreign files are clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from core import weights
from core.model.network import NetworkConfig, build_network
from core.model.variants import TEACHER
from core.weights import WeightsError, changed_settings, load_checkpoint, load_network, save_checkpoint


def test_manifest_default_exists_and_matches_its_sha256() -> None:
    manifest = weights.read_manifest()
    entry = manifest["checkpoints"][manifest["default"]]
    path = weights.WEIGHTS_DIR / entry["file"]
    assert weights.sha256(path) == entry["sha256"]
    assert load_network().training is False


def test_every_shipped_checkpoint_matches_its_sha256_and_loads_as_its_variant() -> None:
    networks = {}
    for name, entry in weights.read_manifest()["checkpoints"].items():
        path = weights.WEIGHTS_DIR / entry["file"]
        assert weights.sha256(path) == entry["sha256"], name
        networks[name] = load_network(path)
        assert networks[name].training is False
    assert networks["mobilevos-teacher-s4gpu"].config == TEACHER


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = build_network(NetworkConfig(aspp=False)).eval()
    path = tmp_path / "run" / "model.pt"
    save_checkpoint(net, path, {"steps": 3})
    loaded = load_network(path)
    assert loaded.config == net.config
    assert load_checkpoint(path)["meta"] == {"steps": 3}
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a.float(), b.float())


def test_missing_file_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"not found; pass a checkpoint saved by"):
        load_network(tmp_path / "nope.pt")


def test_garbage_file_is_unreadable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(WeightsError, match="unreadable checkpoint"):
        load_network(bad)


def test_foreign_torch_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(WeightsError, match="not a MobileVOS checkpoint"):
        load_network(other)


def test_altered_shipped_file_fails_its_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = weights.default_checkpoint()
    folder = tmp_path / "weights"
    folder.mkdir()
    copy = folder / shipped.name
    shutil.copyfile(shipped, copy)
    with open(copy, "r+b") as f:
        f.seek(200)
        f.write(b"\xff\xff\xff\xff")
    shutil.copyfile(weights.MANIFEST, folder / "manifest.json")
    monkeypatch.setattr(weights, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(weights, "MANIFEST", folder / "manifest.json")
    assert json.loads((folder / "manifest.json").read_text())["default"]
    with pytest.raises(WeightsError, match="sha256 does not match"):
        load_network()


def test_a_truncated_or_foreign_training_state_is_refused_in_one_line(tmp_path: Path) -> None:
    """`restore_training_state` names the file and the fix for a half-written state and for one whose tensors
    do not fit the network; a matching state loads."""
    network = torch.nn.Linear(3, 2)
    path = tmp_path / "run" / "state.pt"
    weights.save_atomically({"network": network.state_dict(), "step": 7}, path)
    assert weights.restore_training_state(path, {"network": torch.nn.Linear(3, 2)})["step"] == 7
    with pytest.raises(WeightsError, match=r"state\.pt: saved by another run or version .*remove .*run to start"):
        weights.restore_training_state(path, {"network": torch.nn.Linear(4, 2)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(WeightsError, match=r"state\.pt: unreadable training state") as error:
        weights.restore_training_state(path, {"network": network})
    assert "\n" not in str(error.value)


def test_changed_settings_name_what_a_resume_changed_nested_names_dotted() -> None:
    state = {"settings": {"lr": 1e-3, "data": {"crop": 224, "root": "a"}, "init": None}}
    assert changed_settings(state, {"lr": 1e-4, "data": {"crop": 256, "root": "a"}, "init": Path("w.pt")}) == \
        "lr 0.001 → 0.0001, data.crop 224 → 256, init None → w.pt"
    assert changed_settings(state, state["settings"]) == ""
    assert changed_settings(state, {**state["settings"], "init": "w.pt"}, start_only=("init",)) == \
        "init None → w.pt (not taken: it sets up a new run only)"
    assert changed_settings({"step": 3}, {"lr": 1e-4}) == ""  # a state saved before states kept their settings
