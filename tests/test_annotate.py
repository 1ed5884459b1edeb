"""core.annotate's network path: click simulation and encoding, the network's shapes, the marks' replay and its
cache, the shipped annotator on a real frame (box, brush edits), the network as the default, and clear loading
errors; the interactive evaluation's bookkeeping."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core import annotate
from core.annotate import Mark
from core.annotate import segmenter as segmenter_module
from core.annotate.clicks import (GUIDANCE_CHANNELS, Click, guidance_maps, interior_point, jittered_box, next_click,
                                  random_interior_click, tight_box, touched_parts)
from core.annotate.grabcut import polish_box_answer
from core.annotate.network import (AnnotatorConfig, ClickNet, default_annotator, default_annotator_entry,
                                   load_annotator, load_annotator_checkpoint, save_annotator)
from core.annotate.segmenter import (CLEAR_SHARE, CLICK_REACH, CLOSE_MARGIN, CLOSE_MIN_SIDE, CLOSE_SHARE, FOCUS,
                                     SECOND_VIEW, ClickSegmenter, cleared_around, clicked_parts, close_look,
                                     close_window, focus_window, inside_box, mirror_averaged, predict, second_view)
from core.evaluation.interactive import (annotated_clips, click_ious, clicks_to_reach, clip_objects, first_click,
                                        iou_after, score)
from core.evaluation.davis import EvalError
from core.evaluation.interactive import main as interactive_main
from core.evaluation.metrics import region_similarity
from core.io.masks import read_mask, write_mask
from core.weights import WEIGHTS_DIR, WeightsError, sha256

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def rectangle(hw: tuple[int, int] = (60, 80), box: tuple[int, int, int, int] = (10, 20, 50, 40)) -> np.ndarray:
    """(H, W) bool with the inclusive box x0, y0, x1, y1 set."""
    mask = np.zeros(hw, dtype=bool)
    x0, y0, x1, y1 = box
    mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def judo_player() -> tuple[np.ndarray, np.ndarray]:
    """The first judo sample frame (854×480 RGB) and its player 1 mask."""
    image = cv2.cvtColor(cv2.imread(str(SAMPLES / "judo" / "00000.jpg")), cv2.COLOR_BGR2RGB)
    return image, read_mask(SAMPLES / "judo" / "masks" / "00000.png") == 1


# ---- clicks ----

def test_interior_point_is_the_deepest_pixel() -> None:
    assert interior_point(rectangle(box=(10, 10, 30, 30))) == (20, 20)
    assert interior_point(np.zeros((5, 5), bool)) is None


def test_next_click_goes_to_the_larger_error_with_its_sign() -> None:
    target = rectangle()
    missed_half = target.copy()
    missed_half[:, 30:] = False
    click = next_click(target, missed_half)
    assert click is not None and click.positive and click.x > 30
    extra = target | rectangle(box=(55, 0, 79, 59))
    click = next_click(target, extra)
    assert click is not None and not click.positive and click.x >= 55
    assert next_click(target, target) is None


def test_jittered_box_moves_each_side_by_at_most_ten_percent() -> None:
    target = rectangle()
    rng = np.random.default_rng(0)
    for _ in range(20):
        x0, y0, x1, y1 = jittered_box(target, rng)
        assert abs(x0 - 10) <= 4.1 and abs(x1 - 50) <= 4.1 and abs(y0 - 20) <= 2.1 and abs(y1 - 40) <= 2.1
    assert tight_box(target) == (10, 20, 50, 40)


def test_random_interior_click_lands_inside_the_object() -> None:
    target = rectangle()
    rng = np.random.default_rng(0)
    assert all(target[c.y, c.x] and c.positive for c in (random_interior_click(target, rng) for _ in range(20)))


def test_guidance_maps_hold_disks_box_and_previous_mask() -> None:
    previous = rectangle()
    maps = guidance_maps((60, 80), [Click(5, 5, True), Click(70, 50, False)], (10, 20, 50, 40), previous, 3)
    assert maps.shape == (GUIDANCE_CHANNELS, 60, 80) and maps.dtype == np.float32
    assert maps[0, 5, 5] == 1 and maps[0, 50, 70] == 0 and maps[1, 50, 70] == 1 and maps[0, 5, 9] == 0
    assert np.array_equal(maps[2] > 0, rectangle()) and np.array_equal(maps[3] > 0, previous)


# ---- the network and the replay of marks ----

def test_network_gives_one_logit_per_input_pixel() -> None:
    network = ClickNet().eval()
    with torch.no_grad():
        logits = network(torch.rand(2, 3, 64, 96), torch.zeros(2, GUIDANCE_CHANNELS, 64, 96))
    assert logits.shape == (2, 1, 64, 96)


def test_a_stride2_head_starts_as_the_network_without_it() -> None:
    """The stride-2 head's correction starts at zero (the shipped network given a head answers as before), and
    once its last weights move the answer is the head's."""
    shipped = load_annotator()
    fine = ClickNet(AnnotatorConfig(fine=8)).eval()
    fine.load_state_dict(shipped.state_dict(), strict=False)
    image, guidance = torch.rand(1, 3, 64, 96), torch.rand(1, GUIDANCE_CHANNELS, 64, 96)
    with torch.no_grad():
        assert torch.allclose(fine(image, guidance), shipped(image, guidance), atol=1e-5)
        torch.nn.init.normal_(fine.fine.out.weight)
        assert not torch.allclose(fine(image, guidance), shipped(image, guidance), atol=1e-3)


class CountingNet(ClickNet):
    """A ClickNet that counts its runs and takes every pixel it sees."""

    runs = 0

    def forward(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        self.runs += 1
        return torch.full_like(image[:, :1], 10.0)


def test_each_new_click_costs_one_step_and_its_close_look_and_any_frame_size_works() -> None:
    segmenter = ClickSegmenter(CountingNet().eval())
    image = np.random.default_rng(0).integers(0, 255, (75, 101, 3), dtype=np.uint8)
    marks = (Mark("positive", 1, 50, 30),)
    assert segmenter.mask(image, marks).shape == (75, 101)
    assert segmenter.network.runs == 6  # the whole frame, zoomed on that answer, the close look; each mirrored
    marks += (Mark("negative", 1, 10, 10), Mark("brush_add", 1, 3, 3, radius=2))
    segmenter.mask(image, marks)
    segmenter.mask(image, marks)
    assert segmenter.network.runs == 6 + 4  # one step and its close look, once: the second call is cached


def test_a_first_click_answered_with_a_speck_is_asked_again_in_a_square_around_it() -> None:
    class SpeckNet(ClickNet):
        """Takes nothing in the whole frame's (wide) view and everything in a zoomed (square) one: the answer a
        click between two touching look-alikes got."""

        def forward(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
            return torch.full_like(image[:, :1], 10.0 if image.shape[-1] == image.shape[-2] else -10.0)

    image = np.zeros((480, 854, 3), np.uint8)
    click = Click(400, 240, True)
    x, y, side = second_view(image.shape[:2], click)
    assert side == round(SECOND_VIEW * 480) and (x + side / 2, y + side / 2) == (400, 240)
    mask = ClickSegmenter(SpeckNet().eval()).mask(image, (Mark("positive", 1, click.x, click.y),))
    assert mask[y : y + side, x : x + side].all() and not mask[:, :100].any()


def test_a_negative_click_inside_the_mask_clears_a_disk_of_the_mask_the_network_is_given() -> None:
    class Copying:
        """A stand-in network that copies the previous mask it is given (bright pixels when there is none): the
        habit that kept a negative click from taking anything away."""

        config = AnnotatorConfig()

        def __call__(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
            previous = guidance[:, 3:4]
            shown = previous if previous.any() else image.mean(dim=1, keepdim=True)
            return (shown - 0.5) * 40

    square = rectangle((240, 320), (60, 60, 219, 219))
    radius = round(CLEAR_SHARE * np.sqrt(square.sum()))
    hole = cleared_around(square, Click(200, 140, False))
    assert hole is not None and not hole[140, 200 - radius + 1 : 201].any() and hole[140, 200 - radius - 1]
    assert cleared_around(rectangle((240, 320), (10, 10, 12, 12)), Click(11, 11, False)) is None
    image = np.zeros((240, 320, 3), np.uint8)
    image[square] = 255
    marks = (Mark("positive", 1, 100, 140), Mark("negative", 1, 200, 140))
    mask = ClickSegmenter(Copying()).mask(image, marks)
    assert mask[140, 100] and not mask[140, 200] and mask.sum() < square.sum() - radius ** 2


def test_the_close_look_redraws_a_square_around_the_last_click_but_its_edges() -> None:
    image = np.zeros((480, 854, 3), np.uint8)
    mask = np.zeros((480, 854), bool)
    mask[200:260, 300:360] = True  # its zoomed view: a square of side 100
    click = Click(330, 230, False)
    assert close_window(mask.shape, click, mask) == (298, 198, CLOSE_MIN_SIDE)  # half of 100, at least the minimum
    mask[100:300, 300:500] = True  # now a view of side 333: the close look's side 167
    x, y, side = close_window(mask.shape, click, mask)
    assert side == round(CLOSE_SHARE * round(200 / FOCUS)) and (x + side / 2, y + side / 2) == (330, 230)
    looked = close_look(CountingNet().eval(), image, (click,), None, mask)
    inset = round(side * CLOSE_MARGIN)
    inner = np.zeros_like(mask)
    inner[y + inset : y + side - inset, x + inset : x + side - inset] = True
    assert not mask[inner].all() and np.array_equal(looked, mask | inner)  # all it saw taken, within the inset


def test_the_mirrored_run_is_mirrored_back_before_averaging() -> None:
    class LeftHalf(torch.nn.Module):
        """Logits +10 on the input's left half, −10 on its right: mirrored back, the two runs cancel."""

        def forward(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
            logits = torch.full_like(image[:, :1], -10.0)
            logits[..., : image.shape[-1] // 2] = 10.0
            return logits

    image, guidance = torch.rand(1, 3, 32, 48), torch.zeros(1, 4, 32, 48)
    assert torch.count_nonzero(mirror_averaged(LeftHalf(), image, guidance)) == 0


def test_the_zoomed_view_is_a_square_around_the_box_or_the_last_mask_and_its_clicks() -> None:
    shape = (480, 854)
    assert focus_window(shape, (Click(5, 5, True),), None, None) is None  # nothing to zoom on yet
    x, y, side = focus_window(shape, (), (100, 200, 159, 239), None)
    assert side == round(60 / FOCUS) and (x + side / 2, y + side / 2) == (130, 220)
    clicks = (Click(300, 220, True), Click(600, 400, False))
    grown = focus_window(shape, clicks, None, rectangle(shape, (100, 200, 159, 239)))
    assert grown[2] == round(201 / FOCUS)  # the positive click widens it, the negative one does not
    assert focus_window(shape, (), (0, 0, 700, 300), None) == (-76, -276, 854)  # never wider than the frame


def test_a_zoomed_prediction_is_zero_outside_its_square_and_any_square_works() -> None:
    network = ClickNet().eval()
    image = np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    for window in ((30, 20, 40), (-10, -15, 50), (100, 70, 48)):  # inside, over the top-left and bottom-right
        x, y, side = window
        probabilities = predict(network, image, (Click(x + side // 2, y + side // 2, True),), None, None, window)
        outside = np.ones((90, 120), bool)
        outside[max(0, y) : y + side, max(0, x) : x + side] = False
        assert probabilities.shape == (90, 120) and not probabilities[outside].any()
        assert probabilities[~outside].min() > 0


def test_negative_clicks_alone_take_nothing_without_running_the_network() -> None:
    segmenter = ClickSegmenter(CountingNet().eval())
    image = np.zeros((40, 40, 3), np.uint8)
    assert not segmenter.mask(image, (Mark("negative", 1, 20, 20),)).any()
    assert segmenter.network.runs == 0


def test_a_box_cuts_the_mask_unless_a_positive_click_lies_outside_it() -> None:
    full = np.ones((20, 20), bool)
    assert inside_box(full, (5, 5, 9, 9), (Click(7, 7, True),)).sum() == 25
    assert inside_box(full, (5, 5, 9, 9), (Click(15, 15, True),)).all()


def test_only_the_parts_a_positive_click_touches_are_kept() -> None:
    two = rectangle((60, 80), (5, 5, 20, 20)) | rectangle((60, 80), (50, 30, 70, 50))
    assert np.array_equal(clicked_parts(two, (Click(10, 10, True),)), rectangle((60, 80), (5, 5, 20, 20)))
    near = Click(50 - CLICK_REACH, 40, True)  # just outside the second part, within reach
    assert np.array_equal(clicked_parts(two, (Click(10, 10, True), near)), two)
    assert np.array_equal(clicked_parts(two, (Click(35, 55, True),)), two)  # touches nothing: kept as it is
    assert np.array_equal(clicked_parts(two, (Click(10, 10, False),)), two)  # no positive click
    corner = rectangle((60, 80), (75, 55, 79, 59))
    assert np.array_equal(touched_parts(two | corner, [(200, 300)]), corner)  # a point past the edge: held to it


def test_a_click_keeps_its_part_alone_but_within_a_box_every_part_stays() -> None:
    class Bright:  # a stand-in network: bright pixels are the object, whatever the marks
        config = AnnotatorConfig()

        def __call__(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
            return (image.mean(dim=1, keepdim=True) - 0.5) * 40

    image = np.zeros((120, 160, 3), np.uint8)
    left, right = rectangle((120, 160), (20, 30, 50, 70)), rectangle((120, 160), (100, 40, 130, 80))
    image[left | right] = 255
    segmenter = ClickSegmenter(Bright())
    assert np.array_equal(segmenter.mask(image, (Mark("positive", 1, 35, 50),)), left)
    both = segmenter.mask(image, (Mark("box", 1, 10, 20, 140, 90), Mark("positive", 1, 35, 50)))
    assert np.array_equal(both, left | right)


# ---- the shipped annotator ----

def test_one_click_on_a_player_takes_that_player_and_no_blobs_elsewhere() -> None:
    image, player = judo_player()  # the issue's case: one click on the trousers took both players' legs and mat
    mask = annotate.object_mask(image, (Mark("positive", 1, 430, 330),), method="network")
    assert region_similarity(mask, player) > 0.8
    assert cv2.connectedComponents(mask.view(np.uint8))[0] == 2  # background and one part


def test_a_click_where_two_players_jackets_touch_takes_the_clicked_player() -> None:
    """Seen whole, the frame answered this click (the player's most interior point, where the two white jackets
    meet) with a speck; asked again in a square around the click, it takes the player."""
    image, player = judo_player()
    x, y = interior_point(player)
    mask = annotate.object_mask(image, (Mark("positive", 1, x, y),), method="network")
    assert region_similarity(mask, player) > 0.8


def test_a_click_on_the_frames_corner_pixel_takes_the_object_in_that_corner() -> None:
    """The network only saw clicks well inside objects: a click at the very corner of an object in the frame's
    corner took a few pixels, until such an answer was found again on the frame mirrored out past its edges."""
    image = np.random.default_rng(0).integers(0, 60, (240, 320, 3)).astype(np.uint8)
    corner = rectangle((240, 320), (220, 160, 319, 239))
    image[corner] = (230, 220, 40)
    for x, y in ((319, 239), (318, 238)):  # the corner pixel, and one pixel inside
        marks, _ = annotate.add_click((), None, "positive", 1, x, y)
        assert region_similarity(annotate.labels_from_marks(image, marks) == 1, corner) > 0.5


def test_a_box_takes_the_object_inside_it_and_nothing_outside() -> None:
    image, player = judo_player()
    x0, y0, x1, y1 = tight_box(player)
    mask = annotate.object_mask(image, (Mark("box", 1, x0, y0, x1, y1),), method="network")
    assert region_similarity(mask, player) > 0.6
    assert not mask[:, : x0].any() and not mask[:, x1 + 1 :].any()


def test_a_box_alone_is_answered_twice_and_a_later_click_once_and_looked_at_closely() -> None:
    class Counting:
        def __init__(self, network: ClickNet):
            self.network, self.config, self.runs = network, network.config, 0

        def __call__(self, image: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
            self.runs += 1
            return self.network(image, guidance)

    image, player = judo_player()
    x0, y0, x1, y1 = tight_box(player)
    counting = Counting(load_annotator(default_annotator()).eval())
    segmenter = ClickSegmenter(counting)
    box = Mark("box", 1, x0, y0, x1, y1)
    assert region_similarity(segmenter.mask(image, (box,)), player) > 0.6
    assert counting.runs == 4  # the box, then again with that answer as the previous mask; each mirrored
    segmenter.mask(image, (box, Mark("positive", 1, (x0 + x1) // 2, (y0 + y1) // 2)))
    assert counting.runs == 8  # the click: one step and its close look


def test_brush_edits_the_network_result_in_order() -> None:
    image, player = judo_player()
    x0, y0, x1, y1 = tight_box(player)
    box = Mark("box", 1, x0, y0, x1, y1)
    taken = annotate.object_mask(image, (box,), method="network")
    y, x = np.argwhere(taken)[len(np.argwhere(taken)) // 2]
    marks = (box, Mark("brush_erase", 1, int(x), int(y), radius=5), Mark("brush_add", 1, 10, 10, radius=4))
    edited = annotate.object_mask(image, marks, method="network")
    assert not edited[y, x] and edited[10, 10] and not taken[10, 10]


def test_the_network_is_the_default_and_grabcut_an_option() -> None:
    image, player = judo_player()
    x0, y0, x1, y1 = tight_box(player)
    marks = (Mark("box", 2, x0, y0, x1, y1),)
    assert annotate.DEFAULT_METHOD == "network"
    for method in annotate.METHODS:
        labels = annotate.labels_from_marks(image, marks, method=method)
        assert set(np.unique(labels)) == {0, 2} and region_similarity(labels == 2, player) > 0.6
    with pytest.raises(ValueError, match="unknown annotation method"):
        annotate.object_mask(image, (), method="magic")  # type: ignore[arg-type]


def test_shipped_annotator_matches_its_manifest_and_records_its_provenance() -> None:
    entry = default_annotator_entry()
    assert sha256(default_annotator()) == entry["sha256"]
    meta = load_annotator_checkpoint()["meta"]
    assert meta["validation_sequences"] and not set(meta["validation_sequences"]) & set(meta["training_sequences"])


# ---- GrabCut's polish of a box's answer ----

def red_block_scene() -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """A 120×160 RGB image of green-grey noise with a red block (the object), its mask and a box around it."""
    rng = np.random.default_rng(0)
    image = np.stack([rng.integers(40, 90, (120, 160)), rng.integers(110, 170, (120, 160)),
                      rng.integers(40, 90, (120, 160))], axis=-1).astype(np.uint8)
    block = rectangle((120, 160), (50, 30, 109, 89))
    image[block] = (200, 30, 30)
    return image, block, (40, 20, 119, 99)


def test_polish_takes_back_what_the_answer_missed_and_drops_what_it_added_inside_the_box() -> None:
    image, block, box = red_block_scene()
    answer = rectangle((120, 160), (50, 30, 79, 89)) | rectangle((120, 160), (42, 92, 60, 99))  # half + a stray bit
    polished = polish_box_answer(image, box, answer)
    assert region_similarity(answer, block) < 0.6 < 0.95 < region_similarity(polished, block)
    x0, y0, x1, y1 = box
    assert not polished[:y0].any() and not polished[:, :x0].any() and not polished[y1 + 1 :].any()


def test_polish_gives_the_same_mask_each_time_and_keeps_an_empty_or_tiny_answer() -> None:
    image, block, box = red_block_scene()
    answer = rectangle((120, 160), (50, 30, 79, 89))
    first = polish_box_answer(image, box, answer)
    cv2.setRNGSeed(12345)  # other code drawing from OpenCV's generator in between
    cv2.randu(np.zeros((8, 8), np.float32), 0, 1)
    assert np.array_equal(polish_box_answer(image, box, answer), first)
    assert not polish_box_answer(image, box, np.zeros_like(answer)).any()
    frame = np.random.default_rng(1).integers(0, 256, (480, 854, 3)).astype(np.uint8)
    speck = rectangle((480, 854), (400, 200, 400, 200))  # one pixel: nothing left to seed at 640 pixels wide
    assert np.array_equal(polish_box_answer(frame, (0, 0, 853, 479), speck), speck)


def test_a_box_alone_is_polished_and_a_click_after_it_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    polished: list[tuple[int, int, int, int]] = []

    def recording(image: np.ndarray, box: tuple[int, int, int, int], answer: np.ndarray) -> np.ndarray:
        polished.append(box)
        return answer

    monkeypatch.setattr(segmenter_module, "polish_box_answer", recording)
    image, player = judo_player()
    x0, y0, x1, y1 = tight_box(player)
    segmenter = ClickSegmenter(load_annotator(default_annotator()).eval())
    box = Mark("box", 1, x0, y0, x1, y1)
    segmenter.mask(image, (box, Mark("positive", 1, (x0 + x1) // 2, (y0 + y1) // 2)))
    assert polished == [(x0, y0, x1, y1)]  # the box's step only


# ---- loading errors ----

def test_missing_garbage_and_foreign_annotator_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="annotator checkpoint not found"):
        load_annotator(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(WeightsError, match="unreadable checkpoint"):
        load_annotator(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a MobileVOS annotator checkpoint"):
        load_annotator(tmp_path / "other.pt")


def test_saved_annotator_round_trips_in_half_precision(tmp_path: Path) -> None:
    network = ClickNet(AnnotatorConfig(fine=8)).eval()
    save_annotator(network, tmp_path / "a.pt", {"steps": 1}, half=True)
    loaded = load_annotator(tmp_path / "a.pt")
    assert loaded.config.fine == 8
    for name, tensor in network.state_dict().items():
        assert torch.allclose(tensor.float(), loaded.state_dict()[name].float(), atol=1e-2)


def test_altered_shipped_annotator_fails_its_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(WEIGHTS_DIR / "annotator.json", folder / "annotator.json")
    copy = folder / default_annotator().name
    copy.write_bytes(default_annotator().read_bytes()[:-10] + b"0123456789")
    monkeypatch.setattr("core.annotate.network.WEIGHTS_DIR", folder)
    monkeypatch.setattr("core.annotate.network.ANNOTATOR_MANIFEST", folder / "annotator.json")
    with pytest.raises(WeightsError, match="sha256 does not match"):
        load_annotator(copy)


# ---- the evaluation's bookkeeping ----

def test_noc_and_iou_after_hold_the_last_value() -> None:
    assert clicks_to_reach([0.5, 0.86, 0.91], 0.85, 20) == 2
    assert clicks_to_reach([0.5, 0.6], 0.9, 20) == 20
    assert iou_after([0.5, 0.95], 5) == 0.95 and iou_after([0.5, 0.95], 1) == 0.5


def test_simulated_user_stops_at_the_goal_after_the_minimum_clicks() -> None:
    target = rectangle()
    ious = click_ious(target, lambda marks: target, max_clicks=20, min_clicks=1)
    assert ious == [1.0]
    half = target.copy()
    half[:, 30:] = False
    ious = click_ious(target, lambda marks: half if len(marks) == 1 else target, max_clicks=20, min_clicks=3)
    assert ious[:2] == [region_similarity(half, target), 1.0] and len(ious) == 2  # exact: nothing left to click


def test_the_scores_name_the_frames_that_never_reach_85_and_keep_every_curve() -> None:
    """A frame the method never gets to 85 % adds the cap to NoC@85 and is named; each frame's curve is kept."""
    target = rectangle()
    found, missed = np.zeros((*target.shape, 3), np.uint8), np.ones((*target.shape, 3), np.uint8)
    frames = [("seq/00000", found, target), ("seq/00005", missed, target)]
    scores = score(frames, "fake", lambda image: lambda marks: target if image is found else np.zeros_like(target),
                   max_clicks=3)
    assert scores.unreached85 == ["seq/00005"] and scores.noc85 == (1 + 3) / 2
    assert [(c.name, c.box_iou, c.click_ious) for c in scores.curves] == [
        ("seq/00000", 1.0, [1.0]), ("seq/00005", 0.0, [0.0, 0.0, 0.0])]


def test_a_random_first_click_is_fixed_per_frame_and_played_first() -> None:
    target = rectangle((120, 160), (20, 30, 139, 99))
    assert first_click("a/00000", target, "interior") is None
    draws = [first_click(f"seq/{k:05d}", target, "random") for k in range(8)]
    assert all(c.positive and target[c.y, c.x] for c in draws)
    assert first_click("seq/00003", target, "random") == draws[3] and len(set(draws)) > 1
    played: list[tuple] = []
    click_ious(target, lambda marks: played.append(marks) or target, max_clicks=3, min_clicks=1, first=draws[5])
    assert (played[0][0].x, played[0][0].y) == (draws[5].x, draws[5].y) and played[0][0].kind == "positive"


def test_a_folder_of_clips_is_scored_object_by_object(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    image[8:24, 8:28] = (250, 40, 40)
    image[28:44, 36:60] = (40, 250, 40)
    labels = np.zeros((48, 64), np.uint8)
    labels[8:24, 8:28], labels[28:44, 36:60] = 1, 3
    (tmp_path / "a" / "frames").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "a" / "frames" / "00000.png"), image[..., ::-1])
    write_mask(tmp_path / "a" / "masks" / "00000.png", labels)
    (tmp_path / "b").mkdir()
    cv2.imwrite(str(tmp_path / "b" / "00007.png"), image[..., ::-1])  # the frame beside masks/, its mask half size
    write_mask(tmp_path / "b" / "masks" / "00007.png", np.ascontiguousarray(labels[::2, ::2]))
    (tmp_path / "no-masks").mkdir()
    assert annotated_clips(tmp_path) == ["a", "b"]
    objects = list(clip_objects(tmp_path, ["a", "b"]))
    assert [name for name, _, _ in objects] == ["a/00000/1", "a/00000/3", "b/00007/1", "b/00007/3"]
    assert all(np.array_equal(target, labels == int(name[-1])) for name, _, target in objects)
    interactive_main([str(tmp_path), "--methods", "grabcut", "--max-clicks", "2", "--json", str(tmp_path / "s.json"),
                      "--first-click", "random"])
    assert "4 objects of 2 clips; first click: random" in capsys.readouterr().out
    written = json.loads((tmp_path / "s.json").read_text())
    assert written["results"][0]["frames"] == 4 and written["first_click"] == "random"
    curves = written["results"][0]["curves"]
    assert [c["name"] for c in curves] == ["a/00000/1", "a/00000/3", "b/00007/1", "b/00007/3"]
    assert all(0 <= c["box_iou"] <= 1 and 1 <= len(c["click_ious"]) <= 2 for c in curves)
    assert written["results"][0]["unreached85"] == [c["name"] for c in curves if max(c["click_ious"]) < 0.85]
    (tmp_path / "b" / "00007.png").write_bytes(b"not an image")
    with pytest.raises(EvalError, match="00007.png: cannot read the frame"):
        list(clip_objects(tmp_path, ["b"]))
    (tmp_path / "b" / "00007.png").unlink()
    with pytest.raises(EvalError, match="no frame 00007"):
        list(clip_objects(tmp_path, ["b"]))


def test_the_interactive_score_names_a_clip_or_sequence_folder_given_for_its_parent(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """One clip's folder (as samples/judo for samples) or a DAVIS sequence's (for the DAVIS root) is named as such,
    with the folder to pass, not scored as an empty folder of clips."""
    write_mask(tmp_path / "clips" / "judo" / "masks" / "00000.png", np.ones((8, 8), np.uint8))
    sequence = tmp_path / "davis" / "JPEGImages" / "480p" / "bear"
    sequence.mkdir(parents=True)
    cv2.imwrite(str(sequence / "00000.jpg"), np.zeros((8, 8, 3), np.uint8))
    for root, message in ((tmp_path / "clips" / "judo", f"looks like one clip's folder; pass the folder that holds "
                                                        f"the clips (its parent, {tmp_path / 'clips'})"),
                          (sequence, f"is inside the DAVIS root {tmp_path / 'davis'}; pass that root")):
        with pytest.raises(SystemExit) as error:
            interactive_main([str(root), "--methods", "grabcut"])
        said = str(error.value) + capsys.readouterr().err
        assert f"{root}: {message}" in said and "nothing to score" not in said


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "missing: not a folder; pass a DAVIS root"),
    (["{empty}", "--methods", "grabcut"], "empty: has no JPEGImages/ and no clip with masks/; pass a DAVIS root"),
    (["{empty}", "--methods", "grabcut,snake"], "--methods: unknown snake; use some of network, grabcut"),
    (["{empty}", "--every", "0"], "argument --every: '0': give a whole number of 1 or more"),
])
def test_the_interactive_score_refuses_bad_arguments_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    """A mistyped root, method or frame step ends with one line naming it, before any network loads."""
    (tmp_path / "empty").mkdir()
    argv = [a.format(missing=tmp_path / "missing", empty=tmp_path / "empty") for a in args]
    with pytest.raises(SystemExit) as error:
        interactive_main(argv)
    said = str(error.value) + capsys.readouterr().err
    assert message in said and "Traceback" not in said
