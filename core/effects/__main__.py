"""`python -m core.effects --stills DIR` — one still per effect from the bundled judo sample."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.io.command import output_folder, run_tool
from core.effects.stills import render_stills
from core.io.masks import MaskError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.effects", description=__doc__.splitlines()[0])
    parser.add_argument("--stills", type=output_folder, required=True, help="folder to write one image per effect into")
    parser.add_argument("--sample", type=Path, default=Path(__file__).resolve().parents[2] / "samples" / "judo")
    parser.add_argument("--frame", default="00000", help="frame name with a mask in SAMPLE/masks")
    args = parser.parse_args(argv)
    try:
        written = render_stills(args.stills, args.sample, args.frame)
    except MaskError as error:
        raise SystemExit(f"error: {error}") from None
    for path in written:
        print(path)


if __name__ == "__main__":
    run_tool(main)
