"""The hub's storage backends: a local folder and fsspec (its memory filesystem here),
each publishing atomically with exactly one winner, and a whole hub running on fsspec."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import savedhub
from savedhub.errors import PublishError
from savedhub.publish.pack import pack
from savedhub.publish.push import push
from savedhub.server import FsspecStorage, LocalStorage, Storage, create_app, serving
from savedhub.server.storage import VersionExistsError


def _staged(tmp: Path, name: str, content: bytes) -> Path:
    folder = tmp / name
    (folder / "saved_model").mkdir(parents=True)
    (folder / "saved_model" / "saved_model.pb").write_bytes(content)
    (folder / "model.tar.gz").write_bytes(content * 3)
    (folder / "metadata.json").write_text(json.dumps({"name": name}))
    return folder


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "root")
    return FsspecStorage(f"memory://hub-{uuid.uuid4().hex}")


def test_publish_is_visible_whole_and_only_once(storage: Storage, tmp_path: Path) -> None:
    scratch = storage.scratch_dir() or tmp_path
    storage.publish(_staged(scratch, "first", b"one"), "acme", "mul", "1")
    assert storage.list_dirs() == ["acme"]
    assert storage.list_dirs("acme", "mul") == ["1"]
    assert json.loads(storage.read_bytes("acme", "mul", "1", "metadata.json") or b"") == {
        "name": "first"
    }
    assert storage.size("acme", "mul", "1", "model.tar.gz") == 9
    with storage.open("acme", "mul", "1", "model.tar.gz") as f:
        f.seek(3)
        assert f.read(3) == b"one"
    assert storage.read_bytes("acme", "mul", "2", "metadata.json") is None
    assert storage.size("acme", "nope", "1", "model.tar.gz") is None

    with pytest.raises(VersionExistsError):
        storage.publish(_staged(scratch, "second", b"two"), "acme", "mul", "1")
    assert b"first" in (storage.read_bytes("acme", "mul", "1", "metadata.json") or b"")


def test_concurrent_publishes_of_one_version_have_one_winner(
    storage: Storage, tmp_path: Path
) -> None:
    scratch = storage.scratch_dir() or tmp_path
    folders = [_staged(scratch, f"racer{i}", str(i).encode()) for i in range(8)]
    results: list[str] = []
    start = threading.Barrier(len(folders))

    def publish(folder: Path) -> None:
        start.wait()
        try:
            storage.publish(folder, "acme", "raced", "1")
            results.append(folder.name)
        except VersionExistsError:
            results.append("exists")

    threads = [threading.Thread(target=publish, args=(f,)) for f in folders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r in results if r != "exists"]
    assert len(winners) == 1 and len(results) == 8
    stored = storage.read_bytes("acme", "raced", "1", "metadata.json")
    assert json.loads(stored or b"") == {"name": winners[0]}


def test_storage_refuses_names_outside_the_root(storage: Storage) -> None:
    for bad in ("..", ".", "../x", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            storage.read_bytes("acme", bad, "1", "metadata.json")


def test_only_tf_readable_storage_offers_in_place_folders(tmp_path: Path) -> None:
    assert FsspecStorage("memory://somewhere").folder_url("a", "b", "1", "saved_model") is None
    local = LocalStorage(tmp_path)
    assert local.folder_url("a", "b", "1", "saved_model") is None  # not there
    (tmp_path / "a" / "b" / "1" / "saved_model").mkdir(parents=True)
    # Never the server's own path: the hub lists and serves the files itself instead.
    assert local.folder_url("a", "b", "1", "saved_model") is None


@pytest.fixture
def memory_hub() -> Iterator[tuple[str, FsspecStorage]]:
    """A hub whose models live only in fsspec's memory filesystem, served by uvicorn
    in this process (the memory filesystem is per process)."""
    storage = FsspecStorage(f"memory://hub-{uuid.uuid4().hex}")
    with serving(create_app(storage, tokens=["mem-token"])) as url:
        yield url, storage


def test_a_hub_on_fsspec_storage_publishes_and_serves(
    memory_hub: tuple[str, FsspecStorage],
    my_mul_path: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, storage = memory_hub
    archive = pack(my_mul_path, tmp_path / "mul.tar.gz")
    result = push(archive.path, f"{url}/acme/mul/1", token="mem-token")
    assert result.sha256 == archive.sha256
    assert storage.fs.exists(f"{storage.base}/acme/mul/1/saved_model/saved_model.pb")

    body = httpx.get(f"{url}/acme/mul/1?tf-hub-format=compressed")
    assert hashlib.sha256(body.content).hexdigest() == archive.sha256
    tail = httpx.get(f"{url}/acme/mul/1?tf-hub-format=compressed", headers={"Range": "bytes=50-"})
    assert tail.status_code == 206 and tail.content == body.content[50:]
    assert float(savedhub.load(f"{url}/acme/mul")(1.5)) == 3.0

    listing = httpx.get(f"{url}/acme/mul/1?tf-hub-format=uncompressed")
    assert listing.status_code == 303 and listing.text == f"{url}/acme/mul/1/files"
    files = {f["path"]: f for f in httpx.get(listing.text).json()["files"]}
    assert "saved_model.pb" in files
    served = httpx.get(files["saved_model.pb"]["url"]).content
    assert len(served) == files["saved_model.pb"]["size"]
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "UNCOMPRESSED")
    assert float(savedhub.load(f"{url}/acme/mul/1")(2.0)) == 4.0
    with pytest.raises(PublishError) as again:
        push(archive.path, f"{url}/acme/mul/1", token="mem-token")
    assert again.value.status == 409


def test_uploads_left_by_a_killed_server_are_reaped(tmp_path: Path) -> None:
    incoming = tmp_path / "root" / ".incoming"
    (incoming / "version-old").mkdir(parents=True)
    (incoming / "version-old" / "model.tar.gz").write_bytes(b"half")
    (incoming / "upload-old.tar.gz").write_bytes(b"half")
    (incoming / "version-fresh").mkdir()
    two_days_ago = time.time() - 2 * 86400
    for name in ("version-old", "upload-old.tar.gz"):
        os.utime(incoming / name, (two_days_ago, two_days_ago))

    assert LocalStorage(tmp_path / "root").scratch_dir() == incoming
    assert sorted(p.name for p in incoming.iterdir()) == ["version-fresh"]
