"""The TF Hub tutorials, as their readers write them, on Keras 3 and on tf_keras.

Each test follows one tutorial's code (tensorflow/docs and tensorflow/hub),
with small stand-ins for the tfhub.dev models that have the same signatures
(see ``models.py``) and a few synthetic examples for the datasets. ``keras``
is the Keras under test (``tf.keras`` in the tutorials) and ``KerasLayer``
its ``hub.KerasLayer``. Where Keras 3 changed the API the tutorial uses
(``model.save`` needs a ``.keras`` name; ``model.export`` writes a
SavedModel), the test takes the Keras 3 way and says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

import savedhub as hub
from models import IMAGE_SIZE

REVIEWS = [
    "a wonderful film with great music",
    "the worst movie ever, boring and dull",
    "lovely story and brilliant actors",
    "awful acting and a terrible plot",
    "i loved it, best film of the year",
    "a waste of time, so bad",
    "delightful and charming",
    "horrible, ugly and annoying",
]


def review_dataset(n: int = 64) -> tf.data.Dataset:
    texts = [REVIEWS[i % len(REVIEWS)] for i in range(n)]
    labels = [1 - i % 2 for i in range(n)]
    return tf.data.Dataset.from_tensor_slices((texts, labels))


def image_dataset(n: int = 48, classes: int = 3, seed: int = 0) -> tf.data.Dataset:
    """Images whose class is which colour channel is brightest."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.uniform(0.0, 0.4, size=(n, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    images[np.arange(n), :, :, labels] += 0.6
    return tf.data.Dataset.from_tensor_slices((images, labels))


def saved_keras_path(kr: SimpleNamespace, tmp_path, name: str) -> str:  # noqa: ANN001
    """Where ``model.save`` writes: Keras 3 wants a ``.keras`` name, tf_keras
    (as in the tutorials) writes a SavedModel folder."""
    return str(tmp_path / (f"{name}.keras" if kr.name == "keras3" else name))


@pytest.fixture
def mixed_float16(kr: SimpleNamespace) -> Iterator[None]:
    kr.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        kr.keras.mixed_precision.set_global_policy("float32")


def test_text_classification_with_hub(kr: SimpleNamespace, text_embedding_path: str) -> None:
    keras = kr.keras
    train_data, validation_data, test_data = (
        review_dataset(64),
        review_dataset(16),
        review_dataset(16),
    )
    train_examples_batch, train_labels_batch = next(iter(train_data.batch(10)))

    embedding = text_embedding_path  # "https://tfhub.dev/google/nnlm-en-dim50/2"
    hub_layer = kr.KerasLayer(embedding, input_shape=[], dtype=tf.string, trainable=True)
    assert hub_layer(train_examples_batch[:3]).shape == (3, 32)

    model = keras.Sequential()
    model.add(hub_layer)
    model.add(keras.layers.Dense(16, activation="relu"))
    model.add(keras.layers.Dense(1))
    model.summary(print_fn=lambda *args, **kwargs: None)
    model.compile(
        optimizer="adam",
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        train_data.shuffle(100).batch(16),
        epochs=6,
        validation_data=validation_data.batch(16),
        verbose=0,
    )
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    results = model.evaluate(test_data.batch(16), verbose=0)
    assert len(results) == 2 and np.isfinite(results[0]) and 0 <= results[1] <= 1


def test_transfer_learning_with_hub(
    kr: SimpleNamespace, image_classifier_path: str, image_feature_vector_path: str, tmp_path
) -> None:
    keras = kr.keras
    image_shape = (IMAGE_SIZE, IMAGE_SIZE)
    classifier = keras.Sequential(
        [kr.KerasLayer(image_classifier_path, input_shape=image_shape + (3,))]
    )
    train_ds = image_dataset(48).batch(8)
    val_ds = image_dataset(16, seed=1).batch(8)
    image_batch, labels_batch = next(iter(train_ds))
    assert classifier.predict(image_batch, verbose=0).shape == (8, 5)

    feature_extractor_layer = kr.KerasLayer(
        image_feature_vector_path, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), trainable=False
    )
    assert feature_extractor_layer(image_batch).shape == (8, 12)
    num_classes = 3
    model = keras.Sequential([feature_extractor_layer, keras.layers.Dense(num_classes)])
    model.summary(print_fn=lambda *args, **kwargs: None)
    assert model(image_batch).shape == (8, num_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["acc"],
    )
    frozen = [np.array(v) for v in feature_extractor_layer.resolved_object.variables]
    history = model.fit(train_ds, validation_data=val_ds, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    for before, after in zip(
        frozen, feature_extractor_layer.resolved_object.variables, strict=True
    ):
        np.testing.assert_array_equal(before, after.numpy())  # BN statistics included

    export_path = saved_keras_path(kr, tmp_path, "transfer")
    model.save(export_path)
    reloaded = keras.models.load_model(export_path)
    result_batch = model.predict(image_batch, verbose=0)
    reloaded_result_batch = reloaded.predict(image_batch, verbose=0)
    assert abs(reloaded_result_batch - result_batch).max() < 1e-5


def test_tf2_image_retraining_fine_tunes_with_batch_norm_momentum(
    kr: SimpleNamespace, image_feature_vector_path: str, tmp_path
) -> None:
    keras = kr.keras
    image_size = (IMAGE_SIZE, IMAGE_SIZE)
    hub_layer = kr.KerasLayer(
        image_feature_vector_path, trainable=True, arguments=dict(batch_norm_momentum=0.997)
    )
    model = keras.Sequential(
        [
            keras.layers.InputLayer(input_shape=image_size + (3,)),
            hub_layer,
            keras.layers.Dropout(rate=0.2),
            keras.layers.Dense(3, kernel_regularizer=keras.regularizers.l2(0.0001)),
        ]
    )
    model.build((None,) + image_size + (3,))
    model.summary(print_fn=lambda *args, **kwargs: None)
    # The SavedModel's own regularization loss counts, beside the Dense one.
    assert len(model.losses) == 2 and all(float(x) > 0 for x in model.losses)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        metrics=["accuracy"],
    )
    one_hot = lambda image, label: (image, tf.one_hot(label, 3))  # noqa: E731
    train_ds = image_dataset(48).map(one_hot).batch(8).repeat()
    val_ds = image_dataset(16, seed=1).map(one_hot).batch(8)
    obj = hub_layer.resolved_object
    moving_mean = obj.moving_mean.numpy().copy()
    kernel = obj.kernel.numpy().copy()
    hist = model.fit(
        train_ds, epochs=3, steps_per_epoch=6, validation_data=val_ds, verbose=0
    ).history
    assert hist["loss"][-1] < hist["loss"][0]
    assert not np.array_equal(obj.kernel.numpy(), kernel)  # fine-tuned
    # Batch norm ran in training mode with the given momentum: 18 steps of
    # momentum 0.997 move the statistics, but by less than 1 - 0.997**18 of the way.
    moved = np.abs(obj.moving_mean.numpy() - moving_mean)
    assert moved.max() > 0
    batch_mean = obj(next(iter(val_ds))[0], training=False)  # inference leaves them alone
    assert np.abs(obj.moving_mean.numpy() - moving_mean).max() == moved.max()
    assert batch_mean.shape == (8, 12)

    saved_model_path = str(tmp_path / "saved_flowers_model")
    tf.saved_model.save(model, saved_model_path)
    reloaded = tf.saved_model.load(saved_model_path)
    images = next(iter(val_ds))[0]
    expected = model(images, training=False).numpy()
    (served,) = reloaded.signatures["serving_default"](images).values()
    np.testing.assert_allclose(served.numpy(), expected, rtol=1e-4, atol=1e-5)


def build_classifier_model(kr: SimpleNamespace, preprocess: str, encoder: str):  # noqa: ANN201
    """classify_text_with_bert's build_classifier_model()."""
    keras = kr.keras
    text_input = keras.layers.Input(shape=(), dtype=tf.string, name="text")
    preprocessing_layer = kr.KerasLayer(preprocess, name="preprocessing")
    encoder_inputs = preprocessing_layer(text_input)
    encoder_layer = kr.KerasLayer(encoder, trainable=True, name="BERT_encoder")
    outputs = encoder_layer(encoder_inputs)
    net = outputs["pooled_output"]
    net = keras.layers.Dropout(0.1)(net)
    net = keras.layers.Dense(1, activation=None, name="classifier")(net)
    return keras.Model(text_input, net)


def test_classify_text_with_bert(
    kr: SimpleNamespace, bert_preprocessor_path: str, bert_encoder_path: str, tmp_path
) -> None:
    keras = kr.keras
    bert_preprocess_model = kr.KerasLayer(bert_preprocessor_path)
    text_test = ["this is such an amazing movie!"]
    text_preprocessed = bert_preprocess_model(tf.constant(text_test))
    assert sorted(text_preprocessed) == ["input_mask", "input_type_ids", "input_word_ids"]
    assert text_preprocessed["input_word_ids"].shape == (1, 128)
    bert_model = kr.KerasLayer(bert_encoder_path)
    bert_results = bert_model(text_preprocessed)
    assert bert_results["pooled_output"].shape == (1, 16)
    assert bert_results["sequence_output"].shape == (1, 128, 16)

    classifier_model = build_classifier_model(kr, bert_preprocessor_path, bert_encoder_path)
    bert_raw_result = classifier_model(tf.constant(text_test))
    assert bert_raw_result.shape == (1, 1)
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    metrics = keras.metrics.BinaryAccuracy()
    classifier_model.compile(optimizer=keras.optimizers.Adam(3e-2), loss=loss, metrics=[metrics])
    train_ds = review_dataset(64).shuffle(64).batch(8)
    history = classifier_model.fit(
        x=train_ds, validation_data=review_dataset(16).batch(8), epochs=5, verbose=0
    )
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss_value, accuracy = classifier_model.evaluate(review_dataset(16).batch(8), verbose=0)
    assert np.isfinite(loss_value) and 0 <= accuracy <= 1

    examples = ["this is such an amazing movie!", "the movie was terrible..."]
    original_results = tf.sigmoid(classifier_model(tf.constant(examples)))
    if kr.name == "keras3":
        # Keras 3: model.save needs a .keras name; model.export writes the SavedModel.
        saved_model_path = str(tmp_path / "imdb_bert")
        classifier_model.export(saved_model_path, verbose=False)
        reloaded_model = tf.saved_model.load(saved_model_path)
        reloaded_results = tf.sigmoid(reloaded_model.serve(tf.constant(examples)))
        classifier_model.save(saved_keras_path(kr, tmp_path, "imdb_bert"))
        reloaded_keras = keras.models.load_model(saved_keras_path(kr, tmp_path, "imdb_bert"))
    else:
        saved_model_path = str(tmp_path / "imdb_bert")
        classifier_model.save(saved_model_path, include_optimizer=False)
        reloaded_model = tf.saved_model.load(saved_model_path)
        reloaded_results = tf.sigmoid(reloaded_model(tf.constant(examples)))
        reloaded_keras = keras.models.load_model(saved_model_path)
    np.testing.assert_allclose(reloaded_results.numpy(), original_results.numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        tf.sigmoid(reloaded_keras(tf.constant(examples))).numpy(),
        original_results.numpy(),
        rtol=1e-5,
    )


def make_bert_preprocess_model(
    kr: SimpleNamespace, preprocess: str, sentence_features, seq_length=128
):  # noqa: ANN001, ANN201
    """bert_glue's make_bert_preprocess_model()."""
    keras = kr.keras
    input_segments = [
        keras.layers.Input(shape=(), dtype=tf.string, name=ft) for ft in sentence_features
    ]
    bert_preprocess = hub.load(preprocess)
    tokenizer = kr.KerasLayer(bert_preprocess.tokenize, name="tokenizer")
    segments = [tokenizer(s) for s in input_segments]
    truncated_segments = segments
    packer = kr.KerasLayer(
        bert_preprocess.bert_pack_inputs, arguments=dict(seq_length=seq_length), name="packer"
    )
    model_inputs = packer(truncated_segments)
    return keras.Model(input_segments, model_inputs)


def test_bert_glue(
    kr: SimpleNamespace, bert_preprocessor_path: str, bert_encoder_path: str, tmp_path
) -> None:
    keras = kr.keras
    sentence_features = ["sentence1", "sentence2"]
    bert_preprocess_model = make_bert_preprocess_model(
        kr, bert_preprocessor_path, sentence_features
    )
    test_text = [np.array(["some random test sentence"]), np.array(["another sentence"])]
    text_preprocessed = bert_preprocess_model([tf.constant(t) for t in test_text])
    assert text_preprocessed["input_word_ids"].shape == (1, 128)
    assert text_preprocessed["input_type_ids"].numpy()[0].max() == 1  # two segments

    pairs = {
        "sentence1": [REVIEWS[i % 8] for i in range(32)],
        "sentence2": [REVIEWS[(i + 2) % 8] for i in range(32)],
        "label": [i % 2 for i in range(32)],
    }
    dataset = tf.data.Dataset.from_tensor_slices(pairs)

    def to_features(ex):  # noqa: ANN001, ANN202
        return bert_preprocess_model([ex[f] for f in sentence_features]), ex["label"]

    train_dataset = dataset.batch(8).map(to_features).prefetch(tf.data.AUTOTUNE)

    class Classifier(keras.Model):
        def __init__(self, num_classes: int) -> None:
            super().__init__(name="prediction")
            self.encoder = kr.KerasLayer(bert_encoder_path, trainable=True)
            self.dropout = keras.layers.Dropout(0.1)
            self.dense = keras.layers.Dense(num_classes)

        def call(self, preprocessed_text):  # noqa: ANN001, ANN202
            encoder_outputs = self.encoder(preprocessed_text)
            pooled_output = encoder_outputs["pooled_output"]
            x = self.dropout(pooled_output)
            return self.dense(x)

    classifier_model = Classifier(2)
    classifier_model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy("accuracy")],
    )
    encoder_weights = [w.numpy().copy() for w in classifier_model.trainable_weights]
    history = classifier_model.fit(
        train_dataset, validation_data=train_dataset, epochs=3, verbose=0
    )
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert len(classifier_model.trainable_weights) == 5  # 3 encoder + Dense kernel and bias
    assert not np.array_equal(encoder_weights[0], classifier_model.encoder.trainable_weights[0])

    # The preprocessing model saves to and loads from a .keras file on its own.
    path = str(tmp_path / "bert_preprocess.keras")
    bert_preprocess_model.save(path)
    reloaded = keras.models.load_model(path)
    again = reloaded([tf.constant(t) for t in test_text])
    np.testing.assert_array_equal(
        again["input_word_ids"].numpy(), text_preprocessed["input_word_ids"].numpy()
    )


def test_semantic_similarity_with_a_sentence_encoder(
    kr: SimpleNamespace, sentence_encoder_path: str
) -> None:
    keras = kr.keras
    model = hub.load(sentence_encoder_path)

    def embed(input):  # noqa: A002, ANN001, ANN202
        return model(input)

    messages = ["I like my phone", "My phone is not good.", "Your cellphone looks great."]
    message_embeddings = embed(messages)
    features = message_embeddings.numpy()
    corr = np.inner(features, features)
    np.testing.assert_allclose(np.diag(corr), 1.0, rtol=1e-5)
    assert corr.shape == (3, 3)

    # The same encoder as a Keras layer: it takes no `training` argument, and
    # fit (which calls layers with training=True) must not pass one.
    encoder = kr.KerasLayer(sentence_encoder_path)
    left = keras.Input(shape=(), dtype=tf.string)
    right = keras.Input(shape=(), dtype=tf.string)
    similarity = keras.layers.Dot(axes=1)([encoder(left), encoder(right)])
    scorer = keras.Model([left, right], keras.layers.Dense(1)(similarity))
    np.testing.assert_allclose(
        keras.Model([left, right], similarity)([tf.constant(messages)] * 2).numpy()[:, 0],
        np.diag(corr),
        rtol=1e-5,
    )
    scorer.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    history = scorer.fit(
        [tf.constant(messages * 4), tf.constant(messages[::-1] * 4)],
        np.ones(12),
        epochs=5,
        verbose=0,
    )
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_mixed_float16_policy_with_a_hub_layer(
    kr: SimpleNamespace, image_feature_vector_path: str, mixed_float16: None
) -> None:
    # The hub layer computes in the SavedModel's dtype (float32), the rest of
    # the model in float16; the last layer outputs float32 as the guide advises.
    keras = kr.keras
    hub_layer = kr.KerasLayer(image_feature_vector_path, trainable=True)
    model = keras.Sequential(
        [
            keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
            hub_layer,
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3),
            keras.layers.Activation("linear", dtype="float32"),
        ]
    )
    assert hub_layer.compute_dtype == "float32"
    assert model.layers[1].compute_dtype == "float16"
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(image_dataset(48).batch(8), epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    images, _ = next(iter(image_dataset(8).batch(8)))
    assert model.predict(images, verbose=0).dtype == np.float32


def test_keras3_export_of_a_model_holding_a_hub_layer(
    image_feature_vector_path: str, tmp_path
) -> None:
    import keras

    from savedhub.keras_layer import Keras3Layer

    feature_extractor_layer = Keras3Layer(image_feature_vector_path)
    model = keras.Sequential(
        [
            keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
            feature_extractor_layer,
            keras.layers.Dense(3),
        ]
    )
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(image_dataset(16).batch(8), epochs=1, verbose=0)
    images, _ = next(iter(image_dataset(8, seed=3).batch(8)))
    expected = model.predict(images, verbose=0)
    export_path = str(tmp_path / "exported")
    model.export(export_path, verbose=False)
    del model, feature_extractor_layer
    served = tf.saved_model.load(export_path)
    np.testing.assert_allclose(served.serve(images).numpy(), expected, rtol=1e-5, atol=1e-6)
