"""``KerasLayer`` for ``tf_keras`` (Keras 2, what ``tf.keras`` is with TF_USE_LEGACY_KERAS=1)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras

from savedhub.keras_layer._layer_base import HubLayerBase


@tf_keras.saving.register_keras_serializable(package="savedhub")
class KerasLayer(HubLayerBase, tf_keras.layers.Layer):
    """Wraps a SavedModel as a ``tf_keras`` layer; same arguments and behaviour
    as the Keras 3 variant (``savedhub.keras_layer.Keras3Layer``)."""

    def _setup_layer(self, trainable: bool, **kwargs: Any) -> None:
        tf_keras.layers.Layer.__init__(self, trainable=trainable, **kwargs)
        trainable_vars, frozen_vars = self._hub.variables()
        for variable in trainable_vars:
            self._track_existing(variable, trainable=True)
        for variable in frozen_vars:
            self._track_existing(variable, trainable=False)
        for loss_fn in getattr(self._hub.loaded, "regularization_losses", None) or []:
            # A callable loss is evaluated whenever Keras collects losses, so it
            # follows later changes of layer.trainable.
            self.add_loss(self._loss_while_trainable(loss_fn))

    def _track_existing(self, variable: tf.Variable, trainable: bool) -> None:
        self.add_weight(
            name=variable.name.split(":")[0],
            shape=variable.shape,
            dtype=variable.dtype,
            trainable=trainable,
            getter=lambda *_, **__: variable,
        )

    def _loss_while_trainable(self, loss_fn: Any) -> Any:
        return lambda: loss_fn() if self.trainable else tf.constant(0.0)

    def call(self, inputs: Any, training: Any = None) -> Any:
        if not self.trainable:
            training = False
        elif training is None:
            training = tf_keras.backend.learning_phase()
        return self._hub.call(inputs, training, frozen=not self.trainable)

    def compute_output_shape(self, input_shape: Any) -> Any:
        shape = self._hub.output_shape_for(input_shape)
        if shape is not None:
            return tf.nest.map_structure(tf.TensorShape, shape, check_types=False)
        return super().compute_output_shape(input_shape)
