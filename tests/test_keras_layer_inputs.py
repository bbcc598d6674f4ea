"""What goes into a KerasLayer: input_shape/dtype in Sequential, strings,
token ids and floats, tensors and tf.data, on Keras 3 and on tf_keras."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

import savedhub as hub
from pyrun import run_python

SENTENCES = ["a great movie", "terrible food", "lovely day", "awful service"] * 4
LABELS = np.array([1.0, 0.0] * 8, dtype="float32")


def fit_evaluate_predict_save_reload(kr: SimpleNamespace, model, x, y, tmp_path) -> None:  # noqa: ANN001
    """The user's round: compile, fit on tensors and tf.data, evaluate,
    predict, summary, .keras save and reload with the same predictions."""
    keras = kr.keras
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    history = model.fit(x, y, epochs=4, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(model.evaluate(dataset, verbose=0))
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(model.predict(dataset, verbose=0), expected, rtol=1e-5)
    summary = io.StringIO()
    with redirect_stdout(summary):
        model.summary()
    assert "KerasLayer" in summary.getvalue()
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0), expected, rtol=1e-5)
    restored.fit(dataset, epochs=1, verbose=0)


@pytest.mark.parametrize("form", ["list", "add"])
def test_guide_classifier_with_input_shape_and_dtype(
    kr: SimpleNamespace, form: str, text_embedding_path: str, tmp_path
) -> None:
    # The TF guide's classifier; Keras 3's Sequential used to make a float32
    # Input from input_shape, and fit failed with "Cast string to float".
    keras = kr.keras
    embed = kr.KerasLayer(text_embedding_path, input_shape=[], dtype=tf.string, trainable=True)
    head = [keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)]
    if form == "list":
        model = keras.Sequential([embed, *head])
    else:
        model = keras.Sequential()
        model.add(embed)
        for layer in head:
            model.add(layer)
    assert model.inputs[0].dtype in ("string", tf.string)
    assert tuple(model.inputs[0].shape) == (None,)
    fit_evaluate_predict_save_reload(kr, model, tf.constant(SENTENCES), LABELS, tmp_path)


def test_batch_input_shape_and_the_dtype_taken_from_the_model(
    kr: SimpleNamespace, text_embedding_path: str, tmp_path
) -> None:
    # No dtype= given: the layer takes the SavedModel's input dtype (string).
    keras = kr.keras
    embed = kr.KerasLayer(text_embedding_path, batch_input_shape=[None])
    assert embed.dtype in ("string", tf.string)
    model = keras.Sequential([embed, keras.layers.Dense(1)])
    assert model.inputs[0].dtype in ("string", tf.string)
    fit_evaluate_predict_save_reload(kr, model, tf.constant(SENTENCES), LABELS, tmp_path)


def test_token_ids_with_input_shape(kr: SimpleNamespace, token_id_path: str, tmp_path) -> None:
    keras = kr.keras
    embed = kr.KerasLayer(token_id_path, input_shape=[None], dtype=tf.int32, trainable=True)
    model = keras.Sequential([embed, keras.layers.Dense(1)])
    assert model.inputs[0].dtype in ("int32", tf.int32)
    ids = tf.constant(np.random.default_rng(0).integers(0, 50, size=(16, 6)), tf.int32)
    fit_evaluate_predict_save_reload(kr, model, ids, LABELS, tmp_path)


def test_float_features_with_input_dim(
    kr: SimpleNamespace, keras3_export_path: str, tmp_path
) -> None:
    keras = kr.keras
    layer = kr.KerasLayer(keras3_export_path, input_dim=4, trainable=True)
    model = keras.Sequential()
    model.add(layer)
    model.add(keras.layers.Dense(1))
    assert tuple(model.inputs[0].shape) == (None, 4)
    x = np.random.default_rng(1).normal(size=(16, 4)).astype("float32")
    fit_evaluate_predict_save_reload(kr, model, x, LABELS[:, None], tmp_path)


def test_conflicting_input_shapes_are_refused(my_mul_path: str) -> None:
    from savedhub.keras_layer import Keras3Layer

    with pytest.raises(hub.KerasLayerError, match="pass only one of input_shape"):
        Keras3Layer(my_mul_path, input_shape=[2], batch_input_shape=[None, 2])


@pytest.mark.parametrize("legacy", [False, True], ids=["keras3", "tf_keras"])
def test_guide_classifier_as_users_write_it(legacy: bool, text_embedding_path: str) -> None:
    # `tf.keras` and `hub.KerasLayer` exactly as in the guide, on whichever
    # Keras TF_USE_LEGACY_KERAS selects, with a tf.data pipeline.
    out = run_python(
        f"""
        import numpy as np, tensorflow as tf
        import savedhub as hub
        hub_layer = hub.KerasLayer({text_embedding_path!r}, input_shape=[], dtype=tf.string,
                                   trainable=True)
        model = tf.keras.Sequential()
        model.add(hub_layer)
        model.add(tf.keras.layers.Dense(16, activation="relu"))
        model.add(tf.keras.layers.Dense(1))
        model.compile(optimizer="adam",
                      loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        texts = ["good film", "awful food", "lovely music", "boring show"] * 8
        data = tf.data.Dataset.from_tensor_slices((texts, [1, 0, 1, 0] * 8)).shuffle(32).batch(8)
        history = model.fit(data, epochs=3, validation_data=data, verbose=0)
        loss, accuracy = model.evaluate(data, verbose=0)
        print(type(hub_layer).__module__, model.predict(data, verbose=0).shape,
              history.history["loss"][-1] < history.history["loss"][0])
        """,
        env={"TF_USE_LEGACY_KERAS": "1" if legacy else "0"},
    )
    variant = "_tf_keras" if legacy else "_keras3"
    assert out.split() == [f"savedhub.keras_layer.{variant}", "(32,", "1)", "True"]


# -- frozen layers are called without gradient recording (issue 11, section 5) --


def test_frozen_call_is_not_recorded_and_trainable_call_is(
    kr: SimpleNamespace, keras3_export_path: str
) -> None:
    x = tf.constant(np.random.default_rng(2).normal(size=(3, 4)).astype("float32"))
    frozen = kr.KerasLayer(keras3_export_path)
    tuned = kr.KerasLayer(keras3_export_path, trainable=True)
    for layer, recorded in ((frozen, False), (tuned, True)):
        variables = layer.resolved_object.trainable_variables
        with tf.GradientTape() as tape:
            out = layer(x)
        grads = tape.gradient(out, variables)
        assert all((g is not None) == recorded for g in grads)
    frozen.trainable = True  # unfreezing records again
    with tf.GradientTape() as tape:
        out = frozen(x)
    assert all(g is not None for g in tape.gradient(out, frozen.resolved_object.variables))


def test_gradients_still_flow_through_a_frozen_layer(
    kr: SimpleNamespace, keras3_export_path: str
) -> None:
    keras = kr.keras
    frozen = kr.KerasLayer(keras3_export_path)
    x = tf.constant(np.random.default_rng(3).normal(size=(16, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = frozen(x)
    assert tape.gradient(out, x) is not None
    before = keras.layers.Dense(4, name="learned_input")
    model = keras.Sequential([keras.Input(shape=(4,)), before, frozen, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    kernel = np.array(before.kernel.numpy())
    model.fit(x, np.ones((16, 1)), epochs=2, verbose=0)
    assert not np.array_equal(kernel, before.kernel.numpy())  # trained through the hub layer


def test_frozen_training_gives_the_same_numbers_as_a_recorded_call(
    kr: SimpleNamespace, text_embedding_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from savedhub.keras_layer import _recording

    def train(seed: int) -> tuple[list[float], list[np.ndarray]]:
        keras = kr.keras
        keras.utils.set_random_seed(seed)
        model = keras.Sequential(
            [kr.KerasLayer(text_embedding_path), keras.layers.Dense(4), keras.layers.Dense(1)]
        )
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
        history = model.fit(tf.constant(SENTENCES), LABELS, batch_size=4, epochs=2, verbose=0)
        return history.history["loss"], [np.array(w) for w in model.get_weights()]

    paused_loss, paused_weights = train(7)
    monkeypatch.setattr(_recording, "_record", None)  # what the call path did before
    recorded_loss, recorded_weights = train(7)
    assert paused_loss == recorded_loss
    for a, b in zip(paused_weights, recorded_weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_keras3_fit_rejects_numpy_str_arrays_before_any_layer(text_embedding_path: str) -> None:
    # A Keras limitation, pinned so the README's advice is revisited when Keras
    # changes: Keras 3's data adapter refuses numpy `<U` arrays for any model
    # ("Invalid dtype: str..."); object arrays, tf.constant and tf.data work.
    import keras

    from savedhub.keras_layer import Keras3Layer

    model = keras.Sequential(
        [Keras3Layer(text_embedding_path, input_shape=[]), keras.layers.Dense(1)]
    )
    model.compile(loss="mse")
    texts = np.array(SENTENCES)
    assert texts.dtype.kind == "U"
    with pytest.raises(ValueError, match="Invalid dtype: str"):
        model.fit(texts, LABELS, verbose=0)
    model.fit(texts.astype(object), LABELS, verbose=0)
    model.fit(tf.constant(texts), LABELS, verbose=0)
    assert Keras3Layer(text_embedding_path)(texts).shape == (16, 32)  # a direct call converts
