"""``KerasLayer`` for Keras 3 (what ``tf.keras`` is on TensorFlow 2.16+)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from savedhub.keras_layer._common import as_tensor_input, pop_batch_input_shape
from savedhub.keras_layer._keras3_tracing import trace_output_spec
from savedhub.keras_layer._layer_base import HubLayerBase


@keras.saving.register_keras_serializable(package="savedhub")
class KerasLayer(HubLayerBase, keras.layers.Layer):
    """Wraps a SavedModel as a Keras 3 layer, like ``tensorflow_hub.KerasLayer``.

    The layer calls the model's ``__call__`` (or a named signature, or the
    ``serve`` endpoint of a Keras 3 export) and tracks the loaded object's own
    variables as its weights: training updates them in place, so
    ``tf.saved_model.save(layer.resolved_object, path)`` exports fine-tuned
    weights.

    Args:
        handle: a model path or URL, or an object returned by ``hub.load``.
        trainable: fine-tune the model's trainable variables, add its
            regularization losses and call it with ``training=True`` in ``fit``.
        arguments: extra keyword arguments passed on every call.
        signature: call this signature instead of ``__call__`` (not trainable).
        signature_outputs_as_dict: with ``signature``, return the whole output dict.
        output_key: with ``signature``, return only this output.
        output_shape: output shape without the batch dimension (a nest for
            several outputs), for models whose outputs have unknown shapes.
        load_options: a ``tf.saved_model.LoadOptions`` used when loading ``handle``.
        tags: MetaGraph tags to load (legacy TF1 Hub format models).
        **kwargs: Layer arguments (``name``, ``dtype``, ...).

    Example:
        >>> embed = hub.KerasLayer("/models/text_embedding", trainable=True)
        >>> model = keras.Sequential([embed, keras.layers.Dense(1)])
    """

    def _setup_layer(self, trainable: bool, **kwargs: Any) -> None:
        spec = self._hub.input_spec()
        # The dtype of non-float inputs (strings, token ids), for tracing.
        self._hub_input_dtype = (
            spec.dtype.name if spec is not None and not spec.dtype.is_floating else None
        )
        self._hub_batch_input_shape = pop_batch_input_shape(kwargs)
        keras.layers.Layer.__init__(self, trainable=trainable, **kwargs)
        trainable_vars, frozen_vars = self._hub.variables()
        # Keras variables that alias (not copy) the loaded tf.Variables.
        for variable in trainable_vars:
            self._track_existing(variable, trainable=True)
        for variable in frozen_vars:
            self._track_existing(variable, trainable=False)
        self.built = True

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """The batch input shape given by ``input_shape``/``input_dim``/``batch_input_shape``.

        Keras 3's ``Sequential`` turns a first layer's ``input_shape`` into a
        float32 ``InputLayer``, whatever the layer takes, so strings then fail
        in ``fit`` ("Cast string to float"). This layer keeps the argument to
        itself and offers this property instead, from which ``Sequential``
        builds its Input with the layer's dtype (the SavedModel's input dtype).
        """
        if self._hub_batch_input_shape is None:
            raise AttributeError(
                "This KerasLayer was made without input_shape, input_dim or batch_input_shape."
            )
        return self._hub_batch_input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self._hub_batch_input_shape is not None:
            config["batch_input_shape"] = list(self._hub_batch_input_shape)
        return config

    def _track_existing(self, variable: tf.Variable, trainable: bool) -> None:
        wrapped = keras.Variable(
            initializer=variable,
            trainable=trainable,
            dtype=variable.dtype,
            shape=variable.shape,
            name=variable.name.split(":")[0].replace("/", "_"),
        )
        self._track_variable(wrapped)

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        # Keras 3 only accepts tensors positionally; the original layer took
        # lists of numbers or strings (``layer([10., 20.])`` in the guide).
        return super().__call__(as_tensor_input(inputs), *args, **kwargs)

    def call(self, inputs: Any, training: Any = None) -> Any:
        # Like BatchNormalization: a frozen layer always runs in inference mode.
        if not self.trainable:
            training = False
        return self._hub.call(inputs, training, frozen=not self.trainable)

    def _get_own_losses(self) -> list[Any]:
        # The SavedModel's regularization losses count while the layer is
        # trainable, wherever Keras collects losses (layer.losses, model.losses).
        losses = list(super()._get_own_losses())
        if self.trainable:
            losses = losses + self._hub.regularization_losses()
        return losses

    def compute_output_shape(self, input_shape: Any) -> Any:
        shape = self._hub.output_shape_for(input_shape)
        if shape is not None:
            return shape
        spec = self.compute_output_spec(keras.KerasTensor(input_shape, dtype="float32"))
        return tf.nest.map_structure(lambda t: t.shape, spec)

    def compute_output_spec(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        # Trace the real function (dtypes included), not compute_output_shape,
        # with inputs of the dtype the SavedModel takes.
        if self._hub_input_dtype is not None and isinstance(inputs, keras.KerasTensor):
            inputs = keras.KerasTensor(inputs.shape, dtype=self._hub_input_dtype)
        return trace_output_spec(self.call, inputs, *args, **kwargs)
