"""`python -m core.export` — the ONNX graphs; see core/inference/export.py."""

from core.io.command import run_tool
from core.inference.export import main

if __name__ == "__main__":
    run_tool(main)
