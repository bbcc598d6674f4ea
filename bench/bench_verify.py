"""`savedhub cache verify` throughput on a ~200 MB entry, beside sha256sum and cat, in one run.

A ~200 MB SavedModel (random variables) is served over loopback and loaded
into an empty savedhub cache (the cold install records each file's SHA-256).
Then, as the user runs them, each a process of its own:

* **savedhub verify**: ``savedhub cache verify --cache-dir CACHE`` (re-hashes
  every file against the manifest; Python start-up included);
* **sha256sum**: coreutils ``sha256sum`` over the same files;
* **cat**: ``cat FILES > /dev/null``, the floor: reading the bytes, no hashing.

Each is timed with the files in the page cache (``hot``) and with their pages
dropped first (``cold``: ``fsync`` + ``posix_fadvise(DONTNEED)`` on these files
only, so the shared machine's other caches are left alone), which is what the
disk delivers. The target (issue 18): verify reads at disk speed, i.e. no
slower than sha256sum and close to cat. Medians of ``--repeats`` interleaved
rounds; compare the ratios within one run.

Usage:
    python bench/bench_verify.py [--size-mb 200] [--repeats 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["SAVEDHUB_DISABLE_PROGRESS"] = "1"

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_cache import build_model, file_server, pack


def evict(files: list[Path]) -> None:
    """Drop these files' pages from the page cache (written back first)."""
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run(command: list[str], **kwargs: object) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_verify_"))
    try:
        build_model(work / "src", args.size_mb)
        pack(work / "src", work / "hub" / "m" / "1")
        cache_dir = work / "cache"
        os.environ["SAVEDHUB_CACHE_DIR"] = str(cache_dir)
        import savedhub

        with file_server(work / "hub") as base:
            entry = Path(savedhub.resolve(f"{base}/m/1"))
        files = sorted(str(p) for p in entry.rglob("*") if p.is_file())
        total = sum(os.path.getsize(f) for f in files)
        verify = [sys.executable, "-m", "savedhub.cli", "cache", "verify", "--cache-dir"]
        columns: dict[str, Callable[[], float]] = {
            "savedhub verify": lambda: run([*verify, str(cache_dir)]),
            "sha256sum": lambda: run(["sha256sum", *files]),
            "cat": lambda: run(["cat", *files]),
        }
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeats):
            for column, action in columns.items():
                for state in ("hot", "cold"):
                    if state == "cold":
                        evict([Path(f) for f in files])
                    else:
                        action()  # warm the page cache
                    times.setdefault((column, state), []).append(action())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\n{total / 2**20:.0f} MiB in {len(files)} files; median of {args.repeats} runs, "
        "each a process of its own"
    )
    print(f"{'':>16} {'page cache':>10} {'seconds':>8} {'MiB/s':>7} {'/sha256sum':>10} {'/cat':>6}")
    for state in ("hot", "cold"):
        base_sum = statistics.median(times[("sha256sum", state)])
        base_cat = statistics.median(times[("cat", state)])
        for column in columns:
            seconds = statistics.median(times[(column, state)])
            print(
                f"{column:>16} {state:>10} {seconds:8.3f} {total / 2**20 / seconds:7.0f} "
                f"{seconds / base_sum:10.2f} {seconds / base_cat:6.2f}"
            )
    print("\nratios are time / time (below 1: faster than sha256sum or cat)")


if __name__ == "__main__":
    main()
