"""``hf://ORG/NAME[@REVISION]`` handles -> a converted SavedModel in savedhub's cache.

A sentence-transformers BERT repository on the Hugging Face Hub becomes a
Reusable SavedModel on first use:

1. the revision is resolved to a commit SHA (one request; none when the
   handle pins a SHA that is already converted);
2. the cache entry is keyed by that SHA and :data:`CONVERTER_VERSION`, so a
   new commit on ``main`` converts again and an old one is reused;
3. a missing entry is made under the cache's lock, like a download: the
   transformer's ``config.json`` is fetched and checked first (an MPNet or
   XLM-R repository is refused before anything else is downloaded), then only
   the files the converter reads (:mod:`savedhub.client.hf_fetch`, through
   Hugging Face's own cache), then the converter writes the SavedModel and its
   card into the work folder that the cache renames into place.

Offline (``SAVEDHUB_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) the commit comes from
the handle itself (a pinned SHA) or Hugging Face's cache of refs, and the
converted copy is served without touching the network. When the Hub cannot be
reached, a converted copy is served the same way, with a warning.

The converter imports TensorFlow only when it runs (``savedhub.convert``), so
resolving a converted handle stays TensorFlow-free.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from savedhub import config
from savedhub.cache import Cache, Installed
from savedhub.client import hf_fetch
from savedhub.client.handles import HF_SCHEME, Handle, HandleKind
from savedhub.client.hf_fetch import RepoCommit
from savedhub.errors import CacheWarning, NotCachedError, TransferError, UnsupportedSourceError

logger = logging.getLogger("savedhub")

# Files of a sentence-transformers folder that the converter reads, relative to
# the Transformer module's folder (weights last: they are the big one).
_TRANSFORMER_FILES = (
    "sentence_bert_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "vocab.txt",
    "model.safetensors",  # last: the big one
)
_ROOT_FILES = ("modules.json", "README.md")
_WEIGHTS = "model.safetensors"
# Every file but the weights is read whole into memory: configs are kilobytes and a
# large tokenizer.json a few megabytes, so anything past this is refused unread.
SMALL_FILE_LIMIT = 64 << 20


def converted_handle(handle: Handle, sha: str) -> Handle:
    """The cache's handle for ``handle`` converted at commit ``sha``: named
    ``hf://ORG/NAME@SHA``, keyed by SHA and converter version."""
    from savedhub.convert import CONVERTER_VERSION

    name = f"{HF_SCHEME}://{handle.location}@{sha}"
    key = f"{name}#savedhub-converter={CONVERTER_VERSION}"
    return Handle(name, HandleKind.HUGGING_FACE, handle.location, key, revision=sha)


def _joined(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _refuse(handle: Handle, found: str) -> UnsupportedSourceError:
    from savedhub.convert import SUPPORTED

    return UnsupportedSourceError(
        f"Cannot convert {handle.original!r}: {found}. {SUPPORTED}", handle.original
    )


def _fetch(commit: RepoCommit, name: str) -> Path:
    """One file of ``commit``; a file other than the weights must be small to be read."""
    path = hf_fetch.download(commit, name)
    if not name.endswith(_WEIGHTS) and path.stat().st_size > SMALL_FILE_LIMIT:
        raise _refuse(
            commit.handle,
            f"its {name} is {path.stat().st_size} bytes, more than the "
            f"{SMALL_FILE_LIMIT >> 20} MiB a configuration or vocabulary file may be",
        )
    return path


def _fetch_source(commit: RepoCommit) -> Path:
    """Download what the converter needs, checking the architecture first; returns
    the snapshot folder (in Hugging Face's cache) holding them."""
    from savedhub import convert

    handle = commit.handle
    if "modules.json" not in commit.files:
        listing = ", ".join(sorted(commit.files)[:12]) or "nothing"
        raise _refuse(
            handle,
            f"the repository has no modules.json, so it is not a sentence-transformers "
            f"model (it holds: {listing})",
        )
    if "config.json" in commit.files:  # the usual layout: the Transformer at the root
        config_file = _fetch(commit, "config.json")
        convert.check_transformer_config(handle.original, config_file)
    snapshot = _fetch(commit, "modules.json").parent
    layout = convert.read_layout(snapshot)
    for folder in (layout.transformer, layout.pooling):
        if folder.startswith("/") or ".." in folder.split("/"):
            raise _refuse(
                handle, f"modules.json names the folder {folder!r} outside the repository"
            )
    transformer_config = _joined(layout.transformer, "config.json")
    if transformer_config not in commit.files:
        raise _refuse(handle, f"its Transformer module has no {transformer_config}")
    convert.check_transformer_config(handle.original, _fetch(commit, transformer_config))
    pooling_config = _joined(layout.pooling, "config.json")
    if pooling_config in commit.files:
        _fetch(commit, pooling_config)
    convert.check_pooling_config(handle.original, snapshot / layout.pooling)
    weights = _joined(layout.transformer, _WEIGHTS)
    if weights not in commit.files:
        others = sorted(f for f in commit.files if f.endswith((".bin", ".h5", ".onnx")))
        raise _refuse(
            handle,
            f"the repository has no {weights} (weights it has: {others or 'none'})",
        )
    wanted = [_joined(layout.transformer, name) for name in _TRANSFORMER_FILES]
    for name in [*_ROOT_FILES, *wanted]:
        if name in commit.files:
            _fetch(commit, name)
    return snapshot


def _convert_into(commit: RepoCommit, work: Path) -> Installed:
    """Fetch and convert ``commit`` into the work folder ``work``."""
    from savedhub import convert

    snapshot = _fetch_source(commit)
    source = convert.read_source(snapshot)
    origin = convert.Origin(
        repo=commit.repo,
        revision=commit.sha,
        requested=commit.handle.original,
        endpoint=commit.endpoint,
    )
    convert.convert_source(source, work, origin)
    return Installed.of_folder(
        work, url=f"{commit.endpoint}/{commit.repo}/tree/{commit.sha}", etag=commit.sha
    )


def _offline_copy(handle: Handle, cache: Cache, reason: str) -> str:
    sha = hf_fetch.cached_commit_sha(handle)
    found = cache.find(converted_handle(handle, sha)) if sha else None
    if found is not None:
        return str(found)
    known = (
        f"its revision resolves (in Hugging Face's cache) to {sha}, which is not converted in "
        f"savedhub's cache at {cache.root}"
        if sha
        else "its revision was never resolved on this machine"
    )
    raise NotCachedError(
        f"{handle.original!r} cannot be served: {reason}, and {known}. Run once with network "
        f"access (`savedhub download {handle.original}`), or pin a converted commit "
        f"(hf://{handle.location}@<sha>).",
        handle.original,
    )


def resolve_hf(handle: Handle, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The folder of ``handle`` converted into the cache (converting it first if needed).

    Raises:
        UnsupportedSourceError: the repository is not a model the converter
            builds; raised before its weights are downloaded.
        ModelNotFoundError: no such repository, revision or file.
        TransferError: a gated or private repository without access (the message
            says to set HF_TOKEN), or the Hub failed.
        NotCachedError: offline and not converted yet.
        MissingPackageError: huggingface_hub, tensorflow-text or safetensors missing.
    """
    cache = Cache(cache_dir)
    if config.hf_offline():
        return _offline_copy(handle, cache, "offline mode is on (SAVEDHUB_OFFLINE/HF_HUB_OFFLINE)")
    pinned = (
        handle.revision if handle.revision and hf_fetch.COMMIT_SHA.match(handle.revision) else None
    )
    if pinned:
        found = cache.find(converted_handle(handle, pinned))
        if found is not None:
            return str(found)  # a commit never changes: no request at all
    try:
        sha = hf_fetch.commit_sha(handle)
    except TransferError as exc:
        if exc.status is not None and exc.status < 500:
            raise
        try:
            path = _offline_copy(handle, cache, "the Hub could not be reached")
        except NotCachedError:
            raise exc from None
        message = f"{exc} Using the converted copy at {path}."
        logger.warning("%s", message)
        warnings.warn(message, CacheWarning, stacklevel=2)
        return path
    target = converted_handle(handle, sha)
    found = cache.find(target)
    if found is not None:
        return str(found)
    commit = hf_fetch.repo_commit(handle, sha)
    return str(cache.install(target, lambda work, _partial: _convert_into(commit, work)))
