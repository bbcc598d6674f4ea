"""``PUT /api/models/P/M/V``: the HTTP side of publishing.

Order matters for safety: the token is checked before anything else (so a
caller without a valid token learns nothing about which models exist), then
the names, then whether the version exists, then the size; only then is the
body received, into a scratch file on the storage's filesystem, hashed while
it arrives, cut off at the size cap, refused at its first bytes unless it is
gzip (415), and dropped if it stalls (408, freeing the version for the next
try). :mod:`savedhub.server.publish` unpacks it within the hub's limits
(:mod:`savedhub.server.limits`, 413 past them), checks and describes it; the
storage makes it visible atomically.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from savedhub.archive import compression_of
from savedhub.server.auth import Verdict
from savedhub.server.limits import UploadLimits
from savedhub.server.names import InvalidNameError, check_names
from savedhub.server.publish import ReceivedArchive, UploadRejected, build_version, discard
from savedhub.server.state import hub_of, model_url
from savedhub.server.storage import StorageError, VersionExistsError

logger = logging.getLogger("savedhub")


class _TooLarge(Exception):
    pass


class _Stalled(Exception):
    pass


class _TooSlow(Exception):
    def __init__(self, received: int, seconds: float) -> None:
        super().__init__(received, seconds)
        self.received = received
        self.seconds = seconds


class _NotGzip(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


# Enough of the body to tell its format: compression magic, or "ustar" at 257 for a plain tar.
_HEAD_BYTES = 512


def _other_format(head: bytes) -> str | None:
    """What ``head`` is when it is an archive the hub does not take (only gzip is served)."""
    kind = compression_of(head)
    if kind is not None and kind != "gzip":
        return f"a {kind}-compressed archive"
    if kind is None and head[257:262] == b"ustar":
        return "an uncompressed tar"
    return None


async def _receive_archive(
    request: Request, scratch: Path | None, limits: UploadLimits, sink: Any = None
) -> ReceivedArchive:
    """The body, into a scratch file: hashed, cut off at the size cap, dropped when it stalls
    for ``limits.idle_seconds`` or sends less than ``limits.min_rate`` bytes a second over
    such a span, and refused at its first bytes unless it is gzip. With a
    ``sink`` (:meth:`Storage.begin_upload`) each piece also goes to the store as it arrives,
    a part at a time."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    clock = asyncio.get_running_loop().time
    span_start, span_bytes = clock(), 0
    handle, name = tempfile.mkstemp(prefix="upload-", suffix=".tar.gz", dir=scratch)
    try:
        with os.fdopen(handle, "wb") as out:
            chunks = request.stream().__aiter__()
            while True:
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), limits.idle_seconds)
                except StopAsyncIteration:
                    break
                except asyncio.TimeoutError:
                    raise _Stalled() from None
                size += len(chunk)
                if size > limits.max_upload_bytes:
                    raise _TooLarge()
                span_bytes += len(chunk)
                now = clock()
                if now - span_start >= limits.idle_seconds:
                    if span_bytes < limits.min_rate * (now - span_start):
                        raise _TooSlow(span_bytes, now - span_start)
                    span_start, span_bytes = now, 0
                if len(head) < _HEAD_BYTES:
                    head += chunk[: _HEAD_BYTES - len(head)]
                    if len(head) == _HEAD_BYTES and (kind := _other_format(head)):
                        raise _NotGzip(kind)
                digest.update(chunk)
                out.write(chunk)
                if sink is not None:
                    sink.add(chunk)
                    if sink.part_ready:
                        await run_in_threadpool(sink.send_part)
        if len(head) < _HEAD_BYTES and (kind := _other_format(head)):
            raise _NotGzip(kind)
    except BaseException:
        discard(Path(name))
        raise
    return ReceivedArchive(Path(name), digest.hexdigest(), size)


_AUTH_ANSWERS = {
    Verdict.UPLOADS_OFF: (
        403,
        "This hub takes no uploads: start it with a tokens file "
        "(savedhub serve ROOT --tokens-file FILE) or SAVEDHUB_SERVE_TOKENS.",
        None,
    ),
    Verdict.MISSING: (
        401,
        "Publishing needs a token: send 'Authorization: Bearer TOKEN' "
        "(savedhub push --token TOKEN, or SAVEDHUB_TOKEN).",
        'Bearer realm="savedhub"',
    ),
    Verdict.INVALID: (
        401,
        "The token is not valid on this hub; ask its operator for one.",
        'Bearer realm="savedhub", error="invalid_token"',
    ),
    Verdict.FORBIDDEN: (403, "This token may not publish as that publisher.", None),
}


async def upload(request: Request) -> Response:
    """Publish the archive in the body as ``publisher/model/version`` (201), or say why not."""
    hub = hub_of(request)
    p, m, v = (request.path_params[k] for k in ("publisher", "model", "version"))
    # Authentication comes first, so a caller without a valid token learns nothing
    # about which models or versions exist.
    verdict = hub.rules.check(request.headers.get("authorization"), p)
    if verdict is not Verdict.ALLOWED:
        status, message, challenge = _AUTH_ANSWERS[verdict]
        headers = {"www-authenticate": challenge} if challenge else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    try:
        check_names(p, m, v, publishing=True)
    except InvalidNameError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    key = (p, m, v)
    name = f"{p}/{m}/{v}"
    exists_message = f"{name} already exists; versions are immutable, publish a new version."
    existing = await run_in_threadpool(hub.catalog.get, p, m, v)
    if key in hub.in_flight or existing is not None:
        return JSONResponse({"error": exists_message}, status_code=409)
    limits = hub.limits
    too_large = JSONResponse(
        {
            "error": f"The upload for {name} is larger than this hub accepts "
            f"({limits.max_upload_bytes} bytes); ask the operator to raise --max-upload."
        },
        status_code=413,
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_upload_bytes:
        return too_large
    hub.in_flight.add(key)
    staging: Path | None = None
    received: ReceivedArchive | None = None
    sink: Any = None
    try:
        scratch = await run_in_threadpool(hub.storage.scratch_dir)
        sink = await run_in_threadpool(hub.storage.begin_upload, p, m, v)
        try:
            received = await _receive_archive(request, scratch, limits, sink)
        except _TooLarge:
            return too_large
        except ClientDisconnect:  # the publisher went away: nobody reads an answer
            logger.info("the upload for %s was abandoned by its client", name)
            return Response(status_code=400)
        except _Stalled:
            return JSONResponse(
                {
                    "error": f"The upload for {name} sent nothing for {limits.idle_seconds:g} "
                    "seconds and was dropped; send it again (the hub's operator sets this "
                    "limit with --upload-idle-timeout)."
                },
                status_code=408,
                headers={"connection": "close"},
            )
        except _TooSlow as exc:
            return JSONResponse(
                {
                    "error": f"The upload for {name} sent {exc.received} bytes in "
                    f"{exc.seconds:.0f} seconds, below this hub's minimum of "
                    f"{limits.min_rate} bytes a second, and was dropped; send it again over a "
                    "faster link (the hub's operator sets this limit with --upload-min-rate)."
                },
                status_code=408,
                headers={"connection": "close"},
            )
        except _NotGzip as exc:
            return JSONResponse(
                {
                    "error": f"The upload for {name} is {exc.kind}; this hub takes gzip-"
                    "compressed tar archives (.tar.gz) only, the format it serves. Pack it "
                    "with `savedhub pack DIR OUT.tar.gz`, or push the folder itself."
                },
                status_code=415,
            )
        staging = Path(tempfile.mkdtemp(prefix="version-", dir=scratch))
        async with hub.unpacking:
            record = await run_in_threadpool(
                build_version,
                received,
                staging,
                p,
                m,
                v,
                hub.inspector,
                limits.extract_limits(),
            )
        await run_in_threadpool(hub.storage.publish, staging, p, m, v, sink)
        staging = sink = None
    except UploadRejected as exc:
        return JSONResponse({"error": str(exc), "findings": exc.findings}, status_code=exc.status)
    except VersionExistsError:
        return JSONResponse({"error": exists_message}, status_code=409)
    except StorageError as exc:  # the details (paths, the store's words) go to the log only
        logger.error("the upload for %s failed in storage: %s", name, exc)
        return JSONResponse(
            {"error": f"The hub could not store {name}: its storage failed. Try again later."},
            status_code=503,
            headers={"retry-after": "30"},
        )
    finally:
        hub.in_flight.discard(key)
        if sink is not None:  # refused or cut short: the store keeps nothing of it
            await run_in_threadpool(sink.discard)
        for leftover in (staging, received.path if received else None):
            if leftover is not None:
                await run_in_threadpool(discard, leftover)
    url = model_url(request, p, m, v)
    logger.info("published %s (%d bytes)", name, record.archive_size)
    return JSONResponse(
        {"url": url, "metadata": record.to_json()}, status_code=201, headers={"location": url}
    )
