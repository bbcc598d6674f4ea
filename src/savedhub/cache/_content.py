"""What a manifest records about each file's bytes, and checking an entry against it.

Beside each file's size (``files``), a manifest written by this savedhub
keeps the file's SHA-256, taken while the archive was extracted (``sha256``),
and its ``mtime_ns`` as installed (``mtime_ns``)::

    {"files": {"saved_model.pb": 5130, ...},
     "sha256": {"saved_model.pb": "9f86d0...", ...},
     "mtime_ns": {"saved_model.pb": 1700000000123456789, ...}}

(``files`` keeps its old shape, so older savedhubs sharing the cache still
read it.)

* A load checks sizes and times: one ``stat`` per file, no reads, so warm
  loads stay as fast as before. A file rewritten in place, even to the same
  size, has a new mtime; it is then hashed, and counts as changed only if
  its bytes differ. A copy or a ``touch`` that kept the bytes is fine, and
  its new time is recorded (``retimed``) so it is not hashed again.
* ``content=True`` hashes every file: ``savedhub cache verify`` and
  ``SAVEDHUB_VERIFY=content``. It finds what keeps size and time: bit rot, a
  tool that restores mtimes.
* Entries written by ``tensorflow_hub`` or an older savedhub carry no hashes:
  they are checked by size as before, and ``hashed`` is False until
  ``savedhub cache verify --rehash`` records hashes of their current bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from savedhub._io.digest import file_sha256

_MAX_HASH_THREADS = 8


@dataclass(frozen=True)
class ContentCheck:
    """What checking an entry's files against its manifest found.

    Attributes:
        problem: the first thing wrong, in words; None when the entry is whole.
        files: every file found missing, resized or changed (with ``content``
            all of them, else the first).
        retimed: files whose mtime moved while their bytes stayed the
            installed ones: relative path -> the mtime_ns to record.
        hashed: whether the manifest records a SHA-256 of every file.
        bytes_hashed: how many bytes were read to hash files.
    """

    problem: str | None = None
    files: tuple[str, ...] = ()
    retimed: dict[str, int] = field(default_factory=dict)
    hashed: bool = False
    bytes_hashed: int = 0


def _mapping(manifest: Mapping[str, object], name: str) -> Mapping[str, object]:
    value = manifest.get(name)
    return value if isinstance(value, dict) else {}


def is_hashed(manifest: Mapping[str, object]) -> bool:
    """Whether ``manifest`` records a SHA-256 for every file it lists."""
    files, digests = _mapping(manifest, "files"), _mapping(manifest, "sha256")
    return bool(files) and all(isinstance(digests.get(rel), str) for rel in files)


def record(folder: Path, sha256: Mapping[str, str]) -> dict[str, object]:
    """The manifest fields for files just written below ``folder``: their
    SHA-256 (as given) and their mtime_ns as they are now."""
    return {
        "sha256": dict(sorted(sha256.items())),
        "mtime_ns": {rel: os.stat(folder / rel).st_mtime_ns for rel in sorted(sha256)},
    }


def check(path: Path, manifest: Mapping[str, object], *, content: bool = False) -> ContentCheck:
    """Check the entry at ``path`` against ``manifest``.

    Args:
        path: the entry folder.
        manifest: its manifest.
        content: hash every file (else only those whose mtime moved), and
            report every bad file rather than stopping at the first.
    """
    files = _mapping(manifest, "files")
    if not files:
        return ContentCheck(problem="its manifest lists no files")
    digests, mtimes = _mapping(manifest, "sha256"), _mapping(manifest, "mtime_ns")
    problems: list[tuple[str, str]] = []
    to_hash: dict[str, os.stat_result] = {}
    for rel, size in files.items():  # first every stat, so a missing file costs no reads
        try:
            stat = os.stat(path / rel)
        except (FileNotFoundError, NotADirectoryError):
            problems.append((rel, f"the file {rel} is missing"))
        else:
            if stat.st_size != size:
                problems.append(
                    (rel, f"the file {rel} has {stat.st_size} bytes where {size} were installed")
                )
            elif isinstance(digests.get(rel), str) and (
                content or mtimes.get(rel) != stat.st_mtime_ns
            ):
                to_hash[rel] = stat
        if problems and not content:
            return _found(problems, manifest, 0)
    retimed: dict[str, int] = {}
    for rel, actual in _hash_files(path, to_hash).items():
        if actual != digests[rel]:
            changed = "changed after it was installed (its SHA-256 is not the one recorded)"
            problems.append((rel, f"the file {rel} {changed}"))
        elif mtimes.get(rel) != to_hash[rel].st_mtime_ns:
            retimed[rel] = to_hash[rel].st_mtime_ns
    read = sum(stat.st_size for stat in to_hash.values())
    if problems:
        return _found(problems, manifest, read)
    return ContentCheck(retimed=retimed, hashed=is_hashed(manifest), bytes_hashed=read)


def _found(
    problems: list[tuple[str, str]], manifest: Mapping[str, object], read: int
) -> ContentCheck:
    more = f" (and {len(problems) - 1} more files)" if len(problems) > 1 else ""
    return ContentCheck(
        problem=problems[0][1] + more,
        files=tuple(rel for rel, _ in problems),
        hashed=is_hashed(manifest),
        bytes_hashed=read,
    )


def _hash_files(path: Path, stats: Mapping[str, os.stat_result]) -> dict[str, str]:
    """The SHA-256 of each file, several at once (hashlib and reads let go of the
    GIL, so a model's shards are hashed on every core), largest first."""
    names = sorted(stats, key=lambda rel: -stats[rel].st_size)
    if len(names) <= 1:
        return {rel: file_sha256(path / rel) for rel in names}
    workers = min(len(names), os.cpu_count() or 1, _MAX_HASH_THREADS)
    with ThreadPoolExecutor(workers, thread_name_prefix="savedhub-hash") as pool:
        return dict(zip(names, pool.map(lambda rel: file_sha256(path / rel), names), strict=True))
