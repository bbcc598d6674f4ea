"""Safe streaming extraction: real models unpack, hostile archives write nothing outside."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

import savedhub as hub
from archives import (
    file_member,
    link_member,
    lying_bomb,
    pack_folder,
    special_member,
    tar_of,
    zeros_bomb,
)
from savedhub import archive


def _extract(data: bytes, dest: Path) -> archive.ExtractResult:
    return archive.extract(io.BytesIO(data), dest, source="test.tar.gz")


def _everything_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_model_archive_extracts_with_manifest_of_sizes(my_mul_path: str, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    result = _extract(pack_folder(my_mul_path), dest)
    expected = {
        str(p.relative_to(my_mul_path)): p.stat().st_size
        for p in Path(my_mul_path).rglob("*")
        if p.is_file()
    }
    assert result.files == expected
    assert result.total_bytes == sum(expected.values())
    for rel, size in expected.items():
        assert (dest / rel).read_bytes() == (Path(my_mul_path) / rel).read_bytes()
        assert (dest / rel).stat().st_size == size


def test_plain_tar_and_inside_links_are_accepted(tmp_path: Path) -> None:
    data = tar_of(
        file_member("./saved_model.pb", b"graph"),
        file_member("assets/vocab.txt", b"a\nb\n"),
        link_member("assets/alias.txt", "vocab.txt"),
        link_member("assets/copy.txt", "assets/vocab.txt", hard=True),
        compress=False,
    )
    result = _extract(data, tmp_path / "out")
    assert result.files == {"saved_model.pb": 5, "assets/vocab.txt": 4, "assets/copy.txt": 4}
    assert result.links == {"assets/alias.txt": "vocab.txt"}
    assert (tmp_path / "out/assets/alias.txt").read_text() == "a\nb\n"


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (file_member("../etc/x", b"owned"), "'..'"),
        (file_member("variables/../../x", b"owned"), "'..'"),
        (file_member("/etc/x", b"owned"), "absolute"),
        (link_member("evil", "/etc/passwd"), "absolute|outside"),
        (link_member("evil", "../../outside"), "outside"),
        (link_member("evil", "../../outside", hard=True), "hard link|outside|'..'"),
        (special_member("dev", tarfile.CHRTYPE), "device"),
        (special_member("fifo", tarfile.FIFOTYPE), "FIFO"),
    ],
)
def test_hostile_members_are_refused_and_nothing_escapes(
    member: tuple[tarfile.TarInfo, bytes | None], why: str, tmp_path: Path
) -> None:
    dest = tmp_path / "box" / "out"
    data = tar_of(file_member("saved_model.pb", b"graph"), member)
    with pytest.raises(hub.UnsafeArchiveError, match=why) as caught:
        _extract(data, dest)
    assert caught.value.member == member[0].name
    assert "test.tar.gz" in str(caught.value)
    assert _everything_under(tmp_path) <= {"box", "box/out", "box/out/saved_model.pb"}
    assert not Path("/etc/x").exists()


def test_symlink_ladder_cannot_write_outside(tmp_path: Path) -> None:
    # An inside-looking link followed by a member written "through" it.
    outside = tmp_path / "outside"
    outside.mkdir()
    data = tar_of(
        link_member("ladder", "../outside"),
        file_member("ladder/x", b"owned"),
    )
    with pytest.raises(hub.UnsafeArchiveError):
        _extract(data, tmp_path / "out")
    assert list(outside.iterdir()) == []


def test_gzip_bomb_is_refused_before_filling_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAVEDHUB_MAX_EXTRACT_BYTES", str(4 << 20))
    bomb = zeros_bomb(64 << 20)
    assert len(bomb) < (1 << 20)  # a real bomb: ~64 MiB in well under 1 MiB
    with pytest.raises(hub.UnsafeArchiveError, match="SAVEDHUB_MAX_EXTRACT_BYTES"):
        _extract(bomb, tmp_path / "out")
    assert sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file()) == 0


def test_header_claiming_terabytes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(hub.UnsafeArchiveError, match="expand past"):
        _extract(lying_bomb(2**42), tmp_path / "out")


def test_too_many_members_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAVEDHUB_MAX_EXTRACT_MEMBERS", "10")
    data = tar_of(*(file_member(f"assets/{i}.txt", b"x") for i in range(11)))
    with pytest.raises(hub.UnsafeArchiveError, match="10 members"):
        _extract(data, tmp_path / "out")


@pytest.mark.parametrize(
    "body",
    [b"<!doctype html><html>login</html>", b"just some text, not an archive" * 40],
)
def test_non_archives_raise_not_an_archive(body: bytes, tmp_path: Path) -> None:
    assert not archive.looks_like_archive(body)
    with pytest.raises(hub.NotAnArchiveError, match="test.tar.gz"):
        _extract(body, tmp_path / "out")


def test_truncated_archive_is_an_error_not_a_partial_success(
    my_mul_path: str, tmp_path: Path
) -> None:
    data = pack_folder(my_mul_path)
    with pytest.raises(hub.NotAnArchiveError):
        _extract(data[: len(data) // 2], tmp_path / "out")


def test_archive_sniffing() -> None:
    assert archive.looks_like_archive(b"\x1f\x8b\x08rest")
    plain = tar_of(file_member("a", b"1"), compress=False)
    assert archive.looks_like_archive(plain[:512])
    assert archive.looks_like_html(b"  <!DOCTYPE html><html>")
    assert not archive.looks_like_html(b"\x1f\x8b")


def test_extraction_reads_sequentially_once(my_mul_path: str, tmp_path: Path) -> None:
    class OneWayReader(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data, self.pos, self.reads = data, 0, 0

        def read(self, size: int = -1) -> bytes:
            self.reads += 1
            end = len(self.data) if size < 0 else self.pos + size
            chunk, self.pos = self.data[self.pos : end], min(end, len(self.data))
            return chunk

        def seek(self, *args: object) -> int:
            raise OSError("not seekable")

    reader = OneWayReader(pack_folder(my_mul_path))
    result = archive.extract(reader, tmp_path / "out", source="stream")
    assert "saved_model.pb" in result.files
    assert os.path.isdir(tmp_path / "out" / "variables")


def _plain_tar_of_folder(folder: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(os.path.join(folder, name), arcname=name)
    return out.getvalue()


def test_concatenated_gzip_members_and_trailing_padding(my_mul_path: str, tmp_path: Path) -> None:
    import gzip

    plain = _plain_tar_of_folder(my_mul_path)
    half = len(plain) // 2
    data = gzip.compress(plain[:half]) + gzip.compress(plain[half:]) + bytes(4096)
    result = _extract(data, tmp_path / "out")
    assert (tmp_path / "out" / "saved_model.pb").read_bytes() == (
        Path(my_mul_path) / "saved_model.pb"
    ).read_bytes()
    assert result.files["saved_model.pb"] == (Path(my_mul_path) / "saved_model.pb").stat().st_size


def test_other_compressions_tarfile_reads_still_work(my_mul_path: str, tmp_path: Path) -> None:
    import bz2

    result = _extract(bz2.compress(_plain_tar_of_folder(my_mul_path)), tmp_path / "out")
    assert "saved_model.pb" in result.files


def test_corrupt_gzip_is_not_an_archive(my_mul_path: str, tmp_path: Path) -> None:
    data = bytearray(pack_folder(my_mul_path))
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    with pytest.raises(hub.NotAnArchiveError):
        _extract(bytes(data), tmp_path / "out")


@pytest.mark.parametrize("fmt", ["bzip2", "xz"])
def test_bzip2_and_xz_archives_extract_like_gzip(
    my_mul_path: str, tmp_path: Path, fmt: str
) -> None:
    import bz2
    import gzip
    import lzma

    plain = gzip.decompress(pack_folder(my_mul_path))
    half = len(plain) // 2  # two concatenated streams, as parallel compressors write them
    compress = bz2.compress if fmt == "bzip2" else lzma.compress
    result = _extract(compress(plain[:half]) + compress(plain[half:]), tmp_path / "out")
    assert result.files == _extract(pack_folder(my_mul_path), tmp_path / "gz").files
    assert (tmp_path / "out/saved_model.pb").read_bytes() == Path(
        my_mul_path, "saved_model.pb"
    ).read_bytes()


_BOMB_IN_A_SUBPROCESS = """
import io, sys
from pathlib import Path
from savedhub import archive
from savedhub.errors import ArchiveLimitError
data = Path(sys.argv[1]).read_bytes()
try:
    archive.extract(io.BytesIO(data), Path(sys.argv[2]), source="bomb.tar.bz2")
except ArchiveLimitError as exc:
    print(exc)
status = Path("/proc/self/status").read_text().splitlines()
print(int(next(line for line in status if line.startswith("VmHWM")).split()[1]) // 1024)
"""


def test_a_bzip2_bomb_is_decompressed_in_bounded_pieces(tmp_path: Path) -> None:
    """256 MiB of zeros after the end of a tar, in a 200-byte bzip2 stream: tarfile's own
    ``r|*`` would inflate it in one piece; here memory stays flat and it is refused."""
    import bz2
    import subprocess
    import sys

    tar = tar_of(file_member("saved_model.pb", b"graph"), compress=False)
    (tmp_path / "bomb").write_bytes(bz2.compress(tar + bytes(256 * 2**20)))
    ran = subprocess.run(
        [sys.executable, "-c", _BOMB_IN_A_SUBPROCESS, str(tmp_path / "bomb"), str(tmp_path / "o")],
        capture_output=True,
        text=True,
        check=True,
    )
    refusal, peak_mib = ran.stdout.strip().splitlines()
    assert "follow the end of the tar archive" in refusal
    assert int(peak_mib) < 150, f"peak {peak_mib} MiB"


def _pax(records: dict[str, str], kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A pax extended header block and its records, written by hand."""
    body = b""
    for key, value in records.items():
        record = f" {key}={value}\n".encode()
        length = len(record) + len(str(len(record)))
        length += len(str(length)) - len(str(len(record)))
        body += str(length).encode() + record
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = kind, len(body)
    padding = b"\0" * (-len(body) % 512)
    return info.tobuf(format=tarfile.USTAR_FORMAT) + body + padding


def _member(name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data)
    return info.tobuf(format=tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)


@pytest.mark.parametrize(
    ("stream", "why"),
    [
        (_pax({"path": "a"}) + _pax({"path": "b"}) + _member("c", b"x"), "more than one"),
        (_pax({"size": "0"}, tarfile.XGLTYPE) + _member("c", b"x"), "global pax header"),
        (_pax({"GNU.sparse.size": "10"}) + _member("c", b"x"), "sparse"),
        (_member("c", b"x", tarfile.GNUTYPE_SPARSE), "sparse"),
        (_pax({"path": "a" * 300}) + _member("c", b"x"), "255 per part"),
        (_member("c", b"x") + bytes(1024) + bytes(9 * 2**20), "follow the end"),
    ],
    ids=["two-pax", "global-size", "pax-sparse", "gnu-sparse", "long-part", "trailing"],
)
def test_tar_headers_beyond_the_limits_are_refused(stream: bytes, why: str, tmp_path: Path) -> None:
    import gzip

    with pytest.raises(hub.errors.ArchiveLimitError, match=why):
        _extract(gzip.compress(stream, 1), tmp_path / "out")


def test_a_pax_size_is_what_counts(tmp_path: Path) -> None:
    """The pax ``size`` overrides the header's: the guard follows it as tarfile does."""
    data = b"y" * 3000
    stream = _pax({"size": str(len(data))}) + _member("c", b"")[:512] + data
    stream += b"\0" * (-len(data) % 512) + _member("d", b"z") + bytes(1024)
    limits = archive.ExtractLimits(max_bytes=2000, max_members=10)
    with pytest.raises(hub.errors.ArchiveLimitError, match="'c' would make it expand past"):
        archive.extract(io.BytesIO(stream), tmp_path / "small", source="t", limits=limits)
    result = archive.extract(io.BytesIO(stream), tmp_path / "out", source="t")
    assert result.files == {"c": 3000, "d": 1}
