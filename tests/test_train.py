"""`python -m core.train` end to end on a tiny DAVIS folder: real + synthetic clips, distillation, resume."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import numpy as np
import torch
from PIL import Image

from core.io.command import BAD_INPUT, BadInput, run_tool
from core.model.network import NetworkConfig, build_network
from core.train.__main__ import main, parse_args
from core.train.config import ABLATION_LOSSES, VALIDATION_SEQUENCES, DataConfig, LossConfig, preset
from core.clips.sampler import ClipSampler
from core.train.data import load_frames
from core.train import loop
from core.train.loop import load_matching
from core.weights import load_checkpoint, load_network, load_trunk
from tests.conftest import run_interrupted

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
QUICK = ["--batch", "1", "--crop", "48", "--device", "cpu", "--threads", "1", "--steps", "1"]


def test_clip_sampler_shapes_and_binary_masks(tiny_davis: Path) -> None:
    store = load_frames(tiny_davis, ["bike"], 64)
    for kind in ({}, {"synthetic": True}, {"static": True}):
        sampler = ClipSampler(store, DataConfig(crop=48, clip_frames=3, **kind), seed=0)
        frames, masks = sampler.sample(2, 0.5)
        assert frames.shape == (2, 3, 3, 48, 48) and masks.shape == (2, 3, 1, 48, 48)
        assert 0 <= frames.min() and frames.max() <= 1
        assert set(masks.unique().tolist()) <= {0.0, 1.0}


def test_train_distill_and_resume(tiny_davis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.train.loop.VALIDATION_SEQUENCES", VALIDATION_SEQUENCES[:1])
    common = ["--data", str(tiny_davis), "--batch", "2", "--crop", "48", "--device", "cpu", "--threads", "1"]
    main(["--preset", "s0-mnv2", "--out", str(tmp_path / "s0"), "--steps", "2", "--no-val", *common])
    student = tmp_path / "s0" / "best.pt"
    main(["--preset", "s1-mnv2", "--out", str(tmp_path / "s1"), "--steps", "2", "--val-every", "2",
          "--init", str(student), "--teacher", str(student), *common])
    log = [json.loads(line) for line in (tmp_path / "s1" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2 and log[-1]["validation_jf"] is not None
    assert load_checkpoint(tmp_path / "s1" / "best.pt")["meta"]["steps"] == 2
    # resume: a longer run continues from step 2 instead of starting over
    main(["--preset", "s1-mnv2", "--out", str(tmp_path / "s1"), "--steps", "3", "--no-val",
          "--teacher", str(student), *common])
    assert load_checkpoint(tmp_path / "s1" / "last.pt")["meta"]["steps"] == 3
    shutil.rmtree(tmp_path / "s0")
    assert torch.load(tmp_path / "s1" / "state.pt", weights_only=False)["step"] == 3


def test_static_clips_warp_one_frame_and_never_occlude_the_annotated_one(tiny_davis: Path) -> None:
    store = load_frames(tiny_davis, ["bike"], 64)
    sampler = ClipSampler(store, DataConfig(crop=48, clip_frames=3, static=True), seed=0)
    frames, masks = sampler.sample(8, 0.0)
    assert (masks[:, 0].flatten(1).sum(1) > 0).all()  # the object is in every annotated frame
    assert not torch.equal(frames[:, 0], frames[:, 1])  # each frame has its own warp


def test_zoomed_static_crops_show_the_object_at_the_asked_fraction(tiny_davis: Path) -> None:
    store = load_frames(tiny_davis, ["bike"], 90)
    sampler = ClipSampler(store, DataConfig(crop=48, clip_frames=2, static=True, object_fraction=(0.3, 0.6)), seed=0)
    _, masks = sampler.sample(16, 0.0)
    spans = []
    for mask in masks[:, 0, 0].numpy() > 0.5:  # the annotated frame: no distractor, no drift
        ys, xs = np.nonzero(mask)
        spans.append(max(np.ptp(xs), np.ptp(ys)) / 48)
    assert 0.25 < np.median(spans) < 0.75  # rotation and the elastic warp move it a little


def test_training_starts_from_the_imagenet_trunk(tiny_davis: Path, tmp_path: Path) -> None:
    common = ["--data", str(tiny_davis), "--batch", "1", "--crop", "48", "--device", "cpu", "--threads", "1",
              "--steps", "1", "--no-val", "--lr", "0"]
    main(["--preset", "static-fast", "--out", str(tmp_path / "imagenet"), *common])
    main(["--preset", "static-fast", "--out", str(tmp_path / "scratch"), "--no-imagenet", *common])
    trunk = load_trunk()["blocks.5.block.1.0.weight"]
    assert torch.allclose(load_network(tmp_path / "imagenet" / "last.pt").backbone.state_dict()[
        "blocks.5.block.1.0.weight"], trunk, atol=1e-2)  # fp16 checkpoint, lr 0
    assert not torch.allclose(load_network(tmp_path / "scratch" / "last.pt").backbone.state_dict()[
        "blocks.5.block.1.0.weight"], trunk, atol=1e-2)


def test_all_sequences_trains_on_the_validation_split_too_and_skips_validation(
        tiny_davis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.train.loop.VALIDATION_SEQUENCES", VALIDATION_SEQUENCES[:1])
    loaded: list[list[str]] = []
    monkeypatch.setattr("core.train.loop.load_frames", lambda root, names, side: loaded.append(names) or load_frames(
        root, names, side))
    common = ["--preset", "static-fast", "--data", str(tiny_davis), "--batch", "1", "--crop", "48", "--device", "cpu",
              "--threads", "1", "--steps", "1", "--val-every", "1"]
    main(["--out", str(tmp_path / "held-out"), *common])
    main(["--out", str(tmp_path / "all"), "--all-sequences", *common])
    assert loaded == [["bike"], ["bike", VALIDATION_SEQUENCES[0]]]
    held_out, every = (load_checkpoint(tmp_path / run / "last.pt")["meta"] for run in ("held-out", "all"))
    assert held_out["validation_jf"] is not None and every["validation_jf"] is None
    assert "minus validation" in held_out["training_data"] and "minus validation" not in every["training_data"]


def test_warm_start_across_architectures_copies_only_matching_tensors() -> None:
    first = build_network(NetworkConfig())
    fast = build_network(NetworkConfig(value_encoder="light", decoder_blocks="separable"))
    before = {k: v.clone() for k, v in fast.state_dict().items()}
    copied, total = load_matching(fast, first.state_dict())
    after, source = fast.state_dict(), first.state_dict()
    assert 0 < copied < total
    assert all(torch.equal(after[k], source[k]) for k in after if k.startswith(("backbone.", "aspp.", "key_proj.")))
    assert torch.equal(after["value_encoder.down.0.0.weight"], before["value_encoder.down.0.0.weight"])  # new part


@pytest.mark.parametrize("freeze", [False, True])
def test_frozen_batch_norms_keep_their_running_statistics(tiny_davis: Path, tmp_path: Path, freeze: bool) -> None:
    common = ["--preset", "s3-fast", "--data", str(tiny_davis), "--batch", "2", "--crop", "48", "--device", "cpu",
              "--threads", "1", "--steps", "2", "--no-val", "--lr", "0"]
    main(["--out", str(tmp_path / "run"), *common, *(["--freeze-bn"] if freeze else [])])
    stats = "backbone.blocks.5.block.1.1.running_mean"
    before = load_trunk()[stats.removeprefix("backbone.")]
    after = load_network(tmp_path / "run" / "last.pt").state_dict()[stats]
    assert torch.allclose(after, before, atol=1e-2) == freeze  # lr 0: only the statistics can move


def test_bf16_runs_the_forward_passes_in_bfloat16_on_the_cpu(tiny_davis: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.dtype] = []
    clip_loss = loop.clip_loss

    def recording(config, student, *args):  # noqa: ANN001, ANN002, ANN202 - clip_loss's own signature
        seen.append(student[0].logits.dtype)
        return clip_loss(config, student, *args)

    monkeypatch.setattr(loop, "clip_loss", recording)
    common = ["--preset", "s3-fast", "--data", str(tiny_davis), "--batch", "2", "--crop", "48", "--device", "cpu",
              "--threads", "1", "--steps", "2", "--no-val"]
    main(["--out", str(tmp_path / "fp32"), *common])
    main(["--out", str(tmp_path / "bf16"), *common, "--bf16"])
    assert seen == [torch.float32] * 2 + [torch.bfloat16] * 2
    state = torch.load(tmp_path / "bf16" / "state.pt", weights_only=False)
    weights = [v for v in state["network"].values() if v.is_floating_point()]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights)


def test_ablation_rows_differ_only_in_their_loss_each_adding_one_term() -> None:
    for student in ("abl", "abl-fast"):
        rows = [preset(f"{student}-{row}") for row in ABLATION_LOSSES]
        assert len({replace(r, name="", loss=LossConfig()) for r in rows}) == 1
    assert preset("abl-fast-seg").network == preset("s3-fast").network
    seg, logit, rep_all, rep_boundary, omega0 = (preset(f"abl-fast-{row}").loss for row in ABLATION_LOSSES)
    assert seg == LossConfig() and (seg.logit_kd, seg.rep) == (0, 0)
    assert logit == replace(seg, logit_kd=1.0)
    assert rep_all == replace(logit, rep=1.0, boundary=False, omega=0.95)
    assert rep_boundary == replace(rep_all, boundary=True)
    assert omega0 == replace(rep_boundary, omega=0.0)


def test_validation_tracks_with_the_memory_the_run_trains_with(monkeypatch: pytest.MonkeyPatch) -> None:
    made = []

    def fake_evaluate(root: str, sequences: list[str], factory, progress: bool) -> SimpleNamespace:
        made.append(factory())
        return SimpleNamespace(jf=50.0)

    monkeypatch.setattr(loop, "evaluate", fake_evaluate)
    network = build_network(NetworkConfig(backbone="mobilenetv2", aspp=False))
    for memory in ("first_previous", "infinite"):
        assert loop.validate(network, "root", torch.device("cpu"), memory) == 50.0
        assert made.pop().config.memory == memory


def ended_by(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`python -m core.train ARGV`'s exit status and its stderr's last line (the one it ends with)."""
    with pytest.raises(SystemExit) as stop:
        run_tool(lambda: main(argv))
    error = capsys.readouterr().err.strip()
    return stop.value.code, error.splitlines()[-1] if error else ""


def copy_of(tiny_davis: Path, tmp_path: Path) -> Path:
    """A copy of the tiny DAVIS folder to break."""
    return Path(shutil.copytree(tiny_davis, tmp_path / "data"))


@pytest.mark.parametrize("given, told", [
    ("empty", "no JPEGImages/480p folder; pass a DAVIS root"),
    ("missing", "no such folder; pass a DAVIS root"),
    ("data/JPEGImages/480p", "the frames' folder of a DAVIS root; pass the root, "),
    ("data/JPEGImages/480p/bike", "one sequence's frames; pass the DAVIS root that holds it, "),
    ("clips", "a folder of clips with masks/ (as core.batch reads); training needs a mask for every frame"),
    ("bare", "JPEGImages/480p: no sequence folders; pass a DAVIS root"),
    ("frames-only", "frames-only/Annotations/480p: no such folder; training needs a mask for every frame: pass a "
                    "DAVIS root"),
])
def test_a_data_folder_in_another_layout_is_named_with_the_fix(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str, told: str) -> None:
    """Not a DAVIS root (nothing, one sequence, its frames' folder, core.batch's clips, no sequence): one line,
    status 2, before the run folder is made."""
    copy_of(tiny_davis, tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "clips" / "clip" / "masks").mkdir(parents=True)
    (tmp_path / "bare" / "JPEGImages" / "480p").mkdir(parents=True)
    shutil.copytree(tiny_davis / "JPEGImages", tmp_path / "frames-only" / "JPEGImages")
    out = tmp_path / "run"
    status, error = ended_by(["--preset", "s3-fast", "--out", str(out), "--data", str(tmp_path / given), "--no-val",
                              *QUICK], capsys)
    assert status == BAD_INPUT and told in error and error.startswith("error: ")
    assert not out.exists()


def test_frames_and_masks_training_cannot_use_are_named(tiny_davis: Path, tmp_path: Path) -> None:
    """A missing mask, a mask of another size, PNG frames, masks that mark nothing, an unreadable JPEG and a
    sequence of another aspect ratio each end in one line naming the file or sequence and the fix (they raised
    tracebacks, or were read wrong without a word: the mask stretched, the empty sequence sampled as its
    neighbour's frames)."""
    data = copy_of(tiny_davis, tmp_path)
    frames, masks = data / "JPEGImages" / "480p" / "bike", data / "Annotations" / "480p" / "bike"

    def refused(match: str) -> None:
        with pytest.raises(BadInput, match=match) as error:
            load_frames(data, ["bike"], 48)
        assert "\n" not in str(error.value)

    (masks / "00001.png").rename(tmp_path / "kept.png")
    refused(r"bike/00001\.png: missing; training needs the mask of every frame")
    Image.open(tmp_path / "kept.png").resize((80, 90)).save(masks / "00001.png")
    refused(r"00001\.png: mask is 80×90 but the video is 160×90; resize it")
    (tmp_path / "kept.png").rename(masks / "00001.png")
    for mask in masks.glob("*.png"):
        Image.new("L", (160, 90)).save(mask)
    refused("bike: no mask marks an object")
    shutil.rmtree(masks)
    shutil.copytree(tiny_davis / "Annotations" / "480p" / "bike", masks)
    (frames / "00002.jpg").write_text("not a JPEG")
    refused(r"00002\.jpg: unreadable image")
    for jpg in frames.glob("*.jpg"):
        jpg.unlink()
    refused(r"bike: no JPEG frames \(\*\.jpg\)")
    shutil.rmtree(frames)
    shutil.copytree(tiny_davis / "JPEGImages" / "480p" / "bike", frames)
    other = VALIDATION_SEQUENCES[0]
    for folder in (data / "JPEGImages" / "480p" / other, data / "Annotations" / "480p" / other):
        for path in folder.iterdir():
            Image.open(path).crop((0, 0, 90, 90)).save(path)
    with pytest.raises(BadInput, match=f"{other}: frames of 48×48 .* others of 85×48; training needs one aspect"):
        load_frames(data, ["bike", other], 48)
    with pytest.raises(BadInput, match="no sequence left to train on"):
        load_frames(data, [], 48)


def test_own_data_without_the_validation_sequences_is_refused_before_training(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Validating on a folder without the validation split failed at the first validation, after the steps before
    it, which were not saved: now refused at the start, naming --no-val and --val-root."""
    out = tmp_path / "run"
    status, error = ended_by(["--preset", "s3-fast", "--out", str(out), "--data", str(tiny_davis), *QUICK], capsys)
    assert status == BAD_INPUT and f"{tiny_davis}: lacks the validation sequences {VALIDATION_SEQUENCES[1]}" in error
    assert "pass --no-val to train on your own data" in error and "--val-root" in error
    assert not out.exists()


@pytest.mark.parametrize("flag, value, told", [
    ("--steps", "0", "give a whole number of 1 or more"),
    ("--batch", "0", "give a whole number of 1 or more"),
    ("--lr", "-1", "give a number of 0 or more"),
    ("--seconds", "0", "give a number of 1 or more"),
    ("--crop", "50", "give a multiple of 16"),
    ("--crop", "0", "give a whole number of 32 or more"),  # was ignored: 0 is false
    ("--val-every", "0", "give a whole number of 1 or more"),  # was ignored
    ("--threads", "0", "give a whole number of 1 or more"),
    ("--seed", "-1", "give a whole number of 0 or more"),
    ("--device", "gpu", "give auto, cpu or cuda"),
])
def test_nonsensical_numbers_are_refused_as_the_flags_are_parsed(
        flag: str, value: str, told: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        parse_args(["--preset", "s3-fast", "--out", str(tmp_path / "run"), flag, value])
    error = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument {flag}: " in error and told in error


@pytest.mark.parametrize("without", ["--no-val", "--all-sequences"])
def test_a_validation_root_with_nothing_to_validate_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], without: str) -> None:
    with pytest.raises(SystemExit) as stop:
        parse_args(["--preset", "s3-fast", "--out", str(tmp_path / "run"), "--val-root", str(tmp_path), without])
    assert stop.value.code == 2 and f"--val-root: nothing is validated with {without}" in capsys.readouterr().err


def test_an_output_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(SystemExit) as stop:
        parse_args(["--preset", "s3-fast", "--out", str(tmp_path / "taken")])
    assert stop.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "mine"


def test_an_unknown_preset_or_a_missing_teacher_is_one_line(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--out", str(tmp_path / "run"), "--data", str(tiny_davis), "--no-val", *QUICK]
    status, error = ended_by(["--preset", "s3fast", *common], capsys)
    assert status == BAD_INPUT and "--preset 's3fast': unknown; choose one of: " in error and "s3-fast" in error
    status, error = ended_by(["--preset", "s1-mnv2", *common], capsys)
    assert status == BAD_INPUT and "--preset s1-mnv2: distils a teacher; pass --teacher PATH" in error
    assert not (tmp_path / "run").exists()


def test_ctrl_c_saves_the_last_whole_step_and_the_same_command_resumes(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        ctrl_c_at_second_call: Callable[[object, str], list[int]]) -> None:
    """Ctrl-C at step 2 of 4 with validation at 100: the step finishes, the state is saved (it was lost: saved only
    at validations), the command ends with 130; the rerun resumes at step 2."""
    calls = ctrl_c_at_second_call(loop, "clip_loss")
    args = ["--preset", "s3-fast", "--out", str(tmp_path / "run"), "--data", str(tiny_davis), "--no-val",
            "--val-every", "100", *QUICK[:-1], "4"]
    said = run_interrupted(main, args, tmp_path / "run", capsys, step=2)
    assert f"saved step 2 in {tmp_path / 'run' / 'state.pt'}; run the same command to resume" in said
    main(args)
    assert "resumed s3-fast at step 2\n" in capsys.readouterr().out and len(calls) == 4  # nothing changed
    assert load_checkpoint(tmp_path / "run" / "last.pt")["meta"]["steps"] == 4


def test_ctrl_c_in_the_last_validation_keeps_every_step_and_a_finished_run_only_says_so(
        tiny_davis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C during the validation at a run's end (after the loop's own Ctrl-C handling) used to lose every step
    since the last save; now the rerun only validates. A rerun of a finished run trains and validates nothing."""
    monkeypatch.setattr("core.train.loop.VALIDATION_SEQUENCES", VALIDATION_SEQUENCES[:1])
    validations: list[int] = []

    def validate(*args, **kwargs) -> float:
        validations.append(1)
        if len(validations) == 1:
            raise KeyboardInterrupt
        return 42.0

    monkeypatch.setattr(loop, "validate", validate)
    steps: list[int] = []
    clip_loss = loop.clip_loss
    monkeypatch.setattr(loop, "clip_loss", lambda *args: steps.append(1) or clip_loss(*args))
    args = ["--preset", "static-fast", "--out", str(tmp_path / "run"), "--data", str(tiny_davis), "--val-every", "100",
            *QUICK[:-1], "2"]
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert torch.load(tmp_path / "run" / "state.pt", weights_only=False)["step"] == 2 and len(steps) == 2
    main(args)
    assert len(steps) == 2 and len(validations) == 2  # resumed at step 2: validated, nothing trained again
    assert load_checkpoint(tmp_path / "run" / "best.pt")["meta"]["validation_jf"] == 42.0
    assert "static-fast step 2: validation J&F 42.0 (best 42.0)" in capsys.readouterr().out
    main(args)
    assert len(steps) == 2 and len(validations) == 2
    assert "static-fast: already finished at step 2; raise --steps (or --seconds) to train on" in \
        capsys.readouterr().out


def test_without_validation_best_is_the_last_checkpoint(tiny_davis: Path, tmp_path: Path) -> None:
    args = ["--preset", "static-fast", "--out", str(tmp_path / "run"), "--data", str(tiny_davis), "--no-val",
            *QUICK[:-1]]
    main([*args, "2"])
    main([*args, "3"])  # extended: best.pt stayed at step 2
    assert load_checkpoint(tmp_path / "run" / "best.pt")["meta"]["steps"] == 3


@pytest.mark.parametrize("flag", ["--init", "--teacher"])
def test_a_checkpoint_of_another_kind_or_none_is_refused_as_the_flags_are_parsed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    annotator = Path(__file__).resolve().parent.parent / "core" / "weights" / "annotator-mnv2.pt"
    for given, says in ((tmp_path / "nope.pt", "MobileVOS checkpoint not found"),
                        (tmp_path, "a folder, not a MobileVOS checkpoint file"),
                        (annotator, "it holds the click-annotation network, which core.annotate and "
                                    "core.train.annotator take")):
        with pytest.raises(SystemExit) as stop:
            parse_args(["--preset", "s3-fast", "--out", str(tmp_path / "run"), flag, str(given)])
        assert stop.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
