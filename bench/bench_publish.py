"""Publisher tools on a mid-size model: pack vs GNU tar, info/lint vs restoring.

Side by side in one run:

* ``savedhub.pack`` against the reproducible GNU tar pipeline a careful
  publisher would type (``tar --sort=name --owner=0 --group=0 --numeric-owner
  --mtime=@0 | gzip -n -6``): time, size, and whether two runs give the same
  bytes;
* ``savedhub.info`` and ``savedhub.lint`` (read the protos only) against
  ``tf.saved_model.load`` (restores every variable), the cheapest alternative
  for finding out what a model offers.

    python bench/bench_publish.py [--megabytes 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import savedhub  # noqa: E402


class Wide(tf.train.Checkpoint):
    """A Reusable SavedModel holding ``megabytes`` of float32 weights in 8 layers."""

    def __init__(self, megabytes: int) -> None:
        super().__init__()
        rows = max(1, megabytes * 2**20 // 4 // 8 // 512)
        rng = np.random.default_rng(0)
        self.layers = [
            tf.Variable(rng.standard_normal((rows, 512), dtype=np.float32)) for _ in range(8)
        ]
        self.variables = list(self.layers)
        self.trainable_variables = list(self.layers)
        self.regularization_losses = [
            tf.function(input_signature=[])(lambda: 1e-4 * tf.reduce_sum(self.layers[0] ** 2))
        ]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def __call__(self, ids: tf.Tensor) -> tf.Tensor:
        return tf.add_n([tf.gather(layer, ids) for layer in self.layers])


def _median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _gnu_tar(model: str, out: str) -> None:
    with open(out, "wb") as f:
        tar = subprocess.Popen(
            [
                "tar",
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mtime=@0",
                "-C",
                model,
                "-cf",
                "-",
                ".",
            ],
            stdout=subprocess.PIPE,
        )
        subprocess.run(["gzip", "-n", "-6"], stdin=tar.stdout, stdout=f, check=True)
        tar.wait()


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=64, help="weights in the model")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()

    work = tempfile.mkdtemp(prefix="bench-publish-")
    try:
        model = os.path.join(work, "model")
        tf.saved_model.save(Wide(options.megabytes), model)
        size = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(model) for n in ns)
        print(f"model: {size / 2**20:.1f} MiB on disk, {options.repeats} runs, median seconds\n")

        rows = []
        ours = [os.path.join(work, f"ours{i}.tar.gz") for i in range(2)]
        theirs = [os.path.join(work, f"tar{i}.tar.gz") for i in range(2)]
        pack_s = _median_seconds(lambda: savedhub.pack(model, ours[0]), options.repeats)
        savedhub.pack(model, ours[1])
        tar_s = _median_seconds(lambda: _gnu_tar(model, theirs[0]), options.repeats)
        _gnu_tar(model, theirs[1])
        same_ours = _digest(ours[0]) == _digest(ours[1])
        same_tar = _digest(theirs[0]) == _digest(theirs[1])
        rows.append(("savedhub.pack (lint + archive)", pack_s, os.path.getsize(ours[0]), same_ours))
        rows.append(
            ("tar --sort=name ... | gzip -n -6", tar_s, os.path.getsize(theirs[0]), same_tar)
        )

        load_s = _median_seconds(lambda: tf.saved_model.load(model), options.repeats)
        info_s = _median_seconds(lambda: savedhub.info(model), options.repeats)
        lint_s = _median_seconds(lambda: savedhub.lint(model), options.repeats)

        print(f"{'archive':34} {'seconds':>8} {'ratio':>6} {'MiB':>7}  same bytes twice")
        for name, seconds, archive_size, same in rows:
            print(
                f"{name:34} {seconds:8.3f} {seconds / tar_s:6.2f} "
                f"{archive_size / 2**20:7.1f}  {'yes' if same else 'no'}"
            )
        print(f"\n{'inspect':34} {'seconds':>8} {'ratio':>6}")
        for name, seconds in (
            ("tf.saved_model.load", load_s),
            ("savedhub.info", info_s),
            ("savedhub.lint", lint_s),
        ):
            print(f"{name:34} {seconds:8.3f} {seconds / load_s:6.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
