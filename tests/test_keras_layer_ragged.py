"""Ragged and sparse tensors between hub layers, on Keras 3 and on tf_keras.

The bert_glue tutorial's preprocessing: ``tokenize`` returns a RaggedTensor
``[batch, words, pieces]`` and ``bert_pack_inputs`` takes a list of them.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

import savedhub as hub

PAIRS = {
    "s1": tf.constant(["a wonderful film", "the food was awful", "lovely", "bad"] * 4),
    "s2": tf.constant(["I agree", "no", "very true indeed", "not at all"] * 4),
}
LABELS = np.array([1.0, 0.0, 1.0, 0.0] * 4, dtype="float32")


def is_ragged(kr: SimpleNamespace, tensor) -> bool:  # noqa: ANN001
    if kr.name == "keras3":
        return bool(tensor.ragged)
    return isinstance(tensor.type_spec, tf.RaggedTensorSpec)


def test_bert_glue_preprocessing_fits_and_round_trips(
    kr: SimpleNamespace, bert_preprocessor_path: str, bert_encoder_path: str, tmp_path
) -> None:
    keras = kr.keras
    # The preprocessor lives in a folder that vanishes before the reload: the
    # .keras file must carry it.
    preprocessor_copy = str(tmp_path / "preprocessor")
    shutil.copytree(bert_preprocessor_path, preprocessor_copy)

    segments = [keras.layers.Input(shape=(), dtype=tf.string, name=n) for n in ("s1", "s2")]
    preprocessor = hub.load(preprocessor_copy)
    tokenize = kr.KerasLayer(preprocessor.tokenize)
    tokenized = [tokenize(s) for s in segments]
    assert all(is_ragged(kr, t) for t in tokenized)
    assert len(tokenized[0].shape) == 3
    packer = kr.KerasLayer(preprocessor.bert_pack_inputs, arguments=dict(seq_length=128))
    encoder_inputs = packer(tokenized)
    assert sorted(encoder_inputs) == ["input_mask", "input_type_ids", "input_word_ids"]
    assert tuple(encoder_inputs["input_word_ids"].shape) == (None, 128)
    encoder = kr.KerasLayer(bert_encoder_path, trainable=True)
    pooled = encoder(encoder_inputs)["pooled_output"]
    model = keras.Model(segments, keras.layers.Dense(1)(pooled))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")

    history = model.fit(PAIRS, LABELS, batch_size=4, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    expected = model.predict(PAIRS, verbose=0)
    direct = encoder.resolved_object(
        preprocessor.bert_pack_inputs(
            [preprocessor.tokenize(PAIRS["s1"]), preprocessor.tokenize(PAIRS["s2"])],
            seq_length=128,
        )
    )["pooled_output"]
    head = model.layers[-1]
    np.testing.assert_allclose(expected, head(direct).numpy(), rtol=1e-5, atol=1e-6)

    path = str(tmp_path / "bert_glue.keras")
    model.save(path)
    del preprocessor
    shutil.rmtree(preprocessor_copy)
    # The handle is gone, so the layer uses the SavedModel carried in the file, which
    # runs a graph from the file: Keras' safe mode refuses that unless the user opts out.
    restored = keras.models.load_model(path, safe_mode=False)
    np.testing.assert_allclose(restored.predict(PAIRS, verbose=0), expected, rtol=1e-5)
    restored.fit(PAIRS, LABELS, batch_size=4, epochs=1, verbose=0)


def test_ragged_keras_inputs_in_a_list(kr: SimpleNamespace, bert_preprocessor_path: str) -> None:
    keras = kr.keras
    preprocessor = hub.load(bert_preprocessor_path)
    inputs = [
        keras.Input(shape=(None, None), dtype="int32", ragged=True, name=n) for n in ("a", "b")
    ]
    packer = kr.KerasLayer(preprocessor.bert_pack_inputs, arguments=dict(seq_length=128))
    model = keras.Model(inputs, packer(inputs)["input_word_ids"])
    tokens = [preprocessor.tokenize(PAIRS["s1"]), preprocessor.tokenize(PAIRS["s2"])]
    expected = preprocessor.bert_pack_inputs(tokens, seq_length=128)["input_word_ids"]
    np.testing.assert_array_equal(model(tokens).numpy(), expected.numpy())
    dataset = tf.data.Dataset.from_tensor_slices({"a": tokens[0], "b": tokens[1]}).batch(4)
    np.testing.assert_array_equal(model.predict(dataset, verbose=0), expected.numpy())


def test_sparse_outputs_feed_dense_layers(
    kr: SimpleNamespace, bag_of_words_path: str, tmp_path
) -> None:
    keras = kr.keras
    text = keras.Input(shape=(), dtype=tf.string)
    counts = kr.KerasLayer(bag_of_words_path)(text)
    assert (
        counts.sparse if kr.name == "keras3" else isinstance(counts.type_spec, tf.SparseTensorSpec)
    )
    assert tuple(counts.shape) == (None, 64)
    model = keras.Model(text, keras.layers.Dense(1)(counts))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    history = model.fit(PAIRS["s1"], LABELS, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = str(tmp_path / "bag.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(
        restored.predict(PAIRS["s1"], verbose=0), model.predict(PAIRS["s1"], verbose=0), rtol=1e-6
    )
