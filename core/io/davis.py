"""The DAVIS folder layout that training, packing and evaluation read: `ROOT/JPEGImages/480p/<sequence>/*.jpg`
frames and `ROOT/Annotations/480p/<sequence>/<frame>.png` masks. Paths only, so that any module can use it.
"""

from __future__ import annotations

from pathlib import Path

FRAMES = Path("JPEGImages") / "480p"
MASKS = Path("Annotations") / "480p"


def sequence_names(root: str | Path) -> list[str]:
    """Sorted names of the sequence folders under `root/JPEGImages/480p` (the caller checks that it exists, and
    says what to do when it does not)."""
    return sorted(p.name for p in (Path(root) / FRAMES).iterdir() if p.is_dir())


def frame_paths(root: str | Path, sequence: str) -> list[Path]:
    """The sequence's JPEG frames, in order (empty when it has none)."""
    return sorted((Path(root) / FRAMES / sequence).glob("*.jpg"))


def mask_path(root: str | Path, sequence: str, frame: Path) -> Path:
    """Where the DAVIS layout keeps the mask of `frame` (a path from `frame_paths`)."""
    return Path(root) / MASKS / sequence / f"{frame.stem}.png"
