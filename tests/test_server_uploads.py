"""Hostile uploads against a real ``savedhub serve``: names with a final newline, tar
headers and archives built to exhaust memory or disk, other compressions, stalled bodies.

The hub runs with a cap on its address space (so a runaway allocation fails there
rather than swamping the machine) and every attack checks three things: the answer
is a 4xx naming the limit and how to raise it; the server process's peak resident
memory (VmHWM of the ``savedhub serve`` process; the upload inspector is a separate
process and is never reached by these attacks) stays under 400 MiB; and a probe
request sent while the attack is under way is answered before the attack is.
"""

from __future__ import annotations

import bz2
import contextlib
import io
import lzma
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hubserver import RunningHub, running_hub
from savedhub.publish.pack import pack

TOKEN = "tok-uploads"
MAX_UPLOAD = 2 * 2**20  # so the default --max-unpacked is 8 MiB
IDLE_SECONDS = 3
MIN_RATE = 2048  # bytes a second over each IDLE_SECONDS span
PEAK_RSS_MIB = 400
ADDRESS_SPACE = 3 * 2**30
MAX_MEMBERS = 500  # the hub's own; each member below it is a file written


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    base = tmp_path_factory.mktemp("uploads-hub")
    tokens = base / "tokens.txt"
    tokens.write_text(f"{TOKEN}\n")
    with running_hub(
        base / "root",
        base,
        tokens_file=tokens,
        max_upload=MAX_UPLOAD,
        extra_args=[
            "--upload-idle-timeout",
            str(IDLE_SECONDS),
            "--upload-min-rate",
            f"{MIN_RATE}",
            "--inspector-idle",
            "2",
        ],
        address_space=ADDRESS_SPACE,
        env={"SAVEDHUB_MAX_EXTRACT_MEMBERS": str(MAX_MEMBERS)},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def my_mul_archive(my_mul_path: str, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    packed = pack(my_mul_path, tmp_path_factory.mktemp("packed") / "my_mul.tar.gz")
    return Path(packed.path).read_bytes()


def _gzip_repeated(head: bytes, piece: bytes, times: int, tail: bytes = b"\0" * 1024) -> bytes:
    """A gzip of ``head + piece * times + tail``, built as concatenated gzip members (valid
    gzip, and quick to build however large the content)."""
    one = zlib.compressobj(9, zlib.DEFLATED, 31)
    repeated = one.compress(piece) + one.flush()
    return gzip_member(head) + repeated * times + gzip_member(tail)


def gzip_member(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


def _header(name: str, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _plain_tar(folder: str) -> bytes:
    """The members of ``folder`` as a tar, without its end blocks (more members may follow)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(os.path.join(folder, name), arcname=name)
        return out.getvalue()  # before close() writes the end-of-archive blocks


def _raw(hub: RunningHub, head: str, body: bytes = b"") -> bytes:
    """Send bytes exactly as written (no client-side path normalisation); the whole reply."""
    port = int(hub.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(head.encode() + body)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return reply


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def _attack(hub: RunningHub, path: str, body: bytes, split: int = 100) -> httpx.Response:
    """PUT ``body`` in two parts; between them, while the upload is open, a probe request
    must be answered. Returns the attack's answer, and checks the probe came first."""
    order: list[str] = []

    def parts() -> Iterator[bytes]:
        yield body[:split]
        probe = httpx.get(f"{hub.url}/api/models", timeout=60)  # a hang guard only
        order.append(f"probe {probe.status_code}")
        yield body[split:]

    answer = httpx.put(
        f"{hub.url}/api/models/{path}",
        content=parts(),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=120,
    )
    order.append("attack answered")
    assert order == ["probe 200", "attack answered"]
    assert hub.peak_rss_mib() < PEAK_RSS_MIB, f"the hub peaked at {hub.peak_rss_mib():.0f} MiB"
    assert answer.status_code != 500
    return answer


def _nothing_kept(hub: RunningHub, publisher: str, model: str) -> None:
    assert not (hub.root / publisher / model).exists()
    leftovers = [p for p in (hub.root / ".incoming").rglob("*") if p.is_file()]
    assert [p for p in leftovers if p.name != ".lock"] == []


def test_names_ending_in_a_newline_are_refused_everywhere(
    hub: RunningHub, my_mul_archive: bytes
) -> None:
    put = "PUT /api/models/{} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + TOKEN
    put += "\r\nContent-Length: {}\r\nConnection: close\r\n\r\n"
    for path in ("acme/mul%0A/1", "api%0A/mul/1", "acme/mul/1%0A", "acme%0A/mul/1"):
        reply = _raw(hub, put.format(path, len(my_mul_archive)), my_mul_archive)
        assert _status(reply) == 400, path
        rule = b"positive integers" if path.endswith("%0A") else b"letters, digits"
        assert b"is not allowed" in reply and rule in reply
    for target in ("/acme/mul%0A/1", "/acme/mul%0A", "/api/models/acme/mul%0A", "/acme%0A"):
        reply = _raw(hub, f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert _status(reply) == 400, target
    assert not [p for p in hub.root.rglob("*") if "\n" in p.name]
    assert httpx.get(f"{hub.url}/api/models").json() == {"models": []}


@pytest.mark.parametrize(
    ("kind", "what"),
    [(tarfile.GNUTYPE_LONGNAME, "GNU long name header"), (tarfile.XHDTYPE, "pax extended header")],
)
def test_huge_tar_headers_are_refused_before_they_are_read(
    hub: RunningHub, kind: bytes, what: str
) -> None:
    size = 256 * 2**20
    body = _gzip_repeated(_header("././@LongLink", kind, size), b"a" * 2**20, size // 2**20)
    assert len(body) < MAX_UPLOAD
    answer = _attack(hub, "acme/long-header/1", body)
    assert answer.status_code == 413
    error = answer.json()["error"]
    assert f"{what} of {size} bytes" in error and "limit of" in error and "fixed limit" in error
    _nothing_kept(hub, "acme", "long-header")


def test_too_many_members_are_refused_while_streaming(hub: RunningHub) -> None:
    empty_files = b"".join(_header(f"f{i}", tarfile.REGTYPE, 0) for i in range(MAX_MEMBERS * 50))
    body = gzip_member(empty_files + b"\0" * 1024)
    assert len(body) < MAX_UPLOAD
    answer = _attack(hub, "acme/many/1", body)
    assert answer.status_code == 413
    assert f"limit of {MAX_MEMBERS} members" in answer.json()["error"]
    assert "SAVEDHUB_MAX_EXTRACT_MEMBERS" in answer.json()["error"]
    _nothing_kept(hub, "acme", "many")


def test_an_archive_unpacking_past_max_unpacked_gets_413(hub: RunningHub, my_mul_path: str) -> None:
    asset = 2**30  # a valid SavedModel, plus a 1 GiB asset of zeros, in about 1 MB
    head = _plain_tar(my_mul_path) + _header("assets/zeros.bin", tarfile.REGTYPE, asset)
    body = _gzip_repeated(head, bytes(2**20), asset // 2**20)
    assert len(body) < MAX_UPLOAD
    answer = _attack(hub, "acme/bomb/1", body)
    assert answer.status_code == 413
    error = answer.json()["error"]
    assert "assets/zeros.bin" in error and str(4 * MAX_UPLOAD) in error
    assert "--max-unpacked" in error
    _nothing_kept(hub, "acme", "bomb")


@pytest.mark.parametrize("fmt", ["bzip2", "xz", "tar"])
def test_other_formats_are_refused_with_415_naming_gzip(
    hub: RunningHub, my_mul_path: str, fmt: str
) -> None:
    if fmt == "tar":
        body = _plain_tar(my_mul_path) + b"\0" * 1024
    else:  # a 64 MiB member in a few KB: what tarfile would decompress in one piece
        bomb = _header("zeros.bin", tarfile.REGTYPE, 64 * 2**20) + bytes(64 * 2**20)
        body = bz2.compress(bomb) if fmt == "bzip2" else lzma.compress(bomb, preset=0)
    answer = _attack(hub, f"acme/{fmt}/1", body, split=min(100, len(body) // 2))
    assert answer.status_code == 415
    error = answer.json()["error"]
    assert "gzip" in error and "savedhub pack" in error
    assert ("uncompressed tar" if fmt == "tar" else fmt) in error
    _nothing_kept(hub, "acme", fmt)


def test_a_stalled_upload_is_dropped_and_frees_its_version(
    hub: RunningHub, my_mul_archive: bytes
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{hub.url}/api/models/acme/stalled/1"
    port = int(hub.url.rsplit(":", 1)[1])
    head = (
        "PUT /api/models/acme/stalled/1 HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {TOKEN}"
        f"\r\nContent-Length: {len(my_mul_archive)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=60) as stalled:
        stalled.sendall(head.encode() + my_mul_archive[: len(my_mul_archive) // 2])
        time.sleep(0.5)  # the server has taken the half body; the client now sends nothing
        probe = httpx.get(f"{hub.url}/api/models", timeout=60)
        assert probe.status_code == 200
        claimed = httpx.put(url, content=my_mul_archive, headers=auth, timeout=60)
        assert claimed.status_code == 409  # while the stalled upload still holds the version
        reply = b""
        while chunk := stalled.recv(65536):  # the hub drops it after IDLE_SECONDS
            reply += chunk
    assert _status(reply) == 408
    assert b"--upload-idle-timeout" in reply and f"{IDLE_SECONDS} seconds".encode() in reply
    published = httpx.put(url, content=my_mul_archive, headers=auth, timeout=120)
    assert published.status_code == 201, published.text
    assert hub.peak_rss_mib() < PEAK_RSS_MIB

    # A client that never stalls but trickles a byte at a time holds the claim no longer.
    with socket.create_connection(("127.0.0.1", port), timeout=60) as trickle:
        trickle.sendall(head.replace("stalled/1", "trickled/1").encode())
        started, reply = time.monotonic(), b""
        trickle.settimeout(IDLE_SECONDS / 3)
        for byte in my_mul_archive:
            try:
                trickle.sendall(bytes([byte]))
                reply = trickle.recv(65536)
            except TimeoutError:
                continue  # nothing to read yet: the hub is still listening
            except (BrokenPipeError, ConnectionResetError):
                break
            if reply:
                while chunk := trickle.recv(65536):
                    reply += chunk
                break
    assert _status(reply) == 408
    assert b"--upload-min-rate" in reply and f"{MIN_RATE} bytes a second".encode() in reply
    assert time.monotonic() - started < 4 * IDLE_SECONDS
    trickled = httpx.put(
        url.replace("stalled", "trickled"), content=my_mul_archive, headers=auth, timeout=120
    )
    assert trickled.status_code == 201, trickled.text

    # The inspector (TensorFlow, a process of its own) read that upload, then goes away
    # once idle (--inspector-idle 2), so an idle hub holds no TensorFlow.
    assert _children(hub.process.pid), "the inspector should be up right after an upload"
    deadline = time.monotonic() + 60  # a hang guard
    while _children(hub.process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _children(hub.process.pid) == []


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (each thread lists the children it started)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # the thread ended meanwhile
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_probes_answer_while_many_uploads_stall(hub: RunningHub) -> None:
    port = int(hub.url.rsplit(":", 1)[1])
    head = (
        "PUT /api/models/acme/slow-{}/1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
        f"{TOKEN}\r\nContent-Length: 100000\r\n\r\n"
    )
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(20)]
    try:
        for i, conn in enumerate(sockets):
            conn.sendall(head.format(i).encode() + b"\x1f\x8b" + bytes(1000))
        answered: list[int] = []
        thread = threading.Thread(
            target=lambda: answered.append(httpx.get(f"{hub.url}/api/models").status_code)
        )
        thread.start()
        thread.join(timeout=60)
        assert answered == [200]
    finally:
        for conn in sockets:
            conn.close()


def _start_upload(hub: RunningHub, path: str, body: bytes) -> socket.socket:
    """A PUT of ``body`` with only its first half sent: an upload in flight."""
    port = int(hub.url.rsplit(":", 1)[1])
    conn = socket.create_connection(("127.0.0.1", port), timeout=120)
    head = (
        f"PUT /api/models/{path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}"
        f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    conn.sendall(head.encode() + body[: len(body) // 2])
    return conn


def _session_upload(root: Path, pid: int) -> Path:
    """The scratch file of the upload in flight on the server ``pid``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list((root / ".incoming").glob(f"session-{pid}-*/upload-*"))
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no upload in flight for server {pid}")


def test_crashed_uploads_are_reaped_at_start_and_live_ones_kept_world_readable(
    tmp_path: Path, my_mul_archive: bytes
) -> None:
    root = tmp_path / "root"
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{TOKEN}\n")
    with running_hub(root, tmp_path, tokens_file=tokens, umask=0o077) as live:
        in_flight = _start_upload(live, "acme/live/1", my_mul_archive)
        live_file = _session_upload(root, live.process.pid)

        with (
            running_hub(root, tmp_path, tokens_file=tokens) as doomed,
            _start_upload(doomed, "acme/doomed/1", my_mul_archive),
        ):
            doomed_file = _session_upload(root, doomed.process.pid)
            doomed.process.kill()  # SIGKILL mid-upload: nothing of its own cleans up
            doomed.process.wait()
        assert doomed_file.exists()

        with running_hub(root, tmp_path, tokens_file=tokens):
            pass  # a server starting on the same root reaps what the dead one left...
        assert not doomed_file.parent.exists()
        assert live_file.exists()  # ...and leaves the live server's upload alone

        with in_flight:
            in_flight.sendall(my_mul_archive[len(my_mul_archive) // 2 :])
            reply = b""
            while chunk := in_flight.recv(65536):
                reply += chunk
        assert _status(reply) == 201, reply

    # Published under umask 077, yet readable by a web server or another user.
    version = root / "acme" / "live" / "1"
    for path in [root / "acme", root / "acme" / "live", *version.rglob("*"), version]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))


def test_the_readme_documents_every_limit_flag_of_serve() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "savedhub.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    limits = {f for f in re.findall(r"--[a-z-]+", shown) if re.search("max|timeout|idle|rate", f)}
    assert {
        "--max-upload",
        "--max-unpacked",
        "--upload-idle-timeout",
        "--upload-min-rate",
        "--inspector-idle",
    } <= limits
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert [flag for flag in sorted(limits) if f"`{flag}" not in readme] == []
    assert "SAVEDHUB_MAX_EXTRACT_MEMBERS" in readme


def _tar_of(*members: tuple[str, bytes, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type, info.size, info.linkname = kind, len(data), "a" if kind == b"2" else ""
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize(
    "members",
    [
        [("a", tarfile.REGTYPE, b"x"), ("a/b", tarfile.REGTYPE, b"y")],
        [("a", tarfile.DIRTYPE, b""), ("a", tarfile.REGTYPE, b"y")],
        [("b", tarfile.SYMTYPE, b""), ("a", tarfile.SYMTYPE, b""), ("a/c", tarfile.REGTYPE, b"")],
    ],
    ids=["file-under-a-file", "file-over-a-folder", "link-loop"],
)
def test_members_that_clash_are_refused_with_422_not_500(
    hub: RunningHub, members: list[tuple[str, bytes, bytes]]
) -> None:
    answer = _attack(hub, "acme/clash/1", _tar_of(*members))
    assert answer.status_code == 422
    assert "clashes with an earlier member" in answer.json()["error"]
    _nothing_kept(hub, "acme", "clash")
