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

import contextlib
import os
from collections.abc import AsyncIterator
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
from savedhub.server.auth import load_rules
from savedhub.server.catalog import Catalog, ModelSummary, Version
from savedhub.server.inspector import IDLE_SECONDS, Inspector
from savedhub.server.limits import DEFAULT_MAX_UPLOAD_BYTES, UploadLimits
from savedhub.server.names import InvalidNameError, check_names, is_valid_name
from savedhub.server.responses import RangeFileResponse, digest_headers
from savedhub.server.state import Hub, base_url, hub_of, model_url, wants_html
from savedhub.server.storage import Storage, open_storage
from savedhub.server.uploads import upload

_FORMAT = "tf-hub-format"


# READMEs are rendered without raw HTML already; the policy is a second line of defence
# (no scripts at all, styles only from this hub, images from anywhere a README links).
_PAGE_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src * data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def _page(html: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers={**_PAGE_HEADERS, **(headers or {})})


def _error(
    request: Request,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    if wants_html(request):
        html = pages.render_error(status, message, extra.get("available", []))
        return _page(html, status, headers)
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


async def _not_found(
    request: Request, publisher: str, model: str | None = None, version: str | None = None
) -> Response:
    """404 that names what does exist at the deepest level that matched (400 for a
    name the hub never accepts)."""
    try:
        check_names(publisher, model, version)
    except InvalidNameError as exc:
        return _error(request, 400, str(exc))
    catalog = hub_of(request).catalog
    message, available = await run_in_threadpool(catalog.explain_missing, publisher, model, version)
    return _error(request, 404, message, available=available)


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
    hub = hub_of(request)
    query = request.query_params.get("q", "")
    summaries = await run_in_threadpool(hub.catalog.summaries, query)
    if not wants_html(request):
        return JSONResponse({"models": [_summary_json(request, s) for s in summaries]})
    empty = not summaries and not query
    return _page(pages.render_index(summaries, query, base_url(request), empty=empty))


async def publisher_page(request: Request) -> Response:
    publisher = request.path_params["publisher"]
    hub = hub_of(request)
    if not is_valid_name(publisher):
        return await _not_found(request, publisher)
    summaries = await run_in_threadpool(hub.catalog.summaries, "", publisher)
    if not summaries:
        return await _not_found(request, publisher)
    if not wants_html(request):
        return JSONResponse({"models": [_summary_json(request, s) for s in summaries]})
    return _page(pages.render_index(summaries, "", base_url(request), publisher=publisher))


async def api_models(request: Request) -> Response:
    query = request.query_params.get("q", "")
    summaries = await run_in_threadpool(hub_of(request).catalog.summaries, query)
    return JSONResponse({"models": [_summary_json(request, s) for s in summaries]})


def _model_json(request: Request, publisher: str, model: str) -> dict[str, Any] | None:
    catalog = hub_of(request).catalog
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
        return await _not_found(request, publisher, model)
    body = await run_in_threadpool(_model_json, request, publisher, model)
    return JSONResponse(body) if body else await _not_found(request, publisher, model)


async def api_version(request: Request) -> Response:
    if request.method == "PUT":
        return await upload(request)
    p, m, v = (request.path_params[k] for k in ("publisher", "model", "version"))
    record = await run_in_threadpool(hub_of(request).catalog.get, p, m, v)
    if record is None:
        return await _not_found(request, p, m, v)
    return JSONResponse(_version_json(request, record))


def _archive_response(request: Request, version: Version) -> Response:
    storage = hub_of(request).storage
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
        folder = await run_in_threadpool(hub_of(request).storage.folder_url, *names, layout.FOLDER)
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
    if wants_html(request):
        catalog = hub_of(request).catalog
        versions = await run_in_threadpool(catalog.versions, version.publisher, version.model)
        readme = await run_in_threadpool(catalog.readme, version)
        return _page(pages.render_model(version, versions, readme, base_url(request)))
    return JSONResponse(_version_json(request, version))


async def version_route(request: Request) -> Response:
    p, m, v = (request.path_params[k] for k in ("publisher", "model", "version"))
    catalog = hub_of(request).catalog
    record = catalog.cached(p, m, v) or await run_in_threadpool(catalog.get, p, m, v)
    if record is None:
        return await _not_found(request, p, m, v)
    return await _serve_version(request, record)


async def model_route(request: Request) -> Response:
    p, m = request.path_params["publisher"], request.path_params["model"]
    latest = await run_in_threadpool(hub_of(request).catalog.latest, p, m)
    if latest is None:
        return await _not_found(request, p, m)
    if request.query_params.get(_FORMAT) == "compressed":
        # Redirect rather than answer here, so clients cache the archive under its version.
        # (The uncompressed answer is a 303 to the latest folder itself: nothing is cached.)
        target = request.url.replace(path=f"{request.url.path.rstrip('/')}/{latest.version}")
        return RedirectResponse(str(target), status_code=302)
    return await _serve_version(request, latest)


async def stylesheet(request: Request) -> Response:
    return Response(
        pages.STYLESHEET, media_type="text/css", headers={"cache-control": "public, max-age=3600"}
    )


def create_app(
    root: str | os.PathLike[str] | Storage,
    tokens: Any = None,
    tokens_file: str | os.PathLike[str] | None = None,
    max_upload_bytes: int | None = None,
    max_unpacked_bytes: int | None = None,
    upload_idle_timeout: float | None = None,
    inspector_idle: float | None = None,
) -> Starlette:
    """The hub as an ASGI application serving the models under ``root``.

    Args:
        root: a local folder, a fsspec URL (``s3://bucket/hub``), or a ``Storage``.
        tokens: publishing tokens: a list (any publisher) or a mapping of token to the
            publishers it may publish as. With no tokens at all uploads are off.
        tokens_file: a file of tokens (format in :mod:`savedhub.server.auth`).
        max_upload_bytes: the largest archive accepted (default 4 GiB).
        max_unpacked_bytes: the most an archive may expand to (default 4 x max_upload_bytes).
        upload_idle_timeout: seconds an upload may send nothing before it is dropped (60).
        inspector_idle: seconds the upload inspector (TensorFlow, ~570 MB) stays up after
            its last upload (60).

    Example:
        >>> app = create_app("/srv/hub", tokens=["s3cr3t"])  # uvicorn.run(app)
    """
    store = root if isinstance(root, Storage) else open_storage(root)
    hub = Hub(
        storage=store,
        catalog=Catalog(store),
        rules=load_rules(tokens, tokens_file, config.serve_tokens()),
        limits=UploadLimits(
            max_upload_bytes or DEFAULT_MAX_UPLOAD_BYTES,
            max_unpacked_bytes,
            upload_idle_timeout or UploadLimits.idle_seconds,
        ),
        inspector=Inspector(idle=inspector_idle or IDLE_SECONDS),
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

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if hub.rules.uploads_enabled:  # make this server's scratch space, reaping crashed uploads
            await run_in_threadpool(hub.storage.scratch_dir)
        yield
        await run_in_threadpool(hub.inspector.close)

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.hub = hub
    return app
