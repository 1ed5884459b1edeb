"""`python -m core.train.pack SRC DST` — a downscaled copy of a DAVIS root, small enough to carry to a GPU machine.

Frames are resized so their short side is `--short-side` (JPEG, `--quality`), masks with nearest neighbour;
the DAVIS layout (`JPEGImages/480p`, `Annotations/480p`) is kept so training and `python -m core.eval` read it as is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
from tqdm import tqdm


def pack_frame(src: Path, dst: Path, short_side: int, quality: int, nearest: bool) -> None:
    """Resize one image file into `dst` (JPEG for frames, PNG for masks)."""
    flag = cv2.IMREAD_UNCHANGED if nearest else cv2.IMREAD_COLOR
    image = cv2.imread(str(src), flag)
    if image is None:
        raise SystemExit(f"{src}: unreadable image; replace it or leave its sequence out")
    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    size = (round(w * scale), round(h * scale))
    image = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
    dst.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 9] if nearest else [cv2.IMWRITE_JPEG_QUALITY, quality]
    cv2.imwrite(str(dst), image, params)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m core.train.pack", description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--short-side", type=int, default=240)
    parser.add_argument("--quality", type=int, default=85)
    args = parser.parse_args()
    jobs = [(p, args.dst / p.relative_to(args.src), False) for p in (args.src / "JPEGImages" / "480p").rglob("*.jpg")]
    jobs += [(p, args.dst / p.relative_to(args.src), True) for p in (args.src / "Annotations" / "480p").rglob("*.png")]
    for src, dst, nearest in tqdm(jobs, unit="image"):
        pack_frame(src, dst, args.short_side, args.quality, nearest)


if __name__ == "__main__":
    main()
