"""HTTP downloads: one streaming GET that resumes, retries and hashes as it goes.

A :class:`Download` is a read-only file object over the body of one URL. It is
what :mod:`savedhub.archive` extracts from, so bytes are unpacked while they
still arrive: a background thread pulls the body from the network, appends it
to a *partial file* (so a later run can resume), hashes it and hands it to the
reader through a bounded pipe (:mod:`savedhub._pipe`).

* Connection errors, timeouts and 5xx answers are retried with exponential
  backoff (``SAVEDHUB_HTTP_RETRIES``, ``SAVEDHUB_HTTP_BACKOFF``); 4xx never.
* A cut connection continues with ``Range: bytes=N-`` guarded by ``If-Range``
  (ETag, else Last-Modified). A partial file left by an earlier, killed run is
  adopted the same way. If the server's version changed, :class:`VersionChanged`
  tells the caller to start over; if it merely ignores ``Range`` while the
  version is the same, the bytes already held are skipped.
* ``Repr-Digest``/``Digest`` SHA-256 headers (or a digest the caller passes,
  e.g. from a ``.sha256`` file) are checked when the body ends.
* Progress: a ``tqdm`` bar of compressed bytes against ``Content-Length`` when
  :func:`savedhub.config.show_progress` allows, and a log line either way.

httpx exceptions are translated to :class:`~savedhub.errors.TransferError`
here and nowhere else.

Example:
    >>> with Download("https://hub.example/m.tar.gz", partial=Path("m.part")) as body:
    ...     info = body.open()
    ...     data = body.read()
    ...     digest = body.finish()
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from savedhub import config
from savedhub._pipe import BytePipe
from savedhub.errors import IntegrityError, TransferError

logger = logging.getLogger("savedhub")

CHUNK_BYTES = 1 << 20
_QUEUE_CHUNKS = 32
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


class VersionChanged(TransferError):
    """The server's copy changed while it was being downloaded: start over."""


@dataclass(frozen=True)
class RemoteFile:
    """What the server said about a body.

    Attributes:
        url: the final URL, after redirects.
        status: the HTTP status of the first answer (200, 206 on resume, 416 when
            the partial file already held everything).
        size: length of the whole body, when the server said it.
        etag: the ETag, if any.
        last_modified: the Last-Modified header, if any.
        content_type: the Content-Type header, if any.
        sha256: the SHA-256 (hex) the server announced for the whole body, if any.
        resumed_from: bytes taken from a partial file of an earlier attempt.
    """

    url: str
    status: int
    size: int | None
    etag: str | None
    last_modified: str | None
    content_type: str | None
    sha256: str | None
    resumed_from: int = 0


@dataclass
class _PartialState:
    url: str
    etag: str | None
    last_modified: str | None
    size: int | None
    sha256: str | None


def parse_digest_headers(headers: httpx.Headers) -> str | None:
    """The SHA-256 (hex) in ``Repr-Digest`` (RFC 9530) or ``Digest`` (RFC 3230), if any."""
    for item in headers.get_list("repr-digest", split_commas=True):
        name, _, value = item.strip().partition("=")
        if name.strip().lower() == "sha-256":
            return _b64_to_hex(value.strip().strip(":"))
    for item in headers.get_list("digest", split_commas=True):
        name, _, value = item.strip().partition("=")
        if name.strip().lower() == "sha-256":
            return _b64_to_hex(value.strip())
    return None


def _b64_to_hex(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        logger.warning("Ignoring a malformed SHA-256 digest header %r", value)
        return None


def _is_retryable_status(status: int) -> bool:
    return status >= 500


@functools.lru_cache(maxsize=2)
def _ssl_context(verify: bool) -> ssl.SSLContext:
    # httpx's own choice of CA bundle (certifi, or SSL_CERT_FILE/SSL_CERT_DIR), but
    # loaded once per process: it costs ~50 ms, a third of a small model's cold load.
    return httpx.create_ssl_context(verify=verify)


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _client() -> httpx.Client:
    timeout = config.http_timeout()
    return httpx.Client(
        follow_redirects=True,
        verify=_ssl_context(config.verify_certificates()),
        timeout=httpx.Timeout(timeout, connect=timeout),
        headers={"Accept-Encoding": "identity", "User-Agent": "savedhub"},
    )


def _backoff(attempt: int) -> None:
    time.sleep(config.http_backoff() * (2**attempt))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def fetch_text(url: str, *, max_bytes: int = 1 << 16) -> tuple[int, str]:
    """GET a small text body (e.g. a ``.sha256`` file), with the same retries.

    Returns:
        ``(status, text)``; a 4xx status is returned, not raised.

    Raises:
        TransferError: the server could not be reached or kept failing with 5xx.
    """
    with _client() as client:
        response = _send_with_retries(client, "GET", url, {}, stream=False)
        return response.status_code, response.content[:max_bytes].decode("utf-8", "replace")


def request_without_redirect(url: str) -> httpx.Response:
    """One GET that does not follow redirects (the 303 of the uncompressed format).

    Raises:
        TransferError: the server could not be reached or kept failing with 5xx.
    """
    with _client() as client:
        client.follow_redirects = False
        return _send_with_retries(client, "GET", url, {}, stream=False)


def _send_with_retries(
    client: httpx.Client, method: str, url: str, headers: dict[str, str], *, stream: bool
) -> httpx.Response:
    retries = config.http_retries()
    last: str = ""
    for attempt in range(retries + 1):
        try:
            request = client.build_request(method, url, headers=headers)
            response = client.send(request, stream=stream)
        except httpx.TransportError as exc:
            bad_certificate = _certificate_error(exc)
            if bad_certificate is not None:  # not transient: retrying cannot help
                raise TransferError(
                    f"The TLS certificate of {url} could not be verified "
                    f"({bad_certificate.verify_message}). If you trust this server, add its CA "
                    "to SSL_CERT_FILE, or set TFHUB_DISABLE_CERT_VALIDATION=true to skip the "
                    "check.",
                    url,
                ) from exc
            last = _describe(exc)
            logger.info(
                "Request to %s failed (%s); attempt %d of %d", url, last, attempt + 1, retries + 1
            )
        else:
            if not _is_retryable_status(response.status_code):
                return response
            last = f"HTTP {response.status_code}"
            response.close()
            logger.info("%s answered %s; attempt %d of %d", url, last, attempt + 1, retries + 1)
            if attempt == retries:
                raise TransferError(
                    f"{url} kept answering HTTP {response.status_code} (a server error) after "
                    f"{retries + 1} attempts. Try again later, or point SAVEDHUB_MIRRORS at "
                    "another hub.",
                    url,
                    response.status_code,
                )
        if attempt < retries:
            _backoff(attempt)
    raise TransferError(
        f"Could not download {url} after {retries + 1} attempts ({last}). Check the network "
        "connection and the URL, raise SAVEDHUB_HTTP_TIMEOUT/SAVEDHUB_HTTP_RETRIES for a slow "
        "link, or set SAVEDHUB_OFFLINE=1 to use only cached models.",
        url,
    )


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
        self._client = _client()
        self._started = time.monotonic()
        state = self._read_partial_state()
        have = self.partial.stat().st_size if state and self.partial else 0
        headers: dict[str, str] = {}
        validator = state.etag or state.last_modified if state else None
        if state and have and validator:
            headers = {"Range": f"bytes={have}-", "If-Range": validator}
        first = _send_with_retries(self._client, "GET", self.url, headers, stream=True)
        status = first.status_code
        response: httpx.Response | None = first
        resumed = 0
        if status == 206 and state and self._content_range_start(first) == have:
            resumed = have
        elif status == 416 and state and self._content_range_total(first) == have:
            resumed, response = have, None  # the partial file already holds everything
            first.close()
        elif status in (206, 416):
            # A range we did not ask for, or a partial that no longer fits: start over.
            first.close()
            response = _send_with_retries(self._client, "GET", self.url, {}, stream=True)
            status, state = response.status_code, None
        else:
            state = None
        if response is not None and status >= 400:
            self._response = response
            self.info = self._info_from(response, None, 0)
            return self.info

        self._response = self._live = response
        if response is not None:
            new_state = _PartialState(
                url=self.url,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                size=self._total_size(response, resumed),
                sha256=parse_digest_headers(response.headers) or (state.sha256 if state else None),
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

    def _info_from(self, response: httpx.Response, size: int | None, resumed: int) -> RemoteFile:
        return RemoteFile(
            url=str(response.url),
            status=response.status_code,
            size=size,
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            content_type=response.headers.get("content-type"),
            sha256=parse_digest_headers(response.headers),
            resumed_from=resumed,
        )

    @staticmethod
    def _content_range_start(response: httpx.Response) -> int | None:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        return int(match.group(1)) if match and match.group(1) else None

    @staticmethod
    def _content_range_total(response: httpx.Response) -> int | None:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        return int(match.group(3)) if match and match.group(3) != "*" else None

    def _total_size(self, response: httpx.Response, resumed: int) -> int | None:
        if response.status_code == 206:
            total = self._content_range_total(response)
            if total is not None:
                return total
        length = response.headers.get("content-length")
        return int(length) + resumed if length and length.isdigit() else None

    # -- the partial file --------------------------------------------------

    def _state_path(self) -> Path | None:
        return self.partial.with_name(self.partial.name + ".json") if self.partial else None

    def _read_partial_state(self) -> _PartialState | None:
        state_path = self._state_path()
        if state_path is None or self.partial is None or not self.partial.exists():
            return None
        try:
            data = json.loads(state_path.read_text())
            state = _PartialState(**data)
        except (OSError, ValueError, TypeError):
            return None
        return state if state.url == self.url else None

    def _open_partial(self, state: _PartialState, keep: int) -> None:
        if self.partial is None:
            return
        state_path = self._state_path()
        assert state_path is not None
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if keep else os.O_TRUNC)
        self._partial_fd = os.open(self.partial, flags, 0o644)
        if keep:
            os.ftruncate(self._partial_fd, keep)
        tmp = state_path.with_name(state_path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(state)))
        os.replace(tmp, state_path)

    def discard_partial(self) -> None:
        """Delete the partial file and its metadata (after success, or to start over)."""
        if self.partial is None:
            return
        state_path = self._state_path()
        for path in (self.partial, state_path):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    # -- the background pump -------------------------------------------------

    def _take(self, chunk: bytes, progress: Any, *, from_disk: bool = False) -> bool:
        self._hash.update(chunk)
        self._received += len(chunk)
        if not from_disk and self._partial_fd is not None:
            _write_all(self._partial_fd, chunk)
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
        assert self.info is not None and self._client is not None
        response = self._response
        failures = 0
        retries = config.http_retries()
        skip = 0
        while response is not None:
            try:
                for chunk in response.iter_raw():
                    if self._cancel.is_set():
                        return
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                        if not chunk:
                            continue
                    failures = 0
                    if not self._take(chunk, progress):
                        return
                response.close()
                if self.info.size is not None and self._received < self.info.size:
                    raise httpx.RemoteProtocolError(
                        f"body ended at {self._received} of {self.info.size} bytes"
                    )
                return
            except (httpx.TransportError, httpx.StreamError) as exc:
                response.close()
                if self._cancel.is_set():
                    return  # close() cut the connection on purpose
                if failures >= retries:
                    raise TransferError(
                        f"The download of {self.url} kept failing after {self._received} bytes "
                        f"({_describe(exc)}). Try again: the next attempt resumes from there.",
                        self.url,
                    ) from exc
                logger.info(
                    "Download of %s interrupted at byte %d (%s); resuming",
                    self.label,
                    self._received,
                    _describe(exc),
                )
                _backoff(failures)
                failures += 1
            response, skip = self._reconnect()
            self._live = response

    def _reconnect(self) -> tuple[httpx.Response | None, int]:
        assert self.info is not None and self._client is not None
        validator = self.info.etag or self.info.last_modified
        headers = {"Range": f"bytes={self._received}-"}
        if validator:
            headers["If-Range"] = validator
        response = _send_with_retries(self._client, "GET", self.url, headers, stream=True)
        if response.status_code == 206 and self._content_range_start(response) == self._received:
            return response, 0
        if response.status_code == 416 and self.info.size == self._received:
            response.close()
            return None, 0
        # The server ignored Range but serves the same version: skip what we hold.
        if (
            response.status_code == 200
            and validator
            and (response.headers.get("etag") or response.headers.get("last-modified")) == validator
        ):
            return response, self._received
        response.close()
        raise VersionChanged(
            f"{self.url} changed on the server during the download (its ETag/Last-Modified "
            "no longer matches, or it answered the resume request with "
            f"HTTP {response.status_code}); starting over.",
            self.url,
            response.status_code,
        )

    def _progress_bar(self) -> Any:
        if not config.show_progress():
            return None
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        assert self.info is not None
        return tqdm(
            total=self.info.size,
            initial=0,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=_short_label(self.label),
            leave=False,
        )

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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _short_label(label: str) -> str:
    path = urllib.parse.urlsplit(label).path.rstrip("/")
    return path.rsplit("/", 3)[-1] if path else label
