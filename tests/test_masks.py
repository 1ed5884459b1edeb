"""core.io.masks: the DAVIS palette, reading the mask formats users give, writing, resizing and checking."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core.io.masks import MaskError, check_mask, davis_palette, object_ids, read_mask, resize_labels, write_mask


def labels_with_ids(ids: tuple[int, ...] = (1, 2, 7)) -> np.ndarray:
    labels = np.zeros((40, 60), np.uint8)  # (H, W)
    for n, object_id in enumerate(ids):
        labels[5 + 10 * n : 12 + 10 * n, 4 + 15 * n : 20 + 15 * n] = object_id
    return labels


def read_mask_of(rgb: np.ndarray, path: Path) -> np.ndarray:
    Image.fromarray(rgb).save(path)
    return read_mask(path)


def test_davis_palette_is_the_voc_bit_interleave(judo_dir: Path) -> None:
    palette = davis_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[:6].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128]]
    assert palette[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in palette}) == 256
    shipped = np.array(Image.open(judo_dir / "masks" / "00000.png").getpalette()[:768]).reshape(256, 3)
    assert np.array_equal(shipped, palette)


def test_sample_masks_keep_their_ids(judo_dir: Path, bike_dir: Path) -> None:
    expected = {"00000": [1], "00005": [2], "00008": [3], "00013": [4]}
    for name, ids in expected.items():
        labels = read_mask(judo_dir / "masks" / f"{name}.png")
        assert labels.shape == (480, 854) and labels.dtype == np.uint8
        assert object_ids(labels) == ids
    assert object_ids(read_mask(bike_dir / "masks" / "00000.png")) == [1, 2]


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    labels = labels_with_ids((1, 2, 255))
    path = tmp_path / "sub" / "mask.png"
    write_mask(path, labels)
    image = Image.open(path)
    assert image.mode == "P"
    assert np.array_equal(np.array(image.getpalette()[:768]).reshape(256, 3), davis_palette())
    assert np.array_equal(read_mask(path), labels)
    assert [p.name for p in path.parent.iterdir()] == ["mask.png"]


def test_full_hd_masks_are_run_length_compressed(tmp_path: Path) -> None:
    labels = np.zeros((1080, 1920), np.uint8)
    cv2.circle(labels, (900, 500), 300, 1, -1)
    cv2.ellipse(labels, (1400, 700), (200, 120), 30, 0, 360, 2, -1)
    write_mask(tmp_path / "mask.png", labels)
    assert np.array_equal(read_mask(tmp_path / "mask.png"), labels)
    assert (tmp_path / "mask.png").stat().st_size < 7000  # 5.8 KB; with zlib level 1's default strategy 16.2 KB


def test_write_rejects_non_label_arrays(tmp_path: Path) -> None:
    with pytest.raises(MaskError, match="uint8"):
        write_mask(tmp_path / "m.png", np.zeros((4, 4), np.int32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["L", "RGB", "1"])
def test_binary_black_white_mask_reads_as_0_1(tmp_path: Path, mode: str) -> None:
    binary = labels_with_ids((1,)) > 0
    path = tmp_path / "binary.png"
    Image.fromarray(np.where(binary, 255, 0).astype(np.uint8)).convert(mode).save(path)
    assert np.array_equal(read_mask(path), binary.astype(np.uint8))


def test_gray_ids_without_255_are_kept(tmp_path: Path) -> None:
    labels = labels_with_ids((1, 2, 3))
    Image.fromarray(labels).save(tmp_path / "ids.png")
    assert np.array_equal(read_mask(tmp_path / "ids.png"), labels)


def test_rgb_palette_colours_map_to_ids(tmp_path: Path) -> None:
    labels = labels_with_ids((1, 2, 7))
    Image.fromarray(davis_palette()[labels]).save(tmp_path / "colours.png")
    assert np.array_equal(read_mask(tmp_path / "colours.png"), labels)


def test_transparent_rgba_pixels_are_background(tmp_path: Path) -> None:
    labels = labels_with_ids((1, 2))
    rgba = np.dstack([davis_palette()[labels], np.full(labels.shape, 255, np.uint8)])
    rgba[labels == 2, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert np.array_equal(read_mask(tmp_path / "rgba.png"), np.where(labels == 1, 1, 0))


def test_flat_colours_off_the_palette_keep_one_id_in_every_mask(tmp_path: Path) -> None:
    both = np.zeros((8, 8, 3), np.uint8)
    both[1:3, 5:7] = (0, 255, 0)  # green first in raster order
    both[4:6, 1:3] = (255, 0, 0)
    Image.fromarray(both).save(tmp_path / "both.png")
    red_only = np.zeros((8, 8, 3), np.uint8)
    red_only[4:6, 1:3] = (255, 0, 0)
    Image.fromarray(red_only).save(tmp_path / "red.png")
    expected = np.zeros((8, 8), np.uint8)
    expected[1:3, 5:7], expected[4:6, 1:3] = 146, 73  # the ids of the nearest DAVIS colours
    assert np.array_equal(read_mask(tmp_path / "both.png"), expected)
    assert np.array_equal(read_mask(tmp_path / "red.png"), np.where(expected == 73, 73, 0))
    assert tuple(davis_palette()[73]) == (224, 0, 0) and tuple(davis_palette()[146]) == (0, 224, 0)


def test_flat_colours_too_alike_are_a_mask_error(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[1:3, 1:3], rgb[5:7, 5:7] = (255, 0, 0), (250, 10, 0)
    Image.fromarray(rgb).save(tmp_path / "alike.png")
    with pytest.raises(MaskError, match=r"colours \(250, 10, 0\) and \(255, 0, 0\) are too alike"):
        read_mask(tmp_path / "alike.png")


def two_discs(line: int) -> np.ndarray:
    """A red disc and a green one overlapping it (RGB), drawn with cv2.LINE_8 (flat) or cv2.LINE_AA."""
    rgb = np.zeros((300, 400, 3), np.uint8)
    cv2.circle(rgb, (130, 150), 90, (255, 0, 0), -1, line)
    cv2.circle(rgb, (280, 150), 70, (0, 255, 0), -1, line)
    return rgb


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("edges", ["anti-aliased", "blurred"])
def test_colour_mask_with_soft_edges_reads_like_the_flat_one(tmp_path: Path, edges: str) -> None:
    flat = two_discs(cv2.LINE_8)
    soft = two_discs(cv2.LINE_AA) if edges == "anti-aliased" else cv2.GaussianBlur(flat, (0, 0), 1.5)
    assert len(np.unique(soft.reshape(-1, 3), axis=0)) > 100  # the edges' blends: no longer a few flat colours
    expected, labels = read_mask_of(flat, tmp_path / "flat.png"), read_mask_of(soft, tmp_path / "soft.png")
    assert object_ids(labels) == [73, 146]  # the yellowish blend where the discs meet is no third object
    assert iou(labels == 73, expected == 73) > 0.97 and iou(labels == 146, expected == 146) > 0.97


@pytest.mark.parametrize("quality", [85, 90])
def test_jpeg_colour_mask_reads_like_the_flat_one(tmp_path: Path, quality: int) -> None:
    expected = read_mask_of(two_discs(cv2.LINE_8), tmp_path / "flat.png")
    path = tmp_path / "mask.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(two_discs(cv2.LINE_AA), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    labels = read_mask(path)
    assert object_ids(labels) == [73, 146]
    assert iou(labels == 73, expected == 73) > 0.97 and iou(labels == 146, expected == 146) > 0.97
    red_only = two_discs(cv2.LINE_AA) * np.array([1, 0, 0], np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(red_only, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert object_ids(read_mask(path)) == [73]  # the same colour is the same object in every mask of a clip


def test_blended_edges_go_to_the_colours_either_side(tmp_path: Path) -> None:
    flat = np.zeros((200, 400, 3), np.uint8)
    cv2.circle(flat, (100, 100), 70, (255, 255, 0), -1)
    cv2.circle(flat, (300, 100), 70, (255, 128, 0), -1)
    expected = read_mask_of(flat, tmp_path / "flat.png")
    # yellow's blends with black pass nearer orange than yellow or black: the nearest colour would ring it in orange
    labels = read_mask_of(cv2.GaussianBlur(flat, (0, 0), 1.5), tmp_path / "soft.png")
    assert object_ids(labels) == object_ids(expected) and len(object_ids(expected)) == 2
    assert all(iou(labels == i, expected == i) > 0.98 for i in object_ids(expected))


@pytest.mark.parametrize("channels", [1, 3])
def test_black_and_white_jpeg_mask_is_one_object(tmp_path: Path, channels: int) -> None:
    disc = np.zeros((120, 160), np.uint8)
    cv2.circle(disc, (80, 60), 40, 255, -1, cv2.LINE_AA)
    cv2.imwrite(str(tmp_path / "mask.jpg"), np.dstack([disc] * channels), [cv2.IMWRITE_JPEG_QUALITY, 85])
    labels = read_mask(tmp_path / "mask.jpg")
    assert object_ids(labels) == [1] and iou(labels == 1, disc >= 128) > 0.97


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_photo_is_a_mask_error(tmp_path: Path, suffix: str) -> None:
    yy, xx = np.mgrid[:60, :80]
    shading = np.dstack([xx * 3, yy * 4, 255 - xx * 2]) + np.random.default_rng(0).normal(0, 12, (60, 80, 3))
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(np.clip(shading, 0, 255).astype(np.uint8)).save(path)  # shading and grain: no flat colours
    with pytest.raises(MaskError, match=r"\d+ colours, not DAVIS palette colours; save the mask") as error:
        read_mask(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_soft_grey_matte_below_white_is_one_object(tmp_path: Path) -> None:
    yy, xx = np.mgrid[:40, :60]
    glow = np.exp(-(((xx - 30) / 12.0) ** 2 + ((yy - 20) / 9.0) ** 2))  # peaks at 250, never white
    Image.fromarray((glow * 250).astype(np.uint8)).save(tmp_path / "soft.png")
    labels = read_mask(tmp_path / "soft.png")
    assert set(np.unique(labels)) == {0, 1}
    assert np.array_equal(labels, ((glow * 250).astype(np.uint8) >= 125).astype(np.uint8))


def test_sixteen_bit_white_is_binary(tmp_path: Path) -> None:
    binary = labels_with_ids((1,)) > 0
    Image.fromarray(binary.astype(np.uint16) * 65535).save(tmp_path / "deep.png")
    assert np.array_equal(read_mask(tmp_path / "deep.png"), binary.astype(np.uint8))


@pytest.mark.parametrize("mode,picture", [("RGBA", "black"), ("RGBA", "colour photo"), ("RGBA", "grey photo"),
                                          ("LA", "black")])
def test_alpha_marks_the_object_when_the_pixels_name_none(tmp_path: Path, mode: str, picture: str) -> None:
    inside = labels_with_ids((1,)) > 0
    rgba = np.zeros((*inside.shape, 4), np.uint8)
    noise = np.random.default_rng(0).integers(1, 255, inside.shape)
    if picture == "colour photo":
        rgba[..., 0], rgba[..., 1], rgba[..., 2] = noise, 255 - noise, noise // 2
    elif picture == "grey photo":
        rgba[..., :3] = noise[..., None]
    rgba[..., 3] = np.where(inside, 255, 0)  # the alpha alone says where the object is
    Image.fromarray(rgba, "RGBA").convert(mode).save(tmp_path / "cut.png")
    assert np.array_equal(read_mask(tmp_path / "cut.png"), inside.astype(np.uint8))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_keeps_what_the_opaque_pixels_say(tmp_path: Path, mode: str) -> None:
    labels = labels_with_ids((1, 2))
    grey = mode == "LA"
    rgba = np.zeros((*labels.shape, 4), np.uint8)
    rgba[..., :3] = labels[..., None] if grey else davis_palette()[labels * 73 % 219]  # ids, or red and green
    rgba[..., 3] = np.where(labels > 0, 255, 0)
    Image.fromarray(rgba, "RGBA").convert(mode).save(tmp_path / "objects.png")
    expected = labels if grey else (labels * 73 % 219).astype(np.uint8)
    assert np.array_equal(read_mask(tmp_path / "objects.png"), expected)
    white = np.dstack([np.where(labels == 1, 255, 0)] * 3 + [np.full(labels.shape, 255)]).astype(np.uint8)
    white[0, 0, 3] = 0  # one transparent pixel (a padded canvas): black is still background
    Image.fromarray(white, "RGBA").save(tmp_path / "padded.png")
    assert np.array_equal(read_mask(tmp_path / "padded.png"), (labels == 1).astype(np.uint8))


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(MaskError, match="not found"):
        read_mask(tmp_path / "nope.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(MaskError, match="cannot read") as error:
        read_mask(tmp_path / "text.png")
    assert "\n" not in str(error.value) and "text.png" in str(error.value)


def test_resize_labels_is_nearest_neighbour() -> None:
    labels = labels_with_ids((1, 2, 7))
    doubled = resize_labels(labels, (80, 120))
    assert np.array_equal(doubled, labels.repeat(2, axis=0).repeat(2, axis=1))
    odd = resize_labels(labels, (31, 47))
    assert odd.shape == (31, 47) and odd.dtype == np.uint8
    assert set(np.unique(odd)) <= {0, 1, 2, 7}
    assert resize_labels(labels, (40, 60)) is not labels


def test_check_mask_size_and_emptiness() -> None:
    labels = labels_with_ids()
    check_mask(labels, (40, 60), "mask.png")
    with pytest.raises(MaskError, match=r"mask\.png: mask is 60×40 .* resize it to 854×480 \(nearest"):
        check_mask(labels, (480, 854), "mask.png")
    with pytest.raises(MaskError, match=r"mask\.png: mask is 60×40 but the video is 40×60 as it is shown: drawn on "
                                        r"the frame turned sideways .* draw it on the upright frame"):
        check_mask(labels, (60, 40), "mask.png")  # drawn on a portrait phone clip's stored, landscape picture
    with pytest.raises(MaskError, match="mark at least one object"):
        check_mask(np.zeros((40, 60), np.uint8), (40, 60), "empty.png")


def test_object_ids_sorted_nonzero() -> None:
    assert object_ids(labels_with_ids((7, 2, 1))) == [1, 2, 7]
    assert object_ids(np.zeros((3, 3), np.uint8)) == []
    assert object_ids(np.full((2, 2), 255, np.uint8)) == [255]
