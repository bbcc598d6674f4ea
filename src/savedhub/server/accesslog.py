"""One line per request in the Combined Log Format, the one nginx and Apache write.

``127.0.0.1 - - [27/Nov/2026:21:04:05 +0000] "GET /acme/mul/1 HTTP/1.1" 200 1234 "-" "curl/8.5"``
followed by the seconds the answer took, so the usual log tools (goaccess, awstats,
a SIEM's nginx parser) read the hub's log as they read a web server's. The bytes are
those of the body sent, counted as it streams; a client that goes away mid-download
is logged with what it got.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_logger = logging.getLogger("savedhub.access")


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' if value else '"-"'


class AccessLog:
    """ASGI middleware writing each HTTP exchange to the ``savedhub.access`` logger."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0
        sent = 0

        async def counting(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            access_logger.info(
                "%s - - [%s] %s %d %s %s %s %.3f",
                (scope.get("client") or ("-",))[0],
                time.strftime("%d/%b/%Y:%H:%M:%S %z"),
                _request_line(scope),
                status or 499,  # nginx's code for a client that left before the answer
                sent if sent else "-",
                _quoted(_header(scope, b"referer")),
                _quoted(_header(scope, b"user-agent")),
                time.monotonic() - started,
            )


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _request_line(scope: Scope) -> str:
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    line = f"{scope['method']} {target.decode('latin-1')} HTTP/{scope.get('http_version', '1.1')}"
    return _quoted(line)
