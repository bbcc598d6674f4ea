"""all-MiniLM-L6-v2 through the whole product: pushed to `savedhub serve`,
loaded by URL through the cache, used and fine-tuned as hub.KerasLayer on
Keras 3 and tf_keras, and re-exported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import savedhub as hub
from hubserver import push, running_hub
from savedhub.keras_layer import Keras3Layer, TFKerasLayer

TOKEN = "minilm-test-token"
SENTENCES = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "The food was awful.",
    "What a wonderful film.",
    "I hated every minute of it.",
    "A great concert tonight!",
    "The service was slow and rude.",
]
LABELS = np.array([1, 1, 0, 0, 1, 0, 1, 0], dtype="float32")


@pytest.fixture(scope="module")
def minilm_url(minilm_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("minilm-hub")
    tokens = root.parent / "minilm-tokens.txt"
    tokens.write_text(TOKEN + "\n")
    with running_hub(root / "hub", root.parent, tokens_file=tokens) as running:
        url = f"{running.url}/sentence-transformers/all-minilm-l6-v2/1"
        push(running, minilm_path, url, TOKEN)
        yield url


@pytest.fixture(params=["keras3", "tf_keras"])
def kr(request: pytest.FixtureRequest):  # noqa: ANN201
    if request.param == "keras3":
        import keras

        return keras, Keras3Layer
    import tf_keras

    return tf_keras, TFKerasLayer


def test_loaded_by_url_through_the_cache_matches_the_folder(
    minilm_url: str, minilm_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAVEDHUB_CACHE_DIR", str(tmp_path / "cache"))
    local = hub.load(minilm_path)(tf.constant(SENTENCES)).numpy()
    cached_dir = hub.resolve(minilm_url)
    assert str(tmp_path / "cache") in cached_dir
    remote = hub.load(minilm_url)(tf.constant(SENTENCES)).numpy()
    np.testing.assert_allclose(remote, local, atol=1e-6)
    monkeypatch.setenv("SAVEDHUB_OFFLINE", "1")  # the second load is a cache hit
    assert hub.resolve(minilm_url) == cached_dir


def test_frozen_and_fine_tuned_keras_layer_by_url(kr, minilm_url: str, tmp_path: Path) -> None:  # noqa: ANN001
    keras, KerasLayer = kr
    x = tf.constant(SENTENCES)
    frozen = KerasLayer(minilm_url)
    reference = frozen.resolved_object(x).numpy()
    np.testing.assert_allclose(frozen(x).numpy(), reference, atol=1e-6)
    assert frozen.trainable_weights == []

    loaded = hub.load(minilm_url)
    encoder = KerasLayer(loaded, trainable=True)
    assert len(encoder.trainable_weights) == len(loaded.trainable_variables) > 50
    model = keras.Sequential([encoder, keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    before = {v.name: v.numpy().copy() for v in loaded.trainable_variables}
    history = model.fit(x, LABELS, epochs=4, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    changed = [
        v.name for v in loaded.trainable_variables if not np.array_equal(before[v.name], v.numpy())
    ]
    assert len(changed) > 50  # the encoder itself moved, not just the head

    tuned = loaded(x).numpy()
    assert not np.allclose(tuned, reference, atol=1e-4)
    tf.saved_model.save(loaded, str(tmp_path / "finetuned"))
    np.testing.assert_allclose(hub.load(str(tmp_path / "finetuned"))(x).numpy(), tuned, atol=1e-5)
