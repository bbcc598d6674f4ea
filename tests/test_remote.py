"""Remote handles end to end: a real hub on 127.0.0.1, resolved and loaded the user's way."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import savedhub as hub
from archives import file_member, link_member, pack_folder, tar_of
from httpserver import HubServer, Resource
from savedhub import cache

MODEL = "/google/my_mul/1"
COMPRESSED = "tf-hub-format=compressed"


@pytest.fixture(scope="module")
def my_mul_archive(my_mul_path: str) -> bytes:
    return pack_folder(my_mul_path)


def _cache_root() -> Path:
    return Path(os.environ["SAVEDHUB_CACHE_DIR"])


def _entry_files() -> list[str]:
    root = _cache_root()
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _assert_multiplies(path: str) -> None:
    obj = hub.load(path)
    np.testing.assert_allclose(obj(tf.constant([10.0, 20.0])).numpy(), [20.0, 40.0])


def test_hosting_protocol_downloads_once_then_serves_from_cache(
    hub_server: HubServer, my_mul_archive: bytes
) -> None:
    hub_server.add_model(MODEL, my_mul_archive, digest="right")
    handle = hub_server.url(MODEL)
    path = hub.resolve(handle)
    assert Path(path).parent == _cache_root()
    assert Path(path).name == hashlib.sha1(handle.encode()).hexdigest()
    assert hub_server.count(MODEL, COMPRESSED) == 1
    assert hub.resolve(handle) == path
    _assert_multiplies(handle)
    assert len(hub_server.requests) == 1  # warm hits make no request at all


def test_archive_url_with_sha256_beside(hub_server: HubServer, my_mul_archive: bytes) -> None:
    hub_server.add_file("/files/my_mul.tar.gz", my_mul_archive)
    digest = hashlib.sha256(my_mul_archive).hexdigest()
    hub_server.add_file("/files/my_mul.tar.gz.sha256", f"{digest}  my_mul.tar.gz\n".encode())
    _assert_multiplies(hub_server.url("/files/my_mul.tar.gz"))
    assert hub_server.count("/files/my_mul.tar.gz") == 1
    assert hub_server.count("/files/my_mul.tar.gz.sha256") == 1


def test_an_endless_sha256_beside_is_read_only_up_to_its_bound(
    hub_server: HubServer, my_mul_archive: bytes
) -> None:
    # A hostile or broken server answers the small digest file with a huge body: the
    # client keeps what a digest needs and hangs up, instead of buffering it all.
    hub_server.add_file("/files/my_mul.tar.gz", my_mul_archive)
    digest = hashlib.sha256(my_mul_archive).hexdigest()
    padding = b" " * (48 << 20)
    hub_server.add_file("/files/my_mul.tar.gz.sha256", f"{digest}\n".encode() + padding)
    _assert_multiplies(hub_server.url("/files/my_mul.tar.gz"))
    [request] = hub_server.of("/files/my_mul.tar.gz.sha256")
    assert request.body_bytes < len(padding) // 2


def test_wrong_sha256_beside_leaves_the_cache_untouched(
    hub_server: HubServer, my_mul_archive: bytes
) -> None:
    hub_server.add_file("/files/my_mul.tar.gz", my_mul_archive)
    hub_server.add_file("/files/my_mul.tar.gz.sha256", b"0" * 64)
    with pytest.raises(hub.IntegrityError, match="does not match its SHA-256"):
        hub.resolve(hub_server.url("/files/my_mul.tar.gz"))
    assert not any(cache.list_entries())
    assert not any(p.name.endswith(".savedhub.json") for p in _cache_root().iterdir())


def test_wrong_digest_header_then_fixed_server(
    hub_server: HubServer, my_mul_archive: bytes
) -> None:
    resource = hub_server.add_model(MODEL, my_mul_archive, digest="wrong")
    with pytest.raises(hub.IntegrityError):
        hub.resolve(hub_server.url(MODEL))
    assert cache.list_entries() == []
    resource.digest = "right"
    _assert_multiplies(hub_server.url(MODEL))


def test_404_names_the_url_and_says_no_mirror(hub_server: HubServer) -> None:
    with pytest.raises(hub.ModelNotFoundError) as caught:
        hub.resolve(hub_server.url("/google/nothing/1"))
    message = str(caught.value)
    assert hub_server.url("/google/nothing/1?tf-hub-format=compressed") in message
    assert "404" in message and "No mirror rewrote it" in message
    assert hub_server.count("/google/nothing/1") == 1  # 4xx is not retried


def test_404_through_a_mirror_says_so(hub_server: HubServer) -> None:
    hub.set_mirrors({"https://tfhub.dev": hub_server.base})
    with pytest.raises(hub.ModelNotFoundError, match="rewrote it from https://tfhub.dev/x/y/1"):
        hub.resolve("https://tfhub.dev/x/y/1")


def test_mirror_serves_tfhub_handles_and_a_mirror_change_does_not_refetch(
    hub_server: HubServer, my_mul_archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.add_model(MODEL, my_mul_archive)
    monkeypatch.setenv("SAVEDHUB_MIRRORS", f"https://tfhub.dev={hub_server.base}")
    path = hub.resolve("https://tfhub.dev/google/my_mul/1")
    assert hub_server.count(MODEL, COMPRESSED) == 1
    monkeypatch.setenv("SAVEDHUB_MIRRORS", "https://tfhub.dev=http://127.0.0.1:9")
    assert hub.resolve("https://tfhub.dev/google/my_mul/1") == path
    _assert_multiplies("https://tfhub.dev/google/my_mul/1")
    assert len(hub_server.requests) == 1


def test_spellings_of_one_model_share_one_entry(
    hub_server: HubServer, my_mul_archive: bytes
) -> None:
    hub_server.add_model(MODEL, my_mul_archive)
    hub_server.add_model(
        "/kaggle/google/mymul/frameworks/TensorFlow2/variations/default/versions/1",
        my_mul_archive,
    )
    hub.set_mirrors(
        {
            "https://tfhub.dev": hub_server.base,
            "https://www.kaggle.com/models": hub_server.url("/kaggle"),
        }
    )
    tfhub = hub.resolve("https://tfhub.dev/google/my_mul/1")
    assert hub.resolve("https://hub.tensorflow.google.cn/google/my_mul/1/") == tfhub
    assert hub.resolve("http://TFHUB.dev/google/my_mul/1?tf-hub-format=compressed") == tfhub
    kaggle = hub.resolve(
        "https://www.kaggle.com/models/google/mymul/frameworks/TensorFlow2/variations/default/"
        "versions/1"
    )
    assert hub.resolve("https://kaggle.com/models/google/mymul/tensorFlow2/default/1") == kaggle
    assert len(hub_server.requests) == 2 and len(cache.list_entries()) == 2


def test_offline_loads_cached_and_refuses_the_rest(
    hub_server: HubServer, my_mul_archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.add_model(MODEL, my_mul_archive)
    path = hub.resolve(hub_server.url(MODEL))
    monkeypatch.setenv("SAVEDHUB_OFFLINE", "1")
    assert hub.resolve(hub_server.url(MODEL)) == path
    with pytest.raises(hub.NotCachedError, match="savedhub download") as caught:
        hub.resolve(hub_server.url("/google/other/1"))
    assert isinstance(caught.value, FileNotFoundError)
    (Path(path) / "saved_model.pb").unlink()
    with (
        pytest.warns(hub.CacheWarning),
        pytest.raises(hub.NotCachedError, match="is damaged .*saved_model.pb is missing"),
    ):
        hub.resolve(hub_server.url(MODEL))
    assert len(hub_server.requests) == 1


def test_uncompressed_format_reads_the_303_folder_in_place(
    hub_server: HubServer, my_mul_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.add(
        MODEL,
        Resource([(None, my_mul_path.encode())], status=303, content_type="text/plain"),
        query="tf-hub-format=uncompressed",
    )
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "UNCOMPRESSED")
    assert hub.resolve(hub_server.url(MODEL)) == my_mul_path
    _assert_multiplies(hub_server.url(MODEL))
    assert cache.list_entries() == []


def test_uncompressed_format_falls_back_to_a_cached_copy_when_the_hub_fails(
    hub_server: HubServer, my_mul_archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.add_model(MODEL, my_mul_archive)
    path = hub.resolve(hub_server.url(MODEL))
    hub_server.add(
        MODEL, Resource([(None, b"down")], fail_first=99), query="tf-hub-format=uncompressed"
    )
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "UNCOMPRESSED")
    monkeypatch.setenv("SAVEDHUB_HTTP_RETRIES", "1")
    with pytest.warns(hub.CacheWarning, match="using the cached copy"):
        assert hub.resolve(hub_server.url(MODEL)) == path


def test_html_where_an_archive_was_expected(hub_server: HubServer) -> None:
    hub_server.add_file(
        "/docs/my_mul/1", b"<!doctype html><title>docs</title>", content_type="text/html"
    )
    with pytest.raises(hub.NotAnArchiveError, match="HTML page") as caught:
        hub.resolve(hub_server.url("/docs/my_mul/1"))
    assert "tf-hub-format=compressed" in str(caught.value)
    assert cache.list_entries() == []


def test_body_that_is_not_an_archive(hub_server: HubServer) -> None:
    hub_server.add_file("/files/model.tar.gz", b"PK\x03\x04 a zip file" * 100, content_type="")
    with pytest.raises(hub.NotAnArchiveError, match="starts with b'PK"):
        hub.resolve(hub_server.url("/files/model.tar.gz"))


def test_hostile_archive_installs_nothing(hub_server: HubServer, tmp_path: Path) -> None:
    evil = tar_of(file_member("saved_model.pb", b"g"), link_member("variables", "/etc"))
    hub_server.add_model(MODEL, evil)
    with pytest.raises(hub.UnsafeArchiveError, match="variables"):
        hub.resolve(hub_server.url(MODEL))
    assert cache.list_entries() == []
    work = _cache_root() / ".savedhub-work"
    assert list(work.iterdir()) == []


def test_archive_with_a_top_folder_resolves_to_the_model(
    hub_server: HubServer, my_mul_path: str
) -> None:
    hub_server.add_model(MODEL, pack_folder(my_mul_path, top="my_mul"))
    path = hub.resolve(hub_server.url(MODEL))
    assert Path(path).name == "my_mul"
    _assert_multiplies(hub_server.url(MODEL))


def test_interrupted_transfer_resumes_within_one_load(
    hub_server: HubServer, my_mul_archive: bytes
) -> None:
    hub_server.add_model(MODEL, my_mul_archive, cut_at=len(my_mul_archive) // 2, fail_first=1)
    _assert_multiplies(hub_server.url(MODEL))
    statuses = [(r.status, r.range) for r in hub_server.of(MODEL)]
    assert statuses == [(500, None), (200, None), (206, f"bytes={len(my_mul_archive) // 2}-")]


def test_new_version_during_download_starts_over(hub_server: HubServer, my_mul_path: str) -> None:
    first = tar_of(file_member("saved_model.pb", os.urandom(200_000)))
    hub_server.add(
        MODEL,
        Resource([('"old"', first), ('"new"', pack_folder(my_mul_path))], cut_at=100_000),
        query=COMPRESSED,
    )
    _assert_multiplies(hub_server.url(MODEL))
    assert [r.status for r in hub_server.of(MODEL)] == [200, 200, 200]


def test_a_model_that_keeps_changing_gives_up_after_one_restart(hub_server: HubServer) -> None:
    versions = [
        (f'"v{i}"', tar_of(file_member("saved_model.pb", os.urandom(200_000)))) for i in range(4)
    ]
    hub_server.add(MODEL, Resource(versions, cut_at=100_000, cut_times=4), query=COMPRESSED)
    with pytest.raises(hub.TransferError, match="changed on the server during two downloads"):
        hub.resolve(hub_server.url(MODEL))
    assert hub_server.count(MODEL) == 4
    assert cache.list_entries() == []


def test_server_errors_exhaust_retries_and_install_nothing(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAVEDHUB_HTTP_RETRIES", "2")
    hub_server.add(MODEL, Resource([(None, b"")], fail_first=99), query=COMPRESSED)
    with pytest.raises(hub.TransferError, match="HTTP 500"):
        hub.resolve(hub_server.url(MODEL))
    assert hub_server.count(MODEL) == 3
    assert cache.list_entries() == []


def test_damaged_entry_is_fetched_again_with_a_warning(
    hub_server: HubServer, my_mul_archive: bytes
) -> None:
    hub_server.add_model(MODEL, my_mul_archive)
    path = Path(hub.resolve(hub_server.url(MODEL)))
    shard = path / "variables" / "variables.data-00000-of-00001"
    shard.unlink()  # what a /tmp cleaner does
    with pytest.warns(hub.CacheWarning, match="variables.data-00000-of-00001 is missing"):
        assert hub.resolve(hub_server.url(MODEL)) == str(path)
    index = path / "variables" / "variables.index"
    index.write_bytes(index.read_bytes()[:10])
    with pytest.warns(hub.CacheWarning, match="variables.index has 10 bytes"):
        _assert_multiplies(hub_server.url(MODEL))
    assert hub_server.count(MODEL, COMPRESSED) == 3


def test_full_disk_is_reported_clearly(
    hub_server: HubServer, my_mul_archive: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(tiny)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("needs permission to mount a tiny tmpfs")
    try:
        monkeypatch.setenv("SAVEDHUB_CACHE_DIR", str(tiny / "cache"))
        hub_server.add_model("/big/1", tar_of(file_member("saved_model.pb", os.urandom(64_000))))
        with pytest.raises(hub.CacheFullError, match="is full.*SAVEDHUB_CACHE_DIR") as caught:
            hub.resolve(hub_server.url("/big/1"))
        assert isinstance(caught.value, OSError)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cache.list_entries(tiny / "cache") == []
    finally:
        subprocess.run(["umount", str(tiny)], check=False)


def test_certificates_are_checked_unless_disabled(
    my_mul_archive: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    with HubServer(tls=(cert, key)) as tls_hub:
        tls_hub.add_model(MODEL, my_mul_archive)
        with pytest.raises(hub.TransferError, match="TFHUB_DISABLE_CERT_VALIDATION") as caught:
            hub.resolve(tls_hub.url(MODEL))
        assert tls_hub.url(MODEL) in str(caught.value)
        assert tls_hub.count(MODEL) == 0  # refused at the handshake, and not retried
        monkeypatch.setenv("TFHUB_DISABLE_CERT_VALIDATION", "true")
        _assert_multiplies(tls_hub.url(MODEL))


def test_cache_dir_per_call_wins_over_the_environment(
    hub_server: HubServer, my_mul_archive: bytes, tmp_path: Path
) -> None:
    hub_server.add_model(MODEL, my_mul_archive)
    handle = hub_server.url(MODEL)
    mine = tmp_path / "my-cache"
    path = hub.resolve(handle, cache_dir=mine)
    assert Path(path).parent == mine and not _cache_root().exists()
    assert [e.handle for e in cache.list_entries(mine)] == [handle]
    obj = hub.load(handle, cache_dir=mine)
    np.testing.assert_allclose(obj(tf.constant([10.0])).numpy(), [20.0])
    assert hub.info(handle, cache_dir=mine).variables == 1
    assert hub_server.count(MODEL, COMPRESSED) == 1  # load and info found the entry there
    assert os.environ["SAVEDHUB_CACHE_DIR"] == str(_cache_root())
