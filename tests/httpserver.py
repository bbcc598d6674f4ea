"""A small threaded HTTP server on 127.0.0.1 for tests, with misbehaviours on demand.

Each URL path (optionally with its query) maps to a :class:`Resource` that says
what to send and how to misbehave: ignore ``Range``, cut the connection after
N bytes, stall, answer 500 a few times first, change its ETag between
attempts, announce a wrong digest, go slowly. Every request is logged, so a
test can assert what reached the server (how many downloads, which ranges).

The ``hub_server`` fixture (a plugin of ``conftest.py``) gives each test a
running hub, with quick retries so that tests of misbehaviour stay fast.

Example:
    with HubServer() as hub:
        hub.add_model("/google/my_mul/1", archive_bytes)
        savedhub.resolve(hub.url("/google/my_mul/1"))
        assert hub.count("/google/my_mul/1", query="tf-hub-format=compressed") == 1
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


@dataclass
class Resource:
    """What one URL serves. ``versions`` are (etag, body); the n-th GET of the
    resource sees ``versions[min(n, len - 1)]``, so a list of two changes the
    ETag (and body) between attempts."""

    versions: list[tuple[str | None, bytes]]
    content_type: str = "application/gzip"
    status: int = 200
    ranges: bool = True  # False: ignore Range, always send the whole body
    fail_first: int = 0  # answer 500 to this many requests first
    cut_at: int | None = None  # close the connection after this many body bytes...
    cut_times: int = 1  # ...on this many responses
    stall_at: int | None = None  # stop sending after this many body bytes...
    stall_seconds: float = 0.0  # ...for this long, then close
    stall_times: int = 1
    digest: str | None = None  # "right", "wrong" or None: the Repr-Digest header
    old_digest_header: bool = False  # send RFC 3230 Digest instead of Repr-Digest
    chunked: bool = False  # no Content-Length; chunked transfer encoding
    delay_per_chunk: float = 0.0  # slow the body down: seconds per 64 KiB
    headers: dict[str, str] = field(default_factory=dict)
    # counters, updated by the server
    gets: int = 0
    cuts: int = 0
    stalls: int = 0


@dataclass
class Request:
    """One GET as the server saw it; logged when it arrives, completed as it is answered
    (status before the headers go out, body bytes before each piece is written)."""

    method: str
    path: str
    query: str
    range: str | None
    if_range: str | None
    status: int = 0
    body_bytes: int = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    record: Request

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return

    def do_GET(self) -> None:  # noqa: N802
        parts = urllib.parse.urlsplit(self.path)
        hub = self.server.hub
        self.record = Request(
            "GET", parts.path, parts.query, self.headers.get("Range"), self.headers.get("If-Range")
        )
        hub.record(self.record)
        resource = hub.lookup(parts.path, parts.query)
        try:
            if resource is None:
                self._simple(404, b"not found", "text/plain")
            else:
                self._serve(resource)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send_response(self, code: int, message: str | None = None) -> None:
        self.record.status = code
        super().send_response(code, message)

    def _simple(
        self, status: int, body: bytes, content_type: str, extra: dict | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.record.body_bytes = len(body)
        self.wfile.write(body)
        self.close_connection = True

    def _serve(self, res: Resource) -> None:
        with self.server.hub.lock:
            attempt = res.gets
            res.gets += 1
        if attempt < res.fail_first:
            self._simple(500, b"temporary failure", "text/plain")
            return
        etag, body = res.versions[min(attempt, len(res.versions) - 1)]
        if res.status != 200:
            self._simple(res.status, body, res.content_type, res.headers)
            return
        start = 0
        status = 200
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and res.ranges and (if_range is None or if_range == etag):
            start = int(wanted.split("=", 1)[1].split("-", 1)[0])
            if start >= len(body):
                self._simple(416, b"", "text/plain", {"Content-Range": f"bytes */{len(body)}"})
                return
            status = 206
        payload = body[start:]
        self.send_response(status)
        self.send_header("Content-Type", res.content_type)
        self.send_header("Connection", "close")
        self.send_header("Accept-Ranges", "bytes" if res.ranges else "none")
        if etag:
            self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if res.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(payload)))
        if res.digest:
            digest_source = body if res.digest == "right" else body + b"tampered"
            b64 = base64.b64encode(hashlib.sha256(digest_source).digest()).decode()
            if res.old_digest_header:
                self.send_header("Digest", f"SHA-256={b64}")
            else:
                self.send_header("Repr-Digest", f"sha-256=:{b64}:")
        for name, value in res.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True

        limit = len(payload)
        cut = stall = False
        with self.server.hub.lock:
            if res.cut_at is not None and res.cuts < res.cut_times and res.cut_at - start > 0:
                limit, cut = res.cut_at - start, True
                res.cuts += 1
            elif res.stall_at is not None and res.stalls < res.stall_times:
                limit, stall = max(0, res.stall_at - start), True
                res.stalls += 1
        sent = 0
        step = 1 << 16
        while sent < limit:
            piece = payload[sent : min(limit, sent + step)]
            sent += len(piece)
            self.record.body_bytes = sent
            self._write(piece, res.chunked)
            if res.delay_per_chunk:
                time.sleep(res.delay_per_chunk)
        if stall:
            self.wfile.flush()
            self.server.hub.stopping.wait(res.stall_seconds)
        if cut or stall:
            self.wfile.flush()
            return
        if res.chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _write(self, piece: bytes, chunked: bool) -> None:
        if chunked:
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        else:
            self.wfile.write(piece)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    hub: HubServer


class HubServer:
    """A hub on 127.0.0.1:<free port>, started by ``start()`` or ``with``."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        """``tls``: (certificate file, key file) to serve https instead of http."""
        self.routes: dict[str, Resource] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        self.scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- routes --------------------------------------------------------

    def add(self, path: str, resource: Resource, query: str = "") -> Resource:
        self.routes[path + ("?" + query if query else "")] = resource
        return resource

    def add_file(self, path: str, body: bytes, etag: str | None = '"v1"', **kw: object) -> Resource:
        return self.add(path, Resource([(etag, body)], **kw))  # type: ignore[arg-type]

    def add_model(self, path: str, archive: bytes, **kw: object) -> Resource:
        """A model per the hosting protocol: the archive at ``?tf-hub-format=compressed``,
        a documentation page at the bare URL."""
        etag = '"' + hashlib.sha1(archive).hexdigest()[:16] + '"'
        self.add(
            path,
            Resource(
                [(None, b"<!doctype html><title>model</title>docs")], content_type="text/html"
            ),
        )
        return self.add(
            path,
            Resource([(etag, archive)], **kw),  # type: ignore[arg-type]
            query="tf-hub-format=compressed",
        )

    def lookup(self, path: str, query: str) -> Resource | None:
        if query and path + "?" + query in self.routes:
            return self.routes[path + "?" + query]
        return self.routes.get(path)

    def record(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)

    def count(self, path: str, query: str | None = None) -> int:
        """How many GETs of ``path`` (with exactly ``query``, if given) arrived."""
        with self.lock:
            return sum(
                1 for r in self.requests if r.path == path and (query is None or r.query == query)
            )

    def of(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path]


@pytest.fixture()
def hub_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A running loopback hub; retries back off for 10 ms and reads time out after 5 s."""
    monkeypatch.setenv("SAVEDHUB_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("SAVEDHUB_HTTP_TIMEOUT", "5")
    with HubServer() as hub:
        yield hub
