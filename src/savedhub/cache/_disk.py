"""File operations every cache module needs: quiet deletes, a file list.
(Atomic writes: :mod:`savedhub._io.atomic`.)"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def rmtree(path: Path) -> None:
    """Delete a folder tree; what cannot be deleted is left for the next prune."""
    shutil.rmtree(path, ignore_errors=True)


def unlink(path: Path) -> None:
    """Delete a file that may already be gone."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def walk_files(folder: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Every file below ``folder`` with its size, and every symbolic link with
    its target, keyed by ``/``-separated relative path."""
    files: dict[str, int] = {}
    links: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            if os.path.islink(full):
                links[rel] = os.readlink(full)
            else:
                files[rel] = os.stat(full).st_size
    return files, links
