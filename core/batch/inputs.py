"""Finding the work of a batch run: the videos and frame folders under the inputs, and their annotations.

An item is a video file (`VIDEO_SUFFIXES`: mp4, mov, mkv, webm, avi, mts, …) or a folder of numbered frames. Its
annotation (first-frame mask, palette PNG; `.png` in any case) is looked up in this order:
  - `--mask PATH` (one input only; PATH may be a PNG or a folder of PNGs named like the frames),
  - `clip.png` or `clip.mask.png` beside `clip.mp4` (frame 0); `clip.<N>.png` annotates frame N,
  - a frame folder's `masks/` subfolder, each PNG named like the frame it annotates.
Every annotation found is used: a later one adds the objects that appear there.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from core.io.suffixes import FRAME_SUFFIXES, VIDEO_SUFFIXES

MASK_FOLDER = "masks"
RECORD_FILE = "job.json"  # in each item's output folder: how its outputs were made (core.batch.worker)
FRAMES_FOLDER = "frames"  # `clip/frames/` + `clip/masks/` is read as the frame folder `clip`


@dataclass(frozen=True)
class Annotation:
    """One annotated frame: a palette PNG and the index of the frame it belongs to."""

    path: str
    frame: int


@dataclass(frozen=True)
class Job:
    """One item to process; `problem` is a one-line error found before any decoding."""

    source: str  # a video file or a frame folder
    name: str  # output folder, relative to the output root (POSIX separators)
    annotations: tuple[Annotation, ...] = ()
    problem: str | None = None
    unused: tuple[str, ...] = ()  # mask files beside the annotations that annotate no frame (named for none)


class InputError(ValueError):
    """A command-line input that cannot be used at all (missing path, --mask with several inputs)."""


def numbered_frames(folder: Path) -> list[Path]:
    """The numbered frame images directly in `folder`, in frame order (by number)."""
    frames = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES
              and p.stem.isdigit()]
    return sorted(frames, key=lambda p: int(p.stem))


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def is_frame_folder(path: Path) -> bool:
    return path.is_dir() and path.name != MASK_FOLDER and bool(numbered_frames(path))


def _unnumbered_frame_folder(path: Path) -> bool:
    """A folder meant as a frame folder (it has masks/) whose images are not named by frame number."""
    return (path.is_dir() and (path / MASK_FOLDER).is_dir() and not numbered_frames(path)
            and any(p.suffix.lower() in FRAME_SUFFIXES and p.is_file() for p in path.iterdir()))


def mask_files(folder: Path) -> list[Path]:
    """The PNG files directly in `folder` (`.png` in any case), sorted."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())


def _folder_annotations(masks: Path, frames: list[Path]) -> tuple[Annotation, ...]:
    """Annotations from a folder of PNGs named like the frames they annotate (DAVIS layout)."""
    index_of = {int(p.stem): i for i, p in enumerate(frames)}
    found = []
    for png in mask_files(masks):
        if png.stem.isdigit() and int(png.stem) in index_of:
            found.append(Annotation(str(png), index_of[int(png.stem)]))
    return tuple(sorted(found, key=lambda a: a.frame))


def _sidecars(stem: Path) -> tuple[list[Path], list[tuple[Path, int]]]:
    """The mask files beside `stem` (`.png` in any case): first-frame ones, `clip.png` before `clip.mask.png`, and
    `clip.<N>.png` with their N."""
    if not stem.parent.is_dir():
        return [], []
    pattern = re.compile(re.escape(stem.name) + r"(\.mask|\.\d+)?\.(?i:png)$")
    first, numbered = [], []
    for sibling in sorted(stem.parent.iterdir()):
        match = pattern.match(sibling.name)
        if match is None or not sibling.is_file():
            continue
        tag = match.group(1) or ""
        if tag[1:].isdigit():
            numbered.append((sibling, int(tag[1:])))
        else:
            first.append((tag == ".mask", sibling))
    return [path for _, path in sorted(first)], numbered


def _sidecar_annotations(stem: Path) -> tuple[Annotation, ...]:
    """`clip.png` / `clip.mask.png` (frame 0) and `clip.<N>.png` (frame N) beside `stem`."""
    first, numbered = _sidecars(stem)
    found = [Annotation(str(first[0]), 0)] if first else []
    found += [Annotation(str(path), frame) for path, frame in numbered]
    return tuple(sorted(found, key=lambda a: a.frame))


def _missing_annotation(source: Path) -> str:
    misnamed = [png for masks in _mask_folders(source) for png in mask_files(masks)] if source.is_dir() else []
    if misnamed:
        frames = numbered_frames(source)
        more = f" (and {len(misnamed) - 1} more)" if len(misnamed) > 1 else ""
        return (f"{source}: {misnamed[0]}{more} is named like none of its frames ({frames[0].stem} to "
                f"{frames[-1].stem}); rename each mask after the frame it annotates, or pass --mask PATH")
    if source.is_dir():
        hint = f"put the first frame's mask in {source / MASK_FOLDER}/ named like its frame"
    else:
        hint = "".join(f"{jpeg.name} is not read (beside a video a JPEG may be its thumbnail): "
                       for jpeg in _jpeg_beside(source)[:1])
        hint += f"save the first frame's mask as {source.with_suffix('.png')} beside it"
    return f"{source}: no annotation found; {hint} (palette PNG, one index per object) or pass --mask PATH"


def _jpeg_beside(video: Path) -> list[Path]:
    """JPEGs named like `video` beside it (`clip.jpg`, `clip.JPEG`): a mask saved in the wrong format, or a
    thumbnail."""
    return sorted(path for path in video.parent.glob(f"{glob.escape(video.stem)}.*")
                  if path.suffix.lower() in (".jpg", ".jpeg"))


def _mask_folders(folder: Path) -> list[Path]:
    """Where a frame folder's annotations may be: its masks/, or clip/masks/ for clip/frames/."""
    candidates = [folder / MASK_FOLDER]
    if folder.absolute().name == FRAMES_FOLDER:
        candidates.append(folder.absolute().parent / MASK_FOLDER)
    return [c for c in candidates if c.is_dir()]


def find_annotations(source: Path) -> tuple[Annotation, ...]:
    """All annotations of a video file or a frame folder (empty when there are none)."""
    if source.is_dir():
        frames = numbered_frames(source)
        for masks in _mask_folders(source):
            found = _folder_annotations(masks, frames)
            if found:
                return found
        return _sidecar_annotations(source)
    return _sidecar_annotations(source.with_suffix(""))


def explicit_annotations(mask: Path, source: Path, frame: int) -> tuple[Annotation, ...]:
    """The annotation given with --mask: a PNG for frame `frame`, or a folder named like the frames."""
    if mask.is_dir():
        frames = numbered_frames(source) if source.is_dir() else []
        if not frames:
            raise InputError(f"{mask}: --mask folder needs a frame-folder input; pass one PNG for a video")
        return _folder_annotations(mask, frames)
    if not mask.is_file():
        raise InputError(f"{mask}: --mask file not found; give the path of a palette PNG")
    return (Annotation(str(mask), frame),)


def _walk(path: Path, skip: str, seen: set[str]) -> list[Path]:
    """Videos and frame folders under `path`, sorted, not descending into masks/, hidden, `skip` or a batch
    item's output folder (it holds RECORD_FILE). Each real path (links resolved) is visited once, recorded in
    `seen`: a link back up the tree, or a second link to a file or folder already found, adds nothing."""
    real = os.path.realpath(path)
    if real in seen:
        return []
    seen.add(real)
    if is_video(path) or is_frame_folder(path) or _unnumbered_frame_folder(path):
        return [path]
    if not path.is_dir():
        return []
    items = []
    for child in sorted(path.iterdir(), key=_listing_order):
        if (child.name.startswith(".") or child.name == MASK_FOLDER or os.path.realpath(child) == skip
                or batch_item_folder(child)):  # an item's outputs, from an earlier run into another --out
            continue
        items.extend(_walk(child, skip, seen))
    return items


def batch_item_folder(path: Path) -> bool:
    """Whether `path` is a folder core.batch wrote for an item: its RECORD_FILE names the input and the outputs (a
    user's own job.json does not)."""
    try:
        record = json.loads((path / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"input", "outputs", "made_with"} <= record.keys()


def _listing_order(path: Path) -> tuple[str, int]:
    """Where `path` comes in a folder's items: by name, and of two videos named alike (a camcorder's clip.MTS
    and the clip.mp4 made from it) by their suffix's place in VIDEO_SUFFIXES: the first named takes the output
    name, the other fails as a name clash."""
    if not is_video(path):
        return path.name, 0
    return path.stem, VIDEO_SUFFIXES.index(path.suffix.lower())


def discover(inputs: list[str], out_dir: str) -> list[tuple[Path, Path]]:
    """(item, its input root) for every item under the inputs, in argument order, each real file or folder
    once (the first path found names it); InputError for a bad path."""
    skip = os.path.realpath(out_dir)
    seen: set[str] = set()
    items = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{raw}: no such file or folder; check the path")
        if path.is_file() and not is_video(path):
            raise InputError(f"{raw}: not a video ({', '.join(s[1:] for s in VIDEO_SUFFIXES)}) "
                             "nor a folder; pass a video file or a folder")
        items.extend((item, path) for item in _walk(path, skip, seen))
    return items


def plan_jobs(inputs: list[str], out_dir: str, mask: str | None = None, mask_frame: int = 0) -> list[Job]:
    """The jobs of a run, with annotations resolved and per-item problems (missing mask, name clash) set."""
    found = discover(inputs, out_dir)
    if mask is not None and len(found) != 1:
        raise InputError(f"--mask {mask} needs exactly one input video or frame folder, found {len(found)}")
    jobs, owners = [], {}
    for source, root in found:
        name = _root_relative_name(source, root)
        if _unnumbered_frame_folder(source):
            annotations: tuple[Annotation, ...] = ()
            problem: str | None = (f"{source}: its images are not named by frame number; rename them 00000.jpg, "
                                   "00001.jpg, … in order, and each mask in masks/ after its frame")
        else:
            annotations = (explicit_annotations(Path(mask), source, mask_frame) if mask is not None
                           else find_annotations(source))
            problem = None if annotations else _missing_annotation(source)
        if name in owners:
            problem = (f"{source}: its output name {name!r} is already used by {owners[name]}; "
                       "rename one of them")
        owners.setdefault(name, source)
        jobs.append(Job(str(source), name, annotations, problem, unused_masks(source, annotations)))
    return jobs


def unused_masks(source: Path, annotations: tuple[Annotation, ...]) -> tuple[str, ...]:
    """The PNGs of a frame folder's masks folder that annotate none of its frames (named for a frame it lacks, or
    not by a frame number), and a `clip.mask.png` passed over for `clip.png`: files a user meant to be used."""
    if not annotations:
        return ()
    used = {Path(a.path) for a in annotations}
    folders = {path.parent for path in used}
    if source.is_dir() and len(folders) == 1 and next(iter(folders)).name == MASK_FOLDER:
        return tuple(str(png) for png in mask_files(next(iter(folders))) if png not in used)
    first = _sidecars(source.with_suffix(""))[0] if source.is_file() else []
    return tuple(str(path) for path in first if path not in used)


def _root_relative_name(source: Path, root: Path) -> str:
    """Output name of `source`: relative to the input `root` (a folder of items), or its own name; `clip/frames/`
    is named `clip`, whether the input is `clip/frames`, `clip` or a folder above it."""
    if source == root:
        return source.stem if source.is_file() else _frame_folder_name(source)
    relative = source.relative_to(root)
    if source.is_file():
        relative = relative.with_suffix("")
    elif relative.name == FRAMES_FOLDER:
        if len(relative.parts) == 1:  # the input is the clip: its frames/ beside its masks/
            return _frame_folder_name(source)
        relative = relative.parent
    return relative.as_posix()


def _frame_folder_name(folder: Path) -> str:
    """A frame folder's name; `clip/frames/` (frames beside `clip/masks/`) is named `clip`."""
    folder = folder.absolute()
    return folder.parent.name if folder.name == FRAMES_FOLDER else folder.name
