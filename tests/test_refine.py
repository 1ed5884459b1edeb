"""core.annotate.refine: tracked masks redrawn by the shipped annotation network, object by object, ids kept;
the pipeline, the evaluation and the batch give the same redrawn masks, and leave annotated frames as given."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core.annotate.refine import MIN_PIXELS, MaskRefiner, RefinedTracker
from core.batch.cli import main as batch_main
from core.evaluation.metrics import region_similarity
from core.inference.tracker import Tracker
from core.inference.settings import TrackerConfig
from core.io.masks import read_mask
from core.io.video import Frame, open_video
from core.model.network import NetworkConfig, build_network
from core.pipeline import run_frames

JUDO = Path(__file__).resolve().parent.parent / "samples" / "judo"


@pytest.fixture(scope="module")
def refiner() -> MaskRefiner:
    return MaskRefiner()


def judo_frame(index: int) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(JUDO / f"{index:05d}.jpg")), cv2.COLOR_BGR2RGB)


def rough(mask: np.ndarray) -> np.ndarray:
    """`mask` as a poor tracker might give it: eaten away at its edges, with a false blob beside it."""
    worse = cv2.erode(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    ys, xs = np.nonzero(mask)
    worse[ys.min() : ys.min() + 30, xs.max() + 5 : xs.max() + 35] = True
    return worse


def test_a_rough_mask_is_redrawn_closer_to_the_object_and_keeps_its_id(refiner: MaskRefiner) -> None:
    image, player = judo_frame(0), read_mask(JUDO / "masks" / "00000.png") == 1
    labels = np.where(rough(player), 7, 0).astype(np.uint8)
    refined, objects = refiner(image, labels, [7])
    assert set(np.unique(refined)) == {0, 7}
    assert region_similarity(refined == 7, player) > region_similarity(labels == 7, player) + 0.05
    assert objects.dtype == np.float32 and np.array_equal(objects > 0.5, refined > 0)


def test_each_object_keeps_its_own_id_and_tiny_or_lost_ones_stay_as_tracked(refiner: MaskRefiner) -> None:
    image = judo_frame(13)
    labels = read_mask(JUDO / "masks" / "00000.png").copy()  # player 1
    labels[read_mask(JUDO / "masks" / "00013.png") == 4] = 4
    labels[:3, :3] = 9  # 9 pixels: too small to zoom on
    refined, _ = refiner(image, labels, [1, 4, 9, 5])  # 5 is tracked but not seen on this frame
    assert 9 < MIN_PIXELS and (refined == 9).sum() == 9 and not (refined == 5).any()
    for object_id in (1, 4):
        assert region_similarity(refined == object_id, labels == object_id) > 0.6
    assert not refiner(image, np.zeros_like(labels), [])[0].any()


def test_the_pipeline_redraws_the_same_masks_as_frame_by_frame_and_not_the_annotated_ones(
        refiner: MaskRefiner) -> None:
    torch.manual_seed(0)
    network = build_network(NetworkConfig()).eval()
    annotations = {int(p.stem): read_mask(p) for p in sorted((JUDO / "masks").glob("*.png"))}
    reference = RefinedTracker(Tracker(TrackerConfig(device="cpu", threads=1), network), refiner)
    plain = Tracker(TrackerConfig(device="cpu", threads=1), network)
    with open_video(JUDO) as reader:
        frames = list(reader)
    expected = [reference.step(frame.image, annotations.get(frame.index)) for frame in frames]
    unrefined = [plain.step(frame.image, annotations.get(frame.index)) for frame in frames]

    class Recorder:
        def __init__(self) -> None:
            self.labels: list[np.ndarray] = []

        def write(self, frame: Frame, labels: np.ndarray, alpha: np.ndarray | None) -> None:
            self.labels.append(labels)

        def finish(self) -> None:
            pass

    sink = Recorder()
    with open_video(JUDO) as reader:
        list(run_frames(reader, annotations, Tracker(TrackerConfig(device="cpu"), network), [sink], None,
                        refiner=refiner))
    assert len(sink.labels) == 16 and all(np.array_equal(a, b) for a, b in zip(sink.labels, expected))
    redrawn = [index for index in range(16) if not np.array_equal(sink.labels[index], unrefined[index])]
    assert redrawn and not set(redrawn) & set(annotations)


def test_batch_refine_is_recorded_and_changes_the_masks(tmp_path: Path) -> None:
    common = [str(JUDO), "--mask", str(JUDO / "masks" / "00000.png"), "--quiet"]
    assert batch_main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert batch_main([*common, "--out", str(tmp_path / "refined"), "--refine"]) == 0
    record = json.loads((tmp_path / "refined" / "judo" / "job.json").read_text())
    assert record["spec"]["refine"] is True
    plain, refined = (sorted((tmp_path / run / "judo" / "masks").glob("*.png")) for run in ("plain", "refined"))
    assert np.array_equal(read_mask(plain[0]), read_mask(refined[0]))  # the annotated frame, as given
    assert any(not np.array_equal(read_mask(a), read_mask(b)) for a, b in zip(plain[1:], refined[1:]))
