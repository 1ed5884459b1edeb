"""`python -m core.eval` — DAVIS J&F of the tracker; see core/evaluation/davis.py."""

from core.io.command import run_tool
from core.evaluation.davis import main

if __name__ == "__main__":
    run_tool(main)
