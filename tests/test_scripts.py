"""The helper scripts under scripts/ that are Python: the wheel stripper for the device machine."""

from __future__ import annotations

import importlib.util
import types
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str) -> types.ModuleType:
    """scripts/NAME.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_stripped_wheel_keeps_the_rest_byte_for_byte_with_its_modes_and_a_record_without_the_dropped(
        tmp_path: Path) -> None:
    source, target = tmp_path / "pkg-1.0-py3-none-any.whl", tmp_path / "out" / "pkg-1.0-py3-none-any.whl"
    target.parent.mkdir()
    files = {"pkg/__init__.py": b"x = 1\n", "pkg/jars/big.jar": b"\0" * 5000, "pkg/bin/tool": b"#!/bin/sh\n",
             "pkg/jarsfile.py": b"kept: only the folder pkg/jars goes\n",
             "pkg-1.0.dist-info/RECORD": b"pkg/__init__.py,,\npkg/jars/big.jar,,\npkg/bin/tool,,\npkg/jarsfile.py,,\n"}
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name)
            entry.external_attr = (0o755 if name == "pkg/bin/tool" else 0o644) << 16
            wheel.writestr(entry, data)
    assert load_script("strip_wheel").strip_wheel(str(source), str(target), ["pkg/jars"]) == 1
    with zipfile.ZipFile(target) as stripped:
        names = stripped.namelist()
        assert "pkg/jars/big.jar" not in names and len(names) == 4
        assert all(info.compress_type == zipfile.ZIP_LZMA for info in stripped.infolist())
        assert stripped.read("pkg/__init__.py") == files["pkg/__init__.py"]
        assert stripped.getinfo("pkg/bin/tool").external_attr >> 16 == 0o755
        assert b"jars/big.jar" not in stripped.read("pkg-1.0.dist-info/RECORD")
        assert b"pkg/jarsfile.py" in stripped.read("pkg-1.0.dist-info/RECORD")
