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


def onnx_matmul_chain(kernels: list[list[np.ndarray]]) -> Callable[[np.ndarray], object] | str:
    """ORT running only the encoder's matrix products, or why it is skipped.

    ``kernels`` holds, per layer, the four ``[in, out]`` matrices in the order the
    encoder multiplies by them (fused q/k/v, attention output, intermediate,
    output). The graph is :func:`matmul_chain`'s, written in ONNX.
    """
    lacking = missing("onnxruntime", "onnx")
    if lacking:
        return f"ONNX Runtime matmul chain skipped: not installed: {', '.join(lacking)}"
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    nodes, weights = [], []
    hidden = kernels[0][1].shape[0]
    weights.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
    weights.append(numpy_helper.from_array(np.array([hidden], np.int64), "hidden"))
    weights.append(numpy_helper.from_array(np.array([1], np.int64), "axis"))
    x = "x"
    for i, (qkv, out, inner, back) in enumerate(kernels):
        for name, value in (("qkv", qkv), ("out", out), ("inner", inner), ("back", back)):
            weights.append(numpy_helper.from_array(np.ascontiguousarray(value), f"{name}{i}"))
        nodes += [
            helper.make_node("MatMul", [x, f"qkv{i}"], [f"a{i}"]),
            helper.make_node("Slice", [f"a{i}", "zero", "hidden", "axis"], [f"q{i}"]),
            helper.make_node("MatMul", [f"q{i}", f"out{i}"], [f"b{i}"]),
            helper.make_node("Add", [x, f"b{i}"], [f"c{i}"]),
            helper.make_node("MatMul", [f"c{i}", f"inner{i}"], [f"d{i}"]),
            helper.make_node("MatMul", [f"d{i}", f"back{i}"], [f"e{i}"]),
            helper.make_node("Add", [f"c{i}", f"e{i}"], [f"x{i}"]),
        ]
        x = f"x{i}"
    graph = helper.make_graph(
        nodes,
        "matmul_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, hidden])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [None, hidden])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda rows: session.run(None, {"x": rows})


def matmul_chain(x: Any, kernels: list[list[Any]], matmul: Callable[[Any, Any], Any]) -> Any:
    """The encoder's matrix products alone, in its order and shapes, without the rest.

    Per layer: ``x @ qkv``, its first ``hidden`` columns ``@ out`` added to ``x``,
    then ``x @ inner @ back`` added again; the additions keep the chain's values
    bounded and each product dependent on the last, as in the model.
    """
    hidden = kernels[0][1].shape[0]
    for qkv, out, inner, back in kernels:
        x = x + matmul(matmul(x, qkv)[:, :hidden], out)
        x = x + matmul(matmul(x, inner), back)
    return x
