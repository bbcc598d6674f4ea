"""savedhub.pack: reproducible hosting-protocol archives that unpack into loadable models."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import tensorflow as tf

import savedhub
from savedhub.errors import PackError


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_same_model_gives_the_same_bytes(
    text_embedding_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = savedhub.pack(text_embedding_path, tmp_path / "a.tar.gz")
    # A copy elsewhere, with different mtimes and permissions, packs to the same bytes.
    copy = tmp_path / "elsewhere" / "model"
    shutil.copytree(text_embedding_path, copy)
    for folder, _, names in os.walk(copy):
        for name in names:
            os.utime(os.path.join(folder, name), (1_000_000, 1_000_000))
            os.chmod(os.path.join(folder, name), 0o600)
    second = savedhub.pack(copy, tmp_path / "b.tar.gz")
    assert Path(first.path).read_bytes() == Path(second.path).read_bytes()
    assert first.sha256 == second.sha256 == _sha256(first.path)
    assert first.size == os.path.getsize(first.path)
    assert first.path == str(tmp_path / "a.tar.gz")

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    dated = savedhub.pack(text_embedding_path, tmp_path / "c.tar.gz")
    assert dated.sha256 != first.sha256
    with tarfile.open(dated.path) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}


def test_archive_layout_is_the_hosting_protocols(text_embedding_path: str, tmp_path: Path) -> None:
    result = savedhub.pack(text_embedding_path, tmp_path / "model.tar.gz")
    raw = Path(result.path).read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    flags, mtime = raw[3], int.from_bytes(raw[4:8], "little")
    assert mtime == 0 and not flags & 0x08  # no timestamp, no file name in the gzip header
    with tarfile.open(result.path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    expected = []
    for folder, dirs, files in os.walk(text_embedding_path):
        rel = os.path.relpath(folder, text_embedding_path)
        for name in dirs + files:
            expected.append(name if rel == "." else f"{rel}/{name}")
    assert sorted(names) == sorted(expected)
    assert "saved_model.pb" in names and "variables/variables.index" in names
    assert not any(n.startswith(("/", "./")) for n in names)
    for member in members:  # every folder comes before what it holds
        parent = member.name.rpartition("/")[0]
        if parent:
            assert names.index(parent) < names.index(member.name)
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
    assert {m.mode for m in members if m.isdir()} == {0o755}
    assert {m.mode for m in members if m.isfile()} == {0o644}
    assert all(m.isdir() or m.isfile() for m in members)


def test_unpacked_archive_loads_and_computes_the_same(
    text_embedding_path: str, tmp_path: Path
) -> None:
    result = savedhub.pack(text_embedding_path, tmp_path / "model.tar.gz")
    with tarfile.open(result.path) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    sentences = tf.constant(["a good movie", "terrible service"])
    original = savedhub.load(text_embedding_path)(sentences, training=False)
    restored = savedhub.load(str(tmp_path / "unpacked"))(sentences, training=False)
    assert restored.shape == (2, 32)
    assert tf.reduce_all(original == restored)


def test_archive_passes_both_extractors(my_mul_path: str, tmp_path: Path) -> None:
    from tensorflow_hub import file_utils

    from savedhub.archive import extract

    result = savedhub.pack(my_mul_path, tmp_path / "model.tar.gz")
    with open(result.path, "rb") as f:
        extracted = extract(f, tmp_path / "ours", source=result.path)
    assert "saved_model.pb" in extracted.files
    with open(result.path, "rb") as f:
        file_utils.extract_tarfile_to_destination(f, str(tmp_path / "theirs"))
    for folder in ("ours", "theirs"):
        assert float(savedhub.load(str(tmp_path / folder))(tf.constant(3.0))) == 6.0


def test_lint_errors_block_packing_unless_forced(my_mul_path: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(my_mul_path, broken)
    (broken / "variables" / "variables.index").unlink()
    out = tmp_path / "out" / "broken.tar.gz"
    out.parent.mkdir()
    with pytest.raises(PackError, match="missing-variable-files") as caught:
        savedhub.pack(broken, out)
    assert [f.code for f in caught.value.findings] == ["missing-variable-files"]
    assert "force=True" in str(caught.value)
    assert not out.exists()
    assert not list(out.parent.iterdir())

    forced = savedhub.pack(broken, out, force=True)
    with tarfile.open(forced.path) as tar:
        assert "variables/variables.index" not in tar.getnames()


def test_links_are_stored_as_the_files_they_point_to(my_mul_path: str, tmp_path: Path) -> None:
    model = tmp_path / "linked"
    shutil.copytree(my_mul_path, model)
    target = tmp_path / "labels.txt"
    target.write_text("cat\ndog\n")
    os.symlink(target, model / "assets" / "labels.txt")
    with pytest.raises(PackError, match="symlink"):
        savedhub.pack(model, tmp_path / "refused.tar.gz")
    result = savedhub.pack(model, tmp_path / "linked.tar.gz", force=True)
    with tarfile.open(result.path) as tar:
        member = tar.getmember("assets/labels.txt")
        assert member.isfile()
        assert tar.extractfile(member).read() == b"cat\ndog\n"  # type: ignore[union-attr]


def test_output_inside_the_model_is_refused(my_mul_path: str, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(my_mul_path, model)
    with pytest.raises(PackError, match="inside the model folder"):
        savedhub.pack(model, model / "assets" / "self.tar.gz")
    assert not list((model / "assets").iterdir())


def test_existing_archive_is_replaced(my_mul_path: str, tmp_path: Path) -> None:
    out = tmp_path / "model.tar.gz"
    out.write_bytes(b"old")
    result = savedhub.pack(my_mul_path, out)
    assert _sha256(out) == result.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz"]


def test_failed_pack_keeps_the_old_archive_and_no_temp_file(
    my_mul_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import savedhub.publish.pack

    out = tmp_path / "model.tar.gz"
    out.write_bytes(b"the previous release")
    real = savedhub.publish.pack.write_archive

    def fail_after_writing(*args: object) -> None:
        real(*args)  # type: ignore[arg-type]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(savedhub.publish.pack, "write_archive", fail_after_writing)
    with pytest.raises(OSError, match="No space left"):
        savedhub.pack(my_mul_path, out)
    assert out.read_bytes() == b"the previous release"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz"]
