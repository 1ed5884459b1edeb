"""Palette-PNG masks: the DAVIS palette, reading and writing label maps, resizing and checking them.

A label map is an `(H, W)` `uint8` array: 0 = background, otherwise the object id exactly as the user gave it.
"""

from __future__ import annotations

import functools
import itertools
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
# A colour mask with more colours (JPEG noise, anti-aliased or blurred edges) is read by its dominant colours: flat
# ones (on pixels whose 3×3 neighbourhood is within _NOISE levels on every channel), each with the colours within
# _SPREAD levels of it, whose flat pixels make at least _MIN_FLAT_SHARE of the image (and _MIN_FLAT_PIXELS); a thin
# run of one colour (the blend where two objects meet) is no object. It is a picture, not a mask, when under
# _MIN_CLOSE_SHARE of its pixels lie within _NOISE levels of a dominant colour (a mask's others are its edges, a few
# per cent; a photo's are 40 % and more).
_NOISE = 16
_SPREAD = 40
_MIN_FLAT_SHARE = 1 / 20000
_MIN_FLAT_PIXELS = 16
_MIN_CLOSE_SHARE = 0.9
_COLOUR_CHUNK = 4096  # colours compared with the palette at a time (_palette_ids): memory bounded whatever the image


class MaskError(BadInput, ValueError):
    """A mask that cannot be used; the message is one line naming the file and the fix."""


@functools.cache
def _palette_bytes() -> bytes:
    """`davis_palette` as the 768 bytes a PNG's palette holds."""
    return davis_palette().tobytes()


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
    DAVIS colour; with many colours (JPEG noise, anti-aliased edges) each pixel takes the id of the nearer of the
    two dominant colours it blends, and a picture is refused. In a mask with transparency (RGBA, LA) transparent
    pixels are background and the opaque ones are read by the same rules, or, where they name no object or are a
    picture (a cut-out: many colours), are object 1. With `frame_hw` = (H, W), the video's frame size, a mask of
    another size is refused (check_mask's message) before it is decoded.
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
    # frombuffer: the image reads the labels in place (frombytes of tobytes copied them twice, 2 MB each at 1080p)
    image = Image.frombuffer("P", (labels.shape[1], labels.shape[0]), np.ascontiguousarray(labels), "raw", "P", 0, 1)
    image.putpalette(_palette_bytes())
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


def read_annotation(path: str | os.PathLike, frame_hw: tuple[int, int]) -> np.ndarray:
    """The label map of a mask file that annotates frames of size `frame_hw` = (H, W); MaskError, naming the file,
    when it has another size (refused before it is decoded) or marks no object."""
    labels = read_mask(path, frame_hw)
    check_mask(labels, frame_hw, str(path))
    return labels


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
    """The error for a mask of `size` ("W×H") on a video of frame size `frame_hw` = (H, W). A mask of the frame
    turned sideways was drawn on the stored picture of a clip shown rotated (a phone's portrait clip): resizing
    would squash it, so the fix named is drawing it on the upright frame."""
    height, width = frame_hw
    if size == f"{height}×{width}" and height != width:
        return MaskError(f"{source}: mask is {size} but the video is {width}×{height} as it is shown: drawn on the "
                         "frame turned sideways (a phone clip's stored picture, which plays rotated)? draw it on the "
                         "upright frame, or rotate it a quarter turn")
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
            labels = _colour_labels(rgb, path, blended=False)
    except MaskError:  # a picture's colours
        labels = None
    if labels is None or not labels[opaque].any():
        return opaque.astype(np.uint8)
    return np.where(opaque, labels, 0).astype(np.uint8)


def _colour_labels(rgb: np.ndarray, path: str | os.PathLike, blended: bool = True) -> np.ndarray:
    """Labels of an `(H, W, 3)` colour mask: DAVIS ids when every colour is a DAVIS palette colour, else, for at
    most _ID_LEVELS flat colours, each colour's nearest DAVIS colour's id: the same colour is the same object in
    every mask of a clip (red is 73, green 146), and the masks written back show it in about its own colour. With
    more colours and `blended` (JPEG noise, anti-aliased edges; not so in a mask with transparency, where they are
    a cut-out picture), each pixel's dominant colour's id (_blended_ids)."""
    codes, inverse = np.unique(_packed(rgb).ravel(), return_inverse=True)  # (C,), (H*W,)
    inverse = inverse.ravel()
    colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=1)  # (C, 3)
    ids = _palette_ids(colours)
    if ids is None and blended and _many_colours(colours):
        ids = _blended_ids(rgb, colours, inverse, path)
    elif ids is None:
        ids = _nearest_ids(colours, path)
    return ids.astype(np.uint8)[inverse].reshape(rgb.shape[:2])


def _blended_ids(rgb: np.ndarray, colours: np.ndarray, inverse: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """The id of each of the C `colours` of an `(H, W, 3)` mask with blended edges or JPEG noise (`inverse`: each
    pixel's colour): its dominant colour's DAVIS id (_nearest_blends, _davis_ids), dominant colours on one id (a
    colour and a blurred plateau of it) being one object; MaskError for a picture: more than _ID_LEVELS + 1 dominant
    colours, or under _MIN_CLOSE_SHARE of the pixels within _NOISE levels of one."""
    flat_counts = np.bincount(inverse[_flat(rgb).ravel()], minlength=len(colours))  # (C,)
    dominant = _dominant_colours(colours, flat_counts, max(_MIN_FLAT_PIXELS, _MIN_FLAT_SHARE * inverse.size))
    squared = np.array([((colours - colour) ** 2).sum(axis=1) for colour in dominant]).reshape(-1, len(colours))
    close = squared.min(axis=0, initial=_NOISE ** 2 + 1) <= _NOISE ** 2  # (C,)
    if len(dominant) > _ID_LEVELS + 1 or np.mean(close[inverse]) < _MIN_CLOSE_SHARE:
        raise _colours_error(path, len(colours))
    return _davis_ids(dominant)[_nearest_blends(colours, dominant)]


def _flat(rgb: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose 3×3 neighbourhood is within _NOISE levels on every channel."""
    kernel = np.ones((3, 3), np.uint8)
    rgb = np.ascontiguousarray(rgb)
    return (cv2.dilate(rgb, kernel).astype(np.int16) - cv2.erode(rgb, kernel)).max(axis=-1) <= _NOISE


def _dominant_colours(colours: np.ndarray, flat_counts: np.ndarray, min_pixels: float) -> np.ndarray:
    """The (K, 3) dominant colours among the (C, 3) `colours`, greedily, most flat pixels (`flat_counts`) first: a
    colour with flat pixels takes the colours not yet taken within _SPREAD levels of it on every channel, and is a
    dominant colour when they hold `min_pixels` flat pixels; stops past _ID_LEVELS + 1 of them."""
    taken = flat_counts == 0
    dominant = []
    while not taken.all() and len(dominant) <= _ID_LEVELS + 1:
        seed = np.where(taken, -1, flat_counts).argmax()
        members = ~taken & (np.abs(colours - colours[seed]).max(axis=1) <= _SPREAD)
        taken |= members
        if flat_counts[members].sum() >= min_pixels:
            dominant.append(colours[seed])
    return np.array(dominant, np.int64).reshape(-1, 3)


def _nearest_blends(colours: np.ndarray, dominant: np.ndarray) -> np.ndarray:
    """Each (C, 3) colour's dominant colour (index into the (K, 3) `dominant`): of the two it lies nearest a blend
    of, the one it is nearer; an edge pixel goes to the object or background on either side of it, not to a third
    colour between them (orange, between yellow and black)."""
    chosen, best = np.zeros(len(colours), np.int64), np.full(len(colours), np.inf)
    for a, b in itertools.combinations_with_replacement(range(len(dominant)), 2):
        span = dominant[b] - dominant[a]  # (3,)
        share = np.clip((colours - dominant[a]) @ span / max(span @ span, 1), 0, 1)  # (C,) of the way from a to b
        residual = ((colours - dominant[a] - share[:, None] * span) ** 2).sum(axis=1)  # (C,)
        nearer = residual < best
        chosen[nearer], best[nearer] = np.where(share[nearer] < 0.5, a, b), residual[nearer]
    return chosen


def _packed(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours → (H, W) int32 codes 0xRRGGBB."""
    return rgb.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int32)


def _palette_ids(colours: np.ndarray) -> np.ndarray | None:
    """The DAVIS palette id of each of the (C, 3) colours, or None when one matches no entry; worked out
    _COLOUR_CHUNK colours at a time (a photo has millions) and given up at the first chunk with a stranger."""
    palette = davis_palette()[None].astype(np.int32)  # (1, 256, 3)
    ids = np.empty(len(colours), np.int64)
    for start in range(0, len(colours), _COLOUR_CHUNK):
        distance = np.abs(colours[start:start + _COLOUR_CHUNK, None, :] - palette).max(-1)  # (chunk, 256)
        chunk = distance.argmin(axis=1)
        if (distance[np.arange(len(chunk)), chunk] > _COLOUR_TOLERANCE).any():
            return None
        ids[start:start + len(chunk)] = chunk
    return ids


def _many_colours(colours: np.ndarray) -> bool:
    """Whether the (C, 3) colours hold more than _ID_LEVELS besides black (within _COLOUR_TOLERANCE of it)."""
    return np.count_nonzero(colours.max(axis=1) > _COLOUR_TOLERANCE) > _ID_LEVELS


def _colours_error(path: str | os.PathLike, count: int) -> MaskError:
    """The error for a colour mask of `count` colours that are neither DAVIS colours nor a mask's few."""
    return MaskError(f"{path}: {count} colours, not DAVIS palette colours; save the mask as a palette PNG, "
                     "black and white, or with one flat colour per object")


def _davis_ids(colours: np.ndarray) -> np.ndarray:
    """Each (C, 3) colour's nearest DAVIS colour's id; 0 for black (within _COLOUR_TOLERANCE of it)."""
    distance = ((colours[:, None, :] - davis_palette()[None, 1:].astype(np.int64)) ** 2).sum(-1)  # (C, 255)
    return np.where(colours.max(axis=1) <= _COLOUR_TOLERANCE, 0, distance.argmin(axis=1) + 1)


def _nearest_ids(colours: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """For at most _ID_LEVELS flat (C, 3) colours besides black, each one's nearest DAVIS colour's id
    (_davis_ids); MaskError for more colours or for two that land on one id."""
    if _many_colours(colours):
        raise _colours_error(path, len(colours))
    nearest = _davis_ids(colours)
    named, counts = np.unique(nearest[nearest > 0], return_counts=True)
    if (counts > 1).any():
        alike = [tuple(int(c) for c in colours[i]) for i in np.flatnonzero(nearest == named[counts > 1][0])[:2]]
        raise MaskError(f"{path}: colours {alike[0]} and {alike[1]} are too alike to be told apart; paint each "
                        "object in a clearly different colour, or save the mask as a palette PNG")
    return nearest
