"""The runtimes a user would pick instead of savedhub for all-MiniLM-L6-v2, over the same weights.

- ONNX Runtime: the sentence-transformers folder's ``BertModel`` exported to ONNX
  with torch's exporter, run by an ``InferenceSession``; Hugging Face
  ``tokenizers`` (the folder's ``tokenizer.json``), mean pooling over the
  attention mask and L2 normalisation in numpy: what sentence-transformers'
  ``backend="onnx"`` runs.
- sentence-transformers on torch: ``SentenceTransformer(folder).encode``.

Each builder returns a :class:`Peer` or a note saying which packages are
missing. These peers need packages savedhub does not: install them in
a separate virtual environment (torch, onnx, onnxruntime,
sentence-transformers).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Stages = dict[str, Callable[[], object]]


@dataclass(frozen=True)
class Peer:
    """A runtime in the comparison.

    ``embed(texts)`` gives unit vectors; ``stages(texts)`` prepares the parts of
    one call for the breakdown table: ``tokenize`` and ``encoder`` (the model on
    already tokenised input), each a callable without arguments.
    """

    name: str
    embed: Callable[[list[str]], np.ndarray]
    stages: Callable[[list[str]], Stages]


def missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _max_seq_length(src: str) -> int:
    return int(json.loads(Path(src, "sentence_bert_config.json").read_text())["max_seq_length"])


def export_onnx(src: str, out: str) -> None:
    """Export the folder's ``BertModel`` (ids, mask -> last hidden state) with torch's exporter."""
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(src).eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: Any, mask: Any) -> Any:  # noqa: ANN401
            return self.bert(input_ids=ids, attention_mask=mask).last_hidden_state

    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(
            LastHiddenState(),
            example,
            out,
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=17,
            dynamo=False,
        )


def onnx_runtime(src: str, work: str) -> Peer | str:
    """The ORT peer, or why it is skipped."""
    lacking = missing("onnxruntime", "onnx", "torch", "transformers", "tokenizers")
    if lacking:
        return f"ONNX Runtime skipped: not installed: {', '.join(lacking)}"
    import warnings

    import onnxruntime as ort
    from tokenizers import Tokenizer

    path = os.path.join(work, "minilm.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes about python-side conditions
        export_onnx(src, path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(os.path.join(src, "tokenizer.json"))
    tokenizer.enable_truncation(max_length=_max_seq_length(src))
    tokenizer.enable_padding()

    def tokenize(texts: list[str]) -> dict[str, np.ndarray]:
        encodings = tokenizer.encode_batch([t.strip() for t in texts])
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }

    def pool(states: np.ndarray, mask: np.ndarray) -> np.ndarray:
        weights = mask[:, :, None].astype(np.float32)
        pooled = (states * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed(texts: list[str]) -> np.ndarray:
        feeds = tokenize(texts)
        return pool(session.run(None, feeds)[0], feeds["attention_mask"])

    def stages(texts: list[str]) -> Stages:
        feeds = tokenize(texts)
        return {"tokenize": lambda: tokenize(texts), "encoder": lambda: session.run(None, feeds)}

    return Peer(f"ONNX Runtime {ort.__version__}", embed, stages)


def sentence_transformers_torch(src: str) -> Peer | str:
    """The sentence-transformers peer on torch, or why it is skipped."""
    lacking = missing("sentence_transformers", "torch")
    if lacking:
        return f"sentence-transformers/torch skipped: not installed: {', '.join(lacking)}"
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(src, device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            vectors: np.ndarray = model.encode(
                texts, batch_size=max(len(texts), 1), convert_to_numpy=True
            )
        return vectors

    def stages(texts: list[str]) -> Stages:
        features = model.tokenize(texts)

        def encoder() -> object:
            with torch.inference_mode():
                return model.forward(dict(features))

        return {"tokenize": lambda: model.tokenize(texts), "encoder": encoder}

    return Peer(f"sentence-transformers/torch {torch.__version__}", embed, stages)
