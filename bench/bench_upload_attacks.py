"""How long other users wait while the hub is under a hostile upload, and how much memory
the hub takes: each attack side by side with an idle hub and an honest upload.

For each row, one ``savedhub serve`` process (127.0.0.1) receives the upload in a
thread while a probe client sends ``GET /api/models`` every 50 ms; the table shows
the attack's answer and time, the slowest and median probe while it ran, their ratio
to the idle hub's probe, and the server process's peak resident memory (VmHWM; the
upload inspector, TensorFlow in a process of its own, is not counted). The target is
a probe under 1 s and a peak under 400 MB in every row. Numbers on a shared 2-core
machine are noisy: compare the ratios within one run.

Usage:
    python bench/bench_upload_attacks.py [--max-upload-mb 64]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse
import bz2
import contextlib
import io
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx

TOKEN = "bench-token"
IDLE_SECONDS = 3
INSPECTOR_IDLE = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gzip_member(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


def header(name: str, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, size, 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def repeated_gzip(head: bytes, piece: bytes, times: int) -> bytes:
    """gzip of ``head + piece * times`` + end blocks, as concatenated members (quick to build)."""
    return gzip_member(head) + gzip_member(piece) * times + gzip_member(bytes(1024))


def model_tar(folder: Path) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(folder / name, arcname=name)
        return out.getvalue()  # without end blocks: members may follow


def build_model(work: Path) -> Path:
    code = f"""
import tensorflow as tf
class Mul(tf.train.Checkpoint):
    def __init__(self):
        super().__init__()
        self.v = tf.Variable(2.0)
        self.variables = [self.v]
        self.trainable_variables = [self.v]
        self.regularization_losses = []
    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def __call__(self, x):
        return x * self.v
tf.saved_model.save(Mul(), {str(work / "model")!r})
"""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return work / "model"


def memory_mib(pid: int, field: str = "VmHWM") -> float:
    """A memory figure of ``pid`` from /proc (VmHWM: peak resident; VmRSS: resident now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (each thread lists those it started)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # the thread ended meanwhile
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def inspector_lifetime(url: str, server: int, body: bytes) -> tuple[float, float]:
    """The inspector's resident MiB right after an upload, and seconds until it stops."""
    put(url, "b/inspected/1", body)
    done = time.monotonic()
    rss = sum(memory_mib(child, "VmRSS") for child in children(server))
    while children(server):
        time.sleep(0.2)
    return rss, time.monotonic() - done


def put(url: str, path: str, body: bytes) -> str:
    answer = httpx.put(
        f"{url}/api/models/{path}",
        content=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=600,
    )
    return str(answer.status_code)


def concurrently(url: str, path: str, body: bytes, count: int) -> str:
    """``count`` uploads of ``body`` at once (``path`` has a ``{}`` for the upload's number)."""
    statuses: list[str] = []
    threads = [
        threading.Thread(target=lambda i=i: statuses.append(put(url, path.format(i), body)))
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return "/".join(sorted(set(statuses)))


def stalled_uploads(url: str, count: int) -> str:
    """``count`` uploads that send a little and then nothing, until the hub drops them."""
    port = int(url.rsplit(":", 1)[1])
    conns = []
    for i in range(count):
        conn = socket.create_connection(("127.0.0.1", port), timeout=120)
        conn.sendall(
            f"PUT /api/models/bench/stall-{i}/1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer "
            f"{TOKEN}\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"\x1f\x8b"
            + bytes(1000)
        )
        conns.append(conn)
    statuses = set()
    for conn in conns:
        with conn:
            reply = conn.recv(65536)
            statuses.add(reply.split(b" ", 2)[1].decode() if reply else "closed")
    return "/".join(sorted(statuses))


def measure(url: str, attack: Callable[[], str]) -> tuple[str, float, list[float]]:
    """Run ``attack`` in a thread while probing; (its answer, its seconds, probe seconds)."""
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(attack()))
    started = time.perf_counter()
    thread.start()
    probes = []
    with httpx.Client(timeout=60) as client:
        while thread.is_alive() or not probes:
            t = time.perf_counter()
            client.get(f"{url}/api/models").raise_for_status()
            probes.append(time.perf_counter() - t)
            time.sleep(0.05)
    thread.join()
    return result[0], time.perf_counter() - started, probes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-upload-mb", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-attacks-"))
    (work / "tokens").write_text(f"{TOKEN}\n")
    model = build_model(work)
    honest = gzip_member(model_tar(model) + bytes(1024))
    gib = 2**30
    big = 256 * 2**20
    max_unpacked = 4 * args.max_upload_mb * 2**20
    # Bodies are built before the clock starts: each row times the hub, not the builder.
    uploads: list[tuple[str, str, bytes]] = [
        ("honest upload (first: starts the inspector)", "b/honest/1", honest),
        ("honest upload (inspector up)", "b/honest/2", honest),
        (
            f"asset of {max_unpacked // 2**20 - 8} MiB, under --max-unpacked (written)",
            "b/big-asset/1",
            repeated_gzip(
                model_tar(model) + header("assets/z", b"0", max_unpacked - 8 * 2**20),
                bytes(2**20),
                max_unpacked // 2**20 - 8,
            ),
        ),
        (
            "1 GiB asset in ~1 MB gzip (past --max-unpacked)",
            "b/bomb/1",
            repeated_gzip(model_tar(model) + header("assets/z", b"0", gib), bytes(2**20), 1024),
        ),
        (
            "256 MiB GNU long-name header",
            "b/long/1",
            repeated_gzip(header("x", b"L", big), b"a" * 2**20, 256),
        ),
        ("256 MiB pax header", "b/pax/1", repeated_gzip(header("x", b"x", big), b"a" * 2**20, 256)),
        (
            "bzip2: 256 MiB member in ~300 bytes",
            "b/bz2/1",
            bz2.compress(header("z", b"0", big) + bytes(big)),
        ),
    ]
    rows: list[tuple[str, Callable[[str], str]]] = [
        ("idle hub (no upload)", lambda url: (time.sleep(2), "-")[1]),
        *((name, lambda url, p=path, b=body: put(url, p, b)) for name, path, body in uploads),
        (
            "4 concurrent uploads of the asset under the limit",
            lambda url: concurrently(url, "b/big-asset-{}/1", uploads[2][2], 4),
        ),
        (
            f"20 stalled uploads ({IDLE_SECONDS} s idle timeout)",
            lambda url: stalled_uploads(url, 20),
        ),
    ]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "savedhub.cli", "serve", str(work / "root"), "--port", str(port),
        "--tokens-file", str(work / "tokens"), "--max-upload", f"{args.max_upload_mb}MiB",
        "--upload-idle-timeout", str(IDLE_SECONDS), "--inspector-idle", str(INSPECTOR_IDLE),
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/api/models", timeout=2).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        print(f"savedhub serve --max-upload {args.max_upload_mb}MiB (--max-unpacked default "
              f"{max_unpacked // 2**20} MiB); probe = GET /api/models every 50 ms")  # fmt: skip
        print(
            f"{'upload':<52} {'answer':>7} {'took s':>7} {'probe max ms':>13} "
            f"{'median ms':>10} {'x idle':>7} {'hub peak MiB':>13}"
        )
        idle_median = None
        for name, attack in rows:
            answer, took, probes = measure(url, lambda attack=attack: attack(url))
            median = statistics.median(probes) if probes else float("nan")
            idle_median = idle_median or median
            print(
                f"{name:<52} {answer:>7} {took:>7.2f} {max(probes, default=0) * 1000:>13.1f} "
                f"{median * 1000:>10.1f} {median / idle_median:>7.1f} "
                f"{memory_mib(server.pid):>13.0f}"
            )
        rss, lived = inspector_lifetime(url, server.pid, honest)
        print(
            f"inspector (TensorFlow, its own process): {rss:.0f} MiB resident after an upload, "
            f"stopped {lived:.1f} s later (--inspector-idle {INSPECTOR_IDLE}; default 60, "
            "was 600); 0 MiB while idle"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
