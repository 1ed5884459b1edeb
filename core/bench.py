"""`python -m core.bench` — the tracker's speed and memory; see core/evaluation/bench.py."""

from core.io.command import run_tool
from core.evaluation.bench import main

if __name__ == "__main__":
    run_tool(main)
