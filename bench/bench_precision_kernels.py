"""Would a bf16 or int8 all-MiniLM-L6-v2 run faster than fp32 in TensorFlow on this CPU?

The encoder's time is its matmuls, so this times one: the feed-forward
layer's ``[32 sentences x 22 tokens, 384] x [384, 1536]``, in each number
format TensorFlow 2.21 offers on the CPU, beside fp32, after printing which of
the instructions that make low precision fast this CPU has (``avx512_bf16``,
``avx512_vnni``, AMX). CPU seconds of one thread per matmul, the median of
``--calls``, so other processes on the shared cores move it less than wall time.

    python bench/bench_precision_kernels.py [--calls 30]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FLAGS = ("avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "avx_vnni")


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_ms(fn: Callable[[], object], calls: int) -> float:
    fn()
    times = []
    for _ in range(calls):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    times.sort()
    return times[len(times) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    flags = cpu_flags()
    print("CPU:", ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in FLAGS))

    rng = np.random.default_rng(0)
    a = tf.constant(rng.normal(size=(32 * 22, 384)).astype(np.float32))
    b = tf.constant(rng.normal(size=(384, 1536)).astype(np.float32) * 0.05)
    a16, b16 = tf.cast(a, tf.bfloat16), tf.cast(b, tf.bfloat16)
    a8, b8 = tf.cast(a * 30, tf.int8), tf.cast(b * 600, tf.int8)
    qa = tf.quantization.quantize(a, -4.0, 4.0, tf.quint8).output
    qb = tf.quantization.quantize(b, -0.2, 0.2, tf.qint8).output
    zeros = tf.zeros([1536])

    kernels: dict[str, Callable[[], object]] = {
        "fp32 MatMul": tf.function(lambda: tf.matmul(a, b)),
        "bf16 MatMul": tf.function(lambda: tf.matmul(a16, b16)),
        "int8 MatMul -> int32": tf.function(lambda: tf.linalg.matmul(a8, b8, output_type=tf.int32)),
        "int8 MatMul -> int32, XLA": tf.function(
            lambda: tf.linalg.matmul(a8, b8, output_type=tf.int32), jit_compile=True
        ),
        "QuantizedMatMulWithBias u8 x s8": tf.function(
            lambda: tf.raw_ops.QuantizedMatMulWithBias(
                a=qa,
                b=qb,
                bias=zeros,
                min_a=-4.0,
                max_a=4.0,
                min_b=-0.2,
                max_b=0.2,
                Toutput=tf.qint32,
            )
        ),
    }
    print(f"\n[704, 384] x [384, 1536], CPU ms per matmul (one thread), median of {args.calls}")
    print(f"| {'kernel':<34} |     ms | vs fp32 |")
    print(f"|{'-' * 36}|--------|---------|")
    base = None
    for name, fn in kernels.items():
        try:
            ms = cpu_ms(fn, args.calls)
        except (tf.errors.OpError, TypeError, ValueError) as exc:
            print(f"| {name:<34} |   n/a  |         |  {str(exc).splitlines()[0][:60]}")
            continue
        base = base or ms
        print(f"| {name:<34} | {ms:6.2f} | {base / ms:6.2f}x |")


if __name__ == "__main__":
    main()
