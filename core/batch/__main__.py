"""`python -m core.batch` — see core/batch/cli.py."""

import sys

from core.batch.cli import main

if __name__ == "__main__":
    sys.exit(main())
