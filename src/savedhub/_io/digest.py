"""The content digest of a cached file: SHA-256, taken while a file is written or read back.

One owner for the algorithm, so extraction (which hashes each member as it
writes it) and ``savedhub cache verify`` (which reads the files back) always
agree. SHA-256 rather than the faster BLAKE2b: its hex digests are what
``sha256sum`` prints, so a user can check a cached file with the tools on any
machine, and CPUs with SHA extensions (x86 since Ice Lake/Zen, ARMv8) typically
hash it faster than BLAKE2b. On a CPU without them (the development machine)
hashlib's SHA-256 runs at ~330 MB/s against BLAKE2b's ~500 MB/s: about 0.2 s
more CPU per 200 MB extracted, paid in a thread that lets go of the GIL
(``bench/bench_verify.py`` times reading them back).

Example:
    >>> file_sha256(Path("model/saved_model.pb"))
    '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
"""

from __future__ import annotations

import hashlib
import os

_READ_BYTES = 1 << 20


def new() -> hashlib._Hash:
    """A fresh digest object to ``update`` with a file's bytes as they stream by."""
    return hashlib.sha256()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of the file at ``path``, read in 1 MiB pieces into one reused
    buffer (no copy per piece; hashlib releases the GIL while it hashes).

    Raises:
        OSError: the file cannot be read.
    """
    digest = new()
    buffer = bytearray(_READ_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as source:
        while count := source.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()
