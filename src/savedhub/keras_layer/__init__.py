"""``hub.KerasLayer``: a SavedModel as a layer of whichever Keras ``tf.keras`` is.

``KerasLayer`` is the Keras 3 layer unless ``TF_USE_LEGACY_KERAS=1`` makes
``tf.keras`` mean ``tf_keras``; then it is the ``tf_keras`` layer. Code that
mixes both asks by name: ``Keras3Layer`` or ``TFKerasLayer``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["KerasLayer", "Keras3Layer", "TFKerasLayer", "uses_legacy_keras"]

_VARIANTS = {"Keras3Layer": "_keras3", "TFKerasLayer": "_tf_keras"}


def uses_legacy_keras() -> bool:
    """True when ``tf.keras`` resolves to ``tf_keras`` (TensorFlow's own rule)."""
    return os.environ.get("TF_USE_LEGACY_KERAS", "") in ("1", "true", "True")


def __getattr__(name: str) -> Any:
    if name == "KerasLayer":
        name = "TFKerasLayer" if uses_legacy_keras() else "Keras3Layer"
    module = _VARIANTS.get(name)
    if module is None:
        raise AttributeError(f"module 'savedhub.keras_layer' has no attribute {name!r}")
    return importlib.import_module(f"savedhub.keras_layer.{module}").KerasLayer
