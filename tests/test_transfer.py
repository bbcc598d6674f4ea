"""Downloads against a real loopback server that cuts, stalls, fails and lies."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import pytest

import savedhub as hub
from httpserver import HubServer, Resource
from hubserver import free_port
from savedhub.transfer import Download, VersionChanged
from savedhub.transfer._resume import Answer, Decision, Verdict, decide

BODY = os.urandom(300_000)
SHA = hashlib.sha256(BODY).hexdigest()


def _download(url: str, partial: Path | None = None, **kw: object) -> tuple[bytes, str, Download]:
    with Download(url, partial, **kw) as body:  # type: ignore[arg-type]
        info = body.open()
        assert info.status in (200, 206, 416)
        data = body.read()
        digest = body.finish()
    return data, digest, body


def test_plain_download_hashes_and_keeps_a_partial(hub_server: HubServer, tmp_path: Path) -> None:
    hub_server.add_file("/m.tar.gz", BODY, digest="right")
    data, digest, body = _download(hub_server.url("/m.tar.gz"), tmp_path / "m.partial")
    assert data == BODY and digest == SHA
    assert body.info is not None and body.info.sha256 == SHA and body.info.size == len(BODY)
    assert (tmp_path / "m.partial").read_bytes() == BODY


def test_cut_connection_resumes_with_range_and_if_range(hub_server: HubServer) -> None:
    hub_server.add_file("/m.tar.gz", BODY, etag='"e1"', cut_at=100_000, digest="right")
    data, digest, _ = _download(hub_server.url("/m.tar.gz"))
    assert data == BODY and digest == SHA
    first, second = hub_server.of("/m.tar.gz")
    assert first.range is None and first.body_bytes == 100_000
    assert second.range == "bytes=100000-" and second.if_range == '"e1"'
    assert second.status == 206 and second.body_bytes == len(BODY) - 100_000


def test_server_ignoring_range_with_same_version_skips_held_bytes(hub_server: HubServer) -> None:
    hub_server.add_file("/m.tar.gz", BODY, cut_at=120_000, ranges=False)
    data, digest, _ = _download(hub_server.url("/m.tar.gz"))
    assert data == BODY and digest == SHA
    assert [r.status for r in hub_server.of("/m.tar.gz")] == [200, 200]


def test_changed_etag_between_attempts_starts_over(hub_server: HubServer) -> None:
    other = os.urandom(len(BODY))
    hub_server.add("/m.tar.gz", Resource([('"v1"', BODY), ('"v2"', other)], cut_at=50_000))
    with Download(hub_server.url("/m.tar.gz")) as body:
        body.open()
        with pytest.raises(VersionChanged, match="changed on the server"):
            body.read()


def test_500_then_200_is_retried(hub_server: HubServer) -> None:
    hub_server.add_file("/m.tar.gz", BODY, fail_first=2)
    data, _, _ = _download(hub_server.url("/m.tar.gz"))
    assert data == BODY
    assert [r.status for r in hub_server.of("/m.tar.gz")] == [500, 500, 200]


def test_persistent_500_gives_up_after_the_retries(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAVEDHUB_HTTP_RETRIES", "2")
    hub_server.add_file("/m.tar.gz", BODY, fail_first=99)
    with pytest.raises(hub.TransferError, match="HTTP 500") as caught:
        Download(hub_server.url("/m.tar.gz")).open()
    assert caught.value.status == 500
    assert hub_server.count("/m.tar.gz") == 3


def test_404_is_not_retried(hub_server: HubServer) -> None:
    with Download(hub_server.url("/missing.tar.gz")) as body:
        assert body.open().status == 404
    assert hub_server.count("/missing.tar.gz") == 1


def test_stalled_server_times_out_and_resumes(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAVEDHUB_HTTP_TIMEOUT", "1")
    hub_server.add_file("/m.tar.gz", BODY, stall_at=150_000, stall_seconds=60)
    started = time.monotonic()
    data, _, _ = _download(hub_server.url("/m.tar.gz"))
    assert data == BODY
    assert time.monotonic() - started < 20  # not the server's 60 s stall
    last = hub_server.of("/m.tar.gz")[-1]
    assert last.status == 206 and last.range == f"bytes={len(BODY) - last.body_bytes}-"


@pytest.mark.parametrize("old_header", [False, True])
def test_wrong_digest_is_refused_and_the_partial_dropped(
    hub_server: HubServer, tmp_path: Path, old_header: bool
) -> None:
    hub_server.add_file("/m.tar.gz", BODY, digest="wrong", old_digest_header=old_header)
    partial = tmp_path / "m.partial"
    with Download(hub_server.url("/m.tar.gz"), partial) as body:
        body.open()
        body.read()
        with pytest.raises(hub.IntegrityError, match="does not match its SHA-256"):
            body.finish()
    assert not partial.exists()


def test_expected_digest_from_caller_wins(hub_server: HubServer) -> None:
    hub_server.add_file("/m.tar.gz", BODY)
    with Download(hub_server.url("/m.tar.gz"), expected_sha256="0" * 64) as body:
        body.open()
        with pytest.raises(hub.IntegrityError):
            body.finish()


def test_a_later_run_resumes_an_earlier_partial(hub_server: HubServer, tmp_path: Path) -> None:
    hub_server.add_file("/m.tar.gz", BODY, etag='"e1"', stall_at=200_000, stall_seconds=30)
    partial = tmp_path / "m.partial"
    with Download(hub_server.url("/m.tar.gz"), partial) as first:
        first.open()
        got = 0
        while got < 200_000:
            got += len(first.read(65536))
    # The first run is gone (as if killed); its bytes stay on disk.
    assert partial.stat().st_size >= 200_000
    data, digest, body = _download(hub_server.url("/m.tar.gz"), partial)
    assert data == BODY and digest == SHA
    assert body.info is not None and body.info.resumed_from >= 200_000
    last = hub_server.of("/m.tar.gz")[-1]
    assert last.range == f"bytes={body.info.resumed_from}-" and last.if_range == '"e1"'
    assert last.body_bytes == len(BODY) - body.info.resumed_from


def test_partial_of_a_changed_version_is_not_reused(hub_server: HubServer, tmp_path: Path) -> None:
    other = os.urandom(len(BODY))
    hub_server.add(
        "/m.tar.gz",
        Resource([('"v1"', BODY), ('"v2"', other)], stall_at=100_000, stall_seconds=30),
    )
    partial = tmp_path / "m.partial"
    with Download(hub_server.url("/m.tar.gz"), partial) as first:
        first.open()
        first.read(50_000)
    data, digest, body = _download(hub_server.url("/m.tar.gz"), partial)
    assert data == other and digest == hashlib.sha256(other).hexdigest()
    assert body.info is not None and body.info.resumed_from == 0


def test_complete_partial_needs_no_body(hub_server: HubServer, tmp_path: Path) -> None:
    hub_server.add_file("/m.tar.gz", BODY, etag='"e1"')
    partial = tmp_path / "m.partial"
    _download(hub_server.url("/m.tar.gz"), partial)
    data, digest, body = _download(hub_server.url("/m.tar.gz"), partial)
    assert data == BODY and digest == SHA
    assert hub_server.of("/m.tar.gz")[-1].status == 416


def test_chunked_body_without_length(hub_server: HubServer) -> None:
    hub_server.add_file("/m.tar.gz", BODY, chunked=True)
    data, _, body = _download(hub_server.url("/m.tar.gz"))
    assert data == BODY and body.info is not None and body.info.size is None


def test_unreachable_server_names_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAVEDHUB_HTTP_RETRIES", "1")
    monkeypatch.setenv("SAVEDHUB_HTTP_BACKOFF", "0.01")
    port = free_port()  # a port nobody listens on
    url = f"http://127.0.0.1:{port}/m.tar.gz"
    with pytest.raises(hub.TransferError, match=f"127.0.0.1:{port}/m.tar.gz.*2 attempts"):
        Download(url).open()


def test_progress_bar_and_log_line(
    hub_server: HubServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub_server.add_file("/m.tar.gz", BODY)
    monkeypatch.delenv("SAVEDHUB_DISABLE_PROGRESS")
    monkeypatch.setenv("TFHUB_DOWNLOAD_PROGRESS", "1")
    with caplog.at_level(logging.INFO, logger="savedhub"):
        _download(hub_server.url("/m.tar.gz"))
    assert "m.tar.gz" in capsys.readouterr().err  # tqdm's bar
    assert any(
        "Downloaded" in r.getMessage() and "300000 bytes" in r.getMessage() for r in caplog.records
    )


def test_quiet_without_terminal(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub_server.add_file("/m.tar.gz", BODY)
    monkeypatch.delenv("SAVEDHUB_DISABLE_PROGRESS")
    _download(hub_server.url("/m.tar.gz"))  # captured stderr is not a terminal
    assert capsys.readouterr().err == ""


R = Verdict.RESUME
S = Verdict.RESTART
C = Verdict.COMPLETE


@pytest.mark.parametrize(
    "held, validator, size, answer, verdict, skip",
    [
        # A request for the whole body: whatever comes is the body from byte 0.
        (None, None, None, Answer(200, validator='"e1"'), S, 0),
        (None, None, None, Answer(206, range_start=0, range_total=300), S, 0),
        # Range honoured from where we stand.
        (100, '"e1"', 300, Answer(206, range_start=100, range_total=300, validator='"e1"'), R, 0),
        (0, '"e1"', 300, Answer(206, range_start=0, range_total=300), R, 0),
        # Range honoured, but not from where we stand.
        (100, '"e1"', 300, Answer(206, range_start=50, range_total=300), S, 0),
        # Nothing left to send: the held bytes are the whole body.
        (300, '"e1"', 300, Answer(416, range_total=300), C, 0),
        (300, '"e1"', 300, Answer(416), C, 0),  # no Content-Range: the recorded size decides
        (300, '"e1"', None, Answer(416), S, 0),
        (200, '"e1"', 300, Answer(416, range_total=300), S, 0),  # a shorter body? start over
        (0, '"e1"', 0, Answer(416, range_total=0), S, 0),
        # Range ignored: the same version lets us skip what we hold, another one does not.
        (100, '"e1"', 300, Answer(200, validator='"e1"'), R, 100),
        (100, "Tue, 01 Jul 2025", 300, Answer(200, validator="Tue, 01 Jul 2025"), R, 100),
        (100, '"e1"', 300, Answer(200, validator='"e2"'), S, 0),
        (100, '"e1"', 300, Answer(200), S, 0),
        (100, None, 300, Answer(200), S, 0),
        # Errors are never a continuation.
        (100, '"e1"', 300, Answer(404, validator='"e1"'), S, 0),
        (100, '"e1"', 300, Answer(412), S, 0),
    ],
)
def test_resume_decision_table(
    held: int | None,
    validator: str | None,
    size: int | None,
    answer: Answer,
    verdict: Verdict,
    skip: int,
) -> None:
    assert decide(held, validator, size, answer) == Decision(verdict, skip)


def test_a_later_run_adopts_a_partial_when_the_server_ignores_range(
    hub_server: HubServer, tmp_path: Path
) -> None:
    hub_server.add_file("/m.tar.gz", BODY, etag='"e1"', ranges=False)
    partial = tmp_path / "m.partial"
    partial.write_bytes(BODY[:100_000])
    state = {"url": hub_server.url("/m.tar.gz"), "etag": '"e1"', "last_modified": None}
    (tmp_path / "m.partial.json").write_text(json.dumps({**state, "size": None, "sha256": None}))
    data, digest, body = _download(hub_server.url("/m.tar.gz"), partial)
    assert data == BODY and digest == SHA and partial.read_bytes() == BODY
    assert body.info is not None and body.info.resumed_from == 100_000
    assert body.info.size == len(BODY)
    assert [r.status for r in hub_server.of("/m.tar.gz")] == [200]


def test_progress_label_is_the_end_of_the_path() -> None:
    from savedhub.transfer._progress import _short_label

    assert _short_label("https://tfhub.dev/google/nnlm-en-dim128/2") == "google/nnlm-en-dim128/2"
    assert _short_label("http://h/files/m.tar.gz") == "files/m.tar.gz"
    assert _short_label("/local/label") == "local/label"
    assert _short_label("plain") == "plain"
