"""What every request handler of the hub shares, and how it reads a request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import Request

from savedhub.server.auth import TokenRules
from savedhub.server.catalog import Catalog
from savedhub.server.inspector import Inspector
from savedhub.server.limits import CONCURRENT_UNPACKS, UploadLimits
from savedhub.server.readme import ReadmeCache
from savedhub.server.storage import Storage


@dataclass
class Hub:
    """The storage, what it holds, who may publish, and the uploads under way."""

    storage: Storage
    catalog: Catalog
    rules: TokenRules
    limits: UploadLimits
    in_flight: set[tuple[str, str, str]] = field(default_factory=set)
    inspector: Inspector = field(default_factory=Inspector)
    readmes: ReadmeCache = field(default_factory=ReadmeCache)
    public_url: str | None = None
    redirect_downloads: bool = False
    unpacking: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(CONCURRENT_UNPACKS)
    )


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def base_url(request: Request) -> str:
    """The hub's URL as clients should see it: ``--public-url`` if set, else from the
    request's ``Host`` (which :class:`~savedhub.server.middleware.HostCheck` vetted)."""
    return hub_of(request).public_url or str(request.base_url).rstrip("/")


def model_url(request: Request, *names: str) -> str:
    """The absolute URL of a model or version on this hub."""
    return "/".join((base_url(request), *names))
