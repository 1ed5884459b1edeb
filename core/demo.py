"""`python -m core.demo` (`make demo`) — the main job on the bundled sample, with the shipped weights.

Tracks the four judo players of `samples/judo` (annotated on frames 0, 5, 8 and 13) through `python -m core.batch` and
writes the masks, an overlay video, a cut-out with alpha, a blurred background and the players removed into
`demo-out/judo/`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.batch.cli import main as batch_main
from core.io.command import ToolParser, output_folder, run_tool

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "judo"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The demo's flags: only where to write."""
    parser = ToolParser(prog="python -m core.demo",
                                     description="Track the four judo players of the bundled sample with the shipped "
                                                 "weights: masks, overlay, cut-out, blurred background and the players "
                                                 "removed.")
    parser.add_argument("--out", type=output_folder, default="demo-out", metavar="DIR",
                        help="output folder (default demo-out, in the current folder; redone on every run)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the batch over the sample into the output folder and list what it wrote."""
    out = parse_args(argv).out
    code = batch_main([str(SAMPLE), "--out", str(out), "--overwrite", "--masks", "both",
                       "--effect", "overlay", "--effect", "cutout", "--effect", "blur", "--effect", "remove"])
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.suffix in {".mp4", ".webm", ".json"}:
            print(path)
    if code == 0:
        print("Most of the time above went to remove.mp4: removing the players looks across the whole clip. The "
              "tracking's own speed: python -m core.bench")
    return code


if __name__ == "__main__":
    run_tool(main)
