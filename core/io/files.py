"""Folders written whole: built under a hidden name beside their place, then renamed into it, so a reader never
sees half of one and an interrupted run leaves the old one as it was."""

from __future__ import annotations

import secrets
from pathlib import Path


def staging_folder(folder: Path) -> Path:
    """A new empty hidden folder beside `folder` to build it in, made with the usual permissions (the umask's, not
    `tempfile.mkdtemp`'s owner-only 0700, which the rename into place would keep)."""
    staging = folder.parent / f".{folder.name}.{secrets.token_hex(6)}.tmp"
    staging.mkdir()
    return staging
