"""HTTP downloads: one streaming GET that resumes, retries and hashes as it goes.

A :class:`Download` is a read-only file object over the body of one URL. It is
what :mod:`savedhub.archive` extracts from, so bytes are unpacked while they
still arrive: a background thread pulls the body from the network, appends it
to a *partial file* (so a later run can resume), hashes it and hands it to the
reader through a bounded pipe (:mod:`savedhub._io.pipe`).

* Connection errors, timeouts and 5xx answers are retried with exponential
  backoff (``SAVEDHUB_HTTP_RETRIES``, ``SAVEDHUB_HTTP_BACKOFF``); 4xx never.
* A cut connection continues with ``Range: bytes=N-`` guarded by ``If-Range``
  (ETag, else Last-Modified). A partial file left by an earlier, killed run is
  adopted the same way. If the server's version changed, :class:`VersionChanged`
  tells the caller to start over; if it merely ignores ``Range`` while the
  version is the same, the bytes already held are skipped.
* ``Repr-Digest``/``Digest`` SHA-256 headers (or a digest the caller passes,
  e.g. from a ``.sha256`` file) are checked when the body ends.
* Progress: a ``tqdm`` bar of compressed bytes against ``Content-Length`` when
  :func:`savedhub.config.show_progress` allows, and a log line either way.
* Uploads (``savedhub push``): :func:`upload`, one PUT of a streamed body with
  the same client settings and error translation, never retried.

httpx exceptions are translated to :class:`~savedhub.errors.TransferError`
here and nowhere else.

Modules, each importing only those above it:

* ``_headers``: what an answer says about a body (:class:`RemoteFile`, digests, ranges).
* ``_requests``: the client, one request retried with backoff, small GETs, uploads.
* ``_partial``: the partial file and the ``.json`` naming its version.
* ``_progress``: the progress bar.
* ``_resume``: whether an answer resumes, restarts or completes the bytes held.
* ``_download``: :class:`Download`, the resuming, hashing reader over a body.

Example:
    >>> with Download("https://hub.example/m.tar.gz", partial=Path("m.part")) as body:
    ...     info = body.open()
    ...     data = body.read()
    ...     digest = body.finish()
"""

from savedhub.transfer._download import CHUNK_BYTES, Download, VersionChanged
from savedhub.transfer._headers import RemoteFile, parse_digest_headers
from savedhub.transfer._progress import progress_bar
from savedhub.transfer._requests import fetch_text, request_without_redirect, upload

__all__ = [
    "CHUNK_BYTES",
    "Download",
    "RemoteFile",
    "VersionChanged",
    "fetch_text",
    "parse_digest_headers",
    "progress_bar",
    "request_without_redirect",
    "upload",
]
