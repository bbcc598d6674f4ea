"""A model a hub lists file by file (its ``?tf-hub-format=uncompressed`` answer), downloaded
into the cache.

A savedhub hub on local storage answers ``TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED``
with a 303 to ``<model url>/files``: JSON naming each file of the SavedModel
folder with its size (``{"files": [{"path": ..., "size": ...}, ...]}``). TensorFlow
cannot read an http folder in place, so the files are downloaded one by one into
a work folder that the cache renames into place, like an extracted archive.

The listing is untrusted: paths must be relative and stay inside the folder, the
count and total size obey the archive limits (``SAVEDHUB_MAX_EXTRACT_MEMBERS``,
``SAVEDHUB_MAX_EXTRACT_BYTES``), every file must arrive with exactly its listed
size, and file URLs are built from the listing's own URL, never taken from it.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any

from savedhub import config
from savedhub.cache import Installed
from savedhub.errors import TransferError, UnsafeArchiveError
from savedhub.transfer import CHUNK_BYTES, Download, fetch_text

_MAX_LISTING_BYTES = 64 * 2**20


def _entries(url: str, text: str) -> dict[str, int]:
    """The ``path -> size`` of a listing, refused if anything in it is unsafe."""
    try:
        files: Any = json.loads(text)["files"]
        listed = {str(f["path"]): int(f["size"]) for f in files}
    except (ValueError, KeyError, TypeError) as exc:
        raise TransferError(
            f"{url} did not return a file listing (JSON with 'files': [{{'path', 'size'}}]): "
            f"{type(exc).__name__}: {exc}. Unset TFHUB_MODEL_LOAD_FORMAT to download the archive.",
            url,
        ) from exc
    if len(listed) > config.max_extract_members():
        raise UnsafeArchiveError(
            f"{url} lists {len(listed)} files, more than SAVEDHUB_MAX_EXTRACT_MEMBERS "
            f"({config.max_extract_members()}); raise it if this model is genuine."
        )
    total = sum(listed.values())
    if total > config.max_extract_bytes() or any(size < 0 for size in listed.values()):
        raise UnsafeArchiveError(
            f"{url} lists {total} bytes of files, more than SAVEDHUB_MAX_EXTRACT_BYTES "
            f"({config.max_extract_bytes()}); raise it if this model is genuine."
        )
    for path in listed:
        parts = PurePosixPath(path).parts
        if not parts or path.startswith("/") or "\\" in path or {"..", "."} & set(parts):
            raise UnsafeArchiveError(f"{url} lists the unsafe file path {path!r}; refused.")
    return listed


def _download_file(url: str, target: Path, size: int, label: str) -> str:
    """Download one listed file of ``size`` bytes to ``target``; return its SHA-256 (hex),
    taken as it arrived, for the cache's manifest."""
    with Download(url, None, label=label) as body:
        info = body.open()
        if info.status != 200:
            raise TransferError(f"{url} answered HTTP {info.status} for a listed file.", url)
        received = 0
        with open(target, "wb") as out:
            while chunk := body.read(CHUNK_BYTES):
                received += len(chunk)
                if received > size:
                    break
                out.write(chunk)
        if received != size:
            raise TransferError(
                f"{url} sent {'more than' if received > size else received} bytes where its "
                f"listing said {size}; nothing was installed. Try again.",
                url,
            )
        return body.finish()


def fetch_listed(listing_url: str, work: Path, label: str) -> Installed:
    """Download every file of the listing at ``listing_url`` into ``work``.

    Raises:
        TransferError: the listing or a file could not be fetched, or did not match.
        UnsafeArchiveError: the listing names unsafe paths or too many, too large files.
    """
    status, text = fetch_text(listing_url, max_bytes=_MAX_LISTING_BYTES)
    if status != 200:
        raise TransferError(
            f"{listing_url} answered HTTP {status} for the file listing.", listing_url, status
        )
    listed = _entries(listing_url, text)
    work.mkdir(parents=True, exist_ok=True)
    digests: dict[str, str] = {}
    for path, size in listed.items():
        target = work.joinpath(*PurePosixPath(path).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        file_url = f"{listing_url.rstrip('/')}/{urllib.parse.quote(path)}"
        digests[path] = _download_file(file_url, target, size, f"{label}: {path}")
    return Installed(
        url=listing_url,
        etag=None,
        archive_sha256=None,
        archive_bytes=sum(listed.values()),
        files=listed,
        sha256=digests,
    )
