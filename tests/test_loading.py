"""hub.load and hub.resolve on every local handle kind and every fixture."""

from __future__ import annotations

import os
import pathlib
import shutil
import tarfile

import numpy as np
import pytest
import tensorflow as tf

import savedhub as hub


def test_load_my_mul_by_path_multiplies(my_mul_path: str) -> None:
    obj = hub.load(my_mul_path)
    np.testing.assert_allclose(obj(tf.constant([10.0, 20.0])).numpy(), [20.0, 40.0])
    assert [v.numpy() for v in obj.trainable_variables] == [2.0]
    assert obj.regularization_losses[0]().numpy() == pytest.approx(0.004)


def test_load_accepts_pathlike_and_file_url(my_mul_path: str) -> None:
    for handle in (pathlib.Path(my_mul_path), "file://" + my_mul_path):
        obj = hub.load(handle)
        np.testing.assert_allclose(obj(tf.constant([1.5])).numpy(), [3.0])


def test_resolve_local_returns_the_folder_itself(my_mul_path: str) -> None:
    assert hub.resolve(my_mul_path) == my_mul_path
    assert hub.resolve(pathlib.Path(my_mul_path)) == my_mul_path
    assert hub.resolve("file://" + my_mul_path) == my_mul_path


def test_load_reads_tf_gfile_filesystems(my_mul_path: str) -> None:
    # ram:// is a TensorFlow filesystem that is not the local disk: the same
    # code path as gs://, without a network.
    target = "ram://models/my_mul"
    for root, _, files in os.walk(my_mul_path):
        rel = os.path.relpath(root, my_mul_path)
        dest = target if rel == "." else f"{target}/{rel}"
        tf.io.gfile.makedirs(dest)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), f"{dest}/{name}", overwrite=True)
    assert hub.resolve(target) == target
    obj = hub.load(target)
    np.testing.assert_allclose(obj(tf.constant([10.0, 20.0])).numpy(), [20.0, 40.0])


def test_load_missing_remote_filesystem_folder_names_it() -> None:
    with pytest.raises(hub.ModelNotFoundError, match="ram://nothing/here"):
        hub.load("ram://nothing/here")


def test_load_passes_options(my_mul_path: str) -> None:
    options = tf.saved_model.LoadOptions(experimental_io_device="/job:localhost")
    obj = hub.load(my_mul_path, options=options)
    np.testing.assert_allclose(obj(tf.constant([1.0])).numpy(), [2.0])


def test_load_text_embedding_with_asset_and_training_mode(text_embedding_path: str) -> None:
    obj = hub.load(text_embedding_path)
    sentences = tf.constant(["A great movie!", "", "words nobody knows"])
    out = obj(sentences)
    assert out.shape == (3, 32) and out.dtype == tf.float32
    np.testing.assert_array_equal(out[1].numpy(), np.tanh(obj.trainable_variables[2].numpy()))
    np.testing.assert_array_equal(obj(sentences, training=False).numpy(), out.numpy())
    assert not np.allclose(obj(sentences, training=True).numpy(), out.numpy())
    served = obj.signatures["serving_default"](inputs=sentences)
    np.testing.assert_allclose(served["default"].numpy(), out.numpy(), rtol=1e-6)
    assert served["token_count"].numpy().tolist() == [3, 0, 3]
    assert obj.regularization_losses[0]().numpy() > 0
    assert len(obj.variables) == 3


def test_text_embedding_folder_is_self_contained(text_embedding_path: str, tmp_path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(text_embedding_path, moved)
    expected = hub.load(text_embedding_path)(tf.constant(["good film"])).numpy()
    np.testing.assert_allclose(hub.load(str(moved))(tf.constant(["good film"])).numpy(), expected)


def test_load_keras3_export(keras3_export_path: str) -> None:
    obj = hub.load(keras3_export_path)
    x = np.ones((2, 4), np.float32)
    out = obj.serve(x)
    assert out.shape == (2, 3)
    sig = obj.signatures["serving_default"](features=tf.constant(x))
    np.testing.assert_allclose(next(iter(sig.values())).numpy(), out.numpy(), rtol=1e-6)


def test_load_tf_keras_model(tf_keras_path: str) -> None:
    obj = hub.load(tf_keras_path)
    x = tf.ones((3, 4))
    assert obj(x, training=False).shape == (3, 2)
    assert len(obj.trainable_variables) == 4
    assert len(obj.regularization_losses) == 1


def test_load_tf1_hub_module_uses_empty_tags(tf1_hub_path: str) -> None:
    obj = hub.load(tf1_hub_path)
    out = obj.signatures["default"](x=tf.constant([[1.0, 1.0], [2.0, 0.0]]))
    np.testing.assert_allclose(out["default"].numpy(), [[3.5], [2.5]])
    assert sorted(v.name for v in obj.variables) == ["b:0", "w:0"]


def test_non_string_handle_is_rejected() -> None:
    with pytest.raises(hub.InvalidHandleError, match="string or a path") as info:
        hub.resolve(42)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    with pytest.raises(hub.InvalidHandleError, match="empty"):
        hub.load("   ")


def test_missing_path_names_handle_and_fix(tmp_path) -> None:
    missing = str(tmp_path / "no_such_model")
    with pytest.raises(hub.ModelNotFoundError, match="does not exist") as info:
        hub.load(missing)
    assert missing in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_folder_without_saved_model_lists_contents(tmp_path) -> None:
    (tmp_path / "weights.h5").write_bytes(b"x")
    (tmp_path / "notes").mkdir()
    with pytest.raises(hub.NotASavedModelError, match=r"no saved_model\.pb") as info:
        hub.resolve(str(tmp_path))
    assert "weights.h5" in str(info.value) and "notes/" in str(info.value)


def test_folder_with_nested_model_points_to_it(tmp_path, my_mul_path: str) -> None:
    shutil.copytree(my_mul_path, tmp_path / "inner")
    with pytest.raises(hub.NotASavedModelError, match="one level down") as info:
        hub.resolve(str(tmp_path))
    assert str(tmp_path / "inner") in str(info.value)


def test_archive_file_says_how_to_use_it(tmp_path, my_mul_path: str) -> None:
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(my_mul_path, arcname=".")
    with pytest.raises(hub.NotASavedModelError, match="tar -xzf model.tar.gz"):
        hub.load(str(archive))


def test_graph_file_points_to_its_folder(my_mul_path: str) -> None:
    with pytest.raises(hub.NotASavedModelError, match="pass the folder"):
        hub.resolve(os.path.join(my_mul_path, "saved_model.pb"))


def test_import_and_resolve_do_not_import_tensorflow(my_mul_path: str) -> None:
    import subprocess
    import sys

    code = (
        f"import sys, savedhub; savedhub.resolve({my_mul_path!r}); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
