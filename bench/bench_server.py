"""Throughput and requests per second of the hub's archive route, side by side with
Python's ``http.server`` serving the same file, and nginx where it is installed.

Two loads, each with several concurrent clients on keep-alive connections:

* **throughput**: clients download a large archive (a SavedModel with one big
  random variable, so gzip cannot shrink it) over and over; MiB/s.
* **requests/s**: clients download a small model's archive (a few KiB); req/s.

Then the loads an attacker or an unlucky day brings, in the same run:

* **50 concurrent 20 MB downloads**, each on its own connection: aggregate MiB/s
  and the server's peak memory (process tree RSS).
* **slow readers**: 20 clients that read a 20 MB archive at 320 KiB/s each, while
  a probe asks for the small archive every 0.1 s: probe latency, peak memory.
* **slowloris**: 200 connections that send a header line a second and never
  finish, while the probe runs: probe latency and failed probes.
* **heavy page render** (the hub only; the peers have no pages): probe latency
  while three first views of the costliest README within the hub's limits
  render, next to the idle probe.

Every server reads the same ``model.tar.gz`` files from the same storage root
(the hub's ``GET /P/M/V?tf-hub-format=compressed``; the others the file
path). Each server runs as one process (nginx: ``worker_processes 1``) on
127.0.0.1; the load generator is one process, a thread per client. Numbers on a shared
2-core machine are noisy: compare the ratios within one run.

With ``--s3`` it measures the hub on S3 instead (moto's server on 127.0.0.1 as the
store, ``savedhub serve s3://...`` replicas in front of it), side by side in one run:

* **archive download throughput** (MiB/s, keep-alive httpx clients): straight from
  moto, through 1 replica, through 2 replicas (clients alternate), and with
  ``--redirect-downloads`` (clients follow the 307 to the store);
* **peak RSS during a large upload** (``--upload-mb``, default 2048): the S3
  replica's server process and the local-folder hub's, each without its upload
  inspector (TensorFlow, a child process), while ``savedhub push`` sends the archive;
* **front-page requests/s with 10,000 models**: an S3 replica reading the catalog
  index, and the local backend walking 10,000 model folders.

Usage:
    python bench/bench_server.py [--size-mb 64] [--seconds 4] [--clients 1,8,32] [--no-attacks]
    python bench/bench_server.py --s3 [--size-mb 64] [--upload-mb 2048] [--seconds 4]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # push packs, and packing lints with TF

import argparse
import contextlib
import hashlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from threading import Event, Lock, Thread

import httpx

TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not start listening on {port}")


@contextmanager
def running(
    name: str, command: list[str], port: int, **kwargs: object
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs
    )  # type: ignore[call-overload]
    try:
        wait_until_up(port, process, name)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def build_models(work: Path, size_mb: int) -> tuple[Path, Path, Path]:
    """A small model (the guide's MyMul), a 20 MB one and a large one (random variables)."""
    code = f"""
import numpy as np, tensorflow as tf

class Scale(tf.train.Checkpoint):
    def __init__(self, values):
        super().__init__()
        self.w = tf.Variable(values)
        self.variables = [self.w]
        self.trainable_variables = [self.w]
        self.regularization_losses = []

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x):
        return x * self.w[0]

tf.saved_model.save(Scale(np.float32([2.0])), {str(work / "small")!r})
big = np.random.default_rng(0).standard_normal({size_mb} * 2**18).astype(np.float32)
tf.saved_model.save(Scale(big), {str(work / "large")!r})
medium = np.random.default_rng(1).standard_normal(20 * 2**18).astype(np.float32)
tf.saved_model.save(Scale(medium), {str(work / "medium")!r})
"""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    built = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if built.returncode:
        raise RuntimeError(f"building the models failed:\n{built.stderr[-3000:]}")
    return work / "small", work / "medium", work / "large"


@dataclass
class Load:
    requests: int = 0
    body_bytes: int = 0
    errors: int = 0


def _client(port: int, path: str, size: int, deadline: float, load: Load, lock: Lock) -> None:
    """One keep-alive client: blocking socket, ``recv_into`` one reused buffer, so the
    load generator costs little next to the servers it measures."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept-Encoding: identity\r\n\r\n"
    ).encode()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    conn: socket.socket | None = None
    done = errors = received = 0
    while time.perf_counter() < deadline:
        if conn is None:
            conn = socket.create_connection(("127.0.0.1", port))
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(request)
        pending = bytearray()
        while (end := pending.find(b"\r\n\r\n")) < 0:
            n = conn.recv_into(view)
            if not n:
                raise ConnectionError("server closed before the headers")
            pending += view[:n]
        lines = bytes(pending[:end]).decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        length = int(headers["content-length"])
        remaining = length - (len(pending) - end - 4)
        while remaining > 0:
            n = conn.recv_into(view, min(remaining, len(buffer)))
            if not n:
                raise ConnectionError("server closed mid-body")
            remaining -= n
        errors += " 200 " not in lines[0] + " " or length != size
        done += 1
        received += length
        if headers.get("connection", "").lower() == "close" or lines[0].startswith("HTTP/1.0"):
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    with lock:
        load.requests += done
        load.body_bytes += received
        load.errors += errors


def _drive(port: int, path: str, size: int, clients: int, seconds: float) -> tuple[Load, float]:
    load, lock = Load(), Lock()
    start = time.perf_counter()
    threads = [
        Thread(target=_client, args=(port, path, size, start + seconds, load, lock))
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return load, time.perf_counter() - start


def measure(port: int, path: str, size: int, clients: int, seconds: float) -> tuple[float, float]:
    """``(requests/s, MiB/s)`` of ``clients`` concurrent keep-alive downloads of ``path``."""
    _drive(port, path, size, clients, min(1.0, seconds / 4))  # warm up
    load, elapsed = _drive(port, path, size, clients, seconds)
    if load.errors:
        raise RuntimeError(f"{load.errors} bad answers from port {port} for {path}")
    return load.requests / elapsed, load.body_bytes / elapsed / 2**20


def check_same_bytes(url: str, expected_sha256: str) -> None:
    answer = httpx.get(url, timeout=120)
    if hashlib.sha256(answer.content).hexdigest() != expected_sha256:
        raise RuntimeError(
            f"{url} did not serve the published archive: HTTP {answer.status_code}, "
            f"{len(answer.content)} bytes, {dict(answer.headers)}"
        )


# -- loads an attacker brings --------------------------------------------------


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, MiB (0 once it is gone)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
        )
        pending += [int(c) for c in children]
    return total / 1024


@contextmanager
def every(interval: float, action: Callable[[], None]) -> Iterator[None]:
    """Calls ``action`` every ``interval`` seconds in a background thread while the block runs."""
    stop = Event()

    def loop() -> None:
        while not stop.wait(interval):
            action()

    worker = Thread(target=loop, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()


@contextmanager
def peak_rss(pid: int) -> Iterator[list[float]]:
    """Samples the process tree's RSS every 50 ms; the list holds the peak afterwards."""
    peak = [tree_rss_mib(pid)]

    def sample() -> None:
        peak[0] = max(peak[0], tree_rss_mib(pid))

    with every(0.05, sample):
        yield peak


def _request(port: int, path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").encode()


def probe_once(port: int, path: str) -> float | None:
    """Seconds for one small GET on a new connection, or None if it failed."""
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(_request(port, path))
            head = conn.recv(16)
            while conn.recv(65536):
                pass
    except OSError:
        return None
    return time.perf_counter() - start if b" 200 " in head else None


@contextmanager
def probing(port: int, path: str) -> Iterator[list[float | None]]:
    """A probe every 0.1 s while the block runs; the list holds their latencies."""
    latencies: list[float | None] = []
    with every(0.1, lambda: latencies.append(probe_once(port, path))):
        yield latencies


def probe_stats(latencies: list[float | None]) -> tuple[float, float, int]:
    """``(median ms, max ms, failed)`` of probe latencies."""
    done = sorted(x * 1000 for x in latencies if x is not None)
    if not done:
        return float("nan"), float("nan"), len(latencies)
    return done[len(done) // 2], done[-1], len(latencies) - len(done)


def _download_once(port: int, path: str, size: int, totals: list[int]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
        conn.sendall(_request(port, path))
        buffer = bytearray(1 << 20)
        received = 0
        while n := conn.recv_into(buffer):
            received += n
    totals.append(received - size)  # the headers' length: small and positive when complete


def concurrent_downloads(
    port: int, pid: int, path: str, size: int, clients: int = 50
) -> tuple[float, float]:
    """``(aggregate MiB/s, peak RSS MiB)`` of ``clients`` simultaneous whole downloads."""
    totals: list[int] = []
    threads = [
        Thread(target=_download_once, args=(port, path, size, totals)) for _ in range(clients)
    ]
    with peak_rss(pid) as peak:
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
    complete = sum(0 <= extra < 4096 for extra in totals)
    if complete != clients:
        raise RuntimeError(f"only {complete} of {clients} downloads of {path} completed")
    return clients * size / elapsed / 2**20, peak[0]


def slow_readers(
    port: int, pid: int, big: str, small: str, seconds: float, readers: int = 20
) -> tuple[float, float, int, float]:
    """Probe ``(median ms, max ms, failed)`` and peak RSS while ``readers`` clients
    read ``big`` at 16 KiB per 50 ms."""
    stop = Event()

    def read_slowly() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            conn.sendall(_request(port, big))
            while not stop.wait(0.05) and conn.recv(16384):
                pass

    threads = [Thread(target=read_slowly) for _ in range(readers)]
    with peak_rss(pid) as peak, probing(port, small) as latencies:
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
    return (*probe_stats(latencies), peak[0])


def slowloris(
    port: int, small: str, seconds: float, connections: int = 200
) -> tuple[float, float, int]:
    """Probe ``(median ms, max ms, failed)`` while ``connections`` requests never finish
    their headers (one more header line a second)."""
    conns = []
    for _ in range(connections):
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(f"GET {small} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
        conns.append(conn)
    try:
        with probing(port, small) as latencies:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                time.sleep(1.0)
                for conn in conns:
                    with contextlib.suppress(OSError):  # the server may drop it: allowed
                        conn.sendall(b"X-Slow: 1\r\n")
    finally:
        for conn in conns:
            conn.close()
    return probe_stats(latencies)


def heavy_page_probe(
    port: int, small: str, pages: list[str]
) -> tuple[tuple[float, float, int], ...]:
    """Probe stats idle, then while the ``pages`` (first views) render at once."""
    idle = [probe_once(port, small) for _ in range(10)]

    def view(path: str) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=300) as conn:
            request = _request(port, path).replace(b"\r\n\r\n", b"\r\nAccept: text/html\r\n\r\n")
            conn.sendall(request)
            while conn.recv(65536):
                pass

    viewers = [Thread(target=view, args=(path,)) for path in pages]
    with probing(port, small) as latencies:
        for viewer in viewers:
            viewer.start()
        for viewer in viewers:
            viewer.join()
    return probe_stats(idle), probe_stats(latencies)


COSTLY_README = "- a\n" * 16000  # about the costliest Markdown within the hub's 64 KiB


NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=64, help="size of the large model")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each measurement")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients to try")
    parser.add_argument(
        "--no-attacks", action="store_true", help="skip the downloads/slow-client/page loads"
    )
    parser.add_argument("--s3", action="store_true", help="measure the hub on S3 (moto)")
    parser.add_argument("--upload-mb", type=int, default=2048, help="--s3: the large upload")
    args = parser.parse_args()
    if args.s3:
        from bench_server_s3 import run_s3_bench

        run_s3_bench(args)
        return
    client_counts = [int(c) for c in args.clients.split(",")]

    from savedhub.publish.push import push

    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        work = Path(tmp)
        root = work / "root"
        small, medium, large = build_models(work, args.size_mb)
        documented = work / "documented"
        shutil.copytree(small, documented)
        (documented / "README.md").write_text(COSTLY_README)
        (work / "tokens").write_text(TOKEN + "\n")
        hub_port = free_port()
        hub_cmd = [
            sys.executable,
            "-m",
            "savedhub.cli",
            "serve",
            str(root),
            "--port",
            str(hub_port),
            "--tokens-file",
            str(work / "tokens"),
        ]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", SAVEDHUB_DISABLE_PROGRESS="1")
        with running("savedhub serve", hub_cmd, hub_port, env=env):
            base = f"http://127.0.0.1:{hub_port}"
            started = time.perf_counter()
            published = {
                "small": push(small, f"{base}/bench/small/1", token=TOKEN),
                "large": push(large, f"{base}/bench/large/1", token=TOKEN),
                "medium": push(medium, f"{base}/bench/medium/1", token=TOKEN),
            }
            pages = [f"/bench/readme/{v}" for v in (1, 2, 3)]
            for page in pages:
                push(documented, f"{base}{page}", token=TOKEN)
            push_seconds = time.perf_counter() - started
        print(
            f"published: small {published['small'].size} B, large "
            f"{published['large'].size / 2**20:.1f} MiB (push of both: {push_seconds:.1f} s)\n"
        )

        servers: list[tuple[str, list[str], str, dict[str, object]]] = [
            ("savedhub", hub_cmd, "/bench/{m}/1?tf-hub-format=compressed", {"env": env}),
            (
                "http.server",
                [
                    sys.executable,
                    "-m",
                    "http.server",
                    "PORT",
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                    str(root),
                ],
                "/bench/{m}/1/model.tar.gz",
                {},
            ),
        ]
        if shutil.which("nginx"):
            servers.append(
                (
                    "nginx",
                    ["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)],
                    "/bench/{m}/1/model.tar.gz",
                    {},
                )
            )
        results: dict[tuple[str, str, int], tuple[float, float]] = {}
        attacked: dict[tuple[str, str], float] = {}
        for name, command, template, kwargs in servers:
            port = free_port()
            command = [str(port) if c == "PORT" else c for c in command]
            if name == "savedhub":
                command[command.index("--port") + 1] = str(port)
            if name == "nginx":
                # As root, nginx's worker would run as 'nobody', who cannot enter 0700 temp folders.
                user = "user root;" if os.geteuid() == 0 else ""
                conf = NGINX_CONF.format(user=user, work=work, port=port, root=root)
                (work / "nginx.conf").write_text(conf)
            with running(name, command, port, **kwargs) as process:
                for model in ("large", "small"):
                    path = template.format(m=model)
                    check_same_bytes(f"http://127.0.0.1:{port}{path}", published[model].sha256)
                    for clients in client_counts:
                        results[(name, model, clients)] = measure(
                            port, path, published[model].size, clients, args.seconds
                        )
                if not args.no_attacks:
                    attacked.update(
                        run_attacks(
                            name,
                            port,
                            process.pid,
                            template,
                            published["medium"].size,
                            args.seconds,
                            pages if name == "savedhub" else [],
                        )
                    )

        names = [s[0] for s in servers]
        print(
            f"{'load':<28} {'clients':>7} "
            + " ".join(f"{n:>14}" for n in names)
            + "   "
            + " ".join(f"{'hub/' + n:>16}" for n in names[1:])
        )
        for model, unit, index in (("large", "MiB/s", 1), ("small", "req/s", 0)):
            label = f"{'throughput' if model == 'large' else 'requests'} ({unit})"
            for clients in client_counts:
                values = [results[(n, model, clients)][index] for n in names]
                ratios = [values[0] / v if v else float("nan") for v in values[1:]]
                print(
                    f"{label:<28} {clients:>7} "
                    + " ".join(f"{v:>14.1f}" for v in values)
                    + "   "
                    + " ".join(f"{r:>15.2f}x" for r in ratios)
                )

        if attacked:
            print_attacks(names, attacked)


ATTACK_ROWS = [
    ("downloads", "50 x 20 MB downloads (MiB/s)"),
    ("downloads_rss", "  peak RSS (MiB)"),
    ("slow_median", "20 slow readers: probe p50 (ms)"),
    ("slow_max", "  probe max (ms)"),
    ("slow_failed", "  failed probes"),
    ("slow_rss", "  peak RSS (MiB)"),
    ("loris_median", "200 slowloris: probe p50 (ms)"),
    ("loris_max", "  probe max (ms)"),
    ("loris_failed", "  failed probes"),
    ("page_idle", "idle: probe p50 (ms)"),
    ("page_median", "3 heavy pages: probe p50 (ms)"),
    ("page_max", "  probe max (ms)"),
    ("page_failed", "  failed probes"),
]


def run_attacks(
    name: str,
    port: int,
    pid: int,
    template: str,
    medium_size: int,
    seconds: float,
    pages: list[str],
) -> dict[tuple[str, str], float]:
    """The attack figures of one server (see the module docstring)."""
    small, medium = template.format(m="small"), template.format(m="medium")
    figures: dict[str, float] = {}
    figures["downloads"], figures["downloads_rss"] = concurrent_downloads(
        port, pid, medium, medium_size
    )
    (
        figures["slow_median"],
        figures["slow_max"],
        figures["slow_failed"],
        figures["slow_rss"],
    ) = slow_readers(port, pid, medium, small, seconds)
    figures["loris_median"], figures["loris_max"], figures["loris_failed"] = slowloris(
        port, small, seconds
    )
    if pages:
        idle, rendering = heavy_page_probe(port, small, pages)
        figures["page_idle"] = idle[0]
        figures["page_median"], figures["page_max"], figures["page_failed"] = rendering
    return {(name, key): value for key, value in figures.items()}


def print_attacks(names: list[str], attacked: dict[tuple[str, str], float]) -> None:
    print(
        f"\n{'under attack':<34} "
        + " ".join(f"{n:>14}" for n in names)
        + "   "
        + " ".join(f"{'hub/' + n:>16}" for n in names[1:])
    )
    for key, label in ATTACK_ROWS:
        values = [attacked.get((n, key)) for n in names]
        if values[0] is None:
            continue
        shown = [f"{v:>14.1f}" if v is not None else f"{'n/a':>14}" for v in values]
        ratios = [f"{values[0] / v:>15.2f}x" if v else f"{'-':>16}" for v in values[1:]]
        print(f"{label:<34} " + " ".join(shown) + "   " + " ".join(ratios))


if __name__ == "__main__":
    main()
