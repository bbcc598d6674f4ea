"""What both KerasLayer variants share: how a loaded SavedModel is called.

``HubCallable`` decides, once, which function of the loaded object a layer
calls (``__call__``, a named signature, or the ``serve`` endpoint of a Keras 3
export), whether it takes ``training``, how its outputs are unwrapped, and
which variables and regularization losses it brings. The Keras-specific
classes only adapt this to their Layer API.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from savedhub.client.loading import function_origin, load, resolve_for_loading
from savedhub.errors import KerasLayerError
from savedhub.keras_layer._recording import gradients_can_flow_into, tapes_paused

# Endpoint that Keras 3's ``model.export()`` writes in place of ``__call__``.
KERAS_EXPORT_ENDPOINT = "serve"


def _describe(handle: object) -> str:
    return repr(handle) if isinstance(handle, (str, os.PathLike)) else type(handle).__name__


def to_shapes(output_shape: Any) -> Any:
    """A nest of shape-likes (tuples of int/None, TensorShapes) -> TensorShapes."""
    if output_shape is None:
        return None
    if isinstance(output_shape, Mapping):
        return {key: to_shapes(value) for key, value in output_shape.items()}
    if isinstance(output_shape, tf.TensorShape):
        return output_shape
    if isinstance(output_shape, (list, tuple)):
        if all(d is None or isinstance(d, (int, np.integer)) for d in output_shape):
            return tf.TensorShape(output_shape)
        return type(output_shape)(to_shapes(value) for value in output_shape)
    if isinstance(output_shape, (int, np.integer)):
        return tf.TensorShape([output_shape])
    raise KerasLayerError(
        f"output_shape must be a shape (a tuple of ints or None, without the batch "
        f"dimension) or a nest of them, got {output_shape!r}."
    )


def from_shapes(shapes: Any) -> Any:
    """TensorShapes -> plain tuples/lists, for get_config."""
    if shapes is None:
        return None
    if isinstance(shapes, Mapping):
        return {key: from_shapes(value) for key, value in shapes.items()}
    if isinstance(shapes, tf.TensorShape):
        return list(shapes.as_list())
    return [from_shapes(value) for value in shapes]


def _is_scalar_nest(x: Any) -> bool:
    if isinstance(x, (str, bytes, int, float, bool, np.generic)):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(_is_scalar_nest(i) for i in x)


def as_tensor_input(inputs: Any) -> Any:
    """Plain Python values and numpy string arrays -> tensors, in any nest.

    SavedModels that take text declare ``tf.string`` inputs; users pass lists
    of str or numpy ``<U``/object arrays, which neither TensorFlow (at a
    restored function's boundary) nor Keras 3 (which only takes tensors
    positionally) converts on its own. ``layer([10., 20.])`` from the guide
    must work too.
    """
    if _is_scalar_nest(inputs):
        return tf.constant(inputs)
    if isinstance(inputs, np.ndarray) and inputs.dtype.kind in "USO":
        return tf.constant(inputs.astype(object) if inputs.dtype.kind == "U" else inputs, tf.string)
    if isinstance(inputs, Mapping):
        return {key: as_tensor_input(value) for key, value in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(as_tensor_input(value) for value in inputs)
    return inputs


def pop_batch_input_shape(layer_kwargs: dict[str, Any]) -> tuple[int | None, ...] | None:
    """Take the legacy input-shape arguments out of Layer kwargs.

    ``input_shape`` (with an optional ``batch_size``), ``input_dim`` or
    ``batch_input_shape``, as tf_keras layers take them; returns the batch
    shape they describe, or None when none was given.
    """
    input_shape = layer_kwargs.pop("input_shape", None)
    input_dim = layer_kwargs.pop("input_dim", None)
    batch_input_shape = layer_kwargs.pop("batch_input_shape", None)
    batch_size = layer_kwargs.pop("batch_size", None)
    given = [
        name
        for name, value in (
            ("input_shape", input_shape),
            ("input_dim", input_dim),
            ("batch_input_shape", batch_input_shape),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise KerasLayerError(
            f"KerasLayer got {' and '.join(given)}: pass only one of input_shape, input_dim "
            "and batch_input_shape."
        )
    if batch_input_shape is not None:
        if batch_size is not None:
            raise KerasLayerError(
                "KerasLayer got batch_size and batch_input_shape: the batch size is the first "
                "entry of batch_input_shape, so pass only batch_input_shape."
            )
        return _shape_tuple(batch_input_shape, "batch_input_shape")
    if input_dim is not None:
        input_shape = (input_dim,)
    if input_shape is None:
        if batch_size is not None:
            raise KerasLayerError("KerasLayer got batch_size without input_shape.")
        return None
    return (batch_size, *_shape_tuple(input_shape, "input_shape"))


def _shape_tuple(shape: Any, name: str) -> tuple[int | None, ...]:
    if isinstance(shape, tf.TensorShape):
        shape = shape.as_list()
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if not isinstance(shape, (list, tuple)) or not all(
        d is None or isinstance(d, (int, np.integer)) for d in shape
    ):
        raise KerasLayerError(f"{name} must be a tuple of ints or None, got {shape!r}.")
    return tuple(None if d is None else int(d) for d in shape)


def traced_call(fn: Any) -> Any:
    """The restored function behind a callable: a restored object keeps its
    ``__call__`` (with its traces) as an instance attribute."""
    try:
        return vars(fn).get("__call__", fn)
    except TypeError:  # objects without __dict__
        return fn


def accepts_training(fn: Callable[..., Any]) -> bool:
    """Whether a restored function was traced with a ``training`` argument."""
    try:
        parameters = inspect.signature(traced_call(fn)).parameters
    except (TypeError, ValueError):
        return False
    return "training" in parameters


class HubCallable:
    """The loaded object and the way a KerasLayer calls it.

    Args mirror ``hub.KerasLayer``; see its docstring.
    """

    def __init__(
        self,
        handle: Any,
        *,
        trainable: bool,
        arguments: Mapping[str, Any] | None,
        signature: str | None,
        signature_outputs_as_dict: bool | None,
        output_key: str | None,
        output_shape: Any,
        load_options: Any,
        tags: Sequence[str] | None,
        loaded_attribute: str | None = None,
    ) -> None:
        if handle is None:
            raise KerasLayerError(
                "KerasLayer needs a handle: a model path or URL, or an object returned by "
                "hub.load()."
            )
        self.handle = handle
        self.arguments = dict(arguments or {})
        self.output_shape = to_shapes(output_shape)
        # The folder the model was read from (None for an already loaded object).
        self.path: str | None = None
        # For a function of a loaded object (``hub.load(url).tokenize``): the
        # attribute's name, and the handle that object was loaded from.
        self.loaded_attribute = loaded_attribute
        self.origin_handle: str | None = None
        # The object the function belongs to; it keeps the function's resources alive.
        self.root: Any = None
        self.loaded = self._load(handle, load_options, tags)
        self.is_tf1_hub_module = bool(getattr(self.loaded, "_is_hub_module_v1", False))

        if self.is_tf1_hub_module:
            signature = signature or "default"
            if not signature_outputs_as_dict:
                output_key = output_key or "default"
        self.signature = signature
        self.signature_outputs_as_dict = bool(signature_outputs_as_dict)
        self.output_key = output_key
        self._check_arguments(trainable)
        self.function, self.uses_signature = self._pick_function()
        self.takes_training = (not self.uses_signature) and accepts_training(self.function)
        # Whether any variable can be fine-tuned; if not, the layer is always frozen.
        self.fine_tunable = bool(self.variables()[0])
        if self.output_key is not None and not self.uses_signature and not self._returns_dict():
            raise KerasLayerError(
                f"output_key={self.output_key!r} picks one output of a dict, but "
                f"{_describe(self.handle)}'s __call__ does not return a dict. Drop output_key, "
                "or call a signature: signature='serving_default', output_key=..."
            )

    # -- construction ---------------------------------------------------

    def _load(self, handle: Any, load_options: Any, tags: Sequence[str] | None) -> Any:
        if isinstance(handle, (str, os.PathLike)):
            self.path = resolve_for_loading(handle)
            loaded = load(self.path, tags=tags, options=load_options)
            if self.loaded_attribute is None:
                return loaded
            self.root = loaded
            function = getattr(loaded, self.loaded_attribute, None)
            if not callable(function):
                raise KerasLayerError(
                    f"The model {_describe(handle)} has no function {self.loaded_attribute!r} "
                    "(the layer's config names it as loaded_attribute)."
                )
            return function
        origin = function_origin(handle)
        if origin is not None:
            self.root, self.origin_handle, self.path, self.loaded_attribute = origin
        if tags is not None or load_options is not None:
            raise KerasLayerError(
                "tags and load_options only apply when KerasLayer loads the model itself; "
                "it was given an already loaded object. Pass them to hub.load() instead."
            )
        if not (callable(handle) or hasattr(handle, "signatures")):
            raise KerasLayerError(
                f"KerasLayer handle must be a model path or URL, or an object returned by "
                f"hub.load(); got {type(handle).__name__}, which is neither callable nor has "
                "signatures."
            )
        return handle

    def _check_arguments(self, trainable: bool) -> None:
        if self.signature and (self.output_key is None) == (not self.signature_outputs_as_dict):
            raise KerasLayerError(
                f"KerasLayer(signature={self.signature!r}) returns the signature's output "
                "dict: set output_key='<name>' to pick one output, or "
                "signature_outputs_as_dict=True to get the whole dict (not both). "
                f"{self.signature!r} has outputs: {self.signature_output_names()}."
            )
        if not self.signature and self.signature_outputs_as_dict:
            raise KerasLayerError(
                "signature_outputs_as_dict=True is only valid together with signature=... "
                "(or for a model in the TF1 Hub format)."
            )
        self.check_trainable(trainable)

    def check_trainable(self, trainable: bool) -> None:
        """Raise if ``trainable=True`` cannot work for this model."""
        if not trainable:
            return
        if self.is_tf1_hub_module:
            raise KerasLayerError(
                f"KerasLayer({_describe(self.handle)}) is a model in the legacy TF1 Hub format, "
                "which cannot be fine-tuned in TF2: use trainable=False, or a TF2 SavedModel "
                "of the same model."
            )
        if self.signature:
            raise KerasLayerError(
                f"KerasLayer(signature={self.signature!r}, trainable=True) is not supported: "
                "signatures carry no training mode or regularization losses. Fine-tune "
                "through the model's __call__ (leave signature unset) or use trainable=False."
            )

    def _pick_function(self) -> tuple[Callable[..., Any], bool]:
        obj = self.loaded
        if self.signature:
            signatures = getattr(obj, "signatures", None)
            if not signatures:
                raise KerasLayerError(
                    f"KerasLayer(signature={self.signature!r}): the model "
                    f"{_describe(self.handle)} has no signatures."
                )
            if self.signature not in signatures:
                raise KerasLayerError(
                    f"KerasLayer(signature={self.signature!r}): unknown signature in "
                    f"{_describe(self.handle)}; it has: {sorted(signatures.keys())}."
                )
            return signatures[self.signature], True
        if callable(obj):
            return obj, False
        if hasattr(obj, KERAS_EXPORT_ENDPOINT) and callable(getattr(obj, KERAS_EXPORT_ENDPOINT)):
            return getattr(obj, KERAS_EXPORT_ENDPOINT), False
        signatures = sorted(getattr(obj, "signatures", {}) or {})
        raise KerasLayerError(
            f"The model {_describe(self.handle)} has no __call__ and no 'serve' endpoint. "
            + (
                f"Call one of its signatures: KerasLayer(handle, signature={signatures[0]!r}, "
                f"output_key=...) (signatures: {signatures})."
                if signatures
                else "It has no signatures either, so there is nothing to call."
            )
        )

    def input_spec(self) -> tf.TensorSpec | None:
        """The spec of the single input tensor the function was traced for, if
        there is exactly one (the same for every trace); else None."""
        if self.uses_signature:
            specs = list(self.function.structured_input_signature[1].values())  # type: ignore[attr-defined]
        else:
            specs = []
            for concrete in getattr(traced_call(self.function), "concrete_functions", None) or []:
                args = concrete.structured_input_signature[0]
                if args:
                    specs.append(args[0])
        specs = [s for s in specs if isinstance(s, tf.TensorSpec)]
        if not specs or any(s.dtype != specs[0].dtype for s in specs):
            return None
        return specs[0]

    def _returns_dict(self) -> bool:
        """Whether every trace of the called function returns a dict."""
        traces = getattr(traced_call(self.function), "concrete_functions", None) or []
        return bool(traces) and all(isinstance(c.structured_outputs, Mapping) for c in traces)

    def signature_output_names(self) -> list[str]:
        signatures = getattr(self.loaded, "signatures", None) or {}
        if self.signature not in signatures:
            return []
        return sorted(signatures[self.signature].structured_outputs.keys())

    def _signature_input_name(self) -> str:
        _, kwargs = self.function.structured_input_signature  # type: ignore[attr-defined]
        names = sorted(kwargs)
        if len(names) != 1:
            raise KerasLayerError(
                f"Signature {self.signature!r} takes several inputs {names}: pass a dict "
                "keyed by those names."
            )
        return str(names[0])

    # -- variables and losses ------------------------------------------

    def variables(self) -> tuple[list[tf.Variable], list[tf.Variable]]:
        """(trainable, non-trainable) variables of the loaded object, each once.

        Only ``__call__`` can be fine-tuned, so through a signature or a TF1
        Hub module every variable counts as non-trainable.
        """
        declared = list(getattr(self.loaded, "trainable_variables", None) or [])
        everything = list(getattr(self.loaded, "variables", None) or [])
        trainable = [] if (self.uses_signature or self.is_tf1_hub_module) else declared
        seen = {id(v) for v in trainable}
        non_trainable = []
        for v in everything + declared:
            if id(v) not in seen:
                seen.add(id(v))
                non_trainable.append(v)
        return trainable, non_trainable

    def regularization_losses(self) -> list[tf.Tensor]:
        """The model's regularization losses, each evaluated now."""
        fns = getattr(self.loaded, "regularization_losses", None) or []
        return [fn() for fn in fns]

    # -- calling --------------------------------------------------------

    def call(self, inputs: Any, training: Any, frozen: bool = False) -> Any:
        """Call the chosen function; ``training`` is a bool, a bool tensor, or None.

        ``frozen`` (the layer is not trainable) lets the call skip gradient
        recording when no gradient can flow through it (see ``_recording``).
        """
        inputs = as_tensor_input(inputs)
        frozen = frozen or not self.fine_tunable
        with tapes_paused(frozen and not gradients_can_flow_into(inputs)):
            result = self._call_function(inputs, training)
        return self._apply_output_shape(inputs, self._pick_output(result))

    def _call_function(self, inputs: Any, training: Any) -> Any:
        kwargs = dict(self.arguments)
        if self.uses_signature:
            if isinstance(inputs, Mapping):
                kwargs.update(inputs)
            else:
                kwargs[self._signature_input_name()] = inputs
            result = self.function(**kwargs)
        elif not self.takes_training or training is None:
            result = self.function(inputs, **kwargs)
        else:
            result = tf.__internal__.smart_cond.smart_cond(
                training,
                lambda: self.function(inputs, training=True, **kwargs),
                lambda: self.function(inputs, training=False, **kwargs),
            )
        return result

    def _pick_output(self, result: Any) -> Any:
        if self.signature_outputs_as_dict:
            return dict(result)
        if self.output_key is not None:
            if not isinstance(result, Mapping):
                raise KerasLayerError(
                    f"output_key={self.output_key!r} was set, but the model returned "
                    f"{type(result).__name__}, not a dict."
                )
            if self.output_key not in result:
                raise KerasLayerError(
                    f"output_key={self.output_key!r} is not among the model's outputs: "
                    f"{sorted(result.keys())}."
                )
            return result[self.output_key]
        if self.uses_signature is False and isinstance(result, Mapping) and len(result) == 1:
            return next(iter(result.values()))
        return result

    def _apply_output_shape(self, inputs: Any, outputs: Any) -> Any:
        if self.output_shape is None:
            return outputs
        batch = tf.nest.flatten(inputs)[0].shape[:1]

        def set_shape(tensor: tf.Tensor, shape: tf.TensorShape) -> tf.Tensor:
            tensor.set_shape(batch.concatenate(shape))
            return tensor

        return tf.nest.map_structure(set_shape, outputs, self.output_shape)

    def output_shape_for(self, input_shape: Any) -> Any:
        """compute_output_shape from ``output_shape``, or None if it was not given.

        The batch dimension is that of the (first) input.
        """
        if self.output_shape is None:
            return None
        first = tf.nest.flatten(input_shape)[0] if input_shape is not None else None
        if isinstance(first, tf.TensorShape):
            first = first.as_list()[0] if first.rank else None
        batch = tf.TensorShape([first])
        return tf.nest.map_structure(
            lambda shape: tuple(batch.concatenate(shape).as_list()), self.output_shape
        )

    # -- serialization --------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The layer-specific part of get_config: everything needed to load it again."""
        handle = self.origin_handle or self.handle
        if isinstance(handle, os.PathLike):
            handle = os.fspath(handle)
        if not isinstance(handle, str):
            raise KerasLayerError(
                "This KerasLayer was built from an already loaded object, so it has no "
                "handle to save in its config. Build it from a handle instead "
                "(hub.KerasLayer('path/or/url')) to save the model with model.save() or "
                "get_config()."
            )
        config: dict[str, Any] = {"handle": handle}
        if self.loaded_attribute is not None:
            config["loaded_attribute"] = self.loaded_attribute
        if self.arguments:
            config["arguments"] = dict(self.arguments)
        # A TF1 Hub module's "default" signature and output are implied.
        if self.signature and not (self.is_tf1_hub_module and self.signature == "default"):
            config["signature"] = self.signature
        if self.signature_outputs_as_dict:
            config["signature_outputs_as_dict"] = True
        if self.output_key is not None and not (
            self.is_tf1_hub_module and self.output_key == "default"
        ):
            config["output_key"] = self.output_key
        if self.output_shape is not None:
            config["output_shape"] = from_shapes(self.output_shape)
        return config
