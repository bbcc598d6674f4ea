"""``info()``: what a SavedModel offers, read from its files without restoring it.

The module is named ``inspection`` rather than ``info`` so that the function
``savedhub.info`` is never shadowed by a submodule of the same name.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from savedhub._io.units import human_size
from savedhub.client import handles
from savedhub.client.resolver import resolve_handle

if TYPE_CHECKING:  # imported when called: it brings in TensorFlow
    from savedhub._savedmodel.protos import SavedModelFile, TensorSpecInfo

FORMAT_NAMES = {
    "tf2": "TF2 SavedModel",
    "tf1-hub": "TF1 Hub format (hub.Module)",
    "tf1": "TF1 SavedModel",
}


@dataclass(frozen=True)
class SignatureInfo:
    """One signature: its input and output tensors by name."""

    name: str
    inputs: dict[str, TensorSpecInfo]
    outputs: dict[str, TensorSpecInfo]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputs": {k: v.to_dict() for k, v in self.inputs.items()},
            "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
        }


@dataclass(frozen=True)
class ModelInfo:
    """What ``info()`` reports about one SavedModel.

    Attributes:
        handle: the handle as given.
        path: the local (or TensorFlow-readable) folder it resolved to.
        format: ``tf2``, ``tf1-hub`` or ``tf1``.
        signatures: every signature, sorted by name.
        has_call: whether ``obj(...)`` works (a restored ``__call__``).
        call_training_values: the ``training`` values ``__call__`` was traced
            for (e.g. ``[False, True]``), None when it takes no ``training``
            argument (or there is no ``__call__``).
        variables: how many variables the model holds.
        trainable_variables: how many of them it offers for fine-tuning.
        variable_bytes: their total size in memory, from dtypes and shapes.
        regularization_losses: how many it exports; None when the model has
            no ``regularization_losses`` attribute.
        assets: files under ``assets/``, relative to it.
        size_bytes: every file of the folder, on disk.
    """

    handle: str
    path: str
    format: str
    signatures: list[SignatureInfo]
    has_call: bool
    call_training_values: list[bool | None] | None
    variables: int
    trainable_variables: int
    variable_bytes: int
    regularization_losses: int | None
    assets: list[str] = field(default_factory=list)
    size_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (``savedhub info --json`` prints this)."""
        data = asdict(self)
        data["signatures"] = [s.to_dict() for s in self.signatures]
        return data

    def __str__(self) -> str:
        lines = [
            f"model:      {self.handle}",
            f"path:       {self.path}",
            f"format:     {FORMAT_NAMES.get(self.format, self.format)}",
            f"size:       {human_size(self.size_bytes)} on disk",
        ]
        if not self.has_call:
            call = "no (use a signature)"
        elif self.call_training_values is None:
            call = "yes, no training argument"
        else:
            traced = ", ".join(str(v) for v in self.call_training_values) or "none"
            call = f"yes, traced for training={traced}"
        lines.append(f"__call__:   {call}")
        lines.append(
            f"variables:  {self.variables} ({self.trainable_variables} trainable), "
            f"{human_size(self.variable_bytes)}"
        )
        losses = (
            "none exported"
            if self.regularization_losses is None
            else str(self.regularization_losses)
        )
        lines.append(f"regularization losses: {losses}")
        lines.append(f"assets:     {', '.join(self.assets) if self.assets else 'none'}")
        lines.append(f"signatures: {len(self.signatures) or 'none'}")
        for signature in self.signatures:
            lines.append(f"  {signature.name}")
            for direction, tensors in (("in ", signature.inputs), ("out", signature.outputs)):
                for key, spec in tensors.items():
                    lines.append(f"    {direction} {key}: {spec}")
        return "\n".join(lines)


def _spec_bytes(spec: TensorSpecInfo) -> int:
    import tensorflow as tf

    if spec.shape is None or any(d is None for d in spec.shape):
        return 0
    count = 1
    for dim in spec.shape:
        count *= int(dim or 0)
    dtype = tf.dtypes.as_dtype(spec.dtype)
    return count * (dtype.size if dtype != tf.string else 0)


def _variables(model: SavedModelFile) -> tuple[int, int, int]:
    """(count, trainable count, bytes) of the model's variables."""
    from savedhub._savedmodel.protos import TensorSpecInfo, dtype_name, shape_of

    if not model.has_object_graph:
        graph_variables = model.graph_variables()
        trainable_names = set(model.collection_variable_names("trainable_variables"))
        size = sum(_spec_bytes(spec) for spec in graph_variables.values())
        return len(graph_variables), len(trainable_names & set(graph_variables)), size
    # Prefer the model's own ``variables`` list: what a user of ``obj.variables``
    # sees. (Keras 3 exports also save each variable a second time under
    # ``_all_variables``, so counting object-graph nodes would double them.)
    nodes = model.variable_nodes()
    children = model.root_children()
    listed = _listed(model, children.get("variables"))
    if listed:
        counted = [nodes[i] for i in dict.fromkeys(listed) if i in nodes]
    else:
        counted = list(nodes.values())
    size = sum(_spec_bytes(TensorSpecInfo(dtype_name(v.dtype), shape_of(v.shape))) for v in counted)
    trainable_listed = _listed(model, children.get("trainable_variables"))
    if trainable_listed is not None:
        trainable = len(set(trainable_listed))
    else:
        trainable = sum(1 for v in counted if v.trainable)
    return len(counted), trainable, size


def _listed(model: SavedModelFile, node_id: int | None) -> list[int] | None:
    return model.list_members(node_id) if node_id is not None else None


def inspect_dir(path: str, handle: str | None = None) -> ModelInfo:
    """``info()`` for a folder already on hand (no handle resolution)."""
    from savedhub._savedmodel.protos import SavedModelFile, tensor_info, walk_files

    model = SavedModelFile.read(path)
    signatures = [
        SignatureInfo(
            name,
            {k: tensor_info(v) for k, v in sorted(sig.inputs.items())},
            {k: tensor_info(v) for k, v in sorted(sig.outputs.items())},
        )
        for name, sig in model.signatures().items()
    ]
    children = model.root_children()
    call = children.get("__call__")
    losses_node = children.get("regularization_losses")
    losses = model.list_members(losses_node) if losses_node is not None else None
    count, trainable, size = _variables(model)
    files = list(walk_files(path))
    return ModelInfo(
        handle=handle if handle is not None else path,
        path=path,
        format=model.format,
        signatures=signatures,
        has_call=call is not None,
        call_training_values=model.training_values(call) if call is not None else None,
        variables=count,
        trainable_variables=trainable,
        variable_bytes=size,
        regularization_losses=None if losses is None else len(losses),
        assets=[name[len("assets/") :] for name, _ in files if name.startswith("assets/")],
        size_bytes=sum(file_size for _, file_size in files),
    )


def info(
    handle: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> ModelInfo:
    """Describe a SavedModel: format, signatures, ``__call__``, variables, assets, size.

    Remote handles are downloaded into the cache first; nothing is restored,
    so this is quick even for large models and works when the model needs
    ops of a package that is not installed. ``cache_dir`` is the cache root
    for this call (default: SAVEDHUB_CACHE_DIR, TFHUB_CACHE_DIR, else the
    user's cache folder).

    Example:
        >>> report = info("/models/my_mul")
        >>> report.has_call, report.variables
        (True, 1)
        >>> print(report)  # the text ``savedhub info`` shows

    Raises:
        ModelNotFoundError, NotASavedModelError, and for remote handles
        TransferError, NotCachedError.
    """
    parsed = handles.parse(handle)
    return inspect_dir(resolve_handle(parsed, cache_dir), parsed.original)
