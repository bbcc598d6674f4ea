"""Handle -> a local (or TensorFlow-readable) SavedModel directory.

Local folders are used in place and checked; remote handles go through the
cache (``savedhub.client.remote``); ``hf://`` repositories are converted into
the cache (``savedhub.client.hf``); folders on TensorFlow's own filesystems
(``gs://`` ...) are returned as they are and read in place by ``loading``.
"""

from __future__ import annotations

import os
from pathlib import Path

from savedhub._savedmodel import folder
from savedhub.client import handles
from savedhub.client.handles import Handle, HandleKind
from savedhub.errors import ModelNotFoundError, NotASavedModelError


def check_saved_model_dir(path: str | os.PathLike[str], handle: object = None) -> Path:
    """Return ``path`` if it is a SavedModel directory, else raise an error that says why.

    Raises:
        ModelNotFoundError: nothing exists at ``path``.
        NotASavedModelError: ``path`` is a file, or a folder with no ``saved_model.pb``.
    """
    shown = handle if handle is not None else path
    path = Path(path)
    if not path.exists():
        # The first sentence of this message and the one below is tensorflow_hub's.
        raise ModelNotFoundError(
            f"{shown} does not exist. No model at {shown!r}: the path {str(path)!r} does "
            "not exist. Check the spelling, or pass a model URL (https://...) to download one.",
            shown,
        )
    if path.is_file():
        if path.name.endswith(handles.ARCHIVE_SUFFIXES):
            raise NotASavedModelError(
                f"{shown!r} is a compressed archive, but a SavedModel folder is expected. "
                f"Extract it first (mkdir model && tar -xzf {path.name} -C model) and pass "
                "the folder, or pass the archive's http(s):// URL to have savedhub "
                "download and cache it.",
                shown,
            )
        if path.name in folder.GRAPH_FILES:
            raise NotASavedModelError(
                f"{shown!r} is the SavedModel's graph file; pass the folder that holds it: "
                f"{str(path.parent)!r}.",
                shown,
            )
        raise NotASavedModelError(
            f"{shown!r} is a file, but a SavedModel folder (with saved_model.pb and "
            "variables/) is expected. Pass the folder the model was saved to.",
            shown,
        )
    if not folder.has_graph(path):
        contents = folder.describe_contents(path)
        held = "it is empty" if contents == "nothing" else f"it holds: {contents}"
        raise NotASavedModelError(
            "Trying to load a model of incompatible/unknown type. "
            f"'{path}' contains neither 'saved_model.pb' nor 'saved_model.pbtxt': "
            f"{shown!r} is not a SavedModel folder, it has no saved_model.pb or "
            f"saved_model.pbtxt ({held}). {folder.nested_hint(path)}",
            shown,
        )
    return path


def resolve_handle(handle: Handle, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The directory to hand to ``tf.saved_model.load`` for a parsed handle
    (remote ones cached under ``cache_dir``, else :func:`savedhub.config.cache_dir`)."""
    if handle.kind is HandleKind.LOCAL:
        return str(check_saved_model_dir(handle.location, handle.original))
    if handle.kind is HandleKind.REMOTE_FS:
        return handle.location
    if handle.kind is HandleKind.HUGGING_FACE:
        from savedhub.client import hf  # huggingface_hub and the converter, only when needed

        return hf.resolve_hf(handle, cache_dir)
    from savedhub.client import remote  # the cache and HTTP stack, only when needed

    return remote.resolve_remote(handle, cache_dir)


def resolve(
    handle: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> str:
    """Download (if needed) and cache a model, and return its local directory.

    Local folders are returned as they are; remote handles are fetched into
    the cache once and then served from it.

    Args:
        handle: a folder path, ``file://`` URL, model URL, ``gs://``-style folder, or
            ``hf://ORG/NAME[@REVISION]`` (a sentence-transformers BERT repository on
            the Hugging Face Hub, converted into the cache on first use).
        cache_dir: the cache root for this call; by default SAVEDHUB_CACHE_DIR,
            TFHUB_CACHE_DIR, else the user's cache folder.

    Example:
        >>> path = resolve("/models/my_mul")
        >>> path = resolve("https://hub.example/google/my_mul/1", cache_dir="/data/models")

    Raises:
        InvalidHandleError, ModelNotFoundError, NotASavedModelError, and for
        remote handles TransferError, NotCachedError.
    """
    return resolve_handle(handles.parse(handle), cache_dir)
