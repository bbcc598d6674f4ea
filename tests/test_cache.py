"""The cache under pressure: many processes, killed downloads, tensorflow_hub's own cache,
and the list/verify/prune/remove API."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import savedhub as hub
from httpserver import HubServer
from savedhub import cache

MODEL = "/google/my_mul/1"
COMPRESSED = "tf-hub-format=compressed"
PAD_BYTES = 1 << 20


@pytest.fixture(scope="module")
def padded_archive(my_mul_path: str) -> bytes:
    """my_mul plus 1 MiB of random asset bytes: big enough to interrupt mid-way."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name in sorted(os.listdir(my_mul_path)):
            tar.add(os.path.join(my_mul_path, name), arcname=name)
        info = tarfile.TarInfo("assets/pad.bin")
        info.size = PAD_BYTES
        tar.addfile(info, io.BytesIO(os.urandom(PAD_BYTES)))
    return out.getvalue()


def _root() -> Path:
    return Path(os.environ["SAVEDHUB_CACHE_DIR"])


def _key(handle: str) -> str:
    return hashlib.sha1(handle.encode()).hexdigest()


def _assert_multiplies(path: str) -> None:
    obj = hub.load(path)
    np.testing.assert_allclose(obj(tf.constant([10.0, 20.0])).numpy(), [20.0, 40.0])


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _wait_for(condition, timeout: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


# -- layout and manifest ------------------------------------------------------


def test_entry_layout_and_manifest(hub_server: HubServer, padded_archive: bytes) -> None:
    hub_server.add_model(MODEL, padded_archive)
    url = hub_server.url(MODEL)
    path = Path(hub.resolve(url))
    root, key = _root(), _key(url)
    assert path == root / key
    assert (
        (root / "CACHEDIR.TAG")
        .read_text()
        .startswith("Signature: 8a477f597d28d172789f06886806bc55")
    )
    assert (root / f"{key}.descriptor.txt").read_text().startswith(f"Module: {url}\n")
    manifest = json.loads((root / f"{key}.savedhub.json").read_text())
    assert manifest["handle"] == url
    assert manifest["url"] == url + "?" + COMPRESSED
    assert manifest["archive_sha256"] == hashlib.sha256(padded_archive).hexdigest()
    assert manifest["etag"].startswith('"')
    on_disk = {str(p.relative_to(path)): p.stat().st_size for p in path.rglob("*") if p.is_file()}
    assert manifest["files"] == on_disk and on_disk["assets/pad.bin"] == PAD_BYTES
    assert list((root / ".savedhub-work").iterdir()) == []
    assert not (root / f"{key}.lock").exists()  # tensorflow_hub's lock is released


# -- tensorflow_hub's cache -------------------------------------------------


def test_cache_filled_by_tensorflow_hub_is_used_without_a_request(
    hub_server: HubServer, padded_archive: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow_hub

    hub_server.add_model(MODEL, padded_archive)
    url = hub_server.url(MODEL)
    monkeypatch.delenv("SAVEDHUB_CACHE_DIR")
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub"))
    theirs = tensorflow_hub.resolve(url)
    assert hub_server.count(MODEL, COMPRESSED) == 1
    assert not (tmp_path / "tfhub" / f"{_key(url)}.savedhub.json").exists()

    assert hub.resolve(url) == theirs
    _assert_multiplies(url)
    assert len(hub_server.requests) == 1
    (entry,) = cache.list_entries()
    assert entry.handle == url and entry.source == "tensorflow_hub"
    assert entry.state is cache.EntryState.COMPLETE


def test_tensorflow_hub_uses_what_savedhub_installed(
    hub_server: HubServer, padded_archive: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow_hub

    hub_server.add_model(MODEL, padded_archive)
    monkeypatch.setenv("SAVEDHUB_CACHE_DIR", str(tmp_path / "shared"))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "shared"))
    ours = hub.resolve(hub_server.url(MODEL))
    assert tensorflow_hub.resolve(hub_server.url(MODEL)) == ours
    assert len(hub_server.requests) == 1


def test_a_live_tensorflow_hub_lock_is_waited_for(
    hub_server: HubServer, padded_archive: bytes
) -> None:
    hub_server.add_model(MODEL, padded_archive)
    url = hub_server.url(MODEL)
    _root().mkdir(parents=True)
    lock = _root() / f"{_key(url)}.lock"
    lock.write_text(f"{socket.gethostname()}.{os.getpid()}.0123abcd")  # a live holder
    threading.Timer(0.8, lock.unlink).start()
    started = time.monotonic()
    hub.resolve(url)
    assert time.monotonic() - started >= 0.8
    assert hub_server.count(MODEL, COMPRESSED) == 1


def test_a_dead_tensorflow_hub_lock_is_taken_over_at_once(
    hub_server: HubServer, padded_archive: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    hub_server.add_model(MODEL, padded_archive)
    url = hub_server.url(MODEL)
    _root().mkdir(parents=True)
    lock = _root() / f"{_key(url)}.lock"
    lock.write_text(f"{socket.gethostname()}.{_dead_pid()}.0123abcd")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="savedhub"):
        hub.resolve(url)
    assert time.monotonic() - started < 5
    assert any("Taking over" in r.getMessage() for r in caplog.records)
    assert not lock.exists()


# -- many processes, killed processes --------------------------------------------

CHILD = r"""
import logging, os, sys, time
logging.basicConfig(level=logging.INFO, format="%(message)s")
import savedhub
stop_at = os.environ.get("STOP_AT")
if stop_at == "extract":
    from savedhub import archive
    real_write = archive._Extractor.write_file
    def write_file(self, tar, member, name):
        if self.result.files:
            print("STOPPED", flush=True)
            time.sleep(600)
        return real_write(self, tar, member, name)
    archive._Extractor.write_file = write_file
elif stop_at == "rename":
    real_rename = os.rename
    def rename(src, dst):
        if ".savedhub-work" in str(src):
            print("STOPPED", flush=True)
            time.sleep(600)
        return real_rename(src, dst)
    os.rename = rename
path = savedhub.resolve(sys.argv[1])
assert "tensorflow" not in sys.modules, "resolve imported TensorFlow"
print("PATH", path, flush=True)
"""


def _child(url: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_eight_processes_share_one_download(hub_server: HubServer, padded_archive: bytes) -> None:
    hub_server.add_model(MODEL, padded_archive, delay_per_chunk=0.15)  # ~2.5 s on the wire
    url = hub_server.url(MODEL)
    children = [_child(url) for _ in range(8)]
    results = [child.communicate(timeout=120) for child in children]
    for child, (_, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
    paths = {line.split(" ", 1)[1] for out, _ in results for line in out.splitlines()}
    assert paths == {str(_root() / _key(url))}
    assert hub_server.count(MODEL, COMPRESSED) == 1
    waited = [err for _, err in results if "Waiting for" in err]
    assert waited and all("is downloading" in err for err in waited)
    _assert_multiplies(url)


def test_tensorflow_hub_waits_for_a_savedhub_download_in_progress(
    hub_server: HubServer, padded_archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow_hub

    hub_server.add_model(MODEL, padded_archive, delay_per_chunk=0.1)  # ~2 s on the wire
    url = hub_server.url(MODEL)
    monkeypatch.setenv("TFHUB_CACHE_DIR", os.environ["SAVEDHUB_CACHE_DIR"])
    child = _child(url)
    _wait_for(lambda: (_root() / f"{_key(url)}.lock").exists())
    theirs = tensorflow_hub.resolve(url)  # waits on the .lock savedhub holds
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.split("PATH ", 1)[1].strip() == theirs
    assert hub_server.count(MODEL, COMPRESSED) == 1
    (entry,) = cache.verify_entries()
    assert entry.state is cache.EntryState.COMPLETE and entry.source == "savedhub"


def test_savedhub_waits_for_a_tensorflow_hub_download_in_progress(
    hub_server: HubServer, padded_archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow_hub

    hub_server.add_model(MODEL, padded_archive, delay_per_chunk=0.1)
    url = hub_server.url(MODEL)
    monkeypatch.setenv("TFHUB_CACHE_DIR", os.environ["SAVEDHUB_CACHE_DIR"])
    theirs: list[str] = []
    downloader = threading.Thread(target=lambda: theirs.append(tensorflow_hub.resolve(url)))
    downloader.start()
    _wait_for(lambda: (_root() / f"{_key(url)}.lock").exists())
    child = _child(url)
    out, err = child.communicate(timeout=60)
    downloader.join()
    assert child.returncode == 0, err
    assert "which tensorflow_hub" in err  # it said whom it waited for
    assert out.split("PATH ", 1)[1].strip() == theirs[0]
    assert hub_server.count(MODEL, COMPRESSED) == 1
    (entry,) = cache.verify_entries()
    assert entry.state is cache.EntryState.COMPLETE and entry.source == "tensorflow_hub"


def _no_entry_visible(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache.list_entries() == []
    assert not (_root() / _key(url)).exists()
    with monkeypatch.context() as offline:
        offline.setenv("SAVEDHUB_OFFLINE", "1")
        with pytest.raises(hub.NotCachedError):
            hub.resolve(url)


def _partial(url: str) -> Path:
    return _root() / ".savedhub-work" / f"{_key(url)}.partial"


def test_killed_mid_transfer_resumes_where_it_stopped(
    hub_server: HubServer, padded_archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    half = len(padded_archive) // 2
    hub_server.add_model(MODEL, padded_archive, stall_at=half, stall_seconds=60)
    url = hub_server.url(MODEL)
    child = _child(url)
    _wait_for(lambda: _partial(url).exists() and _partial(url).stat().st_size >= half)
    holder = (_root() / f"{_key(url)}.lock").read_text()
    assert holder.startswith(f"{socket.gethostname()}.{child.pid}.")  # tensorflow_hub waits
    child.send_signal(signal.SIGKILL)
    child.wait()
    _no_entry_visible(url, monkeypatch)

    _assert_multiplies(url)
    last = hub_server.of(MODEL)[-1]
    assert last.range == f"bytes={half}-" and last.status == 206
    assert last.body_bytes == len(padded_archive) - half
    assert list((_root() / ".savedhub-work").iterdir()) == []
    assert not (_root() / f"{_key(url)}.lock").exists()


@pytest.mark.parametrize("stop_at", ["extract", "rename"])
def test_killed_mid_extract_or_before_rename_reuses_the_downloaded_bytes(
    hub_server: HubServer, padded_archive: bytes, monkeypatch: pytest.MonkeyPatch, stop_at: str
) -> None:
    hub_server.add_model(MODEL, padded_archive)
    url = hub_server.url(MODEL)
    child = _child(url, STOP_AT=stop_at)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "STOPPED"
    _wait_for(lambda: _partial(url).stat().st_size == len(padded_archive))
    child.send_signal(signal.SIGKILL)
    child.wait()
    _no_entry_visible(url, monkeypatch)
    work = [p for p in (_root() / ".savedhub-work").iterdir() if p.is_dir()]
    assert len(work) == 1 and str(child.pid) in work[0].name  # the dead process's folder

    _assert_multiplies(url)
    last = hub_server.of(MODEL)[-1]
    assert last.status == 416 and last.body_bytes == 0  # everything came from the partial
    assert hub_server.count(MODEL, COMPRESSED) == 2
    assert list((_root() / ".savedhub-work").iterdir()) == []


def test_waiters_log_whom_they_wait_for(
    hub_server: HubServer, padded_archive: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    hub_server.add_model(MODEL, padded_archive)
    url = hub_server.url(MODEL)
    held = threading.Event()

    def hold() -> None:
        with cache.Cache().entry_lock(_key(url), url):
            held.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    with caplog.at_level(logging.INFO, logger="savedhub"):
        hub.resolve(url)
    holder.join()
    expected = f"which process {os.getpid()} on {socket.gethostname()}"
    assert any(expected in r.getMessage() for r in caplog.records)


def test_lock_timeout_is_a_clear_error(
    hub_server: HubServer, padded_archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.add_model(MODEL, padded_archive)
    url = hub_server.url(MODEL)
    monkeypatch.setenv("SAVEDHUB_LOCK_TIMEOUT", "0.3")
    with (
        cache.Cache().entry_lock(_key(url), url),
        pytest.raises(hub.CacheLockTimeout, match="SAVEDHUB_LOCK_TIMEOUT") as caught,
    ):
        hub.resolve(url)
    assert caught.value.lock_path and caught.value.lock_path.endswith(".savedhub.lock")
    assert len(hub_server.requests) == 0


# -- list, verify, prune, remove --------------------------------------------------


def _install(hub_server: HubServer, archive: bytes, *names: str) -> list[str]:
    urls = []
    for name in names:
        hub_server.add_model(f"/google/{name}/1", archive)
        urls.append(hub_server.url(f"/google/{name}/1"))
        hub.resolve(urls[-1])
    return urls


def _age(url: str, days: float) -> None:
    stamp = time.time() - days * 86400
    os.utime(_root() / f"{_key(url)}.savedhub.json", (stamp, stamp))


def test_list_and_verify_entries(hub_server: HubServer, padded_archive: bytes) -> None:
    a, b = _install(hub_server, padded_archive, "a", "b")
    entries = {e.handle: e for e in cache.list_entries()}
    assert set(entries) == {a, b}
    entry = entries[a]
    assert entry.path == _root() / _key(a) and entry.key == _key(a)
    assert entry.size == sum(p.stat().st_size for p in entry.path.rglob("*") if p.is_file())
    assert entry.state is cache.EntryState.COMPLETE and entry.problem is None
    assert abs(entry.last_used - dt.datetime.now()) < dt.timedelta(minutes=1)

    (_root() / _key(b) / "assets" / "pad.bin").write_bytes(b"short")
    report = {e.handle: e for e in cache.verify_entries()}
    assert report[a].state is cache.EntryState.COMPLETE
    assert report[b].state is cache.EntryState.DAMAGED
    assert "assets/pad.bin has 5 bytes" in (report[b].problem or "")
    cache.verify_entries(remove_damaged=True)
    assert [e.handle for e in cache.list_entries()] == [a]


def test_loading_marks_an_entry_used(hub_server: HubServer, padded_archive: bytes) -> None:
    (a,) = _install(hub_server, padded_archive, "a")
    _age(a, 30)
    hub.resolve(a)
    (entry,) = cache.list_entries()
    assert dt.datetime.now() - entry.last_used < dt.timedelta(minutes=1)


def test_prune_by_age_with_dry_run_first(hub_server: HubServer, padded_archive: bytes) -> None:
    old, new = _install(hub_server, padded_archive, "old", "new")
    _age(old, 40)
    preview = cache.prune(older_than=dt.timedelta(days=30), dry_run=True)
    assert [e.handle for e in preview.removed] == [old] and preview.dry_run
    assert len(cache.list_entries()) == 2
    report = cache.prune(older_than=30 * 86400)
    assert [e.handle for e in report.removed] == [old]
    assert report.freed_bytes == preview.freed_bytes > PAD_BYTES
    assert [e.handle for e in cache.list_entries()] == [new]
    assert not (_root() / f"{_key(old)}.savedhub.json").exists()


def test_prune_to_size_removes_least_recently_used_first(
    hub_server: HubServer, padded_archive: bytes
) -> None:
    a, b, c = _install(hub_server, padded_archive, "a", "b", "c")
    _age(a, 3)
    _age(b, 1)
    _age(c, 2)
    size = cache.list_entries()[0].size
    report = cache.prune(max_size=size)
    assert [e.handle for e in report.removed] == [a, c]
    assert [e.handle for e in cache.list_entries()] == [b]


def test_prune_skips_an_entry_being_worked_on(hub_server: HubServer, padded_archive: bytes) -> None:
    (a,) = _install(hub_server, padded_archive, "a")
    _age(a, 40)
    with cache.Cache().entry_lock(_key(a), a):
        assert cache.prune(older_than=0).removed == []
    assert [e.handle for e in cache.prune(older_than=0).removed] == [a]


def test_prune_reaps_leftovers_of_dead_processes(
    hub_server: HubServer, padded_archive: bytes
) -> None:
    (a,) = _install(hub_server, padded_archive, "a")
    root, host, key = _root(), socket.gethostname(), "f" * 40
    dead = root / ".savedhub-work" / f"{key}.{host}.{_dead_pid()}.abcd"
    alive = root / ".savedhub-work" / f"{key}.{host}.{os.getpid()}.abcd"
    trash = root / ".savedhub-work" / f"trash.{key}.beef"
    for folder in (dead, alive, trash):
        (folder / "variables").mkdir(parents=True)
    stale_lock = root / f"{key}.lock"
    stale_lock.write_text(f"{host}.{_dead_pid()}.0a0a")
    tfhub_tmp = root / f"{key}.0a0a.tmp"
    tfhub_tmp.mkdir()
    orphan_manifest = root / f"{key}.savedhub.json"
    orphan_manifest.write_text("{}")
    half_written = [
        root / f"{key}.lock.tmp{'0' * 32}",
        root / f"{key}.savedhub.json.123.0a0b0c0d.tmp",
    ]
    for path in half_written:
        path.write_text("x")
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    fresh_tmp = root / f"{key}.descriptor.txt.124.0a0b0c0d.tmp"  # maybe being written now
    fresh_tmp.write_text("x")

    preview = cache.prune(dry_run=True)
    expected = {dead, trash, stale_lock, tfhub_tmp, orphan_manifest, *half_written}
    assert set(preview.reaped) == expected and all(p.exists() for p in expected)
    report = cache.prune()
    assert set(report.reaped) == expected and report.removed == []
    assert not any(p.exists() for p in expected)
    assert alive.exists() and fresh_tmp.exists()  # a live process's work is left alone
    assert [e.handle for e in cache.list_entries()] == [a]


def test_remove_one_and_remove_all(hub_server: HubServer, padded_archive: bytes) -> None:
    a, b, c = _install(hub_server, padded_archive, "a", "b", "c")
    (removed,) = cache.remove(a)
    assert removed.handle == a and not removed.path.exists()
    assert cache.remove(a) == []
    assert [e.handle for e in cache.remove(_key(b))] == [b]  # by key, as `cache ls` shows
    hub.resolve(a)  # fetched again after removal
    assert hub_server.count("/google/a/1", COMPRESSED) == 2
    assert {e.handle for e in cache.remove_all()} == {a, c}
    assert cache.list_entries() == []
    assert sorted(p.name for p in _root().iterdir()) == [".savedhub-work", "CACHEDIR.TAG"]


def test_removal_while_another_process_loads_keeps_the_cache_consistent(
    hub_server: HubServer, padded_archive: bytes
) -> None:
    hub_server.add_model(MODEL, padded_archive, delay_per_chunk=0.05)
    url = hub_server.url(MODEL)
    hub.resolve(url)
    children = [_child(url) for _ in range(3)]
    for _ in range(5):
        cache.remove(url)
        time.sleep(0.1)
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    for entry in cache.verify_entries():
        assert entry.state is cache.EntryState.COMPLETE
    _assert_multiplies(url)


def test_cache_root_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SAVEDHUB_CACHE_DIR")
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub"))
    assert cache.Cache().root == tmp_path / "tfhub"
    monkeypatch.delenv("TFHUB_CACHE_DIR")
    assert not str(cache.Cache().root).startswith("/tmp")  # the user cache folder


def test_parse_size() -> None:
    assert cache.parse_size("500MB") == 500_000_000
    assert cache.parse_size("10 GiB") == 10 * 2**30
    assert cache.parse_size("1.5k") == 1500
    assert cache.parse_size("123") == 123
    with pytest.raises(ValueError, match="not a size"):
        cache.parse_size("lots")


def test_absl_flags_of_tensorflow_hub_keep_their_meaning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tensorflow_hub  # noqa: F401  (defines --tfhub_cache_dir and --tfhub_model_load_format)
    from absl import flags

    from savedhub import config

    monkeypatch.delenv("SAVEDHUB_CACHE_DIR")
    flags.FLAGS(
        ["prog", f"--tfhub_cache_dir={tmp_path / 'absl'}", "--tfhub_model_load_format=UNCOMPRESSED"]
    )
    try:
        assert cache.Cache().root == tmp_path / "absl"
        assert config.model_load_format() == "UNCOMPRESSED"
    finally:
        flags.FLAGS.unparse_flags()
