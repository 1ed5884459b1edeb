"""Compositing shared by batch, web and OBS: overlays, cut-outs, background blur / replacement and object removal.

Pure numpy / OpenCV on `(H, W, 3)` uint8 RGB images and `(H, W)` uint8 label maps (0 = background).
`python -m core.effects --stills DIR` renders one still per effect from the bundled judo sample.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from core.masks import davis_palette, read_mask

_PALETTE = davis_palette()  # (256, 3) read-only lookup table
_INPAINT_SHORT_SIDE = 240


def mask_image(labels: np.ndarray) -> np.ndarray:
    """The label map drawn in DAVIS palette colours, `(H, W, 3)` RGB."""
    return _PALETTE[labels]


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Objects tinted with their palette colour at `alpha`, each outlined by a 1-pixel line in full colour."""
    colours = _PALETTE[labels]  # (H, W, 3)
    tinted = cv2.addWeighted(image, 1.0 - alpha, colours, alpha, 0.0)
    out = np.where((labels > 0)[..., None], tinted, image)
    return np.where(_edges(labels)[..., None], colours, out)


def cutout(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`(H, W, 4)` RGBA: the objects with alpha 255; the background transparent black (alpha 0)."""
    objects = labels > 0
    alpha = np.where(objects, np.uint8(255), np.uint8(0))  # (H, W)
    return np.dstack([image * objects[..., None], alpha])


def blur_background(image: np.ndarray, labels: np.ndarray, strength: int = 31) -> np.ndarray:
    """The background Gaussian-blurred (kernel `strength`, made odd); objects stay sharp with a feathered edge
    that fades outwards over about a quarter of the kernel."""
    kernel = max(3, strength | 1)
    blurred = cv2.GaussianBlur(image, (kernel, kernel), 0)
    weight = _feathered(labels > 0, max(3, (kernel // 4) | 1))  # (H, W) float32, 1 on objects
    return cv2.blendLinear(image, blurred, weight, 1.0 - weight)


def replace_background(
    image: np.ndarray, labels: np.ndarray, background: tuple[int, int, int] | np.ndarray
) -> np.ndarray:
    """Background pixels replaced by a colour `(r, g, b)` or an RGB image (resized to the frame)."""
    height, width = labels.shape
    if isinstance(background, np.ndarray) and background.ndim >= 2:
        fill = background if background.ndim == 3 else np.dstack([background] * 3)
        fill = fill[..., :3]
        if fill.shape[:2] != (height, width):
            fill = cv2.resize(fill, (width, height), interpolation=cv2.INTER_AREA)
    else:
        fill = np.broadcast_to(np.asarray(background, dtype=np.uint8).reshape(1, 1, 3), (height, width, 3))
    return np.where((labels > 0)[..., None], image, fill).astype(np.uint8)


class ObjectRemover:
    """Removes the objects from each frame of a video.

    Keeps a clean plate: for every pixel the latest value seen while it was background, and a map of which
    pixels have been seen. Object pixels (grown by `margin` to cover mask edges) are filled from the plate where
    seen, the rest with cv2.inpaint (TELEA). With a static camera the plate converges to the clean background.
    """

    def __init__(self, margin: int = 2, inpaint_radius: int = 5) -> None:
        self.margin = margin
        self.inpaint_radius = inpaint_radius
        self.reset()

    def reset(self) -> None:
        """Forget the clean plate (call between videos)."""
        self._plate: np.ndarray | None = None  # (H, W, 3) latest background value per pixel
        self._seen: np.ndarray | None = None  # (H, W) bool

    def __call__(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        if self._plate is None or self._plate.shape != image.shape:
            self._plate = np.zeros_like(image)
            self._seen = np.zeros(labels.shape, dtype=bool)
        hole = _grow(labels > 0, self.margin)  # (H, W)
        np.copyto(self._plate, image, where=~hole[..., None])
        self._seen |= ~hole
        out = np.where((hole & self._seen)[..., None], self._plate, image)  # (H, W, 3)
        unseen = hole & ~self._seen
        if unseen.any():
            np.copyto(out, _inpaint(out, unseen, self.inpaint_radius), where=unseen[..., None])
        return out


def _edges(labels: np.ndarray) -> np.ndarray:
    """`(H, W)` bool: object pixels with a 4-neighbour of another label (1-pixel inner outline)."""
    edges = np.zeros(labels.shape, dtype=bool)
    edges[1:, :] |= labels[1:, :] != labels[:-1, :]
    edges[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edges & (labels > 0)


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """A bool mask dilated by `pixels` (square structuring element)."""
    if pixels <= 0:
        return mask
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), dtype=np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def _inpaint(image: np.ndarray, hole: np.ndarray, radius: int) -> np.ndarray:
    """cv2.inpaint (TELEA) of the `hole` pixels, run at a short side of about 240 px to stay fast."""
    height, width = hole.shape
    factor = max(1, min(height, width) // _INPAINT_SHORT_SIDE)
    if factor == 1:
        return cv2.inpaint(image, hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    size = (width // factor, height // factor)
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0  # any hole pixel
    filled = cv2.inpaint(small, small_hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)


def _feathered(mask: np.ndarray, kernel: int) -> np.ndarray:
    """`(H, W)` float32 weight: 1 on the mask, fading to 0 outside it over about `kernel` pixels."""
    soft = cv2.GaussianBlur(mask.astype(np.float32), (kernel, kernel), 0)
    return np.maximum(soft * 2.0, mask).clip(0.0, 1.0)


def render_stills(out_dir: Path, sample: Path, frame: str = "00000") -> list[Path]:
    """Write one still per effect (JPEG, PNG for the RGBA cut-out) for `sample/<frame>.jpg` and its mask."""
    image = cv2.cvtColor(cv2.imread(str(sample / f"{frame}.jpg")), cv2.COLOR_BGR2RGB)
    labels = read_mask(sample / "masks" / f"{frame}.png")
    stills = {
        "overlay": overlay(image, labels),
        "mask": mask_image(labels),
        "cutout": cutout(image, labels),
        "blur": blur_background(image, labels),
        "replace": replace_background(image, labels, (0, 177, 64)),
        "remove": ObjectRemover()(image, labels),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, still in stills.items():
        if still.shape[2] == 4:
            path = out_dir / f"{name}.png"
            cv2.imwrite(str(path), cv2.cvtColor(still, cv2.COLOR_RGBA2BGRA))
        else:
            path = out_dir / f"{name}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(still, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stills", type=Path, required=True, help="folder to write one image per effect into")
    parser.add_argument("--sample", type=Path, default=Path(__file__).parent.parent / "samples" / "judo")
    parser.add_argument("--frame", default="00000", help="frame name with a mask in SAMPLE/masks")
    args = parser.parse_args()
    for path in render_stills(args.stills, args.sample, args.frame):
        print(path)


if __name__ == "__main__":
    main()
