"""``push`` over transfer's client: progress bar, token, refusals and errors as the hub says."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from savedhub._wire import ArchiveRecord, VersionRecord
from savedhub.errors import PublishError, TransferError
from savedhub.publish.push import push

ARCHIVE = b"\x1f\x8b" + bytes(range(256)) * 64


class _Hub(BaseHTTPRequestHandler):
    """Answers PUTs as the hub would: 201 with the digest it computed, or a refusal."""

    answer: tuple[int, dict[str, object]] | None = None
    seen: list[dict[str, str]] = []

    def do_PUT(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(dict(self.headers))
        status, reply = self.answer or (
            201,
            {"url": "the-model-url", "metadata": _record(_sha(body), len(body))},
        )
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def _record(sha256: str, size: int) -> dict[str, object]:
    """The version record a hub answers with after it stored an archive of that digest."""
    archive = ArchiveRecord("model.tar.gz", sha256, size)
    return VersionRecord("acme", "mul", "1", archive).to_json()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def hub() -> Iterator[str]:
    _Hub.answer, _Hub.seen = None, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(ARCHIVE)
    return path


def test_push_sends_the_token_and_shows_progress(
    hub: str,
    archive: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("SAVEDHUB_DISABLE_PROGRESS")
    monkeypatch.setenv("TFHUB_DOWNLOAD_PROGRESS", "1")
    result = push(archive, f"{hub}/acme/mul/1", token="s3cr3t")
    assert (result.url, result.sha256, result.size) == (
        "the-model-url",
        _sha(ARCHIVE),
        len(ARCHIVE),
    )
    (headers,) = _Hub.seen
    assert headers["Authorization"] == "Bearer s3cr3t" and headers["User-Agent"] == "savedhub"
    assert "acme/mul/1" in capsys.readouterr().err  # transfer's progress bar


def test_a_refusal_carries_the_hubs_findings(hub: str, archive: Path) -> None:
    finding = {"severity": "error", "code": "missing-call", "message": "no __call__"}
    _Hub.answer = (422, {"error": "not a reusable model", "findings": [finding]})
    with pytest.raises(PublishError, match="not a reusable model") as refused:
        push(archive, f"{hub}/acme/mul/1", token="t")
    assert refused.value.status == 422 and refused.value.findings == [finding]
    assert "error: no __call__" in str(refused.value)


def test_a_damaged_upload_is_an_integrity_error(hub: str, archive: Path) -> None:
    _Hub.answer = (201, {"metadata": _record("0" * 64, len(ARCHIVE))})
    with pytest.raises(TransferError, match="damaged on the way"):
        push(archive, f"{hub}/acme/mul/1", token="t")


def test_an_unreachable_hub_is_a_transfer_error(archive: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransferError, match=f"127.0.0.1:{port}") as failed:
        push(archive, f"http://127.0.0.1:{port}/acme/mul/1", token="t")
    assert "ConnectError" in str(failed.value) and failed.value.__cause__ is not None
