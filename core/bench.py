"""`python -m core.bench` — the tracker's speed and memory; see core/evaluation/bench.py."""

import sys

from core.evaluation.bench import main

if __name__ == "__main__":
    sys.exit(main())
