"""File operations every cache module needs: atomic small writes, quiet deletes, a file list."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and one rename, so
    readers see the old contents or the new, never half."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
