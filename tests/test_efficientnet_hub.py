"""EfficientNet-Lite0 through the whole product: both heads pushed to `savedhub serve`, loaded
by URL through the cache, used in the transfer_learning_with_hub flow on Keras 3 and
tf_keras (frozen features, a new head trained on the shipped photos with augmentation,
save and reload), fine-tuned and re-exported.

Keras runs on small crops (the model takes any size) and a few steps, to stay fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

import savedhub as hub
from hubserver import running_hub
from photos import golden, photos
from savedhub.publish.push import push

TOKEN = "efficientnet-test-token"
CROP = 96  # training crops; the photos are 224x224


@pytest.fixture(scope="module")
def urls(
    efficientnet_classifier_path: str,
    efficientnet_feature_vector_path: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("efficientnet-hub")
    tokens = root / "tokens.txt"
    tokens.write_text(TOKEN + "\n")
    with running_hub(root / "hub", root, tokens_file=tokens) as running:
        found = {}
        for head, path in (
            ("classification", efficientnet_classifier_path),
            ("feature_vector", efficientnet_feature_vector_path),
        ):
            url = f"{running.url}/tensorflow/efficientnet-lite0-{head.replace('_', '-')}/1"
            push(path, url, token=TOKEN)  # in this process: TensorFlow is imported already
            found[head] = url
        yield found


def augmented(count: int, seed: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``count`` random crops (flipped at random, brightness jittered) of the two photos;
    label 0 for the cat, 1 for the coffee."""
    source = tf.constant(photos())
    labels = tf.constant([i % 2 for i in range(count)], tf.int32)
    crops = []
    for i in range(count):
        pair = tf.constant([seed, i])
        image = tf.image.stateless_random_crop(source[i % 2], [CROP * 2, CROP * 2, 3], pair)
        image = tf.image.stateless_random_flip_left_right(image, pair)
        image = tf.image.stateless_random_brightness(image, 0.1, pair)
        crops.append(tf.clip_by_value(tf.image.resize(image, [CROP, CROP]), 0.0, 1.0))
    return tf.stack(crops), labels


def test_both_heads_load_by_url_through_the_cache(
    urls: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAVEDHUB_CACHE_DIR", str(tmp_path / "cache"))
    cached = hub.resolve(urls["classification"])
    assert cached.startswith(str(tmp_path / "cache"))
    logits = hub.load(urls["classification"])(tf.constant(photos())).numpy()
    for row, name in zip(logits, ("chelsea", "coffee"), strict=True):
        expected = golden()["photos"][name]
        assert list(np.argsort(-row)[:5]) == expected["top5"]
        np.testing.assert_allclose(row, expected["logits"], atol=1e-3, rtol=0)
    assert hub.load(urls["feature_vector"])(tf.zeros([1, 160, 160, 3])).shape == (1, 1280)
    monkeypatch.setenv("SAVEDHUB_OFFLINE", "1")  # loading again is a cache hit
    assert hub.resolve(urls["classification"]) == cached


def test_transfer_learning_with_a_frozen_feature_vector(
    kr: SimpleNamespace, urls: dict[str, str], tmp_path: Path
) -> None:
    keras = kr.keras
    images, labels = augmented(16, seed=1)
    features = kr.KerasLayer(urls["feature_vector"], input_shape=(CROP, CROP, 3), trainable=False)
    model = keras.Sequential([features, keras.layers.Dense(2)])
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["acc"],
    )
    frozen = [v.numpy().copy() for v in features.resolved_object.variables]
    history = model.fit(images, labels, batch_size=8, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(
        np.array_equal(before, after.numpy())
        for before, after in zip(frozen, features.resolved_object.variables, strict=True)
    )  # batch-norm statistics included: a frozen layer runs in inference mode
    held_out, held_out_labels = augmented(4, seed=2)
    predictions = model.predict(held_out, verbose=0)
    assert list(np.argmax(predictions, axis=1)) == list(held_out_labels.numpy())

    path = str(tmp_path / "transfer.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(held_out, verbose=0), predictions, atol=1e-5)


def test_fine_tuned_and_re_exported(urls: dict[str, str], tmp_path: Path) -> None:
    import keras

    from savedhub.keras_layer import Keras3Layer

    loaded = hub.load(urls["feature_vector"])
    encoder = Keras3Layer(loaded, trainable=True, arguments=dict(batch_norm_momentum=0.997))
    assert len(encoder.trainable_weights) == len(loaded.trainable_variables) > 100
    model = keras.Sequential([keras.Input((64, 64, 3)), encoder, keras.layers.Dense(2)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    images, labels = augmented(4, seed=3)
    images = tf.image.resize(images, [64, 64])
    before = {v.name: v.numpy().copy() for v in loaded.variables}
    model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
    moved = {v.name for v in loaded.variables if not np.array_equal(before[v.name], v.numpy())}
    kernels = {v.name for v in loaded.trainable_variables if "kernel" in v.name}
    assert kernels <= moved  # every convolution of the encoder learned
    assert len([name for name in moved if "moving_" in name]) == 2 * 49  # and BN statistics

    tuned = loaded(images).numpy()
    tf.saved_model.save(loaded, str(tmp_path / "fine_tuned"))
    np.testing.assert_allclose(
        hub.load(str(tmp_path / "fine_tuned"))(images).numpy(), tuned, atol=1e-5
    )
