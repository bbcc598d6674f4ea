"""Per-batch cost of hub.KerasLayer vs calling the loaded SavedModel directly.

Side by side in one run: raw ``tf.saved_model.load`` object, savedhub's
Keras 3 layer, savedhub's tf_keras layer and ``tensorflow_hub.KerasLayer``
0.16.1 (a tf_keras layer), in eager mode, inside ``tf.function`` and through
``model.predict``. Ratios are against the raw object in the same mode
(``predict`` against a ``tf.function`` over the raw object).

Target (issue 3): savedhub's overhead at most 5% in graph mode.

    python bench/bench_keras_layer.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_hub  # noqa: E402
import tf_keras  # noqa: E402

import savedhub  # noqa: E402
from savedhub.demo.textmodel import save_text_embedding  # noqa: E402
from savedhub.keras_layer import Keras3Layer, TFKerasLayer  # noqa: E402


class Mlp(tf.Module):
    """A Reusable SavedModel of a few dense layers: compute-bound per batch."""

    def __init__(self, sizes: tuple[int, ...] = (256, 1024, 1024, 256)) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.weights = [
            tf.Variable(rng.normal(size=(a, b), scale=a**-0.5).astype("float32"))
            for a, b in zip(sizes, sizes[1:], strict=False)
        ]
        self.__call__ = tf.function(self._call)
        for training in (False, True):
            self.__call__.get_concrete_function(
                tf.TensorSpec([None, sizes[0]], tf.float32), training=training
            )

    def _call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        for w in self.weights:
            x = tf.nn.relu(x @ w)
        return x


def interleaved_ms(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms per call of each callable, timed in alternating rounds so that
    load from other processes hits every variant alike."""
    for fn in calls.values():
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            result = fn()
            if hasattr(result, "numpy"):
                result.numpy()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


PREDICT_BATCHES = 20


def graph_call(fn: Callable[[tf.Tensor], object], x: tf.Tensor) -> Callable[[], object]:
    """``tf.function`` of ``fn(x)`` taking no arguments. (A lambda with a
    default argument would add ~70 us of argument binding to every call.)"""
    return tf.function(lambda: fn(x))


def measure(path: str, x: tf.Tensor, repeats: int) -> dict[str, dict[str, float]]:
    """ms per batch: {mode: {variant: ms}}."""
    raw = tf.saved_model.load(path)
    layers = {
        "savedhub keras3": (keras, Keras3Layer(savedhub.load(path))),
        "savedhub tf_keras": (tf_keras, TFKerasLayer(savedhub.load(path))),
        "tensorflow_hub": (tf_keras, tensorflow_hub.KerasLayer(path)),
    }
    eager: dict[str, Callable[[], object]] = {"raw": lambda: raw(x)}
    graph: dict[str, Callable[[], object]] = {"raw": graph_call(raw, x)}
    predict: dict[str, Callable[[], object]] = {}
    batch = int(x.shape[0])
    many = tf.concat([x] * PREDICT_BATCHES, axis=0)
    raw_batches = tf.function(
        lambda: [raw(many[i * batch : (i + 1) * batch]) for i in range(PREDICT_BATCHES)]
    )
    predict["raw"] = raw_batches
    for name, (k, layer) in layers.items():
        eager[name] = lambda layer=layer: layer(x)
        graph[name] = graph_call(layer, x)
        model = k.Sequential([layer])
        predict[name] = lambda model=model: model.predict(many, batch_size=batch, verbose=0)
    results = {
        "eager": interleaved_ms(eager, repeats),
        "tf.function": interleaved_ms(graph, repeats),
        "predict": {
            name: ms / PREDICT_BATCHES
            for name, ms in interleaved_ms(predict, max(3, repeats // 5)).items()
        },
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text_path = save_text_embedding(os.path.join(tmp, "text"))
        mlp_path = os.path.join(tmp, "mlp")
        tf.saved_model.save(Mlp(), mlp_path)
        cases = {
            "text embedding, 32 strings": (
                text_path,
                tf.constant(["a fine sentence to embed"] * 32),
            ),
            "MLP 256-1024-1024-256, batch 256": (
                mlp_path,
                tf.constant(np.random.default_rng(1).normal(size=(256, 256)).astype("float32")),
            ),
        }
        columns = ["raw", "savedhub keras3", "savedhub tf_keras", "tensorflow_hub"]
        print(
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}, tf_keras "
            f"{tf_keras.__version__}, tensorflow_hub {tensorflow_hub.__version__}; "
            f"median of {args.repeats} calls, ms per batch (ratio to raw); predict: "
            f"{PREDICT_BATCHES} batches per call, raw = a tf.function looping over them"
        )
        header = f"{'model':<34} {'mode':<12}" + "".join(f"{c:>22}" for c in columns)
        print(header)
        print("-" * len(header))
        for label, (path, x) in cases.items():
            results = measure(path, x, args.repeats)
            for mode in ("eager", "tf.function", "predict"):
                base = results[mode]["raw"]
                cells = []
                for column in columns:
                    value = results[mode][column]
                    cells.append(
                        f"{value:>10.3f}"
                        + (" " * 12 if column == "raw" else f" ({value / base:5.2f}x)   ")
                    )
                print(f"{label:<34} {mode:<12}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
