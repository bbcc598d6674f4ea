"""Output specs of a Keras 3 hub layer, ragged and sparse tensors included.

Keras 3 works out a layer's output in a functional model by tracing its
``call`` on placeholders made from the input KerasTensors; its TensorFlow
backend makes dense (or sparse) placeholders only and turns every output into
a dense KerasTensor. Hub models pass ``tf.RaggedTensor``s between each other
(BERT's ``tokenize`` -> ``bert_pack_inputs``), so this traces with ragged
placeholders where a KerasTensor is ragged, and returns ragged KerasTensors
(with their ``ragged_rank`` and row-splits dtype) where the model returns
RaggedTensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf


def _placeholder(x: Any) -> Any:
    """A graph placeholder standing for one KerasTensor (other values pass through)."""
    if not isinstance(x, keras.KerasTensor):
        return x
    if x.sparse:
        return tf.compat.v1.sparse_placeholder(shape=x.shape, dtype=x.dtype)
    if not x.ragged:
        return tf.compat.v1.placeholder(shape=x.shape, dtype=x.dtype)
    ragged_rank = x.ragged_rank if x.ragged_rank is not None else len(x.shape) - 1
    splits_dtype = x.row_splits_dtype or "int64"
    values = tf.compat.v1.placeholder(shape=(None, *x.shape[ragged_rank + 1 :]), dtype=x.dtype)
    splits = [
        tf.compat.v1.placeholder(shape=(None,), dtype=splits_dtype) for _ in range(ragged_rank)
    ]
    return tf.RaggedTensor.from_nested_row_splits(values, splits, validate=False)


def _keras_tensor(x: Any) -> Any:
    """The KerasTensor describing one traced output (other values pass through)."""
    if isinstance(x, tf.RaggedTensor):
        return keras.KerasTensor(
            tuple(x.shape.as_list()),
            dtype=x.dtype.name,
            ragged=True,
            ragged_rank=x.ragged_rank,
            row_splits_dtype=x.row_splits.dtype.name,
        )
    if isinstance(x, tf.SparseTensor):
        return keras.KerasTensor(tuple(x.shape.as_list()), dtype=x.dtype.name, sparse=True)
    if tf.is_tensor(x):
        return keras.KerasTensor(tuple(x.shape.as_list()), dtype=x.dtype.name)
    return x


def trace_output_spec(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``call`` on placeholders for the KerasTensors in ``args``/``kwargs``
    (in any nest), in a scratch graph; return KerasTensors for its outputs."""
    with tf.__internal__.FuncGraph("savedhub_output_spec").as_default():
        args, kwargs = tf.nest.map_structure(_placeholder, (args, kwargs))
        outputs = call(*args, **kwargs)
        return tf.nest.map_structure(_keras_tensor, outputs)
