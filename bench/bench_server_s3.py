"""The ``--s3`` part of ``bench/bench_server.py``: the hub on S3 (moto) behind replicas.

See bench_server.py's docstring for what is measured. moto is a test double that keeps
objects in one Python process; it is the store here because it runs on loopback with no
network. Absolute numbers say little about AWS S3 or MinIO; the ratios between rows, all
against the same moto in one run, are what this shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from threading import Lock, Thread

import httpx

from bench_server import TOKEN, build_models, every, free_port, running

BUCKET = "savedhub-bench"
MODELS = 10_000


def _serve(root: str, port: int, tokens: Path, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "savedhub.cli",
        "serve",
        root,
        "--port",
        str(port),
        "--tokens-file",
        str(tokens),
        "--no-access-log",
        *flags,
    ]


@contextmanager
def _hub(root: str, tokens: Path, env: dict[str, str], *flags: str) -> Iterator[tuple[str, int]]:
    """A ``savedhub serve`` on a free port: its URL and process id."""
    port = free_port()
    with running(f"savedhub serve {root}", _serve(root, port, tokens, *flags), port, env=env) as p:
        yield f"http://127.0.0.1:{port}", p.pid


def throughput(urls: list[str], size: int, clients: int, seconds: float) -> float:
    """MiB/s of ``clients`` keep-alive httpx clients downloading ``urls`` in turn (following
    redirects), each body checked for its length."""
    received, errors, lock = [0], [0], Lock()
    deadline = time.perf_counter() + seconds

    def client(number: int) -> None:
        got = bad = 0
        with httpx.Client(follow_redirects=True, timeout=120) as session:
            turn = number
            while time.perf_counter() < deadline:
                with session.stream("GET", urls[turn % len(urls)]) as answer:
                    body = sum(len(chunk) for chunk in answer.iter_raw(1 << 20))
                bad += answer.status_code != 200 or body != size
                got += body
                turn += 1
        with lock:
            received[0] += got
            errors[0] += bad

    started = time.perf_counter()
    threads = [Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors[0]:
        raise RuntimeError(f"{errors[0]} bad answers from {urls}")
    return received[0] / (time.perf_counter() - started) / 2**20


def requests_per_second(url: str, clients: int, seconds: float) -> float:
    """Pages/s of ``clients`` keep-alive clients asking for ``url`` (HTML)."""
    done, lock = [0], Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        count = 0
        with httpx.Client(timeout=300, headers={"Accept": "text/html"}) as session:
            while time.perf_counter() < deadline:
                answer = session.get(url)
                if answer.status_code != 200:
                    raise RuntimeError(f"{url}: HTTP {answer.status_code}")
                count += 1
        with lock:
            done[0] += count

    started = time.perf_counter()
    threads = [Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0] / (time.perf_counter() - started)


def own_rss_mib(pid: int) -> float:
    """Resident memory of the process itself (not its children, e.g. the inspector), MiB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024


def peak_during(pid: int, action: Callable[[], object]) -> float:
    peak = [own_rss_mib(pid)]

    def sample() -> None:
        peak[0] = max(peak[0], own_rss_mib(pid))

    with every(0.05, sample):
        action()
    return peak[0]


def _catalog_records(count: int) -> list[object]:
    from savedhub._wire import ArchiveRecord, VersionRecord

    template = VersionRecord("p", "m", "1", ArchiveRecord("model.tar.gz", "0" * 64, 1234))
    return [
        dataclasses.replace(
            template,
            publisher=f"pub-{i % 100}",
            model=f"model-{i}",
            summary=f"model number {i}",
            created="2026-11-27T00:00:00+00:00",
        )
        for i in range(count)
    ]


def _local_catalog(root: Path, records: list[object]) -> None:
    import json

    for record in records:
        folder = root / record.publisher / record.model / "1"  # type: ignore[attr-defined]
        folder.mkdir(parents=True)
        (folder / "metadata.json").write_text(json.dumps(record.to_json()))  # type: ignore[attr-defined]


def run_s3_bench(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from s3server import moto_endpoint
    from savedhub.publish.pack import pack
    from savedhub.publish.push import push
    from savedhub.server.s3 import S3Storage
    from savedhub.server.s3index import _document

    client_counts = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        tokens = work / "tokens"
        tokens.write_text(TOKEN + "\n")
        _, _, large = build_models(work, args.size_mb)
        s3 = stack.enter_context(moto_endpoint(work))
        s3.client().create_bucket(Bucket=BUCKET)
        env = {**os.environ, **s3.env, "TF_CPP_MIN_LOG_LEVEL": "3"}
        root = f"s3://{BUCKET}/hub"
        a, _ = stack.enter_context(_hub(root, tokens, env))
        b, _ = stack.enter_context(_hub(root, tokens, env))
        redirecting, _ = stack.enter_context(_hub(root, tokens, env, "--redirect-downloads"))

        published = push(large, f"{a}/bench/large/1", token=TOKEN)
        size = published.size
        folder = httpx.get(f"{a}/bench/large/1?tf-hub-format=uncompressed").text
        key = folder.removeprefix(f"s3://{BUCKET}/").removesuffix("/saved_model")
        direct = f"{s3.url}/{BUCKET}/{key}/model.tar.gz"
        path = "bench/large/1?tf-hub-format=compressed"
        rows = {
            "moto direct": [direct],
            "1 replica": [f"{a}/{path}"],
            "2 replicas": [f"{a}/{path}", f"{b}/{path}"],
            "--redirect-downloads": [f"{redirecting}/{path}"],
        }
        for name, urls in rows.items():
            got = httpx.get(urls[0], follow_redirects=True, timeout=300).content
            if hashlib.sha256(got).hexdigest() != published.sha256:
                raise RuntimeError(f"{name} did not serve the published archive")
        print(
            f"archive: {size / 2**20:.1f} MiB; store: moto_server on 127.0.0.1; "
            f"{os.cpu_count()} cores, shared with other work (ratios count, not absolutes)\n"
        )
        print(
            f"{'download throughput (MiB/s)':<28} {'clients':>7} "
            + "".join(f"{n:>22}" for n in rows)
            + f"{'2 replicas/1':>15}{'redirect/1':>13}"
        )
        for clients in client_counts:
            values = [throughput(urls, size, clients, args.seconds) for urls in rows.values()]
            print(
                f"{'':<28} {clients:>7} "
                + "".join(f"{v:>22.1f}" for v in values)
                + f"{values[2] / values[1]:>14.2f}x{values[3] / values[1]:>12.2f}x"
            )

        # Peak memory while a large archive is pushed: S3 replica vs local folder hub.
        (work / "upload").mkdir()
        upload_model = build_models(work / "upload", args.upload_mb)[2]
        archive = pack(upload_model, work / "upload.tar.gz")
        print(f"\nlarge upload: {archive.size / 2**20:.0f} MiB archive")
        limit = ["--max-upload", str(4 * archive.size), "--inspector-idle", "5"]
        peaks = {}
        for name, hub_root in (
            ("S3 replica", f"s3://{BUCKET}/uploads"),
            ("local folder", str(work / "local")),
        ):
            with _hub(hub_root, tokens, env, *limit) as (url, pid):
                started = time.perf_counter()
                peak = peak_during(
                    pid, lambda url=url: push(archive.path, f"{url}/big/model/1", token=TOKEN)
                )
                peaks[name] = (peak, time.perf_counter() - started)
        print(
            f"{'peak server RSS (MiB)':<28} "
            + "".join(f"{n:>16}" for n in peaks)
            + f"{'S3/local':>12}"
        )
        print(
            f"{'':<28} "
            + "".join(f"{p:>16.0f}" for p, _ in peaks.values())
            + f"{peaks['S3 replica'][0] / peaks['local folder'][0]:>11.2f}x"
        )
        print(f"{'  push took (s)':<28} " + "".join(f"{t:>16.1f}" for _, t in peaks.values()))

        # Front page with 10,000 models: the S3 index against the local backend's walk.
        records = _catalog_records(MODELS)
        many = S3Storage(f"s3://{BUCKET}/many", client=s3.client())
        many.index._put(_document(records), {"IfNoneMatch": "*"})
        _local_catalog(work / "many", records)
        pages = {}
        for name, hub_root in (
            ("S3 replica", f"s3://{BUCKET}/many"),
            ("local folder", str(work / "many")),
        ):
            with _hub(hub_root, tokens, env) as (url, _):
                httpx.get(url, timeout=600, headers={"Accept": "text/html"})  # warm caches
                pages[name] = (
                    requests_per_second(f"{url}/", 4, args.seconds),
                    requests_per_second(f"{url}/?q=model-4242", 4, args.seconds),
                )
        print(
            f"\n{'10,000 models (pages/s)':<28} "
            + "".join(f"{n:>16}" for n in pages)
            + f"{'S3/local':>12}"
        )
        for index, label in ((0, "front page"), (1, "search")):
            values = [v[index] for v in pages.values()]
            print(
                f"{label:<28} "
                + "".join(f"{v:>16.1f}" for v in values)
                + f"{values[0] / values[1]:>11.2f}x"
            )
