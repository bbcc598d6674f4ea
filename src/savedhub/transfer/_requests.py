"""Requests to a server: one client setup, retries with backoff, httpx errors translated.

httpx exceptions are translated to :class:`~savedhub.errors.TransferError`
here (and, for a body cut mid-stream, in :mod:`savedhub.transfer._download`).
"""

from __future__ import annotations

import functools
import logging
import ssl
import time

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


def new_client() -> httpx.Client:
    """An httpx client with the configured timeout and certificate check, asking for
    the body as stored (no transfer compression), following redirects."""
    timeout = config.http_timeout()
    return httpx.Client(
        follow_redirects=True,
        verify=_ssl_context(config.verify_certificates()),
        timeout=httpx.Timeout(timeout, connect=timeout),
        headers={"Accept-Encoding": "identity", "User-Agent": "savedhub"},
    )


def backoff(attempt: int) -> None:
    """Sleep before retry number ``attempt + 1``: SAVEDHUB_HTTP_BACKOFF doubled per attempt."""
    time.sleep(config.http_backoff() * (2**attempt))


def describe(exc: BaseException) -> str:
    """An exception as ``"Type: message"`` for log lines and error messages."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def fetch_text(url: str, *, max_bytes: int = 1 << 16) -> tuple[int, str]:
    """GET a small text body (e.g. a ``.sha256`` file), with the same retries.

    Returns:
        ``(status, text)``; a 4xx status is returned, not raised.

    Raises:
        TransferError: the server could not be reached or kept failing with 5xx.
    """
    with new_client() as client:
        response = send_with_retries(client, "GET", url, {}, stream=False)
        return response.status_code, response.content[:max_bytes].decode("utf-8", "replace")


def request_without_redirect(url: str) -> httpx.Response:
    """One GET that does not follow redirects (the 303 of the uncompressed format).

    Raises:
        TransferError: the server could not be reached or kept failing with 5xx.
    """
    with new_client() as client:
        client.follow_redirects = False
        return send_with_retries(client, "GET", url, {}, stream=False)


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
            bad_certificate = _certificate_error(exc)
            if bad_certificate is not None:  # not transient: retrying cannot help
                raise TransferError(
                    f"The TLS certificate of {url} could not be verified "
                    f"({bad_certificate.verify_message}). If you trust this server, add its CA "
                    "to SSL_CERT_FILE, or set TFHUB_DISABLE_CERT_VALIDATION=true to skip the "
                    "check.",
                    url,
                ) from exc
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
