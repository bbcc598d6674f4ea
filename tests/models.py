"""Builders of small, real SavedModels used across the tests.

Each function writes one model into ``export_dir`` and returns it. The
session-scoped fixtures in ``conftest.py`` call them once per test run.
"""

from __future__ import annotations

import os

import tensorflow as tf

from savedhub.demo.textmodel import save_text_embedding

__all__ = [
    "MyMulModel",
    "save_keras3_export",
    "save_my_mul",
    "save_text_embedding",
    "save_tf1_hub_module",
    "save_tf_keras_model",
]


class MyMulModel(tf.train.Checkpoint):
    """The guide's low-level Reusable SavedModel, verbatim in substance."""

    def __init__(self, v_init: float) -> None:
        super().__init__()
        self.v = tf.Variable(v_init)
        self.variables = [self.v]
        self.trainable_variables = [self.v]
        self.regularization_losses = [
            tf.function(input_signature=[])(lambda: 0.001 * self.v**2),
        ]

    @tf.function(input_signature=[tf.TensorSpec(shape=None, dtype=tf.float32)])
    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.multiply(inputs, self.v)


def save_my_mul(export_dir: str, v_init: float = 2.0) -> str:
    tf.saved_model.save(MyMulModel(v_init), export_dir)
    return export_dir


def save_keras3_export(export_dir: str) -> str:
    """A Keras 3 model written by ``model.export()``: a ``serve`` endpoint, no ``__call__``."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(4,), name="features")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(3, name="logits")(hidden)
    model = keras.Model(inputs, outputs)
    model.export(export_dir, verbose=False)
    return export_dir


def save_tf_keras_model(export_dir: str) -> str:
    """A tf_keras (Keras 2) model saved in the SavedModel format, with an L2 regularizer."""
    import tf_keras

    tf_keras.utils.set_random_seed(4)
    model = tf_keras.Sequential(
        [
            tf_keras.Input(shape=(4,)),
            tf_keras.layers.Dense(
                6,
                activation="relu",
                kernel_regularizer=tf_keras.regularizers.l2(0.01),
                name="hidden",
            ),
            tf_keras.layers.Dropout(0.5),
            tf_keras.layers.Dense(2, name="logits"),
        ]
    )
    model.save(export_dir, save_format="tf", include_optimizer=False)
    return export_dir


TF1_HUB_MODULE_DEF = b"\x08\x03"  # ModuleDef{format: FORMAT_V3}, what hub.Module wrote


def save_tf1_hub_module(export_dir: str) -> str:
    """A legacy TF1 Hub format module: a graph under the empty tag set with a
    ``default`` signature ``y = x * w + b``, and ``tfhub_module.pb`` beside it."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=[None, 2], name="x")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant([[1.0], [2.0]]))
        b = tf.compat.v1.get_variable("b", initializer=tf.constant([0.5]))
        y = tf.matmul(x, w) + b
        signature = tf.compat.v1.saved_model.predict_signature_def(
            inputs={"x": x}, outputs={"default": y}
        )
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(export_dir)
            builder.add_meta_graph_and_variables(
                session, tags=[], signature_def_map={"default": signature}, strip_default_attrs=True
            )
            builder.save()
    with open(os.path.join(export_dir, "tfhub_module.pb"), "wb") as f:
        f.write(TF1_HUB_MODULE_DEF)
    return export_dir


class DictModel(tf.train.Checkpoint):
    """Takes a dict of tensors and returns a dict: nested inputs and outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable([[1.0], [-1.0]])
        self.variables = [self.w]
        self.trainable_variables = [self.w]
        self.regularization_losses = []

    @tf.function(
        input_signature=[
            {
                "x": tf.TensorSpec([None, 2], tf.float32),
                "scale": tf.TensorSpec([None, 1], tf.float32),
            }
        ]
    )
    def __call__(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        projected = tf.matmul(inputs["x"], self.w)
        return {"projected": projected, "scaled": projected * inputs["scale"]}


def save_dict_model(export_dir: str) -> str:
    tf.saved_model.save(DictModel(), export_dir)
    return export_dir


class TokenIdEmbedding(tf.train.Checkpoint):
    """Token ids ``[batch, length]`` int32 -> ``[batch, 8]``: the mean of the
    rows of non-padding ids (0 pads), through a projection."""

    def __init__(self, vocabulary_size: int = 50, dim: int = 8) -> None:
        super().__init__()
        rng = tf.random.Generator.from_seed(5)
        self.embeddings = tf.Variable(rng.normal([vocabulary_size, dim]), name="embeddings")
        self.projection = tf.Variable(rng.normal([dim, dim], stddev=dim**-0.5), name="projection")
        self.variables = [self.embeddings, self.projection]
        self.trainable_variables = [self.embeddings, self.projection]
        self.regularization_losses = []

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def __call__(self, token_ids: tf.Tensor) -> tf.Tensor:
        mask = tf.cast(tf.not_equal(token_ids, 0), tf.float32)[..., tf.newaxis]
        rows = tf.nn.embedding_lookup(self.embeddings, token_ids) * mask
        mean = tf.reduce_sum(rows, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        return tf.matmul(mean, self.projection)


def save_token_id_embedding(export_dir: str) -> str:
    tf.saved_model.save(TokenIdEmbedding(), export_dir)
    return export_dir
