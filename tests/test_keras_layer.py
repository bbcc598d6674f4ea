"""hub.KerasLayer on Keras 3 and on tf_keras: the whole contract of the original."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

import savedhub as hub
from pyrun import run_python as _run_python
from savedhub.keras_layer import Keras3Layer

SENTENCES = [
    "a great movie",
    "terrible food",
    "lovely day",
    "awful service",
    "best film ever",
    "boring and dull",
    "wonderful music",
    "the worst show",
]
LABELS = np.array([1, 0, 1, 0, 1, 0, 1, 0] * 4, dtype="float32")


def texts(n: int = 32) -> tf.Tensor:
    return tf.constant((SENTENCES * (n // len(SENTENCES) + 1))[:n])


def classifier(kr: SimpleNamespace, embed) -> object:  # noqa: ANN001
    keras = kr.keras
    model = keras.Sequential(
        [
            embed,
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    return model


def snapshot(variables) -> list[np.ndarray]:  # noqa: ANN001
    return [np.array(v.numpy()) for v in variables]


# -- the guide's MyMulModel -------------------------------------------------


def test_guide_my_mul_layer(kr: SimpleNamespace, my_mul_path: str) -> None:
    layer = kr.KerasLayer(my_mul_path)
    assert isinstance(layer, kr.keras.layers.Layer)
    np.testing.assert_allclose(layer([10.0, 20.0]).numpy(), [20.0, 40.0])
    assert layer.trainable_weights == []
    assert [float(w.numpy()) for w in layer.non_trainable_weights] == [2.0]
    assert all(float(x) == 0.0 for x in layer.losses)  # none, or tf_keras' zero placeholder
    layer.trainable = True
    assert [float(w.numpy()) for w in layer.trainable_weights] == [2.0]
    assert [float(x) for x in layer.losses] == [pytest.approx(0.004)]


def test_frozen_by_default_and_weights_stay_bitwise_equal(
    kr: SimpleNamespace, text_embedding_path: str
) -> None:
    embed = kr.KerasLayer(text_embedding_path)
    model = classifier(kr, embed)
    before = snapshot(embed.resolved_object.variables)
    history = model.fit(texts(), LABELS, epochs=3, verbose=0)
    assert embed.trainable_weights == []
    assert len(embed.non_trainable_weights) == 3
    for old, new in zip(before, snapshot(embed.resolved_object.variables), strict=True):
        np.testing.assert_array_equal(old, new)
    assert history.history["loss"][-1] < history.history["loss"][0]  # the head still learns
    assert model.losses == [] or all(float(x) == 0.0 for x in model.losses)


def test_fine_tuning_moves_the_loaded_objects_own_variables(
    kr: SimpleNamespace, text_embedding_path: str
) -> None:
    obj = hub.load(text_embedding_path)
    embed = kr.KerasLayer(obj, trainable=True)
    model = classifier(kr, embed)
    assert len(embed.trainable_weights) == 3
    regularization = [float(x) for x in model.losses]
    assert len(regularization) == 1 and regularization[0] > 0
    before = snapshot(obj.trainable_variables)
    history = model.fit(texts(), LABELS, epochs=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(before, snapshot(obj.trainable_variables), strict=True)
    ]
    assert all(moved)
    # The layer and the loaded object see the same numbers: no copies.
    np.testing.assert_array_equal(embed.trainable_weights[0].numpy(), obj.embeddings.numpy())


def test_keras_side_assign_is_visible_in_the_loaded_object(
    kr: SimpleNamespace, my_mul_path: str
) -> None:
    layer = kr.KerasLayer(my_mul_path, trainable=True)
    layer.trainable_weights[0].assign(5.0)
    assert float(layer.resolved_object.v.numpy()) == 5.0
    np.testing.assert_allclose(layer([1.0]).numpy(), [5.0])


def test_training_flag_reaches_the_model_only_when_trainable(
    kr: SimpleNamespace, text_embedding_path: str
) -> None:
    x = texts(8)
    frozen = kr.KerasLayer(text_embedding_path)
    reference = frozen.resolved_object(x, training=False).numpy()
    np.testing.assert_array_equal(frozen(x, training=True).numpy(), reference)
    tuned = kr.KerasLayer(text_embedding_path, trainable=True)
    np.testing.assert_array_equal(tuned(x, training=False).numpy(), reference)
    assert not np.allclose(tuned(x, training=True).numpy(), reference)  # dropout on


def test_predict_and_evaluate_run_in_inference_mode(
    kr: SimpleNamespace, text_embedding_path: str
) -> None:
    embed = kr.KerasLayer(text_embedding_path, trainable=True)
    model = kr.keras.Sequential([embed])
    first = model.predict(texts(16), verbose=0)
    np.testing.assert_allclose(model.predict(texts(16), verbose=0), first)
    np.testing.assert_allclose(first, embed.resolved_object(texts(16)).numpy(), rtol=1e-6)


def test_reexport_after_fit_reproduces_fine_tuned_outputs(
    kr: SimpleNamespace, text_embedding_path: str, tmp_path
) -> None:
    # The guide's recipe: load, wrap, fit, tf.saved_model.save(loaded_obj).
    loaded_obj = hub.load(text_embedding_path)
    hub_layer = kr.KerasLayer(loaded_obj, trainable=True)
    model = classifier(kr, hub_layer)
    model.fit(texts(), LABELS, epochs=3, verbose=0)
    export_module_dir = str(tmp_path / "finetuned_model_export")
    tf.saved_model.save(loaded_obj, export_module_dir)
    expected = loaded_obj(texts(8)).numpy()
    assert not np.allclose(expected, hub.load(text_embedding_path)(texts(8)).numpy())
    np.testing.assert_allclose(hub.load(export_module_dir)(texts(8)).numpy(), expected, rtol=1e-6)


def test_one_layer_used_twice_shares_weights(kr: SimpleNamespace, my_mul_path: str) -> None:
    keras = kr.keras
    layer = kr.KerasLayer(my_mul_path, trainable=True)
    a = keras.Input(shape=(2,))
    b = keras.Input(shape=(2,))
    model = keras.Model([a, b], keras.layers.Add()([layer(a), layer(b)]))
    assert len(model.trainable_weights) == 1
    out = model([tf.ones((1, 2)), tf.ones((1, 2))])
    np.testing.assert_allclose(out.numpy(), [[4.0, 4.0]])


def test_functional_subclassed_and_tf_function(
    kr: SimpleNamespace, text_embedding_path: str
) -> None:
    keras = kr.keras
    embed = kr.KerasLayer(text_embedding_path)
    inputs = keras.Input(shape=(), dtype="string")
    functional = keras.Model(inputs, keras.layers.Dense(2)(embed(inputs)))
    assert functional(texts(4)).shape == (4, 2)

    class Classifier(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.embed = kr.KerasLayer(text_embedding_path, trainable=True)
            self.head = keras.layers.Dense(1)

        def call(self, x):  # noqa: ANN001, ANN202
            return self.head(self.embed(x))

    subclassed = Classifier()
    subclassed.compile(optimizer="sgd", loss="mse")
    subclassed.fit(texts(), LABELS, epochs=1, verbose=0)
    assert len(subclassed.trainable_weights) == 5

    graph_call = tf.function(lambda x: embed(x))
    np.testing.assert_allclose(graph_call(texts(4)).numpy(), embed(texts(4)).numpy(), rtol=1e-6)


def test_signature_with_output_key_and_dict_outputs(
    kr: SimpleNamespace, text_embedding_path: str
) -> None:
    x = texts(4)
    by_key = kr.KerasLayer(
        text_embedding_path, signature="serving_default", output_key="token_count"
    )
    assert by_key(x).numpy().tolist() == [3, 2, 2, 2]
    as_dict = kr.KerasLayer(
        text_embedding_path, signature="serving_default", signature_outputs_as_dict=True
    )
    out = as_dict(x)
    assert sorted(out) == ["default", "token_count"]
    np.testing.assert_allclose(
        out["default"].numpy(), hub.load(text_embedding_path)(x).numpy(), rtol=1e-6
    )


def test_output_shape_is_applied(kr: SimpleNamespace, my_mul_path: str) -> None:
    layer = kr.KerasLayer(my_mul_path, output_shape=[3])
    assert tuple(layer.compute_output_shape((None, 3))) == (None, 3)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def run(x):  # noqa: ANN001, ANN202
        out = layer(x)
        assert out.shape.as_list() == [None, 3]
        return out

    np.testing.assert_allclose(run(tf.ones((2, 3))).numpy(), 2 * np.ones((2, 3)))


def test_invalid_argument_combinations_fail_at_construction(
    kr: SimpleNamespace, text_embedding_path: str, my_mul_path: str
) -> None:
    with pytest.raises(hub.KerasLayerError, match="output_key=.*or.*signature_outputs_as_dict"):
        kr.KerasLayer(text_embedding_path, signature="serving_default")
    with pytest.raises(hub.KerasLayerError, match="only valid together with signature"):
        kr.KerasLayer(text_embedding_path, signature_outputs_as_dict=True)
    with pytest.raises(hub.KerasLayerError, match="trainable=True"):
        kr.KerasLayer(
            text_embedding_path, signature="serving_default", output_key="default", trainable=True
        )
    with pytest.raises(hub.KerasLayerError, match="unknown signature.*serving_default"):
        kr.KerasLayer(text_embedding_path, signature="nope", output_key="x")
    with pytest.raises(hub.KerasLayerError, match="already loaded object"):
        kr.KerasLayer(hub.load(my_mul_path), tags=["serve"])
    with pytest.raises(hub.KerasLayerError, match="does not return a dict"):
        kr.KerasLayer(my_mul_path, output_key="default")
    layer = kr.KerasLayer(text_embedding_path, signature="serving_default", output_key="default")
    with pytest.raises(hub.KerasLayerError, match="trainable=True"):
        layer.trainable = True
    with pytest.raises(hub.ModelNotFoundError):
        kr.KerasLayer("/no/such/model")


def test_keras3_export_works_as_is_and_fine_tunes(
    kr: SimpleNamespace, keras3_export_path: str
) -> None:
    keras = kr.keras
    layer = kr.KerasLayer(keras3_export_path, trainable=True)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
    np.testing.assert_allclose(layer(x).numpy(), layer.resolved_object.serve(x).numpy(), rtol=1e-6)
    model = keras.Sequential([keras.Input(shape=(4,)), layer, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    before = snapshot(layer.resolved_object.trainable_variables)
    history = model.fit(x, y, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    after = snapshot(layer.resolved_object.trainable_variables)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_tf_keras_savedmodel_brings_its_regularizer(
    kr: SimpleNamespace, tf_keras_path: str
) -> None:
    layer = kr.KerasLayer(tf_keras_path, trainable=True)
    assert len(layer.trainable_weights) == 4
    assert len(layer.losses) == 1 and float(layer.losses[0]) > 0
    layer.trainable = False
    assert [float(x) for x in layer.losses] in ([], [0.0])


def test_tf1_hub_module_through_its_default_signature(
    kr: SimpleNamespace, tf1_hub_path: str
) -> None:
    layer = kr.KerasLayer(tf1_hub_path)
    np.testing.assert_allclose(layer(tf.constant([[1.0, 1.0]])).numpy(), [[3.5]])
    with pytest.raises(hub.KerasLayerError, match="TF1 Hub format"):
        kr.KerasLayer(tf1_hub_path, trainable=True)


def test_config_round_trip_and_object_layers_refuse(kr: SimpleNamespace, my_mul_path: str) -> None:
    layer = kr.KerasLayer(my_mul_path, trainable=True, output_shape=[2], name="mul")
    config = layer.get_config()
    assert config["handle"] == my_mul_path and config["output_shape"] == [2]
    clone = kr.KerasLayer.from_config(config)
    assert clone.trainable and clone.name == "mul"
    np.testing.assert_allclose(clone(tf.ones((1, 2))).numpy(), [[2.0, 2.0]])
    with pytest.raises(hub.KerasLayerError, match="already loaded object"):
        kr.KerasLayer(hub.load(my_mul_path)).get_config()


def test_dot_keras_round_trip_keeps_fine_tuned_weights(
    kr: SimpleNamespace, text_embedding_path: str, tmp_path
) -> None:
    embed = kr.KerasLayer(text_embedding_path, trainable=True)
    model = classifier(kr, embed)
    model.fit(texts(), LABELS, epochs=3, verbose=0)
    expected = model.predict(texts(8), verbose=0)
    path = str(tmp_path / "classifier.keras")
    model.save(path)
    restored = kr.keras.models.load_model(path)  # safe mode, no custom_objects
    np.testing.assert_allclose(restored.predict(texts(8), verbose=0), expected, rtol=1e-5)


def test_public_surface() -> None:
    namespace: dict[str, object] = {}
    exec("from savedhub import *", namespace)
    assert namespace["KerasLayer"] is Keras3Layer
    import savedhub.keras_layer

    assert savedhub.keras_layer.KerasLayer is Keras3Layer
    assert callable(namespace["load"]) and callable(namespace["resolve"])


def test_keras3_model_export_serves_the_hub_layer(text_embedding_path: str, tmp_path) -> None:
    import keras

    embed = Keras3Layer(text_embedding_path, trainable=True)
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, keras.layers.Dense(1)(embed(inputs)))
    expected = model(texts(4)).numpy()
    model.export(str(tmp_path / "served"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "served"))
    np.testing.assert_allclose(served.serve(texts(4)).numpy(), expected, rtol=1e-5)


def test_legacy_keras_switch_makes_kerasLayer_a_tf_keras_layer(my_mul_path: str) -> None:
    out = _run_python(
        f"""
        import tensorflow as tf
        import savedhub as hub
        layer = hub.KerasLayer({my_mul_path!r})
        assert isinstance(layer, tf.keras.layers.Layer), type(layer).__mro__
        model = tf.keras.Sequential([layer])
        print(type(layer).__module__, model(tf.constant([10., 20.])).numpy().tolist())
        """,
        env={"TF_USE_LEGACY_KERAS": "1"},
    )
    assert out.split() == ["savedhub.keras_layer._tf_keras", "[20.0,", "40.0]"]


def test_mirrored_strategy_on_two_logical_cpus(
    keras3_export_path: str, text_embedding_path: str
) -> None:
    # Keras 3's fit() under a strategy averages a sample input batch to build
    # the model, which string inputs cannot do (a Keras limitation), so Keras 3
    # trains the float-input model here and tf_keras the text model.
    out = _run_python(
        f"""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, tf_keras
        from savedhub.keras_layer import Keras3Layer, TFKerasLayer
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        cases = [
            (keras, Keras3Layer, {keras3_export_path!r},
             np.random.default_rng(0).normal(size=(64, 4)).astype("float32")),
            (tf_keras, TFKerasLayer, {text_embedding_path!r},
             tf.constant(["good film", "bad food"] * 32)),
        ]
        y = np.array([1., 0.] * 32, dtype="float32")
        for k, Layer, path, x in cases:
            with strategy.scope():
                hub_layer = Layer(path, trainable=True)
                model = k.Sequential([hub_layer, k.layers.Dense(1, activation="sigmoid")])
                model.compile(optimizer=k.optimizers.Adam(0.05), loss="binary_crossentropy")
            before = [v.numpy().copy() for v in hub_layer.resolved_object.trainable_variables]
            history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
            after = [v.numpy() for v in hub_layer.resolved_object.trainable_variables]
            moved = any(not np.array_equal(a, b) for a, b in zip(before, after))
            print(strategy.num_replicas_in_sync,
                  history.history["loss"][-1] < history.history["loss"][0], moved)
        """
    )
    assert out.split() == ["2", "True", "True"] * 2


def test_nested_inputs_and_dict_outputs(kr: SimpleNamespace, dict_model_path: str) -> None:
    keras = kr.keras
    feed = {"x": tf.constant([[3.0, 1.0], [1.0, 1.0]]), "scale": tf.constant([[2.0], [5.0]])}
    layer = kr.KerasLayer(dict_model_path, trainable=True)
    out = layer(feed)
    assert out["projected"].numpy().tolist() == [[2.0], [0.0]]
    assert out["scaled"].numpy().tolist() == [[4.0], [0.0]]
    picked = kr.KerasLayer(dict_model_path, output_key="scaled")
    assert picked(feed).numpy().tolist() == [[4.0], [0.0]]

    inputs = {
        "x": keras.Input(shape=(2,), name="x"),
        "scale": keras.Input(shape=(1,), name="scale"),
    }
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)["scaled"]))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    before = layer.resolved_object.w.numpy().copy()
    model.fit(feed, np.array([[1.0], [2.0]]), epochs=3, verbose=0)
    assert not np.array_equal(before, layer.resolved_object.w.numpy())


def test_dot_keras_file_carries_its_savedmodel_to_a_new_machine(
    kr: SimpleNamespace, text_embedding_path: str, tmp_path
) -> None:
    import shutil

    source = tmp_path / "model_that_will_vanish"
    shutil.copytree(text_embedding_path, source)
    embed = kr.KerasLayer(str(source), trainable=True)
    model = classifier(kr, embed)
    model.fit(texts(), LABELS, epochs=2, verbose=0)
    np.save(tmp_path / "expected.npy", model.predict(tf.constant(SENTENCES), verbose=0))
    model.save(tmp_path / "classifier.keras")
    shutil.rmtree(source)  # the handle no longer resolves anywhere

    # A fresh process with an empty cache, as on another machine: only
    # `import savedhub` and Keras' own loader, in safe mode, no custom_objects.
    code = f"""
        import numpy as np, tensorflow as tf
        import savedhub
        import {kr.keras.__name__} as k
        model = k.models.load_model({str(tmp_path / "classifier.keras")!r})
        x = tf.constant({SENTENCES!r})
        np.testing.assert_allclose(
            model.predict(x, verbose=0), np.load({str(tmp_path / "expected.npy")!r}), rtol=1e-5)
        model.fit(x, np.array([1., 0.] * 4), epochs=1, verbose=0)  # still fine-tunable
        tf.saved_model.save(model.layers[0].resolved_object, {str(tmp_path / "reexport")!r})
        print("OK")
        """
    env = {"SAVEDHUB_CACHE_DIR": str(tmp_path / "new_machine_cache")}
    assert _run_python(code, env).split() == ["OK"]
    assert _run_python(code, env).split() == ["OK"]  # now from the cached copy
    assert len(list((tmp_path / "new_machine_cache" / "keras-embedded").iterdir())) == 1
