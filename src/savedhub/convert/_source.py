"""Reading a sentence-transformers folder: what it is, and whether we can convert it.

Detection uses only the folder's JSON files (``modules.json``, ``config.json``,
the pooling and tokenizer configs); nothing here imports TensorFlow or torch.
Every refusal says what was found and what is supported.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from savedhub._io.digest import file_sha256 as sha256_of
from savedhub.convert._chartable import NormalizerSettings
from savedhub.errors import ModelNotFoundError, UnsupportedSourceError

SUPPORTED = (
    "Supported: a sentence-transformers folder of a BERT model, i.e. modules.json listing "
    "sentence_transformers.models.Transformer, then Pooling (mean, cls or max), then "
    "optionally Normalize; config.json with model_type 'bert', absolute position embeddings "
    "and hidden_act 'gelu' or 'relu'; weights in model.safetensors; a WordPiece vocab.txt, "
    "lower-cased or cased (with tokenizer.json or tokenizer_config.json); any max_seq_length. "
    "That covers e.g. all-MiniLM-L*, paraphrase-MiniLM-*, bge-*-en(-v1.5), e5-*-v2 and gte-*."
)
SUPPORTED_ARCHITECTURES = ("bert",)

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"

# Weights we recognise by digest, so the model card can name their upstream origin.
KNOWN_WEIGHTS: dict[str, tuple[str, str]] = {
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db": (
        "sentence-transformers/all-MiniLM-L6-v2",
        "1110a243fdf4706b3f48f1d95db1a4f5529b4d41",
    ),
}


@dataclass(frozen=True)
class TokenizerSpec:
    """Everything the in-graph tokenizer needs, read from the source's tokenizer files."""

    vocab_file: str
    vocab_size: int
    normalizer: NormalizerSettings
    unk_token: str
    cls_token: str
    sep_token: str
    pad_token: str
    special_tokens: tuple[str, ...]
    subword_prefix: str
    max_chars_per_word: int
    max_seq_length: int


@dataclass(frozen=True)
class BertSource:
    """A convertible sentence-transformers BERT folder."""

    folder: str
    name: str
    config: dict[str, Any]
    pooling: str
    normalize: bool
    weights_file: str
    sha256: str
    tokenizer: TokenizerSpec

    @property
    def upstream(self) -> tuple[str, str] | None:
        """(repository, revision) when the weights are ones we know by digest."""
        return KNOWN_WEIGHTS.get(self.sha256)


def _refuse(folder: str, found: str) -> UnsupportedSourceError:
    return UnsupportedSourceError(f"Cannot convert {folder!r}: {found}. {SUPPORTED}", folder)


def _read_json(folder: str, path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _refuse(folder, f"{path.name} could not be read as JSON ({exc})") from exc


@dataclass(frozen=True)
class ModuleLayout:
    """Where a sentence-transformers folder keeps its modules, from ``modules.json``.

    Attributes:
        transformer: folder of the Transformer module relative to the root ("" = the root).
        pooling: folder of the Pooling module's config, relative to the root.
        normalize: whether a Normalize module follows the pooling.
    """

    transformer: str
    pooling: str
    normalize: bool


def read_layout(src: str | os.PathLike[str]) -> ModuleLayout:
    """The module layout of the folder ``src``, read from its ``modules.json`` alone.

    Raises:
        UnsupportedSourceError: no modules.json, or modules other than
            Transformer, Pooling and an optional Normalize.
    """
    folder = os.fspath(src)
    transformer, pooling, normalize = _modules(folder, Path(folder))
    relative = os.path.relpath(transformer, folder).replace(os.sep, "/")
    return ModuleLayout(
        transformer="" if relative == "." else relative,
        pooling=pooling,
        normalize=normalize,
    )


def check_transformer_config(
    src: str | os.PathLike[str], config_file: str | os.PathLike[str]
) -> None:
    """Refuse a Transformer ``config.json`` the converter cannot build, naming its
    architecture and the supported ones (before any weights are read or fetched).

    Raises:
        UnsupportedSourceError: not a BERT encoder this converter handles.
    """
    path = Path(config_file)
    _bert_config(os.fspath(src), path.parent, config_name=path.name)


def check_pooling_config(
    src: str | os.PathLike[str], pooling_folder: str | os.PathLike[str]
) -> str:
    """The pooling mode (mean, cls or max) of a Pooling module's folder, or a refusal.

    Raises:
        UnsupportedSourceError: another or no pooling mode.
    """
    return _pooling(os.fspath(src), Path(pooling_folder))


def _modules(folder: str, root: Path) -> tuple[Path, str, bool]:
    """(transformer folder, pooling config folder, normalize?) from modules.json."""
    if not (root / "modules.json").is_file():
        listing = ", ".join(sorted(p.name for p in root.iterdir())[:12]) or "nothing"
        raise _refuse(
            folder,
            f"it has no modules.json, so it is not a sentence-transformers "
            f"folder (found: {listing})",
        )
    modules = _read_json(folder, root / "modules.json")
    types = [m.get("type", "?") for m in modules] if isinstance(modules, list) else []
    if types[:2] != [_TRANSFORMER, _POOLING] or types[2:] not in ([], [_NORMALIZE]):
        raise _refuse(folder, f"modules.json lists {types or modules!r}")
    return root / modules[0].get("path", ""), modules[1].get("path", "1_Pooling"), len(types) == 3


def _pooling(folder: str, path: Path) -> str:
    config = _read_json(folder, path / "config.json") if (path / "config.json").is_file() else {}
    modes = sorted(
        key.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
        for key, on in config.items()
        if key.startswith("pooling_mode") and on is True
    )
    if modes not in (["mean"], ["cls"], ["max"]):
        raise _refuse(folder, f"its Pooling module uses the modes {modes or 'none'}")
    return str(modes[0])


def _bert_config(folder: str, path: Path, config_name: str = "config.json") -> dict[str, Any]:
    if not (path / config_name).is_file():
        raise _refuse(folder, f"its Transformer module has no config.json in {str(path)!r}")
    config: dict[str, Any] = _read_json(folder, path / config_name)
    if not isinstance(config, dict):
        raise _refuse(folder, "config.json is not a JSON object")
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_ARCHITECTURES:
        architectures = config.get("architectures") or []
        named = f" ({', '.join(map(str, architectures))})" if architectures else ""
        raise _refuse(
            folder,
            f"config.json has model_type {model_type!r}{named}, an architecture this converter "
            f"does not build (it builds: {', '.join(SUPPORTED_ARCHITECTURES)})",
        )
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise _refuse(folder, f"position_embedding_type is {config['position_embedding_type']!r}")
    if config.get("hidden_act") not in ("gelu", "relu"):
        raise _refuse(folder, f"hidden_act is {config.get('hidden_act')!r}")
    return config


def _tokenizer(folder: str, path: Path, config: dict[str, Any]) -> TokenizerSpec:
    vocab_file = path / "vocab.txt"
    if not vocab_file.is_file():
        raise _refuse(folder, "it has no vocab.txt (a WordPiece vocabulary)")
    with open(vocab_file, encoding="utf-8") as f:
        vocab = [line.rstrip("\n") for line in f]
    if len(set(vocab)) < len(vocab):
        repeated = sorted(t for t, n in Counter(vocab).items() if n > 1)
        raise _refuse(folder, f"vocab.txt lists tokens more than once: {repeated[:5]}")
    st_config = {}
    if (path / "sentence_bert_config.json").is_file():
        st_config = _read_json(folder, path / "sentence_bert_config.json")
    tok_config = {}
    if (path / "tokenizer_config.json").is_file():
        tok_config = _read_json(folder, path / "tokenizer_config.json")

    if (path / "tokenizer.json").is_file():
        fast = _read_json(folder, path / "tokenizer.json")
        normalizer, pre, model = (
            fast.get("normalizer") or {},
            fast.get("pre_tokenizer") or {},
            fast.get("model") or {},
        )
        kinds = (normalizer.get("type"), pre.get("type"), model.get("type"))
        if kinds != ("BertNormalizer", "BertPreTokenizer", "WordPiece"):
            raise _refuse(folder, f"tokenizer.json has normalizer, pre-tokenizer and model {kinds}")
        lowercase = bool(normalizer.get("lowercase", True))
        strip = normalizer.get("strip_accents")
        settings = NormalizerSettings(
            clean_text=bool(normalizer.get("clean_text", True)),
            chinese_chars=bool(normalizer.get("handle_chinese_chars", True)),
            strip_accents=lowercase if strip is None else bool(strip),
            lowercase=lowercase,
        )
        added = fast.get("added_tokens") or []
        odd = [
            t["content"]
            for t in added
            if t.get("normalized") or t.get("single_word") or t.get("lstrip") or t.get("rstrip")
        ]
        if odd:
            raise _refuse(
                folder,
                f"tokenizer.json has added tokens {odd} that are normalised "
                "or strip/match whole words",
            )
        for token in added:
            if token["id"] >= len(vocab) or vocab[token["id"]] != token["content"]:
                raise _refuse(
                    folder,
                    f"added token {token['content']!r} is not line {token['id']} of vocab.txt",
                )
        specials = tuple(t["content"] for t in added)
        unk = model.get("unk_token", "[UNK]")
        prefix = model.get("continuing_subword_prefix", "##")
        max_chars = int(model.get("max_input_chars_per_word", 100))
    else:
        lowercase = bool(tok_config.get("do_lower_case", True))
        strip = tok_config.get("strip_accents")
        settings = NormalizerSettings(
            clean_text=True,
            chinese_chars=bool(tok_config.get("tokenize_chinese_chars", True)),
            strip_accents=lowercase if strip is None else bool(strip),
            lowercase=lowercase,
        )
        unk = tok_config.get("unk_token", "[UNK]")
        specials = tuple(
            t
            for t in (
                tok_config.get(k, d)
                for k, d in (
                    ("pad_token", "[PAD]"),
                    ("unk_token", "[UNK]"),
                    ("cls_token", "[CLS]"),
                    ("sep_token", "[SEP]"),
                    ("mask_token", "[MASK]"),
                )
            )
            if t in vocab
        )
        prefix, max_chars = "##", 100
    if st_config.get("do_lower_case") and not settings.lowercase:
        settings = NormalizerSettings(
            settings.clean_text, settings.chinese_chars, settings.strip_accents, lowercase=True
        )
    tokens = {
        key: tok_config.get(f"{key}_token", default)
        for key, default in (("cls", "[CLS]"), ("sep", "[SEP]"), ("pad", "[PAD]"))
    }
    missing = [t for t in (unk, *tokens.values()) if t not in vocab]
    if missing:
        raise _refuse(folder, f"vocab.txt lacks the special tokens {missing}")
    limit = min(
        int(config.get("max_position_embeddings", 512)),
        int(tok_config.get("model_max_length", 10**9)),
    )
    max_seq_length = int(st_config.get("max_seq_length") or limit)
    return TokenizerSpec(
        vocab_file=str(vocab_file),
        vocab_size=len(vocab),
        normalizer=settings,
        unk_token=unk,
        cls_token=tokens["cls"],
        sep_token=tokens["sep"],
        pad_token=tokens["pad"],
        special_tokens=specials,
        subword_prefix=prefix,
        max_chars_per_word=max_chars,
        max_seq_length=min(max_seq_length, limit),
    )


def read_source(src: str | os.PathLike[str]) -> BertSource:
    """Inspect ``src`` and describe it, or refuse with what was found and what is supported.

    Raises:
        ModelNotFoundError: ``src`` is not a folder.
        UnsupportedSourceError: the folder is not a sentence-transformers BERT model.
    """
    folder = os.fspath(src)
    root = Path(folder)
    if not root.is_dir():
        raise ModelNotFoundError(
            f"Nothing to convert at {folder!r}: it is not a folder. Pass the folder that holds "
            "the sentence-transformers model (modules.json, config.json, model.safetensors).",
            folder,
        )
    transformer, pooling_path, normalize = _modules(folder, root)
    config = _bert_config(folder, transformer)
    pooling = _pooling(folder, root / pooling_path)
    weights = transformer / "model.safetensors"
    if not weights.is_file():
        others = [p.name for p in transformer.glob("*.bin")] + [
            p.name for p in transformer.glob("*.h5")
        ]
        raise _refuse(
            folder,
            f"it has no model.safetensors (found weights: {others or 'none'}); "
            "save the model with safe_serialization=True first",
        )
    tokenizer = _tokenizer(folder, transformer, config)
    return BertSource(
        folder=str(root.resolve()),
        name=config.get("_name_or_path") or root.resolve().name,
        config=config,
        pooling=pooling,
        normalize=normalize,
        weights_file=str(weights),
        sha256=sha256_of(weights),
        tokenizer=tokenizer,
    )
