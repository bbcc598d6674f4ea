"""An independent sentence-transformers BERT: the `tokenizers` package plus a numpy BERT.

It shares no code with ``savedhub.convert``: the tokenizer is Hugging Face's
own (Rust) implementation reading ``tokenizer.json``, configured the way
sentence-transformers configures it (truncation to ``max_seq_length``, no
padding); the encoder is a plain float64 numpy forward pass over the
safetensors weights, one sentence at a time (so no padding or masking either);
pooling (mean or the [CLS] token) and the optional L2 normalisation follow the
folder's ``modules.json`` and ``1_Pooling/config.json`` as sentence-transformers
reads them. The tests compare converted SavedModels (all-MiniLM-L6-v2 and small
random BERTs) against it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, far below float32 round-off here."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class SentenceTransformerReference:
    """Sentence embeddings of a sentence-transformers BERT folder (mean or CLS pooling,
    with or without the Normalize module)."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        modules = [
            m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())
        ]
        assert modules[:2] == ["Transformer", "Pooling"], modules
        self.normalize = modules[2:] == ["Normalize"]
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        modes = [k for k, on in pooling.items() if k.startswith("pooling_mode") and on is True]
        assert modes in (["pooling_mode_mean_tokens"], ["pooling_mode_cls_token"]), modes
        self.pooling = "cls" if modes == ["pooling_mode_cls_token"] else "mean"
        self.config = json.loads((folder / "config.json").read_text())
        max_len = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_len)
        raw = load_file(str(folder / "model.safetensors"))
        self.w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in raw.items()}

    def token_ids(self, text: str) -> list[int]:
        """Ids as sentence-transformers feeds them to BERT, [CLS] and [SEP] included."""
        return list(self.tokenizer.encode(text.strip()).ids)

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _encode(self, ids: list[int]) -> np.ndarray:
        w, cfg = self.w, self.config
        eps = cfg["layer_norm_eps"]
        heads = cfg["num_attention_heads"]
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (
                self._dense(x, p + f"attention.self.{name}")
                .reshape(n, heads, -1)
                .transpose(1, 0, 2)
                for name in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            probs = scores / scores.sum(-1, keepdims=True)
            context = (probs @ v).transpose(1, 0, 2).reshape(n, -1)
            attn = self._dense(context, p + "attention.output.dense")
            x = _layer_norm(
                x + attn,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                eps,
            )
            hidden = _gelu(self._dense(x, p + "intermediate.dense"))
            x = _layer_norm(
                x + self._dense(hidden, p + "output.dense"),
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                eps,
            )
        pooled = x[0] if self.pooling == "cls" else x.mean(0)
        if not self.normalize:
            return pooled
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

    def embed(self, texts: list[str]) -> np.ndarray:
        """[len(texts), hidden] float64 vectors (unit vectors with Normalize)."""
        return np.stack([self._encode(self.token_ids(t)) for t in texts])


MiniLMReference = SentenceTransformerReference
