"""`python -m core.train.annotator` on a tiny DAVIS folder: it trains, validates on the held-out sequence only,
writes loadable checkpoints with their provenance, and resumes where it stopped."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import core.train.annotator as annotator_training
from core.annotate.network import (ClickNet, default_annotator, default_annotator_entry, load_annotator,
                                   load_annotator_checkpoint)
from core.io.command import BadInput
from core.train.annotator import (AnnotatorTraining, draw_batch, first_interaction, held_out_sequences, main,
                                  make_samplers, paint_shape, parse_args, recipe, recolour_part, segmentation_loss,
                                  tracked_guess)
from core.train.data import load_frames
from core.train.config import VALIDATION_SEQUENCES
from core.weights import WEIGHTS_DIR, WeightsError, default_checkpoint, load_trunk
from tests.conftest import run_interrupted

TINY = ["--batch", "2", "--crop", "64", "--load-short-side", "64", "--val-every", "2", "--val-frames-every", "10"]


def test_trains_validates_and_resumes(tiny_davis: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    main(["--out", str(out), "--data", str(tiny_davis), "--steps", "2", *TINY])
    main(["--out", str(out), "--data", str(tiny_davis), "--steps", "3", *TINY])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and "val" in log[1] and "val" in log[2]
    meta = load_annotator_checkpoint(out / "last.pt")["meta"]
    assert meta["steps"] == 3 and meta["training_sequences"] == ["bike"]
    assert meta["validation_sequences"] == list(VALIDATION_SEQUENCES[:1])
    assert load_annotator(out / "best.pt").training is False


def test_a_foreign_state_or_missing_checkpoint_is_one_line(tiny_davis: Path, tmp_path: Path) -> None:
    """A `state.pt` whose optimiser has other parameter groups (an older version's) is not resumed into a
    half-loaded run, and a missing checkpoint to ship or start from is no traceback: each error names the file
    and the fix."""
    out = tmp_path / "run"
    main(["--out", str(out), "--data", str(tiny_davis), "--steps", "2", *TINY])
    state = torch.load(out / "state.pt", weights_only=False)
    state["optimiser"]["param_groups"] = state["optimiser"]["param_groups"][:1]
    torch.save(state, out / "state.pt")
    with pytest.raises(WeightsError, match=r"state\.pt: saved by another run or version .*pass a new --out") as error:
        main(["--out", str(out), "--data", str(tiny_davis), "--steps", "3", *TINY])
    assert "\n" not in str(error.value)
    with pytest.raises(WeightsError, match=r".*nothing\.pt: MobileVOS annotator checkpoint not found"):
        main(["--ship", str(tmp_path / "nothing.pt")])



@pytest.mark.parametrize("init, says", [("nothing.pt", "nothing.pt: MobileVOS annotator checkpoint not found"),
                                        (str(default_checkpoint()), "it holds a tracker network")])
def test_an_init_that_is_no_annotator_is_refused_as_the_flags_are_parsed(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], init: str, says: str) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--out", str(tmp_path / "other"), "--data", str(tiny_davis), "--init", str(tmp_path / init), *TINY])
    assert stop.value.code == 2 and says in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_a_run_without_validation_keeps_its_last_step_and_a_finished_one_only_says_so(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run that ends on a step with no validation and not a multiple of 25 kept no state (its rerun trained again
    from step 0, writing every step twice in the log); the rerun of a finished run trains nothing."""
    out = tmp_path / "run"
    args = ["--out", str(out), "--data", str(tiny_davis), "--steps", "3", "--hold-out", "", *TINY]
    main(args)
    assert torch.load(out / "state.pt", weights_only=False)["step"] == 3
    main(args)
    assert f"{out}: already finished at step 3; raise --steps (or --seconds) to train on" in capsys.readouterr().out
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_hold_out_chooses_the_validation_sequences_or_none(tiny_davis: Path, tmp_path: Path) -> None:
    """`--hold-out ""` trains on every sequence and saves each checkpoint unvalidated as the best; a named sequence
    is held out and validated on."""
    everything, named = tmp_path / "all", tmp_path / "named"
    main(["--out", str(everything), "--data", str(tiny_davis), "--steps", "2", "--hold-out", "", *TINY])
    main(["--out", str(named), "--data", str(tiny_davis), "--steps", "2", "--hold-out", "bike", *TINY])
    assert not any("val" in json.loads(line) for line in (everything / "log.jsonl").read_text().splitlines())
    meta = load_annotator_checkpoint(everything / "best.pt")["meta"]
    assert meta["training_sequences"] == sorted(["bike", VALIDATION_SEQUENCES[0]]) and meta["steps"] == 2
    assert meta["validation_sequences"] == [] and meta["validation"] is None
    meta = load_annotator_checkpoint(named / "best.pt")["meta"]
    assert meta["training_sequences"] == [VALIDATION_SEQUENCES[0]] and meta["validation_sequences"] == ["bike"]
    assert set(meta["validation"]) >= {"box", "click1", "click3", "mean"}
    with pytest.raises(BadInput, match="no sequence bikes"):
        main(["--out", str(tmp_path / "typo"), "--data", str(tiny_davis), "--hold-out", "bikes", *TINY])


def test_first_interaction_gives_a_box_or_clicks_on_the_object() -> None:
    target = np.zeros((40, 40), bool)
    target[10:30, 5:25] = True
    rng = np.random.default_rng(0)
    for _ in range(30):
        interaction = first_interaction(target, rng)
        assert interaction.box is not None or interaction.clicks
        assert all(target[c.y, c.x] and c.positive for c in interaction.clicks)
    assert first_interaction(np.zeros((40, 40), bool), rng).clicks == []


def test_loss_ignores_samples_without_an_object() -> None:
    targets = torch.zeros(2, 1, 8, 8)
    targets[0, :, 2:6, 2:6] = 1
    good = torch.where(targets > 0, 10.0, -10.0)
    bad = -good
    logits = torch.cat([good[:1], bad[1:]])
    assert segmentation_loss(logits, targets, torch.tensor([1.0, 0.0])) < 0.01
    assert segmentation_loss(logits, targets, torch.tensor([1.0, 1.0])) > 0.5


def test_painted_shapes_are_objects_of_any_look() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        image = np.full((3, 64, 64), 0.5, np.float32)
        before = image.copy()
        shape = paint_shape(image, rng)
        assert 20 < shape.sum() < 64 * 64 * 0.6
        assert not np.array_equal(image[:, shape], before[:, shape]) and 0 <= image.min() and image.max() <= 1


def test_a_recoloured_object_changes_on_one_side_of_a_cut_only() -> None:
    """One side of the object, between a fifth and four fifths of it, changes colour; the background and the other
    side do not; an object too small to cut is left as it is."""
    rng = np.random.default_rng(0)
    target = np.zeros((64, 64), bool)
    target[12:52, 16:48] = True
    changed_any = 0
    for _ in range(20):
        image = np.random.default_rng(1).uniform(0.2, 0.8, (3, 64, 64)).astype(np.float32)
        before = image.copy()
        if recolour_part(image, target, rng):
            changed = (image != before).any(0)
            assert not changed[~target].any() and 0.2 * target.sum() <= changed.sum() <= 0.8 * target.sum()
            assert 0 <= image.min() and image.max() <= 1
            changed_any += 1
    assert changed_any >= 10
    speck, image = np.zeros((64, 64), bool), np.full((3, 64, 64), 0.5, np.float32)
    speck[5:9, 5:9] = True
    assert not recolour_part(image, speck, rng) and (image == 0.5).all()


def test_frozen_batch_norms_keep_the_starting_statistics(tiny_davis: Path, tmp_path: Path) -> None:
    stats = "blocks.5.block.1.1.running_var"
    start = load_trunk()[stats]  # a new run starts from the ImageNet trunk; lr 0: only the statistics can move
    for name, extra in (("free", []), ("frozen", ["--freeze-bn"])):
        main(["--out", str(tmp_path / name), "--data", str(tiny_davis), "--steps", "2", "--lr", "0", *TINY, *extra])
        after = load_annotator(tmp_path / name / "last.pt").state_dict()[f"trunk.{stats}"]
        assert torch.allclose(after, start, rtol=1e-2) == (name == "frozen")


def test_fine_only_trains_the_stride2_head_alone_from_a_network_without_one(tiny_davis: Path, tmp_path: Path) -> None:
    """`--fine C --fine-only --init` gives the shipped network a stride-2 head and trains it alone: every other
    weight and batch-norm statistic stays the shipped one's, the head's change, and the checkpoint says it has the
    head; continuing it needs the same --fine."""
    shipped = load_annotator()
    out = tmp_path / "run"
    main(["--out", str(out), "--data", str(tiny_davis), "--steps", "2", "--lr", "1e-2", "--fine", "8", "--fine-only",
          "--init", str(default_annotator()), *TINY])
    trained = load_annotator(out / "last.pt")
    assert trained.config.fine == 8 and shipped.config.fine == 0
    after = trained.state_dict()
    assert all(torch.equal(after[key], value.float()) for key, value in shipped.state_dict().items())
    assert after["fine.out.weight"].abs().sum() > 0
    with pytest.raises(BadInput, match=r"its network has a stride-2 head of 8 channels; pass --fine 8 to continue"):
        main(["--out", str(tmp_path / "other"), "--data", str(tiny_davis), "--steps", "1", "--init",
              str(out / "last.pt"), *TINY])
    assert not (tmp_path / "other").exists()


def test_averaged_weights_are_validated_saved_and_resumed(tiny_davis: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--out", str(out), "--data", str(tiny_davis), "--lr", "1e-2", "--ema", "0.5", *TINY]
    main([*args, "--steps", "2"])
    state = torch.load(out / "state.pt", weights_only=False)
    saved = load_annotator(out / "last.pt").state_dict()
    start = load_trunk()
    name = "blocks.5.block.1.0.weight"
    for key, value in saved.items():  # the saved weights are the average, not the trained ones
        assert torch.equal(value, state["average"][key])
    assert not torch.equal(state["average"][f"trunk.{name}"], state["network"][f"trunk.{name}"])
    between = state["average"][f"trunk.{name}"]
    distance = (between - start[name]).norm() / (state["network"][f"trunk.{name}"] - start[name]).norm()
    assert 0 < distance < 1  # behind the trained weights, on their way from the start
    main([*args, "--steps", "3"])
    resumed = torch.load(out / "state.pt", weights_only=False)
    expected = 0.5 * between + 0.5 * resumed["network"][f"trunk.{name}"]
    assert torch.allclose(resumed["average"][f"trunk.{name}"], expected, atol=1e-6)


def test_bf16_trains_in_bfloat16_and_keeps_weights_and_validation_in_fp32(
        tiny_davis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, torch.dtype]] = []
    forward = ClickNet.forward

    def recording(self: ClickNet, *args: torch.Tensor) -> torch.Tensor:
        logits = forward(self, *args)
        seen.append((self.training, logits.dtype))
        return logits

    monkeypatch.setattr(ClickNet, "forward", recording)
    out = tmp_path / "run"
    main(["--out", str(out), "--data", str(tiny_davis), "--steps", "2", "--bf16", *TINY])
    assert (True, torch.bfloat16) in seen and (False, torch.float32) in seen
    assert (True, torch.float32) not in seen and (False, torch.bfloat16) not in seen
    state = torch.load(out / "state.pt", weights_only=False)
    assert all(v.dtype == torch.float32 for v in state["network"].values() if v.is_floating_point())
    assert all(np.isfinite(json.loads(line)["loss"]) for line in (out / "log.jsonl").read_text().splitlines())


def test_trunk_lr_scales_the_trunks_learning_rate_and_zero_freezes_its_weights(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A resume with other settings takes them, and says which changed."""
    out = tmp_path / "run"
    main(["--out", str(out), "--data", str(tiny_davis), "--steps", "3", "--trunk-lr", "0", *TINY])
    state = torch.load(out / "state.pt", weights_only=False)
    trunk_group, rest_group = state["optimiser"]["param_groups"]
    assert trunk_group["lr"] == 0.0 < rest_group["lr"]
    start = load_trunk()
    trained = {k[len("trunk."):]: v for k, v in state["network"].items() if k.startswith("trunk.")}
    weights = [k for k, v in start.items() if v.is_floating_point() and "running" not in k]
    assert weights and all(torch.equal(trained[k], start[k]) for k in weights)
    torch.manual_seed(0)  # the run's seed: the same fresh decoder it started from
    fresh = annotator_training.build().state_dict()
    assert not torch.equal(state["network"]["head.weight"], fresh["head.weight"])
    capsys.readouterr()
    main(["--out", str(out), "--data", str(tiny_davis), "--steps", "5", "--trunk-lr", "0.5", *TINY])  # resumed
    assert f"resumed {out} at step 3; changed since the run began: steps 3 → 5, trunk_lr 0.0 → 0.5\n" in \
        capsys.readouterr().out
    trunk_group, rest_group = torch.load(out / "state.pt", weights_only=False)["optimiser"]["param_groups"]
    assert 0 < rest_group["lr"] and trunk_group["lr"] == pytest.approx(0.5 * rest_group["lr"])
    shipped = WEIGHTS_DIR / "annotator-mnv2.pt"  # --init sets up a new run: a resume says so (it was silent)
    main(["--out", str(out), "--data", str(tiny_davis), "--steps", "5", "--trunk-lr", "0.5", "--init", str(shipped),
          *TINY])
    assert f"init {shipped} (not taken: it sets up a new run only)" in capsys.readouterr().out


def test_paste_odds_share_the_batch_between_static_and_pasted_samples(tiny_davis: Path) -> None:
    """Each sample is the static sampler's or (a share `paste_odds` of them) the pasting sampler's last frame."""
    store = load_frames(tiny_davis, ["bike"], 64)
    shares = []
    for odds in (0.0, 0.5, 1.0):
        run = AnnotatorTraining(batch=16, crop=48, paste_odds=odds)
        samplers = make_samplers(store, run, seed=3)
        assert (samplers.pasted is None) == (odds == 0)
        images, targets = draw_batch(samplers, run, np.random.default_rng(0))
        static, _ = make_samplers(store, run, seed=3).static.sample(run.batch, 0.0)
        same = [torch.equal(images[i], static[i, -1]) for i in range(run.batch)]
        replaced = [i for i in range(run.batch) if not same[i]]
        if samplers.pasted is not None:
            pasted, pasted_masks = make_samplers(store, run, seed=3).pasted.sample(len(replaced), 0.0)
            assert torch.equal(images[replaced], pasted[:, -1]) and torch.equal(targets[replaced], pasted_masks[:, -1])
        shares.append(len(replaced) / run.batch)
    assert shares[0] == 0 and 0 < shares[1] < 1 and shares[2] == 1


def test_ship_writes_one_checkpoint_or_the_mean_of_several_with_their_provenance(
        tiny_davis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [tmp_path / name for name in ("a", "b", "other")]
    for seed, (run, hold_out) in enumerate(zip(runs, ["bike", "bike", VALIDATION_SEQUENCES[0]])):
        main(["--out", str(run), "--data", str(tiny_davis), "--steps", "2", "--seed", str(seed), "--hold-out",
              hold_out, *TINY])
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(annotator_training, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(annotator_training, "ANNOTATOR_MANIFEST", weights / "annotator.json")
    main(["--ship", str(runs[0] / "last.pt"), str(runs[1] / "last.pt")])
    shipped = torch.load(weights / "annotator-mnv2.pt", weights_only=False)
    a, b = (load_annotator(run / "last.pt").state_dict() for run in runs[:2])
    name = "head.weight"
    assert not torch.allclose(a[name], b[name], atol=1e-2)
    assert torch.allclose(shipped["state_dict"][name].float(), (a[name] + b[name]) / 2, atol=1e-3)
    entry = json.loads((weights / "annotator.json").read_text())["checkpoints"]["annotator-mnv2"]
    assert entry["recipe"].startswith("the mean of the weights of") and entry["steps"] == [2, 2]
    assert entry["validation_iou"] is None and len(shipped["meta"]["averaged"]) == 2
    main(["--ship", str(runs[0] / "last.pt")])
    entry = json.loads((weights / "annotator.json").read_text())["checkpoints"]["annotator-mnv2"]
    assert entry["steps"] == 2 and entry["validation_iou"]["mean"] >= 0 and entry["recipe"].startswith("2 steps")
    assert torch.equal(torch.load(weights / "annotator-mnv2.pt", weights_only=False)["state_dict"][name],
                       a[name].half())
    main(["--out", str(tmp_path / "next"), "--data", str(tiny_davis), "--steps", "1", "--hold-out", "bike",
          "--init", str(runs[0] / "last.pt"), *TINY])
    assert recipe(tmp_path / "next" / "last.pt", load_annotator_checkpoint(tmp_path / "next" / "last.pt")["meta"]
                  ).startswith(f"continued from {runs[0] / 'last.pt'}: 1 steps")
    main(["--out", str(tmp_path / "on"), "--data", str(tiny_davis), "--steps", "1", "--hold-out", "bike",
          "--init", str(default_annotator()), *TINY])  # continues the shipped network: its history comes first
    continued = recipe(tmp_path / "on" / "last.pt", load_annotator_checkpoint(tmp_path / "on" / "last.pt")["meta"])
    assert continued.startswith(f"{default_annotator_entry()['recipe']}; then continued from {default_annotator()}: ")
    with pytest.raises(BadInput, match="held out different validation sequences"):
        main(["--ship", str(runs[0] / "last.pt"), str(runs[2] / "last.pt")])
    shipped_words = default_annotator_entry()["recipe"]
    assert recipe(default_annotator(), load_annotator_checkpoint()["meta"]) == shipped_words  # its whole history


def test_tracked_guesses_are_near_the_object_but_wrong() -> None:
    target = np.zeros((120, 160), bool)
    target[30:90, 40:100] = True
    rng = np.random.default_rng(0)
    ious = []
    for _ in range(40):
        guess = tracked_guess(target, rng)
        ious.append((guess & target).sum() / (guess | target).sum())
    assert min(ious) >= 0.3 and np.mean(ious) < 0.95 and sum(iou < 0.99 for iou in ious) > 30


def save_masks_as_tracked(root: Path, out: Path) -> None:
    """The ground truth of the validation sequence as a tracker's saved masks, eaten away at the edges."""
    for path in (root / "Annotations" / "480p" / VALIDATION_SEQUENCES[0]).glob("*.png"):
        mask = np.array(Image.open(path)) > 0
        (out / VALIDATION_SEQUENCES[0]).mkdir(parents=True, exist_ok=True)
        worse = np.zeros_like(mask)
        worse[2:-2, 2:-2] = mask[4:, 4:]
        Image.fromarray(worse.astype(np.uint8)).save(out / VALIDATION_SEQUENCES[0] / path.name)


def test_redraw_samples_have_no_click_or_box_and_a_guess_and_are_validated(
        tiny_davis: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    guidance_batch = annotator_training.guidance_batch

    def record(interactions, previous, radius, hw):
        seen.append((list(interactions), previous))
        return guidance_batch(interactions, previous, radius, hw)

    monkeypatch.setattr(annotator_training, "guidance_batch", record)
    save_masks_as_tracked(tiny_davis, tmp_path / "tracked")
    out = tmp_path / "run"
    main(["--out", str(out), "--data", str(tiny_davis), "--steps", "2", "--redraw-odds", "1",
          "--tracked", str(tmp_path / "tracked"), "--tracked-every", "1", *TINY])
    interactions, previous = seen[-1]  # the trained call of the last step
    with_object = [i for i, it in enumerate(interactions) if previous is not None and previous[i].any()]
    assert with_object and all(not interactions[i].clicks and interactions[i].box is None for i in with_object)
    val = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()][-1]["val"]
    assert 0 <= val["redraw"] <= 100
    assert val["mean"] == round((val["box"] + val["click1"] + val["click3"] + val["redraw"]) / 4, 1)


@pytest.mark.parametrize("args, told", [
    (["--steps", "0"], "argument --steps: '0': give a whole number of 1 or more"),  # ZeroDivisionError
    (["--seconds", "0"], "argument --seconds: '0': give a number of 1 or more"),  # ZeroDivisionError
    (["--batch", "0"], "argument --batch: '0': give a whole number of 1 or more"),
    (["--crop", "50"], "argument --crop: '50': give a multiple of 16"),
    (["--val-every", "0"], "argument --val-every: '0': give a whole number of 1 or more"),
    (["--val-frames-every", "0"], "argument --val-frames-every: '0'"),
    (["--lr", "-1"], "argument --lr: '-1': give a number of 0 or more"),
    (["--ema", "1.5"], "argument --ema: '1.5': give a number from 0 to 0.9999"),  # trained, diverging silently
    (["--paste-odds", "2"], "argument --paste-odds: '2': give a number from 0 to 1"),
    (["--seed", "-1"], "argument --seed: '-1'"),
    (["--device", "gpu"], "argument --device: 'gpu': give auto, cpu or cuda"),
    (["--object-min", "0.9", "--object-max", "0.1"], "--object-min 0.9 is above --object-max 0.1; swap them"),
    (["--ship", "a.pt"], "--ship ships checkpoints and --out trains: give one of them"),  # --out was ignored
    (["--tracked", "masks", "--hold-out", ""], "--tracked: its masks are validated on the held-out sequences"),
    (["--fine-only"], "--fine-only trains the stride-2 head: give its channels with --fine C"),
])
def test_bad_settings_are_refused_as_the_flags_are_parsed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], told: str) -> None:
    with pytest.raises(SystemExit) as stop:
        parse_args(["--out", str(tmp_path / "run"), *args])
    assert stop.value.code == 2 and told in capsys.readouterr().err


def test_holding_out_everything_or_only_objectless_frames_is_refused_and_own_data_says_it_is_not_validated(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Holding out every sequence raised a traceback; a held-out sequence with no object on its validated frames
    never wrote best.pt; a folder without the validation split trained without validating, without a word."""
    every = f"bike,{VALIDATION_SEQUENCES[0]}"
    with pytest.raises(BadInput, match="--hold-out: holds out every sequence of the data folder"):
        main(["--out", str(tmp_path / "all"), "--data", str(tiny_davis), "--hold-out", every, *TINY])
    data = Path(shutil.copytree(tiny_davis, tmp_path / "data"))
    for mask in (data / "Annotations" / "480p" / VALIDATION_SEQUENCES[0]).glob("*.png"):
        Image.new("L", (160, 90)).save(mask)
    with pytest.raises(BadInput, match=f"--hold-out {VALIDATION_SEQUENCES[0]}: no object in any validated frame"):
        main(["--out", str(tmp_path / "empty"), "--data", str(data), *TINY])
    assert not (tmp_path / "all").exists() and not (tmp_path / "empty").exists()
    shutil.rmtree(data / "JPEGImages" / "480p" / VALIDATION_SEQUENCES[0])
    main(["--out", str(tmp_path / "own"), "--data", str(data), "--steps", "1", *TINY])
    assert "none of the validation sequences" in capsys.readouterr().out
    assert load_annotator_checkpoint(tmp_path / "own" / "best.pt")["meta"]["validation"] is None
    partial = held_out_sequences(annotator_training.DEFAULT_HOLD_OUT, ["bike", VALIDATION_SEQUENCES[0]])
    assert partial == [VALIDATION_SEQUENCES[0]]  # a part of the split, which used to be validated on without a word
    assert f"validating on 1 of the {len(VALIDATION_SEQUENCES)} validation sequences" in capsys.readouterr().out


def test_ship_of_a_run_folder_ships_its_best_or_says_it_has_none_yet(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--ship RUN` ships RUN/best.pt; a run stopped before writing one (Ctrl-C before its first validation) was
    told "not a MobileVOS annotator checkpoint ... git checkout -- core/weights"."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.pt").write_bytes(b"a run stopped before its first validation")
    with pytest.raises(SystemExit) as stop:
        parse_args(["--ship", str(run)])
    assert stop.value.code == 2
    assert f"{run / 'best.pt'}: not written yet (a run writes it every --val-every steps" in capsys.readouterr().err
    (run / "state.pt").unlink()
    main(["--out", str(run), "--data", str(tiny_davis), "--steps", "2", *TINY])
    monkeypatch.setattr(annotator_training, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(annotator_training, "ANNOTATOR_MANIFEST", tmp_path / "weights" / "annotator.json")
    main(["--ship", str(run)])
    assert load_annotator_checkpoint(tmp_path / "weights" / "annotator-mnv2.pt")["meta"]["steps"] == 2


def test_ctrl_c_saves_the_last_whole_step_and_the_same_command_resumes(
        tiny_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        ctrl_c_at_second_call: Callable[[object, str], list[int]]) -> None:
    """Ctrl-C at step 2: the step finishes and the state is saved (it was saved every 25 steps only), status 130;
    the rerun resumes at step 2."""
    calls = ctrl_c_at_second_call(annotator_training, "training_step")
    args = ["--out", str(tmp_path / "run"), "--data", str(tiny_davis), "--steps", "3", *TINY[:-4],
            "--val-every", "3"]
    said = run_interrupted(main, args, tmp_path / "run", capsys, step=2)
    assert f"saved step 2 in {tmp_path / 'run' / 'state.pt'}" in said
    main(args)
    assert "at step 2" in capsys.readouterr().out and len(calls) == 3
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
