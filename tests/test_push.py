"""``push`` over transfer's client: progress bar, token, refusals and errors as the hub says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hubserver import free_port
from puthub import PutHub, put_hub, sha256, version_record
from savedhub.errors import PublishError, TransferError
from savedhub.publish.push import push

ARCHIVE = b"\x1f\x8b" + bytes(range(256)) * 64


@pytest.fixture
def hub() -> Iterator[str]:
    with put_hub() as url:
        yield url


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
        sha256(ARCHIVE),
        len(ARCHIVE),
    )
    (headers,) = PutHub.seen
    assert headers["Authorization"] == "Bearer s3cr3t" and headers["User-Agent"] == "savedhub"
    assert "acme/mul/1" in capsys.readouterr().err  # transfer's progress bar


def test_a_refusal_carries_the_hubs_findings(hub: str, archive: Path) -> None:
    finding = {"severity": "error", "code": "missing-call", "message": "no __call__"}
    PutHub.answer = (422, {"error": "not a reusable model", "findings": [finding]})
    with pytest.raises(PublishError, match="not a reusable model") as refused:
        push(archive, f"{hub}/acme/mul/1", token="t")
    assert refused.value.status == 422 and refused.value.findings == [finding]
    assert "error: no __call__" in str(refused.value)


def test_a_damaged_upload_is_an_integrity_error(hub: str, archive: Path) -> None:
    PutHub.answer = (201, {"metadata": version_record("0" * 64, len(ARCHIVE))})
    with pytest.raises(TransferError, match="damaged on the way"):
        push(archive, f"{hub}/acme/mul/1", token="t")


def test_an_unreachable_hub_is_a_transfer_error(archive: Path) -> None:
    port = free_port()  # a port nobody listens on
    with pytest.raises(TransferError, match=f"127.0.0.1:{port}") as failed:
        push(archive, f"http://127.0.0.1:{port}/acme/mul/1", token="t")
    assert "ConnectError" in str(failed.value) and failed.value.__cause__ is not None
