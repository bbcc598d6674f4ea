"""A small text-embedding model that follows the Reusable SavedModel interface.

It stands in for a pretrained hub model where no network is available: the
demo publishes it, and the tests use it as the string-input fixture. It has
everything a real one has: a vocabulary asset, an in-graph tokenizer, an
embedding table, a dropout active only in training, an L2 regularization loss,
``__call__(inputs, training=False)`` traced for both ``training`` values and a
``serving_default`` signature.
"""

from __future__ import annotations

import os
import tempfile

import tensorflow as tf

DEFAULT_VOCABULARY = (
    "the a an is was it this that and or but not no very so too of to in on for with "
    "good great excellent wonderful lovely amazing fantastic best love loved like enjoyed "
    "fun happy brilliant superb perfect nice delightful beautiful charming "
    "bad terrible awful horrible worst hate hated boring dull poor waste sad "
    "disappointing mediocre ugly annoying broken slow rude "
    "movie film book food service place story music show game weather day"
).split()


class TextEmbedding(tf.train.Checkpoint):
    """Maps a batch of strings to ``[batch, dim]`` float32 embeddings.

    Tokens are lower-cased words; words in the vocabulary file get their own
    row of the embedding table, other words are hashed into ``oov_buckets``
    extra rows. The embedding of a sentence is the mean of its token rows
    passed through a dense projection (zeros for an empty string).
    """

    def __init__(
        self,
        vocabulary_file: str,
        dim: int = 32,
        oov_buckets: int = 64,
        dropout: float = 0.25,
        l2: float = 1e-4,
        seed: int = 1,
    ) -> None:
        super().__init__()
        self.vocabulary = tf.saved_model.Asset(vocabulary_file)
        initializer = tf.lookup.TextFileInitializer(
            self.vocabulary,
            key_dtype=tf.string,
            key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64,
            value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        )
        self.table = tf.lookup.StaticVocabularyTable(initializer, num_oov_buckets=oov_buckets)
        with open(vocabulary_file, encoding="utf-8") as f:
            rows = sum(1 for line in f if line.strip()) + oov_buckets
        rng = tf.random.Generator.from_seed(seed)
        self.embeddings = tf.Variable(rng.normal([rows, dim], stddev=0.5), name="embeddings")
        self.projection = tf.Variable(
            rng.normal([dim, dim], stddev=1.0 / dim**0.5), name="projection"
        )
        self.bias = tf.Variable(tf.zeros([dim]), name="bias")
        self.dropout_rate = dropout
        self.variables = [self.embeddings, self.projection, self.bias]
        self.trainable_variables = [self.embeddings, self.projection, self.bias]
        self.regularization_losses = [
            tf.function(input_signature=[])(lambda: l2 * tf.reduce_sum(tf.square(self.embeddings)))
        ]
        self.__call__ = tf.function(self._embed)
        for training in (False, True):
            self.__call__.get_concrete_function(tf.TensorSpec([None], tf.string), training=training)
        serve = tf.function(
            lambda inputs: {
                "default": self._embed(inputs, training=False),
                "token_count": self._token_count(inputs),
            },
            input_signature=[tf.TensorSpec([None], tf.string, name="inputs")],
        )
        self.serve = serve

    def _tokens(self, inputs: tf.Tensor) -> tf.RaggedTensor:
        text = tf.strings.lower(inputs)
        text = tf.strings.regex_replace(text, r"[^\w\s']", " ")
        return tf.strings.split(text)

    def _token_count(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.cast(self._tokens(inputs).row_lengths(), tf.int32)

    def _embed(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        tokens = self._tokens(inputs)
        ids = tf.ragged.map_flat_values(self.table.lookup, tokens)
        vectors = tf.ragged.map_flat_values(tf.nn.embedding_lookup, self.embeddings, ids)
        counts = tf.cast(tf.expand_dims(tokens.row_lengths(), 1), tf.float32)
        pooled = tf.reduce_sum(vectors, axis=1) / tf.maximum(counts, 1.0)
        if training and self.dropout_rate:
            pooled = tf.nn.dropout(pooled, rate=self.dropout_rate)
        return tf.tanh(tf.matmul(pooled, self.projection) + self.bias)


def write_vocabulary(path: str, words: list[str] | tuple[str, ...] = DEFAULT_VOCABULARY) -> str:
    """Write one word per line; returns ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(words) + "\n")
    return path


def save_text_embedding(export_dir: str | os.PathLike[str], **kwargs: object) -> str:
    """Build a ``TextEmbedding`` and save it as a SavedModel in ``export_dir``.

    The vocabulary is written to a scratch folder first; ``tf.saved_model.save``
    copies it into ``export_dir/assets``, so the result is self-contained.
    """
    export_dir = os.fspath(export_dir)
    with tempfile.TemporaryDirectory() as scratch:
        vocab = write_vocabulary(os.path.join(scratch, "vocab.txt"))
        module = TextEmbedding(vocab, **kwargs)  # type: ignore[arg-type]
        tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})
    return export_dir
