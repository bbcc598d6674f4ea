"""savedhub.lint: one broken SavedModel per finding, and clean models with none.

Each broken model is what a publisher would plausibly save by mistake; the
test asserts the exact set of (severity, code) lint reports for it, so a check
that fires where it should not fails as surely as one that stays silent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

import savedhub
from savedhub.errors import NotASavedModelError

SPEC = tf.TensorSpec([None, 2], tf.float32)


def codes(path: str | Path) -> set[tuple[str, str]]:
    return {(f.severity, f.code) for f in savedhub.lint(path)}


def _interface(obj: tf.Module, *variables: tf.Variable) -> None:
    obj.variables = list(variables)
    obj.trainable_variables = list(variables)
    obj.regularization_losses = [tf.function(input_signature=[])(lambda: tf.constant(0.0))]


class _Linear(tf.train.Checkpoint):
    """A clean Reusable SavedModel; subclasses break one rule each."""

    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable([[1.0], [2.0]])
        _interface(self, self.w)

    @tf.function(input_signature=[SPEC])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, self.w)


@pytest.fixture(scope="module")
def broken_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("broken")


def _save(root: Path, name: str, obj: object, **kwargs: object) -> str:
    path = root / name
    if not path.exists():
        tf.saved_model.save(obj, str(path), **kwargs)
    return str(path)


def test_conftest_models_pass_lint_without_errors(
    my_mul_path: str,
    text_embedding_path: str,
    keras3_export_path: str,
    tf_keras_path: str,
    tf1_hub_path: str,
) -> None:
    assert codes(my_mul_path) == set()
    assert codes(text_embedding_path) == set()
    assert codes(tf_keras_path) == set()
    # model.export() offers only a signature: usable, but not fine-tunable.
    assert codes(keras3_export_path) == {
        ("warning", "missing-call"),
        ("warning", "missing-regularization-losses"),
    }
    assert codes(tf1_hub_path) == {("warning", "tf1-hub-format")}


def test_converted_model_passes_lint_without_errors(minilm_path: str) -> None:
    assert not [f for f in savedhub.lint(minilm_path) if f.severity == "error"]


def test_clean_low_level_model_has_no_findings(broken_root: Path) -> None:
    assert codes(_save(broken_root, "clean", _Linear())) == set()


def test_nothing_callable_is_an_error(broken_root: Path) -> None:
    module = tf.Module()
    module.w = tf.Variable(1.0)
    findings = savedhub.lint(_save(broken_root, "no_entry", module))
    assert {(f.severity, f.code) for f in findings} == {
        ("error", "no-entry-point"),
        ("warning", "missing-variables"),  # no __call__: not claiming the interface
        ("warning", "missing-trainable-variables"),
        ("warning", "missing-regularization-losses"),
    }
    assert findings[0].severity == "error"  # errors come first
    assert "__call__" in findings[0].message


def test_keras_export_without_call_is_a_warning(keras3_export_path: str) -> None:
    (finding,) = [f for f in savedhub.lint(keras3_export_path) if f.code == "missing-call"]
    assert finding.severity == "warning"
    assert "training" in finding.message


def test_call_without_serving_signature(broken_root: Path) -> None:
    class NoSignature(tf.train.Checkpoint):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable([[1.0], [2.0]])
            _interface(self, self.w)
            self.__call__ = tf.function(lambda x: tf.matmul(x, self.w))
            self.__call__.get_concrete_function(SPEC)

    path = _save(broken_root, "no_signature", NoSignature())
    assert [s.name for s in savedhub.info(path).signatures] == []
    assert codes(path) == {("warning", "no-serving-signature")}


def test_tf_module_without_interface_attributes(broken_root: Path) -> None:
    class Bare(tf.Module):  # tf.Module's variables property is not saved
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable([[1.0], [2.0]])

        @tf.function(input_signature=[SPEC])
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            return tf.matmul(x, self.w)

    assert codes(_save(broken_root, "bare_module", Bare())) == {
        ("error", "missing-variables"),
        ("warning", "missing-trainable-variables"),
        ("warning", "missing-regularization-losses"),
    }


def test_trainable_variable_missing_from_variables(broken_root: Path) -> None:
    model = _Linear()
    model.b = tf.Variable([0.5])
    model.trainable_variables = [model.w, model.b]  # b is not in variables
    findings = savedhub.lint(_save(broken_root, "inconsistent", model))
    assert {(f.severity, f.code) for f in findings} == {("error", "trainable-not-in-variables")}
    assert "1 of obj.trainable_variables" in findings[0].message


def test_regularization_loss_that_takes_an_argument(broken_root: Path) -> None:
    model = _Linear()
    model.regularization_losses = [
        tf.function(input_signature=[tf.TensorSpec([], tf.float32)])(
            lambda scale: scale * tf.reduce_sum(model.w**2)
        )
    ]
    assert codes(_save(broken_root, "bad_loss", model)) == {("error", "bad-regularization-loss")}


def test_call_traced_for_one_training_value(broken_root: Path) -> None:
    class InferenceOnly(tf.train.Checkpoint):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable([[1.0], [2.0]])
            _interface(self, self.w)

        @tf.function
        def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
            y = tf.matmul(x, self.w)
            return tf.nn.dropout(y, 0.5) if training else y

    model = InferenceOnly()
    concrete = model.__call__.get_concrete_function(SPEC, training=False)
    path = _save(broken_root, "one_training", model, signatures=concrete)
    findings = savedhub.lint(path)
    assert {(f.severity, f.code) for f in findings} == {("warning", "single-training-value")}
    assert "training=False" in findings[0].message
    assert savedhub.info(path).call_training_values == [False]


def test_optimizer_state_shipped(broken_root: Path) -> None:
    import numpy as np
    import tf_keras

    path = broken_root / "with_optimizer"
    if not path.exists():
        model = tf_keras.Sequential([tf_keras.Input(shape=(2,)), tf_keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
        model.save(str(path), save_format="tf")  # include_optimizer defaults to True
    findings = savedhub.lint(path)
    assert {(f.severity, f.code) for f in findings} == {("warning", "optimizer-variables")}
    assert "include_optimizer=False" in findings[0].message


def test_softmax_output_instead_of_logits(broken_root: Path) -> None:
    class Probabilities(_Linear):
        @tf.function(input_signature=[SPEC])
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            return tf.nn.softmax(tf.matmul(x, self.w))

    findings = savedhub.lint(_save(broken_root, "softmax", Probabilities()))
    assert {(f.severity, f.code) for f in findings} == {("warning", "probability-output")}
    assert "__call__" in findings[0].message
    assert "serving_default" in findings[0].message


def test_file_read_by_absolute_path(broken_root: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")

    class ReadsLabels(_Linear):
        @tf.function(input_signature=[SPEC])
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            count = tf.strings.length(tf.io.read_file(str(labels)))
            return tf.matmul(x, self.w) + tf.cast(count, tf.float32)

    findings = savedhub.lint(_save(broken_root, "absolute_path", ReadsLabels()))
    assert {(f.severity, f.code) for f in findings} == {("error", "absolute-asset-path")}
    assert str(labels) in findings[0].message


def test_asset_through_tf_saved_model_asset_is_clean(text_embedding_path: str) -> None:
    # The vocabulary was an absolute path at save time, wrapped in an Asset.
    assert not [f for f in savedhub.lint(text_embedding_path) if f.code == "absolute-asset-path"]


def test_symlinked_asset(my_mul_path: str, tmp_path: Path) -> None:
    model = tmp_path / "linked"
    shutil.copytree(my_mul_path, model)
    outside = tmp_path / "vocab.txt"
    outside.write_text("a\nb\n")
    os.symlink(outside, model / "assets" / "vocab.txt")
    findings = savedhub.lint(model)
    assert {(f.severity, f.code) for f in findings} == {("error", "symlink")}
    assert "assets/vocab.txt" in findings[0].message


def test_missing_variable_files(my_mul_path: str, tmp_path: Path) -> None:
    model = tmp_path / "no_index"
    shutil.copytree(my_mul_path, model)
    (model / "variables" / "variables.index").unlink()
    assert codes(model) == {("error", "missing-variable-files")}

    shards = tmp_path / "missing_shard"
    shutil.copytree(my_mul_path, shards)
    data = shards / "variables" / "variables.data-00000-of-00001"
    data.rename(shards / "variables" / "variables.data-00000-of-00002")
    assert codes(shards) == {("error", "missing-variable-files")}


def test_legacy_tf1_hub_format_is_a_warning(tf1_hub_path: str) -> None:
    (finding,) = savedhub.lint(tf1_hub_path)
    assert (finding.severity, finding.code) == ("warning", "tf1-hub-format")
    assert finding.to_dict() == {
        "severity": "warning",
        "code": "tf1-hub-format",
        "message": finding.message,
    }


def test_lint_refuses_what_is_not_a_saved_model(tmp_path: Path) -> None:
    with pytest.raises(NotASavedModelError, match="no saved_model.pb"):
        savedhub.lint(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"\x0f\xff not a proto")
    with pytest.raises(NotASavedModelError, match="does not parse"):
        savedhub.lint(tmp_path)


def test_public_names_survive_importing_their_modules(my_mul_path: str) -> None:
    import savedhub.publish.info
    import savedhub.publish.lint
    import savedhub.publish.pack  # noqa: F401

    assert callable(savedhub.lint) and callable(savedhub.info) and callable(savedhub.pack)
    assert savedhub.lint(my_mul_path) == []
