"""Cold and warm load of a model by URL: savedhub vs tensorflow_hub 0.16.1 vs raw TF.

For a ~5 MB and a ~200 MB SavedModel (random variables, so gzip cannot
shrink them), served as ``.tar.gz`` per the hosting protocol by Python's
``http.server`` in its own process on 127.0.0.1, this measures in one run:

* **transfer**: GET the archive to a file with httpx (the network part alone);
* **gunzip**: inflate that archive in memory, nothing written (the CPU floor
  of unpacking it, whoever does it);
* **raw load**: ``tf.saved_model.load`` of an already extracted folder;
* **cold**: ``savedhub.load(url)`` / ``tensorflow_hub.load(url)`` with an
  empty cache (download + extract + load);
* **warm**: the same call again, served from the cache (sizes and mtimes
  checked against the manifest);
* **warm content**: ``savedhub.load(url)`` with ``SAVEDHUB_VERIFY=content``,
  which re-hashes every file of the model on each load (issue 18: its cost).

Every size is measured twice: with the server sending as fast as loopback
goes, and paced to a 1 Gbit/s link. On loopback the "network" is nearly free
and gunzip (~1 s of CPU per 185 MB of random floats here) is the floor of
any cold load; on a real link the transfer dominates and extracting while
streaming hides the rest.

Targets (issue 4): warm within 5% of raw; cold no slower than tensorflow_hub
and within 1.25x of transfer + raw load (download and extraction overlap).
Each figure is the median of ``--repeats`` runs; the machine is shared, so
compare the ratios within one run.

Usage:
    python bench/bench_cache.py [--sizes-mb 5,200] [--repeats 3] [--links-mbit 0,1000]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["SAVEDHUB_DISABLE_PROGRESS"] = "1"

import argparse
import gc
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Python's http.server, optionally paced to a link speed (bytes per second).
_SERVER = """
import functools, http.server, sys, time
port, root, rate = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
class Paced(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def copyfile(self, source, out):
        started, sent = time.monotonic(), 0
        while chunk := source.read(1 << 18):
            out.write(chunk)
            sent += len(chunk)
            if rate:
                time.sleep(max(0.0, started + sent / rate - time.monotonic()))
handler = functools.partial(Paced, directory=root)
http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
"""


@contextmanager
def file_server(root: Path, rate: float = 0.0) -> Iterator[str]:
    """An http.server process over ``root`` sending at most ``rate`` bytes/s (0: as fast as
    loopback goes). ``/m/1?tf-hub-format=compressed`` serves the file ``root/m/1`` (the
    query is ignored), as a hub serves the archive."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(port), str(root), str(rate)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def build_model(folder: Path, size_mb: float) -> None:
    import tensorflow as tf

    class Scaled(tf.Module):
        def __init__(self, count: int) -> None:
            super().__init__()
            self.w = tf.Variable(tf.random.normal([count], seed=1))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            return x * self.w[0]

    tf.saved_model.save(Scaled(int(size_mb * 2**20 / 4)), str(folder))


def pack(folder: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(folder / name, arcname=name)


def timed(action: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    result = action()
    elapsed = time.perf_counter() - started
    del result
    gc.collect()
    return elapsed


def measure(
    url: str, extracted: Path, work: Path, repeats: int, client: httpx.Client
) -> dict[str, float]:
    """Median seconds of every column for one model, in interleaved rounds so that
    drift on the shared machine hits all columns alike."""
    import tensorflow as tf
    import tensorflow_hub

    import savedhub

    ours, theirs = work / "savedhub-cache", work / "tfhub-cache"

    def transfer() -> None:
        with (
            client.stream("GET", url + "?tf-hub-format=compressed") as response,
            open(work / "archive.download", "wb") as out,
        ):
            for chunk in response.iter_raw():
                out.write(chunk)

    def raw() -> float:
        return timed(lambda: tf.saved_model.load(str(extracted)))

    def gunzip() -> None:
        # The floor of any cold load from a .tar.gz: inflating it, nothing written.
        inflate = zlib.decompressobj(wbits=31)
        with open(work / "archive.download", "rb") as archive:
            while chunk := archive.read(1 << 20):
                inflate.decompress(chunk)

    def by_url(
        load: Callable[[str], object], var: str, cache: Path, empty: bool, verify: str = ""
    ) -> float:
        if empty:
            shutil.rmtree(cache, ignore_errors=True)
        os.environ.pop("SAVEDHUB_CACHE_DIR", None)
        os.environ.pop("TFHUB_CACHE_DIR", None)
        os.environ[var] = str(cache)
        os.environ["SAVEDHUB_VERIFY"] = verify
        return timed(lambda: load(url))

    work.mkdir(parents=True, exist_ok=True)
    # One-off costs (TF's first load, each library's imports and TLS set-up) are paid
    # here, untimed, as a long-running program would have paid them already.
    tf.saved_model.load(str(extracted))
    by_url(savedhub.load, "SAVEDHUB_CACHE_DIR", ours, True)
    by_url(tensorflow_hub.load, "TFHUB_CACHE_DIR", theirs, True)
    columns: dict[str, Callable[[], float]] = {
        "transfer": lambda: timed(transfer),
        "gunzip": lambda: timed(gunzip),
        "raw": raw,
        "savedhub cold": lambda: by_url(savedhub.load, "SAVEDHUB_CACHE_DIR", ours, True),
        "tfhub cold": lambda: by_url(tensorflow_hub.load, "TFHUB_CACHE_DIR", theirs, True),
        "savedhub warm": lambda: by_url(savedhub.load, "SAVEDHUB_CACHE_DIR", ours, False),
        "warm content": lambda: by_url(
            savedhub.load, "SAVEDHUB_CACHE_DIR", ours, False, verify="content"
        ),
        "tfhub warm": lambda: by_url(tensorflow_hub.load, "TFHUB_CACHE_DIR", theirs, False),
    }
    times: dict[str, list[float]] = {column: [] for column in columns}
    for _ in range(repeats):
        for column, run in columns.items():
            times[column].append(run())
        times["raw"].append(raw())  # raw twice a round: it is the yardstick for warm
    # What a warm load adds to raw TF, without TF's own noise: the cache hit alone.
    os.environ["SAVEDHUB_CACHE_DIR"] = str(ours)
    os.environ["SAVEDHUB_VERIFY"] = ""
    hits = 200
    started = time.perf_counter()
    for _ in range(hits):
        savedhub.resolve(url)
    times["hit"] = [(time.perf_counter() - started) / hits]
    shutil.rmtree(work, ignore_errors=True)
    os.environ.pop("SAVEDHUB_CACHE_DIR", None)
    os.environ.pop("TFHUB_CACHE_DIR", None)
    if os.environ.get("BENCH_VERBOSE"):
        print({column: [round(v, 3) for v in values] for column, values in times.items()})
    return {column: statistics.median(values) for column, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", default="5,200")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--links-mbit",
        default="0,1000",
        help="link speeds to pace the server to, Mbit/s; 0 = unpaced loopback",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    rows = []
    try:
        sizes = [float(s) for s in args.sizes_mb.split(",")]
        for size in sizes:
            name = f"m{int(size)}"
            build_model(work / "src" / name, size)
            pack(work / "src" / name, work / "hub" / name / "1")
            extracted = work / "extracted" / name
            with tarfile.open(work / "hub" / name / "1") as tar:
                tar.extractall(extracted, filter="data")
        client = httpx.Client()
        for link in [float(x) for x in args.links_mbit.split(",")]:
            with file_server(work / "hub", rate=link * 1e6 / 8) as base:
                for size in sizes:
                    name = f"m{int(size)}"
                    archive_mb = (work / "hub" / name / "1").stat().st_size / 2**20
                    row: dict[str, object] = {
                        "model": f"{size:g} MB",
                        "link": f"{link:g} Mbit/s" if link else "loopback",
                        "archive": f"{archive_mb:.1f} MB",
                    }
                    row.update(
                        measure(
                            f"{base}/{name}/1",
                            work / "extracted" / name,
                            work / name,
                            args.repeats,
                            client,
                        )
                    )
                    rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    seconds = [
        "transfer",
        "gunzip",
        "raw",
        "savedhub cold",
        "tfhub cold",
        "savedhub warm",
        "warm content",
        "tfhub warm",
    ]
    print(f"\nmedian of {args.repeats} runs, seconds (http.server in its own process)")
    print(f"{'model':>7} {'link':>14} {'archive':>9} " + " ".join(f"{c:>13}" for c in seconds))
    for row in rows:
        cells = " ".join(f"{row[c]:13.3f}" for c in seconds)
        print(f"{row['model']:>7} {row['link']:>14} {row['archive']:>9} {cells}")
    print(
        "\nratios (targets: cold/tfhub cold <= 1, cold/(xfer+raw) <= 1.25, warm/raw <= 1.05;"
        "\n hit/raw: savedhub.resolve of a cached URL, what a warm load adds to raw TF;"
        "\n content/raw: the price of SAVEDHUB_VERIFY=content)"
    )
    print(
        f"{'model':>7} {'link':>14} {'cold/tfhub cold':>16} {'cold/(xfer+raw)':>16} "
        f"{'cold/(max(xfer,gunzip)+raw)':>28} {'warm/raw':>9} {'hit/raw':>8} "
        f"{'content/raw':>12} {'tfhub cold/(xfer+raw)':>22} {'tfhub warm/raw':>15}"
    )
    for row in rows:
        floor = row["transfer"] + row["raw"]
        print(
            f"{row['model']:>7} {row['link']:>14} "
            f"{row['savedhub cold'] / row['tfhub cold']:16.2f} "
            f"{row['savedhub cold'] / floor:16.2f} "
            f"{row['savedhub cold'] / (max(row['transfer'], row['gunzip']) + row['raw']):28.2f} "
            f"{row['savedhub warm'] / row['raw']:9.3f} "
            f"{row['hit'] / row['raw']:8.4f} "
            f"{row['warm content'] / row['raw']:12.2f} "
            f"{row['tfhub cold'] / floor:22.2f} "
            f"{row['tfhub warm'] / row['raw']:15.3f}"
        )


if __name__ == "__main__":
    main()
