"""Atomic writes: readers see the old contents or the new, and a failure loses nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from savedhub._io.atomic import put_folder, replace_folder, replacing_file, write_file


def test_write_file_replaces_in_one_rename(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    write_file(target, "old")
    write_file(target, "néw")
    write_file(tmp_path / "blob", b"\x00\x01")
    assert target.read_text("utf-8") == "néw" and (tmp_path / "blob").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path)) == ["blob", "manifest.json"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.tar.gz"
    target.write_bytes(b"old archive")
    with pytest.raises(RuntimeError), replacing_file(target, durable=True, mode=0o644) as f:
        f.write(b"half an arch")
        raise RuntimeError("the disk filled up")
    assert target.read_bytes() == b"old archive" and os.listdir(tmp_path) == ["model.tar.gz"]
    with replacing_file(target, durable=True, mode=0o640) as f:
        f.write(b"new archive")
    assert target.read_bytes() == b"new archive" and target.stat().st_mode & 0o777 == 0o640


def test_put_folder_lets_the_first_writer_win(tmp_path: Path) -> None:
    first, second, target = tmp_path / "w1", tmp_path / "w2", tmp_path / "entry"
    for work in (first, second):
        work.mkdir()
        (work / "saved_model.pb").write_text(work.name)
    assert put_folder(first, target) is True
    assert put_folder(second, target) is False
    assert (target / "saved_model.pb").read_text() == "w1" and second.is_dir()
    with pytest.raises(FileNotFoundError):
        put_folder(tmp_path / "missing", tmp_path / "other")


def test_replace_folder_swaps_and_never_loses_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileNotFoundError):
        replace_folder(tmp_path / "no-such-work", target)  # the swap fails half way
    assert (target / "keep.txt").read_text() == "mine"
    assert os.listdir(tmp_path) == ["out"]
    work = tmp_path / "work"
    work.mkdir()
    (work / "saved_model.pb").write_text("new")
    replace_folder(work, target)
    assert os.listdir(target) == ["saved_model.pb"] and os.listdir(tmp_path) == ["out"]
    fresh = tmp_path / "work2"
    fresh.mkdir()
    replace_folder(fresh, tmp_path / "new-out")
    assert (tmp_path / "new-out").is_dir() and not fresh.exists()
