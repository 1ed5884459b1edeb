"""`python scripts/strip_wheel.py SRC DST PACKAGE/SUB …` — a wheel without some of its subpackages, recompressed
with LZMA, so that it fits the 64 MiB a device call carries (Ray's 79 MB wheel → 31 MB without its Java jars and
its libraries the batch does not use). pip installs such a wheel as any other; its RECORD drops the removed files.
"""

from __future__ import annotations

import sys
import zipfile


def strip_wheel(source: str, target: str, drop: list[str]) -> int:
    """Copy the wheel `source` to `target` without the files under the `drop` folders (e.g. "ray/jars"), each
    entry LZMA-compressed; returns the number of files left out."""
    prefixes = tuple(folder.rstrip("/") + "/" for folder in drop)
    dropped = 0
    with zipfile.ZipFile(source) as wheel, zipfile.ZipFile(target, "w", zipfile.ZIP_LZMA) as out:
        for info in wheel.infolist():
            if info.filename.startswith(prefixes):
                dropped += 1
                continue
            data = wheel.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                data = b"\n".join(line for line in data.split(b"\n") if not line.decode().startswith(prefixes))
            entry = zipfile.ZipInfo(info.filename, info.date_time)
            entry.external_attr = info.external_attr  # keeps the executables' mode bits
            entry.compress_type = zipfile.ZIP_LZMA
            out.writestr(entry, data)
    return dropped


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__.strip().splitlines()[0])
    print(f"{argv[1]}: {strip_wheel(argv[0], argv[1], argv[2:])} files left out")


if __name__ == "__main__":
    main(sys.argv[1:])
