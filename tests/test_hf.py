"""``hf://ORG/NAME[@REVISION]`` handles against a Hugging Face Hub on loopback.

The Hub is ``hfserver.FakeHub``: the model-info and file-resolve routes that
huggingface_hub calls, with ETags, ``X-Repo-Commit``, a redirect of the weights
to another origin, and a gated repository. all-MiniLM-L6-v2 (from the weights
package) is served under two commits and converted once per session; the
other checks use small random BERTs in sentence-transformers layout, compared
with the independent numpy reference (``minilm_reference.py``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import savedhub as hub
import tiny_bert
from hfserver import FakeHub
from minilm_reference import SentenceTransformerReference
from puthub import PutHub, put_hub
from savedhub.cli import main as cli_main
from savedhub.errors import (
    InvalidHandleError,
    ModelNotFoundError,
    NotCachedError,
    TransferError,
    UnsupportedSourceError,
)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TABLE = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
PUBLISHED = {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411}
TEXTS = [
    "The cat sat on the mat.",
    "the CAT runs, Paris is in France!",
    "Café naïve Dogs",
    "a [SEP] b",
    "the cat sat on the mat " * 5,  # longer than either max_seq_length
    "",
]
MINILM_NEEDED = {
    "config.json",
    "modules.json",
    "README.md",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "vocab.txt",
    "model.safetensors",
}


def _files(folder: Path) -> dict[str, bytes | Path]:
    """Every file of a folder, by repository path (big ones streamed from disk)."""
    return {
        p.relative_to(folder).as_posix(): (p if p.stat().st_size > 1 << 20 else p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def fake_hf(minilm_source: str) -> Iterator[FakeHub]:
    """The loopback Hub, with all-MiniLM-L6-v2 at commit A (main) and commit B."""
    fake = FakeHub()
    files = _files(Path(minilm_source))
    fake.minilm_a = fake.add_commit(MINILM, files)  # type: ignore[attr-defined]
    changed = {**files, "README.md": files["README.md"] + b"\nA later commit.\n"}  # type: ignore[operator]
    fake.minilm_b = fake.add_commit(MINILM, changed, branch=None)  # type: ignore[attr-defined]
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf-home")


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A savedhub cache shared by the tests that reuse the converted MiniLM."""
    return tmp_path_factory.mktemp("hf-cache")


def _hf_environment(mp: pytest.MonkeyPatch, fake: FakeHub, home: Path) -> None:
    mp.setenv("HF_ENDPOINT", fake.endpoint)
    mp.setenv("HF_HOME", str(home))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        mp.delenv(name, raising=False)
    mp.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import huggingface_hub.constants

    # huggingface_hub found its token file at import; the developer's must not be sent.
    mp.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(home / "no-token"))


@pytest.fixture(autouse=True)
def _hf_env(monkeypatch: pytest.MonkeyPatch, fake_hf: FakeHub, hf_home: Path) -> None:
    _hf_environment(monkeypatch, fake_hf, hf_home)


@pytest.fixture(scope="session")
def hf_minilm(fake_hf: FakeHub, hf_home: Path, session_cache: Path) -> str:
    """all-MiniLM-L6-v2 loaded by handle once: downloaded, converted and cached."""
    with pytest.MonkeyPatch.context() as mp:
        _hf_environment(mp, fake_hf, hf_home)
        fake_hf.clear_log()
        path = hub.resolve(f"hf://{MINILM}", cache_dir=session_cache)
        fake_hf.minilm_fetched = fake_hf.files_fetched(MINILM)  # type: ignore[attr-defined]
    return path


def _run_card_example(card: str) -> dict[str, object]:
    """Run the card's Python example as a user would paste it; returns its variables."""
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the card we just wrote
    assert isinstance(scope["layer"], hub.KerasLayer)
    return scope


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_minilm_by_handle_equals_hand_conversion_and_the_published_table(
    hf_minilm: str,
    minilm_path: str,
    fake_hf: FakeHub,
    session_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = hub.load(f"hf://{MINILM}", cache_dir=session_cache)
    vectors = model(tf.constant(TABLE + TEXTS)).numpy()
    by_hand = hub.load(minilm_path)(tf.constant(TABLE + TEXTS)).numpy()
    assert (_cosines(vectors, by_hand) >= 0.9999).all()
    similarity = vectors[:3] @ vectors[:3].T
    for (i, j), published in PUBLISHED.items():
        assert round(float(similarity[i, j]), 4) == published, (TABLE[i], TABLE[j])
    # Only what the converter reads was fetched (not .gitattributes, data_config.json ...).
    assert fake_hf.minilm_fetched == MINILM_NEEDED  # type: ignore[attr-defined]
    card = Path(hf_minilm, "README.md").read_text(encoding="utf-8")
    assert f"revision `{fake_hf.minilm_a}`" in card  # type: ignore[attr-defined]
    assert f"hf://{MINILM}" in card and fake_hf.endpoint in card and "Apache-2.0" in card
    # The card's example loads this very commit, by its pinned handle, from the cache.
    monkeypatch.setenv("SAVEDHUB_CACHE_DIR", str(session_cache))
    fake_hf.clear_log()
    example = _run_card_example(card)
    assert fake_hf.requests == []
    assert round(float(example["similarity"]), 4) == PUBLISHED[0, 1]  # the card's pair: TABLE[:2]


def test_a_pinned_commit_is_reused_without_a_request_after_main_moves(
    hf_minilm: str, fake_hf: FakeHub, session_cache: Path
) -> None:
    a, b = fake_hf.minilm_a, fake_hf.minilm_b  # type: ignore[attr-defined]
    fake_hf.repos[MINILM].refs["main"] = b
    try:
        fake_hf.clear_log()
        assert hub.resolve(f"hf://{MINILM}@{a}", cache_dir=session_cache) == hf_minilm
        assert fake_hf.requests == []  # a commit never changes: nothing to ask
        # main now names commit B: the handle asks which commit, and B is not converted.
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SAVEDHUB_OFFLINE", "1")
            with pytest.raises(NotCachedError, match="never resolved|not converted"):
                hub.resolve(f"hf://{MINILM}@{b}", cache_dir=session_cache)
    finally:
        fake_hf.repos[MINILM].refs["main"] = a


@pytest.mark.parametrize("variable", ["SAVEDHUB_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_serves_the_converted_copy_without_a_request(
    hf_minilm: str,
    fake_hf: FakeHub,
    session_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    monkeypatch.setenv(variable, "1")
    fake_hf.clear_log()
    assert hub.resolve(f"hf://{MINILM}", cache_dir=session_cache) == hf_minilm
    assert hub.resolve(f"hf://{MINILM}@main", cache_dir=session_cache) == hf_minilm
    assert fake_hf.requests == []
    with pytest.raises(NotCachedError, match="savedhub download hf://acme/never-seen"):
        hub.resolve("hf://acme/never-seen", cache_dir=session_cache)


def test_an_unreachable_hub_serves_the_converted_copy(
    hf_minilm: str, session_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubserver import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # a port nobody listens on
    monkeypatch.setenv("HF_ENDPOINT", dead)
    assert hub.resolve(f"hf://{MINILM}", cache_dir=session_cache) == hf_minilm
    with pytest.raises(TransferError, match="could not be reached"):
        hub.resolve("hf://acme/never-seen", cache_dir=session_cache)


def test_cli_download_prints_the_converted_folder(
    hf_minilm: str, fake_hf: FakeHub, session_cache: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "savedhub.cli",
            "download",
            f"hf://{MINILM}",
            "--json",
            "--cache-dir",
            str(session_cache),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["path"] == hf_minilm


def _variant_files(tmp: Path, name: str, **options: object) -> dict[str, bytes | Path]:
    return _files(tiny_bert.build(tmp / name, **options))  # type: ignore[arg-type]


def _check_against_reference(model: object, folder: Path, max_len: int) -> np.ndarray:
    reference = SentenceTransformerReference(folder)
    ids = model.tokenize(tf.constant(TEXTS)).to_list()  # type: ignore[attr-defined]
    assert ids == [reference.token_ids(t) for t in TEXTS]
    assert max(len(i) for i in ids) == max_len
    ours = model(tf.constant(TEXTS)).numpy()  # type: ignore[operator]
    theirs = reference.embed(TEXTS)
    assert (_cosines(ours, theirs) >= 0.9999).all()
    np.testing.assert_allclose(
        np.linalg.norm(ours, axis=1), np.linalg.norm(theirs, axis=1), rtol=1e-3
    )
    return ours


def test_unsupported_architecture_fails_after_fetching_only_its_config(
    fake_hf: FakeHub, tmp_path: Path
) -> None:
    files = _variant_files(tmp_path, "mpnet")
    config = json.loads(files["config.json"])  # type: ignore[arg-type]
    config.update(model_type="mpnet", architectures=["MPNetForMaskedLM"])
    fake_hf.add_commit("acme/mpnet-encoder", {**files, "config.json": json.dumps(config).encode()})
    fake_hf.clear_log()
    with pytest.raises(UnsupportedSourceError) as info:
        hub.resolve("hf://acme/mpnet-encoder")
    message = str(info.value)
    assert "'mpnet'" in message and "MPNetForMaskedLM" in message
    assert "it builds: bert" in message and "bge-*-en" in message
    assert fake_hf.files_fetched("acme/mpnet-encoder") == {"config.json"}
    assert not any(p.name.endswith(".savedhub.json") for p in (tmp_path / "cache").glob("*"))


def test_an_oversized_config_is_refused_before_it_is_read(
    fake_hf: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from savedhub.client import hf

    fake_hf.add_commit("acme/huge-config", _variant_files(tmp_path, "huge"))
    monkeypatch.setattr(hf, "SMALL_FILE_LIMIT", 64)
    with pytest.raises(UnsupportedSourceError, match="config.json is .* bytes, more than"):
        hub.resolve("hf://acme/huge-config")
    assert fake_hf.files_fetched("acme/huge-config") == {"config.json"}


def test_modules_json_cannot_point_outside_the_repository(fake_hf: FakeHub, tmp_path: Path) -> None:
    files = _variant_files(tmp_path, "escaping")
    modules = json.loads(files["modules.json"])  # type: ignore[arg-type]
    modules[1]["path"] = "../../../../etc"
    fake_hf.add_commit("acme/escaping", {**files, "modules.json": json.dumps(modules).encode()})
    with pytest.raises(UnsupportedSourceError, match="outside the repository"):
        hub.resolve("hf://acme/escaping")
    assert "model.safetensors" not in fake_hf.files_fetched("acme/escaping")


def test_gated_repository_needs_hf_token(
    fake_hf: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _variant_files(tmp_path, "gated")
    config = json.loads(files["config.json"])  # type: ignore[arg-type]
    config.update(model_type="xlm-roberta", architectures=["XLMRobertaModel"])
    files["config.json"] = json.dumps(config).encode()
    fake_hf.add_commit("acme/gated-encoder", files, gated_token="hf_right")
    with pytest.raises(TransferError, match="gated.*Set HF_TOKEN") as info:
        hub.resolve("hf://acme/gated-encoder")
    assert info.value.status == 401
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(TransferError, match="token in HF_TOKEN was sent but does not give access"):
        hub.resolve("hf://acme/gated-encoder")
    monkeypatch.setenv("HF_TOKEN", "hf_right")  # let in: now the architecture is what fails
    with pytest.raises(UnsupportedSourceError, match="'xlm-roberta'"):
        hub.resolve("hf://acme/gated-encoder")


def test_missing_repositories_revisions_and_bad_handles_say_what_is_wrong() -> None:
    with pytest.raises(ModelNotFoundError, match="No model repository 'acme/nothing-here'"):
        hub.resolve("hf://acme/nothing-here")
    with pytest.raises(ModelNotFoundError, match="has no revision 'v9'"):
        hub.resolve(f"hf://{MINILM}@v9")
    for bad in ("hf://just-a-name", "hf://a/b/c", "hf://a/b@"):
        with pytest.raises(InvalidHandleError, match="hf://ORG/NAME"):
            hub.resolve(bad)


def _resolve_in_processes(handle: str, count: int) -> list[tuple[str, bool, str]]:
    """``savedhub.resolve(handle)`` in ``count`` fresh processes that start together:
    (path, whether TensorFlow got imported, stderr) of each."""
    start = time.time() + 3  # all of them past their imports before any asks
    code = textwrap.dedent(
        f"""
        import json, logging, sys, time
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        import savedhub
        assert "huggingface_hub" not in sys.modules  # imported only for an hf:// handle
        time.sleep(max(0.0, {start} - time.time()))
        path = savedhub.resolve({handle!r})
        print(json.dumps([path, "tensorflow" in sys.modules]))
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(count)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        path, imported_tf = json.loads(out.strip().splitlines()[-1])
        results.append((path, imported_tf, err))
    return results


def test_eight_processes_convert_once_a_new_commit_converts_again_a_pin_holds_push(
    fake_hf: FakeHub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Commit 1, bge-style (CLS pooling, no Normalize, lower-cased, max_seq_length 16),
    is asked for by 8 processes at once: the cache's lock lets one convert, the others
    wait and load its result without importing TensorFlow. Commit 2 on main, cased with
    mean pooling, Normalize and max_seq_length 9, converts again; the handle pinned to
    commit 1 does not. Both match the numpy reference. ``savedhub push hf://...@commit1``
    then publishes the converted model with its card, and ``savedhub cache rm`` removes
    a commit's conversion by the name ``cache ls`` shows, then the rest by repository."""
    repo = "acme/tiny-encoder"
    sources = tmp_path / "sources"
    bge = tiny_bert.build(
        sources / "bge", cased=False, pooling="cls", normalize=False, max_seq_length=16, seed=1
    )
    first = fake_hf.add_commit(repo, _files(bge))
    fake_hf.clear_log()

    answers = _resolve_in_processes(f"hf://{repo}", 8)
    first_path = answers[0][0]
    assert {path for path, _, _ in answers} == {first_path}
    assert sum(err.count(f"converting {repo}") for _, _, err in answers) == 1
    assert sum(1 for _, imported_tf, _ in answers if imported_tf) == 1
    assert fake_hf.count("/model.safetensors", method="HEAD") == 1
    assert sum(1 for m, p in fake_hf.requests if p.startswith("/lfs/") and m == "GET") == 1

    caplog.set_level("INFO", logger="savedhub")
    ours = _check_against_reference(hub.load(f"hf://{repo}"), bge, 16)
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-3)  # no Normalize
    layer = hub.KerasLayer(f"hf://{repo}")
    np.testing.assert_allclose(layer(tf.constant(TEXTS)).numpy(), ours, atol=1e-5)
    card = Path(first_path, "README.md").read_text(encoding="utf-8")
    assert "the [CLS] token" in card and "L2" not in card and first in card
    pair = hub.load(f"hf://{repo}")(tf.constant(TABLE[:2])).numpy()  # the card's two sentences
    cosine = _run_card_example(card)["similarity"]  # normalises the vectors itself
    assert cosine == pytest.approx(float(_cosines(pair[:1], pair[1:])[0]), abs=1e-5)

    cased = tiny_bert.build(
        sources / "cased", cased=True, pooling="mean", normalize=True, max_seq_length=9, seed=2
    )
    second = fake_hf.add_commit(repo, _files(cased))
    _check_against_reference(hub.load(f"hf://{repo}"), cased, 9)
    assert hub.resolve(f"hf://{repo}@{second}") != first_path
    conversions = [r for r in caplog.records if r.getMessage().startswith("converting")]
    assert len(conversions) == 1, [r.getMessage() for r in conversions]  # commit 2 only

    fake_hf.clear_log()
    assert hub.resolve(f"hf://{repo}@{first}") == first_path
    assert fake_hf.requests == []

    # savedhub push hf://... publishes the converted model with its card.
    with put_hub() as base:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "savedhub.cli",
                "push",
                f"hf://{repo}@{first}",
                f"{base}/acme/tiny-encoder/1",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
            timeout=300,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    [(path, body)] = PutHub.received
    assert path == "/api/models/acme/tiny-encoder/1"
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        names = archive.getnames()
        card = archive.extractfile("README.md").read().decode()  # type: ignore[union-attr]
    assert "saved_model.pb" in names and "variables/variables.index" in names
    assert card == Path(first_path, "README.md").read_text(encoding="utf-8")

    # savedhub cache rm: by the commit `cache ls` shows, then the bare repository for the rest.
    assert cli_main(["cache", "rm", f"hf://{repo}@main"]) == 1
    assert "hf://ORG/NAME@SHA" in capsys.readouterr().out
    assert cli_main(["cache", "rm", f"hf://{repo}@{first}"]) == 0
    assert f"removed: hf://{repo}@{first}" in capsys.readouterr().out
    assert not Path(first_path).exists()
    assert hub.resolve(f"hf://{repo}@{second}")  # the other commit stays
    assert cli_main(["cache", "rm", f"hf://{repo}"]) == 0
    assert f"removed: hf://{repo}@{second}" in capsys.readouterr().out
    assert cli_main(["cache", "rm", f"hf://{repo}"]) == 1
