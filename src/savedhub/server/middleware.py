"""What the hub checks and adds on every exchange, whatever the route.

* Every response says ``X-Content-Type-Options: nosniff``, so a browser never
  guesses HTML out of a JSON error or an archive.
* The ``Host`` header is checked before anything can copy it into a page or a
  redirect: behind a shared cache, a forged ``Host`` would otherwise poison
  links for everyone (see :class:`HostCheck`). ``--public-url`` fixes the base
  URL outright, so the header is not used at all.

Both are plain ASGI middleware, so they also cover the streamed archive
(:class:`~savedhub.server.responses.RangeFileResponse`) and Starlette's own
404/405 answers.
"""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.parse
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Every answer: a JSON error or an archive is never to be sniffed into HTML by a browser.
_ALWAYS = [(b"x-content-type-options", b"nosniff")]
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_WILDCARD_BINDS = ("", "0.0.0.0", "::")


class StandardHeaders:
    """Adds ``X-Content-Type-Options: nosniff`` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _ALWAYS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def public_base_url(url: str) -> str:
    """``url`` checked as the hub's public base (``scheme://host[:port]``), without a
    trailing slash.

    Example:
        >>> public_base_url("https://models.example.org/")
        'https://models.example.org'

    Raises:
        ValueError: not an http(s) URL of a host, or it has a path, query or fragment.
    """
    parts = urllib.parse.urlsplit(url.strip())
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        raise ValueError(f"--public-url {url!r} has an invalid port: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"--public-url {url!r} is not an http(s) URL of a host; "
            "give it as https://models.example.org (or http://HOST:PORT)."
        )
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        raise ValueError(
            f"--public-url {url!r} may only name a scheme, host and port: the hub serves "
            "from the root of its URL, so put it at the root of a (sub)domain."
        )
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}".lower()


def hosts_for_bind(host: str) -> list[str]:
    """The ``Host`` names a hub bound to ``host`` answers to by default: that address;
    for loopback also ``localhost``; for a wildcard bind (``0.0.0.0``, ``::``) also this
    machine's names and their addresses."""
    names = {host.strip("[]").lower()}
    if host in _WILDCARD_BINDS or host.strip("[]") in LOOPBACK_HOSTS:
        names.update(LOOPBACK_HOSTS)
    if host in _WILDCARD_BINDS:
        for name in {socket.gethostname(), socket.getfqdn()}:
            names.add(name.lower())
            with contextlib.suppress(OSError):
                names.update(socket.gethostbyname_ex(name)[2])
    return sorted(n for n in names if n not in _WILDCARD_BINDS)


def _split_host(value: str) -> tuple[str, str | None]:
    """``("name", "port")`` of a Host value (``name``, ``name:8080``, ``[::1]:8080``)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest.removeprefix(":") or None
    name, colon, port = value.partition(":")
    return name, (port if colon else None)


class HostCheck:
    """Answers 400 to a request whose ``Host`` is not one of ``allowed``.

    An entry is a host name or address (any port), ``name:port`` (that port only),
    or ``*`` (any host: for a hub behind a proxy that checks it). A request without a
    ``Host`` header (HTTP/1.0) is let through: the hub then uses its own address.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = sorted({a.strip().lower() for a in allowed if a.strip()})
        self.any_host = "*" in self.allowed
        self._names = {a for a in self.allowed if not _split_host(a)[1]}
        self._names_with_port = {_split_host(a) for a in self.allowed if _split_host(a)[1]}

    def allows(self, value: str) -> bool:
        name, port = _split_host(value)
        return self.any_host or name in self._names or (name, port) in self._names_with_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hosts = [v for k, v in scope["headers"] if k == b"host"]
            value = hosts[0].decode("latin-1") if hosts else None
            if len(hosts) > 1 or (value is not None and not self.allows(value)):
                await self._refuse(value, send)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, value: str | None, send: Send) -> None:
        shown = value if value is None or len(value) <= 100 else value[:100] + "..."
        body = json.dumps(
            {
                "error": f"This hub does not answer to the Host {shown!r}. Its operator can "
                "add the name with --allowed-hosts, or set --public-url.",
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})
