"""What a server's answer says about a body: its size, version, digest and Content-Range."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass

import httpx

logger = logging.getLogger("savedhub")

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass(frozen=True)
class RemoteFile:
    """What the server said about a body.

    Attributes:
        url: the final URL, after redirects.
        status: the HTTP status of the first answer (200, 206 on resume, 416 when
            the partial file already held everything).
        size: length of the whole body, when the server said it.
        etag: the ETag, if any.
        last_modified: the Last-Modified header, if any.
        content_type: the Content-Type header, if any.
        sha256: the SHA-256 (hex) the server announced for the whole body, if any.
        resumed_from: bytes taken from a partial file of an earlier attempt.
    """

    url: str
    status: int
    size: int | None
    etag: str | None
    last_modified: str | None
    content_type: str | None
    sha256: str | None
    resumed_from: int = 0


def remote_file(response: httpx.Response, size: int | None, resumed: int) -> RemoteFile:
    """The :class:`RemoteFile` an answer describes, its size given by the caller."""
    return RemoteFile(
        url=str(response.url),
        status=response.status_code,
        size=size,
        etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"),
        content_type=response.headers.get("content-type"),
        sha256=announced_digest(response),
        resumed_from=resumed,
    )


def parse_digest_headers(headers: httpx.Headers) -> str | None:
    """The SHA-256 (hex) in ``Repr-Digest`` (RFC 9530) or ``Digest`` (RFC 3230), if any."""
    for item in headers.get_list("repr-digest", split_commas=True):
        name, _, value = item.strip().partition("=")
        if name.strip().lower() == "sha-256":
            return _b64_to_hex(value.strip().strip(":"))
    for item in headers.get_list("digest", split_commas=True):
        name, _, value = item.strip().partition("=")
        if name.strip().lower() == "sha-256":
            return _b64_to_hex(value.strip())
    return None


def announced_digest(response: httpx.Response) -> str | None:
    """The SHA-256 the answer announces, or else the redirect that led to it: a hub that
    sends clients to a presigned store URL (``savedhub serve --redirect-downloads``) puts
    the digest on its 307, since the store's own answer cannot carry it."""
    for answer in (response, *reversed(response.history)):
        digest = parse_digest_headers(answer.headers)
        if digest is not None:
            return digest
    return None


def _b64_to_hex(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        logger.warning("Ignoring a malformed SHA-256 digest header %r", value)
        return None


def content_range_start(response: httpx.Response) -> int | None:
    """The first byte of a ``Content-Range`` answer, if it names one."""
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    return int(match.group(1)) if match and match.group(1) else None


def content_range_total(response: httpx.Response) -> int | None:
    """The whole body's length a ``Content-Range`` answer names, if any."""
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    return int(match.group(3)) if match and match.group(3) != "*" else None


def total_size(response: httpx.Response, resumed: int) -> int | None:
    """Length of the whole body: from Content-Range on a 206, else Content-Length
    plus the ``resumed`` bytes already held."""
    if response.status_code == 206:
        total = content_range_total(response)
        if total is not None:
            return total
    length = response.headers.get("content-length")
    return int(length) + resumed if length and length.isdigit() else None
