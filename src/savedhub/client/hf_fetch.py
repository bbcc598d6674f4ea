"""The Hugging Face Hub, through ``huggingface_hub``: a repository's commit and its files.

This is the one module that calls ``huggingface_hub`` (imported here lazily,
so ``import savedhub`` never loads it) and the one boundary where its
exceptions become savedhub's. Files land in Hugging Face's own cache, so
HF's resume, ETags, token (``HF_TOKEN``) and mirrors (``HF_ENDPOINT``) apply;
savedhub passes the endpoint and cache folder explicitly because
``huggingface_hub`` reads those variables only once, at import.

Example:
    >>> handle = handles.parse("hf://sentence-transformers/all-MiniLM-L6-v2")
    >>> commit = repo_commit(handle, commit_sha(handle))
    >>> download(commit, "config.json")
    PosixPath('/home/me/.cache/huggingface/hub/models--sentence-transformers--.../config.json')
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tqdm

from savedhub import config
from savedhub.client.handles import Handle
from savedhub.errors import (
    MissingPackageError,
    ModelNotFoundError,
    NotCachedError,
    TransferError,
)

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class RepoCommit:
    """One commit of a model repository, as the Hub (or its mirror) describes it.

    Attributes:
        handle: the ``hf://`` handle it was resolved for.
        repo: ``ORG/NAME``.
        sha: the commit's 40-hex SHA.
        files: every file path in the repository at that commit.
        endpoint: the Hub that answered.
    """

    handle: Handle
    repo: str
    sha: str
    files: frozenset[str]
    endpoint: str


def _require_hub(handle: Handle) -> None:
    if importlib.util.find_spec("huggingface_hub") is None:
        raise MissingPackageError(
            f"Loading {handle.original!r} needs the package 'huggingface_hub', which is not "
            "installed. Install it with: pip install huggingface_hub "
            "(or pip install 'savedhub[hf]').",
            package="huggingface_hub",
        )


def _token_advice(status: int | None) -> str:
    import os

    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return (
            "The token in HF_TOKEN was sent but does not give access: accept the model's "
            "conditions on its Hub page with that account, or set HF_TOKEN to a token of an "
            "account that has access."
        )
    return (
        "Set HF_TOKEN to an access token of a Hugging Face account that has access "
        "(https://huggingface.co/settings/tokens; for a gated model, first accept its "
        f"conditions on its page). HTTP {status}."
    )


@contextlib.contextmanager
def _translated(handle: Handle, what: str) -> Iterator[None]:
    """Turn huggingface_hub's and its HTTP client's exceptions into savedhub's."""
    import httpx2
    from huggingface_hub import errors as hf

    endpoint = config.hf_endpoint()
    try:
        yield
    except hf.GatedRepoError as exc:
        status = exc.response.status_code if exc.response is not None else None
        raise TransferError(
            f"{handle.original!r} is a gated repository on {endpoint}: {what} was refused. "
            f"{_token_advice(status)}",
            endpoint,
            status,
        ) from exc
    except hf.RepositoryNotFoundError as exc:
        raise ModelNotFoundError(
            f"No model repository {handle.location!r} on {endpoint} for {handle.original!r} "
            "(or it is private). Check the name; for a private repository set HF_TOKEN to a "
            "token that can read it.",
            handle.original,
        ) from exc
    except hf.RevisionNotFoundError as exc:
        raise ModelNotFoundError(
            f"{handle.location!r} on {endpoint} has no revision {handle.revision!r} "
            f"({handle.original!r}). Use a branch, tag or commit SHA the repository has.",
            handle.original,
        ) from exc
    except hf.RemoteEntryNotFoundError as exc:
        raise ModelNotFoundError(
            f"{handle.original!r}: {what} is not in the repository on {endpoint}.",
            handle.original,
        ) from exc
    except (hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError) as exc:
        raise NotCachedError(
            f"{handle.original!r}: {what} is not in Hugging Face's cache and offline mode "
            "(HF_HUB_OFFLINE=1 when huggingface_hub was imported) forbids downloading it. "
            "Unset HF_HUB_OFFLINE and run once with network access.",
            handle.original,
        ) from exc
    except hf.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        advice = _token_advice(status) if status in (401, 403) else "Try again later."
        raise TransferError(
            f"{endpoint} answered HTTP {status} to {what} for {handle.original!r}. {advice}",
            endpoint,
            status,
        ) from exc
    except (httpx2.TransportError, hf.FileMetadataError, hf.RevisionResolutionError) as exc:
        raise TransferError(
            f"{endpoint} could not be reached for {what} of {handle.original!r} ({exc}). "
            "Check the network, or HF_ENDPOINT if you use a mirror.",
            endpoint,
        ) from exc


def _api() -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=config.hf_endpoint())


def commit_sha(handle: Handle) -> str:
    """Ask the Hub which commit ``handle``'s revision names now (one request; the answer
    is also noted in Hugging Face's cache of refs, which offline runs read).

    Raises:
        ModelNotFoundError: no such repository (or private) or revision.
        TransferError: refused (the message says to set HF_TOKEN), or the Hub failed.
        MissingPackageError: huggingface_hub is not installed.
    """
    _require_hub(handle)
    with _translated(handle, "resolving its revision"):
        resolved = _api().resolve_revision(
            handle.location, revision=handle.revision, cache_dir=str(config.hf_cache_dir())
        )
    sha = str(resolved.resolved)
    if not COMMIT_SHA.match(sha):
        raise TransferError(
            f"{config.hf_endpoint()} resolved {handle.original!r} to {sha!r}, not a commit "
            "SHA; is HF_ENDPOINT a Hugging Face Hub?",
            config.hf_endpoint(),
        )
    return sha


def repo_commit(handle: Handle, sha: str) -> RepoCommit:
    """The files of ``handle``'s repository at commit ``sha`` (one request).

    Raises:
        ModelNotFoundError, TransferError, MissingPackageError: as :func:`commit_sha`.
    """
    _require_hub(handle)
    with _translated(handle, "the repository's file list"):
        info = _api().model_info(handle.location, revision=sha)
    files = frozenset(s.rfilename for s in info.siblings or ())
    return RepoCommit(handle, handle.location, sha, files, config.hf_endpoint())


def cached_commit_sha(handle: Handle) -> str | None:
    """The commit SHA ``handle``'s revision pointed to when Hugging Face's cache last
    saw it (no network), or None. A revision that is a commit SHA is its own answer."""
    if handle.revision and COMMIT_SHA.match(handle.revision):
        return handle.revision
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import errors as hf

    try:
        resolved = _api().resolve_revision(
            handle.location,
            revision=handle.revision,
            cache_dir=str(config.hf_cache_dir()),
            local_files_only=True,
        )
    except (hf.RevisionResolutionError, OSError):
        return None
    sha = str(resolved.resolved)
    return sha if COMMIT_SHA.match(sha) else None


def download(commit: RepoCommit, filename: str) -> Path:
    """One file of ``commit``, fetched into Hugging Face's cache (or found there).

    Raises:
        ModelNotFoundError, TransferError, NotCachedError: as :func:`repo_commit`.
    """
    from huggingface_hub import hf_hub_download

    # huggingface_hub draws its bars on a terminal; SAVEDHUB_DISABLE_PROGRESS=1 silences them.
    quiet: Any = None if config.show_progress() else functools.partial(tqdm.tqdm, disable=True)
    with _translated(commit.handle, filename):
        path = hf_hub_download(
            commit.repo,
            filename,
            revision=commit.sha,
            cache_dir=str(config.hf_cache_dir()),
            endpoint=commit.endpoint,
            tqdm_class=quiet,
        )
    return Path(path)
