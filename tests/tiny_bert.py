"""Small randomly initialised BERTs in sentence-transformers layout, built in the tests.

``build(folder, ...)`` writes what ``SentenceTransformer.save`` would: ``modules.json``,
``config.json``, ``sentence_bert_config.json``, ``1_Pooling/config.json``,
``model.safetensors`` (``bert.``-prefixed names, as some checkpoints have),
``vocab.txt`` and a ``tokenizer.json`` made with Hugging Face's ``tokenizers``.
The options are the family's axes: cased or lower-cased WordPiece, mean or
[CLS] pooling, with or without Normalize, any ``max_seq_length``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = "the cat dog sat on mat Paris is in France café naïve run ##ing ##ed ##ly".split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HIDDEN, INNER, LAYERS, POSITIONS = 32, 64, 2, 64


def _module(idx: int, path: str, kind: str) -> dict[str, object]:
    return {
        "idx": idx,
        "name": str(idx),
        "path": path,
        "type": f"sentence_transformers.models.{kind}",
    }


def _tokenizer(folder: Path, vocab: list[str], cased: bool) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=not cased, strip_accents=None)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.add_special_tokens(SPECIALS)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": not cased, "model_max_length": POSITIONS})
    )


def _weights(vocab_size: int, seed: int) -> dict[str, np.ndarray]:
    shapes = {
        "embeddings.word_embeddings.weight": (vocab_size, HIDDEN),
        "embeddings.position_embeddings.weight": (POSITIONS, HIDDEN),
        "embeddings.token_type_embeddings.weight": (2, HIDDEN),
        "embeddings.LayerNorm.weight": (HIDDEN,),
        "embeddings.LayerNorm.bias": (HIDDEN,),
        "pooler.dense.weight": (HIDDEN, HIDDEN),
        "pooler.dense.bias": (HIDDEN,),
    }
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for name in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ):
            shapes |= {p + name + ".weight": (HIDDEN, HIDDEN), p + name + ".bias": (HIDDEN,)}
        shapes |= {
            p + "intermediate.dense.weight": (INNER, HIDDEN),
            p + "intermediate.dense.bias": (INNER,),
            p + "output.dense.weight": (HIDDEN, INNER),
            p + "output.dense.bias": (HIDDEN,),
        }
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes |= {p + norm + ".weight": (HIDDEN,), p + norm + ".bias": (HIDDEN,)}
    rng = np.random.default_rng(seed)
    tensors = {
        "bert." + name: (1.0 if name.endswith("LayerNorm.weight") else 0.0)
        + rng.normal(0, 0.3, shape).astype(np.float32)
        for name, shape in shapes.items()
    }
    tensors["bert.embeddings.position_ids"] = np.arange(POSITIONS, dtype=np.int64)[None]
    return tensors


def build(
    folder: Path,
    *,
    cased: bool = True,
    pooling: str = "mean",
    normalize: bool = True,
    max_seq_length: int = 12,
    seed: int = 7,
    licence: str = "mit",
) -> Path:
    """Write a 2-layer, width-32 BERT sentence encoder into the new folder ``folder``."""
    from safetensors.numpy import save_file

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("ABCDEFPT.,!?'")
    vocab = SPECIALS + WORDS + letters + ["##" + c for c in letters]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    _tokenizer(folder, vocab, cased)
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": HIDDEN,
        "num_attention_heads": 4,
        "num_hidden_layers": LAYERS,
        "intermediate_size": INNER,
        "hidden_act": "gelu",
        "max_position_embeddings": POSITIONS,
        "type_vocab_size": 2,
        "vocab_size": len(vocab),
        "layer_norm_eps": 1e-12,
        "hidden_dropout_prob": 0.1,
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    modules = [_module(0, "", "Transformer"), _module(1, "1_Pooling", "Pooling")]
    if normalize:
        modules.append(_module(2, "2_Normalize", "Normalize"))
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    modes = {
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
    }
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": HIDDEN, **modes, "pooling_mode_max_tokens": False})
    )
    (folder / "README.md").write_text(f"---\nlicense: {licence}\n---\n# tiny\n")
    save_file(_weights(len(vocab), seed), str(folder / "model.safetensors"))
    return folder
