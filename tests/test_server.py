"""The hub server, driven as users drive it: ``savedhub serve`` in a subprocess on
127.0.0.1, models published with ``push``, loaded by URL with the client (and with
``tensorflow_hub`` itself), and the protocol's failure answers checked one by one."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import models
import savedhub
from hubserver import RunningHub, running_hub
from savedhub.errors import PublishError
from savedhub.publish.pack import pack
from savedhub.publish.push import push

ALL = "tok-all-publishers"
ACME_ONLY = "tok-acme-only"
MAX_UPLOAD = 4 * 2**20
HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    base = tmp_path_factory.mktemp("hub")
    tokens = base / "tokens.txt"
    tokens.write_text(f"# token  publishers\n{ALL}\n{ACME_ONLY} acme\n")
    with running_hub(base / "root", base, tokens_file=tokens, max_upload=MAX_UPLOAD) as running:
        yield running


@pytest.fixture(scope="module")
def my_mul_archive(my_mul_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(pack(my_mul_path, tmp_path_factory.mktemp("packed") / "my_mul.tar.gz").path)


@pytest.fixture(scope="module")
def big_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model whose archive spans several of the server's read chunks (random
    weights do not compress)."""
    import numpy as np
    import tensorflow as tf

    path = str(tmp_path_factory.mktemp("big") / "big_model")
    weights = np.random.default_rng(7).standard_normal(700_000).astype(np.float32)
    tf.saved_model.save(models.MyMulModel(tf.constant(weights)), path)
    return path


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _put(hub: RunningHub, path: str, body: bytes, token: str | None = ALL) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.put(f"{hub.url}/api/models/{path}", content=body, headers=headers, timeout=120)


def _raw_request(hub: RunningHub, request_line: str, headers: str = "", body: bytes = b"") -> int:
    """Send bytes exactly as written (no client-side path normalisation); return the status."""
    host, port = hub.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        head = f"{request_line}\r\nHost: {host}\r\n{headers}Content-Length: {len(body)}\r\n"
        conn.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_push_then_load_cold_then_cached(
    hub: RunningHub, my_mul_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{hub.url}/acme/mul/1"
    command = [sys.executable, "-m", "savedhub.cli", "push", my_mul_path, url, "--json"]
    pushed = subprocess.run(
        command, capture_output=True, text=True, env=dict(os.environ, SAVEDHUB_TOKEN=ALL)
    )
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["url"] == url

    obj = savedhub.load(url)  # cold: downloaded through the hub
    assert float(obj(3.0)) == 6.0
    monkeypatch.setenv("SAVEDHUB_OFFLINE", "1")  # cached: no network needed any more
    assert float(savedhub.load(url)(4.0)) == 8.0
    layer = savedhub.KerasLayer(url)
    assert float(layer(5.0)) == 10.0

    again = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    assert again.returncode == 3
    assert "401" in again.stderr and "--token" in again.stderr


def test_tensorflow_hub_itself_loads_from_the_hub(
    hub: RunningHub, my_mul_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow_hub

    push(my_mul_archive, f"{hub.url}/tfhub-compat/mul/1", token=ALL)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub-cache"))
    assert float(tensorflow_hub.load(f"{hub.url}/tfhub-compat/mul/1")(2.5)) == 5.0


def test_archive_headers_ranges_and_resume(hub: RunningHub, my_mul_archive: Path) -> None:
    push(my_mul_archive, f"{hub.url}/acme/ranges/1", token=ALL)
    url = f"{hub.url}/acme/ranges/1?tf-hub-format=compressed"
    expected = my_mul_archive.read_bytes()
    sha = hashlib.sha256(expected).hexdigest()

    full = httpx.get(url)
    assert full.status_code == 200 and full.content == expected
    assert full.headers["content-length"] == str(len(expected))
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["etag"] == f'"{sha}"'
    b64 = base64.b64encode(bytes.fromhex(sha)).decode()
    assert full.headers["repr-digest"] == f"sha-256=:{b64}:"
    assert full.headers["digest"] == f"sha-256={b64}"

    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(expected))

    # A download cut after 1000 bytes resumes where it stopped.
    with httpx.stream("GET", url) as cut:
        first = next(cut.iter_bytes(1000))[:1000]
    rest = httpx.get(
        url, headers={"Range": f"bytes={len(first)}-", "If-Range": full.headers["etag"]}
    )
    assert rest.status_code == 206
    assert (
        rest.headers["content-range"] == f"bytes {len(first)}-{len(expected) - 1}/{len(expected)}"
    )
    assert first + rest.content == expected
    assert rest.headers["repr-digest"] == full.headers["repr-digest"]

    # The archive changed (another ETag): the whole file, not a mismatched tail.
    stale = httpx.get(url, headers={"Range": "bytes=10-", "If-Range": '"0000"'})
    assert stale.status_code == 200 and stale.content == expected
    assert httpx.get(url, headers={"Range": "bytes=-10"}).content == expected[-10:]
    beyond = httpx.get(url, headers={"Range": f"bytes={len(expected)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(expected)}"
    assert httpx.get(url, headers={"If-None-Match": full.headers["etag"]}).status_code == 304


class CuttingProxy:
    """A loopback proxy in front of the hub that cuts the first archive download
    after ``cut_after`` bytes, and records every request head it forwards."""

    def __init__(self, upstream: str, cut_after: int) -> None:
        self.upstream_port = int(upstream.rsplit(":", 1)[1])
        self.cut_after = cut_after
        self.heads: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            text = head.decode("latin-1")
            self.heads.append(text)
            lines = [h for h in text.split("\r\n") if h and not h.lower().startswith("connection:")]
            upstream.sendall(("\r\n".join(lines) + "\r\nConnection: close\r\n\r\n").encode())
            first_archive = (
                "compressed" in lines[0]
                and sum("compressed" in h.split("\r\n")[0] for h in self.heads) == 1
            )
            sent = 0
            while chunk := upstream.recv(65536):
                if first_archive and sent + len(chunk) > self.cut_after:
                    client.sendall(chunk[: self.cut_after - sent])
                    return  # the connection drops mid-body
                client.sendall(chunk)
                sent += len(chunk)

    def close(self) -> None:
        self.listener.close()


def test_a_cut_download_resumes_with_range(hub: RunningHub, my_mul_archive: Path) -> None:
    push(my_mul_archive, f"{hub.url}/acme/cut/1", token=ALL)
    proxy = CuttingProxy(hub.url, cut_after=2000)
    try:
        assert float(savedhub.load(f"{proxy.url}/acme/cut/1")(3.0)) == 6.0
    finally:
        proxy.close()
    archive_requests = [h.lower() for h in proxy.heads if "compressed" in h.split("\r\n")[0]]
    assert len(archive_requests) == 2
    assert "range:" not in archive_requests[0]
    assert "range: bytes=" in archive_requests[1] and "if-range:" in archive_requests[1]


def test_archives_larger_than_a_read_chunk_stream_whole_and_in_ranges(
    hub: RunningHub, big_model_path: str
) -> None:
    result = push(big_model_path, f"{hub.url}/acme/big/1", token=ALL)
    url = f"{hub.url}/acme/big/1?tf-hub-format=compressed"
    assert result.size > 2 * 2**20 + 1000
    whole = httpx.get(url, timeout=60).content
    assert hashlib.sha256(whole).hexdigest() == result.sha256
    middle = httpx.get(url, headers={"Range": f"bytes={2**20 - 10}-{2 * 2**20 + 10}"})
    assert middle.status_code == 206 and middle.content == whole[2**20 - 10 : 2 * 2**20 + 11]

    with httpx.stream("GET", url) as abandoned:  # a client that goes away mid-download
        next(abandoned.iter_raw(65536))
    obj = savedhub.load(f"{hub.url}/acme/big")
    assert float(obj(1.0)[123]) == pytest.approx(float(obj.v.numpy()[123]))


def test_unversioned_url_redirects_to_the_latest_version(
    hub: RunningHub, my_mul_archive: Path
) -> None:
    for version in ("1", "2", "10"):
        push(my_mul_archive, f"{hub.url}/acme/versions/{version}", token=ALL)
    answer = httpx.get(f"{hub.url}/acme/versions?tf-hub-format=compressed")
    assert answer.status_code == 302
    assert answer.headers["location"] == f"{hub.url}/acme/versions/10?tf-hub-format=compressed"
    followed = httpx.get(f"{hub.url}/acme/versions?tf-hub-format=compressed", follow_redirects=True)
    assert followed.content == my_mul_archive.read_bytes()


def test_versions_are_immutable_and_one_concurrent_upload_wins(
    hub: RunningHub, my_mul_archive: Path
) -> None:
    push(my_mul_archive, f"{hub.url}/acme/immutable/1", token=ALL)
    with pytest.raises(PublishError) as again:
        push(my_mul_archive, f"{hub.url}/acme/immutable/1", token=ALL)
    assert again.value.status == 409 and "already exists" in str(again.value)

    outcomes: list[object] = []

    def race() -> None:
        try:
            outcomes.append(push(my_mul_archive, f"{hub.url}/acme/raced/1", token=ALL))
        except PublishError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(str, outcomes)).count("409") == 5
    assert httpx.get(f"{hub.url}/api/models/acme/raced").json()["latest"] == "1"


def test_tokens_are_required_and_checked_without_leaking(
    hub: RunningHub, my_mul_archive: Path
) -> None:
    push(my_mul_archive, f"{hub.url}/acme/secret/1", token=ALL)
    body = my_mul_archive.read_bytes()

    missing = _put(hub, "acme/secret/1", body, token=None)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    wrong_existing = _put(hub, "acme/secret/1", body, token="not-a-token")
    wrong_new = _put(hub, "acme/never-published/1", body, token="not-a-token")
    assert wrong_existing.status_code == wrong_new.status_code == 401
    assert wrong_existing.json() == wrong_new.json()  # says nothing about what exists
    assert "acme" not in wrong_existing.text

    forbidden = _put(hub, "other/model/1", body, token=ACME_ONLY)
    assert forbidden.status_code == 403
    assert _put(hub, "acme/by-acme-token/1", body, token=ACME_ONLY).status_code == 201
    with pytest.raises(PublishError) as refused:
        push(my_mul_archive, f"{hub.url}/other/model/1", token=ACME_ONLY)
    assert refused.value.status == 403


def test_uploads_over_the_cap_get_413(hub: RunningHub) -> None:
    too_big = b"\0" * (MAX_UPLOAD + 1)
    assert _put(hub, "acme/huge/1", too_big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while streaming
        for _ in range(MAX_UPLOAD // 65536 + 2):
            yield b"\0" * 65536

    streamed = httpx.put(
        f"{hub.url}/api/models/acme/huge/2",
        content=chunks(),
        headers={"Authorization": f"Bearer {ALL}"},
    )
    assert streamed.status_code == 413
    assert httpx.get(f"{hub.url}/api/models/acme/huge").status_code == 404


def test_uploads_that_are_not_safe_models_are_refused(hub: RunningHub, tmp_path: Path) -> None:
    import tensorflow as tf

    garbage = _put(hub, "acme/bad/1", b"this is not an archive")
    assert garbage.status_code == 422
    escaping = _put(hub, "acme/bad/2", _tar({"../../escaped.txt": b"owned"}))
    assert escaping.status_code == 422 and "escaped.txt" in escaping.text
    assert not (hub.root.parent / "escaped.txt").exists()
    no_model = _put(hub, "acme/bad/3", _tar({"notes.txt": b"hello"}))
    assert no_model.status_code == 422 and "saved_model.pb" in no_model.json()["error"]
    nested = _put(hub, "acme/bad/5", _tar({"my_model/saved_model.pb": b"x"}))
    assert nested.status_code == 422 and "'my_model'" in nested.json()["error"]
    assert str(hub.root) not in nested.text  # the server's paths stay private
    unreadable = _put(hub, "acme/bad/6", _tar({"saved_model.pb": b"not a protobuf"}))
    assert unreadable.status_code == 422 and "acme/bad/6" in unreadable.json()["error"]
    assert str(hub.root) not in unreadable.text

    tf.saved_model.save(tf.Module(), str(tmp_path / "nothing_to_call"))
    archive = pack(tmp_path / "nothing_to_call", tmp_path / "nothing.tar.gz", force=True)
    lint_error = _put(hub, "acme/bad/4", Path(archive.path).read_bytes())
    assert lint_error.status_code == 422
    assert "no-entry-point" in [f["code"] for f in lint_error.json()["findings"]]
    assert httpx.get(f"{hub.url}/api/models/acme/bad").status_code == 404
    assert not list((hub.root / ".incoming").iterdir())  # nothing left behind


def test_unknown_names_get_404_naming_what_exists(hub: RunningHub, my_mul_archive: Path) -> None:
    push(my_mul_archive, f"{hub.url}/known/model/3", token=ALL)
    versions = httpx.get(f"{hub.url}/known/model/4?tf-hub-format=compressed")
    assert versions.status_code == 404
    assert versions.json()["available"] == ["known/model/3"]
    models = httpx.get(f"{hub.url}/known/nope?tf-hub-format=compressed")
    assert models.status_code == 404 and models.json()["available"] == ["known/model"]
    publishers = httpx.get(f"{hub.url}/nobody/nope/1")
    assert publishers.status_code == 404 and "known" in publishers.json()["available"]
    page = httpx.get(f"{hub.url}/known/nope", headers=HTML)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert 'href="/known/model"' in page.text


def test_path_traversal_names_never_leave_the_root(hub: RunningHub, my_mul_archive: Path) -> None:
    outside = hub.root.parent
    before = sorted(p.name for p in outside.iterdir())
    body = my_mul_archive.read_bytes()
    auth = f"Authorization: Bearer {ALL}\r\n"
    for target in (
        "/../../etc/passwd",
        "/..%2F..%2Fetc/passwd/1?tf-hub-format=compressed",
        "/acme/..%2F..%2F..%2Fetc/passwd?tf-hub-format=compressed",
        "/%2e%2e/%2e%2e/etc?tf-hub-format=compressed",
        "/acme/mul/..?tf-hub-format=compressed",
        "/api/models/acme/..%2F..%2F..",
    ):
        assert _raw_request(hub, f"GET {target} HTTP/1.1") in (400, 404), target
    for target in (
        "/api/models/..%2F..%2Fescape/model/1",
        "/api/models/acme/..%2F..%2Fescape/1",
        "/api/models/acme/model/..",
        "/api/models/acme/.hidden/1",
        "/api/models/api/model/1",
        "/api/models/acme/model/%2e%2e",
    ):
        assert _raw_request(hub, f"PUT {target} HTTP/1.1", auth, body) in (400, 404, 405), target
    assert sorted(p.name for p in outside.iterdir()) == before
    assert not any(p.name in ("escape", ".hidden") for p in hub.root.rglob("*"))


def test_json_api_lists_models_and_versions(hub: RunningHub, my_mul_archive: Path) -> None:
    push(my_mul_archive, f"{hub.url}/jsonapi/mul/1", token=ALL)
    push(my_mul_archive, f"{hub.url}/jsonapi/mul/2", token=ALL)
    listed = httpx.get(f"{hub.url}/api/models", params={"q": "jsonapi"}).json()["models"]
    assert [(m["name"], m["latest"], m["versions"]) for m in listed] == [
        ("jsonapi/mul", "2", ["1", "2"])
    ]
    detail = httpx.get(f"{hub.url}/api/models/jsonapi/mul").json()
    assert [v["version"] for v in detail["versions"]] == ["1", "2"]
    meta = detail["versions"][1]["metadata"]
    assert meta["archive"]["sha256"] == hashlib.sha256(my_mul_archive.read_bytes()).hexdigest()
    assert meta["info"]["variables"] == 1 and meta["created"]
    stored = json.loads((hub.root / "jsonapi/mul/2/metadata.json").read_text())
    assert stored == meta
    digest_file = (hub.root / "jsonapi/mul/2/model.tar.gz.sha256").read_text()
    assert digest_file.split()[0] == meta["archive"]["sha256"]

    one = httpx.get(f"{hub.url}/api/models/jsonapi/mul/1").json()
    assert one["url"] == f"{hub.url}/jsonapi/mul/1" and one["metadata"]["version"] == "1"
    assert httpx.get(f"{hub.url}/jsonapi/mul/2").json()["metadata"] == meta  # no Accept: JSON
    by_publisher = httpx.get(f"{hub.url}/jsonapi").json()["models"]
    assert [m["name"] for m in by_publisher] == ["jsonapi/mul"]
    assert "Models by jsonapi" in httpx.get(f"{hub.url}/jsonapi", headers=HTML).text


def test_model_page_shows_readme_signatures_and_snippet(
    hub: RunningHub, text_embedding_path: str, tmp_path: Path
) -> None:
    import shutil

    model = tmp_path / "documented"
    shutil.copytree(text_embedding_path, model)
    (model / "README.md").write_text(
        "# Text embedding\n\nEmbeds **short** sentences. <script>alert(1)</script>\n"
    )
    push(model, f"{hub.url}/docs/embedding/1", token=ALL)
    page = httpx.get(f"{hub.url}/docs/embedding", headers=HTML)
    assert page.status_code == 200
    assert f'hub.KerasLayer("{hub.url}/docs/embedding/1")' in page.text
    assert "<strong>short</strong>" in page.text
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # no scripts at all
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "serving_default" in page.text and "token_count" in page.text
    found = httpx.get(f"{hub.url}/", params={"q": "embedd"}, headers=HTML).text
    assert "docs/<strong>embedding</strong>" in found and "Embeds <strong>short</strong>" in found
    assert "acme/<strong>mul</strong>" not in found


def test_an_empty_hub_starts_and_says_how_to_publish(tmp_path: Path) -> None:
    with running_hub(tmp_path / "empty-root", tmp_path) as empty:
        assert "savedhub push" in empty.output()
        assert "Uploads are off" in empty.output()
        page = httpx.get(empty.url, headers=HTML)
        assert "no models yet" in page.text and "savedhub push" in page.text
        assert httpx.get(f"{empty.url}/api/models").json() == {"models": []}
        refused = _put(empty, "acme/mul/1", b"x")
        assert refused.status_code == 403 and "tokens" in refused.json()["error"]


def test_the_hub_process_never_imports_tensorflow(hub: RunningHub, my_mul_archive: Path) -> None:
    """Uploads are read by a worker process; the server itself stays small."""
    push(my_mul_archive, f"{hub.url}/acme/light/1", token=ALL)
    for path in ("/", "/acme/light", "/acme/light/1?tf-hub-format=compressed", "/nope/x"):
        httpx.get(hub.url + path, headers=HTML)
    pid = hub.process.pid
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "_pywrap_tensorflow" not in maps and "libtensorflow" not in maps
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss_mib = int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024
    assert rss_mib < 250, f"the hub uses {rss_mib:.0f} MiB"
