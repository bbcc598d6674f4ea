"""The converted model: a BERT sentence encoder with its tokenizer inside the graph.

Tokenisation, in the graph, in three steps:

1. normalisation and pre-tokenisation through the code point table of
   :mod:`savedhub.convert._chartable` (core TensorFlow ops only);
2. WordPiece with tensorflow-text's ``WordpieceTokenizer`` over a lookup table
   initialised from the vocabulary ``Asset`` (so the folder can be moved);
3. truncation to ``max_seq_length`` and ``[CLS] ... [SEP]``, as
   sentence-transformers does.

Why this split: core TensorFlow has no Unicode normalisation and no greedy
longest-match loop, so WordPiece comes from tensorflow-text; but
tensorflow-text's own BERT normalisers (``case_fold_utf8``, the fast BERT
normaliser) apply NFKC case folding, which changes full-width letters,
ligatures, superscripts and "ß", so the ids would differ from the model's
training-time tokenizer. The table reproduces Hugging Face's ``BertNormalizer``
character by character.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from savedhub.convert._chartable import (
    SELF,
    SPECIAL_MARKER_BASE,
    SPECIAL_MARKER_LIMIT,
    CharTable,
)
from savedhub.convert._source import BertSource, TokenizerSpec
from savedhub.errors import UnsupportedSourceError

STRINGS = tf.TensorSpec([None], tf.string, name="inputs")
TOKEN_IDS = tf.RaggedTensorSpec([None, None], tf.int64, ragged_rank=1)
CHUNK = 32  # sentences encoded together; larger batches run as sorted chunks of this size


class BertTokenizer(tf.train.Checkpoint):
    """Strings ``[batch]`` -> ragged int64 token ids ``[batch, (tokens)]`` with [CLS]/[SEP]."""

    def __init__(self, spec: TokenizerSpec, table: CharTable) -> None:
        super().__init__()
        self.vocabulary = tf.saved_model.Asset(spec.vocab_file)
        self.vocab_table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.vocabulary,
                key_dtype=tf.string,
                key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                value_dtype=tf.int64,
                value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            default_value=-1,
        )
        with open(spec.vocab_file, encoding="utf-8") as f:
            ids = {line.rstrip("\n"): i for i, line in enumerate(f)}
        self._spec = spec
        self._cls_id = ids[spec.cls_token]
        self._sep_id = ids[spec.sep_token]
        self._table = table
        self._wordpiece = tf_text.WordpieceTokenizer(
            self.vocab_table,
            suffix_indicator=spec.subword_prefix,
            # Words over max_chars_per_word characters become [UNK] below, by
            # character count as Hugging Face counts; this byte limit must not bite first.
            max_bytes_per_word=4 * spec.max_chars_per_word + 4,
            token_out_type=tf.int64,
            unknown_token=spec.unk_token,
        )
        self.__call__ = tf.function(self._tokenize, input_signature=[STRINGS])

    def _mark_special_tokens(self, text: tf.Tensor) -> tf.Tensor:
        specials = self._spec.special_tokens
        if not specials:
            return text
        first, last = SPECIAL_MARKER_BASE, SPECIAL_MARKER_BASE + len(specials) - 1
        text = tf.strings.regex_replace(
            text, f"[{chr(first)}-{chr(last)}]", chr(SPECIAL_MARKER_LIMIT)
        )
        for i, token in enumerate(specials):
            text = tf.strings.regex_replace(text, re.escape(token), chr(first + i))
        return text

    def _normalize(self, text: tf.Tensor) -> tf.Tensor:
        """Apply the code point table: one string per input, words separated by spaces."""
        table = self._table
        code_points = tf.strings.unicode_decode(
            text, "UTF-8", errors="replace", replacement_char=0xFFFD
        )
        flat = code_points.flat_values
        run = tf.searchsorted(tf.constant(table.starts), flat, side="right") - 1
        rows = tf.RaggedTensor.from_row_splits(
            tf.constant(table.row_values), tf.constant(table.row_splits), validate=False
        )
        mapped = tf.gather(rows, tf.gather(tf.constant(table.run_rows), run))
        owner = tf.repeat(flat, mapped.row_lengths())
        values = tf.where(mapped.flat_values == SELF, owner, mapped.flat_values)
        mapped = mapped.with_flat_values(values)
        per_text = code_points.with_flat_values(mapped).merge_dims(1, 2)
        return tf.strings.unicode_encode(per_text, "UTF-8")

    def _tokenize(self, inputs: tf.Tensor) -> tf.RaggedTensor:
        spec = self._spec
        words = tf.strings.split(self._normalize(self._mark_special_tokens(inputs)))
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > spec.max_chars_per_word
        words = words.with_flat_values(
            tf.where(too_long, tf.constant(spec.unk_token), words.flat_values)
        )
        ids = self._wordpiece.tokenize(words).merge_dims(1, 2)
        ids = ids[:, : spec.max_seq_length - 2]
        batch = ids.nrows()
        cls = tf.fill([batch, 1], tf.constant(self._cls_id, tf.int64))
        sep = tf.fill([batch, 1], tf.constant(self._sep_id, tf.int64))
        return tf.concat([cls, ids, sep], axis=1)


def _layer_norm(x: tf.Tensor, gamma: tf.Variable, beta: tf.Variable, eps: float) -> tf.Tensor:
    # Centred once and squared in place: tf.nn.moments' broadcasting SquaredDifference
    # costs a third more CPU here, and 13 of these run per call.
    centred = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    variance = tf.reduce_mean(tf.square(centred), axis=-1, keepdims=True)
    return centred * tf.math.rsqrt(variance + eps) * gamma + beta


class _Weights:
    """Safetensors tensors by Hugging Face name, accepting the ``bert.`` prefix and gamma/beta."""

    def __init__(self, tensors: dict[str, np.ndarray], folder: str) -> None:
        self._tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
        self._folder = folder

    def __call__(self, name: str, transpose: bool = False) -> tf.Variable:
        value = self._tensors.get(name)
        if value is None and name.endswith("LayerNorm.weight"):
            value = self._tensors.get(name.replace(".weight", ".gamma"))
        if value is None and name.endswith("LayerNorm.bias"):
            value = self._tensors.get(name.replace(".bias", ".beta"))
        if value is None:
            raise UnsupportedSourceError(
                f"Cannot convert {self._folder!r}: model.safetensors has no tensor {name!r}. "
                "Supported: BERT weights named as Hugging Face's BertModel names them.",
                self._folder,
            )
        value = np.asarray(value, dtype=np.float32)
        return tf.Variable(value.T if transpose else value, name=name.replace(".", "/"))


class SentenceEncoder(tf.train.Checkpoint):
    """A Reusable SavedModel: strings ``[batch]`` -> float32 ``[batch, hidden]`` embeddings.

    ``__call__(inputs, training=False)`` is traced for both ``training`` values;
    dropout runs only when training. ``tokenize`` exposes the in-graph tokenizer.
    """

    def __init__(
        self, source: BertSource, table: CharTable, tensors: dict[str, np.ndarray]
    ) -> None:
        super().__init__()
        config = source.config
        weight = _Weights(tensors, source.folder)
        self.tokenizer = BertTokenizer(source.tokenizer, table)
        self._hidden = int(config["hidden_size"])
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        self._act = tf.nn.relu if config["hidden_act"] == "relu" else tf.nn.gelu
        self._hidden_dropout = float(config.get("hidden_dropout_prob", 0.1))
        self._attention_dropout = float(config.get("attention_probs_dropout_prob", 0.1))
        self._pooling = source.pooling
        self._normalize = source.normalize
        self._pad_id = self._vocab_id(source.tokenizer.vocab_file, source.tokenizer.pad_token)

        self.word_embeddings = weight("embeddings.word_embeddings.weight")
        if self.word_embeddings.shape[0] != source.tokenizer.vocab_size:
            raise UnsupportedSourceError(
                f"Cannot convert {source.folder!r}: vocab.txt has {source.tokenizer.vocab_size} "
                f"tokens but the embedding table has {self.word_embeddings.shape[0]} rows. "
                "Supported: a vocabulary that matches the weights.",
                source.folder,
            )
        self.position_embeddings = weight("embeddings.position_embeddings.weight")
        self.token_type_embeddings = weight("embeddings.token_type_embeddings.weight")
        self.embeddings_norm = [
            weight("embeddings.LayerNorm.weight"),
            weight("embeddings.LayerNorm.bias"),
        ]
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            q, k, v = (
                weight(p + f"attention.self.{n}.weight", True) for n in ("query", "key", "value")
            )
            self.layers.append(
                {
                    "qkv_kernel": tf.Variable(
                        tf.concat([q, k, v], axis=1), name=f"layer_{i}/qkv/kernel"
                    ),
                    "qkv_bias": tf.Variable(
                        tf.concat(
                            [
                                weight(p + f"attention.self.{n}.bias")
                                for n in ("query", "key", "value")
                            ],
                            axis=0,
                        ),
                        name=f"layer_{i}/qkv/bias",
                    ),
                    "attention_out_kernel": weight(p + "attention.output.dense.weight", True),
                    "attention_out_bias": weight(p + "attention.output.dense.bias"),
                    "attention_norm_gamma": weight(p + "attention.output.LayerNorm.weight"),
                    "attention_norm_beta": weight(p + "attention.output.LayerNorm.bias"),
                    "intermediate_kernel": weight(p + "intermediate.dense.weight", True),
                    "intermediate_bias": weight(p + "intermediate.dense.bias"),
                    "output_kernel": weight(p + "output.dense.weight", True),
                    "output_bias": weight(p + "output.dense.bias"),
                    "output_norm_gamma": weight(p + "output.LayerNorm.weight"),
                    "output_norm_beta": weight(p + "output.LayerNorm.bias"),
                }
            )
        params: list[tf.Variable] = [
            self.word_embeddings,
            self.position_embeddings,
            self.token_type_embeddings,
            *self.embeddings_norm,
        ]
        for layer in self.layers:
            params.extend(layer.values())
        self.variables = list(params)
        self.trainable_variables = list(params)
        self.regularization_losses: list[Any] = []

        self.tokenize = self.tokenizer.__call__
        self.encode = tf.function(self._embed_ids, input_signature=[TOKEN_IDS])
        self.__call__ = tf.function(self._embed)
        for training in (False, True):
            self.__call__.get_concrete_function(STRINGS, training=training)
        self.serve = tf.function(
            lambda inputs: {"outputs": self._embed(inputs, training=False)},
            input_signature=[STRINGS],
        )

    @staticmethod
    def _vocab_id(vocab_file: str, token: str) -> int:
        with open(vocab_file, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if line.rstrip("\n") == token:
                    return i
        raise UnsupportedSourceError(
            f"The vocabulary {vocab_file!r} lacks the token {token!r} its tokenizer names; "
            "convert a folder whose vocab.txt and tokenizer config belong together.",
            vocab_file,
        )

    def _dropout(self, x: tf.Tensor, rate: float, training: bool) -> tf.Tensor:
        return tf.nn.dropout(x, rate=rate) if training and rate > 0 else x

    def _encode(self, ids: tf.Tensor, mask: tf.Tensor, training: bool) -> tf.Tensor:
        """Token ids ``[batch, length]`` and mask -> hidden states ``[batch, length, hidden]``."""
        batch, length = tf.shape(ids)[0], tf.shape(ids)[1]
        hidden, heads = self._hidden, self._heads
        head_size = hidden // heads
        x = (
            tf.gather(self.word_embeddings, ids)
            + self.position_embeddings[tf.newaxis, :length]
            + self.token_type_embeddings[0]
        )
        gamma, beta = self.embeddings_norm
        x = _layer_norm(x, gamma, beta, self._eps)
        x = self._dropout(tf.reshape(x, [-1, hidden]), self._hidden_dropout, training)
        # Padded keys get a large negative score, so softmax gives them no weight.
        bias = (1.0 - mask)[:, tf.newaxis, tf.newaxis, :] * -1e9
        scale = 1.0 / math.sqrt(head_size)
        for layer in self.layers:
            # bias_add (not +) lets TensorFlow's oneDNN remapper fuse each matmul with its
            # bias (and GELU) into one kernel; the einsums read q, k and v in place, without
            # the 5-D transpose a reshape to [3, batch, heads, length, head] would need.
            qkv = tf.nn.bias_add(tf.matmul(x, layer["qkv_kernel"]), layer["qkv_bias"])
            q, k, v = tf.split(tf.reshape(qkv, [batch, length, 3 * heads, head_size]), 3, axis=2)
            scores = tf.einsum("bqhd,bkhd->bhqk", q * scale, k) + bias
            probs = self._dropout(tf.nn.softmax(scores, axis=-1), self._attention_dropout, training)
            context = tf.reshape(tf.einsum("bhqk,bkhd->bqhd", probs, v), [-1, hidden])
            attended = tf.nn.bias_add(
                tf.matmul(context, layer["attention_out_kernel"]), layer["attention_out_bias"]
            )
            x = _layer_norm(
                x + self._dropout(attended, self._hidden_dropout, training),
                layer["attention_norm_gamma"],
                layer["attention_norm_beta"],
                self._eps,
            )
            inner = tf.matmul(x, layer["intermediate_kernel"])
            inner = self._act(tf.nn.bias_add(inner, layer["intermediate_bias"]))
            out = tf.nn.bias_add(tf.matmul(inner, layer["output_kernel"]), layer["output_bias"])
            x = _layer_norm(
                x + self._dropout(out, self._hidden_dropout, training),
                layer["output_norm_gamma"],
                layer["output_norm_beta"],
                self._eps,
            )
        return tf.reshape(x, [batch, length, hidden])

    def _pool(self, states: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        if self._pooling == "cls":
            return states[:, 0]
        weights = mask[:, :, tf.newaxis]
        if self._pooling == "max":
            return tf.reduce_max(states + (1.0 - weights) * -1e9, axis=1)
        total = tf.reduce_sum(states * weights, axis=1)
        return total / tf.maximum(tf.reduce_sum(weights, axis=1), 1e-9)

    def _embed_padded(self, ids: tf.RaggedTensor, training: bool) -> tf.Tensor:
        """Pooled states of ``ids`` padded to its longest row."""
        dense = ids.to_tensor(default_value=tf.constant(self._pad_id, tf.int64))
        mask = tf.sequence_mask(ids.row_lengths(), tf.shape(dense)[1], dtype=tf.float32)
        return self._pool(self._encode(dense, mask, training), mask)

    def _embed_in_chunks(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """Sort by length, encode ``CHUNK`` rows at a time, restore the order.

        As sentence-transformers does: sorting keeps padding small in mixed
        batches, and chunks keep the activations in cache (at batch 256 this is
        about 1.5x faster than one padded batch).
        """
        order = tf.argsort(ids.row_lengths(), stable=True)
        ids = tf.gather(ids, order)
        rows = tf.cast(ids.nrows(), tf.int32)
        chunks = tf.TensorArray(tf.float32, size=(rows + CHUNK - 1) // CHUNK, infer_shape=False)
        for i in tf.range(chunks.size()):
            chunks = chunks.write(i, self._embed_padded(ids[i * CHUNK : (i + 1) * CHUNK], False))
        pooled = tf.reshape(chunks.concat(), [rows, self._hidden])
        return tf.gather(pooled, tf.argsort(order))

    def _embed(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self._embed_ids(self.tokenize(inputs), training)

    def _embed_ids(self, ids: tf.RaggedTensor, training: bool = False) -> tf.Tensor:
        """Embeddings of token ids as ``tokenize`` gives them (``[CLS] ... [SEP]`` per row)."""
        if training:
            # One padded batch: differentiating a loop costs ~10 s of graph building on
            # the first training step, and training batches are small anyway.
            pooled = self._embed_padded(ids, training=True)
        else:
            pooled = tf.cond(
                ids.nrows() <= CHUNK,
                lambda: self._embed_padded(ids, training=False),
                lambda: self._embed_in_chunks(ids),
            )
        if self._normalize:
            pooled = pooled / tf.maximum(tf.norm(pooled, axis=-1, keepdims=True), 1e-12)
        return pooled
