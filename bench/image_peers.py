"""The runtimes a user would pick instead of savedhub for EfficientNet-Lite0, over the same weights.

- The PyTorch original: ``efficientnet-lite-pytorch`` on the checkpoint, under
  ``torch.inference_mode`` at a given thread count.
- ONNX Runtime: that same PyTorch model exported with ``torch.onnx.export`` (batch
  axis dynamic, 224x224: the original pads for a fixed image size), run by an
  ``InferenceSession`` on the ``CPUExecutionProvider`` with default options: what a
  user who wants CPU speed deploys.

Both take NCHW images normalised as the original trained, ``(255 * x - 127) / 128``;
each runner prepares that layout once, outside the timed call, as a user feeding
either runtime would. Each builder returns a :class:`Peer` or a note saying which
packages are missing. These peers need packages savedhub does not: install them in
a separate virtual environment (torch, ``efficientnet-lite-pytorch==0.1.0`` with
``--no-deps``, onnx, onnxruntime).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Runner = Callable[[np.ndarray], Callable[[], np.ndarray]]


@dataclass(frozen=True)
class Peer:
    """A runtime in the comparison.

    ``runner(images)`` takes float32 NHWC images in [0, 1] and returns a call without
    arguments that gives their logits ``[batch, 1000]``: the part that is timed.
    """

    name: str
    runner: Runner


def missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _nchw(images: np.ndarray) -> np.ndarray:
    """The original's input: NCHW, ``(255 * x - 127) / 128``."""
    return np.ascontiguousarray(((images * 255.0 - 127.0) / 128.0).transpose(0, 3, 1, 2))


def _original(weights: str) -> Any:  # noqa: ANN401 (a torch module)
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()


def torch_original(weights: str, threads: int) -> Peer | str:
    """The PyTorch original at ``threads`` threads, or why it is skipped."""
    lacking = missing("torch", "efficientnet_lite_pytorch")
    if lacking:
        return f"PyTorch skipped: not installed: {', '.join(lacking)}"
    import torch

    model = _original(weights)

    def runner(images: np.ndarray) -> Callable[[], np.ndarray]:
        x = torch.from_numpy(_nchw(images))

        def run() -> np.ndarray:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                logits: np.ndarray = model(x).numpy()
            return logits

        return run

    return Peer(f"PyTorch {torch.__version__.split('+')[0]}, {threads} thr", runner)


def export_onnx(weights: str, out: str) -> None:
    """Export the original (NCHW images -> logits) with torch's exporter, batch axis dynamic."""
    import torch

    example = torch.zeros(2, 3, 224, 224)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes about python-side conditions
        torch.onnx.export(
            _original(weights),
            (example,),
            out,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def onnx_runtime(weights: str, work: str) -> Peer | str:
    """The ORT peer, or why it is skipped."""
    lacking = missing("onnxruntime", "onnx", "torch", "efficientnet_lite_pytorch")
    if lacking:
        return f"ONNX Runtime skipped: not installed: {', '.join(lacking)}"
    import onnxruntime as ort

    path = os.path.join(work, "efficientnet_lite0.onnx")
    export_onnx(weights, path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def runner(images: np.ndarray) -> Callable[[], np.ndarray]:
        feeds = {"images": _nchw(images)}

        def run() -> np.ndarray:
            logits: np.ndarray = session.run(None, feeds)[0]
            return logits

        return run

    return Peer(f"ONNX Runtime {ort.__version__}", runner)
