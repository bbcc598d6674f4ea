"""Other model formats -> Reusable SavedModel.

Two families, told apart by what ``src`` is:

- a folder: a sentence-transformers BERT model (for example
  ``sentence-transformers/all-MiniLM-L6-v2``) becomes a SavedModel that maps
  strings to sentence embeddings, tokenizer included (``_source``, ``_bert``, ``_card``);
- a file: a PyTorch EfficientNet-Lite0 checkpoint becomes an image classifier or
  feature vector in TF Hub's image interface (``_image_source``, ``_torch_checkpoint``,
  ``_efficientnet``, ``_image_card``), read without torch and without running its pickle.

The result is packed, pushed and loaded like any hub model::

    from savedhub.convert import convert

    convert("all-MiniLM-L6-v2/", "minilm_savedmodel/")
    embed = savedhub.load("minilm_savedmodel/")
    embed(["a sentence", "another one"])   # float32 [2, 384], unit length

    convert("efficientnet-lite0-57934424.pth", "lite0_features/", head="feature_vector")

TensorFlow, tensorflow-text and safetensors are imported only when
:func:`convert` runs, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from savedhub._io.atomic import replace_folder
from savedhub._io.digest import file_sha256 as sha256_of
from savedhub.convert._card import Origin
from savedhub.convert._image_source import (
    HEADS,
    SUPPORTED_IMAGE,
    ImageSource,
    read_image_source,
)
from savedhub.convert._source import (
    SUPPORTED,
    SUPPORTED_ARCHITECTURES,
    BertSource,
    ModuleLayout,
    check_pooling_config,
    check_transformer_config,
    read_layout,
    read_source,
)
from savedhub.errors import MissingPackageError, OutputExistsError, UnsupportedSourceError

__all__ = [
    "CONVERTER_VERSION",
    "HEADS",
    "SUPPORTED",
    "SUPPORTED_ARCHITECTURES",
    "SUPPORTED_IMAGE",
    "BertSource",
    "ImageSource",
    "ModuleLayout",
    "Origin",
    "check_pooling_config",
    "check_transformer_config",
    "convert",
    "convert_source",
    "read_image_source",
    "read_layout",
    "read_source",
    "sha256_of",
]

log = logging.getLogger("savedhub")

CARD_FILE = "README.md"

# Part of the cache key of models converted from hf:// handles: raise it whenever a
# converted SavedModel would come out different (graph, weights layout, card), so
# caches convert again instead of serving the old output.
CONVERTER_VERSION = 1


def _require(module: str, pip_name: str, extra: str, src: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingPackageError(
            f"Converting {src!r} needs the package {pip_name!r}, which is not installed. "
            f"Install it with: pip install {pip_name} (or pip install 'savedhub[{extra}]').",
            package=pip_name,
        )


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(
            f"Cannot write the converted model to {str(out)!r}: it is a file. "
            "Choose a folder path that does not exist yet.",
            str(out),
        )
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"Cannot write the converted model to {str(out)!r}: the folder is not empty. "
            "Choose another folder, or pass overwrite=True (savedhub convert --overwrite) "
            "to replace it.",
            str(out),
        )


def _write_saved_model(source: BertSource, work: Path, origin: Origin | None = None) -> None:
    import tensorflow as tf
    from safetensors.numpy import load_file

    from savedhub import __version__
    from savedhub.convert._bert import SentenceEncoder
    from savedhub.convert._card import model_card
    from savedhub.convert._chartable import build_char_table

    table = build_char_table(source.tokenizer.normalizer, source.tokenizer.special_tokens)
    encoder = SentenceEncoder(source, table, load_file(source.weights_file))
    tf.saved_model.save(encoder, str(work), signatures={"serving_default": encoder.serve})
    (work / CARD_FILE).write_text(model_card(source, __version__, origin), encoding="utf-8")


def convert_source(source: BertSource, work: str | os.PathLike[str], origin: Origin) -> None:
    """Write the SavedModel and card of an already read ``source`` into the new folder
    ``work`` (a cache work folder: the caller renames it into place).

    Raises:
        MissingPackageError: tensorflow-text or safetensors is not installed.
    """
    _require("tensorflow_text", "tensorflow-text", "hf", origin.requested)
    _require("safetensors", "safetensors", "hf", origin.requested)
    log.info("converting %s (commit %s) for %s", origin.repo, origin.revision, origin.requested)
    _write_saved_model(source, Path(work), origin)


def _write_image_model(source: ImageSource, head: str, work: Path) -> None:
    import tensorflow as tf

    from savedhub import __version__
    from savedhub.convert._efficientnet import EfficientNetLite
    from savedhub.convert._image_card import LABELS_ASSET, image_model_card

    labels = None
    if head == "classification" and source.num_classes == 1000:
        labels = str(Path(__file__).with_name(LABELS_ASSET))
    model = EfficientNetLite(source, head, labels)
    tf.saved_model.save(model, str(work), signatures={"serving_default": model.serve})
    card = image_model_card(source, head, __version__)
    (work / CARD_FILE).write_text(card, encoding="utf-8")


def _image_writer(src: str, head: str | None) -> Callable[[Path], None]:
    """How to write the image checkpoint ``src``, refused early if it is not one we convert."""
    head = head or "classification"
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, not {head!r}")
    source = read_image_source(src)
    log.info("converting %s (sha256 %s) as an image %s", source.path, source.sha256, head)
    return lambda work: _write_image_model(source, head, work)


def _text_writer(src: str, target: Path, head: str | None) -> Callable[[Path], None]:
    """How to write the sentence-transformers folder ``src``, refused early if it cannot be."""
    if head is not None:
        raise UnsupportedSourceError(
            f"Cannot convert {src!r} with head={head!r}: a head is chosen only for an image "
            f"checkpoint file, and {src!r} is a folder. {SUPPORTED_IMAGE}",
            src,
        )
    checkpoints = sorted(p.name for p in Path(src).glob("*.pth"))
    if checkpoints and not (Path(src) / "modules.json").is_file():
        raise UnsupportedSourceError(
            f"Cannot convert {src!r}: it is a folder holding the PyTorch checkpoint(s) "
            f"{checkpoints[:3]}; pass the checkpoint file itself, e.g. "
            f"{os.path.join(src, checkpoints[0])!r}. {SUPPORTED_IMAGE}",
            src,
        )
    source = read_source(src)
    real_src, real_out = Path(source.folder).resolve(), target.resolve()
    if real_out == real_src or real_src in real_out.parents or real_out in real_src.parents:
        raise OutputExistsError(
            f"Cannot write the converted model to {str(target)!r}: it overlaps the source "
            f"folder {source.folder!r}, which converting must leave intact. "
            "Choose an output folder outside it.",
            str(target),
        )
    _require("tensorflow_text", "tensorflow-text", "convert", src)
    _require("safetensors", "safetensors", "convert", src)
    log.info("converting %s (sha256 %s) to %s", source.folder, source.sha256, target)
    return lambda work: _write_saved_model(source, work)


def convert(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    head: str | None = None,
) -> str:
    """Convert the model at ``src`` into a Reusable SavedModel at ``out``.

    ``src`` is either a sentence-transformers BERT folder (-> a sentence encoder) or a
    PyTorch EfficientNet-Lite0 checkpoint file (-> an image classifier or feature vector,
    by ``head``). The model is written into a temporary folder beside ``out`` and renamed
    into place when complete, so ``out`` never holds a half-written model. ``out`` also
    gets a model card, ``README.md``.

    Args:
        src: folder with ``modules.json``, ``config.json``, ``model.safetensors``,
            ``vocab.txt`` and the pooling config, as sentence-transformers saves it; or a
            ``.pth`` state dict of EfficientNet-Lite0.
        out: folder to create. It may exist only if empty, unless ``overwrite``.
        overwrite: replace a non-empty ``out``.
        head: for an image checkpoint, ``"classification"`` (logits, the default) or
            ``"feature_vector"`` (pooled features); not allowed for a text folder.

    Returns:
        ``out`` as a string path.

    Raises:
        ModelNotFoundError: ``src`` is neither a folder nor a file.
        UnsupportedSourceError: ``src`` is not a model this converter supports;
            the message says what was found and what is supported.
        OutputExistsError: ``out`` is a file, or a non-empty folder without ``overwrite``.
        MissingPackageError: tensorflow-text or safetensors is not installed.

    Example:
        >>> convert("all-MiniLM-L6-v2", "minilm")
        'minilm'
        >>> convert("efficientnet-lite0-57934424.pth", "lite0", head="feature_vector")
        'lite0'
    """
    src_str = os.fspath(src)
    target = Path(os.path.abspath(os.fspath(out)))
    if os.path.isfile(src_str):
        write = _image_writer(src_str, head)
    else:
        write = _text_writer(src_str, target, head)
    _check_output(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.converting-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # mkdtemp's 0700 would hide the model from other users
    try:
        write(work)
        if target.exists():
            _check_output(target, overwrite)  # it may have filled while we worked
        replace_folder(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return os.fspath(out)
