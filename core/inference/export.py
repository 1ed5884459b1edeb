"""`python -m core.export` — write the student's ONNX graphs (float, and int8 calibrated by the tracker) to the
cache or to a folder. The graphs themselves are core.inference.graphs; this command sits above the tracker.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.io.command import ToolParser, output_folder, tool_description
from core.inference.graphs import ExportError, cache_root, cached_graphs, export_all, network_digest
from core.inference.tracker import calibration_feeds
from core.weights import WeightsError, load_network


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ToolParser(prog="python -m core.export", description=tool_description(__doc__))
    parser.add_argument("--weights", help="tracker checkpoint (default: the shipped weights)")
    parser.add_argument("--out", type=output_folder, help="write the graphs to this folder (default: the cache)")
    parser.add_argument("--int8", action="store_true", help="also write the int8 graphs (--backend onnx-int8)")
    parser.add_argument("--force", action="store_true", help="export again even when the cache is valid")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        network = load_network(args.weights)
        if args.out is not None or args.force:
            folder = args.out or cache_root() / network_digest(network)
            graphs = export_all(network, folder, int8=args.int8, progress=True, calibrate=calibration_feeds)
        else:
            graphs = cached_graphs(network, int8=args.int8, progress=True, calibrate=calibration_feeds)
    except (WeightsError, ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, path in graphs.items():
        print(f"{name:>10}  {path}  ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0
