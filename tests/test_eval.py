"""`python -m core.eval`: DAVIS layout in, palette PNGs and J/F/J&F out; the first-mask baseline scored exactly. The
evaluation tools refuse a root, sequence, mask, report or output path they cannot use in one line, status 2."""

from __future__ import annotations

import json
import shutil
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
from core.evaluation.davis import EvalError, sequence_files
from core.inference.tracker import Tracker
from core.train.annotator import build as build_annotator
from core.io.masks import davis_palette, read_mask, resize_labels, write_mask

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "bike"
HW = (90, 160)  # frames are shrunk so the tracker runs fast on CPU


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m module ARGS…` from the repository root, its output captured."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def run_eval(*args: str) -> subprocess.CompletedProcess:
    """`python -m core.eval ARGS…`."""
    return run_module("core.eval", *args)


def refusal(result: subprocess.CompletedProcess) -> str:
    """The line a command refused its input with, after checking it ended with status 2, no traceback and one
    error line, on a line of its own (not after a progress bar's)."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.split("\n") if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(("error: ", "python -m ")), result.stderr
    return errors[0]


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
    with pytest.raises(EvalError, match="bike/00001.png: no saved predicted mask; write them with"):
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
    ious = failures.frame_ious(pred, "square", sequence_files(davis_root, "square").annotations)
    assert ious[0] == 1.0 and ious[3] == min(ious)  # the square has moved furthest from its first mask


@pytest.fixture(scope="module")
def flawed_root(davis_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`davis_root` with a mask of half the frame's size (`square/00002.png`, 80×45) and a sequence folder
    without frames (`empty`)."""
    root = Path(shutil.copytree(davis_root, tmp_path_factory.mktemp("flawed") / "davis"))
    mask = root / "Annotations" / "480p" / "square" / "00002.png"
    write_mask(mask, np.ascontiguousarray(read_mask(mask)[::2, ::2]))
    (root / "JPEGImages" / "480p" / "empty").mkdir()
    return root


REFUSALS = [  # (module, arguments, what its one line says); {root} etc. are filled in by the test
    ("core.eval", ["{missing}", "--baseline", "first-mask"], "{missing}: no such folder; pass a DAVIS root"),
    ("core.eval", ["{root}", "--baseline", "first-mask", "--sequences", "nope"],
     "{root}/JPEGImages/480p/nope: no such sequence; pick from those in {root}/JPEGImages/480p: bike, square"),
    ("core.eval", ["{flawed}", "--baseline", "first-mask", "--sequences", "square"],
     "square/00002.png: mask is 80×45 but the video is 160×90; resize it"),
    ("core.eval", ["{flawed}", "--baseline", "first-mask", "--sequences", "empty"], "empty: holds no .jpg frames"),
    ("core.eval", ["{root}", "--sequences", ","], "argument --sequences: ',': name at least one sequence"),
    ("core.evaluation.interactive", ["{root}", "--methods", "grabcut", "--sequences", "nope"],
     "nope: no such sequence; pick from those in {root}/JPEGImages/480p: bike, square"),
    ("core.evaluation.interactive", ["{root}", "--methods", "grabcut"],
     "{root}: lacks bmx-bumps, boat, "),  # the default: the annotator's validation sequences
    ("core.evaluation.interactive", ["{tmp}", "--methods", "grabcut"],
     "{tmp}: has no JPEGImages/ and no clip with masks/; pass a DAVIS root"),
    ("core.evaluation.interactive", ["{flawed}", "--methods", "grabcut", "--sequences", "square", "--every", "1"],
     "square/00002.png: mask is 80×45 but the video is 160×90"),
    ("core.evaluation.interactive", ["{flawed}", "--methods", "grabcut", "--sequences", "empty"],
     "empty: holds no .jpg frames"),
    ("core.evaluation.refinement", ["{root}", "{tmp}", "--sequences", "square"],
     "{tmp}/square/00001.png: no saved predicted mask; write them with `python -m core.eval ROOT --out {tmp}`"),
    ("core.evaluation.refinement", ["{missing}", "{tmp}", "--sequences", "square"], "{missing}: no such folder"),
    ("core.evaluation.refinement", ["{root}", "{tmp}", "--every", "0"], "argument --every: '0'"),
    ("core.evaluation.refinement", ["{root}", "{tmp}", "--json", "{tmp}"], "argument --json: '{tmp}': is a folder"),
    ("core.evaluation.failures", ["{root}", "{tmp}", "--json", "{missing}"],
     "{missing}: not found; run `python -m core.eval ROOT --out PRED --json FILE` first"),
    ("core.evaluation.failures", ["{root}", "{tmp}", "--json", "{file}"],
     "{file}: not a report of `python -m core.eval`; run `python -m core.eval"),
    ("core.evaluation.failures", ["{root}", "{tmp}", "--json", "{file}", "--out", "{file}"],
     "argument --out: '{file}': {file} is a file, not a folder"),
    ("core.evaluation.failures", ["{root}", "{tmp}", "--json", "{file}", "--worst", "0"], "argument --worst: '0'"),
    ("core.evaluation.flicker", ["{root}", "--sequences", "nope"], "nope: no such sequence; pick from those in"),
    ("core.evaluation.flicker", ["{flawed}", "--sequences", "square", "--device", "cpu", "--threads", "1"],
     "square/00002.png: mask is 80×45 but the video is 160×90"),
    ("core.evaluation.flicker", ["{root}", "--json", "{tmp}"], "argument --json: '{tmp}': is a folder"),
    ("core.evaluation.flicker", ["{root}", "--frames", "1"], "argument --frames: '1': give a whole number of 2"),
    ("core.evaluation.removal", ["{root}", "--backgrounds", "square", "--objects", "nope"],
     "nope: no such sequence; pick from those in"),
    ("core.evaluation.removal", ["{flawed}", "--backgrounds", "bike", "--objects", "square"],
     "square/00002.png: mask is 80×45 but the video is 160×90"),
    ("core.evaluation.removal", ["{root}", "--out", "{file}"], "argument --out: '{file}': {file} is a file"),
    ("core.evaluation.annotate_bench", ["{missing}", "--sequences", "square", "--methods", "grabcut"],
     "{missing}: no such folder"),
    ("core.evaluation.annotate_bench", ["{root}", "--methods", "grabcut"], "{root}: lacks bmx-bumps, boat, "),
    ("core.demo", ["--out", "{file}"], "argument --out: '{file}': {file} is a file, not a folder"),
]


@pytest.mark.parametrize("module, args, told", REFUSALS)
def test_an_evaluation_tool_refuses_what_it_cannot_use_in_one_line(
        davis_root: Path, flawed_root: Path, tmp_path: Path, module: str, args: list[str], told: str) -> None:
    """Each ended in a traceback (status 1), in a bare `SystemExit` message (status 1) or with a message that did
    not say what to do; now in one line naming the path or flag and the fix, status 2, before any output."""
    (tmp_path / "file").write_text("not a report")
    paths = {"root": davis_root, "flawed": flawed_root, "tmp": tmp_path, "file": tmp_path / "file",
             "missing": tmp_path / "missing"}
    assert told.format(**paths) in refusal(run_module(module, *(arg.format(**paths) for arg in args)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_removal_names_an_object_sequence_whose_masks_mark_nothing(davis_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(davis_root, tmp_path / "davis"))
    for mask in (root / "Annotations" / "480p" / "square").glob("*.png"):
        write_mask(mask, np.zeros(HW, np.uint8))
    error = refusal(run_module("core.evaluation.removal", str(root), "--backgrounds", "bike", "--objects", "square",
                               "--removers", "streaming", "--frames", "3"))
    assert f"{root}/Annotations/480p/square: no object in its first 3 masks to paste" in error


def test_interactive_names_a_clip_that_is_not_there_and_lists_those_that_are(tmp_path: Path) -> None:
    write_mask(tmp_path / "clips" / "judo" / "masks" / "00000.png", np.ones((8, 8), np.uint8))
    error = refusal(run_module("core.evaluation.interactive", str(tmp_path / "clips"), "--methods", "grabcut",
                               "--sequences", "jduo"))
    assert f"{tmp_path / 'clips' / 'jduo'}: no such clip; pick from the clips with masks/ in " in error
    assert error.endswith(": judo")
