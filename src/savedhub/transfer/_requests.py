"""Requests to a server: one client setup, retries with backoff, uploads, httpx errors translated.

httpx exceptions are translated to :class:`~savedhub.errors.TransferError`
here (and, for a body cut mid-stream, in :mod:`savedhub.transfer._download`).
"""

from __future__ import annotations

import functools
import logging
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from savedhub import config
from savedhub.errors import TransferError

logger = logging.getLogger("savedhub")


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


def new_client(*, follow_redirects: bool = True, read_timeout: float | None = None) -> httpx.Client:
    """An httpx client with the configured timeout and certificate check, asking for
    the body as stored (no transfer compression).

    Args:
        follow_redirects: follow redirects (downloads do; an upload or the
            uncompressed format's 303 do not).
        read_timeout: seconds to wait for an answer, when longer than the
            configured timeout (a hub checks an upload before it answers).
    """
    timeout = config.http_timeout()
    return httpx.Client(
        follow_redirects=follow_redirects,
        verify=_ssl_context(config.verify_certificates()),
        timeout=httpx.Timeout(timeout, connect=timeout, read=max(timeout, read_timeout or 0)),
        headers={"Accept-Encoding": "identity", "User-Agent": "savedhub"},
    )


def _certificate_refused(exc: BaseException, url: str) -> TransferError | None:
    """The error to raise when ``exc`` is a refused TLS certificate (never worth a retry)."""
    bad_certificate = _certificate_error(exc)
    if bad_certificate is None:
        return None
    return TransferError(
        f"The TLS certificate of {url} could not be verified "
        f"({bad_certificate.verify_message}). If you trust this server, add its CA "
        "to SSL_CERT_FILE, or set TFHUB_DISABLE_CERT_VALIDATION=true to skip the check.",
        url,
    )


def backoff(attempt: int) -> None:
    """Sleep before retry number ``attempt + 1``: SAVEDHUB_HTTP_BACKOFF doubled per attempt."""
    time.sleep(config.http_backoff() * (2**attempt))


def describe(exc: BaseException) -> str:
    """An exception as ``"Type: message"`` for log lines and error messages."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


@dataclass(frozen=True)
class SmallAnswer:
    """A server's answer whose body was read only up to a bound (see :func:`read_small`)."""

    status_code: int
    headers: httpx.Headers
    text: str


def read_small(url: str, *, max_bytes: int = 1 << 16, follow_redirects: bool = True) -> SmallAnswer:
    """GET ``url`` with the usual retries, keeping at most ``max_bytes`` of its body.

    The body is streamed and the connection dropped at the bound, so a hostile or
    broken server cannot make a small request cost unbounded memory or time.

    Raises:
        TransferError: the server could not be reached or kept failing with 5xx.
    """
    with new_client(follow_redirects=follow_redirects) as client:
        response = send_with_retries(client, "GET", url, {}, stream=True)
        try:
            body = bytearray()
            for chunk in response.iter_raw():
                body += chunk[: max_bytes - len(body)]
                if len(body) >= max_bytes:
                    break
        except httpx.HTTPError as exc:
            raise TransferError(f"{url} broke off its answer ({describe(exc)}).", url) from exc
        finally:
            response.close()
        text = bytes(body).decode("utf-8", "replace")
        return SmallAnswer(response.status_code, response.headers, text)


def fetch_text(url: str, *, max_bytes: int = 1 << 16) -> tuple[int, str]:
    """GET a small text body (e.g. a ``.sha256`` file), with the same retries; at most
    ``max_bytes`` of it are read.

    Returns:
        ``(status, text)``; a 4xx status is returned, not raised.

    Raises:
        TransferError: the server could not be reached or kept failing with 5xx.
    """
    answer = read_small(url, max_bytes=max_bytes)
    return answer.status_code, answer.text


def request_without_redirect(url: str) -> SmallAnswer:
    """One GET that does not follow redirects (the 303 of the uncompressed format);
    at most 64 KiB of its body are read.

    Raises:
        TransferError: the server could not be reached or kept failing with 5xx.
    """
    return read_small(url, follow_redirects=False)


def upload(
    url: str, body: Iterable[bytes], headers: dict[str, str], *, read_timeout: float
) -> httpx.Response:
    """One PUT of a streamed ``body``, never retried: the body is consumed as it is
    sent, and a retry of an upload the server did receive could only be refused.

    Returns:
        The server's answer, whatever its status.

    Raises:
        TransferError: the server could not be reached, or the connection failed.
    """
    with new_client(follow_redirects=False, read_timeout=read_timeout) as client:
        try:
            return client.put(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            refused = _certificate_refused(exc, url)
            raise refused or TransferError(
                f"Could not send to {url} ({describe(exc)}). Check that the server is "
                "running and the URL is right.",
                url,
            ) from exc


def send_with_retries(
    client: httpx.Client, method: str, url: str, headers: dict[str, str], *, stream: bool
) -> httpx.Response:
    """Send one request, retrying connection errors, timeouts and 5xx with backoff.

    Returns:
        The first answer that is not a 5xx (a 4xx is returned, not raised).

    Raises:
        TransferError: the certificate was refused, or every attempt failed.
    """
    retries = config.http_retries()
    last: str = ""
    for attempt in range(retries + 1):
        try:
            request = client.build_request(method, url, headers=headers)
            response = client.send(request, stream=stream)
        except httpx.TransportError as exc:
            refused = _certificate_refused(exc, url)
            if refused is not None:  # not transient: retrying cannot help
                raise refused from exc
            last = describe(exc)
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
            backoff(attempt)
    raise TransferError(
        f"Could not download {url} after {retries + 1} attempts ({last}). Check the network "
        "connection and the URL, raise SAVEDHUB_HTTP_TIMEOUT/SAVEDHUB_HTTP_RETRIES for a slow "
        "link, or set SAVEDHUB_OFFLINE=1 to use only cached models.",
        url,
    )
