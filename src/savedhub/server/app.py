"""The hub's HTTP application: protocol routes, HTML pages, JSON API and uploads.

URLs (``P``/``M``/``V`` are publisher, model and version names)::

    GET  /                                  front page, ?q= searches by name
    GET  /P                                 the publisher's models
    GET  /P/M/V?tf-hub-format=compressed    the archive (Range, If-Range, ETag, Repr-Digest)
    GET  /P/M/V?tf-hub-format=uncompressed  303, body = the folder to read in place
    GET  /P/M/V                             model page (browsers) or metadata JSON
    GET  /P/M[?...]                         the latest version: a page, or a redirect
    GET  /api/models[?q=]                   every model, JSON
    GET  /api/models/P/M                    one model's versions and metadata, JSON
    PUT  /api/models/P/M/V                  publish (Authorization: Bearer TOKEN)

HEAD is answered wherever GET is.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from savedhub import config
from savedhub.server import pages
from savedhub.server import storage as layout
from savedhub.server.auth import TokenRules, Verdict, load_rules
from savedhub.server.catalog import Catalog, ModelSummary, Version
from savedhub.server.names import InvalidNameError, check_name, is_valid_name
from savedhub.server.publish import ReceivedArchive, UploadRejected, build_version, discard
from savedhub.server.responses import RangeFileResponse, digest_headers
from savedhub.server.storage import Storage, VersionExistsError, open_storage

logger = logging.getLogger("savedhub")

DEFAULT_MAX_UPLOAD_BYTES = 4 * 2**30
_FORMAT = "tf-hub-format"
_LISTED = 20


@dataclass
class Hub:
    """What every request handler shares."""

    storage: Storage
    catalog: Catalog
    rules: TokenRules
    max_upload_bytes: int
    in_flight: set[tuple[str, str, str]] = field(default_factory=set)


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def model_url(request: Request, *names: str) -> str:
    """The absolute URL of a model or version on this hub."""
    return "/".join((_base_url(request), *names))


def _error(
    request: Request,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    if _wants_html(request):
        html = pages.render_error(status, message, extra.get("available", []))
        return HTMLResponse(html, status_code=status, headers=headers)
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _shown(names: list[str]) -> str:
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more


def _not_found(
    request: Request, publisher: str, model: str | None = None, version: str | None = None
) -> Response:
    """404 that names what does exist at the deepest level that matched."""
    catalog = _hub(request).catalog
    asked = "/".join(n for n in (publisher, model, version) if n is not None)
    for name in (publisher, model, version):
        if name is not None and not is_valid_name(name):
            return _error(request, 404, f"No model at {asked!r}: {name!r} is not a valid name.")
    publishers = [p for p in catalog.publishers() if catalog.models(p)]
    if not publishers:
        return _error(
            request,
            404,
            f"No model {asked!r}: this hub is empty. {pages.PUBLISH_HINT}",
            available=[],
        )
    if publisher not in publishers:
        return _error(
            request,
            404,
            f"No publisher {publisher!r} on this hub. Publishers here: {_shown(publishers)}.",
            available=publishers,
        )
    models = catalog.models(publisher)
    if model is None or model not in models:
        available = [f"{publisher}/{m}" for m in models]
        return _error(
            request,
            404,
            f"No model {asked!r}. Models by {publisher!r}: {_shown(available)}.",
            available=available,
        )
    versions = catalog.versions(publisher, model)
    available = [f"{publisher}/{model}/{v}" for v in versions]
    return _error(
        request,
        404,
        f"No version {version!r} of {publisher}/{model}. Versions: {_shown(versions)}.",
        available=available,
    )


def _summary_json(request: Request, summary: ModelSummary) -> dict[str, Any]:
    latest = summary.latest
    return {
        "publisher": summary.publisher,
        "model": summary.model,
        "name": summary.name,
        "url": model_url(request, summary.publisher, summary.model),
        "latest": latest.version,
        "versions": summary.versions,
        "created": latest.created,
        "archive_size": latest.archive_size,
    }


def _version_json(request: Request, version: Version) -> dict[str, Any]:
    return {
        "version": version.version,
        "url": model_url(request, version.publisher, version.model, version.version),
        "metadata": version.metadata,
    }


async def front_page(request: Request) -> Response:
    hub = _hub(request)
    query = request.query_params.get("q", "")
    summaries = await run_in_threadpool(hub.catalog.summaries, query)
    if not _wants_html(request):
        return JSONResponse({"models": [_summary_json(request, s) for s in summaries]})
    empty = not summaries and not query and not hub.catalog.publishers()
    return HTMLResponse(pages.render_index(summaries, query, _base_url(request), empty=empty))


async def publisher_page(request: Request) -> Response:
    publisher = request.path_params["publisher"]
    hub = _hub(request)
    if not is_valid_name(publisher):
        return _not_found(request, publisher)
    summaries = await run_in_threadpool(hub.catalog.summaries, "", publisher)
    if not summaries:
        return _not_found(request, publisher)
    if not _wants_html(request):
        return JSONResponse({"models": [_summary_json(request, s) for s in summaries]})
    return HTMLResponse(pages.render_index(summaries, "", _base_url(request), publisher=publisher))


async def api_models(request: Request) -> Response:
    query = request.query_params.get("q", "")
    summaries = await run_in_threadpool(_hub(request).catalog.summaries, query)
    return JSONResponse({"models": [_summary_json(request, s) for s in summaries]})


def _model_json(request: Request, publisher: str, model: str) -> dict[str, Any] | None:
    catalog = _hub(request).catalog
    versions = [catalog.get(publisher, model, v) for v in catalog.versions(publisher, model)]
    found = [v for v in versions if v is not None]
    if not found:
        return None
    return {
        "publisher": publisher,
        "model": model,
        "url": model_url(request, publisher, model),
        "latest": found[-1].version,
        "versions": [_version_json(request, v) for v in found],
    }


async def api_model(request: Request) -> Response:
    publisher, model = request.path_params["publisher"], request.path_params["model"]
    if not (is_valid_name(publisher) and is_valid_name(model)):
        return _not_found(request, publisher, model)
    body = await run_in_threadpool(_model_json, request, publisher, model)
    return JSONResponse(body) if body else _not_found(request, publisher, model)


async def api_version(request: Request) -> Response:
    if request.method == "PUT":
        return await upload(request)
    p, m, v = (request.path_params[k] for k in ("publisher", "model", "version"))
    record = await run_in_threadpool(_hub(request).catalog.get, p, m, v)
    if record is None:
        return _not_found(request, p, m, v)
    return JSONResponse(_version_json(request, record))


def _archive_response(request: Request, version: Version) -> Response:
    storage = _hub(request).storage
    names = (version.publisher, version.model, version.version)
    headers = {
        **digest_headers(version.sha256),
        "content-type": "application/gzip",
        "content-disposition": f'attachment; filename="{"_".join(names)}.tar.gz"',
        # Versions are immutable: any cache may keep the archive for good.
        "cache-control": "public, max-age=31536000, immutable",
    }
    return RangeFileResponse(  # type: ignore[return-value]
        lambda: storage.open(*names, layout.ARCHIVE), version.archive_size, headers
    )


async def _serve_version(request: Request, version: Version) -> Response:
    fmt = request.query_params.get(_FORMAT)
    if fmt == "compressed":
        return _archive_response(request, version)
    if fmt == "uncompressed":
        names = (version.publisher, version.model, version.version)
        folder = await run_in_threadpool(_hub(request).storage.folder_url, *names, layout.FOLDER)
        if folder is None:
            return _error(
                request,
                406,
                f"{version.name} cannot be read in place from this hub's "
                "storage; download the archive instead (unset TFHUB_MODEL_LOAD_FORMAT "
                "or set it to COMPRESSED).",
            )
        return PlainTextResponse(folder, status_code=303, headers={"location": folder})
    if fmt is not None:
        return _error(
            request,
            400,
            f"Unknown {_FORMAT}={fmt!r} for {version.name}; use compressed or uncompressed.",
        )
    if _wants_html(request):
        catalog = _hub(request).catalog
        versions = await run_in_threadpool(catalog.versions, version.publisher, version.model)
        readme = await run_in_threadpool(catalog.readme, version)
        return HTMLResponse(pages.render_model(version, versions, readme, _base_url(request)))
    return JSONResponse(_version_json(request, version))


async def version_route(request: Request) -> Response:
    p, m, v = (request.path_params[k] for k in ("publisher", "model", "version"))
    catalog = _hub(request).catalog
    record = catalog.cached(p, m, v) or await run_in_threadpool(catalog.get, p, m, v)
    if record is None:
        return _not_found(request, p, m, v)
    return await _serve_version(request, record)


async def model_route(request: Request) -> Response:
    p, m = request.path_params["publisher"], request.path_params["model"]
    latest = await run_in_threadpool(_hub(request).catalog.latest, p, m)
    if latest is None:
        return _not_found(request, p, m)
    if request.query_params.get(_FORMAT) == "compressed":
        # Redirect rather than answer here, so clients cache the archive under its version.
        # (The uncompressed answer is a 303 to the latest folder itself: nothing is cached.)
        target = request.url.replace(path=f"{request.url.path.rstrip('/')}/{latest.version}")
        return RedirectResponse(str(target), status_code=302)
    return await _serve_version(request, latest)


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
    hub = _hub(request)
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
        metadata = await run_in_threadpool(build_version, received, staging, p, m, v)
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
    logger.info("published %s (%d bytes)", name, metadata["archive"]["size"])
    return JSONResponse(
        {"url": url, "metadata": metadata}, status_code=201, headers={"location": url}
    )


async def stylesheet(request: Request) -> Response:
    return Response(
        pages.STYLESHEET, media_type="text/css", headers={"cache-control": "public, max-age=3600"}
    )


def create_app(
    root: str | os.PathLike[str] | Storage,
    tokens: Any = None,
    tokens_file: str | os.PathLike[str] | None = None,
    max_upload_bytes: int | None = None,
) -> Starlette:
    """The hub as an ASGI application serving the models under ``root``.

    Args:
        root: a local folder, a fsspec URL (``s3://bucket/hub``), or a ``Storage``.
        tokens: publishing tokens: a list (any publisher) or a mapping of token to the
            publishers it may publish as. With no tokens at all uploads are off.
        tokens_file: a file of tokens (format in :mod:`savedhub.server.auth`).
        max_upload_bytes: the largest archive accepted (default 4 GiB).

    Example:
        >>> app = create_app("/srv/hub", tokens=["s3cr3t"])  # uvicorn.run(app)
    """
    store = root if isinstance(root, Storage) else open_storage(root)
    hub = Hub(
        storage=store,
        catalog=Catalog(store),
        rules=load_rules(tokens, tokens_file, config.serve_tokens()),
        max_upload_bytes=max_upload_bytes or DEFAULT_MAX_UPLOAD_BYTES,
    )
    read = ["GET", "HEAD"]
    routes = [
        Route("/", front_page, methods=read),
        Route("/static/style.css", stylesheet, methods=read),
        Route("/api/models", api_models, methods=read),
        Route("/api/models/{publisher}/{model}", api_model, methods=read),
        Route("/api/models/{publisher}/{model}/{version}", api_version, methods=[*read, "PUT"]),
        Route("/{publisher}", publisher_page, methods=read),
        Route("/{publisher}/{model}", model_route, methods=read),
        Route("/{publisher}/{model}/{version}", version_route, methods=read),
    ]
    app = Starlette(routes=routes)
    app.state.hub = hub
    return app
