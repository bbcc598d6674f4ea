"""A hub's upload route on loopback, for push tests: keeps what arrives, answers like a hub.

``PutHub`` answers each ``PUT`` with 201 and a version record of the digest it
computed (or with ``PutHub.answer`` when a test sets one), and keeps each
request's path, headers and body for the test to inspect.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from savedhub._wire import ArchiveRecord, VersionRecord


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_record(sha: str, size: int) -> dict[str, object]:
    """The version record a hub answers with after it stored an archive of that digest."""
    archive = ArchiveRecord("model.tar.gz", sha, size)
    return VersionRecord("acme", "mul", "1", archive).to_json()


class PutHub(BaseHTTPRequestHandler):
    """Answers PUTs as the hub would: 201 with the digest it computed, or ``answer``."""

    answer: tuple[int, dict[str, object]] | None = None
    seen: list[dict[str, str]] = []
    received: list[tuple[str, bytes]] = []

    def do_PUT(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(dict(self.headers))
        self.received.append((self.path, body))
        status, reply = self.answer or (
            201,
            {"url": "the-model-url", "metadata": version_record(sha256(body), len(body))},
        )
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def put_hub() -> Iterator[str]:
    """A fresh :class:`PutHub` on 127.0.0.1 for the block; yields its base URL."""
    PutHub.answer, PutHub.seen, PutHub.received = None, [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), PutHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
