"""Handle -> a local (or TensorFlow-readable) SavedModel directory.

Local folders are used in place and checked; remote handles go through the
cache (``savedhub.client.remote``); folders on TensorFlow's own filesystems
(``gs://`` ...) are returned as they are and read in place by ``loading``.
"""

from __future__ import annotations

import os
from pathlib import Path

from savedhub.client import handles
from savedhub.client.handles import Handle, HandleKind
from savedhub.errors import ModelNotFoundError, NotASavedModelError

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_LISTED = 12


def _describe_contents(path: Path) -> str:
    names = sorted(os.listdir(path))
    if not names:
        return "it is empty"
    shown = ", ".join(n + ("/" if (path / n).is_dir() else "") for n in names[:_LISTED])
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return f"it holds: {shown}{more}"


def _nested_saved_model(path: Path) -> Path | None:
    """A SavedModel one level down, the usual result of extracting an archive
    that had an extra top folder."""
    for child in sorted(path.iterdir()):
        if child.is_dir() and any((child / f).is_file() for f in SAVED_MODEL_FILES):
            return child
    return None


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
        if path.name in SAVED_MODEL_FILES:
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
    if not any((path / f).is_file() for f in SAVED_MODEL_FILES):
        nested = _nested_saved_model(path)
        hint = (
            f" A SavedModel is one level down: pass {str(nested)!r}."
            if nested
            else " Save one with tf.saved_model.save(obj, path) or model.export(path)."
        )
        raise NotASavedModelError(
            "Trying to load a model of incompatible/unknown type. "
            f"'{path}' contains neither 'saved_model.pb' nor 'saved_model.pbtxt': "
            f"{shown!r} is not a SavedModel folder, it has no saved_model.pb or "
            f"saved_model.pbtxt ({_describe_contents(path)}).{hint}",
            shown,
        )
    return path


def resolve_handle(handle: Handle) -> str:
    """The directory to hand to ``tf.saved_model.load`` for a parsed handle."""
    if handle.kind is HandleKind.LOCAL:
        return str(check_saved_model_dir(handle.location, handle.original))
    if handle.kind is HandleKind.REMOTE_FS:
        return handle.location
    from savedhub.client import remote  # the cache and HTTP stack, only when needed

    return remote.resolve_remote(handle)


def resolve(handle: str | os.PathLike[str]) -> str:
    """Download (if needed) and cache a model, and return its local directory.

    Local folders are returned as they are; remote handles are fetched into
    the cache once and then served from it.

    Example:
        >>> path = resolve("/models/my_mul")

    Raises:
        InvalidHandleError, ModelNotFoundError, NotASavedModelError, and for
        remote handles TransferError, NotCachedError.
    """
    return resolve_handle(handles.parse(handle))
