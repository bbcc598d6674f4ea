"""What the hub adds to every exchange, whatever the route: response headers that
keep browsers from guessing content types.

Written as plain ASGI middleware so that it also covers the streamed archive
(:class:`~savedhub.server.responses.RangeFileResponse`) and Starlette's own
404/405 answers.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Every answer: a JSON error or an archive is never to be sniffed into HTML by a browser.
_ALWAYS = [(b"x-content-type-options", b"nosniff")]


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
