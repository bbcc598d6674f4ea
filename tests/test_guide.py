"""The TF Hub guide's code blocks (../shared/seed), run unchanged on both Kerases.

Only two things differ from the guide: ``import tensorflow_hub as hub`` reads
``import savedhub as hub``, and tfhub.dev handles point at local fixtures.
Each block is followed by the checks of what the guide says it prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

GUIDE = """
import os
import numpy as np

# --- "Using SavedModels in Keras" ---
import tensorflow as tf
import savedhub as hub

hub_url = TEXT_EMBEDDING
embed = hub.KerasLayer(hub_url)
embeddings = embed(["A long sentence.", "single-word", "http://example.com"])
print(embeddings.shape, embeddings.dtype)
assert tuple(embeddings.shape) == (3, 32) and embeddings.dtype == tf.float32

model = tf.keras.Sequential([
    embed,
    tf.keras.layers.Dense(16, activation="relu"),
    tf.keras.layers.Dense(1, activation="sigmoid"),
])
assert isinstance(embed, tf.keras.layers.Layer)
assert embed.trainable_weights == []  # frozen by default

# --- "Saving from low-level TensorFlow" ---
class MyMulModel(tf.train.Checkpoint):
  def __init__(self, v_init):
    super().__init__()
    self.v = tf.Variable(v_init)
    self.variables = [self.v]
    self.trainable_variables = [self.v]
    self.regularization_losses = [
        tf.function(input_signature=[])(lambda: 0.001 * self.v**2),
    ]

  @tf.function(input_signature=[tf.TensorSpec(shape=None, dtype=tf.float32)])
  def __call__(self, inputs):
    return tf.multiply(inputs, self.v)

tf.saved_model.save(MyMulModel(2.0), MY_MUL)

layer = hub.KerasLayer(MY_MUL)
print(layer([10., 20.]))  # [20., 40.]
assert layer([10., 20.]).numpy().tolist() == [20.0, 40.0]
layer.trainable = True
print(layer.trainable_weights)  # [2.]
assert [w.numpy() for w in layer.trainable_weights] == [2.0]
print(layer.losses)  # 0.004
assert [round(float(x), 6) for x in layer.losses] == [0.004]

# --- "Fine-tuning: for SavedModel consumers" ---
layer = hub.KerasLayer(TEXT_EMBEDDING, trainable=True)
assert len(layer.trainable_weights) == 3

# --- "Re-exporting the fine-tuning result" ---
keras = tf.keras
loaded_obj = hub.load(TEXT_EMBEDDING)
hub_layer = hub.KerasLayer(loaded_obj, trainable=True)

model = keras.Sequential([hub_layer, keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="adam", loss="binary_crossentropy")
before = loaded_obj.embeddings.numpy().copy()
x, y = tf.constant(["great film", "awful food"] * 8), np.array([1., 0.] * 8)
model.fit(x, y, epochs=2, verbose=0)

export_module_dir = os.path.join(os.getcwd(), "finetuned_model_export")
tf.saved_model.save(loaded_obj, export_module_dir)
reloaded = hub.load(export_module_dir)
assert not np.array_equal(reloaded.embeddings.numpy(), before)
np.testing.assert_array_equal(reloaded.embeddings.numpy(), loaded_obj.embeddings.numpy())
print("GUIDE OK", type(layer).__module__)
"""


@pytest.mark.parametrize("legacy", [False, True], ids=["keras3", "tf_keras"])
def test_guide_code_runs_unchanged(legacy: bool, text_embedding_path: str, tmp_path) -> None:
    script = tmp_path / "guide.py"
    script.write_text(
        f"TEXT_EMBEDDING = {text_embedding_path!r}\nMY_MUL = {str(tmp_path / 'my_mul')!r}\n"
        + textwrap.dedent(GUIDE)
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"
    else:
        env.pop("TF_USE_LEGACY_KERAS", None)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(3, 32) <dtype: 'float32'>" in result.stdout
    assert "[20. 40.]" in result.stdout
    variant = "savedhub.keras_layer._tf_keras" if legacy else "savedhub.keras_layer._keras3"
    assert f"GUIDE OK {variant}" in result.stdout
