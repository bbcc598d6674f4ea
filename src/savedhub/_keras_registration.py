"""Register savedhub's KerasLayer with Keras as soon as Keras is imported.

Keras finds a layer class from a ``.keras`` file only if the class was
registered before ``load_model`` runs, and it imports no modules outside its
own packages to find one. ``import savedhub`` must stay free of TensorFlow,
so it cannot define the layer up front; instead it asks Python to run the
registration right after ``keras`` (or ``tf_keras``) finishes importing —
which already brought TensorFlow in. Then ``import savedhub`` plus
``keras.models.load_model("model.keras")`` works in a fresh process, in
Keras' safe mode, with no ``custom_objects``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

logger = logging.getLogger("savedhub")

# Keras package -> the savedhub module whose import registers our layer in it.
LAYER_MODULES = {
    "keras": "savedhub.keras_layer._keras3",
    "tf_keras": "savedhub.keras_layer._tf_keras",
}


def _register(keras_package: str) -> None:
    try:
        importlib.import_module(LAYER_MODULES[keras_package])
    except Exception:  # never break the user's own import of Keras
        logger.debug("could not register savedhub.KerasLayer with %s", keras_package, exc_info=True)


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader, then registers our layer with the new module."""

    def __init__(self, loader: importlib.abc.Loader, keras_package: str) -> None:
        self._loader = loader
        self._keras_package = keras_package

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _register(self._keras_package)


class _KerasImportWatcher(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self._searching: set[str] = set()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in LAYER_MODULES or fullname in self._searching:
            return None
        self._searching.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._searching.discard(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _RegisteringLoader(spec.loader, fullname)
        return spec


def install() -> None:
    """Register now for a Keras already imported; watch for the others."""
    for keras_package in LAYER_MODULES:
        if keras_package in sys.modules:
            _register(keras_package)
    if not any(isinstance(finder, _KerasImportWatcher) for finder in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportWatcher())
