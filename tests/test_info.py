"""savedhub.info: what it reports matches what loading the model shows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import savedhub
from savedhub.errors import ModelNotFoundError, NotASavedModelError


def _disk_size(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(path)
        for name in names
    )


def _variable_bytes(variables: list[tf.Variable]) -> int:
    return sum(np.asarray(v.numpy()).nbytes for v in variables)


def test_low_level_model(my_mul_path: str) -> None:
    report = savedhub.info(my_mul_path)
    loaded = savedhub.load(my_mul_path)
    assert report.format == "tf2"
    assert report.has_call and report.call_training_values is None  # no training argument
    assert report.variables == len(loaded.variables) == 1
    assert report.trainable_variables == len(loaded.trainable_variables)
    assert report.variable_bytes == _variable_bytes(loaded.variables)
    assert report.regularization_losses == len(loaded.regularization_losses)
    assert report.assets == []
    assert report.size_bytes == _disk_size(my_mul_path)
    (signature,) = report.signatures
    assert signature.name == "serving_default"
    assert {k: (v.dtype, v.shape) for k, v in signature.inputs.items()} == {
        "inputs": ("float32", None)
    }


def test_text_model_with_assets_and_both_training_traces(text_embedding_path: str) -> None:
    report = savedhub.info(text_embedding_path)
    loaded = savedhub.load(text_embedding_path)
    assert report.call_training_values == [False, True]
    assert report.variables == len(loaded.variables)
    assert report.variable_bytes == _variable_bytes(loaded.variables)
    assert report.assets == sorted(os.listdir(os.path.join(text_embedding_path, "assets")))
    assert report.assets == ["vocab.txt"]
    signature = loaded.signatures["serving_default"]
    (info_signature,) = report.signatures
    expected_outputs = {
        k: (spec.dtype.name, tuple(spec.shape.as_list()))
        for k, spec in signature.structured_outputs.items()
    }
    assert {k: (v.dtype, v.shape) for k, v in info_signature.outputs.items()} == expected_outputs
    assert info_signature.inputs["inputs"].dtype == "string"


def test_keras3_export_has_signatures_but_no_call(keras3_export_path: str) -> None:
    report = savedhub.info(keras3_export_path)
    loaded = savedhub.load(keras3_export_path)
    assert not report.has_call and report.call_training_values is None
    assert report.regularization_losses is None
    # Keras 3 writes each variable twice in the object graph; info counts them once.
    assert report.variables == len(loaded.variables)
    assert report.trainable_variables == len(loaded.trainable_variables)
    assert report.variable_bytes == _variable_bytes(loaded.variables)
    assert [s.name for s in report.signatures] == sorted(loaded.signatures.keys())
    assert report.signatures[0].inputs["features"].shape == (None, 4)


def test_tf_keras_model(tf_keras_path: str) -> None:
    report = savedhub.info(tf_keras_path)
    loaded = savedhub.load(tf_keras_path)
    assert report.call_training_values == [False, True]
    assert report.variables == len(loaded.variables)
    assert report.regularization_losses == len(loaded.regularization_losses) == 1


def test_tf1_hub_module(tf1_hub_path: str) -> None:
    report = savedhub.info(tf1_hub_path)
    loaded = savedhub.load(tf1_hub_path)
    assert report.format == "tf1-hub"
    assert not report.has_call
    assert report.variables == len(loaded.variables) == 2
    assert report.variable_bytes == _variable_bytes(loaded.variables)
    (signature,) = report.signatures
    assert signature.name == "default"
    assert signature.inputs["x"].shape == (None, 2)
    assert signature.outputs["default"].shape == (None, 1)


def test_to_dict_is_json_and_str_is_readable(text_embedding_path: str) -> None:
    report = savedhub.info(text_embedding_path)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["call_training_values"] == [False, True]
    assert data["signatures"][0]["outputs"]["default"] == {"dtype": "float32", "shape": [None, 32]}
    text = str(report)
    assert "TF2 SavedModel" in text
    assert "traced for training=False, True" in text
    assert "vocab.txt" in text
    assert "out default: float32[?, 32]" in text


def test_info_accepts_file_urls_and_names_missing_models(my_mul_path: str, tmp_path: Path) -> None:
    assert savedhub.info(Path(my_mul_path).as_uri()).variables == 1
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        savedhub.info(tmp_path / "nothing")
    with pytest.raises(NotASavedModelError):
        savedhub.info(tmp_path)
