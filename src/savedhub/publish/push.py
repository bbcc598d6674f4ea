"""``push``: publish a SavedModel folder or a packed archive to a savedhub server.

A folder is packed first (reproducibly, by :mod:`savedhub.pack`); the archive
is then sent with ``PUT /api/models/<publisher>/<model>/<version>`` and a
bearer token, with a progress bar counting the bytes sent. The server checks
the model and answers with its metadata; the digest it computed must equal
the one computed here, so a corrupted upload cannot be published silently.
"""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from savedhub import config
from savedhub._io.digest import file_sha256
from savedhub._wire import (
    MalformedRecordError,
    VersionRecord,
    is_valid_version,
    version_error,
)
from savedhub.client.handles import ARCHIVE_SUFFIXES, HF_SCHEME
from savedhub.errors import IntegrityError, InvalidHandleError, PublishError, TransferError
from savedhub.transfer import progress_bar, upload

_CHUNK = 1 << 20
_API_PREFIX = "api/models"


@dataclass(frozen=True)
class PushResult:
    """A published version: its model URL, the archive's SHA-256 and size, and the
    metadata the server recorded (signatures, variables, created time...)."""

    url: str
    sha256: str
    size: int
    metadata: dict[str, Any]


def upload_url(model_url: str) -> tuple[str, str]:
    """``(api URL to PUT to, model URL)`` for a model URL ``.../PUBLISHER/MODEL/VERSION``.

    Example:
        >>> upload_url("http://hub:8080/acme/mul/1")
        ('http://hub:8080/api/models/acme/mul/1', 'http://hub:8080/acme/mul/1')

    Raises:
        InvalidHandleError: the URL is not http(s), has no publisher/model/version, or
            its version is not a positive integer.
    """
    parts = urllib.parse.urlsplit(model_url.strip())
    segments = [s for s in parts.path.split("/") if s]
    if segments[:2] == _API_PREFIX.split("/"):
        segments = segments[2:]
    if parts.scheme not in ("http", "https") or len(segments) < 3:
        raise InvalidHandleError(
            f"Cannot push to {model_url!r}: give the model URL with its version, "
            "e.g. http://hub.example.com:8080/PUBLISHER/MODEL/1.",
            model_url,
        )
    prefix, (publisher, model, version) = segments[:-3], segments[-3:]
    if not is_valid_version(version):
        raise InvalidHandleError(
            f"Cannot push to {model_url!r}: {version_error(version)}", model_url
        )
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", "")).rstrip("/")
    root = "/".join([base, *prefix])
    return (
        f"{root}/{_API_PREFIX}/{publisher}/{model}/{version}",
        f"{root}/{publisher}/{model}/{version}",
    )


def _chunks(path: Path, progress: Any) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            if progress is not None:
                progress.update(len(chunk))
            yield chunk


def _refusal(response: httpx.Response, url: str) -> PublishError:
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:500]}
    message = str(body.get("error") or f"HTTP {response.status_code}")
    findings = body.get("findings") or []
    shown = "".join(
        f"\n  {f.get('severity', '?')}: {f.get('message', f)}"
        for f in findings
        if isinstance(f, dict)
    )
    return PublishError(
        f"{url} refused the push (HTTP {response.status_code}): {message}{shown}",
        url,
        response.status_code,
        findings,
    )


def _send(
    archive: Path, sha256: str, api_url: str, model_url: str, token: str | None
) -> PushResult:
    size = archive.stat().st_size
    headers = {
        "Content-Type": "application/gzip",
        "Content-Length": str(size),
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    progress = progress_bar(size, model_url)
    try:
        # The hub checks the model before it answers: wait up to ten minutes for that.
        response = upload(api_url, _chunks(archive, progress), headers, read_timeout=600.0)
    finally:
        if progress is not None:
            progress.close()
    if response.status_code != 201:
        raise _refusal(response, model_url)
    body = response.json()
    try:
        record = VersionRecord.from_json(body.get("metadata"))
    except MalformedRecordError as exc:
        raise TransferError(
            f"{model_url} answered 201 but its record of the version is not one savedhub "
            f"reads: {exc}. Is the URL a savedhub hub?",
            model_url,
        ) from exc
    server_sha = record.sha256
    if server_sha != sha256:
        raise IntegrityError(
            f"{model_url} recorded SHA-256 {server_sha} but {archive} has {sha256}; the upload "
            "was damaged on the way. Ask the hub's operator to remove the version.",
            model_url,
        )
    return PushResult(str(body.get("url", model_url)), sha256, size, record.to_json())


def push(src: str | os.PathLike[str], url: str, token: str | None = None) -> PushResult:
    """Publish a SavedModel folder, a ``.tar.gz`` archive or an ``hf://`` model as the
    version at ``url``.

    Args:
        src: a SavedModel folder (packed on the fly), an archive made by ``savedhub pack``,
            or ``hf://ORG/NAME[@REVISION]``: the Hugging Face model converted into the
            cache (converting it first if needed), published with its model card.
        url: the version's model URL, ``http(s)://HOST/PUBLISHER/MODEL/VERSION``.
        token: the hub's bearer token; default SAVEDHUB_TOKEN.

    Returns:
        The published version's URL, digest, size and the server's metadata.

    Example:
        >>> push("./my_model", "http://hub:8080/acme/mul/1", token="s3cr3t")  # doctest: +SKIP
        >>> push("hf://BAAI/bge-small-en-v1.5", "http://hub:8080/baai/bge/1")  # doctest: +SKIP

    Raises:
        PublishError: the hub refused (401/403 token, 409 version exists, 413 too large,
            422 not a valid model, with lint findings).
        TransferError: the hub could not be reached.
        PackError: the folder fails lint (``savedhub lint DIR`` shows why).
        InvalidHandleError, ModelNotFoundError, NotASavedModelError: bad ``url`` or ``src``.
    """
    api_url, model_url = upload_url(url)
    token = token or config.push_token()
    if os.fspath(src).startswith(f"{HF_SCHEME}://"):
        from savedhub.client.resolver import resolve

        src = resolve(src)
    source = Path(src).expanduser()
    if source.is_file() and source.name.endswith(ARCHIVE_SUFFIXES):
        return _send(source, file_sha256(source), api_url, model_url, token)
    from savedhub.publish.pack import pack

    with tempfile.TemporaryDirectory(prefix="savedhub-push-") as tmp:
        packed = pack(source, Path(tmp) / "model.tar.gz")
        return _send(Path(packed.path), packed.sha256, api_url, model_url, token)
