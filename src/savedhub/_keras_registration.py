"""Make Keras find savedhub's KerasLayer in a ``.keras`` file, without import hooks.

Keras rebuilds a layer from a ``.keras`` file by looking its class up by its
registered name; neither Keras 3 nor tf_keras imports a module outside its
own packages to find one. So the class must be registered before
``load_model`` runs, and it is registered when its module is imported:

* on first use of ``hub.KerasLayer`` (or ``savedhub.keras_layer.Keras3Layer``
  / ``TFKerasLayer``), or of any lazy ``savedhub`` name (``hub.load`` ...);
* by ``import savedhub`` itself, with each Keras that is imported already.
  ``import tensorflow`` imports the Keras that ``tf.keras`` names (Keras 3,
  or tf_keras with ``TF_USE_LEGACY_KERAS=1``), so the usual order
  (``import tensorflow as tf`` / ``import keras``, then ``import savedhub``)
  needs nothing more.

The one order this cannot cover: ``import savedhub`` before TensorFlow and
Keras, then ``load_model`` without touching ``hub.KerasLayer``. Covering it
would need a hook on every import (``sys.meta_path``), which a library must
not install. Keras then says it cannot locate class 'KerasLayer'; mentioning
``hub.KerasLayer`` once before loading (or passing
``custom_objects={"KerasLayer": hub.KerasLayer}``, as with tensorflow_hub)
fixes it.

Registering only makes the class findable. Whether a file's layer may load
the SavedModel it carries is decided by Keras' safe mode (see
``keras_layer._layer_base``), never switched off by being imported.
"""

from __future__ import annotations

import importlib
import logging
import sys

logger = logging.getLogger("savedhub")

# Keras package -> the savedhub module whose import registers our layer in it.
LAYER_MODULES = {
    "keras": "savedhub.keras_layer._keras3",
    "tf_keras": "savedhub.keras_layer._tf_keras",
}


def register_imported_kerases() -> None:
    """Register the KerasLayer with each Keras that is imported already.

    Costs nothing when no Keras is imported (it imports none), so
    ``import savedhub`` stays free of TensorFlow.
    """
    for keras_package, layer_module in LAYER_MODULES.items():
        if keras_package not in sys.modules or layer_module in sys.modules:
            continue
        try:
            importlib.import_module(layer_module)
        except Exception:  # a half-installed Keras must not break `import savedhub`
            logger.debug(
                "could not register savedhub.KerasLayer with %s", keras_package, exc_info=True
            )
