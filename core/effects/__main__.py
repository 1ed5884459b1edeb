"""`python -m core.effects --stills DIR` — one still per effect from the bundled judo sample."""

from __future__ import annotations

from pathlib import Path

from core.io.command import ToolParser, output_folder, run_tool, tool_description
from core.effects.stills import render_stills


def main(argv: list[str] | None = None) -> None:
    """Write the stills and print their paths; a frame or mask that cannot be read ends in one line (`run_tool`)."""
    parser = ToolParser(prog="python -m core.effects", description=tool_description(__doc__))
    parser.add_argument("--stills", type=output_folder, required=True, help="folder to write one image per effect into")
    parser.add_argument("--sample", type=Path, default=Path(__file__).resolve().parents[2] / "samples" / "judo",
                        help="a clip folder: its frames (*.jpg) and masks/NAME.png (default: the bundled judo)")
    parser.add_argument("--frame", default="00000", help="frame name with a mask in SAMPLE/masks")
    args = parser.parse_args(argv)
    for path in render_stills(args.stills, args.sample, args.frame):
        print(path)


if __name__ == "__main__":
    run_tool(main)
