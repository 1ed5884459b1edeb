"""`python -m core.eval` — DAVIS J&F of the tracker; see core/evaluation/davis.py."""

import sys

from core.evaluation.davis import main

if __name__ == "__main__":
    sys.exit(main())
