"""``load()``: resolve a handle, then ``tf.saved_model.load`` it.

This is the lowest module that imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from savedhub._savedmodel.folder import GRAPH_FILES, TF1_HUB_MODULE_FILE
from savedhub.client import handles, ops
from savedhub.client.handles import HandleKind
from savedhub.client.resolver import resolve_handle
from savedhub.errors import ModelNotFoundError, NotASavedModelError

# Which handle and folder each object returned by load() came from, so that a
# KerasLayer made from one of its functions (``obj.tokenize``) can name it in
# its config and embed the folder in a .keras file.
_LOADED_FROM: weakref.WeakKeyDictionary[Any, tuple[str, str]] = weakref.WeakKeyDictionary()


def is_tf1_hub_module(path: str) -> bool:
    """True for a model in the legacy TF1 Hub format (``tfhub_module.pb`` beside the graph)."""
    return bool(tf.io.gfile.exists(os.path.join(path, TF1_HUB_MODULE_FILE)))


def _check_remote_folder(path: str, handle: object) -> None:
    # The first sentence of each message is tensorflow_hub's.
    if not tf.io.gfile.exists(path):
        raise ModelNotFoundError(
            f"{handle} does not exist. No model at {handle!r}: TensorFlow's filesystem finds "
            f"nothing at {path!r}. Check the bucket and path, and your credentials for "
            "that storage.",
            handle,
        )
    if not any(tf.io.gfile.exists(os.path.join(path, f)) for f in GRAPH_FILES):
        raise NotASavedModelError(
            "Trying to load a model of incompatible/unknown type. "
            f"'{path}' contains neither 'saved_model.pb' nor 'saved_model.pbtxt'. "
            "Point the handle at the folder the model was saved to.",
            handle,
        )


def resolve_for_loading(
    handle: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> str:
    """Resolve ``handle`` to a directory that ``tf.saved_model.load`` can read."""
    parsed = handles.parse(handle)
    path = resolve_handle(parsed, cache_dir)
    if parsed.kind is HandleKind.REMOTE_FS or "://" in path:
        _check_remote_folder(path, parsed.original)
    return path


def load(
    handle: str | os.PathLike[str],
    tags: Sequence[str] | set[str] | None = None,
    options: tf.saved_model.LoadOptions | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Resolve a handle and load the SavedModel, as ``tf.saved_model.load`` would.

    Args:
        handle: a folder path, ``file://`` URL, model URL, ``gs://``-style folder, or
            ``hf://ORG/NAME[@REVISION]`` (converted into the cache on first use).
        tags: MetaGraph tags to load. ``None`` picks the model's default; for a
            legacy TF1 Hub format module that is the empty tag set.
        options: a ``tf.saved_model.LoadOptions``, passed through.
        cache_dir: the cache root for this call (default: SAVEDHUB_CACHE_DIR,
            TFHUB_CACHE_DIR, else the user's cache folder).

    Returns:
        The restored object: call it (``obj(x, training=False)``), use
        ``obj.signatures``, ``obj.variables``, ``obj.trainable_variables``.

    Example:
        >>> obj = load("/models/my_mul")
        >>> obj(tf.constant([10.0, 20.0]))  # [20., 40.]
    """
    path = resolve_for_loading(handle, cache_dir)
    tf1_module = is_tf1_hub_module(path)
    if tags is None and tf1_module:
        tags = []
    obj = ops.call_importing_ops(
        lambda: tf.saved_model.load(path, tags=tags, options=options), handle
    )
    # The attribute tensorflow_hub sets, so code written for it (and our
    # KerasLayer) can tell a legacy module apart.
    obj._is_hub_module_v1 = tf1_module
    with contextlib.suppress(TypeError):  # an object that cannot be weakly referenced
        _LOADED_FROM[obj] = (os.fspath(handle), path)
    return obj


def function_origin(fn: object) -> tuple[Any, str, str, str] | None:
    """``(object, handle, folder, attribute)`` when ``fn`` is a function
    attribute of an object that ``load()`` returned (``load(handle).attribute``);
    else None."""
    for root, (handle, path) in list(_LOADED_FROM.items()):
        for name, value in vars(root).items():
            if value is fn and not name.startswith("_"):
                return root, handle, path, name
    return None
