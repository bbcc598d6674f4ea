"""The hub on S3, behind two replicas: moto's S3 server on 127.0.0.1 holds all state, and two
``savedhub serve s3://...`` processes (B with ``--redirect-downloads``) serve it. Models are
pushed through one replica and loaded through the other, pushes of one version race across
both, a replica is SIGKILLed mid-upload, a cut download resumes through a redirect, and a
catalog of 10,000 models costs a page no listing of the bucket."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import savedhub
from hubserver import RunningHub, running_hub
from s3server import S3Endpoint, moto_endpoint
from savedhub._wire import ArchiveRecord, VersionRecord
from savedhub.errors import PublishError
from savedhub.publish.pack import pack
from savedhub.publish.push import push
from savedhub.transfer import Download
from savedhub.transfer._partial import PartialState, write_state

pytest.importorskip("boto3")

BUCKET = "savedhub-test"
ROOT = f"s3://{BUCKET}/hub"
TOKEN = "s3-token"
REFRESH = 1.0  # --catalog-refresh: the most a replica's lists lag another's publish
DEBRIS_AGE = 3.0  # --debris-age: abandoned uploads are collected this long after their end


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    with moto_endpoint(tmp_path_factory.mktemp("moto")) as endpoint:
        endpoint.client().create_bucket(Bucket=BUCKET)
        yield endpoint


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    path.write_text(f"{TOKEN}\n")
    return path


def _replica(
    s3: S3Endpoint, tokens: Path, log_dir: Path, *flags: str
) -> contextlib.AbstractContextManager[RunningHub]:
    refresh = ["--catalog-refresh", str(REFRESH), "--debris-age", str(DEBRIS_AGE)]
    return running_hub(ROOT, log_dir, tokens, extra_args=[*refresh, *flags], env=s3.env)


@pytest.fixture(scope="module")
def archive(my_mul_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(pack(my_mul_path, tmp_path_factory.mktemp("packed") / "my_mul.tar.gz").path)


@pytest.fixture(scope="module")
def replicas(
    s3: S3Endpoint, tokens: Path, archive: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningHub, RunningHub]]:
    """Replica A, and B with --redirect-downloads, started side by side; each has published
    one version (acme/mul/1 through A, acme/ranges/1 through B), which also starts the
    upload inspector of each (TensorFlow) at the same time rather than one after the other."""
    logs = tmp_path_factory.mktemp("replicas")
    managers = [_replica(s3, tokens, logs), _replica(s3, tokens, logs, "--redirect-downloads")]
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(2) as pool:
        entered = [pool.submit(m.__enter__) for m in managers]
        for manager, future in zip(managers, entered, strict=True):
            if future.exception() is None:
                stack.push(manager)
        a, b = (future.result() for future in entered)
        first = [f"{a.url}/acme/mul/1", f"{b.url}/acme/ranges/1"]
        list(pool.map(lambda url: push(archive, url, token=TOKEN), first))
        yield a, b


def _keys(s3: S3Endpoint, prefix: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def _multiparts(s3: S3Endpoint, prefix: str) -> list[str]:
    listed = s3.client().list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
    return [u["Key"] for u in listed.get("Uploads", [])]


def _markers(s3: S3Endpoint) -> list[str]:
    return _keys(s3, "hub/.savedhub/uploads/")


def test_pushed_through_one_replica_loads_through_the_other(
    replicas: tuple[RunningHub, RunningHub],
    archive: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = replicas
    push(archive, f"{a.url}/acme/mul/2", token=TOKEN)
    time.sleep(REFRESH)  # the bound this test states for B's lists
    listed = {m["name"]: m for m in httpx.get(f"{b.url}/api/models").json()["models"]}
    assert listed["acme/mul"]["latest"] == "2"

    url = f"{b.url}/acme/mul/1"  # B redirects downloads to the store
    assert float(savedhub.load(url)(3.0)) == 6.0
    monkeypatch.setenv("SAVEDHUB_OFFLINE", "1")  # now from the cache, no request at all
    assert float(savedhub.load(url)(4.0)) == 8.0
    assert float(savedhub.KerasLayer(url)(5.0)) == 10.0
    monkeypatch.delenv("SAVEDHUB_OFFLINE")
    assert float(savedhub.load(f"{a.url}/acme/mul")(1.5)) == 3.0  # A streams it itself

    import tensorflow_hub

    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub-cache"))
    assert float(tensorflow_hub.load(url)(2.5)) == 5.0
    assert float(tensorflow_hub.KerasLayer(f"{a.url}/acme/mul/1")(2.0)) == 4.0


def test_downloads_keep_the_protocol_proxied_and_redirected(
    replicas: tuple[RunningHub, RunningHub], archive: Path, s3: S3Endpoint
) -> None:
    a, b = replicas  # acme/ranges/1 was published through B
    data = archive.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    proxied = f"{a.url}/acme/ranges/1?tf-hub-format=compressed"
    whole = httpx.get(proxied)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-length"] == str(len(data))
    assert whole.headers["etag"] == f'"{sha}"' and "sha-256=:" in whole.headers["repr-digest"]
    tail = httpx.get(proxied, headers={"Range": "bytes=100-", "If-Range": f'"{sha}"'})
    assert tail.status_code == 206 and tail.content == data[100:]
    assert tail.headers["content-range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    stale = httpx.get(proxied, headers={"Range": "bytes=100-", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data

    redirected = f"{b.url}/acme/ranges/1?tf-hub-format=compressed"
    hop = httpx.get(redirected)
    assert hop.status_code == 307 and hop.headers["location"].startswith(s3.url)
    assert hop.headers["repr-digest"] == whole.headers["repr-digest"]
    assert hop.headers["cache-control"] == "no-store"
    followed = httpx.get(redirected, headers={"Range": "bytes=100-"}, follow_redirects=True)
    assert followed.status_code == 206 and followed.content == data[100:]

    folder = httpx.get(f"{a.url}/acme/ranges/1?tf-hub-format=uncompressed")
    assert folder.status_code == 303
    assert folder.text.startswith(f"{ROOT}/acme/ranges/1/.")
    assert folder.text.endswith("/saved_model")
    files = {f["path"]: f for f in httpx.get(f"{a.url}/acme/ranges/1/files").json()["files"]}
    pb = httpx.get(files["saved_model.pb"]["url"])
    assert pb.status_code == 200 and len(pb.content) == files["saved_model.pb"]["size"]
    health = httpx.get(f"{a.url}/healthz")
    assert health.status_code == 200 and health.json()["storage"] == "reachable"
    assert '"GET /acme/ranges/1?tf-hub-format=compressed HTTP/1.1" 307' in b.output()


def test_a_cut_download_resumes_through_the_redirect(
    replicas: tuple[RunningHub, RunningHub], archive: Path, tmp_path: Path
) -> None:
    a, b = replicas
    push(archive, f"{a.url}/acme/resumed/1", token=TOKEN)
    data = archive.read_bytes()
    url = f"{b.url}/acme/resumed/1?tf-hub-format=compressed"
    store_etag = httpx.head(url, follow_redirects=True).headers["etag"]
    half = len(data) // 2
    partial = tmp_path / "archive.partial"  # what a download cut at half-way leaves
    partial.write_bytes(data[:half])
    write_state(partial, PartialState(url, store_etag, None, len(data), None))
    with Download(url, partial) as body:
        info = body.open()
        assert info.resumed_from == half and info.url.startswith("http") and info.url != url
        assembled = body.read()  # the held half from disk, the rest from the store
        digest = body.finish()  # checked against the Repr-Digest of the hub's 307
    assert assembled == data and digest == hashlib.sha256(data).hexdigest()
    assert info.sha256 == digest


def test_racing_pushes_of_one_version_have_one_winner(
    replicas: tuple[RunningHub, RunningHub], archive: Path, s3: S3Endpoint
) -> None:
    start = threading.Barrier(10)
    statuses: list[int] = []

    def race(hub: RunningHub) -> None:
        start.wait()
        try:
            push(archive, f"{hub.url}/acme/raced/1", token=TOKEN)
            statuses.append(201)
        except PublishError as exc:
            statuses.append(exc.status or 0)

    threads = [threading.Thread(target=race, args=(replicas[i % 2],)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(statuses) == [201] + [409] * 9
    assert float(savedhub.load(f"{replicas[1].url}/acme/raced/1")(2.0)) == 4.0
    # The losers took their objects with them: one upload's folder, no multipart, no marker.
    folders = {k.split("/")[4] for k in _keys(s3, "hub/acme/raced/1/") if k.count("/") > 4}
    assert len(folders) == 1
    assert _multiparts(s3, "hub/acme/raced/") == []
    assert not [
        m
        for m in _markers(s3)
        if "raced" in s3.client().get_object(Bucket=BUCKET, Key=m)["Body"].read().decode()
    ]


def _slow_body(sent_first_part: threading.Event, release: threading.Event) -> Iterator[bytes]:
    """A gzip-looking archive that sends 9 MiB (more than one multipart part), then waits."""
    yield b"\x1f\x8b\x08\x00" + os.urandom(2**20 - 4)
    for _ in range(8):
        yield os.urandom(2**20)
    sent_first_part.set()
    release.wait(60)
    yield b""


def test_a_replica_killed_mid_upload_leaves_nothing_visible(
    replicas: tuple[RunningHub, RunningHub],
    archive: Path,
    s3: S3Endpoint,
    tokens: Path,
    tmp_path: Path,
) -> None:
    a, b = replicas
    sent, release = threading.Event(), threading.Event()
    with _replica(s3, tokens, tmp_path) as doomed:
        uploader = threading.Thread(
            target=lambda: _ignore_errors(
                lambda: httpx.put(
                    f"{doomed.url}/api/models/acme/killed/1",
                    content=_slow_body(sent, release),
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=60,
                )
            )
        )
        uploader.start()
        assert sent.wait(60)
        deadline = time.monotonic() + 30
        while not _multiparts(s3, "hub/acme/killed/1/"):  # the archive streams to the store
            assert time.monotonic() < deadline, doomed.output()
            time.sleep(0.1)
        os.kill(doomed.process.pid, signal.SIGKILL)
        doomed.process.wait()
        # Its archive's parts and its marker are in the store, and nothing is visible.
        assert len(_multiparts(s3, "hub/acme/killed/1/")) == 1 and _markers(s3)
        assert httpx.get(f"{b.url}/acme/killed/1").status_code == 404
        release.set()
        uploader.join(60)

    push(archive, f"{b.url}/acme/killed/1", token=TOKEN)  # and the version is free
    assert float(savedhub.load(f"{a.url}/acme/killed/1")(1.0)) == 2.0

    deadline = time.monotonic() + 30  # a hang guard: collection is due after DEBRIS_AGE
    while _multiparts(s3, "hub/acme/killed/1/") or _markers(s3):
        assert time.monotonic() < deadline, f"{_multiparts(s3, 'hub/')} {_markers(s3)}"
        time.sleep(0.2)
    folders = {k.split("/")[4] for k in _keys(s3, "hub/acme/killed/1/") if k.count("/") > 4}
    assert len(folders) == 1  # only the published upload's objects are left


def _ignore_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server was killed: no answer is the point
        call()


def _card(template: VersionRecord, publisher: str, model: str) -> VersionRecord:
    return dataclasses.replace(
        template,
        publisher=publisher,
        model=model,
        summary=f"{publisher}'s {model}",
        archive=ArchiveRecord("model.tar.gz", hashlib.sha256(model.encode()).hexdigest(), 1234),
    )


def test_pages_of_10000_models_never_list_the_bucket(s3: S3Endpoint, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from savedhub.server import create_app
    from savedhub.server.s3 import S3Storage
    from savedhub.server.s3index import _document

    root = f"s3://{BUCKET}/many"
    template = VersionRecord("p", "m", "1", ArchiveRecord("model.tar.gz", "0" * 64, 1))
    cards = [_card(template, f"pub-{i % 100}", f"model-{i}") for i in range(10_000)]
    replica_a = S3Storage(root, client=s3.client(), catalog_refresh=REFRESH)
    replica_a.index._put(_document(cards), {"IfNoneMatch": "*"})  # as 10,000 publishes leave it
    replica_b = S3Storage(root, client=s3.client(), catalog_refresh=REFRESH)
    client = TestClient(create_app(replica_b), base_url="http://127.0.0.1")
    html = {"Accept": "text/html"}

    for path, expected in [
        ("/", "page 1 of 100"),
        ("/?page=100", "model-9999"),
        ("/?q=model-4242", "model-4242"),
        ("/pub-7", "model-507"),
        ("/api/models?q=model-123", "model-1234"),
    ]:
        replica_b.requests.clear()
        page = client.get(path, headers=html)
        assert page.status_code == 200 and expected in page.text
        # At most the one conditional GET of the index: never a listing of the bucket.
        assert sum(replica_b.requests.values()) <= 1, replica_b.requests
        assert set(replica_b.requests) <= {"GetObject"}

    staged = tmp_path / "staged"  # one more model, published through replica A
    (staged / "saved_model").mkdir(parents=True)
    (staged / "saved_model" / "saved_model.pb").write_bytes(b"graph")
    (staged / "model.tar.gz").write_bytes(b"archive")
    new = _card(template, "late", "arrival")
    (staged / "metadata.json").write_text(json.dumps(new.to_json()))
    replica_a.publish(staged, "late", "arrival", "1")
    time.sleep(REFRESH)  # B trusts its copy of the index for REFRESH seconds at most
    assert "/late/arrival" in client.get("/?q=arrival", headers=html).text
    assert len(client.get("/api/models").json()["models"]) == 10_001


def test_healthz_says_when_the_store_is_unreachable(s3: S3Endpoint, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from savedhub.server import create_app
    from savedhub.server.s3 import S3Storage

    gone = S3Storage("s3://no-such-bucket/hub", client=s3.client())
    client = TestClient(create_app(gone, tokens=[TOKEN]), base_url="http://127.0.0.1")
    answer = client.get("/healthz")
    assert answer.status_code == 503 and "no-such-bucket" in answer.json()["storage"]
    pushed = client.put(
        "/api/models/acme/mul/1",
        content=b"\x1f\x8b" + bytes(1000),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert pushed.status_code == 503  # not a 500, and the store's words stay in the log
    assert "storage failed" in pushed.json()["error"] and "bucket" not in pushed.json()["error"]
    local = TestClient(create_app(tmp_path), base_url="http://127.0.0.1").get("/healthz")
    assert local.status_code == 200


def test_workers_serve_one_port_from_several_processes(tmp_path: Path) -> None:
    with running_hub(tmp_path / "root", tmp_path, extra_args=["--workers", "2"]) as hub:
        deadline = time.monotonic() + 60
        while len(_children(hub.process.pid)) < 2:  # uvicorn's supervisor and its workers
            assert time.monotonic() < deadline, hub.output()
            time.sleep(0.1)
        assert {httpx.get(f"{hub.url}/healthz").status_code for _ in range(4)} == {200}
        line = next(x for x in hub.output().splitlines() if '"GET /healthz HTTP/1.1"' in x)
        # The Combined Log Format: client, identity, user, [time], "request", status, bytes.
        assert re.match(r'127\.0\.0\.1 - - \[[^]]+\] "GET /healthz HTTP/1.1" 200 \d+ "-" ', line)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_the_local_backend_never_imports_boto3(tmp_path: Path) -> None:
    code = (
        "import sys, savedhub\n"
        "from savedhub.server import create_app\n"
        f"create_app({str(tmp_path)!r}, tokens=['t'])\n"
        "assert not {'boto3', 'botocore'} & set(sys.modules), 'boto3 was imported'\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
