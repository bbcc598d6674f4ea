"""The hub's HTTP application: protocol routes, HTML pages, JSON API and uploads.

URLs (``P``/``M``/``V`` are publisher, model and version names)::

    GET  /                                  front page, ?q= searches by name
    GET  /healthz                           200 while the storage answers, else 503
    GET  /P                                 the publisher's models
    GET  /P/M/V?tf-hub-format=compressed    the archive (Range, If-Range, ETag, Repr-Digest),
                                            or with --redirect-downloads a 307 to the store
    GET  /P/M/V?tf-hub-format=uncompressed  303, body = the folder to read in place
                                            (gs://... storage) or else /P/M/V/files
    GET  /P/M/V/files                       the SavedModel's files: path, size, url (JSON)
    GET  /P/M/V/files/PATH                  one of them (Range, If-None-Match)
    GET  /P/M/V                             model page (browsers) or metadata JSON
    GET  /P/M[?...]                         the latest version: a page, or a redirect
    GET  /api/models[?q=]                   every model, JSON
    GET  /api/models/P/M                    one model's versions and metadata, JSON
    PUT  /api/models/P/M/V                  publish (Authorization: Bearer TOKEN)

HEAD is answered wherever GET is.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import urllib.parse
from collections.abc import AsyncIterator, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
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
from savedhub._wire import VersionRecord, is_valid_version, version_error
from savedhub.server import pages
from savedhub.server import storage as layout
from savedhub.server.accesslog import AccessLog
from savedhub.server.auth import load_rules
from savedhub.server.catalog import Catalog, ModelSummary
from savedhub.server.inspector import IDLE_SECONDS, Inspector
from savedhub.server.limits import DEFAULT_MAX_UPLOAD_BYTES, UploadLimits
from savedhub.server.middleware import (
    LOOPBACK_HOSTS,
    HostCheck,
    StandardHeaders,
    public_base_url,
)
from savedhub.server.names import InvalidNameError, check_names, is_valid_name
from savedhub.server.responses import RangeFileResponse, digest_headers
from savedhub.server.state import Hub, base_url, hub_of, model_url, wants_html
from savedhub.server.storage import Storage, open_storage
from savedhub.server.uploads import upload

_FORMAT = "tf-hub-format"
_FILES = "files"


# READMEs are rendered without raw HTML already; the policy is a second line of defence
# (no scripts at all, styles only from this hub, images from anywhere a README links).
_PAGE_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src * data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
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


def _version_json(request: Request, version: VersionRecord) -> dict[str, Any]:
    return {
        "version": version.version,
        "url": model_url(request, version.publisher, version.model, version.version),
        "metadata": version.to_json(),
    }


async def front_page(request: Request) -> Response:
    hub = hub_of(request)
    query = request.query_params.get("q", "")
    summaries = await run_in_threadpool(hub.catalog.summaries, query)
    if not wants_html(request):
        return JSONResponse({"models": [_summary_json(request, s) for s in summaries]})
    empty = not summaries and not query
    page = pages.page_number(request.query_params.get("page"))
    # Off the event loop, like every page: its cost grows with the number of models.
    render = functools.partial(pages.render_index, empty=empty, page=page)
    return _page(await run_in_threadpool(render, summaries, query, base_url(request)))


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
    page = pages.page_number(request.query_params.get("page"))
    render = functools.partial(pages.render_index, publisher=publisher, page=page)
    return _page(await run_in_threadpool(render, summaries, "", base_url(request)))


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


def _bad_version(request: Request, version: str) -> Response | None:
    """400 for a version that is not a positive integer (the hosting protocol's versions)."""
    if is_valid_version(version):
        return None
    return _error(request, 400, f"The {version_error(version)}")


async def api_version(request: Request) -> Response:
    if request.method == "PUT":
        return await upload(request)
    record = await _published(request)
    if isinstance(record, Response):
        return record
    return JSONResponse(_version_json(request, record))


async def _archive_response(request: Request, version: VersionRecord) -> Response:
    hub = hub_of(request)
    storage = hub.storage
    names = (version.publisher, version.model, version.version)
    filename = f"{'_'.join(names)}.tar.gz"
    if hub.redirect_downloads:
        target = await run_in_threadpool(
            functools.partial(storage.download_url, *names, layout.ARCHIVE, filename=filename)
        )
        if target is not None:
            # The digest rides on the redirect: the store's own answer cannot carry it, and
            # clients check what they assembled against it. The URL expires: never cache it.
            headers = {**digest_headers(version.sha256), "cache-control": "no-store"}
            return RedirectResponse(target, status_code=307, headers=headers)
    headers = {
        **digest_headers(version.sha256),
        "content-type": "application/gzip",
        "content-disposition": f'attachment; filename="{filename}"',
        # Versions are immutable: any cache may keep the archive for good.
        "cache-control": "public, max-age=31536000, immutable",
    }
    return RangeFileResponse(  # type: ignore[return-value]
        lambda: storage.open(*names, layout.ARCHIVE), version.archive_size, headers
    )


async def _serve_version(request: Request, version: VersionRecord) -> Response:
    fmt = request.query_params.get(_FORMAT)
    if fmt == "compressed":
        return await _archive_response(request, version)
    if fmt == "uncompressed":
        # Object storage TensorFlow reads itself (gs://, s3://) is named as the folder to
        # read in place, as tfhub.dev did; otherwise the hub's own listing of the files.
        names = (version.publisher, version.model, version.version)
        storage = hub_of(request).storage
        folder = await run_in_threadpool(storage.folder_url, *names, layout.FOLDER)
        target = folder or _listing_url(request, version)
        return PlainTextResponse(target, status_code=303, headers={"location": target})
    if fmt is not None:
        return _error(
            request,
            400,
            f"Unknown {_FORMAT}={fmt!r} for {version.name}; use compressed or uncompressed.",
        )
    if wants_html(request):
        # In a worker thread: a first view renders the README, which takes time.
        html = await run_in_threadpool(_model_page, hub_of(request), version, base_url(request))
        return _page(html)
    return JSONResponse(_version_json(request, version))


def _model_page(hub: Hub, version: VersionRecord, base: str) -> str:
    versions = hub.catalog.versions(version.publisher, version.model)
    readme = hub.readmes.get(version.name, lambda: hub.catalog.readme(version))
    return pages.render_model(version, versions, readme, base)


async def version_route(request: Request) -> Response:
    record = await _published(request)
    if isinstance(record, Response):
        return record
    return await _serve_version(request, record)


async def _published(request: Request) -> VersionRecord | Response:
    """The version the path names, or the 400/404 answer saying why there is none."""
    p, m, v = (request.path_params[k] for k in ("publisher", "model", "version"))
    if (refusal := _bad_version(request, v)) is not None:
        return refusal
    catalog = hub_of(request).catalog
    record = catalog.cached(p, m, v) or await run_in_threadpool(catalog.get, p, m, v)
    return record if record is not None else await _not_found(request, p, m, v)


def _listing_url(request: Request, version: VersionRecord) -> str:
    return f"{model_url(request, version.publisher, version.model, version.version)}/{_FILES}"


async def files_listing(request: Request) -> Response:
    """The files of a version's SavedModel folder, each with the URL that serves it:
    where ``?tf-hub-format=uncompressed`` sends clients when storage is local."""
    record = await _published(request)
    if isinstance(record, Response):
        return record
    files = await run_in_threadpool(hub_of(request).catalog.files, record)
    base = _listing_url(request, record)
    listed = [
        {"path": path, "size": size, "url": f"{base}/{urllib.parse.quote(path)}"}
        for path, size in files.items()
    ]
    return JSONResponse({"name": record.name, "files": listed})


async def folder_file(request: Request) -> Response:
    """One file of a version's SavedModel folder (Range, If-None-Match as for archives)."""
    record = await _published(request)
    if isinstance(record, Response):
        return record
    hub = hub_of(request)
    path = request.path_params["path"]
    size = (await run_in_threadpool(hub.catalog.files, record)).get(path)
    if size is None:
        listing = _listing_url(request, record)
        return _error(request, 404, f"{record.name} has no file {path!r}; see {listing}")
    names = (record.publisher, record.model, record.version, layout.FOLDER)
    # Strong: versions are immutable, so the archive's digest and the path fix the bytes.
    tag = hashlib.sha256(f"{record.sha256}/{path}".encode()).hexdigest()[:40]
    headers = {
        "etag": f'"{tag}"',
        "content-type": "application/octet-stream",
        "cache-control": "public, max-age=31536000, immutable",
    }
    return RangeFileResponse(  # type: ignore[return-value]
        lambda: hub.storage.open_in(path, *names), size, headers
    )


async def model_route(request: Request) -> Response:
    p, m = request.path_params["publisher"], request.path_params["model"]
    latest = await run_in_threadpool(hub_of(request).catalog.latest, p, m)
    if latest is None:
        return await _not_found(request, p, m)
    if request.query_params.get(_FORMAT) == "compressed":
        # Redirect rather than answer here, so clients cache the archive under its version.
        # (The uncompressed answer is the latest version's own 303, to its folder or listing.)
        target = f"{model_url(request, p, m, latest.version)}?{request.url.query}"
        return RedirectResponse(target, status_code=302)
    return await _serve_version(request, latest)


async def healthz(request: Request) -> Response:
    """200 while the storage answers, 503 saying why when it does not (for load balancers)."""
    problem = await run_in_threadpool(hub_of(request).storage.check)
    if problem is not None:
        return JSONResponse({"status": "unavailable", "storage": problem}, status_code=503)
    return JSONResponse({"status": "ok", "storage": "reachable"})


async def stylesheet(request: Request) -> Response:
    return Response(
        pages.STYLESHEET, media_type="text/css", headers={"cache-control": "public, max-age=3600"}
    )


def create_app(
    root: str | os.PathLike[str] | Storage,
    tokens: Any = None,
    tokens_file: str | os.PathLike[str] | None = None,
    max_upload_bytes: int | None = None,
    public_url: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
    max_unpacked_bytes: int | None = None,
    upload_idle_timeout: float | None = None,
    upload_min_rate: int | None = None,
    inspector_idle: float | None = None,
    redirect_downloads: bool = False,
    access_log: bool = False,
    storage_options: dict[str, Any] | None = None,
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
        upload_min_rate: bytes a second an upload must average over each such span, or
            be dropped (4 KiB; 0 turns the check off).
        inspector_idle: seconds the upload inspector (TensorFlow, ~570 MB) stays up after
            its last upload (60).
        public_url: the base URL pages, redirects and answers use (``https://HOST``);
            without it they are built from the request's ``Host`` header.
        allowed_hosts: the ``Host`` values answered (names, ``name:port``, or ``*``);
            others get 400. Default: the loopback names when ``public_url`` is not
            set (``savedhub serve`` passes the address it binds), else any.
        redirect_downloads: answer archive downloads with a 307 to a presigned URL of
            the store (S3), so the bytes come straight from it; ignored by storage that
            has no such URLs (a local folder).
        access_log: log every request in the Combined Log Format (``savedhub.access``).
        storage_options: for an ``s3://`` root, :class:`~savedhub.server.s3.S3Storage`'s
            ``catalog_refresh``, ``debris_age`` and ``presign_seconds``.

    Raises:
        ValueError: ``public_url`` is not ``http(s)://host[:port]``.

    Example:
        >>> app = create_app("/srv/hub", tokens=["s3cr3t"])  # uvicorn.run(app)
    """
    store = root if isinstance(root, Storage) else open_storage(root, **(storage_options or {}))
    hub = Hub(
        storage=store,
        catalog=Catalog(store),
        rules=load_rules(tokens, tokens_file, config.serve_tokens()),
        limits=UploadLimits(
            max_upload_bytes or DEFAULT_MAX_UPLOAD_BYTES,
            max_unpacked_bytes,
            upload_idle_timeout or UploadLimits.idle_seconds,
            UploadLimits.min_rate if upload_min_rate is None else upload_min_rate,
        ),
        public_url=public_base_url(public_url) if public_url else None,
        inspector=Inspector(idle=inspector_idle or IDLE_SECONDS),
        redirect_downloads=redirect_downloads,
    )
    if allowed_hosts is None:
        allowed_hosts = ["*"] if public_url else LOOPBACK_HOSTS
    read = ["GET", "HEAD"]
    routes = [
        Route("/", front_page, methods=read),
        Route("/healthz", healthz, methods=read),
        Route("/static/style.css", stylesheet, methods=read),
        Route("/api/models", api_models, methods=read),
        Route("/api/models/{publisher}/{model}", api_model, methods=read),
        Route("/api/models/{publisher}/{model}/{version}", api_version, methods=[*read, "PUT"]),
        Route("/{publisher}", publisher_page, methods=read),
        Route("/{publisher}/{model}", model_route, methods=read),
        Route("/{publisher}/{model}/{version}", version_route, methods=read),
        Route(f"/{{publisher}}/{{model}}/{{version}}/{_FILES}", files_listing, methods=read),
        Route(
            f"/{{publisher}}/{{model}}/{{version}}/{_FILES}/{{path:path}}",
            folder_file,
            methods=read,
        ),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if hub.rules.uploads_enabled:  # make this server's scratch space, reaping crashed uploads
            await run_in_threadpool(hub.storage.scratch_dir)
        if (tend := getattr(hub.storage, "start_janitor", None)) is not None:
            tend()  # object storage: collect what killed servers left there
        yield
        await run_in_threadpool(hub.inspector.close)

    middleware = [Middleware(StandardHeaders), Middleware(HostCheck, allowed=allowed_hosts)]
    if access_log:
        middleware.insert(0, Middleware(AccessLog))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.hub = hub
    return app
