"""`python -m core.eval`: DAVIS layout in, palette PNGs and J/F/J&F out; the first-mask baseline scored exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core.annotate.network import save_annotator
from core.annotate.refine import MaskRefiner
from core.evaluation import davis, failures, refinement
from core.evaluation.davis import sequence_files
from core.inference.tracker import Tracker
from core.train.annotator import build as build_annotator
from core.io.masks import davis_palette, read_mask, resize_labels, write_mask

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "bike"
HW = (90, 160)  # frames are shrunk so the tracker runs fast on CPU


def run_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.eval", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def add_frame(root: Path, sequence: str, name: str, image: np.ndarray, labels: np.ndarray) -> None:
    """Write one RGB frame and its 0/255-or-palette annotation in the DAVIS layout."""
    frames = root / "JPEGImages" / "480p" / sequence
    masks = root / "Annotations" / "480p" / sequence
    frames.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(frames / f"{name}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if labels.max() <= 1:  # DAVIS-2016 style: binary 0/255 grayscale
        Image.fromarray(labels * 255).save(masks / f"{name}.png")
    else:
        image_p = Image.fromarray(labels, mode="P")
        image_p.putpalette(davis_palette().tobytes())
        image_p.save(masks / f"{name}.png")


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sequences: `bike` (4 real frames, 2 objects, the first mask on every frame) and `square` (a 20×20
    square moving 5 pixels right per frame on a plain background, binary 0/255 masks)."""
    root = tmp_path_factory.mktemp("davis")
    first = resize_labels(read_mask(SAMPLE / "masks" / "00000.png"), HW)
    for path in sorted(SAMPLE.glob("*.jpg")):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        add_frame(root, "bike", path.stem, cv2.resize(image, HW[::-1], interpolation=cv2.INTER_AREA), first)
    for index in range(4):
        image = np.full((*HW, 3), 40, np.uint8)
        labels = np.zeros(HW, np.uint8)
        labels[30:50, 20 + 5 * index : 40 + 5 * index] = 1
        image[labels == 1] = (220, 180, 60)
        add_frame(root, "square", f"{index:05d}", image, labels)
    return root


def test_first_mask_baseline_scores_static_masks_100_and_moving_square_by_hand(
    davis_root: Path, tmp_path: Path
) -> None:
    result = run_eval(str(davis_root), "--baseline", "first-mask", "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    bike = report["sequences"]["bike"]
    assert (bike["j"], bike["f"], bike["jf"]) == (100.0, 100.0, 100.0)
    assert sorted(bike["objects"]) == ["1", "2"]
    # Scored frames 1 and 2 of `square`: IoU 300/500 and 200/600 against the first square.
    assert report["sequences"]["square"]["j"] == pytest.approx(100 * (0.6 + 1 / 3) / 2)
    assert report["sequences"]["square"]["f"] < 100  # shifts of 5 and 10 px on 160×90: radius is 2 px
    assert report["mean"]["j"] == pytest.approx((100 + 100 + 100 * (0.6 + 1 / 3) / 2) / 3)  # mean over 3 objects
    assert "bike" in result.stdout and "J&F" in result.stdout


def test_tracker_writes_palette_pngs_the_size_of_the_frames(davis_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    result = run_eval(
        str(davis_root), "--sequences", "bike", "--out", str(out), "--json", str(tmp_path / "r.json"),
        "--device", "cpu", "--threads", "1",
    )
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (out / "bike").iterdir())
    assert written == ["00000.png", "00001.png", "00002.png", "00003.png"]
    for name in written:
        image = Image.open(out / "bike" / name)
        assert image.mode == "P" and image.size == HW[::-1]
        assert np.array_equal(np.array(image.getpalette(), np.uint8).reshape(-1, 3)[:256], davis_palette())
        assert set(np.unique(np.array(image))) <= {0, 1, 2}
    first = np.array(Image.open(out / "bike" / "00000.png"))
    assert np.array_equal(first, read_mask(davis_root / "Annotations" / "480p" / "bike" / "00000.png"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["predictor"] == "tracker" and list(report["sequences"]) == ["bike"]
    assert 0 <= report["mean"]["jf"] <= 100 and report["fps"] > 0


def test_memory_option_tracks_with_the_teachers_memory_and_says_so(davis_root: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    monkeypatch.setattr(davis, "Tracker", lambda config, network: made.append(config) or Tracker(config, network))
    assert davis.main([str(davis_root), "--sequences", "square", "--memory", "infinite", "--json",
                       str(tmp_path / "r.json"), "--device", "cpu", "--threads", "1"]) == 0
    assert made and all(config.memory == "infinite" for config in made)
    assert json.loads((tmp_path / "r.json").read_text())["memory"] == "infinite"
    assert run_eval(str(davis_root), "--memory", "every-frame").returncode == 2  # argparse names the choices


def test_refine_redraws_the_tracked_masks_and_says_so(davis_root: Path, tmp_path: Path) -> None:
    untrained = tmp_path / "untrained-annotator.pt"  # the ImageNet trunk and a fresh decoder: other masks
    save_annotator(build_annotator(), untrained, {})
    runs = {}
    options = {"plain": [], "refined": ["--refine"], "other": ["--refine", "--annotator", str(untrained)]}
    for name, extra in options.items():
        result = run_eval(str(davis_root), "--sequences", "bike", "--out", str(tmp_path / name), "--json",
                          str(tmp_path / f"{name}.json"), "--device", "cpu", "--threads", "1", *extra)
        assert result.returncode == 0, result.stderr
        runs[name] = [read_mask(p) for p in sorted((tmp_path / name / "bike").iterdir())]
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["refine"] == (name != "plain")
        assert report["annotator"] == (str(untrained) if name == "other" else None)
    assert np.array_equal(runs["plain"][0], runs["refined"][0])  # the annotated frame is not redrawn
    assert any(not np.array_equal(a, b) for a, b in zip(runs["plain"][1:], runs["refined"][1:]))
    assert any(not np.array_equal(a, b) for a, b in zip(runs["other"][1:], runs["refined"][1:]))


def test_refinement_scores_saved_masks_redrawn_and_names_missing_ones(davis_root: Path, tmp_path: Path) -> None:
    predictions = tmp_path / "predictions" / "square"
    predictions.mkdir(parents=True)
    for path in sorted((davis_root / "Annotations" / "480p" / "square").glob("*.png")):
        worse = cv2.erode((read_mask(path) > 0).astype(np.uint8), np.ones((7, 7), np.uint8))  # half the square
        write_mask(predictions / path.name, worse)
    frames = refinement.tracked_frames(davis_root, tmp_path / "predictions", ["square"], 1)
    assert [name for name, *_ in frames] == ["square/00001", "square/00002", "square/00003"]  # not the annotated
    before, after = refinement.refined_ious(MaskRefiner(), frames)
    assert before < 50 and after > before + 20
    with pytest.raises(SystemExit, match="bike/00001.png: no saved tracked mask"):
        refinement.tracked_frames(davis_root, tmp_path / "predictions", ["bike"], 1)


def test_evaluate_imports_and_runs_without_pyav(davis_root: Path) -> None:
    code = (
        "import sys; sys.modules['av'] = None\n"  # any `import av` now fails
        "from core.evaluation.davis import evaluate\n"
        f"report = evaluate({str(davis_root)!r}, ['bike'], progress=False)\n"
        "print(report.jf)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == 100.0


def test_bad_root_and_unknown_sequence_give_one_line_errors(davis_root: Path, tmp_path: Path) -> None:
    result = run_eval(str(tmp_path), "--baseline", "first-mask")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "JPEGImages/480p" in result.stderr
    result = run_eval(str(davis_root), "--baseline", "first-mask", "--sequences", "nope")
    assert result.returncode == 2 and "nope" in result.stderr and result.stderr.strip().count("\n") == 0


def test_failure_stills_show_the_worst_frame_of_the_worst_sequences(davis_root: Path, tmp_path: Path) -> None:
    pred, report = tmp_path / "pred", tmp_path / "eval.json"
    result = run_eval(str(davis_root), "--baseline", "first-mask", "--out", str(pred), "--json", str(report))
    assert result.returncode == 0, result.stderr
    scores = json.loads(report.read_text())["sequences"]
    assert scores["square"]["jf"] < scores["bike"]["jf"]  # the repeated first mask misses the moving square
    written = failures.main([str(davis_root), str(pred), "--json", str(report), "--out", str(tmp_path / "stills"),
                             "--worst", "1"])
    assert written == 0
    still = cv2.imread(str(tmp_path / "stills" / "square.jpg"))
    assert still.shape[:2] == (HW[0] // 2, 3 * HW[1] // 2) and not (tmp_path / "stills" / "bike.jpg").exists()
    ious = failures.frame_ious(pred / "square", sequence_files(davis_root, "square").annotations)
    assert ious[0] == 1.0 and ious[3] == min(ious)  # the square has moved furthest from its first mask


def test_failure_stills_need_the_eval_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert failures.main([str(tmp_path), str(tmp_path), "--json", str(tmp_path / "none.json")]) == 2
    assert "run `python -m core.eval" in capsys.readouterr().err
