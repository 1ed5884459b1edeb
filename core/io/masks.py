"""Palette-PNG masks: the DAVIS palette, reading and writing label maps, resizing and checking them.

A label map is an `(H, W)` `uint8` array: 0 = background, otherwise the object id exactly as the user gave it.
"""

from __future__ import annotations

import os
import tempfile
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from core.io.command import BadInput

# An RGB mask colour matches a palette entry when every channel is within this many levels of it
# (tolerates light re-compression; the 256 palette colours lie on a grid with a 32-level spacing).
_COLOUR_TOLERANCE = 6
# A grey mask with more distinct non-zero levels than this is a soft matte (anti-aliased or feathered edges), not
# object ids; a colour mask with at most this many colours that are not all DAVIS colours is read colour by colour.
_ID_LEVELS = 32


class MaskError(BadInput, ValueError):
    """A mask that cannot be used; the message is one line naming the file and the fix."""


def davis_palette() -> np.ndarray:
    """The standard VOC/DAVIS palette: the bits of each index spread over R, G and B from the top bit down."""
    index = np.arange(256, dtype=np.int64)
    palette = np.zeros((256, 3), dtype=np.int64)  # (256, 3)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
    return palette.astype(np.uint8)


def read_mask(path: str | os.PathLike, frame_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask image as an `(H, W)` `uint8` label map.

    Palette PNGs give their indices. A grey (or grey RGB) mask is binary (0/1) when it reaches white (255, or
    65535 at 16 bits; thresholded at half) or holds more than _ID_LEVELS levels (a soft matte; thresholded at half
    its brightest level); otherwise its values are the ids. A colour mask maps each DAVIS palette colour to its
    id, or, when its few flat colours are not all DAVIS colours (red on black, say), each to the id of the nearest
    DAVIS colour. In a mask with transparency (RGBA, LA) transparent pixels are background and the opaque ones
    are read by the same rules, or, where they name no object or are a picture (a cut-out), are object 1. With
    `frame_hw` = (H, W), the video's frame size, a mask of another size is refused (check_mask's message) before
    it is decoded.
    """
    image = _open_image(Path(path), frame_hw)
    if image.mode == "P":
        return np.array(image, dtype=np.uint8)
    if image.mode in ("1", "L", "I", "I;16", "F"):
        return _gray_labels(np.array(image.convert("I")), path)
    rgba = np.array(image.convert("RGBA"))  # (H, W, 4)
    opaque = rgba[..., 3] >= 128
    rgb = rgba[..., :3]
    if not opaque.all():
        return _alpha_labels(np.where(opaque[..., None], rgb, 0).astype(np.uint8), opaque, path)
    if _is_gray(rgb):
        return _gray_labels(rgb[..., 0].astype(np.int64), path)
    return _colour_labels(rgb, path)


def write_mask(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write a label map as a DAVIS palette PNG, atomically (temporary file in the same folder, then rename)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise MaskError(f"{path}: labels must be an (H, W) uint8 array, got {labels.shape} {labels.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.frombytes("P", (labels.shape[1], labels.shape[0]), np.ascontiguousarray(labels).tobytes())
    image.putpalette(davis_palette().tobytes())
    handle, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png.tmp", dir=path.parent)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; masks are ordinary files
    try:
        with os.fdopen(handle, "wb") as file:
            # zlib's run-length strategy: label maps are long runs; as fast as level 1 and half its size
            image.save(file, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resize_labels(labels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize a label map to `hw` = (height, width) with nearest-neighbour sampling (ids are never blended)."""
    height, width = hw
    if labels.shape == (height, width):
        return labels.copy()
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def check_mask(labels: np.ndarray, frame_hw: tuple[int, int], source: str) -> None:
    """Raise MaskError when the mask does not match the frame size `frame_hw` = (H, W) or holds no object."""
    if labels.shape != tuple(frame_hw):
        raise _wrong_size(source, f"{labels.shape[1]}×{labels.shape[0]}", frame_hw)
    if not labels.any():
        raise MaskError(f"{source}: mask is empty (all background); mark at least one object")


def object_ids(labels: np.ndarray) -> list[int]:
    """The sorted non-zero ids present in a label map."""
    return [int(i) for i in np.flatnonzero(np.bincount(labels.ravel(), minlength=256)[1:]) + 1]


def _wrong_size(source: str | os.PathLike, size: str, frame_hw: tuple[int, int]) -> MaskError:
    """The error for a mask of `size` ("W×H") on a video of frame size `frame_hw` = (H, W)."""
    height, width = frame_hw
    return MaskError(f"{source}: mask is {size} but the video is {width}×{height}; "
                     f"resize it to {width}×{height} (nearest neighbour, to keep the object ids)")


def _open_image(path: Path, frame_hw: tuple[int, int] | None) -> Image.Image:
    """Open and fully load an image, turning every failure into a one-line MaskError."""
    if not path.is_file():
        raise MaskError(f"{path}: mask file not found; check the path")
    try:
        image = _open_header(path, frame_hw)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise MaskError(f"{path}: cannot read the mask ({error}); save it as a PNG image") from None
    return image


def _open_header(path: Path, frame_hw: tuple[int, int] | None) -> Image.Image:
    """Image.open (the header, no pixels yet); MaskError when the image is too large to decode safely or,
    with `frame_hw` = (H, W), of another size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL warns above MAX_IMAGE_PIXELS
            image = Image.open(path)  # and raises DecompressionBombError above twice that
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(path, frame_hw) from None
    if frame_hw is not None and image.size != (frame_hw[1], frame_hw[0]):
        image.close()
        raise _wrong_size(path, "{}×{}".format(*image.size), frame_hw)
    return image


def _too_large(path: Path, frame_hw: tuple[int, int] | None) -> MaskError:
    """The error for an image over PIL's pixel limit, naming its size (read from the PNG header)."""
    try:
        with PngImagePlugin.PngImageFile(path) as image:
            size = "{}×{}".format(*image.size)
    except (OSError, SyntaxError):  # not a PNG
        size = f"over {Image.MAX_IMAGE_PIXELS} pixels"
    if frame_hw is not None:
        return _wrong_size(path, size, frame_hw)
    return MaskError(f"{path}: mask is {size}, far larger than any video frame; save it at the video's size")


def _is_gray(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def _gray_labels(values: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Grey values → labels: binary (1 from half the range up) when they reach white at 8 or 16 bits, binary at
    half the brightest level for a soft matte (more than _ID_LEVELS levels), otherwise the values are ids."""
    if values.min() < 0 or values.max() > 65535:
        raise MaskError(f"{path}: mask values must be 0–255; save it as an 8-bit or palette PNG")
    brightest = int(values.max())
    if brightest in (255, 65535):
        return (values > brightest // 2).astype(np.uint8)
    if _levels(values) > _ID_LEVELS:
        return (2 * values >= brightest).astype(np.uint8)
    if brightest > 255:
        raise MaskError(f"{path}: mask values must be 0–255; save it as an 8-bit or palette PNG")
    return values.astype(np.uint8)


def _levels(values: np.ndarray) -> int:
    """How many distinct non-zero grey levels `values` (non-negative integers) hold."""
    return int(np.count_nonzero(np.bincount(values.ravel())[1:]))


def _alpha_labels(rgb: np.ndarray, opaque: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Labels of a mask with transparency, its transparent pixels already black in `rgb`: what the opaque pixels
    say by the rules for masks without it (black and white, grey ids, DAVIS or flat colours), or, where they name
    no object or are a picture (a cut-out: many colours, or a grey photo's many levels), the opaque pixels as
    object 1."""
    try:
        if _is_gray(rgb):
            values = rgb[..., 0].astype(np.int64)
            is_picture = _levels(values[opaque]) > _ID_LEVELS
            labels = None if is_picture else _gray_labels(values, path)
        else:
            labels = _colour_labels(rgb, path)
    except MaskError:  # a picture's colours
        labels = None
    if labels is None or not labels[opaque].any():
        return opaque.astype(np.uint8)
    return np.where(opaque, labels, 0).astype(np.uint8)


def _colour_labels(rgb: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Labels of an `(H, W, 3)` colour mask: DAVIS ids when every colour is a DAVIS palette colour, else, for at
    most _ID_LEVELS flat colours, each colour's nearest DAVIS colour's id: the same colour is the same object in
    every mask of a clip (red is 73, green 146), and the masks written back show it in about its own colour."""
    codes, inverse = np.unique(_packed(rgb).ravel(), return_inverse=True)  # (C,), (H*W,)
    colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=1)  # (C, 3)
    ids = _palette_ids(colours)
    if ids is None:
        ids = _nearest_ids(colours, path)
    return ids.astype(np.uint8)[inverse.ravel()].reshape(rgb.shape[:2])


def _packed(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours → (H, W) int32 codes 0xRRGGBB."""
    return rgb.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int32)


def _palette_ids(colours: np.ndarray) -> np.ndarray | None:
    """The DAVIS palette id of each of the (C, 3) colours, or None when one matches no entry."""
    distance = np.abs(colours[:, None, :] - davis_palette()[None].astype(np.int32)).max(-1)  # (C, 256)
    ids = distance.argmin(axis=1)  # (C,)
    if (distance[np.arange(len(colours)), ids] > _COLOUR_TOLERANCE).any():
        return None
    return ids


def _nearest_ids(colours: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """For at most _ID_LEVELS flat (C, 3) colours besides black, each one's nearest DAVIS colour's id (black, or
    within _COLOUR_TOLERANCE of it, is 0); MaskError for more colours or for two that land on one id."""
    black = colours.max(axis=1) <= _COLOUR_TOLERANCE
    if np.count_nonzero(~black) > _ID_LEVELS:
        raise MaskError(f"{path}: {len(colours)} colours, not DAVIS palette colours; save the mask as a palette PNG, "
                        "black and white, or with one flat colour per object")
    distance = ((colours[:, None, :] - davis_palette()[None, 1:].astype(np.int64)) ** 2).sum(-1)  # (C, 255)
    nearest = np.where(black, 0, distance.argmin(axis=1) + 1)
    named, counts = np.unique(nearest[~black], return_counts=True)
    if (counts > 1).any():
        alike = [tuple(int(c) for c in colours[i]) for i in np.flatnonzero(nearest == named[counts > 1][0])[:2]]
        raise MaskError(f"{path}: colours {alike[0]} and {alike[1]} are too alike to be told apart; paint each "
                        "object in a clearly different colour, or save the mask as a palette PNG")
    return nearest
