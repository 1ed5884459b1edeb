"""`python -m core.demo` (`make demo`) — the main job on the bundled sample, with the shipped weights.

Tracks the four judo players of `samples/judo` (annotated on frames 0, 5, 8 and 13) through `python -m core.batch` and
writes the masks, an overlay video, a cut-out with alpha, a blurred background and the players removed into
`demo-out/judo/`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.batch.cli import main as batch_main

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "judo"


def main() -> int:
    """Run the batch over the sample into demo-out/ and list what it wrote."""
    out = Path("demo-out")
    code = batch_main([str(SAMPLE), "--out", str(out), "--overwrite", "--masks", "both",
                       "--effect", "overlay", "--effect", "cutout", "--effect", "blur", "--effect", "remove"])
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.suffix in {".mp4", ".webm", ".json"}:
            print(path)
    return code


if __name__ == "__main__":
    sys.exit(main())
