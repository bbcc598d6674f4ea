"""The model card (README.md) written beside a converted SavedModel.

The hub server shows it on the model's page, so it says what the model is,
where it came from (repository, revision, weights digest), its licence, and
how to load it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from savedhub.convert._source import BertSource


@dataclass(frozen=True)
class Origin:
    """Where a converted model's source came from, for its card.

    Attributes:
        repo: the Hugging Face repository id, ``ORG/NAME``.
        revision: the commit SHA the files were read at.
        requested: the handle as asked for, e.g. ``hf://ORG/NAME@main``.
        endpoint: the Hub that served them (``HF_ENDPOINT``).
    """

    repo: str
    revision: str
    requested: str
    endpoint: str


_LICENCES = {"apache-2.0": "Apache-2.0", "mit": "MIT", "cc-by-4.0": "CC-BY-4.0"}


def source_licence(folder: str) -> str | None:
    """The ``license:`` of the source README's front matter, in SPDX spelling where known."""
    readme = Path(folder) / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    front = re.match(r"---\n(.*?)\n---", text, re.DOTALL)
    found = re.search(r"^license:\s*(\S+)", front.group(1), re.MULTILINE) if front else None
    if found is None:
        return None
    value = found.group(1).strip("'\"")
    return _LICENCES.get(value.lower(), value)


def model_card(source: BertSource, version: str, origin: Origin | None = None) -> str:
    """Markdown text of the card; ``origin`` names the Hub repository and commit the
    source was fetched from (else weights we know by digest name their upstream)."""
    config, tok = source.config, source.tokenizer
    hidden = config["hidden_size"]
    upstream = (origin.repo, origin.revision) if origin else source.upstream
    title = upstream[0].rsplit("/", 1)[-1] if upstream else Path(source.folder).name
    licence = source_licence(source.folder)
    if origin:
        origin_lines = (
            f"- Upstream: [{origin.repo}]({origin.endpoint}/{origin.repo}), "
            f"revision `{origin.revision}`\n"
            f"- Fetched as `{origin.requested}` from {origin.endpoint} and converted on first "
            "use (savedhub's `hf://` handles)\n"
        )
    elif upstream:
        origin_lines = (
            f"- Upstream: [{upstream[0]}](https://huggingface.co/{upstream[0]}), "
            f"revision `{upstream[1]}`\n"
        )
    else:
        origin_lines = f"- Upstream: `{source.name}` (converted from a local folder)\n"
    pooling = {
        "mean": "mean pooling over the attention mask",
        "cls": "the [CLS] token",
        "max": "max pooling over the attention mask",
    }[source.pooling]
    normalised = ", then L2 normalisation" if source.normalize else ""
    if origin:  # the handle this very model loads by, pinned to its commit
        handle, where = f"hf://{origin.repo}@{origin.revision}", "converted on first use"
    else:
        handle, where = "HANDLE", "a path, or the model's URL on a hub"
    similarity = (
        "similarity = float(tf.reduce_sum(vectors[0] * vectors[1]))   # cosine: unit vectors"
        if source.normalize
        else "unit = tf.math.l2_normalize(vectors, axis=-1)   # the model does not normalise\n"
        "similarity = float(tf.reduce_sum(unit[0] * unit[1]))   # cosine"
    )
    # One line: the hub server shows a README's first prose line as the model's summary.
    summary = (
        f"Sentence embeddings as a TensorFlow Reusable SavedModel: strings in, "
        f"float32 [batch, {hidden}] {'unit ' if source.normalize else ''}vectors out."
    )
    return f"""# {title}

{summary}

Converted from sentence-transformers by `savedhub convert` (savedhub {version}); the
tokenizer runs inside the graph, so the model needs no Python preprocessing.

- Architecture: BERT, {config["num_hidden_layers"]} layers, hidden size {hidden},
  {config["num_attention_heads"]} attention heads, WordPiece vocabulary of {tok.vocab_size} tokens
- Input: up to {tok.max_seq_length} tokens including [CLS] and [SEP]; longer texts are
  truncated, as sentence-transformers does
- Output: {pooling}{normalised}

## Source

{origin_lines}- Weights: `model.safetensors`, SHA-256 `{source.sha256}`
- Licence: {licence or "not stated by the source; check it before you publish this model"}

## Use

```python
import savedhub as hub
import tensorflow as tf

embed = hub.load("{handle}")   # {where}
vectors = embed(["The weather is lovely today.", "It's so sunny outside!"])
{similarity}

layer = hub.KerasLayer("{handle}", trainable=True)   # fine-tune inside a Keras model
```

The in-graph WordPiece step uses tensorflow-text ops: `pip install 'savedhub[text]'`.
savedhub imports tensorflow-text for you when it loads the model.

## Interface

- `obj(inputs, training=False)`: `inputs` is a `tf.string` tensor `[batch]`; dropout is
  active only with `training=True`
- `obj.signatures["serving_default"]`: `inputs` -> `{{"outputs": [batch, {hidden}]}}`
- `obj.tokenize(inputs)`: the token ids the model sees (a `tf.RaggedTensor`)
- `obj.encode(ids)`: embeddings of such ids; `obj(inputs)` is `obj.encode(obj.tokenize(inputs))`
- `obj.variables`, `obj.trainable_variables`, `obj.regularization_losses` (empty)
"""
