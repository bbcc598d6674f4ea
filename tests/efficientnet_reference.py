"""An independent EfficientNet-Lite0 forward pass in numpy, for checking the converter.

Written from the architecture (efficientnet-lite-pytorch 0.1.0, ``efficientnet-lite0``),
in the original's own layout and names: NCHW, torch's ``[out, in/groups, kh, kw]``
kernels, the state dict's keys, and the "same" padding the original computes (total
``max((ceil(n/s) - 1) * s + k - n, 0)``, the smaller half before). It shares no code with
``savedhub.convert``'s graph; only the checkpoint is read with savedhub's reader, whose
numbers the golden values check.
"""

from __future__ import annotations

import math

import numpy as np

# (repeats, kernel, stride, expand ratio, input channels, output channels) per stage
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
EPS = 1e-3


def _same_pad(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    pads = []
    for n in x.shape[2:]:
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0), (0, 0), *pads])


def conv(x: np.ndarray, w: np.ndarray, stride: int = 1, groups: int = 1) -> np.ndarray:
    """torch.nn.functional.conv2d with the original's "same" padding, in float64."""
    out_ch, in_per_group, k, _ = w.shape
    x = _same_pad(x, k, stride)
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]  # [b, c, h, w, k, k]
    if groups == 1:
        return np.einsum("bchwij,ocij->bohw", windows, w, optimize=True)
    assert groups == out_ch == windows.shape[1] and in_per_group == 1
    return np.einsum("bchwij,cij->bchw", windows, w[:, 0], optimize=True)


def batch_norm(x: np.ndarray, weights: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    scale = weights[prefix + ".weight"] / np.sqrt(weights[prefix + ".running_var"] + EPS)
    shift = weights[prefix + ".bias"] - weights[prefix + ".running_mean"] * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


class EfficientNetLite0Reference:
    """``features(images)`` -> ``[b, 1280]``, ``logits(images)`` -> ``[b, 1000]``; images
    NHWC in [0, 1], as the SavedModels take them."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w = {k: v.astype(np.float64) for k, v in weights.items()}

    def features(self, images: np.ndarray) -> np.ndarray:
        w = self.w
        x = (np.transpose(images.astype(np.float64), (0, 3, 1, 2)) * 255.0 - 127.0) / 128.0
        x = relu6(batch_norm(conv(x, w["_conv_stem.weight"], 2), w, "_bn0"))
        index = 0
        for repeats, kernel, stride, expand, c_in, c_out in STAGES:
            for r in range(repeats):
                p = f"_blocks.{index}."
                inputs, block_in = x, c_in if r == 0 else c_out
                if expand != 1:
                    x = relu6(batch_norm(conv(x, w[p + "_expand_conv.weight"]), w, p + "_bn0"))
                dw = w[p + "_depthwise_conv.weight"]
                assert dw.shape[2] == kernel
                x = conv(x, dw, stride if r == 0 else 1, groups=dw.shape[0])
                x = relu6(batch_norm(x, w, p + "_bn1"))
                x = batch_norm(conv(x, w[p + "_project_conv.weight"]), w, p + "_bn2")
                if (stride if r == 0 else 1) == 1 and block_in == c_out:
                    x = x + inputs
                index += 1
        x = relu6(batch_norm(conv(x, w["_conv_head.weight"]), w, "_bn1"))
        return x.mean(axis=(2, 3))

    def logits(self, images: np.ndarray) -> np.ndarray:
        return self.features(images) @ self.w["_fc.weight"].T + self.w["_fc.bias"]
