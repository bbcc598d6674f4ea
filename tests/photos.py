"""The shipped photos and golden values of EfficientNet-Lite0 (scripts/golden_efficientnet.py).

``tests/data/images/*.png`` are scikit-image's sample photos ``chelsea`` (Stefan van der
Walt) and ``coffee`` (Rachel Michetti), both CC0 ("no copyright restrictions"), resized to
224x224 by the golden script.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).parent / "data"
PHOTOS = ("chelsea", "coffee")


def photo(name: str) -> np.ndarray:
    """float32 ``[224, 224, 3]`` in [0, 1], decoded by TensorFlow from the shipped PNG."""
    import tensorflow as tf

    pixels = tf.io.decode_png(tf.io.read_file(str(DATA / "images" / f"{name}.png")), channels=3)
    return pixels.numpy().astype(np.float32) / 255.0


def photos() -> np.ndarray:
    """Both photos as one batch ``[2, 224, 224, 3]``, in ``PHOTOS`` order."""
    return np.stack([photo(name) for name in PHOTOS])


def random_batch(size: int, count: int, seed: int) -> np.ndarray:
    """The seeded random images the golden script fed the original."""
    return np.random.default_rng(seed).random((count, size, size, 3), dtype=np.float32)


@cache
def golden() -> dict[str, Any]:
    return json.loads((DATA / "efficientnet_lite0_golden.json").read_text())
