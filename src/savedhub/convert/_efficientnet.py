"""The converted image model: EfficientNet-Lite0 as a Reusable SavedModel, in TF Hub's
image interfaces.

``obj(images, training=False, batch_norm_momentum=0.997)`` takes float32
``[batch, height, width, 3]`` RGB in [0, 1] (224x224 is the trained size; any size works,
the network being convolutional up to its global pooling) and returns, by ``head``:

- ``"classification"``: logits ``[batch, num_classes]``;
- ``"feature_vector"``: the pooled ``[batch, 1280]`` features before the classifier.

With ``training=True`` batch norm normalises by the batch's statistics and moves its
moving averages towards them by ``1 - batch_norm_momentum`` (PyTorch's unbiased variance,
as the original trained them), drop-connect skips residual branches with the original's
rates, and the classifier applies its dropout. The layout is NHWC, TensorFlow's native
one on CPUs, and convolutions pad as TensorFlow's "SAME", which is what the original's
"same padding" convolutions compute.

Inference is written so that TensorFlow's graph rewriter runs each convolution with its
batch norm and Relu6 as one kernel (``bench/bench_image.py --profile`` shows the kernels):
a 2-D convolution is fused with the ``FusedBatchNormV3`` after it, and a depthwise one,
which TensorFlow does not fuse with batch norm, gets its batch norm folded into its kernel
and a bias from the variables' current values at each call. Training runs the unfolded
batch norm.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from savedhub.convert._image_source import (
    BN_EPSILON,
    DROP_CONNECT_RATE,
    DROPOUT_RATE,
    HEADS,
    LITE0_BLOCKS,
    ImageSource,
)

IMAGES = tf.TensorSpec([None, None, None, 3], tf.float32)
MOMENTUM = tf.TensorSpec([], tf.float32)
WEIGHT_DECAY = 1e-5  # the original training's L2 decay on every weight but batch norm's


class _BatchNorm(tf.Module):
    """Batch norm with trainable scale/offset and non-trainable moving statistics."""

    def __init__(self, weights: dict[str, np.ndarray], prefix: str, name: str) -> None:
        super().__init__()
        self.gamma = tf.Variable(weights[prefix + ".weight"], name=f"{name}/gamma")
        self.beta = tf.Variable(weights[prefix + ".bias"], name=f"{name}/beta")
        self.moving_mean = tf.Variable(
            weights[prefix + ".running_mean"], trainable=False, name=f"{name}/moving_mean"
        )
        self.moving_variance = tf.Variable(
            weights[prefix + ".running_var"], trainable=False, name=f"{name}/moving_variance"
        )

    def __call__(self, x: tf.Tensor, training: bool, decay: tf.Tensor | None) -> tf.Tensor:
        """Normalise ``x``; in training, move the averages by ``decay`` (1 - momentum).

        One fused op either way. In training it returns the batch's mean and unbiased
        variance (``exponential_avg_factor=1``), and the moving averages move by a decay
        that is a tensor, so one trace serves every momentum.
        """
        none = tf.constant([], tf.float32)
        y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=self.gamma,
            offset=self.beta,
            mean=none if training else self.moving_mean,
            variance=none if training else self.moving_variance,
            epsilon=BN_EPSILON,
            exponential_avg_factor=1.0,
            is_training=training,
        )
        if training:
            self.moving_mean.assign_sub((self.moving_mean - mean) * decay)
            self.moving_variance.assign_sub((self.moving_variance - variance) * decay)
        return y

    def folded(self) -> tuple[tf.Tensor, tf.Tensor]:
        """Inference batch norm as ``x * scale + offset``, to fold into the layer before it.

        Computed from the variables at each call (a few hundred numbers), so a fine-tuned
        or re-assigned model folds its current values.
        """
        scale = self.gamma * tf.math.rsqrt(self.moving_variance + BN_EPSILON)
        return scale, self.beta - self.moving_mean * scale


def _conv_kernel(weights: dict[str, np.ndarray], key: str, name: str) -> tf.Variable:
    """A torch ``[out, in, kh, kw]`` kernel as TensorFlow's ``[kh, kw, in, out]``."""
    return tf.Variable(np.transpose(weights[key], (2, 3, 1, 0)), name=name)


def _depthwise_kernel(weights: dict[str, np.ndarray], key: str, name: str) -> tf.Variable:
    """A torch depthwise ``[channels, 1, kh, kw]`` kernel as ``[kh, kw, channels, 1]``."""
    return tf.Variable(np.transpose(weights[key], (2, 3, 0, 1)), name=name)


class EfficientNetLite(tf.train.Checkpoint):
    """EfficientNet-Lite0 as a Reusable SavedModel with TF Hub's image signature."""

    def __init__(self, source: ImageSource, head: str, labels_file: str | None) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {head!r}")
        w = source.weights
        self._head = head
        self.stem_kernel = _conv_kernel(w, "_conv_stem.weight", "stem/conv/kernel")
        self.stem_bn = _BatchNorm(w, "_bn0", "stem/bn")
        self.blocks: list[dict[str, Any]] = []
        for i, spec in enumerate(LITE0_BLOCKS):
            p, n = f"_blocks.{i}.", f"blocks/{i}"
            block: dict[str, Any] = {}
            if spec.expand_ratio != 1:
                block["expand_kernel"] = _conv_kernel(
                    w, p + "_expand_conv.weight", f"{n}/expand/kernel"
                )
                block["expand_bn"] = _BatchNorm(w, p + "_bn0", f"{n}/expand/bn")
            block["depthwise_kernel"] = _depthwise_kernel(
                w, p + "_depthwise_conv.weight", f"{n}/depthwise/kernel"
            )
            block["depthwise_bn"] = _BatchNorm(w, p + "_bn1", f"{n}/depthwise/bn")
            block["project_kernel"] = _conv_kernel(
                w, p + "_project_conv.weight", f"{n}/project/kernel"
            )
            block["project_bn"] = _BatchNorm(w, p + "_bn2", f"{n}/project/bn")
            self.blocks.append(block)
        self.head_kernel = _conv_kernel(w, "_conv_head.weight", "head/conv/kernel")
        self.head_bn = _BatchNorm(w, "_bn1", "head/bn")
        kernels = [self.stem_kernel, self.head_kernel]
        for block in self.blocks:
            kernels += [v for k, v in block.items() if k.endswith("_kernel")]
        if head == "classification":
            self.logits_kernel = tf.Variable(w["_fc.weight"].T, name="logits/kernel")
            self.logits_bias = tf.Variable(w["_fc.bias"], name="logits/bias")
            kernels += [self.logits_kernel, self.logits_bias]
        norms = [self.stem_bn, *(v for b in self.blocks for v in b.values()), self.head_bn]
        norms = [m for m in norms if isinstance(m, _BatchNorm)]
        self.trainable_variables = [*kernels, *(v for m in norms for v in (m.gamma, m.beta))]
        self.variables = [
            *self.trainable_variables,
            *(v for m in norms for v in (m.moving_mean, m.moving_variance)),
        ]
        if labels_file is not None:
            self.labels = tf.saved_model.Asset(labels_file)
        decayed = list(kernels)
        self.regularization_losses = [
            tf.function(
                lambda: WEIGHT_DECAY * tf.add_n([tf.nn.l2_loss(v) for v in decayed]),
                input_signature=[],
                autograph=False,
            )
        ]
        # Plain Python control flow only: autograph would just slow tracing down. Inference
        # is one function that both __call__ and the serving signature call, so the
        # SavedModel holds (and loads) its graph once.
        self._infer = tf.function(
            lambda images: self._forward(images, False, None),
            input_signature=[IMAGES],
            autograph=False,
        )
        self.__call__ = tf.function(self._call, autograph=False)
        for training in (False, True):
            self.__call__.get_concrete_function(
                IMAGES, training=training, batch_norm_momentum=MOMENTUM
            )
        key = "logits" if head == "classification" else "feature_vector"
        self.serve = tf.function(
            lambda images: {key: self._infer(images)},
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")],
            autograph=False,
        )

    def _call(
        self,
        images: tf.Tensor,
        training: bool = False,
        batch_norm_momentum: float | tf.Tensor = 0.997,
    ) -> tf.Tensor:
        if not training:
            return self._infer(images)
        return self._forward(images, True, 1.0 - tf.cast(batch_norm_momentum, tf.float32))

    def _forward(self, images: tf.Tensor, training: bool, decay: tf.Tensor | None) -> tf.Tensor:
        x = images * (255.0 / 128.0) - (127.0 / 128.0)  # [0, 1] -> the original's (x-127)/128
        x = tf.nn.conv2d(x, self.stem_kernel, 2, "SAME")
        x = tf.nn.relu6(self.stem_bn(x, training, decay))
        for i, (spec, block) in enumerate(zip(LITE0_BLOCKS, self.blocks, strict=True)):
            inputs = x
            if "expand_kernel" in block:
                x = tf.nn.conv2d(x, block["expand_kernel"], 1, "SAME")
                x = tf.nn.relu6(block["expand_bn"](x, training, decay))
            x = tf.nn.relu6(self._depthwise(x, spec.stride, block, training, decay))
            x = tf.nn.conv2d(x, block["project_kernel"], 1, "SAME")
            x = block["project_bn"](x, training, decay)
            if spec.has_skip:
                if training:
                    x = self._drop_connect(x, DROP_CONNECT_RATE * i / len(LITE0_BLOCKS))
                x = x + inputs
        x = tf.nn.conv2d(x, self.head_kernel, 1, "SAME")
        x = tf.nn.relu6(self.head_bn(x, training, decay))
        features = tf.reduce_mean(x, axis=[1, 2])
        if self._head == "feature_vector":
            return features
        if training:
            features = tf.nn.dropout(features, rate=DROPOUT_RATE)
        return tf.matmul(features, self.logits_kernel) + self.logits_bias

    @staticmethod
    def _depthwise(
        x: tf.Tensor, stride: int, block: dict[str, Any], training: bool, decay: tf.Tensor | None
    ) -> tf.Tensor:
        """The depthwise convolution and its batch norm.

        At inference the batch norm is folded into the kernel and a bias: TensorFlow fuses
        a 2-D convolution with the batch norm after it, but not a depthwise one, while it
        does fuse depthwise + BiasAdd + Relu6 into one kernel (oneDNN's
        ``_FusedDepthwiseConv2dNative``), saving two passes over the block's widest tensor.
        """
        strides = [1, stride, stride, 1]
        norm: _BatchNorm = block["depthwise_bn"]
        if training:
            x = tf.nn.depthwise_conv2d(x, block["depthwise_kernel"], strides, "SAME")
            return norm(x, training, decay)
        scale, offset = norm.folded()
        kernel = block["depthwise_kernel"] * scale[:, None]  # [kh, kw, channels, 1]
        return tf.nn.bias_add(tf.nn.depthwise_conv2d(x, kernel, strides, "SAME"), offset)

    @staticmethod
    def _drop_connect(x: tf.Tensor, rate: float) -> tf.Tensor:
        """Drop whole residual branches per example, as the original trains (stochastic depth)."""
        if rate <= 0:
            return x
        keep = 1.0 - rate
        mask = tf.floor(keep + tf.random.uniform([tf.shape(x)[0], 1, 1, 1], dtype=x.dtype))
        return x / keep * mask
