"""http(s) handles -> a cached model folder, per the hosting protocol.

* ``https://HOST/<publisher>/<model>/<version>``: GET with
  ``?tf-hub-format=compressed`` (redirects followed); the body is a ``.tar.gz``
  whose root is the SavedModel.
* A URL ending in ``.tar.gz``/``.tgz`` is fetched as it is; a ``<url>.sha256``
  beside it, when the server has one, is checked.
* ``TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED``: GET with
  ``?tf-hub-format=uncompressed`` answers 303 with the folder to read in place
  (e.g. ``gs://...``); nothing is cached. When the 303 names an http(s) URL
  instead (a savedhub hub's file listing), the files are downloaded into the
  cache (:mod:`savedhub.client.listed`). If the hub cannot be reached, a
  complete cached copy is used instead, with a warning.
* A complete cache entry is used without any request (versions are
  immutable). ``SAVEDHUB_OFFLINE=1`` never touches the network.

The archive is extracted while it downloads (see :mod:`savedhub.transfer` and
:mod:`savedhub.archive`) into a work folder that :mod:`savedhub.cache`
renames into place.

Example:
    >>> resolve_remote(savedhub.client.handles.parse("https://hub.example/google/my_mul/1"))
    '/home/me/.cache/savedhub/3c5a...'
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import urllib.parse
import warnings
from pathlib import Path

from savedhub import archive, config
from savedhub.cache import Cache, Installed, keys_for
from savedhub.client.handles import Handle
from savedhub.client.listed import fetch_listed
from savedhub.errors import (
    CacheWarning,
    IntegrityError,
    ModelNotFoundError,
    NotAnArchiveError,
    NotCachedError,
    TransferError,
    UnsafeArchiveError,
)
from savedhub.transfer import Download, RemoteFile, VersionChanged, fetch_text

logger = logging.getLogger("savedhub")

_HEAD_BYTES = 512
_SHA256_HEX = re.compile(r"\b([0-9a-fA-F]{64})\b")


def with_format_query(url: str, value: str) -> str:
    """``url`` with ``tf-hub-format=value`` added to its query, as the protocol asks."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != "tf-hub-format"] + [("tf-hub-format", value)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def archive_url(handle: Handle) -> str:
    """The URL whose body is the model's ``.tar.gz``."""
    if handle.is_archive_url:
        return handle.location
    return with_format_query(handle.location, "compressed")


def _mirror_note(handle: Handle) -> str:
    if not handle.mirrored:
        return "No mirror rewrote it."
    return (
        f"A mirror (SAVEDHUB_MIRRORS or savedhub.set_mirrors) rewrote it from "
        f"{handle.cache_key}; check that the mirror has this model, or remove the mirror."
    )


def _status_error(handle: Handle, url: str, status: int) -> Exception:
    if status in (404, 410):
        return ModelNotFoundError(
            f"No model at {handle.original!r}: {url} answered HTTP {status} (not found). "
            f"{_mirror_note(handle)} Check the publisher, model name and version in the handle.",
            handle.original,
        )
    if status in (401, 403):
        return TransferError(
            f"{url} refused access (HTTP {status}) to {handle.original!r}. The model may be "
            f"private or need credentials. {_mirror_note(handle)}",
            url,
            status,
        )
    return TransferError(
        f"{url} answered HTTP {status} for {handle.original!r}; a model archive was expected. "
        f"{_mirror_note(handle)}",
        url,
        status,
    )


def _check_body(handle: Handle, url: str, info: RemoteFile, body: Download) -> None:
    head = body.peek(_HEAD_BYTES)
    content_type = (info.content_type or "").split(";")[0].strip().lower()
    if content_type in ("text/html", "application/xhtml+xml") or archive.looks_like_html(head):
        raise NotAnArchiveError(
            f"{url} returned an HTML page where a .tar.gz archive of {handle.original!r} was "
            "expected. The URL is probably a model's documentation page, a login page or a "
            "hub that does not speak the hosting protocol (savedhub asks for "
            f"?tf-hub-format=compressed). {_mirror_note(handle)} Use the model's URL on a hub, "
            "or the direct URL of its .tar.gz.",
            url,
            info.status,
        )
    if not archive.looks_like_archive(head):
        shown = head[:32]
        raise NotAnArchiveError(
            f"{url} did not return a .tar.gz archive for {handle.original!r}: the body starts "
            f"with {shown!r} (Content-Type {content_type or 'not given'}). "
            f"{_mirror_note(handle)} Check the URL.",
            url,
            info.status,
        )


def _sidecar_sha256(url: str) -> str | None:
    """The digest in ``<url>.sha256`` (``sha256sum`` format or a bare hex digest), if any."""
    status, text = fetch_text(url + ".sha256")
    if status != 200:
        return None
    match = _SHA256_HEX.search(text)
    if not match:
        logger.warning("Ignoring %s.sha256: it holds no SHA-256 digest", url)
        return None
    return match.group(1).lower()


def _fetch_once(
    handle: Handle, url: str, expected: str | None, work: Path, partial: Path
) -> Installed:
    """Download and extract one archive into ``work``; raises VersionChanged (with the
    partial download and ``work`` cleared) when the server's copy changed meanwhile."""
    body = Download(url, partial, expected_sha256=expected, label=handle.original)
    try:
        with body:
            info = body.open()
            if info.status >= 400 and not info.resumed_from:
                body.discard_partial()
                raise _status_error(handle, url, info.status)
            _check_body(handle, url, info, body)
            result = archive.extract(body, work, source=url)
            digest = body.finish()
    except VersionChanged:
        body.discard_partial()
        shutil.rmtree(work, ignore_errors=True)
        raise
    except (NotAnArchiveError, UnsafeArchiveError, IntegrityError):
        body.discard_partial()  # resuming these bytes could only fail the same way
        raise
    return Installed(
        url=info.url,
        etag=info.etag,
        archive_sha256=digest,
        archive_bytes=body.bytes_received,
        files=result.files,
        links=result.links,
        sha256=result.sha256,
    )


def _fetch(handle: Handle, work: Path, partial: Path) -> Installed:
    """The archive of ``handle`` extracted into ``work``, starting over once if the
    server's copy changes during the download."""
    url = archive_url(handle)
    expected = _sidecar_sha256(url) if handle.is_archive_url else None
    try:
        return _fetch_once(handle, url, expected, work, partial)
    except VersionChanged:
        logger.warning("%s changed on the server during the download; starting over", url)
    try:
        return _fetch_once(handle, url, expected, work, partial)
    except VersionChanged as exc:
        raise TransferError(
            f"{url} changed on the server during two downloads in a row, so no "
            f"consistent copy of {handle.original!r} could be fetched. Try again later.",
            url,
        ) from exc


def _resolve_uncompressed(handle: Handle, cache: Cache) -> str:
    """The folder a hub names for reading in place (303), else a cached copy."""
    if config.offline():
        found = cache.find(handle)
        if found is not None:
            return str(found)
        raise NotCachedError(
            f"{handle.original!r} cannot be resolved offline: TFHUB_MODEL_LOAD_FORMAT="
            "UNCOMPRESSED asks the hub where the model lives, and SAVEDHUB_OFFLINE=1 forbids "
            "that. Unset SAVEDHUB_OFFLINE, or download it once into the cache with "
            "TFHUB_MODEL_LOAD_FORMAT unset (`savedhub download HANDLE`).",
            handle.original,
        )
    from savedhub.transfer import request_without_redirect

    url = with_format_query(handle.location, "uncompressed")
    try:
        response = request_without_redirect(url)
    except TransferError as exc:
        found = cache.find(handle)
        if found is None:
            raise
        message = f"{url} could not be reached ({exc}); using the cached copy {found}."
        logger.warning("%s", message)
        warnings.warn(message, CacheWarning, stacklevel=2)
        return str(found)
    if response.status_code in (404, 410) or 400 <= response.status_code < 500:
        raise _status_error(handle, url, response.status_code)
    if response.status_code != 303:
        raise TransferError(
            f"{url} answered HTTP {response.status_code}; with TFHUB_MODEL_LOAD_FORMAT="
            "UNCOMPRESSED a 303 naming the model's folder is expected. This hub does not "
            "serve uncompressed models: unset TFHUB_MODEL_LOAD_FORMAT to download the archive.",
            url,
            response.status_code,
        )
    folder = response.text.strip() or response.headers.get("location", "").strip()
    if not folder:
        raise TransferError(
            f"{url} answered 303 without naming a folder (empty body, no Location).",
            url,
            303,
        )
    if folder.startswith(("http://", "https://")):
        # A hub's own listing (TensorFlow cannot read http folders): download into the cache.
        found = cache.find(handle)
        if found is not None:
            return str(found)
        fetched = cache.install(handle, lambda work, _: fetch_listed(folder, work, handle.original))
        return str(fetched)
    logger.info("%s is read in place from %s", handle.original, folder)
    return folder


def resolve_remote(handle: Handle, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The local folder (or in-place location) of an http(s) handle.

    A complete cache entry answers without any request; otherwise the model is
    downloaded, extracted while it streams, verified and installed atomically
    into the cache at ``cache_dir`` (default: :func:`savedhub.config.cache_dir`).

    Raises:
        NotCachedError: offline and not cached.
        ModelNotFoundError: the server answered 404/410.
        NotAnArchiveError: an HTML page or another non-archive body arrived.
        IntegrityError: the archive did not match its announced digest.
        UnsafeArchiveError: the archive tried to escape or explode.
        TransferError: the network or server failed (after retries).
        CacheFullError: the disk filled up.
    """
    cache = Cache(cache_dir)
    if config.model_load_format() == "UNCOMPRESSED" and not handle.is_archive_url:
        return _resolve_uncompressed(handle, cache)
    found = cache.find(handle)
    if found is not None:
        return str(found)
    if config.offline():
        problems = [p for key in keys_for(handle) if (p := cache.inspect(key)[1])]
        state = (
            f"is damaged in the cache at {cache.root} ({problems[0]})"
            if problems
            else f"is not in the cache at {cache.root}"
        )
        raise NotCachedError(
            f"{handle.original!r} {state}, and SAVEDHUB_OFFLINE=1 "
            "forbids downloading it. Fetch it once with network access "
            f"(`savedhub download {handle.original}` or savedhub.resolve(...) without "
            "SAVEDHUB_OFFLINE), or point SAVEDHUB_CACHE_DIR at a cache that has it.",
            handle.original,
        )
    return str(cache.install(handle, lambda work, partial: _fetch(handle, work, partial)))
