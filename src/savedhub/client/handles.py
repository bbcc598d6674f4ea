"""What a handle is: parsing, normalisation and mirror rewriting.

A handle is what a user passes to ``load``/``resolve``/``KerasLayer``: a local
path, a ``file://`` URL, an ``http(s)://`` URL of a hub that speaks the
hosting protocol (or of a plain ``.tar.gz``), a Hugging Face model repository
``hf://ORG/NAME[@REVISION]`` (converted on first use, see
:mod:`savedhub.client.hf`), or a folder on a filesystem that TensorFlow reads
in place (``gs://``, ``s3://``, ``ram://`` ...).
"""

from __future__ import annotations

import enum
import os
import re
import urllib.parse
from dataclasses import dataclass

from savedhub import config
from savedhub.errors import InvalidHandleError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# Query parameters of the hosting protocol that do not change which model is meant.
_PROTOCOL_QUERY = {"tf-hub-format"}
# Hugging Face repository names: ORG/NAME, each of letters, digits, "-", "_", ".".
_HF_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,95})/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,95})$")
_HF_REVISION = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")
HF_SCHEME = "hf"


class HandleKind(enum.Enum):
    LOCAL = "local"  # a folder on this machine, used in place
    HTTP = "http"  # a hosting-protocol model URL or a plain archive URL
    REMOTE_FS = "remote_fs"  # a folder TensorFlow's filesystems read in place
    HUGGING_FACE = "hf"  # a Hugging Face model repository, converted into the cache


@dataclass(frozen=True)
class Handle:
    """A parsed handle.

    Attributes:
        original: the handle as the user wrote it (``str`` of a path-like).
        kind: how it is resolved.
        location: the normalised path or URL, after mirror rewriting; what is read.
        cache_key: what names the cache entry: the normalised handle *before*
            mirror rewriting, so changing a mirror does not refetch, in its
            canonical spelling (:func:`canonical_model_url`), so each model is
            one entry however it is written.
        mirrored: True when a mirror rewrote the location.
        revision: for ``hf://`` handles, the revision after ``@`` (a branch,
            tag or commit SHA), or None for the repository's default branch;
            ``location`` is then the repository id ``ORG/NAME``.
    """

    original: str
    kind: HandleKind
    location: str
    cache_key: str
    mirrored: bool = False
    revision: str | None = None

    @property
    def is_archive_url(self) -> bool:
        """An http(s) URL naming a ``.tar.gz`` itself rather than a model."""
        path = urllib.parse.urlsplit(self.location).path
        return self.kind is HandleKind.HTTP and path.endswith(ARCHIVE_SUFFIXES)


def _as_text(handle: object) -> str:
    if isinstance(handle, str):
        text = handle
    elif isinstance(handle, os.PathLike):
        text = os.fspath(handle)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
    else:
        raise InvalidHandleError(
            # tensorflow_hub's words first: code written for it matches them.
            f"Expected a string, got {handle}. A handle must be a string or a path "
            f"(os.PathLike), not {type(handle).__name__}: pass a folder path, a file:// URL "
            "or an http(s):// model URL, e.g. hub.load('/models/my_model').",
            handle,
        )
    text = text.strip()
    if not text:
        raise InvalidHandleError(
            "The handle is an empty string. Pass a folder path or a model URL.", handle
        )
    return text


def normalise_url(url: str) -> str:
    """Canonical form of an http(s) model URL: lower-case scheme and host, no
    trailing slash, no hosting-protocol query, no fragment."""
    parts = urllib.parse.urlsplit(url)
    query = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if k not in _PROTOCOL_QUERY
    ]
    path = parts.path.rstrip("/") or ""
    return urllib.parse.urlunsplit(
        (
            parts.scheme.lower(),
            parts.netloc.lower(),
            path,
            urllib.parse.urlencode(query),
            "",
        )
    )


_TFHUB_HOSTS = {"tfhub.dev", "www.tfhub.dev", "hub.tensorflow.google.cn"}
_KAGGLE_HOSTS = {"kaggle.com", "www.kaggle.com"}
_KAGGLE_LONG_FORM = ("frameworks", "variations", "versions")


def canonical_model_url(url: str) -> str:
    """One spelling per model, so each model is one cache entry.

    tfhub.dev and its aliases (``www.tfhub.dev``, ``hub.tensorflow.google.cn``,
    plain ``http``) become ``https://tfhub.dev/...``; a Kaggle model URL in its
    page form ``/models/o/m/frameworks/f/variations/v/versions/n`` or its short
    form ``/models/o/m/f/v/n`` becomes ``https://www.kaggle.com/models/o/m/f/v/n``
    in lower case (Kaggle slugs ignore case). Other URLs are returned unchanged.

    Example:
        >>> canonical_model_url("https://www.kaggle.com/models/google/nnlm/frameworks/"
        ...                     "TensorFlow2/variations/en-dim128/versions/2")
        'https://www.kaggle.com/models/google/nnlm/tensorflow2/en-dim128/2'
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.lower()
    if host in _TFHUB_HOSTS:
        return urllib.parse.urlunsplit(("https", "tfhub.dev", parts.path, parts.query, ""))
    segments = [s for s in parts.path.split("/") if s]
    if host in _KAGGLE_HOSTS and segments[:1] == ["models"]:
        rest = segments[1:]
        if len(rest) == 8 and tuple(s.lower() for s in rest[2:7:2]) == _KAGGLE_LONG_FORM:
            rest = rest[:2] + rest[3:8:2]
        path = "/models/" + "/".join(s.lower() for s in rest)
        return urllib.parse.urlunsplit(("https", "www.kaggle.com", path, parts.query, ""))
    return url


def apply_mirrors(location: str) -> tuple[str, bool]:
    """Rewrite the longest configured mirror prefix of ``location``."""
    for prefix, replacement in config.mirrors():
        if location.startswith(prefix):
            return replacement + location[len(prefix) :], True
    return location, False


def _parse_hf(text: str, handle: object) -> Handle:
    """``hf://ORG/NAME[@REVISION]``: a Hugging Face model repository (mirrors do not
    apply; ``HF_ENDPOINT`` chooses the server)."""
    rest = text[len(HF_SCHEME) + 3 :].strip("/")
    repo, at, revision = rest.partition("@")
    repo = repo.strip("/")
    if not _HF_REPO.match(repo) or ".." in repo:
        raise InvalidHandleError(
            f"{text!r} is not a Hugging Face model handle: write hf://ORG/NAME or "
            "hf://ORG/NAME@REVISION (a branch, tag or commit SHA), e.g. "
            "hf://sentence-transformers/all-MiniLM-L6-v2.",
            handle,
        )
    if at and (not _HF_REVISION.match(revision) or ".." in revision):
        raise InvalidHandleError(
            f"{text!r} names the revision {revision!r}, which is not a branch, tag or commit "
            "SHA: write hf://ORG/NAME@main, hf://ORG/NAME@v1.0 or hf://ORG/NAME@<40-hex SHA>.",
            handle,
        )
    canonical = f"{HF_SCHEME}://{repo}" + (f"@{revision}" if at else "")
    return Handle(text, HandleKind.HUGGING_FACE, repo, canonical, revision=revision or None)


def parse(handle: object) -> Handle:
    """Parse and normalise a handle.

    Example:
        >>> parse("file:///models/mul").location
        '/models/mul'

    Raises:
        InvalidHandleError: the handle is not a string/path, or has a scheme
            savedhub cannot read.
    """
    text = _as_text(handle)
    match = _SCHEME.match(text)
    scheme = match.group(1).lower() if match else ""

    if scheme == HF_SCHEME:
        return _parse_hf(text, handle)

    if scheme == "file":
        path = urllib.parse.unquote(urllib.parse.urlsplit(text).path)
        if not path:
            raise InvalidHandleError(f"The file:// URL {text!r} names no path.", handle)
        return Handle(text, HandleKind.LOCAL, path, path)

    if scheme in ("http", "https"):
        written = normalise_url(text)
        key = canonical_model_url(written)
        # A mirror matches the handle as written, else its canonical spelling
        # (so a tfhub.dev mirror also serves hub.tensorflow.google.cn handles).
        location, mirrored = apply_mirrors(written)
        if not mirrored and key != written:
            rewritten, mirrored = apply_mirrors(key)
            location = rewritten if mirrored else written
        return Handle(text, HandleKind.HTTP, location, key, mirrored)

    if scheme:
        # Let a mirror map e.g. gs://bucket to an http hub before deciding.
        location, mirrored = apply_mirrors(text.rstrip("/"))
        if location.startswith(("http://", "https://")):
            return Handle(text, HandleKind.HTTP, normalise_url(location), text, mirrored)
        return Handle(text, HandleKind.REMOTE_FS, location, text.rstrip("/"), mirrored)

    path = os.path.expanduser(text)
    return Handle(text, HandleKind.LOCAL, path, path)
