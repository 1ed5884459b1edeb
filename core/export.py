"""`python -m core.export` — the ONNX graphs; see core/inference/export.py."""

import sys

from core.inference.export import main

if __name__ == "__main__":
    sys.exit(main())
