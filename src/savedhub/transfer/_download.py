"""The :class:`Download`: a file object over one URL's body that resumes, retries and hashes."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from savedhub import config
from savedhub._io.pipe import BytePipe
from savedhub.errors import IntegrityError, TransferError
from savedhub.transfer import _partial as partial_file
from savedhub.transfer._headers import (
    RemoteFile,
    announced_digest,
    remote_file,
    total_size,
)
from savedhub.transfer._partial import PartialState
from savedhub.transfer._progress import progress_bar
from savedhub.transfer._requests import backoff, describe, new_client, send_with_retries
from savedhub.transfer._resume import Answer, Verdict, decide

logger = logging.getLogger("savedhub")

CHUNK_BYTES = 1 << 20
_QUEUE_CHUNKS = 32


class VersionChanged(TransferError):
    """The server's copy changed while it was being downloaded: start over."""


@dataclass(frozen=True)
class _Cut:
    """Why a body stopped before its end."""

    reason: str
    cause: BaseException | None = None


class Download:
    """A streaming, resumable, hashing reader over one URL's body.

    Args:
        url: what to GET.
        partial: a file that keeps the bytes received so far, so a later run can
            resume; its metadata lives beside it in ``<partial>.json``. ``None``
            keeps nothing on disk.
        expected_sha256: a digest known in advance (e.g. from a ``.sha256``
            file); it wins over digest headers.
        label: a short name for the progress bar and log lines.
    """

    def __init__(
        self,
        url: str,
        partial: Path | None = None,
        *,
        expected_sha256: str | None = None,
        label: str | None = None,
    ) -> None:
        self.url = url
        self.partial = partial
        self.expected_sha256 = expected_sha256.lower() if expected_sha256 else None
        self.label = label or url
        self.info: RemoteFile | None = None
        self._client: httpx.Client | None = None
        self._response: httpx.Response | None = None
        self._pipe = BytePipe(
            _QUEUE_CHUNKS, lambda: TransferError(f"The download of {url} was closed.", url)
        )
        self._cancel = self._pipe.cancelled
        self._thread: threading.Thread | None = None
        self._hash = hashlib.sha256()
        self._received = 0
        self._partial_fd: int | None = None
        self._fd_lock = threading.Lock()
        self._live: httpx.Response | None = None  # the response the pump reads now
        self._skip = 0  # leading bytes of the first response already held (Range ignored)
        self._started = 0.0

    # -- opening ---------------------------------------------------------

    def open(self) -> RemoteFile:
        """Send the first request (resuming a partial file if one fits) and start streaming.

        Returns:
            What the server said about the body. An error answer (``status >= 400``
            with ``resumed_from == 0``) is returned without starting the stream;
            check it before reading. A 416 with ``resumed_from > 0`` means the
            partial file already holds the whole body.

        Raises:
            TransferError: the server could not be reached or kept answering 5xx.
        """
        self._client = new_client()
        self._started = time.monotonic()
        state = partial_file.read_state(self.partial, self.url)
        have = self.partial.stat().st_size if state and self.partial else 0
        validator = state.etag or state.last_modified if state else None
        held = have if state and have and validator else None
        headers = {"Range": f"bytes={held}-", "If-Range": validator} if held and validator else {}
        first = send_with_retries(self._client, "GET", self.url, headers, stream=True)
        answer = Answer.of(first)
        decision = decide(held, validator, state.size if state else None, answer)
        response: httpx.Response | None = first
        resumed = 0
        if decision.verdict is Verdict.RESUME:
            resumed, self._skip = have, decision.skip
        elif decision.verdict is Verdict.COMPLETE:
            resumed, response = have, None
            first.close()
        else:
            state = None
            if answer.is_range_answer:
                # A range we did not ask for, or a partial that no longer fits: start over.
                first.close()
                response = send_with_retries(self._client, "GET", self.url, {}, stream=True)
        status = response.status_code if response is not None else answer.status
        if response is not None and status >= 400:
            self._response = response
            self.info = remote_file(response, None, 0)
            return self.info

        self._response = self._live = response
        if response is not None:
            new_state = PartialState(
                url=self.url,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                size=total_size(response, resumed - self._skip),
                sha256=announced_digest(response) or (state.sha256 if state else None),
            )
        else:
            assert state is not None
            new_state = state
        self.info = RemoteFile(
            url=str(response.url) if response is not None else self.url,
            status=status,
            size=new_state.size,
            etag=new_state.etag,
            last_modified=new_state.last_modified,
            content_type=response.headers.get("content-type") if response is not None else None,
            sha256=new_state.sha256,
            resumed_from=resumed,
        )
        self._open_partial(new_state, keep=resumed)
        if resumed:
            logger.info("Resuming %s at byte %d of %s", self.label, resumed, new_state.size)
        logger.info(
            "Downloading %s (%s)",
            self.label,
            f"{new_state.size} bytes" if new_state.size is not None else "size unknown",
        )
        self._thread = threading.Thread(
            target=self._pump, args=(resumed,), name="savedhub-download", daemon=True
        )
        self._thread.start()
        return self.info

    # -- the partial file --------------------------------------------------

    def _open_partial(self, state: PartialState, keep: int) -> None:
        if self.partial is None:
            return
        self._partial_fd = partial_file.open_for_writing(self.partial, keep)
        partial_file.write_state(self.partial, state)

    def discard_partial(self) -> None:
        """Delete the partial file and its metadata (after success, or to start over)."""
        if self.partial is not None:
            partial_file.discard(self.partial)

    # -- the background pump -------------------------------------------------

    def _take(self, chunk: bytes, progress: Any, *, from_disk: bool = False) -> bool:
        self._hash.update(chunk)
        self._received += len(chunk)
        if not from_disk and self._partial_fd is not None:
            partial_file.write_all(self._partial_fd, chunk)
        if progress is not None:
            progress.update(len(chunk))
        return self._pipe.send(chunk)

    def _pump(self, resumed: int) -> None:
        progress = self._progress_bar()
        try:
            if resumed and self.partial is not None:
                with open(self.partial, "rb") as held:
                    left = resumed
                    while left > 0:
                        chunk = held.read(min(CHUNK_BYTES, left))
                        if not chunk:
                            raise VersionChanged(
                                f"The partial download {self.partial} shrank while being read; "
                                "starting over.",
                                self.url,
                            )
                        left -= len(chunk)
                        if not self._take(chunk, progress, from_disk=True):
                            return
            self._stream_network(progress)
            self._pipe.end()
        except BaseException as exc:  # handed to the reader, which raises it
            self._pipe.send(exc)
        finally:
            if progress is not None:
                progress.close()
            if self._cancel.is_set():
                self._close_partial()

    def _stream_network(self, progress: Any) -> None:
        response, skip = self._response, self._skip
        failures = 0
        retries = config.http_retries()
        while response is not None:
            before = self._received
            cut = self._stream_body(response, skip, progress)
            if cut is None or self._cancel.is_set():
                return  # the whole body arrived, or close() cut the connection on purpose
            if self._received > before:
                failures = 0
            if failures >= retries:
                raise TransferError(
                    f"The download of {self.url} kept failing after {self._received} bytes "
                    f"({cut.reason}). Try again: the next attempt resumes from there.",
                    self.url,
                ) from cut.cause
            logger.info(
                "Download of %s interrupted at byte %d (%s); resuming",
                self.label,
                self._received,
                cut.reason,
            )
            backoff(failures)
            failures += 1
            response, skip = self._reconnect()
            self._live = response

    def _stream_body(self, response: httpx.Response, skip: int, progress: Any) -> _Cut | None:
        """Hand on one response's body after its first ``skip`` bytes.

        Returns:
            None when the body is complete (or the download was cancelled), else
            why it stopped short.
        """
        assert self.info is not None
        try:
            for chunk in response.iter_raw():
                if self._cancel.is_set():
                    return None
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                    if not chunk:
                        continue
                if not self._take(chunk, progress):
                    return None
        except (httpx.TransportError, httpx.StreamError) as exc:
            return _Cut(describe(exc), exc)
        finally:
            response.close()
        if self.info.size is not None and self._received < self.info.size:
            return _Cut(f"body ended at {self._received} of {self.info.size} bytes")
        return None

    def _reconnect(self) -> tuple[httpx.Response | None, int]:
        """Ask for the rest of the body; the response to stream (None: nothing is
        missing) and the bytes of it to skip.

        Raises:
            VersionChanged: the answer does not continue the bytes handed out so far.
        """
        assert self.info is not None and self._client is not None
        validator = self.info.etag or self.info.last_modified
        headers = {"Range": f"bytes={self._received}-"}
        if validator:
            headers["If-Range"] = validator
        response = send_with_retries(self._client, "GET", self.url, headers, stream=True)
        decision = decide(self._received, validator, self.info.size, Answer.of(response))
        if decision.verdict is Verdict.RESUME:
            return response, decision.skip
        response.close()
        if decision.verdict is Verdict.COMPLETE:
            return None, 0
        raise VersionChanged(
            f"{self.url} changed on the server during the download (its ETag/Last-Modified "
            "no longer matches, or it answered the resume request with "
            f"HTTP {response.status_code}); starting over.",
            self.url,
            response.status_code,
        )

    def _progress_bar(self) -> Any:
        assert self.info is not None
        return progress_bar(self.info.size, self.label)

    # -- file object -----------------------------------------------------

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); ``b''`` at the end.

        Raises:
            TransferError: the download failed for good (or VersionChanged).
        """
        self._check_open()
        return self._pipe.read(-1 if size is None else size)

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at the end) without consuming them."""
        self._check_open()
        return self._pipe.peek(size)

    def _check_open(self) -> None:
        if self._thread is None:
            raise RuntimeError("Download.open() must be called before reading")

    def finish(self) -> str:
        """Read to the end, check the digest, and return the body's SHA-256 (hex).

        Raises:
            IntegrityError: the body does not match the announced or expected digest.
            TransferError: the download failed.
        """
        while self.read(CHUNK_BYTES):
            pass
        if self._thread is not None:
            self._thread.join()
        digest = self._hash.hexdigest()
        expected = self.expected_sha256 or (self.info.sha256 if self.info else None)
        elapsed = time.monotonic() - self._started
        if expected and expected != digest:
            self.discard_partial()
            raise IntegrityError(
                f"The download of {self.url} does not match its SHA-256: expected {expected}, "
                f"got {digest}. Nothing was installed; the partial download was deleted, so the "
                "next attempt starts over. If it keeps happening the server or a proxy is "
                "serving a damaged file.",
                self.url,
            )
        logger.info(
            "Downloaded %s: %d bytes in %.1f s%s",
            self.label,
            self._received,
            elapsed,
            " (SHA-256 verified)" if expected else "",
        )
        return digest

    @property
    def bytes_received(self) -> int:
        """Bytes of the body handed out so far, including those resumed from disk."""
        return self._received

    def close(self) -> None:
        """Stop the background thread and release the connection and partial file."""
        self._pipe.cancel()
        if self._thread is not None and self._thread.is_alive():
            _interrupt(self._live)
            self._thread.join(timeout=5)
        if self._thread is not None and self._thread.is_alive():
            # Still blocked in a read of a stalled server: it closes the partial file
            # itself when it wakes, so its fd number is never reused under it.
            return
        if self._response is not None:
            self._response.close()
        if self._client is not None:
            self._client.close()
        self._close_partial()

    def _close_partial(self) -> None:
        with self._fd_lock:
            if self._partial_fd is not None:
                os.close(self._partial_fd)
                self._partial_fd = None

    def __enter__(self) -> Download:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _interrupt(response: httpx.Response | None) -> None:
    """Wake a thread blocked reading ``response`` (a stalled server) by shutting its socket."""
    stream = response.extensions.get("network_stream") if response is not None else None
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
