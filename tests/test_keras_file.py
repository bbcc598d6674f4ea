""".keras files holding a hub layer: registration without import hooks, Keras'
safe mode, the embedded SavedModel and the cache it lands in, on both Kerases."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from savedhub.cache import list_entries, remove
from savedhub.keras_layer import Keras3Layer, TFKerasLayer, _keras_file

X = np.array([[1.0, 2.0], [3.0, 4.0], [0.5, -1.0]], dtype="float32")
Y = np.array([[1.0], [2.0], [0.0]], dtype="float32")


@pytest.fixture(params=["keras", "tf_keras"])
def kr(request: pytest.FixtureRequest) -> SimpleNamespace:
    if request.param == "keras":
        import keras

        return SimpleNamespace(name="keras", keras=keras, KerasLayer=Keras3Layer)
    import tf_keras

    return SimpleNamespace(name="tf_keras", keras=tf_keras, KerasLayer=TFKerasLayer)


def _save(kr: SimpleNamespace, handle: str, path: Path) -> np.ndarray:
    """A fine-tuned model around the hub layer, saved to ``path``; its predictions."""
    keras = kr.keras
    model = keras.Sequential(
        [keras.Input(shape=(2,)), kr.KerasLayer(handle, trainable=True), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    model.fit(X, Y, epochs=2, verbose=0)
    model.save(path)
    return np.asarray(model.predict(X, verbose=0))


def _run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture
def saved_files(kr: SimpleNamespace, my_mul_path: str, tmp_path: Path) -> SimpleNamespace:
    """Two .keras files: one whose handle is gone (only the embedded copy is
    left), one whose handle still resolves."""
    vanishing = tmp_path / "model_that_will_vanish"
    shutil.copytree(my_mul_path, vanishing)
    files = SimpleNamespace(
        embedded=tmp_path / "embedded.keras",
        reachable=tmp_path / "reachable.keras",
        cache=tmp_path / "new_machine_cache",
    )
    np.save(tmp_path / "embedded.npy", _save(kr, str(vanishing), files.embedded))
    np.save(tmp_path / "reachable.npy", _save(kr, my_mul_path, files.reachable))
    shutil.rmtree(vanishing)
    return files


def test_fresh_process_loads_an_embedded_savedmodel_only_with_safe_mode_off(
    kr: SimpleNamespace, saved_files: SimpleNamespace
) -> None:
    code = f"""
        import numpy as np
        import {kr.name} as k
        import savedhub  # after Keras: registers the layer at once
        x = np.array({X.tolist()!r}, dtype="float32")
        for name in ("reachable", "embedded"):
            path = {str(saved_files.embedded.parent)!r} + "/" + name
            try:
                model = k.models.load_model(path + ".keras")  # safe mode
                print(name, "safe:loaded")
            except (TypeError, ValueError) as exc:  # as Keras wraps a layer's errors
                assert "safe mode refuses" in str(exc), exc
                print(name, "safe:refused")
                model = k.models.load_model(path + ".keras", safe_mode=False)
            np.testing.assert_allclose(
                model.predict(x, verbose=0), np.load(path + ".npy"), rtol=1e-5)
            model.fit(x, np.ones((3, 1)), epochs=1, verbose=0)  # still trainable
        print("OK")
        """
    env = {"SAVEDHUB_CACHE_DIR": str(saved_files.cache)}
    expected = ["reachable", "safe:loaded", "embedded", "safe:refused", "OK"]
    assert _run_python(code, **env).split() == expected
    # Again, now with the copy in the cache: safe mode still decides.
    assert _run_python(code, **env).split() == expected

    # The copy is an ordinary cache entry: listed, and removed like any other.
    entries = list_entries(saved_files.cache)
    assert [e.handle.startswith(_keras_file.HANDLE_SCHEME) for e in entries] == [True]
    assert entries[0].state.value == "complete"
    # ...with each file's SHA-256 in its manifest, as for a download.
    [manifest] = [json.loads(p.read_text()) for p in saved_files.cache.glob("*.savedhub.json")]
    folder = next(p for p in saved_files.cache.iterdir() if (p / "saved_model.pb").is_file())
    assert manifest["sha256"] == {
        rel: hashlib.sha256((folder / rel).read_bytes()).hexdigest() for rel in manifest["files"]
    }
    assert remove(entries[0].handle, saved_files.cache) and not list_entries(saved_files.cache)


@pytest.mark.parametrize("kr", ["keras"], indirect=True)  # Keras 3's own switch
def test_unsafe_opt_in_of_keras_also_lets_the_embedded_model_load(
    saved_files: SimpleNamespace, kr: SimpleNamespace
) -> None:
    out = _run_python(
        f"""
        import keras, savedhub
        keras.config.enable_unsafe_deserialization()
        keras.models.load_model({str(saved_files.embedded)!r})
        print("OK")
        """,
        SAVEDHUB_CACHE_DIR=str(saved_files.cache),
    )
    assert out.split() == ["OK"]


def test_import_order_without_any_import_hook(
    kr: SimpleNamespace, my_mul_path: str, tmp_path: Path
) -> None:
    """`import savedhub` installs no hook. Imported before TensorFlow, it has no
    Keras to register with; Keras then cannot find the class (its own error)
    until hub.KerasLayer is mentioned once."""
    _save(kr, my_mul_path, tmp_path / "m.keras")
    out = _run_python(
        f"""
        import sys
        before = list(sys.meta_path)
        import savedhub as hub
        assert sys.meta_path == before, sys.meta_path
        assert "tensorflow" not in sys.modules
        import tensorflow as tf  # brings in the Keras that tf.keras names
        try:
            tf.keras.models.load_model({str(tmp_path / "m.keras")!r})
        except TypeError:
            print("unregistered")
        hub.KerasLayer  # any mention registers it
        model = tf.keras.models.load_model({str(tmp_path / "m.keras")!r})
        print(type(model.layers[0]).__module__)
        """,
        TF_USE_LEGACY_KERAS="1" if kr.name == "tf_keras" else "0",
    )
    layer_module = "_tf_keras" if kr.name == "tf_keras" else "_keras3"
    assert out.split() == ["unregistered", f"savedhub.keras_layer.{layer_module}"]


def test_importing_savedhub_after_keras_registers_at_once() -> None:
    out = _run_python(
        """
        import keras, tf_keras, savedhub
        print(keras.saving.get_registered_object("savedhub>KerasLayer").__module__)
        print(tf_keras.saving.get_registered_object("savedhub>KerasLayer").__module__)
        """
    )
    assert out.split() == ["savedhub.keras_layer._keras3", "savedhub.keras_layer._tf_keras"]


FORGED_FINGERPRINTS = ["../../../../tmp/x", "1-2-3", "1/2/3/4", 7, "1-2-3-4\n"]


def test_a_forged_fingerprint_is_refused_before_it_names_anything(
    kr: SimpleNamespace, saved_files: SimpleNamespace, tmp_path: Path
) -> None:
    with zipfile.ZipFile(saved_files.embedded) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    for forged in FORGED_FINGERPRINTS:
        forged_file = tmp_path / "forged.keras"
        with zipfile.ZipFile(forged_file, "w") as dst:
            for info, data in members:
                if info.filename == "config.json":
                    text = data.decode()
                    key = _find_fingerprint(json.loads(text))
                    data = text.replace(json.dumps(key), json.dumps(forged)).encode()
                dst.writestr(info, data)
        # Both Kerases wrap a layer's construction error in a TypeError quoting it.
        with pytest.raises(TypeError, match="not a SavedModel fingerprint"):
            kr.keras.models.load_model(forged_file, safe_mode=False)


def _find_fingerprint(config: object) -> str:
    if isinstance(config, dict):
        if "embedded_model" in config:
            return str(config["embedded_model"]["fingerprint"])
        for value in config.values():
            found = _find_fingerprint(value) if isinstance(value, (dict, list)) else None
            if found:
                return found
    if isinstance(config, list):
        for value in config:
            found = _find_fingerprint(value)
            if found:
                return found
    return ""


def test_keras_internals_savedhub_relies_on_are_where_it_looks() -> None:
    """Fails the day Keras moves what savedhub reads while a .keras file loads:
    the open archive in its loader's frame, and the safe mode in force."""
    import importlib

    for module_name, function, local in _keras_file.KERAS_LOADERS:
        module = importlib.import_module(module_name)
        code = getattr(module, function).__code__
        assert local in code.co_varnames, (module_name, function, code.co_varnames)
    for layer in (Keras3Layer, TFKerasLayer):
        assert layer._keras_safe_mode() is None  # outside of any load_model


def test_embedded_model_without_archive_or_cache_says_how_to_load(
    kr: SimpleNamespace, tmp_path: Path, my_mul_path: str
) -> None:
    vanishing = tmp_path / "gone"
    shutil.copytree(my_mul_path, vanishing)
    config = kr.KerasLayer(str(vanishing)).get_config()
    shutil.rmtree(vanishing)
    with pytest.raises(TypeError, match="load_model\\(path, safe_mode=False\\)"):
        kr.KerasLayer.from_config(config)


def test_saved_file_holds_the_savedmodel_under_its_fingerprint(
    kr: SimpleNamespace, saved_files: SimpleNamespace, my_mul_path: str
) -> None:
    key = _keras_file.fingerprint(my_mul_path)
    assert key and _keras_file.checked_fingerprint(key) == key
    with zipfile.ZipFile(saved_files.embedded) as archive:
        names = archive.namelist()
    assert any(n.endswith(f"/saved_model-{key}/saved_model.pb") for n in names), names
    assert tf.io.gfile.exists(my_mul_path)
