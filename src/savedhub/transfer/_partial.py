"""The partial file: the bytes received so far, and ``<partial>.json`` naming their version."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from savedhub._io.atomic import write_file


@dataclass
class PartialState:
    """Which version of which URL a partial file holds the start of."""

    url: str
    etag: str | None
    last_modified: str | None
    size: int | None
    sha256: str | None


def state_path(partial: Path) -> Path:
    """Where the metadata of ``partial`` lives."""
    return partial.with_name(partial.name + ".json")


def read_state(partial: Path | None, url: str) -> PartialState | None:
    """The state of a partial file left for ``url``; None when there is none that fits."""
    if partial is None or not partial.exists():
        return None
    try:
        data = json.loads(state_path(partial).read_text())
        state = PartialState(**data)
    except (OSError, ValueError, TypeError):
        return None
    return state if state.url == url else None


def open_for_writing(partial: Path, keep: int) -> int:
    """A descriptor appending to ``partial`` after its first ``keep`` bytes
    (a new, empty file when ``keep`` is 0)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if keep else os.O_TRUNC)
    fd = os.open(partial, flags, 0o644)
    if keep:
        try:
            os.ftruncate(fd, keep)
        except BaseException:
            os.close(fd)
            raise
    return fd


def write_state(partial: Path, state: PartialState) -> None:
    """Record which version ``partial`` holds, replacing the record in one rename."""
    write_file(state_path(partial), json.dumps(asdict(state)))


def write_all(fd: int, data: bytes) -> None:
    """Append all of ``data`` to the open partial file."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def discard(partial: Path) -> None:
    """Delete a partial file and its metadata."""
    for path in (partial, state_path(partial)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
