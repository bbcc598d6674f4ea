"""The cache notices changed bytes, not only changed sizes.

A text-embedding model (a vocabulary asset, variables, a graph) is served by a
loopback hub and cached; then one byte of one of its files is flipped, the way
an editor, a sync tool or a bad disk would, and the user's next step (a load,
``savedhub cache verify``) must notice, name the file, and get the right model back.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import savedhub as hub
from archives import pack_folder
from httpserver import HubServer
from savedhub import cache
from savedhub.cli import main as cli

MODEL = "/google/text_embedding/1"
COMPRESSED = "tf-hub-format=compressed"
# "the" is the vocabulary's first line: a flipped first byte sends it to an OOV bucket.
SENTENCES = ["the movie was good", "the food is terrible", "a great day"]
# The three kinds of file a model has, and where in each a byte is flipped.
VARIABLES = "variables/variables.data-00000-of-00001"
GRAPH = "saved_model.pb"
ASSET = "assets/vocab.txt"
FILES = [VARIABLES, GRAPH, ASSET]


@pytest.fixture(scope="module")
def model_archive(text_embedding_path: str) -> bytes:
    return pack_folder(text_embedding_path)


@pytest.fixture(scope="module")
def expected(text_embedding_path: str) -> np.ndarray:
    """What the model gives for SENTENCES, loaded from its original folder."""
    return hub.load(text_embedding_path)(tf.constant(SENTENCES)).numpy()


def _root() -> Path:
    return Path(os.environ["SAVEDHUB_CACHE_DIR"])


def _manifest(url: str) -> dict:
    key = hashlib.sha1(url.encode()).hexdigest()
    return json.loads((_root() / f"{key}.savedhub.json").read_text())


def _install(hub_server: HubServer, archive: bytes) -> tuple[str, Path]:
    hub_server.add_model(MODEL, archive)
    url = hub_server.url(MODEL)
    return url, Path(hub.resolve(url))


def _flip_byte(path: Path, *, keep_times: bool) -> None:
    """Flip one bit of one byte in place (same size). With ``keep_times`` the
    modification time is put back, as some sync tools and restores do."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if path.name != "vocab.txt" else 0] ^= 0x01
    while True:
        path.write_bytes(data)
        if keep_times or path.stat().st_mtime_ns != before.st_mtime_ns:
            break
        time.sleep(0.01)  # an edit within the clock's tick after install: let time pass
    if keep_times:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _outputs(url: str) -> np.ndarray:
    return hub.load(url)(tf.constant(SENTENCES)).numpy()


def _verify(*args: str) -> tuple[int, str]:
    """``savedhub cache verify ARGS`` as a user runs it: exit code and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(["cache", "verify", *args])
    return code, out.getvalue()


def test_a_cold_install_records_what_sha256sum_says(
    hub_server: HubServer, model_archive: bytes
) -> None:
    url, path = _install(hub_server, model_archive)
    manifest = _manifest(url)
    on_disk = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    assert sorted(manifest["sha256"]) == sorted(manifest["mtime_ns"]) == on_disk
    assert set(FILES) <= set(on_disk)
    listing = subprocess.run(
        ["sha256sum", *on_disk], cwd=path, capture_output=True, text=True, check=True
    ).stdout
    sha256sum = {name: digest for digest, name in (line.split() for line in listing.splitlines())}
    assert manifest["sha256"] == sha256sum
    assert manifest["mtime_ns"] == {rel: (path / rel).stat().st_mtime_ns for rel in on_disk}
    (entry,) = cache.verify_entries()
    assert entry.hashed and entry.state is cache.EntryState.COMPLETE
    assert entry.bytes_hashed == entry.size


@pytest.mark.parametrize("name", FILES)
def test_an_edited_file_is_fetched_again_on_the_next_load(
    hub_server: HubServer, model_archive: bytes, expected: np.ndarray, name: str
) -> None:
    url, path = _install(hub_server, model_archive)
    _flip_byte(path / name, keep_times=False)
    with pytest.warns(hub.CacheWarning, match=f"the file {name} changed after it was installed"):
        outputs = _outputs(url)
    np.testing.assert_allclose(outputs, expected, rtol=1e-6)
    assert hub_server.count(MODEL, COMPRESSED) == 2
    assert cache.verify_entries()[0].state is cache.EntryState.COMPLETE


def test_a_touched_file_with_the_same_bytes_is_hashed_once_and_kept(
    hub_server: HubServer, model_archive: bytes
) -> None:
    url, path = _install(hub_server, model_archive)
    data = (path / VARIABLES).read_bytes()
    before = _manifest(url)["mtime_ns"][VARIABLES]
    while (path / VARIABLES).stat().st_mtime_ns == before:
        (path / VARIABLES).write_bytes(data)  # a copy tool rewrote it, bytes unchanged
    with warnings.catch_warnings():
        warnings.simplefilter("error", hub.CacheWarning)
        assert Path(hub.resolve(url)) == path
    assert _manifest(url)["mtime_ns"][VARIABLES] == (path / VARIABLES).stat().st_mtime_ns
    assert hub_server.count(MODEL, COMPRESSED) == 1


@pytest.mark.parametrize("name", FILES)
def test_verify_finds_a_change_that_kept_size_and_time_and_repair_fixes_it(
    hub_server: HubServer,
    model_archive: bytes,
    expected: np.ndarray,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, path = _install(hub_server, model_archive)
    _flip_byte(path / name, keep_times=True)
    assert Path(hub.resolve(url)) == path  # a load checks sizes and times only: unseen
    assert _verify("--quick")[0] == 0  # and so does verify --quick

    code, out = _verify()
    assert code == 1
    assert f"damaged: {url}: the file {name} changed after it was installed" in out
    assert "1 entries checked" in out and "1 damaged" in out

    with monkeypatch.context() as offline:  # a repair that cannot fetch loses nothing
        offline.setenv("SAVEDHUB_OFFLINE", "1")
        code, out = _verify("--repair")
    assert code == 1 and f"could not repair {url}" in out and "SAVEDHUB_OFFLINE" in out
    assert (path / name).exists()

    code, out = _verify("--repair")
    assert code == 0 and f"repaired: {url}" in out
    assert hub_server.count(MODEL, COMPRESSED) == 2
    code, out = _verify()
    assert code == 0 and "0 damaged" in out
    np.testing.assert_allclose(_outputs(url), expected, rtol=1e-6)


def test_savedhub_verify_content_rehashes_on_every_load(
    hub_server: HubServer,
    model_archive: bytes,
    expected: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, path = _install(hub_server, model_archive)
    _flip_byte(path / ASSET, keep_times=True)  # silent wrong numbers, were it loaded
    monkeypatch.setenv("SAVEDHUB_VERIFY", "content")
    with pytest.warns(hub.CacheWarning, match=f"the file {ASSET} changed after it was installed"):
        outputs = _outputs(url)
    np.testing.assert_allclose(outputs, expected, rtol=1e-6)
    assert hub_server.count(MODEL, COMPRESSED) == 2
    monkeypatch.setenv("SAVEDHUB_VERIFY", "always")
    with pytest.raises(hub.ConfigError, match="SAVEDHUB_VERIFY='always' is not understood"):
        hub.resolve(url)


class _Terminal(io.StringIO):
    """Standard input of a user at a terminal who types ``text``."""

    def isatty(self) -> bool:
        return True


def _strip_to_old_manifest(url: str) -> None:
    """Make the entry look as an older savedhub wrote it: sizes, no hashes or times."""
    key = hashlib.sha1(url.encode()).hexdigest()
    manifest = _manifest(url)
    for name in ("sha256", "mtime_ns"):
        del manifest[name]
    manifest["format"] = 1
    (_root() / f"{key}.savedhub.json").write_text(json.dumps(manifest))


def test_old_entries_load_and_get_hashes_once_the_user_confirms(
    hub_server: HubServer,
    model_archive: bytes,
    expected: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import tensorflow_hub

    old, old_path = _install(hub_server, model_archive)
    _strip_to_old_manifest(old)
    hub_server.add_model("/google/theirs/1", model_archive)
    theirs = hub_server.url("/google/theirs/1")
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(_root()))
    theirs_path = Path(tensorflow_hub.resolve(theirs))

    for url in (old, theirs):
        np.testing.assert_allclose(_outputs(url), expected, rtol=1e-6)
    monkeypatch.setenv("SAVEDHUB_VERIFY", "content")
    with caplog.at_level(logging.WARNING, logger="savedhub"):
        hub.resolve(old)
    assert "SAVEDHUB_VERIFY=content cannot check" in caplog.text and "--rehash" in caplog.text
    monkeypatch.delenv("SAVEDHUB_VERIFY")

    code, out = _verify()
    assert code == 0 and "0 damaged, 2 without hashes" in out
    assert f"no hashes: {old} (written by an older savedhub)" in out
    assert f"no hashes: {theirs} (written by tensorflow_hub)" in out

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # a script: no one to ask
    code, out = _verify("--rehash")
    assert code == 2 and "pass --rehash --yes" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", _Terminal("n\n"))
    code, out = _verify("--rehash")
    assert code == 0 and "no hashes recorded" in out
    assert not any(e.hashed for e in cache.list_entries())

    monkeypatch.setattr(sys, "stdin", _Terminal("y\n"))
    code, out = _verify("--rehash")
    assert code == 0 and f"rehashed: {old}" in out and f"rehashed: {theirs}" in out
    assert "Record SHA-256 hashes of 2 model(s)" in capsys.readouterr().err
    for url, path in ((old, old_path), (theirs, theirs_path)):
        manifest = _manifest(url)
        assert manifest["sha256"][ASSET] == hashlib.sha256((path / ASSET).read_bytes()).hexdigest()
    _flip_byte(theirs_path / VARIABLES, keep_times=True)
    code, out = _verify()
    assert code == 1 and f"damaged: {theirs}: the file {VARIABLES} changed" in out
    assert "0 without hashes" in out


def test_rehash_in_a_script_takes_yes(hub_server: HubServer, model_archive: bytes) -> None:
    url, path = _install(hub_server, model_archive)
    _strip_to_old_manifest(url)
    code, out = _verify("--rehash", "--yes", "--json")
    report = json.loads(out)
    assert code == 0 and report["rehashed"] == [url] and report["unhashed"] == 1
    (entry,) = cache.verify_entries()
    assert entry.hashed and entry.state is cache.EntryState.COMPLETE


def test_verify_names_every_changed_file(hub_server: HubServer, model_archive: bytes) -> None:
    url, path = _install(hub_server, model_archive)
    for name in (GRAPH, ASSET):
        _flip_byte(path / name, keep_times=True)
    code, out = _verify("--json")
    (entry,) = json.loads(out)["entries"]
    assert code == 1 and entry["handle"] == url and entry["state"] == "damaged"
    assert sorted(entry["damaged_files"]) == sorted([GRAPH, ASSET])
    assert "(and 1 more files)" in entry["problem"]
