"""all-MiniLM-L6-v2 converted by ``savedhub.convert`` against an independent reference.

The reference (``minilm_reference.py``) is Hugging Face's ``tokenizers`` plus a
numpy BERT: it shares no code with the converter. The model is converted once
per session (``minilm_path`` in conftest.py); these tests skip when the weights
package is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import savedhub
import tiny_bert
from savedhub.convert import convert, sha256_of
from savedhub.errors import ModelNotFoundError, OutputExistsError, UnsupportedSourceError

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"

LONG_TEXT = " ".join(
    f"Sentence {i}: the café's naïve reviewer rated item #{i} at {i * 7 % 10}/10!"
    for i in range(40)
)

VARIED = [
    "The weather is lovely today.",
    "Crème brûlée, jalapeño, Ærøskøbing and São Paulo façade",
    "SHOUTING IN CAPITALS And MiXeD CaSe",
    "東京は日本の首都です。北京是中国的首都。",
    "Mixed 中文 and English, 한국어 텍스트",
    "Emoji 😀🎉👍🏽 and unknown \u2603\U0001f9ea\U00010348 symbols",
    "Wow!!!... really??? ---> (((nested))) [[brackets]] {{braces}} ...",
    "3.14159 1,000,000 2024-06-01 42nd +33 (0)1 23 45 67 89",
    "<p>Hello <b>world</b> &amp; <a href='https://x.io/?q=1'>link</a></p>",
    "tab\tseparated\tvalues\nnew line\r\nwindows line",
    "",
    "   ",
    "Full-width ＡＢＣ１２３, ligature ﬁne, superscript x², straße, İstanbul, ΣΊΣΥΦΟΣ",
    "zero\u200bwidth soft\u00adhyphen control\x07bell nbsp\xa0space e\u0301 combining",
    "A literal [SEP] token and [UNK] in the text, plus [cls] lowercase",
    "supercalifragilisticexpialidocious " + "x" * 120,
    LONG_TEXT,
]

TABLE = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
PUBLISHED = {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411}


@pytest.fixture(scope="session")
def reference(minilm_source: str):  # noqa: ANN201
    from minilm_reference import MiniLMReference

    return MiniLMReference(minilm_source)


@pytest.fixture(scope="session")
def minilm(minilm_path: str):  # noqa: ANN201
    return savedhub.load(minilm_path)


def test_weights_are_the_published_revision(minilm_source: str, minilm_path: str) -> None:
    assert sha256_of(os.path.join(minilm_source, "model.safetensors")) == MINILM_SHA256
    card = Path(minilm_path, "README.md").read_text(encoding="utf-8")
    for fact in (
        MINILM_SHA256,
        MINILM_REVISION,
        "sentence-transformers/all-MiniLM-L6-v2",
        "Apache-2.0",
        "hub.load(",
        "savedhub[text]",
    ):
        assert fact in card


def test_embeddings_match_reference_on_varied_set(minilm, reference) -> None:  # noqa: ANN001
    ours = minilm(tf.constant(VARIED))
    assert ours.dtype == tf.float32
    assert ours.shape == (len(VARIED), 384)
    ours = ours.numpy()
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    theirs = reference.embed(VARIED)
    cosines = (ours * theirs).sum(axis=1)
    for text, cosine in zip(VARIED, cosines, strict=True):
        assert cosine >= 0.9999, (text[:60], cosine)


def test_token_ids_match_reference_including_truncation(minilm, reference) -> None:  # noqa: ANN001
    ids = minilm.tokenize(tf.constant(VARIED)).to_list()
    for text, got in zip(VARIED, ids, strict=True):
        assert got == reference.token_ids(text), text[:60]
    assert reference.tokenizer.encode(LONG_TEXT).overflowing  # the reference truncated it too
    assert len(ids[-1]) == 256 and ids[-1][-1] == 102  # truncated to 254 pieces + [CLS] + [SEP]


def test_published_similarity_table(minilm) -> None:  # noqa: ANN001
    vectors = minilm(tf.constant(TABLE)).numpy()
    similarity = vectors @ vectors.T
    for (i, j), published in PUBLISHED.items():
        assert round(float(similarity[i, j]), 4) == published, (TABLE[i], TABLE[j])


def test_tokenizer_matches_reference_on_every_long_assigned_character(minilm, reference) -> None:  # noqa: ANN001
    """Each character assigned since Unicode 3.2 (same category today), alone and inside a word.

    Characters assigned later are left out: `tokenizers` classifies them with
    older Unicode tables than Python's (see savedhub/convert/_chartable.py).
    """
    old = unicodedata.ucd_3_2_0
    chars = [
        chr(cp)
        for cp in range(0x30000)
        if not 0xD800 <= cp <= 0xDFFF
        and old.category(chr(cp)) != "Cn"
        and old.category(chr(cp)) == unicodedata.category(chr(cp))
        and (cp < 0x3400 or cp % 5 == 0)  # CJK and Hangul blocks: every 5th
    ]
    texts = [f"ab{c}Cd {c}" for c in chars]
    ours = minilm.tokenize(tf.constant(texts)).to_list()
    theirs = [e.ids for e in reference.tokenizer.encode_batch(texts)]
    wrong = [hex(ord(c)) for c, a, b in zip(chars, ours, theirs, strict=True) if a != b]
    assert len(chars) > 20000
    assert wrong == []


def test_reusable_savedmodel_interface(minilm) -> None:  # noqa: ANN001
    assert len(minilm.variables) == 5 + 6 * 12
    assert len(minilm.trainable_variables) == len(minilm.variables)
    assert sum(int(np.prod(v.shape)) for v in minilm.variables) > 22_000_000
    assert list(minilm.regularization_losses) == []
    texts = tf.constant(TABLE)
    plain = minilm(texts).numpy()
    np.testing.assert_array_equal(minilm(texts, training=False).numpy(), plain)
    served = minilm.signatures["serving_default"](inputs=texts)
    np.testing.assert_allclose(served["outputs"].numpy(), plain, atol=1e-6)


def test_encode_takes_the_ids_tokenize_gives(minilm) -> None:  # noqa: ANN001
    """The two halves of a call, as the benchmark times them: tokenizer, then encoder."""
    texts = tf.constant(VARIED[:6])
    ids = minilm.tokenize(texts)
    np.testing.assert_allclose(minilm.encode(ids).numpy(), minilm(texts).numpy(), atol=1e-6)
    assert minilm.encode(minilm.tokenize(tf.constant([], tf.string))).shape == (0, 384)


def test_dropout_only_in_training(minilm) -> None:  # noqa: ANN001
    texts = tf.constant(TABLE)
    plain = minilm(texts, training=False).numpy()
    first = minilm(texts, training=True).numpy()
    second = minilm(texts, training=True).numpy()
    assert not np.allclose(first, plain, atol=1e-4)
    assert not np.allclose(first, second, atol=1e-4)
    assert ((first * plain).sum(axis=1) > 0.8).all()  # dropout perturbs, it does not scramble


def test_moved_copy_loads_and_gives_same_outputs(minilm, minilm_path: str, tmp_path: Path) -> None:  # noqa: ANN001
    expected = minilm(tf.constant(VARIED[:6])).numpy()
    copy = tmp_path / "copy"
    shutil.copytree(minilm_path, copy)
    moved = tmp_path / "elsewhere" / "minilm"
    moved.parent.mkdir()
    os.rename(copy, moved)
    original = Path(minilm_path)
    hidden = original.with_name(original.name + ".hidden")
    os.rename(original, hidden)  # nothing may still point at the original folder
    try:
        again = savedhub.load(str(moved))
        np.testing.assert_allclose(again(tf.constant(VARIED[:6])).numpy(), expected, atol=1e-6)
    finally:
        os.rename(hidden, original)


def test_large_batches_give_the_same_vectors_in_the_same_order(minilm) -> None:  # noqa: ANN001
    small = minilm(tf.constant(VARIED)).numpy()
    order = np.random.default_rng(0).permutation(len(VARIED) * 4) % len(VARIED)
    large = minilm(tf.constant([VARIED[i] for i in order])).numpy()  # 68 rows: sorted chunks
    np.testing.assert_allclose(large, small[order], atol=2e-5)
    assert minilm(tf.constant([], tf.string)).shape == (0, 384)


def test_fine_tuned_weights_survive_re_export(minilm_path: str, tmp_path: Path) -> None:
    model = savedhub.load(minilm_path)  # a fresh copy: this test changes its weights
    texts = tf.constant(TABLE)
    before = model(texts).numpy()
    with tf.GradientTape() as tape:
        vectors = model(texts, training=True)
        loss = tf.reduce_sum(vectors[0] * vectors[2])  # push two unrelated sentences apart
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    for variable, grad in zip(model.trainable_variables, grads, strict=True):
        variable.assign_sub(0.05 * tf.convert_to_tensor(grad))
    tuned = model(texts).numpy()
    assert float(tuned[0] @ tuned[2]) < float(before[0] @ before[2])

    tf.saved_model.save(model, str(tmp_path / "tuned"), signatures=model.signatures)
    again = savedhub.load(str(tmp_path / "tuned"))
    np.testing.assert_allclose(again(texts).numpy(), tuned, atol=1e-6)
    served = again.signatures["serving_default"](inputs=texts)["outputs"]
    np.testing.assert_allclose(served.numpy(), tuned, atol=1e-6)


def _sentence_transformers_copy(minilm_source: str, dest: Path) -> Path:
    """The source folder's small files, with the weights linked rather than copied."""
    dest.mkdir()
    for name in os.listdir(minilm_source):
        path = os.path.join(minilm_source, name)
        if name == "model.safetensors":
            os.symlink(path, dest / name)
        elif os.path.isdir(path):
            shutil.copytree(path, dest / name)
        else:
            shutil.copy(path, dest / name)
    return dest


def test_unsupported_sources_are_refused_with_what_was_found(
    minilm_source: str, tmp_path: Path
) -> None:
    roberta = _sentence_transformers_copy(minilm_source, tmp_path / "roberta")
    config = json.loads((roberta / "config.json").read_text())
    config["model_type"] = "roberta"
    (roberta / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedSourceError, match="model_type 'roberta'") as info:
        convert(roberta, tmp_path / "out")
    assert str(roberta) in str(info.value) and "Supported:" in str(info.value)

    dense = _sentence_transformers_copy(minilm_source, tmp_path / "dense")
    modules = json.loads((dense / "modules.json").read_text())
    modules.insert(
        2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (dense / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UnsupportedSourceError, match="sentence_transformers.models.Dense"):
        convert(dense, tmp_path / "out")

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "weights.h5").write_bytes(b"")
    with pytest.raises(UnsupportedSourceError, match=r"no modules\.json.*weights\.h5"):
        convert(plain, tmp_path / "out")

    with pytest.raises(ModelNotFoundError, match="not a folder"):
        convert(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_folder_without_tokenizer_json_reads_the_same_tokenizer(
    minilm_source: str, tmp_path: Path
) -> None:
    """Older sentence-transformers folders have only vocab.txt and tokenizer_config.json."""
    from dataclasses import replace

    from savedhub.convert import read_source

    older = _sentence_transformers_copy(minilm_source, tmp_path / "older")
    (older / "tokenizer.json").unlink()
    expected = read_source(minilm_source).tokenizer
    got = read_source(older).tokenizer
    assert replace(got, vocab_file=expected.vocab_file) == expected


@pytest.mark.parametrize(
    "module, package", [("tensorflow_text", "tensorflow-text"), ("safetensors", "safetensors")]
)
def test_converting_without_a_needed_package_says_what_to_install(
    minilm_source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # importlib now reports it as not installed
    with pytest.raises(savedhub.MissingPackageError) as info:
        convert(minilm_source, tmp_path / "out")
    assert f"pip install {package}" in str(info.value) and "savedhub[convert]" in str(info.value)
    assert info.value.package == package
    assert not isinstance(info.value, savedhub.MissingOpError)  # no op is missing, a package is
    assert os.listdir(tmp_path) == []


def test_refuses_to_overwrite_a_non_empty_output(minilm_source: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty"):
        convert(minilm_source, out)
    assert os.listdir(out) == ["keep.txt"]
    assert os.listdir(tmp_path) == ["out"]  # no work folder left behind
    copy = _sentence_transformers_copy(minilm_source, tmp_path / "copy")
    files = sorted(os.listdir(copy))
    for overlapping in (copy, copy / "converted", tmp_path):
        with pytest.raises(OutputExistsError, match="overlaps the source"):
            convert(copy, overlapping, overwrite=True)
    assert sorted(os.listdir(copy)) == files


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAVEDHUB_", "TFHUB_"))}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_load_imports_tensorflow_text_for_the_user(minilm, minilm_path: str) -> None:  # noqa: ANN001
    expected = minilm(tf.constant(TABLE)).numpy()
    result = _run_python(
        f"""
        import json, sys
        import savedhub
        obj = savedhub.load({minilm_path!r})
        assert "tensorflow_text" in sys.modules
        print(json.dumps(obj({TABLE!r}).numpy().tolist()))
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = np.array(json.loads(result.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_missing_tensorflow_text_names_op_package_and_extra(minilm_path: str) -> None:
    result = _run_python(
        f"""
        import sys

        # As if tensorflow-text were not installed: importing it fails and
        # importlib.util.find_spec("tensorflow_text") returns None.
        sys.modules["tensorflow_text"] = None
        import savedhub
        try:
            savedhub.load({minilm_path!r})
        except savedhub.MissingOpError as exc:
            print("MissingOpError:", exc)
            print("op:", exc.op, "package:", exc.package)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MissingOpError:" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "WordpieceTokenizeWithOffsets" in result.stdout
    assert "pip install tensorflow-text" in result.stdout
    assert "savedhub[text]" in result.stdout
    assert "package: tensorflow-text" in result.stdout


def test_a_users_own_cased_bert_converts_over_an_existing_folder(tmp_path: Path) -> None:
    from minilm_reference import MiniLMReference

    source = tiny_bert.build(tmp_path / "tiny")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("an earlier conversion")
    assert convert(source, out, overwrite=True) == str(out)
    assert not (out / "old.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny"]  # no work folders left
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Licence: MIT" in card and sha256_of(source / "model.safetensors") in card

    texts = [
        "The cat sat on the mat.",
        "the CAT runs, Paris is in France!",
        "Café naïve Dogs",  # cased: accents stay, so 'Café' splits into pieces
        "a [SEP] b",
        "the cat sat on the mat " * 4,  # longer than max_seq_length 12
        "",
    ]
    reference = MiniLMReference(source)
    model = savedhub.load(str(out))
    ids = model.tokenize(tf.constant(texts)).to_list()
    assert ids == [reference.token_ids(t) for t in texts]
    assert max(len(i) for i in ids) == 12
    ours = model(tf.constant(texts)).numpy()
    assert ours.shape == (len(texts), 32)
    cosines = (ours * reference.embed(texts)).sum(axis=1)
    assert (cosines >= 0.9999).all(), cosines
