"""savedhub: load, fine-tune and publish reusable TensorFlow SavedModels.

A drop-in successor to ``tensorflow_hub``::

    import savedhub as hub

    layer = hub.KerasLayer("https://hub.example.com/google/nnlm-en-dim128/2")
    obj = hub.load("/models/my_mul")
    path = hub.resolve(handle)

Publishing: ``hub.lint(dir)`` checks a SavedModel against the Reusable
SavedModel interface, ``hub.info(handle)`` describes one without restoring
it, ``hub.pack(dir, "model.tar.gz")`` makes a reproducible hub archive.

``import savedhub`` does not import TensorFlow; ``load``, ``KerasLayer``,
``lint``, ``info`` and ``pack`` bring it in on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from savedhub import _keras_registration
from savedhub.client.resolver import resolve
from savedhub.config import set_mirrors
from savedhub.errors import (
    CacheFullError,
    CacheLockTimeout,
    CacheWarning,
    ConfigError,
    IntegrityError,
    InvalidHandleError,
    KerasLayerError,
    MissingOpError,
    MissingPackageError,
    ModelNotFoundError,
    NotAnArchiveError,
    NotASavedModelError,
    NotCachedError,
    SavedhubError,
    TransferError,
    UnsafeArchiveError,
)

__version__ = "0.1.0"

__all__ = [
    "CacheFullError",
    "CacheLockTimeout",
    "CacheWarning",
    "ConfigError",
    "IntegrityError",
    "InvalidHandleError",
    "KerasLayer",
    "KerasLayerError",
    "MissingOpError",
    "MissingPackageError",
    "ModelNotFoundError",
    "NotASavedModelError",
    "NotAnArchiveError",
    "NotCachedError",
    "SavedhubError",
    "TransferError",
    "UnsafeArchiveError",
    "__version__",
    "info",
    "lint",
    "load",
    "pack",
    "resolve",
    "set_mirrors",
]

if TYPE_CHECKING:
    from savedhub.client.loading import load
    from savedhub.keras_layer import KerasLayer
    from savedhub.publish.info import info
    from savedhub.publish.lint import lint
    from savedhub.publish.pack import pack

_keras_registration.install()

_LAZY = {
    "load": "savedhub.client.loading",
    "KerasLayer": "savedhub.keras_layer",
    "info": "savedhub.publish.info",
    "lint": "savedhub.publish.lint",
    "pack": "savedhub.publish.pack",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'savedhub' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
