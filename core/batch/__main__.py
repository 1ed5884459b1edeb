"""`python -m core.batch` — see core/batch/cli.py."""

from core.batch.cli import main
from core.io.command import exit_program

if __name__ == "__main__":
    exit_program(main())
