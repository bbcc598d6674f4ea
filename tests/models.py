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


# -- stand-ins for the tfhub.dev models of the TF Hub tutorials ---------------
# Same call signatures as the originals, a few thousand weights each.

IMAGE_SIZE = 16  # the originals take 224x224; the signature is what matters


class ImageModel(tf.train.Checkpoint):
    """Images ``[batch, 16, 16, 3]`` in [0, 1] -> a feature vector ``[batch, 12]``
    or, with ``num_classes``, logits: a convolution, batch normalization taking
    ``batch_norm_momentum`` (like the TF2 image models), ReLU and mean pooling.
    The moving statistics change only in training; the kernel has an L2 loss."""

    def __init__(self, num_classes: int | None = None, features: int = 12) -> None:
        super().__init__()
        rng = tf.random.Generator.from_seed(11)
        self.kernel = tf.Variable(rng.normal([3, 3, 3, features], stddev=0.3), name="kernel")
        self.gamma = tf.Variable(tf.ones([features]), name="gamma")
        self.beta = tf.Variable(tf.zeros([features]), name="beta")
        self.moving_mean = tf.Variable(tf.zeros([features]), trainable=False, name="moving_mean")
        self.moving_variance = tf.Variable(
            tf.ones([features]), trainable=False, name="moving_variance"
        )
        self.trainable_variables = [self.kernel, self.gamma, self.beta]
        if num_classes is not None:
            self.logits = tf.Variable(
                rng.normal([features, num_classes], stddev=0.3), name="logits"
            )
            self.trainable_variables.append(self.logits)
        self.variables = [*self.trainable_variables, self.moving_mean, self.moving_variance]
        self.regularization_losses = [
            tf.function(input_signature=[])(lambda: 1e-3 * tf.reduce_sum(tf.square(self.kernel)))
        ]
        self.__call__ = tf.function(self._call)
        image = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)
        for training in (False, True):
            for momentum in (0.99, 0.997):
                self.__call__.get_concrete_function(
                    image, training=training, batch_norm_momentum=momentum
                )

    def _call(
        self, images: tf.Tensor, training: bool = False, batch_norm_momentum: float = 0.99
    ) -> tf.Tensor:
        x = tf.nn.conv2d(images, self.kernel, strides=2, padding="SAME")
        if training:
            mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
            self.moving_mean.assign(
                batch_norm_momentum * self.moving_mean + (1 - batch_norm_momentum) * mean
            )
            self.moving_variance.assign(
                batch_norm_momentum * self.moving_variance + (1 - batch_norm_momentum) * variance
            )
        else:
            mean, variance = self.moving_mean, self.moving_variance
        x = tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, 1e-3)
        features = tf.reduce_mean(tf.nn.relu(x), axis=[1, 2])
        if hasattr(self, "logits"):
            return tf.matmul(features, self.logits)
        return features


def save_image_feature_vector(export_dir: str) -> str:
    tf.saved_model.save(ImageModel(), export_dir)
    return export_dir


def save_image_classifier(export_dir: str) -> str:
    tf.saved_model.save(ImageModel(num_classes=5), export_dir)
    return export_dir


class SentenceEncoder(tf.train.Checkpoint):
    """A Universal-Sentence-Encoder-style model: strings ``[batch]`` ->
    unit-length ``[batch, 16]``; hashed words, averaged; no ``training``
    argument, no trainable variables declared (like USE v4)."""

    def __init__(self, buckets: int = 200, dim: int = 16) -> None:
        super().__init__()
        rng = tf.random.Generator.from_seed(13)
        self.buckets = buckets
        self.embeddings = tf.Variable(rng.normal([buckets, dim]), name="embeddings")
        self.variables = [self.embeddings]
        self.trainable_variables = []
        self.regularization_losses = []

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, sentences: tf.Tensor) -> tf.Tensor:
        words = tf.strings.split(tf.strings.lower(sentences))
        rows = tf.gather(self.embeddings, tf.strings.to_hash_bucket_fast(words, self.buckets))
        return tf.math.l2_normalize(tf.reduce_mean(rows, axis=1), axis=-1)


def save_sentence_encoder(export_dir: str) -> str:
    tf.saved_model.save(SentenceEncoder(), export_dir)
    return export_dir


BERT_VOCABULARY = 100  # ids 0..3 are [PAD], [CLS], [SEP], [UNK]; word pieces hash into the rest
BERT_SEQ_LENGTH = 128


class BertPreprocessor(tf.train.Checkpoint):
    """The interface of the tfhub.dev BERT preprocessors:

    - ``tokenize(strings [batch])`` -> int32 RaggedTensor ``[batch, words, pieces]``
      (pieces: chunks of up to 4 bytes of each lower-cased word, hashed to ids);
    - ``bert_pack_inputs([segments], seq_length=128)`` -> the encoder's dict
      ``input_word_ids``, ``input_mask``, ``input_type_ids`` (int32 ``[batch, seq_length]``),
      each segment truncated to an equal share;
    - ``__call__(strings)``: both, for one segment and seq_length 128.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tokenize = tf.function(
            self._tokenize, input_signature=[tf.TensorSpec([None], tf.string)]
        )
        self.bert_pack_inputs = tf.function(self._pack)
        pieces = tf.RaggedTensorSpec([None, None, None], tf.int32, ragged_rank=2)
        for segments in (1, 2):
            self.bert_pack_inputs.get_concrete_function(
                [pieces] * segments, seq_length=BERT_SEQ_LENGTH
            )
        self.__call__ = tf.function(
            lambda text: self._pack([self._tokenize(text)], BERT_SEQ_LENGTH),
            input_signature=[tf.TensorSpec([None], tf.string)],
        )

    def _tokenize(self, text: tf.Tensor) -> tf.RaggedTensor:
        words = tf.strings.split(tf.strings.lower(text))
        flat = words.flat_values
        starts = tf.ragged.range(0, tf.strings.length(flat), 4)
        pieces = tf.strings.substr(
            tf.gather(flat, starts.value_rowids()),
            starts.flat_values,
            tf.ones_like(starts.flat_values) * 4,
        )
        ids = tf.strings.to_hash_bucket_fast(pieces, BERT_VOCABULARY - 4) + 4
        ids = tf.RaggedTensor.from_row_splits(tf.cast(ids, tf.int32), starts.row_splits)
        return words.with_flat_values(ids)

    def _pack(self, segments: list[tf.RaggedTensor], seq_length: int) -> dict[str, tf.Tensor]:
        share = (seq_length - 1 - len(segments)) // len(segments)
        batch = segments[0].nrows()
        cls = tf.ones([batch, 1], tf.int32)
        sep = 2 * tf.ones([batch, 1], tf.int32)
        word_ids, type_ids = [cls], [tf.zeros([batch, 1], tf.int32)]
        for kind, segment in enumerate(segments):
            tokens = segment.merge_dims(1, 2)[:, :share]
            word_ids += [tokens, sep]
            type_ids += [tf.ones_like(tokens) * kind, tf.ones([batch, 1], tf.int32) * kind]
        ids = tf.concat(word_ids, axis=1)
        shape = [None, seq_length]
        return {
            "input_word_ids": ids.to_tensor(shape=shape),
            "input_mask": tf.ones_like(ids).to_tensor(shape=shape),
            "input_type_ids": tf.concat(type_ids, axis=1).to_tensor(shape=shape),
        }


def save_bert_preprocessor(export_dir: str) -> str:
    tf.saved_model.save(BertPreprocessor(), export_dir)
    return export_dir


class BertEncoder(tf.train.Checkpoint):
    """The interface of the tfhub.dev BERT encoders: the packed dict in,
    ``pooled_output [batch, 16]``, ``sequence_output [batch, seq, 16]``,
    ``encoder_outputs`` (one layer) and ``default`` out; dropout in training."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        rng = tf.random.Generator.from_seed(17)
        self.word_embeddings = tf.Variable(rng.normal([BERT_VOCABULARY, hidden]), name="words")
        self.type_embeddings = tf.Variable(rng.normal([2, hidden], stddev=0.1), name="types")
        self.pooler = tf.Variable(rng.normal([hidden, hidden], stddev=hidden**-0.5), name="pool")
        self.variables = [self.word_embeddings, self.type_embeddings, self.pooler]
        self.trainable_variables = list(self.variables)
        self.regularization_losses = []
        self.__call__ = tf.function(self._call)
        ids = tf.TensorSpec([None, None], tf.int32)
        spec = {"input_word_ids": ids, "input_mask": ids, "input_type_ids": ids}
        for training in (False, True):
            self.__call__.get_concrete_function(spec, training=training)

    def _call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        sequence = tf.gather(self.word_embeddings, inputs["input_word_ids"]) + tf.gather(
            self.type_embeddings, inputs["input_type_ids"]
        )
        if training:
            sequence = tf.nn.dropout(sequence, 0.1, seed=1)
        mask = tf.cast(inputs["input_mask"], tf.float32)[..., tf.newaxis]
        mean = tf.reduce_sum(sequence * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1)
        pooled = tf.tanh(tf.matmul(mean, self.pooler))
        return {
            "pooled_output": pooled,
            "sequence_output": sequence,
            "encoder_outputs": [sequence],
            "default": pooled,
        }


def save_bert_encoder(export_dir: str) -> str:
    tf.saved_model.save(BertEncoder(), export_dir)
    return export_dir


class BagOfWords(tf.Module):
    """Strings ``[batch]`` -> a ``tf.SparseTensor`` ``[batch, 64]`` of hashed word counts."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text: tf.Tensor) -> tf.SparseTensor:
        ids = tf.strings.to_hash_bucket_fast(tf.strings.split(text), 64)
        indices = tf.stack([ids.value_rowids(), ids.flat_values], axis=1)
        counts = tf.ones_like(ids.flat_values, tf.float32)
        return tf.sparse.reorder(tf.SparseTensor(indices, counts, [ids.nrows(), 64]))


def save_bag_of_words(export_dir: str) -> str:
    tf.saved_model.save(BagOfWords(), export_dir)
    return export_dir
