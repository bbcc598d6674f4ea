"""Calling a frozen model without recording it on the gradient tapes.

A restored function called while a ``GradientTape`` records (as in every
training step of ``fit``) makes TensorFlow build that function's whole
backward pass, because the model's variables are trainable ``tf.Variable``s
and get watched on access, even when the layer is frozen and no gradient will
ever be taken. For a BERT-sized encoder that is most of the time to the first
training step. A frozen layer whose inputs carry no gradient can call the
model with recording paused: the forward pass is the same computation, so
the results are identical, and no backward function is built.

TensorFlow has no public way to pause every active tape (only
``tape.stop_recording()`` on a tape one holds), so this uses the internal
``record`` module behind a guarded import; without it calls are recorded as
before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import tensorflow as tf

try:  # internal API; present in TF 2.x
    from tensorflow.python.eager import record as _record
except ImportError:  # pragma: no cover - a TF without it records as usual
    _record = None


def gradients_can_flow_into(inputs: Any) -> bool:
    """Whether a tape watches any (float) tensor in ``inputs``: then gradients
    must flow through the model to the layers before it, frozen or not."""
    if _record is None:
        return True
    tensors = [
        t
        for t in tf.nest.flatten(inputs, expand_composites=True)
        if isinstance(t, (tf.Tensor, tf.Variable)) and (t.dtype.is_floating or t.dtype.is_complex)
    ]
    return bool(tensors) and bool(_record.should_record_backprop(tensors))


@contextlib.contextmanager
def tapes_paused(pause: bool) -> Iterator[None]:
    """Pause recording on every active tape while the block runs, if ``pause``."""
    if not pause or _record is None:
        yield
        return
    with _record.stop_recording():
        yield
