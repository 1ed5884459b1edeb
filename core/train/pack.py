"""`python -m core.train.pack SRC DST` — a downscaled copy of a DAVIS root, small enough to carry to a GPU machine.

Frames are resized so their short side is `--short-side` (JPEG, `--quality`), masks with nearest neighbour;
the DAVIS layout (`JPEGImages/480p`, `Annotations/480p`) is kept so training and `python -m core.eval` read it as is.
With `--video-crf N` each sequence's frames become one H.264 file instead (`JPEGImages/480p/SEQ.mp4`, the frame
names in `SEQ.txt` beside it): about a sixth of the JPEGs' size at the same short side, so full-size frames fit
where a call carries 64 MiB. `--unpack` turns such a pack back into the DAVIS layout (JPEG frames) on the machine
that trains; it decodes with OpenCV, so it needs no PyAV there. Either is written into a hidden folder beside DST
and moved into DST only once complete: a run that fails part-way (an unreadable frame) leaves DST as it was.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
from tqdm import tqdm

from core.io.command import BadInput, ToolParser, bounded, output_folder, run_tool, tool_description, whole_number
from core.io.davis import FRAMES, MASKS, frame_paths, sequence_names
from core.io.files import staging_folder
from core.train.data import davis_sequences, read_image

UNPACKED_QUALITY = 95  # JPEG quality of unpacked frames: high, so that what they lose is mostly the video's


def packed_size(width: int, height: int, short_side: int, even: bool = False) -> tuple[int, int]:
    """(width, height) scaled so the short side is `short_side`; rounded to even numbers for 4:2:0 video."""
    scale = short_side / min(width, height)
    if even:
        return 2 * round(width * scale / 2), 2 * round(height * scale / 2)
    return round(width * scale), round(height * scale)


def pack_frame(src: Path, dst: Path, short_side: int, quality: int, nearest: bool, even: bool = False) -> None:
    """Resize one image file into `dst` (JPEG for frames, PNG for masks); `even`: at the size a video of its
    sequence has (`packed_size`)."""
    image = read_image(src, cv2.IMREAD_UNCHANGED if nearest else cv2.IMREAD_COLOR)
    size = packed_size(image.shape[1], image.shape[0], short_side, even)
    image = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
    dst.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 9] if nearest else [cv2.IMWRITE_JPEG_QUALITY, quality]
    cv2.imwrite(str(dst), image, params)


def pack_sequence_video(frames: list[Path], dst: Path, short_side: int, crf: int) -> None:
    """One sequence's frames (in order) as one H.264 file `dst` (x264, yuv420p, `crf`), written under a temporary
    name and renamed when complete; their names go to `dst` with the suffix `.txt`."""
    import av  # here, not at the top: the machine that unpacks has no PyAV

    first = read_image(frames[0], cv2.IMREAD_COLOR)
    size = packed_size(first.shape[1], first.shape[0], short_side, even=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.partial.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for path in frames:
            image = cv2.resize(read_image(path, cv2.IMREAD_COLOR), size, interpolation=cv2.INTER_AREA)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    dst.with_suffix(".txt").write_text("".join(f"{path.stem}\n" for path in frames))
    os.replace(partial, dst)  # last: a video in place always has its names beside it


def unpack_sequence_video(video: Path, dst: Path, quality: int = UNPACKED_QUALITY) -> int:
    """A packed sequence back as JPEG files in `dst`, named as listed beside `video`; returns how many. A video
    that ends early (truncated, corrupt) or lacks its names stops with a one-line error."""
    listing = video.with_suffix(".txt")
    if not listing.is_file():
        raise BadInput(f"{listing}: missing (the names of {video.name}'s frames); pack the sequence again")
    names = listing.read_text().split()
    dst.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(video))
    try:
        for count, name in enumerate(names):
            ok, image = capture.read()
            if not ok:
                raise BadInput(f"{video}: {count} of {len(names)} frames decoded; pack the sequence again")
            cv2.imwrite(str(dst / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    finally:
        capture.release()
    return len(names)


def write_whole(dst: Path, write: Callable[[Path], None]) -> None:
    """`write(folder)` into a new hidden folder beside `dst`, then its files moved into `dst`: the folder renamed
    to `dst` when there is none yet, else file by file over `dst`'s files of the same names (its others kept). A
    failure or Ctrl-C part-way removes the hidden folder and leaves `dst` as it was."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(dst)
    try:
        write(staging)
        if not dst.exists():
            os.replace(staging, dst)
            return
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                target = dst / path.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pack(src: Path, dst: Path, short_side: int, quality: int, crf: int | None) -> None:
    """Pack the DAVIS root `src` into `dst` (`write_whole`). A `src` that is no DAVIS root is refused before
    anything is written."""
    davis_sequences(src)
    write_whole(dst, lambda folder: pack_into(src, folder, short_side, quality, crf))


def pack_into(src: Path, dst: Path, short_side: int, quality: int, crf: int | None) -> None:
    """Pack the DAVIS root `src` into the folder `dst`: frames as JPEGs, or as one video per sequence with `crf`
    (the masks then at the videos' even size). Each sequence is read through its own folders, so sequence
    folders that are links (a root assembled from others) are packed too."""
    names = sequence_names(src)
    masks = [path for name in names for path in sorted((src / MASKS / name).glob("*.png"))]
    for path in tqdm(masks, unit="mask", desc="masks"):
        pack_frame(path, dst / MASKS / path.parent.name / path.name, short_side, quality, nearest=True,
                   even=crf is not None)
    if crf is None:
        for path in tqdm([path for name in names for path in frame_paths(src, name)], unit="frame", desc="frames"):
            pack_frame(path, dst / FRAMES / path.parent.name / path.name, short_side, quality, nearest=False)
        return
    for name in tqdm(names, unit="sequence", desc="videos"):
        frames = frame_paths(src, name)
        if not frames:
            raise BadInput(f"{src / FRAMES / name}: no JPEG frames (*.jpg) to pack; convert its frames to JPEG or "
                           "remove it")
        pack_sequence_video(frames, dst / FRAMES / f"{name}.mp4", short_side, crf)


def unpack(src: Path, dst: Path, workers: int | None = None) -> None:
    """A video pack `src` back into the DAVIS layout in `dst` (`write_whole`); a folder that is no video pack is
    refused before anything is written."""
    videos = sorted((src / FRAMES).glob("*.mp4"))
    if not videos:
        raise BadInput(f"{src / FRAMES}: no packed videos; make the pack with --video-crf")
    if not (src / MASKS).is_dir():
        raise BadInput(f"{src / MASKS}: missing (the pack's masks); pack the DAVIS root again")
    write_whole(dst, lambda folder: unpack_into(videos, src / MASKS, folder, workers))


def unpack_into(videos: list[Path], masks: Path, dst: Path, workers: int | None) -> None:
    """The packed `videos` as JPEG frames in the DAVIS layout in the folder `dst`, one sequence per process, and
    the `masks` folder copied."""
    shutil.copytree(masks, dst / MASKS, dirs_exist_ok=True)
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        jobs = [pool.submit(unpack_sequence_video, video, dst / FRAMES / video.stem) for video in videos]
        for job in tqdm(jobs, unit="sequence", desc="unpack"):
            job.result()


def main(argv: list[str] | None = None) -> None:
    """Pack (or, with --unpack, unpack) SRC into DST."""
    parser = ToolParser(prog="python -m core.train.pack", description=tool_description(__doc__))
    parser.add_argument("src", type=Path, help="the DAVIS root to pack (with --unpack: a video pack)")
    parser.add_argument("dst", type=output_folder, help="the folder to write the copy into")
    parser.add_argument("--short-side", type=whole_number(16), default=240,
                        help="the frames' and masks' short side in the copy (default 240)")
    parser.add_argument("--quality", type=bounded(1, 100, whole=True), default=85,
                        help="JPEG quality of the packed frames (1 to 100)")
    parser.add_argument("--video-crf", type=bounded(0, 51, whole=True),
                        help="pack each sequence's frames as one H.264 file at this CRF (0 to 51)")
    parser.add_argument("--unpack", action="store_true", help="SRC is a video pack: write its frames as JPEGs")
    args = parser.parse_args(argv)
    if args.dst.resolve() == args.src.resolve():
        parser.error(f"DST {args.dst} is SRC itself (its files would be overwritten); give another folder")
    if args.unpack:
        unpack(args.src, args.dst)
    else:
        pack(args.src, args.dst, args.short_side, args.quality, args.video_crf)


if __name__ == "__main__":
    run_tool(main)
