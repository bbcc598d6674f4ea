"""The model card (README.md) written beside a converted image model.

The hub server shows it on the model's page: what the model takes and returns, where the
weights come from (file, digest), the licences, and how to load and fine-tune it.
"""

from __future__ import annotations

from pathlib import Path

from savedhub.convert._image_source import ImageSource

LABELS_ASSET = "imagenet_labels.txt"


def image_model_card(source: ImageSource, head: str, version: str) -> str:
    """Markdown text of the card for the ``head`` ("classification" or "feature_vector")."""
    origin = source.upstream or f"`{Path(source.path).name}` (a local checkpoint)"
    if head == "classification":
        title = "EfficientNet-Lite0 ImageNet classifier"
        summary = (
            "ImageNet classification as a TensorFlow Reusable SavedModel: images in, "
            f"float32 [batch, {source.num_classes}] logits out."
        )
        output = (
            f"logits `[batch, {source.num_classes}]` over the ImageNet classes; the class "
            f"names are the asset `assets/{LABELS_ASSET}`, one a line, line i for class i"
        )
        serving = "logits"
        use = (
            'classifier = hub.load("HANDLE")\n'
            "logits = classifier(images)                        # [batch, 1000]\n"
            "names = open(classifier.labels.asset_path.numpy()).read().splitlines()\n"
            "print(names[int(tf.argmax(logits[0]))])"
        )
    else:
        title = "EfficientNet-Lite0 image feature vector"
        summary = (
            "Image features as a TensorFlow Reusable SavedModel: images in, float32 "
            "[batch, 1280] feature vectors out, for transfer learning."
        )
        output = "the globally pooled features `[batch, 1280]` (before the classifier)"
        serving = "feature_vector"
        use = (
            'features = hub.KerasLayer("HANDLE", trainable=False)   # or trainable=True\n'
            "model = tf.keras.Sequential([features, tf.keras.layers.Dense(5)])"
        )
    return f"""# {title}

{summary}

Converted from PyTorch by `savedhub convert` (savedhub {version}), without PyTorch: the
checkpoint was read by savedhub's restricted reader, which rebuilds tensors and runs none
of the file's code.

- Architecture: EfficientNet-Lite0 (Tan and Le, 2019; the Lite variant without
  squeeze-excitation, ReLU6, fixed stem and head), 16 inverted-residual blocks, as in
  PyPI `efficientnet-lite-pytorch` 0.1.0
- Input: float32 images `[batch, height, width, 3]`, RGB values in [0, 1]; trained at
  224x224, other sizes work (the network is convolutional up to its global pooling).
  The model scales inputs itself to the original's `(x - 127) / 128` on 0..255.
- Output: {output}

## Source

- Weights: {origin}, SHA-256 `{source.sha256}`
- Licence: the weights package states none (`License: UNKNOWN`); EfficientNet-Lite's
  original ImageNet checkpoints are published by the TensorFlow TPU team under Apache-2.0.
  Check the terms before you publish this model. Class names: ImageNet's WordNet synsets.

## Use

```python
import savedhub as hub
import tensorflow as tf

images = tf.image.resize(tf.io.decode_png(tf.io.read_file("cat.png")), [224, 224]) / 255.0
images = images[tf.newaxis]
{use}
```

## Interface

- `obj(images, training=False, batch_norm_momentum=0.997)`: with `training=True` batch norm
  uses the batch's statistics and updates its moving averages
  (`moving = momentum * moving + (1 - momentum) * batch`), drop-connect is active{
        " and dropout (0.2) precedes the classifier" if head == "classification" else ""
    }
- `obj.signatures["serving_default"]`: `images` -> `{{"{serving}": ...}}`
- `obj.variables`, `obj.trainable_variables` (the moving statistics are not trainable),
  `obj.regularization_losses` (the original's L2 weight decay, 1e-5, on every weight
  but batch norm's)
"""
