"""The hub's protocol answers under hostile or unusual requests: byte ranges with
positions of any length, ``If-None-Match`` per RFC 9110, integer versions,
``nosniff`` everywhere, the public URL and the ``Host`` check, README pages that
never stall other requests, and the uncompressed format served by the hub itself.
Each test drives a real ``savedhub serve`` subprocess on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hubserver import RunningHub, running_hub
from savedhub.errors import InvalidHandleError
from savedhub.publish.pack import pack
from savedhub.publish.push import push

TOKEN = "tok-protocol"
HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    base = tmp_path_factory.mktemp("protocol-hub")
    tokens = base / "tokens.txt"
    tokens.write_text(f"{TOKEN}\n")
    with running_hub(base / "root", base, tokens_file=tokens) as running:
        yield running


@pytest.fixture(scope="module")
def archive(my_mul_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(pack(my_mul_path, tmp_path_factory.mktemp("packed") / "mul.tar.gz").path)


@pytest.fixture(scope="module")
def published(hub: RunningHub, archive: Path) -> str:
    """The URL of acme/mul/1 on the hub."""
    url = f"{hub.url}/acme/mul/1"
    push(archive, url, token=TOKEN)
    return url


def test_range_positions_of_any_length_never_fail(published: str, archive: Path) -> None:
    url = f"{published}?tf-hub-format=compressed"
    data = archive.read_bytes()
    size = len(data)
    huge = "9" * 5000

    past_the_end = httpx.get(url, headers={"Range": f"bytes={huge}-"})
    assert past_the_end.status_code == 416
    assert past_the_end.headers["content-range"] == f"bytes */{size}"
    assert httpx.get(url, headers={"Range": f"bytes={huge}-{huge}"}).status_code == 416

    whole_suffix = httpx.get(url, headers={"Range": f"bytes=-{huge}"})
    assert whole_suffix.status_code == 206 and whole_suffix.content == data
    to_the_end = httpx.get(url, headers={"Range": f"bytes=0-{huge}"})
    assert to_the_end.status_code == 206 and to_the_end.content == data
    padded = httpx.get(url, headers={"Range": f"bytes={'0' * 5000}7-"})
    assert padded.status_code == 206 and padded.content == data[7:]
    backwards = httpx.get(url, headers={"Range": f"bytes={huge}-1"})  # invalid: ignored
    assert backwards.status_code == 200 and backwards.content == data


def test_if_none_match_takes_lists_weak_tags_and_star(published: str) -> None:
    url = f"{published}?tf-hub-format=compressed"
    etag = httpx.head(url).headers["etag"]
    for header in (etag, f'"other", {etag}', f"W/{etag}", f'W/"x",W/{etag}', "*"):
        answer = httpx.get(url, headers={"If-None-Match": header})
        assert answer.status_code == 304, header
        assert answer.content == b"" and answer.headers["etag"] == etag
    assert httpx.get(url, headers={"If-None-Match": etag, "Range": "bytes=0-9"}).status_code == 304
    for header in ('"other"', 'W/"other", "x"', "", "garbage"):
        assert httpx.get(url, headers={"If-None-Match": header}).status_code == 200, header


def test_every_response_says_nosniff(hub: RunningHub, published: str) -> None:
    archive = f"{published}?tf-hub-format=compressed"
    answers = [
        httpx.get(archive),
        httpx.head(archive),
        httpx.get(archive, headers={"Range": "bytes=0-9"}),
        httpx.get(archive, headers={"Range": "bytes=999999999-"}),
        httpx.get(archive, headers={"If-None-Match": "*"}),
        httpx.get(published),
        httpx.get(published, headers=HTML),
        httpx.get(f"{hub.url}/api/models"),
        httpx.get(f"{hub.url}/acme/nope/1"),
        httpx.get(f"{hub.url}/acme/nope/1", headers=HTML),
        httpx.get(f"{published}?tf-hub-format=zip"),
        httpx.get(f"{hub.url}/static/style.css"),
        httpx.get(f"{hub.url}/a/b/c/d/e/f"),
        httpx.post(f"{hub.url}/api/models"),
        httpx.put(f"{hub.url}/api/models/acme/mul/2", content=b"x"),
    ]
    statuses = sorted({a.status_code for a in answers})
    assert statuses == [200, 206, 304, 400, 401, 404, 405, 416]
    for answer in answers:
        assert answer.headers.get("x-content-type-options") == "nosniff", answer.request.url


def test_versions_are_positive_integers_ordered_as_numbers(hub: RunningHub, archive: Path) -> None:
    for version in ("1", "2", "10"):
        push(archive, f"{hub.url}/acme/numbered/{version}", token=TOKEN)
    # A folder a hand or an older server left, not named by an integer: not a version.
    (hub.root / "acme/numbered/v11").mkdir()
    listed = httpx.get(f"{hub.url}/api/models/acme/numbered").json()
    assert listed["latest"] == "10" and [v["version"] for v in listed["versions"]] == [
        "1",
        "2",
        "10",
    ]
    redirect = httpx.get(f"{hub.url}/acme/numbered?tf-hub-format=compressed")
    assert redirect.headers["location"].endswith("/acme/numbered/10?tf-hub-format=compressed")

    body = archive.read_bytes()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for version in ("v1", "1.0", "01", "0", "-1", "1e3", "9" * 19):
        put = httpx.put(f"{hub.url}/api/models/acme/numbered/{version}", content=body, headers=auth)
        assert put.status_code == 400, version
        assert "positive integers" in put.json()["error"], version
        for url in (
            f"{hub.url}/acme/numbered/{version}?tf-hub-format=compressed",
            f"{hub.url}/acme/numbered/{version}",
            f"{hub.url}/api/models/acme/numbered/{version}",
        ):
            answer = httpx.get(url)
            assert answer.status_code == 400 and "positive integers" in answer.json()["error"]
    with pytest.raises(InvalidHandleError, match="positive integers"):  # before uploading
        push(archive, f"{hub.url}/acme/numbered/1.0", token=TOKEN)
    page = httpx.get(f"{hub.url}/acme/numbered/v11", headers=HTML)
    assert page.status_code == 400 and "positive integers" in page.text
    assert [p.name for p in (hub.root / "acme/numbered").iterdir()].count("1.0") == 0


def _wide_table(columns: int, size: int) -> str:
    """A Markdown table ``columns`` wide, with rows of one-character cells up to ``size``."""
    lines = ["|" + "|".join(f"c{i}" for i in range(columns)) + "|", "|" + "-|" * columns]
    row = "|" + "x|" * columns
    lines += [row] * (size // len(row))
    return "\n".join(lines) + "\n"


def _with_readme(model: str, folder: Path, readme: str) -> Path:
    import shutil

    shutil.copytree(model, folder)
    (folder / "README.md").write_text(readme)
    return Path(pack(folder, folder.with_suffix(".tar.gz")).path)


def test_a_huge_readme_is_capped_and_never_stalls_other_requests(
    hub: RunningHub, my_mul_path: str, tmp_path: Path
) -> None:
    import threading

    wide = "# Wide\n\nA model with a very wide table.\n\n" + _wide_table(5000, 2**20)
    result = push(
        _with_readme(my_mul_path, tmp_path / "wide", wide), f"{hub.url}/docs/wide/1", token=TOKEN
    )
    codes = [w["code"] for w in result.metadata["warnings"]]
    assert "readme-too-long" in codes and "readme-table-too-large" in codes
    page = httpx.get(f"{hub.url}/docs/wide/1", headers=HTML, timeout=120)
    assert page.status_code == 200 and "A model with a very wide table." in page.text
    assert "the hub shows its first 64.0 KiB" in page.text and "shown as text" in page.text
    assert len(page.content) < 2**20

    # The costliest Markdown within the limits (a long list: ~1 s or more to render here),
    # as three versions, so three first views render at once.
    costly = _with_readme(my_mul_path, tmp_path / "costly", "- a\n" * 16000)
    for version in ("2", "3", "4"):
        push(costly, f"{hub.url}/docs/wide/{version}", token=TOKEN)
    finished: list[str] = []

    def view(version: str) -> None:
        answer = httpx.get(f"{hub.url}/docs/wide/{version}", headers=HTML, timeout=300)
        finished.append(f"page {version}: {answer.status_code}")

    viewers = [threading.Thread(target=view, args=(v,)) for v in ("2", "3", "4")]
    for viewer in viewers:
        viewer.start()
    threading.Event().wait(0.5)  # let the renders begin (ordering only, not a timing check)
    probe = httpx.get(f"{hub.url}/api/models/docs/wide", timeout=60)  # generous hang guard
    finished.append(f"probe: {probe.status_code}")
    for viewer in viewers:
        viewer.join(timeout=300)
    assert finished[0] == "probe: 200", finished
    assert sorted(finished[1:]) == ["page 2: 200", "page 3: 200", "page 4: 200"]


def test_the_host_header_is_checked_before_any_page_or_redirect_uses_it(
    hub: RunningHub, published: str
) -> None:
    port = hub.url.rsplit(":", 1)[1]
    assert "Answering requests for Host 127.0.0.1, ::1, localhost" in hub.output()
    forged = httpx.get(published, headers={**HTML, "Host": "evil.example"})
    assert forged.status_code == 400 and "'evil.example'" in forged.json()["error"]
    assert "--allowed-hosts" in forged.json()["error"] and "--public-url" in forged.json()["error"]
    assert forged.headers["x-content-type-options"] == "nosniff"
    redirect = httpx.get(
        f"{hub.url}/acme/mul?tf-hub-format=compressed", headers={"Host": "evil.example:80"}
    )
    assert redirect.status_code == 400
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST"):
        page = httpx.get(published, headers={**HTML, "Host": host})
        assert page.status_code == 200, host
        assert f'hub.KerasLayer("http://{host}/acme/mul/1")' in page.text


def test_public_url_sets_every_link_and_allowed_hosts_the_names_answered(
    archive: Path, tmp_path: Path
) -> None:
    (tmp_path / "tokens").write_text(f"{TOKEN}\n")
    flags = ("--public-url", "https://Models.Example.org/", "--allowed-hosts", "hub.internal")
    with running_hub(tmp_path / "root", tmp_path, tmp_path / "tokens", extra_args=flags) as hub:
        assert "pages and redirects use https://models.example.org" in hub.output()
        internal = {"Host": "hub.internal"}
        put = httpx.put(
            f"{hub.url}/api/models/acme/mul/1",
            content=archive.read_bytes(),
            headers={**internal, "Authorization": f"Bearer {TOKEN}"},
            timeout=120,
        )
        assert put.status_code == 201
        assert put.headers["location"] == "https://models.example.org/acme/mul/1"
        page = httpx.get(f"{hub.url}/acme/mul", headers={**HTML, **internal})
        assert 'hub.KerasLayer("https://models.example.org/acme/mul/1")' in page.text
        latest = httpx.get(f"{hub.url}/acme/mul?tf-hub-format=compressed", headers=internal)
        assert latest.status_code == 302
        assert latest.headers["location"] == (
            "https://models.example.org/acme/mul/1?tf-hub-format=compressed"
        )
        listed = httpx.get(f"{hub.url}/api/models", headers=internal).json()["models"]
        assert listed[0]["url"] == "https://models.example.org/acme/mul"
        # Only the names given are answered now: not even the bound address.
        assert httpx.get(f"{hub.url}/api/models").status_code == 400
        assert httpx.get(f"{hub.url}/api/models", headers={"Host": "evil"}).status_code == 400


def test_a_public_url_that_is_not_a_base_url_is_refused_at_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    for bad in ("ftp://models.example.org", "https://models.example.org/hub", "models.example"):
        command = [sys.executable, "-m", "savedhub.cli", "serve", str(tmp_path), "--port", "1"]
        done = subprocess.run([*command, "--public-url", bad], capture_output=True, text=True)
        assert done.returncode != 0 and "--public-url" in done.stderr, done.stderr


def test_uncompressed_format_sends_clients_to_files_the_hub_serves(
    hub: RunningHub, published: str, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import json
    import tarfile

    import savedhub

    answer = httpx.get(f"{published}?tf-hub-format=uncompressed")
    assert answer.status_code == 303
    assert answer.text == answer.headers["location"] == f"{published}/files"
    assert str(hub.root) not in answer.text  # never the server's own paths

    listed = {f["path"]: f for f in httpx.get(answer.text).json()["files"]}
    with tarfile.open(archive) as tar:
        packed = {
            m.name.removeprefix("./"): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar
            if m.isfile()
        }
    assert sorted(listed) == sorted(packed) and "saved_model.pb" in listed
    for path, entry in listed.items():
        served = httpx.get(entry["url"])
        assert served.status_code == 200 and served.content == packed[path], path
        assert entry["size"] == len(packed[path])
    first = httpx.get(listed["saved_model.pb"]["url"], headers={"Range": "bytes=0-3"})
    assert first.status_code == 206 and first.content == packed["saved_model.pb"][:4]
    for outside in ("nope.pb", "..%2Fmetadata.json", "%2e%2e/%2e%2e/acme", "variables"):
        assert httpx.get(f"{published}/files/{outside}").status_code == 404, outside
    assert httpx.get(f"{hub.url}/acme/mul/v1/files").status_code == 400

    # savedhub's client downloads the listed files into its cache, then loads from there.
    cache = tmp_path / "cache"
    monkeypatch.setenv("SAVEDHUB_CACHE_DIR", str(cache))
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "UNCOMPRESSED")
    folder = Path(savedhub.resolve(published))
    assert cache in folder.parents and (folder / "saved_model.pb").is_file()
    assert float(savedhub.load(f"{hub.url}/acme/mul")(2.0)) == 4.0
    # The cache's manifest holds each file's SHA-256, taken as it arrived, as for an archive.
    manifests = [json.loads(p.read_text()) for p in cache.glob("*.savedhub.json")]
    assert manifests  # the versioned URL, and the unversioned one that redirects to it
    for manifest in manifests:
        assert manifest["sha256"] == {p: hashlib.sha256(b).hexdigest() for p, b in packed.items()}
    monkeypatch.setenv("SAVEDHUB_OFFLINE", "1")
    assert Path(savedhub.resolve(published)) == folder


def test_version_records_are_read_one_way_and_damaged_ones_are_skipped(
    hub: RunningHub, published: str
) -> None:
    import json
    import shutil

    record = httpx.get(f"{hub.url}/api/models/acme/mul/1").json()["metadata"]
    assert record["format_name"] and "format_name" not in record["info"]
    stored = json.loads((hub.root / "acme/mul/1/metadata.json").read_text())
    assert stored == record

    # A hand-damaged copy: a record missing its digest, and one naming another version.
    for version, change in (("7", {"archive": {"size": 1}}), ("8", {"version": "1"})):
        shutil.copytree(hub.root / "acme/mul/1", hub.root / f"acme/mul/{version}")
        damaged = {**stored, "version": version, **change}
        (hub.root / f"acme/mul/{version}/metadata.json").write_text(json.dumps(damaged))
        assert (
            httpx.get(f"{hub.url}/acme/mul/{version}?tf-hub-format=compressed").status_code == 404
        )
    assert httpx.get(f"{hub.url}/api/models/acme/mul").json()["latest"] == "1"
    assert httpx.get(f"{hub.url}/", headers=HTML).status_code == 200
