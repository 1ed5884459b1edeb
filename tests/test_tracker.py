"""The tracker: constant memory, object ids as given, objects added later, bad masks, inference size."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from core.io.masks import MaskError, object_ids, resize_labels
from core.inference.memory import FirstPreviousMemory, InfiniteMemory
from core.model.network import NetworkConfig, build_network
from core.inference.tracker import (Tracker, argmax_planes, box_prior, cuda_shortfall, expected_box, far_parts,
                                    inference_shape, object_boxes, plane_labels, resample_planes, resolve_backend,
                                    resolve_device, shrink_keeping_ids)
from core.inference.settings import NEAR_CELLS, PRIOR_PENALTY, TrackerConfig, add_tracker_arguments, tracker_config


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return build_network(NetworkConfig()).eval()


def _frame(seed: int, hw=(60, 100)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*hw, 3), dtype=np.uint8)


def _mask(hw=(60, 100), boxes=((1, 10, 30, 10, 30),)) -> np.ndarray:
    mask = np.zeros(hw, np.uint8)
    for obj, y0, y1, x0, x1 in boxes:
        mask[y0:y1, x0:x1] = obj
    return mask


def test_first_step_returns_the_annotation_and_keeps_ids(network) -> None:
    tracker = Tracker(TrackerConfig(device="cpu"), network)
    mask = _mask(boxes=((3, 5, 25, 5, 25), (7, 30, 50, 60, 90)))
    labels = tracker.step(_frame(0), mask)
    assert labels.shape == (60, 100) and labels.dtype == np.uint8
    assert np.array_equal(labels, mask)
    assert tracker.object_ids == [3, 7]
    assert tracker.probabilities.shape == (3, 60, 100)
    out = tracker.step(_frame(1))
    assert set(np.unique(out)) <= {0, 3, 7}


def test_an_annotated_frame_larger_than_the_inference_size_gives_its_annotation_pixel_for_pixel(network) -> None:
    """The network sees a 480×640 frame at 240×320, where a one-pixel line and a jagged edge are lost: the
    annotated frame's labels used to be the annotation shrunk and grown back, not the one the user gave."""
    hw = (480, 640)
    mask = _mask(hw, boxes=((1, 100, 300, 100, 301), (2, 320, 420, 400, 500)))
    mask[50:400, 350] = 1  # a one-pixel line
    mask[101::2, 300] = 0  # a jagged edge
    tracker = Tracker(TrackerConfig(device="cpu"), network)
    assert np.array_equal(tracker.step(_frame(0, hw), mask), mask)
    tracker.step(_frame(1, hw))
    again = np.zeros(hw, np.uint8)
    again[330:431:3, 390:480] = 2  # object 2 annotated again, as stripes; object 1 tracked on
    labels = tracker.step(_frame(2, hw), again)
    assert np.array_equal(labels == 2, again == 2)
    assert set(np.unique(labels[again == 0])) <= {0, 1}


def test_memory_stays_two_frames_however_long_the_video(network) -> None:
    tracker = Tracker(TrackerConfig(device="cpu"), network)
    tracker.step(_frame(0), _mask())
    sizes = []
    for i in range(1, 12):
        tracker.step(_frame(i))
        sizes.append(tracker.groups[0].memory.tensors().key.shape[-1])
    assert isinstance(tracker.groups[0].memory, FirstPreviousMemory)
    assert len(set(sizes)) == 1 and len(tracker.groups[0].memory) == 2


def test_infinite_memory_grows_every_k_frames(network) -> None:
    tracker = Tracker(TrackerConfig(device="cpu", memory="infinite", every=2), network)
    tracker.step(_frame(0), _mask())
    for i in range(1, 9):
        tracker.step(_frame(i))
    memory = tracker.groups[0].memory
    assert isinstance(memory, InfiniteMemory)
    assert len(memory.kept) == 4 and len(memory) >= 5


def test_objects_added_on_a_later_frame_join_the_tracking(network) -> None:
    tracker = Tracker(TrackerConfig(device="cpu"), network)
    tracker.step(_frame(0), _mask(boxes=((1, 5, 25, 5, 25),)))
    tracker.step(_frame(1))
    labels = tracker.step(_frame(2), _mask(boxes=((2, 30, 50, 60, 90),)))
    assert tracker.object_ids == [1, 2]
    assert (labels[30:50, 60:90] == 2).all()
    assert len(tracker.groups) == 2
    assert tracker.step(_frame(3)).shape == (60, 100)
    assert tracker.probabilities.shape == (3, 60, 100)


def test_reannotating_an_id_moves_it_to_the_new_group(network) -> None:
    tracker = Tracker(TrackerConfig(device="cpu"), network)
    tracker.step(_frame(0), _mask(boxes=((1, 5, 25, 5, 25), (2, 30, 50, 60, 90))))
    labels = tracker.step(_frame(1), _mask(boxes=((1, 40, 55, 5, 30),)))
    assert sorted(tracker.object_ids) == [1, 2]
    assert [g.ids for g in tracker.groups] == [[2], [1]]
    assert (labels[40:55, 5:30] == 1).all()


def test_empty_and_missing_and_wrong_size_masks_are_clear_errors(network) -> None:
    tracker = Tracker(TrackerConfig(device="cpu"), network)
    with pytest.raises(MaskError, match="needs an annotation"):
        tracker.step(_frame(0))
    with pytest.raises(MaskError, match="at least one object"):
        tracker.step(_frame(0), np.zeros((60, 100), np.uint8))
    with pytest.raises(MaskError):
        tracker.step(_frame(0), np.ones((30, 50), np.uint8))


def test_inference_size_returns_full_size_labels(network) -> None:
    tracker = Tracker(TrackerConfig(device="cpu", size=32), network)
    mask = _mask()
    assert tracker.step(_frame(0), mask).shape == (60, 100)
    assert tracker.step(_frame(1)).shape == (60, 100)
    assert inference_shape(480, 854, 240) == (240, 427)
    assert inference_shape(480, 854, None) == (240, 427)  # the default, the training scale
    assert inference_shape(480, 854, 480) == (480, 854)
    assert inference_shape(90, 160, None) == (90, 160)  # never upscaled
    assert inference_shape(90, 160, 2000) == (90, 160)  # not even when asked


def test_an_object_too_small_for_the_inference_size_is_kept(network) -> None:
    """Nearest-neighbour sampling to the inference size misses a 2×2 object of a 480×800 frame tracked at 30 px;
    the tracker keeps it on the pixel its area covers, so the annotated frame's labels still hold it."""
    mask = _mask((480, 800), boxes=((1, 100, 300, 100, 400), (2, 401, 403, 601, 603)))
    assert object_ids(resize_labels(mask, (30, 50))) == [1]
    assert object_ids(shrink_keeping_ids(mask, (30, 50))) == [1, 2]
    tracker = Tracker(TrackerConfig(device="cpu", size=30), network)
    labels = tracker.step(_frame(0, (480, 800)), mask)
    assert object_ids(labels) == [1, 2] and abs(np.argwhere(labels == 2).mean(axis=0) - (401.5, 601.5)).max() < 16


def test_reset_forgets_everything(network) -> None:
    tracker = Tracker(TrackerConfig(device="cpu"), network)
    tracker.step(_frame(0), _mask())
    tracker.reset()
    assert tracker.object_ids == []
    with pytest.raises(MaskError):
        tracker.step(_frame(1))


def test_online_adaptation_tunes_a_copy_and_reset_restores_the_network(network) -> None:
    tracker = Tracker(TrackerConfig(device="cpu", adapt_steps=2), network)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    tracker.step(_frame(0, (64, 96)), _mask((64, 96)))
    assert tracker.network is not network
    changed = any(not torch.equal(before[k], v) for k, v in tracker.network.state_dict().items())
    assert changed and all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    assert tracker.step(_frame(1, (64, 96))).shape == (64, 96)
    tracker.reset()
    assert tracker.network is network


def test_resampling_stride_4_maps_matches_bilinear_interpolation() -> None:
    planes = np.random.default_rng(0).random((3, 6, 9)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(planes)[None], size=(24, 36), mode="bilinear",
                             align_corners=False)[0].numpy()
    assert np.abs(resample_planes(planes, 4, (24, 36), (24, 36)) - expected).max() < 0.02
    padded = F.interpolate(torch.from_numpy(planes)[None], size=(24, 36), mode="bilinear", align_corners=False)
    twice = F.interpolate(padded[:, :, :20, :30], size=(40, 60), mode="bilinear", align_corners=False)[0].numpy()
    resampled = resample_planes(planes, 4, (20, 30), (40, 60))  # padding cropped, then ×2
    assert resampled.shape == (3, 40, 60) and np.abs(resampled - twice).mean() < 0.02
    assert np.array_equal(resample_planes(planes, 1, (5, 8), (5, 8)), planes[:, :5, :8])


@pytest.mark.parametrize("count", [1, 2, 4, 5, 9])
def test_resampling_gives_each_plane_its_own_opencv_warp_bit_for_bit(count: int) -> None:
    """The labels' upsampling is each plane's own bilinear warpAffine, bit for bit, written in place into the
    output (a warp that wrote elsewhere would leave the output's garbage)."""
    planes = np.random.default_rng(2).random((count, 15, 27)).astype(np.float32)
    sx, sy = 107 / (4 * 190), 60 / (4 * 107)
    inverse = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    expected = [cv2.warpAffine(p, inverse, (190, 107), flags=flags, borderMode=cv2.BORDER_REPLICATE) for p in planes]
    assert np.array_equal(resample_planes(planes, 4, (60, 107), (107, 190)), np.stack(expected))


def test_coarse_step_gives_the_steps_labels_and_the_objects_at_any_size(network) -> None:
    tracker = Tracker(TrackerConfig(device="cpu"), network)
    twin = Tracker(TrackerConfig(device="cpu"), network)
    mask = _mask(boxes=((3, 5, 25, 5, 25), (7, 30, 50, 60, 90)))
    tracker.step(_frame(0), mask)
    twin.step(_frame(0), mask)
    labels = tracker.step(_frame(1))
    coarse = twin.step_coarse(_frame(1))
    coarse_labels, probabilities = coarse.full_size()
    assert np.array_equal(coarse_labels, labels) and np.array_equal(probabilities, tracker.probabilities)
    assert np.array_equal(coarse.labels(), labels)
    assert np.allclose(coarse.objects((60, 100)), 1.0 - probabilities[0])
    assert coarse.objects((30, 50)).shape == (30, 50)


def test_plane_argmax_is_numpy_argmax_with_first_index_on_ties() -> None:
    planes = np.random.default_rng(1).integers(0, 4, (4, 30, 40)).astype(np.float32)  # many ties
    assert np.array_equal(argmax_planes(planes), planes.argmax(axis=0))


def test_auto_backend_is_onnx_on_the_cpu_and_torch_for_adaptation() -> None:
    assert resolve_backend(TrackerConfig(backend="auto", device="cpu")) == "onnx"
    assert resolve_backend(TrackerConfig(backend="auto", device="cpu", adapt_steps=3)) == "torch"
    assert resolve_backend(TrackerConfig(backend="onnx-int8")) == "onnx-int8"
    assert resolve_backend(TrackerConfig()) == "torch"  # the Python API's default stays torch


def test_box_prior_lowers_logits_outside_each_objects_grown_previous_box() -> None:
    probs = torch.zeros(1, 3, 32, 48)  # at stride 1 of a 32×48 frame; the decoder's grid is stride 4 (8×12)
    probs[0, 0] = 1.0
    probs[0, 0, 8:16, 16:32], probs[0, 1, 8:16, 16:32] = 0.0, 1.0  # id 4: rows 2–4, columns 4–8 on the grid
    boxes = object_boxes(plane_labels(probs), (8, 12), [4, 9])
    assert boxes == {4: (2.0, 4.0, 4.0, 8.0)}  # id 9 is not seen
    prior = box_prior(boxes, {}, [4, 9], (8, 12), grow=0.5)  # grown by 1 row and 2 columns on every edge
    assert prior.shape == (1, 2, 8, 12)
    inside = torch.zeros(8, 12, dtype=torch.bool)
    inside[1:5, 2:10] = True
    assert torch.all(prior[0, 0][inside] == 0) and torch.all(prior[0, 0][~inside] == -PRIOR_PENALTY)
    assert torch.all(prior[0, 1] == 0)  # not seen: no prior, it may come back anywhere


def test_the_expected_box_reaches_as_far_again_as_the_object_moved() -> None:
    box, before = (2.0, 4.0, 4.0, 8.0), (2.0, 4.0, 1.0, 5.0)  # 3 columns to the right since the frame before
    assert expected_box(box, None, grow=0.0) == box
    assert expected_box(box, before, grow=0.0) == (2.0, 4.0, 4.0, 11.0)
    assert expected_box(box, before, grow=0.5) == (1.0, 5.0, 2.0, 13.0)  # grown by half the box, not the reach


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "1e999", "foo"])
def test_box_prior_refuses_what_is_no_fraction_in_one_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.ArgumentParser()
    add_tracker_arguments(args)
    with pytest.raises(SystemExit):
        args.parse_args(["--box-prior", value])
    assert f"argument --box-prior: {value!r}: give a fraction of 0 or more" in capsys.readouterr().err


def test_box_prior_is_an_option_that_changes_the_frames_after_an_annotation(network) -> None:
    args = argparse.ArgumentParser()
    add_tracker_arguments(args)
    assert args.parse_args([]).box_prior == 0.5 and args.parse_args(["--box-prior", "off"]).box_prior is None
    on, off = (Tracker(TrackerConfig(device="cpu", box_prior=g), network) for g in (0.5, None))
    assert np.array_equal(on.step(_frame(0), _mask()), off.step(_frame(0), _mask()))
    on.step(_frame(1)), off.step(_frame(1))
    assert np.abs(on.probabilities - off.probabilities).max() > 0.1


def test_far_parts_are_an_objects_parts_that_do_not_come_near_where_it_was() -> None:
    before = np.zeros((30, 40), np.uint8)
    before[2:6, 2:6] = 1  # object 1 was here; object 2 was not seen
    labels = before.copy()
    labels[4:8, 4:8] = 1  # the same part, moved
    labels[4:8, 5 + NEAR_CELLS : 8 + NEAR_CELLS] = 1  # a part of its own, just near enough
    labels[20:25, 30:35] = 1  # a distractor far away
    labels[10:12, 10:12] = labels[25:28, 2:5] = 2
    far = far_parts(labels, before, 3)
    assert far.shape == (3, 30, 40) and not far[1:].any()  # an object not seen before keeps every part
    expected = np.zeros((30, 40), bool)
    expected[20:25, 30:35] = True
    assert np.array_equal(far[0], expected)
    alone = np.zeros_like(labels)
    alone[20:25, 30:35] = 1
    assert not far_parts(alone, before, 1).any()  # no part comes near: it cannot tell, so every part stays
    assert not far_parts(labels, before[:20], 3).any()  # another grid (a frame of another size)


def test_near_parts_drop_a_distractor_away_from_the_object_and_all_keeps_it(network, monkeypatch) -> None:
    args = argparse.ArgumentParser()
    add_tracker_arguments(args)
    assert tracker_config(args.parse_args([])).near_parts
    assert not tracker_config(args.parse_args(["--parts", "all"])).near_parts
    logits = torch.full((1, 1, 16, 28), -10.0)  # the decoder's grid of a 60×100 frame padded to 64×112
    logits[0, 0, 3:8, 3:8] = 10.0  # object 1 where it was annotated (rows and columns 10–30)
    logits[0, 0, 11:15, 20:27] = 10.0  # and a look-alike far from it
    labels = {}
    for near in (True, False):
        tracker = Tracker(TrackerConfig(device="cpu", box_prior=None, near_parts=near), network)
        tracker.step(_frame(0), _mask())
        monkeypatch.setattr(tracker, "_predict", lambda feats: logits.clone())
        labels[near] = tracker.step(_frame(1))
    assert labels[True][14:26, 14:26].all() and labels[False][14:26, 14:26].all()
    assert not labels[True][44:60, 80:108].any() and labels[False][48:56, 84:104].all()


def test_a_far_part_dropped_by_one_object_is_not_taken_by_another_far_from_it(network, monkeypatch) -> None:
    hw = (120, 200)  # padded to 128×208: a 32×52 decoder grid
    tracker = Tracker(TrackerConfig(device="cpu", box_prior=None), network)
    tracker.step(_frame(0, hw), _mask(hw, ((1, 10, 30, 10, 30), (2, 80, 110, 150, 190))))
    logits = torch.full((1, 2, 32, 52), -10.0)
    logits[0, 0, 3:7, 3:7] = logits[0, 1, 21:27, 38:47] = 10.0  # each object where it was
    logits[0, 0, 24:30, 2:8], logits[0, 1, 24:30, 2:8] = 10.0, 5.0  # a look-alike far from both
    monkeypatch.setattr(tracker, "_predict", lambda feats: logits.clone())
    labels = tracker.step(_frame(1, hw))
    assert (labels[14:26, 14:26] == 1).all() and (labels[88:106, 156:186] == 2).all()
    assert not labels[92:124, 4:36].any()


@pytest.mark.parametrize("name, devices, told", [
    ("cuda", 0, "'cuda': no CUDA device is available here; use --device cpu or auto"),
    ("cuda:1", 0, "'cuda:1': no CUDA device is available here"),
    ("cuda:1", 1, "'cuda:1': this machine has 1 CUDA device(s), cuda:0 to cuda:0; pick one of them"),
    ("cuda:x", 1, "'cuda:x': give cuda, or cuda:N for the N-th CUDA device"),
    ("cuda:0", 1, None),
    ("cuda", 2, None),
    ("cpu", 0, None),
])
def test_a_cuda_device_this_machine_lacks_is_named_before_any_work(
        name: str, devices: int, told: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: devices > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: devices)
    shortfall = cuda_shortfall(name)
    if told is None:
        assert shortfall is None
    else:
        assert shortfall is not None and told in shortfall
        with pytest.raises(RuntimeError, match="--device"):
            resolve_device(name)
