"""What tensorflow_hub 0.16.1's own tests check, checked on savedhub, on both Kerases.

Each test names the behaviour it keeps; the models are small stand-ins built
here with the same interfaces as the ones those tests use (a half-plus-one
regression, a batch norm, a text length embedding, hyperparameters, dicts in
and out, outputs of unknown shape, extra attributes). Messages are matched on
tensorflow_hub's own words, which code written for it relies on.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

import savedhub as hub
from savedhub.keras_layer import Keras3Layer, TFKerasLayer


@pytest.fixture(params=["keras3", "tf_keras"])
def kr(request: pytest.FixtureRequest) -> SimpleNamespace:
    if request.param == "keras3":
        import keras

        return SimpleNamespace(name="keras3", keras=keras, KerasLayer=Keras3Layer)
    import tf_keras

    return SimpleNamespace(name="tf_keras", keras=tf_keras, KerasLayer=TFKerasLayer)


def _json_round_trip(config: dict[str, object]) -> dict[str, object]:
    return json.loads(json.dumps(config))  # type: ignore[no-any-return]


# -- stand-in models -----------------------------------------------------------


def _half_plus_one(path: str, through_keras: bool) -> str:
    """y = w*x + 1 with w=0.5 trainable (L2 0.01) and a frozen kernel and bias of 1."""
    import tf_keras as k

    inputs = k.Input(shape=(1,))
    scale = k.layers.Dense(
        1, use_bias=False, kernel_initializer=k.initializers.Constant(0.5),
        kernel_regularizer=k.regularizers.l2(0.01),
    )  # fmt: skip
    shift = k.layers.Dense(1, trainable=False, kernel_initializer="ones", bias_initializer="ones")
    model = k.Model(inputs, shift(scale(inputs)))
    if through_keras:
        tf.saved_model.save(model, path)
        return path

    @tf.function(input_signature=[tf.TensorSpec((None, 1))])
    def call(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    @tf.function(input_signature=[])
    def l2_loss() -> tf.Tensor:
        return model.losses[0]

    root = tf.train.Checkpoint()
    root.__call__ = call
    root.variables = model.trainable_variables + model.non_trainable_variables
    root.trainable_variables = [scale.kernel]
    root.regularization_losses = [l2_loss]
    tf.saved_model.save(root, path)
    return path


def _batch_norm(path: str) -> str:
    """A batch norm (momentum 0.8) traced for training=True and False."""
    import tf_keras as k

    inputs = k.Input(shape=(1,))
    norm = k.layers.BatchNormalization(momentum=0.8)
    model = k.Model(inputs, norm(inputs))

    @tf.function
    def call(x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return model(x, training=training)

    for training in (True, False):
        call.get_concrete_function(tf.TensorSpec((None, 1)), training=training)
    root = tf.train.Checkpoint()
    root.__call__ = call
    root.trainable_variables = [norm.beta, norm.gamma]
    root.variables = [norm.beta, norm.gamma, norm.moving_mean, norm.moving_variance]
    root.regularization_losses = []
    tf.saved_model.save(root, path)
    return path


def _text_length(path: str) -> str:
    """Strings [b, 1] -> length * [0.1, 0.3], trainable, with an L2 loss."""
    weights = tf.Variable([[0.1, 0.3]])

    @tf.function(input_signature=[tf.TensorSpec((None, 1), tf.string)])
    def call(text: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.strings.length(text), tf.float32) @ weights

    @tf.function(input_signature=[])
    def l2_loss() -> tf.Tensor:
        return 0.01 * tf.reduce_sum(weights**2)

    root = tf.train.Checkpoint(weights=weights)
    root.__call__ = call
    root.variables = root.trainable_variables = [weights]
    root.regularization_losses = [l2_loss]
    tf.saved_model.save(root, path)
    return path


def _hyperparameters(path: str) -> str:
    """y = a*x + b with scalar hyperparameters a=1, b=0 and no variables."""

    @tf.function(input_signature=[tf.TensorSpec((None, 1)), tf.TensorSpec(()), tf.TensorSpec(())])
    def call(x: tf.Tensor, a: float = 1.0, b: float = 0.0) -> tf.Tensor:
        return a * x + b

    root = tf.train.Checkpoint()
    root.__call__ = call
    tf.saved_model.save(root, path)
    return path


def _dicts(path: str) -> str:
    """{"x", "y"} -> [x+y, x+2y], or with return_dict {"sigma": that, "delta": x-y}."""

    @tf.function
    def call(d: dict[str, tf.Tensor], return_dict: bool = False) -> object:
        sigma = tf.concat([d["x"] + d["y"], d["x"] + 2 * d["y"]], axis=-1)
        return {"sigma": sigma, "delta": d["x"] - d["y"]} if return_dict else sigma

    spec = {"x": tf.TensorSpec((None, 1)), "y": tf.TensorSpec((None, 1))}
    for return_dict in (False, True):
        call.get_concrete_function(spec, return_dict=return_dict)
    root = tf.train.Checkpoint()
    root.__call__ = call
    tf.saved_model.save(root, path)
    return path


def _unknown_shapes(path: str) -> str:
    """x [b, 1] -> [x, 2x broadcast to [b,2,2], 3x to [b,3,3,3]], shapes hidden from tracing."""

    def hidden(shape: tf.Tensor) -> tf.Tensor:
        noise = 0.1 * tf.sin(tf.random.uniform((), -3.0, 3.0)) + 0.3
        return tf.cast(tf.cast(shape, tf.float32) + noise, tf.int32)

    def call(x: tf.Tensor) -> list[tf.Tensor]:
        batch = tf.shape(x)[0]
        return [
            tf.broadcast_to(tf.reshape(i * x, [batch] + [1] * i), hidden([batch] + [i] * i))
            for i in (1, 2, 3)
        ]

    root = tf.train.Checkpoint()
    root.__call__ = tf.function(call, input_signature=[tf.TensorSpec((None, 1))])
    tf.saved_model.save(root, path)
    return path


def _plus_one(path: str, keras_default: bool = False) -> str:
    """x + 1 for any shape; with keras_default, __call__ takes `training` (identity
    unless training) and x + 1 is a "plus_one" signature."""

    @tf.function(input_signature=[tf.TensorSpec(None)])
    def plus_one(x: tf.Tensor) -> tf.Tensor:
        return x + 1

    @tf.function(input_signature=[tf.TensorSpec(None), tf.TensorSpec((), tf.bool)])
    def call(x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return tf.cond(training, lambda: x + 1, lambda: x)

    root = tf.train.Checkpoint()
    if not keras_default:
        root.__call__ = plus_one
        tf.saved_model.save(root, path)
        return path
    root.__call__ = call
    root.plus_one = plus_one
    tf.saved_model.save(root, path, signatures={"plus_one": plus_one})
    return path


def _with_attributes(path: str, scratch: Path) -> str:
    """Parses an integer from strings; carries an asset holding "12345" and a
    variable holding what parsing it gives."""
    source = scratch / "number.txt"
    source.write_text("12345\n")

    @tf.function(input_signature=[tf.TensorSpec((None, 1), tf.string)])
    def call(text: tf.Tensor) -> tf.Tensor:
        return tf.strings.to_number(text, tf.int64)

    root = tf.train.Checkpoint()
    root.__call__ = call
    root.sample_input = tf.saved_model.Asset(str(source))
    root.sample_output = tf.Variable([[12345]], dtype=tf.int64)
    tf.saved_model.save(root, path)
    source.unlink()  # only the model's own copy of the asset is left
    return path


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("parity")
    scratch = root / "scratch"
    scratch.mkdir()
    return SimpleNamespace(
        half_plus_one_raw=_half_plus_one(str(root / "hpo_raw"), through_keras=False),
        half_plus_one_keras=_half_plus_one(str(root / "hpo_keras"), through_keras=True),
        batch_norm=_batch_norm(str(root / "batch_norm")),
        text_length=_text_length(str(root / "text_length")),
        hyperparameters=_hyperparameters(str(root / "hparams")),
        dicts=_dicts(str(root / "dicts")),
        unknown_shapes=_unknown_shapes(str(root / "unknown_shapes")),
        plus_one=_plus_one(str(root / "plus_one")),
        keras_default=_plus_one(str(root / "keras_default"), keras_default=True),
        attributes=_with_attributes(str(root / "attributes"), scratch),
    )


def _one_input_model(kr: SimpleNamespace, layer: object, head: object = None) -> object:
    """keras.Model(x [b, 1] -> layer, then head if given)."""
    inputs = kr.keras.Input(shape=(1,))
    outputs = layer(inputs)  # type: ignore[operator]
    return kr.keras.Model(inputs, head(outputs) if head else outputs)  # type: ignore[operator]


def _regression_losses(model: object) -> list[float]:
    return [float(x) for x in model.losses]  # type: ignore[attr-defined]


# -- keras_layer_test.py: training ---------------------------------------------


@pytest.mark.parametrize("variant", ["raw", "keras"])
def test_half_plus_one_retrains_only_its_trainable_kernel(
    kr: SimpleNamespace, models: SimpleNamespace, variant: str
) -> None:
    keras = kr.keras
    path = models.half_plus_one_raw if variant == "raw" else models.half_plus_one_keras
    model = _one_input_model(kr, kr.KerasLayer(path, trainable=True))
    x = np.array([[0.0], [8.0], [10.0], [12.0]], "float32")
    np.testing.assert_array_equal(model(x), [[1.0], [5.0], [6.0], [7.0]])
    assert _regression_losses(model) == [pytest.approx(0.0025)]
    assert [len(w.shape) for w in model.trainable_weights] == [2]
    assert sorted(len(w.shape) for w in model.non_trainable_weights) == [1, 2]
    trainable_ids = {id(w) for w in model.trainable_weights}
    assert not trainable_ids & {id(w) for w in model.non_trainable_weights}

    model.compile(keras.optimizers.SGD(0.002), "mean_squared_error")
    xs = np.array([[9.0], [10.0], [11.0]] * 10, "float32")
    model.fit(xs, xs / 2 + 6, batch_size=len(xs), epochs=10, verbose=0)
    np.testing.assert_array_equal(model(np.array([[0.0]], "float32")), [[1.0]])  # bias kept
    np.testing.assert_allclose(model(np.array([[10.0]], "float32")), [[11.0]], rtol=0.03)
    assert _regression_losses(model) == [pytest.approx(0.01, rel=0.06)]


def test_regularization_loss_counts_only_while_trainable(
    kr: SimpleNamespace, models: SimpleNamespace
) -> None:
    layer = kr.KerasLayer(models.half_plus_one_raw, trainable=False)
    model = _one_input_model(kr, layer)
    assert sum(_regression_losses(model)) == 0.0  # [0.0] on tf_keras, [] on Keras 3
    layer.trainable = True
    assert _regression_losses(model) == [pytest.approx(0.0025)]
    layer.trainable = False
    assert sum(_regression_losses(model)) == 0.0


def _batch_norm_variables(layer: object) -> tuple[tf.Variable, ...]:
    obj = layer.resolved_object  # type: ignore[attr-defined]
    return tuple(obj.variables)  # beta, gamma, moving_mean, moving_variance


def test_batch_norm_retraining_updates_statistics_and_infers_with_them(
    kr: SimpleNamespace, models: SimpleNamespace
) -> None:
    keras = kr.keras
    layer = kr.KerasLayer(models.batch_norm, trainable=True)
    beta, _, mean, _ = _batch_norm_variables(layer)
    assert len(layer.weights) == 4
    model = _one_input_model(kr, layer)
    model.compile(keras.optimizers.SGD(0.1), "mean_squared_error")
    x = np.array([[11.0], [12.0], [13.0]], "float32")
    model.fit(x, 2 * x, batch_size=3, epochs=100, verbose=0)
    np.testing.assert_allclose(mean.numpy(), [12.0], rtol=1e-5)
    np.testing.assert_allclose(beta.numpy(), [24.0], rtol=1e-5)
    np.testing.assert_allclose(model(x), 2 * x, rtol=1e-3)
    probe = np.array([[10.0], [20.0], [30.0]], "float32")
    for _ in range(5):  # inference: aggregated statistics, no updates
        np.testing.assert_allclose(model(probe), 2 * probe, rtol=1e-3)
    np.testing.assert_allclose(mean.numpy(), [12.0], rtol=1e-5)


def test_frozen_batch_norm_stays_entirely_unchanged(
    kr: SimpleNamespace, models: SimpleNamespace
) -> None:
    keras = kr.keras
    layer = kr.KerasLayer(models.batch_norm, trainable=False)
    dense = keras.layers.Dense(
        1, use_bias=False, kernel_initializer=keras.initializers.Constant(1.5)
    )
    model = _one_input_model(kr, layer, dense)
    before = [v.numpy().copy() for v in _batch_norm_variables(layer)]
    assert [float(v[0]) for v in before] == [0.0, 1.0, 0.0, 1.0]
    model.compile(keras.optimizers.SGD(0.1), "mean_squared_error")
    x = np.array([[1.0], [2.0], [3.0]], "float32")
    model.fit(x, 2 * x, batch_size=3, epochs=20, verbose=0)
    for old, variable in zip(before, _batch_norm_variables(layer), strict=True):
        np.testing.assert_array_equal(old, variable.numpy())
    np.testing.assert_allclose(model(x), 2 * x, rtol=1e-2)


def test_trainable_layer_with_zero_trainable_weights_logs_one_error(
    kr: SimpleNamespace, models: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    layer = kr.KerasLayer(models.hyperparameters, trainable=True)
    with caplog.at_level(logging.ERROR):
        layer(tf.constant([[10.0]]))
        layer(tf.constant([[10.0]]))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "zero trainable weights" in errors[0].getMessage()


def test_mixed_precision_training_and_resave(
    kr: SimpleNamespace, models: SimpleNamespace, tmp_path: Path
) -> None:
    keras = kr.keras
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input(shape=(1,), dtype="string")
        model = keras.Model(inputs, kr.KerasLayer(models.text_length, trainable=True)(inputs))
        model.compile(keras.optimizers.SGD(0.002, momentum=0.001), "mean_squared_error")
        # Neither Keras' fit takes nested lists of str any more: pass a tensor.
        x = tf.constant([["a"], ["aa"], ["aaa"]])
        history = model.fit(x, np.array([[1.0], [2.0], [3.0]]), verbose=0)
        assert np.isfinite(history.history["loss"][0])
        tf.saved_model.save(model, str(tmp_path / "resaved"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert tf.io.gfile.exists(str(tmp_path / "resaved" / "saved_model.pb"))


# -- keras_layer_test.py: calling, shapes, attributes --------------------------


def test_custom_attributes_of_the_loaded_object(
    kr: SimpleNamespace, models: SimpleNamespace
) -> None:
    layer = kr.KerasLayer(models.attributes)
    expected = layer.resolved_object.sample_output.value().numpy()
    asset = layer.resolved_object.sample_input.asset_path.numpy()
    with tf.io.gfile.GFile(asset) as f:
        text = tf.constant([[f.read()]])
    np.testing.assert_array_equal(layer(text).numpy(), expected)


@pytest.mark.parametrize("with_output_shape", [False, True])
def test_dict_inputs_and_outputs_in_a_functional_model(
    kr: SimpleNamespace, models: SimpleNamespace, with_output_shape: bool
) -> None:
    keras = kr.keras
    inputs = {"x": keras.Input(shape=(1,)), "y": keras.Input(shape=(1,))}
    kwargs: dict[str, object] = {"arguments": {"return_dict": True}}
    if with_output_shape:
        kwargs["output_shape"] = {"sigma": (2,), "delta": (1,)}
    layer = kr.KerasLayer(models.dicts, **kwargs)
    out = layer(inputs)
    joined = keras.layers.concatenate([out["delta"], out["sigma"]])
    model = keras.Model(inputs, [out["delta"], out["sigma"], joined])
    x = np.array([[11.0], [22.0], [33.0]], "float32")
    y = np.array([[1.0], [2.0], [3.0]], "float32")
    delta, sigma, concat = (t.numpy() for t in model({"x": x, "y": y}))
    np.testing.assert_allclose(delta, [[10.0], [20.0], [30.0]])
    np.testing.assert_allclose(sigma, [[12.0, 13.0], [24.0, 26.0], [36.0, 39.0]])
    np.testing.assert_allclose(concat, [[10.0, 12.0, 13.0], [20.0, 24.0, 26.0], [30.0, 36.0, 39.0]])
    config = _json_round_trip(layer.get_config())
    assert ("output_shape" in config) == with_output_shape
    clone = kr.KerasLayer.from_config(config)
    assert clone.get_config().get("output_shape") == config.get("output_shape")


@pytest.mark.parametrize("with_output_shape", [False, True])
def test_list_outputs_of_unknown_shape(
    kr: SimpleNamespace, models: SimpleNamespace, with_output_shape: bool
) -> None:
    kwargs = {"output_shape": [[1], [2, 2], [3, 3, 3]]} if with_output_shape else {}
    layer = kr.KerasLayer(models.unknown_shapes, **kwargs)
    model = _one_input_model(kr, layer)
    single, double, triple = (t.numpy() for t in model(np.array([[1.0], [10.0]], "float32")))
    np.testing.assert_allclose(single, [[1.0], [10.0]])
    np.testing.assert_allclose(double, [np.full((2, 2), 2.0), np.full((2, 2), 20.0)])
    np.testing.assert_allclose(triple, [np.full((3, 3, 3), 3.0), np.full((3, 3, 3), 30.0)])
    config = _json_round_trip(layer.get_config())
    assert config.get("output_shape") == kwargs.get("output_shape")
    assert kr.KerasLayer.from_config(config).get_config().get("output_shape") == config.get(
        "output_shape"
    )


def _as_list(shape: object, kr: SimpleNamespace) -> list[int | None]:
    """tf_keras layers give tf.TensorShape, Keras 3 layers plain tuples."""
    if kr.name == "tf_keras":
        assert isinstance(shape, tf.TensorShape), type(shape)
        return shape.as_list()
    assert isinstance(shape, tuple), type(shape)
    return list(shape)


@pytest.mark.parametrize("variant", ["raw", "keras"])
def test_compute_output_shape(kr: SimpleNamespace, models: SimpleNamespace, variant: str) -> None:
    path = models.half_plus_one_raw if variant == "raw" else models.half_plus_one_keras
    layer = kr.KerasLayer(path)
    assert _as_list(layer.compute_output_shape((10, 1)), kr) == [10, 1]
    layer.get_config()


def test_compute_output_shape_from_output_shape_with_other_input_dtypes(
    kr: SimpleNamespace, models: SimpleNamespace
) -> None:
    layer = kr.KerasLayer(models.text_length, output_shape=(2,))
    assert _as_list(layer.compute_output_shape((None, 1)), kr) == [None, 2]
    assert _as_list(layer.compute_output_shape((3, 1)), kr) == [3, 2]


# -- keras_layer_test.py: config -----------------------------------------------


@pytest.mark.parametrize(
    ("model", "arguments", "x"),
    [
        ("half_plus_one_raw", None, [[10.0]]),
        ("half_plus_one_keras", None, [[10.0]]),
        ("hyperparameters", {"a": 10.0}, [[1.0], [2.0], [3.0]]),
    ],
)
def test_config_round_trip_gives_the_same_results(
    kr: SimpleNamespace, models: SimpleNamespace, model: str, arguments: object, x: object
) -> None:
    layer = kr.KerasLayer(getattr(models, model), arguments=arguments)
    inputs = np.array(x, "float32")
    result = layer(inputs).numpy()
    if arguments:
        np.testing.assert_array_equal(result, 10 * inputs)
    clone = kr.KerasLayer.from_config(_json_round_trip(layer.get_config()))
    np.testing.assert_array_equal(clone(inputs).numpy(), result)


def test_model_to_json_and_back_with_custom_objects(
    kr: SimpleNamespace, models: SimpleNamespace
) -> None:
    keras = kr.keras
    model = keras.Sequential([keras.Input(shape=(1,)), kr.KerasLayer(models.half_plus_one_raw)])
    x = np.array([[10.0]], "float32")
    restored = keras.models.model_from_json(
        model.to_json(), custom_objects={"KerasLayer": kr.KerasLayer}
    )
    np.testing.assert_array_equal(restored(x).numpy(), model(x).numpy())


@pytest.mark.parametrize(
    ("signature", "output_key", "as_dict"),
    [(None, None, False), ("serving_default", None, True), ("serving_default", "output_0", False)],
)
def test_plus_one_with_and_without_signature(
    kr: SimpleNamespace,
    models: SimpleNamespace,
    signature: str | None,
    output_key: str | None,
    as_dict: bool,
) -> None:
    layer = kr.KerasLayer(
        models.plus_one,
        signature=signature,
        output_key=output_key,
        signature_outputs_as_dict=as_dict,
    )
    output = layer(10.0)
    if as_dict:
        assert isinstance(output, dict) and float(output["output_0"]) == 11.0
    else:
        assert float(output) == 11.0
    clone = kr.KerasLayer.from_config(_json_round_trip(layer.get_config()))
    assert float(tf.nest.flatten(clone(10.0))[0]) == 11.0


def test_signature_of_a_model_whose_call_takes_training(
    kr: SimpleNamespace, models: SimpleNamespace
) -> None:
    layer = kr.KerasLayer(
        models.keras_default, signature="plus_one", signature_outputs_as_dict=True
    )
    output = layer(10.0)
    assert isinstance(output, dict) and float(output["output_0"]) == 11.0
    assert float(kr.KerasLayer(models.keras_default)(10.0)) == 10.0  # __call__, not training


# -- keras_layer_test.py: errors -----------------------------------------------

SIGNATURE_OUTPUT = (
    "When using a signature, either output_key or signature_outputs_as_dict=True should be set."
)


def test_errors_at_construction_keep_tensorflow_hub_text_and_types(
    kr: SimpleNamespace, models: SimpleNamespace
) -> None:
    path = models.plus_one
    with pytest.raises(ValueError, match="^" + SIGNATURE_OUTPUT.replace(".", r"\.")):
        kr.KerasLayer(path, signature="serving_default")
    with pytest.raises(ValueError, match="^" + SIGNATURE_OUTPUT.replace(".", r"\.")):
        kr.KerasLayer(path, signature="default", signature_outputs_as_dict=True, output_key="o")
    with pytest.raises(
        ValueError, match="^signature_outputs_as_dict is only valid if specifying a signature *"
    ):
        kr.KerasLayer(path, signature_outputs_as_dict=True)
    with pytest.raises(ValueError):
        kr.KerasLayer(path, signature=None, tags=["train"])
    loaded = hub.load(path)
    with pytest.raises(ValueError, match="^Passing a callable handle is mutually exclusive"):
        kr.KerasLayer(loaded, tags=["serve"])
    with pytest.raises(NotImplementedError, match="^Can only generate a valid config"):
        kr.KerasLayer(loaded).get_config()


def test_tf_saved_model_save_of_a_layer_without_handle(
    kr: SimpleNamespace, models: SimpleNamespace, tmp_path: Path
) -> None:
    """get_config raises NotImplementedError for such a layer, which is what lets
    tf.saved_model.save fall back to saving the model without its config."""
    keras = kr.keras
    model = keras.Sequential([keras.Input(shape=(1,)), kr.KerasLayer(hub.load(models.plus_one))])
    tf.saved_model.save(model, str(tmp_path / "saved"))
    serve = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    (output,) = serve(tf.constant([[1.0]])).values()
    np.testing.assert_array_equal(output, [[2.0]])


def test_errors_at_call_time_keep_tensorflow_hub_text_and_types(
    kr: SimpleNamespace, models: SimpleNamespace
) -> None:
    not_a_dict = kr.KerasLayer(models.plus_one, output_key="output_0")  # fine until called
    with pytest.raises(ValueError, match="Specifying `output_key` is forbidden if output type "):
        not_a_dict(10.0)
    layer = kr.KerasLayer(
        models.plus_one, signature="serving_default", signature_outputs_as_dict=True, trainable=True
    )
    layer.trainable = True
    with pytest.raises(ValueError, match="trainable.*=.*True.*unsupported"):
        layer(10.0)


# -- module_v2_test.py, saved_model_module_test.py ----------------------------


@pytest.mark.parametrize("tags", [None, ["serve"]])
def test_load_marks_tf2_models_as_not_hub_modules_v1(
    models: SimpleNamespace, tags: list[str] | None
) -> None:
    assert hub.load(models.plus_one, tags)._is_hub_module_v1 is False


def test_load_of_an_incomplete_folder_and_of_a_non_string(tmp_path: Path) -> None:
    (tmp_path / "variables.txt").write_text("")
    with pytest.raises(ValueError, match="contains neither"):
        hub.load(str(tmp_path))
    with pytest.raises(ValueError, match="^Expected a string, got 0"):
        hub.load(0)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="does not exist"):
        hub.load(str(tmp_path / "missing"))


class _Doubler(tf.Module):
    @tf.function
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return 2 * x


def test_load_saved_model_and_call_its_serving_signature(tmp_path: Path) -> None:
    doubler = _Doubler()

    @tf.function(input_signature=[tf.TensorSpec((3,))])
    def serving_default(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"output": doubler(x)}

    signatures = {"serving_default": serving_default}
    tf.saved_model.save(doubler, str(tmp_path / "m"), signatures=signatures)
    loaded = hub.load(str(tmp_path / "m"))
    out = loaded.signatures["serving_default"](tf.constant([2.0, 4.0, 5.0]))["output"]
    np.testing.assert_allclose(out, [4.0, 8.0, 10.0])


# -- e2e_test.py --------------------------------------------------------------


def _plain_tar_like_e2e(folder: str, archive: Path) -> bytes:
    """An uncompressed tar named .tgz that lists folders recursively *and* their
    files again, as tensorflow_hub's end-to-end test builds its archives."""
    with tarfile.open(archive, "w") as tar:
        for directory, subdirs, files in os.walk(folder):
            for name in subdirs:
                full = os.path.join(directory, name)
                tar.add(full, arcname=os.path.relpath(full, folder))
            for name in files:
                full = os.path.join(directory, name)
                tar.add(full, arcname=os.path.relpath(full, folder))
    return archive.read_bytes()


def test_http_archive_and_a_file_url_cache_dir(
    hub_server: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Square(tf.Module):
        @tf.function
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            return x * x

    square = Square()
    square(tf.constant(0.0))
    tf.saved_model.save(square, str(tmp_path / "module"))
    body = _plain_tar_like_e2e(str(tmp_path / "module"), tmp_path / "test_module.tgz")
    hub_server.add_file("/test_module.tgz", body)  # type: ignore[attr-defined]
    url = hub_server.url("/test_module.tgz")  # type: ignore[attr-defined]
    assert float(hub.load(url)(11.0)) == 121.0

    cache = tmp_path / "cache"
    monkeypatch.delenv("SAVEDHUB_CACHE_DIR")
    monkeypatch.setenv("TFHUB_CACHE_DIR", f"file://{cache}")
    assert float(hub.load(url)(11.0)) == 121.0
    entries = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(entries) == 1
    assert (cache / f"{entries[0].name}.descriptor.txt").is_file()
    assert sorted(os.listdir(entries[0])) == [
        "assets",
        "fingerprint.pb",
        "saved_model.pb",
        "variables",
    ]
    assert not (Path.cwd() / "file:").exists()


def test_cache_dir_on_another_filesystem_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SAVEDHUB_CACHE_DIR")
    monkeypatch.setenv("TFHUB_CACHE_DIR", "gs://bucket/cache")
    with pytest.raises(ValueError, match="TFHUB_CACHE_DIR='gs://bucket/cache'.*local folder"):
        hub.resolve("https://tfhub.dev/google/nnlm-en-dim128/2")


def test_tf1_hub_module_over_http(hub_server: object, tf1_hub_path: str) -> None:
    from archives import pack_folder

    hub_server.add_file("/half_plus_two_v1.tar.gz", pack_folder(tf1_hub_path))  # type: ignore[attr-defined]
    loaded = hub.load(hub_server.url("/half_plus_two_v1.tar.gz"))  # type: ignore[attr-defined]
    assert loaded._is_hub_module_v1 is True
    out = loaded.signatures["default"](tf.constant([[1.0, 1.0]]))
    np.testing.assert_allclose(next(iter(out.values())), [[3.5]])
