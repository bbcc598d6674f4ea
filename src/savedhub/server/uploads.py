"""``PUT /api/models/P/M/V``: the HTTP side of publishing.

Order matters for safety: the token is checked before anything else (so a
caller without a valid token learns nothing about which models exist), then
the names, then whether the version exists, then the size; only then is the
body received, into a scratch file on the storage's filesystem, hashed while
it arrives and cut off at the size cap. :mod:`savedhub.server.publish` checks
and describes it; the storage makes it visible atomically.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from savedhub.server.auth import Verdict
from savedhub.server.names import InvalidNameError, check_name
from savedhub.server.publish import ReceivedArchive, UploadRejected, build_version, discard
from savedhub.server.state import hub_of, model_url
from savedhub.server.storage import VersionExistsError

logger = logging.getLogger("savedhub")


class _TooLarge(Exception):
    pass


async def _receive_archive(request: Request, scratch: Path | None, limit: int) -> ReceivedArchive:
    digest = hashlib.sha256()
    size = 0
    handle, name = tempfile.mkstemp(prefix="upload-", suffix=".tar.gz", dir=scratch)
    try:
        with os.fdopen(handle, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _TooLarge()
                digest.update(chunk)
                out.write(chunk)
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
        for kind, name in (("publisher", p), ("model", m), ("version", v)):
            check_name(kind, name)
    except InvalidNameError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    key = (p, m, v)
    name = f"{p}/{m}/{v}"
    exists_message = f"{name} already exists; versions are immutable, publish a new version."
    existing = await run_in_threadpool(hub.catalog.get, p, m, v)
    if key in hub.in_flight or existing is not None:
        return JSONResponse({"error": exists_message}, status_code=409)
    too_large = JSONResponse(
        {
            "error": f"The upload for {name} is larger than this hub accepts "
            f"({hub.max_upload_bytes} bytes); ask the operator to raise --max-upload."
        },
        status_code=413,
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > hub.max_upload_bytes:
        return too_large
    hub.in_flight.add(key)
    staging: Path | None = None
    received: ReceivedArchive | None = None
    try:
        scratch = await run_in_threadpool(hub.storage.scratch_dir)
        try:
            received = await _receive_archive(request, scratch, hub.max_upload_bytes)
        except _TooLarge:
            return too_large
        staging = Path(tempfile.mkdtemp(prefix="version-", dir=scratch))
        record = await run_in_threadpool(build_version, received, staging, p, m, v, hub.inspector)
        await run_in_threadpool(hub.storage.publish, staging, p, m, v)
        staging = None
    except UploadRejected as exc:
        return JSONResponse({"error": str(exc), "findings": exc.findings}, status_code=422)
    except VersionExistsError:
        return JSONResponse({"error": exists_message}, status_code=409)
    finally:
        hub.in_flight.discard(key)
        for leftover in (staging, received.path if received else None):
            if leftover is not None:
                await run_in_threadpool(discard, leftover)
    url = model_url(request, p, m, v)
    logger.info("published %s (%d bytes)", name, record.archive_size)
    return JSONResponse(
        {"url": url, "metadata": record.to_json()}, status_code=201, headers={"location": url}
    )
