"""``lint()``: check a SavedModel against the Reusable SavedModel interface.

Each check is a small function from a ``SavedModelFile`` to findings; add one
by writing it and listing it in ``CHECKS``. Errors are what breaks users
(nothing to call, inconsistent variable lists, files that will not exist on
their machine); warnings are the guide's advice (trace both ``training``
values, export logits, ship no optimizer state, offer a serving signature).
"""

from __future__ import annotations

import ntpath
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from savedhub._savedmodel import folder as saved_model_folder
from savedhub.client.resolver import check_saved_model_dir

if TYPE_CHECKING:  # the checks run on it; lint() imports it (and TensorFlow) when called
    from savedhub._savedmodel.protos import SavedModelFile

ERROR = "error"
WARNING = "warning"
_NON_LOGIT_OPS = {"Softmax": "softmax probabilities", "TopKV2": "top-k predictions"}


@dataclass(frozen=True)
class Finding:
    """One problem ``lint`` found.

    Attributes:
        severity: ``"error"`` (users cannot rely on the model) or ``"warning"``.
        code: a stable short name, e.g. ``missing-call``.
        message: what is wrong, why it matters and how to fix it.
    """

    severity: str
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.severity}: {self.code}: {self.message}"


Check = Callable[["SavedModelFile"], Iterator[Finding]]


def _is_absolute(path: str) -> bool:
    return os.path.isabs(path) or ntpath.isabs(path) or path.startswith("\\\\")


def check_format(model: SavedModelFile) -> Iterator[Finding]:
    if model.format == "tf1-hub":
        yield Finding(
            WARNING,
            "tf1-hub-format",
            "The model is in the legacy TF1 Hub format (hub.Module): TF2 loads only its "
            "signatures, with no __call__, trainable variables or regularization losses, so "
            "it cannot be fine-tuned. Re-export it with tf.saved_model.save from TF2.",
        )
    elif model.format == "tf1":
        yield Finding(
            WARNING,
            "tf1-saved-model",
            "The model is a TF1 SavedModel (no object graph): TF2 loads only its signatures "
            "and it cannot be fine-tuned. Re-export it with tf.saved_model.save from TF2.",
        )


def check_entry_points(model: SavedModelFile) -> Iterator[Finding]:
    if model.format != "tf2" or "__call__" in model.root_children():
        return
    if not model.signatures():
        yield Finding(
            ERROR,
            "no-entry-point",
            "The model has neither a __call__ nor any signature, so nothing in it can be "
            "called. Decorate __call__ with @tf.function (with an input_signature or traced "
            "via get_concrete_function) before tf.saved_model.save.",
        )
        return
    yield Finding(
        WARNING,
        "missing-call",
        "The model has no __call__: users must go through a signature, and cannot pass "
        "training=True to fine-tune. Save a tf.function __call__(inputs, training=False) "
        "as the Reusable SavedModel interface describes.",
    )


def check_serving_signature(model: SavedModelFile) -> Iterator[Finding]:
    if model.format == "tf1-hub" or "serving_default" in model.signatures():
        return
    if model.format == "tf2" and "__call__" not in model.root_children() and not model.signatures():
        return  # already an error: nothing callable
    yield Finding(
        WARNING,
        "no-serving-signature",
        "The model has no serving_default signature, which TF Serving, saved_model_cli and "
        "obj.signatures users look for. Pass signatures={'serving_default': "
        "obj.__call__.get_concrete_function(tf.TensorSpec(...))} to tf.saved_model.save.",
    )


_ATTRIBUTE_ADVICE = {
    "variables": "so a KerasLayer cannot track its weights and fine-tuned values are not "
    "saved with the user's model",
    "trainable_variables": "so it cannot be fine-tuned",
    "regularization_losses": "so fine-tuning loses its weight regularization",
}


def check_interface_attributes(model: SavedModelFile) -> Iterator[Finding]:
    if model.format != "tf2":
        return
    children = model.root_children()
    has_call = "__call__" in children
    holds_variables = bool(model.variable_nodes())
    lists: dict[str, list[int]] = {}
    for name, advice in _ATTRIBUTE_ADVICE.items():
        node = children.get(name)
        members = model.list_members(node) if node is not None else None
        if members is not None:
            lists[name] = members
            continue
        needed = name == "variables" and has_call and holds_variables
        what = "is missing" if node is None else "is not a list"
        yield Finding(
            ERROR if needed else WARNING,
            f"missing-{name.replace('_', '-')}",
            f"obj.{name} {what}, {advice}. Set self.{name} = [...] on the saved object "
            "(tf.Module's own properties are not saved).",
        )
    variables = model.variable_nodes()
    if "variables" in lists and "trainable_variables" in lists:
        outside = [i for i in lists["trainable_variables"] if i not in set(lists["variables"])]
        if outside:
            names = ", ".join(variables[i].name or f"node {i}" for i in outside if i in variables)
            yield Finding(
                ERROR,
                "trainable-not-in-variables",
                f"{len(outside)} of obj.trainable_variables are not in obj.variables "
                f"({names}): every trainable variable must also be listed in variables.",
            )
    for i in lists.get("trainable_variables", []):
        if model.kind(i) != "variable":
            yield Finding(
                ERROR,
                "trainable-not-in-variables",
                f"obj.trainable_variables holds a {model.kind(i)}, not a variable.",
            )
            break
    for position, i in enumerate(lists.get("regularization_losses", [])):
        calls = model.traced_calls(i)
        if not calls or any(call.args or call.kwargs for call in calls):
            yield Finding(
                ERROR,
                "bad-regularization-loss",
                f"obj.regularization_losses[{position}] is not a function of no arguments; "
                "each entry must be tf.function(input_signature=[])(lambda: ...) returning a "
                "scalar loss.",
            )


def check_training_traces(model: SavedModelFile) -> Iterator[Finding]:
    call = model.root_children().get("__call__")
    if call is None:
        return
    values = model.training_values(call)
    if values is None:
        return
    if False in values and True in values:
        return
    traced = ", ".join(str(v) for v in values) or "nothing"
    yield Finding(
        WARNING,
        "single-training-value",
        f"__call__ takes a training argument but was traced only for training={traced}: "
        "calls with the other value fail after loading. Trace both, e.g. "
        "obj.__call__.get_concrete_function(spec, training=False) and training=True, "
        "before saving.",
    )


def check_optimizer(model: SavedModelFile) -> Iterator[Finding]:
    if model.format != "tf2":
        return
    slots = sum(len(node.slot_variables) for node in model.nodes)
    optimizer = model.root_children().get("optimizer")
    optimizer_variables = 0
    if optimizer is not None:
        optimizer_variables = sum(
            1 for i in model.subtree(optimizer) if model.kind(i) == "variable"
        )
    if slots or optimizer_variables:
        count = max(slots, optimizer_variables)
        yield Finding(
            WARNING,
            "optimizer-variables",
            f"The model ships {count} optimizer variable(s) (slots such as Adam's moments): "
            "they are useless to users and enlarge the download. Save with "
            "model.save(..., include_optimizer=False), or do not attach the optimizer to the "
            "saved object.",
        )


def check_outputs(model: SavedModelFile) -> Iterator[Finding]:
    entry_points: dict[str, list[str]] = {}
    call = model.root_children().get("__call__")
    if call is not None:
        ops = [op for c in model.traced_calls(call) for op in model.producing_ops(c.function_name)]
        entry_points["__call__"] = ops
    for name in model.signatures():
        entry_points[f"signature {name!r}"] = list(model.signature_output_ops(name).values())
    offending: dict[str, str] = {}
    for where, ops in entry_points.items():
        kinds = sorted({_NON_LOGIT_OPS[op] for op in ops if op in _NON_LOGIT_OPS})
        if kinds:
            offending[where] = " and ".join(kinds)
    if offending:
        described = "; ".join(f"{where} returns {kinds}" for where, kinds in offending.items())
        yield Finding(
            WARNING,
            "probability-output",
            f"Outputs are not logits ({described}): gradients through a final softmax "
            "vanish when fine-tuning and users cannot pick their own loss. Export the logits "
            "and let users apply the activation.",
        )


def check_assets(model: SavedModelFile) -> Iterator[Finding]:
    absolute = [a.filename for a in model.meta_graph.asset_file_def if _is_absolute(a.filename)]
    tf1_assets = model.asset_tensor_names()
    for where, node, value in model.string_constants():
        if where == "graph" and node in tf1_assets:
            continue  # TF1 rewires these to the model's assets/ folder on load
        if _is_absolute(value):
            absolute.append(value)
    for path in sorted(set(absolute)):
        yield Finding(
            ERROR,
            "absolute-asset-path",
            f"The model reads the file {path!r} by absolute path, which will not exist on "
            "users' machines. Wrap it in tf.saved_model.Asset(path) (or pass the Asset to "
            "TextFileInitializer) so it is copied into assets/ and found wherever the model "
            "is.",
        )


def check_files(model: SavedModelFile) -> Iterator[Finding]:
    root = Path(model.path)
    if "://" in model.path or not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            yield Finding(
                ERROR,
                "symlink",
                f"{str(path.relative_to(root))!r} is a symbolic link (to {os.readlink(path)!r}):"
                " hub downloads cannot carry links. Replace it with a copy of the file.",
            )
    holds_variables = bool(
        model.variable_nodes() if model.has_object_graph else model.graph_variables()
    )
    variables_dir = root / saved_model_folder.VARIABLES_DIR
    if holds_variables and not (variables_dir / saved_model_folder.VARIABLES_INDEX).is_file():
        yield Finding(
            ERROR,
            "missing-variable-files",
            f"The model holds variables but {str(variables_dir / 'variables.index')!r} is "
            "missing, so it cannot be loaded. Save the model again.",
        )
        return
    missing = saved_model_folder.missing_shards(variables_dir)
    for total in sorted({count for _, count in missing}):
        of_total = [shard for shard, count in missing if count == total]
        yield Finding(
            ERROR,
            "missing-variable-files",
            f"{len(of_total)} of {total} variable shards are missing from "
            f"{str(variables_dir)!r} (first: variables.data-{of_total[0]:05d}-of-"
            f"{total:05d}). Save or copy the model again.",
        )


CHECKS: list[Check] = [
    check_format,
    check_entry_points,
    check_serving_signature,
    check_interface_attributes,
    check_training_traces,
    check_optimizer,
    check_outputs,
    check_assets,
    check_files,
]


def lint(path: str | os.PathLike[str]) -> list[Finding]:
    """Check the SavedModel folder ``path`` against the Reusable SavedModel interface.

    Reads the model's files only; nothing is restored or run.

    Example:
        >>> for finding in lint("/models/my_mul"):
        ...     print(finding)  # e.g. "warning: missing-call: ..."

    Returns:
        Every finding, errors first, then in the order the checks ran.

    Raises:
        ModelNotFoundError, NotASavedModelError: ``path`` is not a SavedModel folder.
    """
    folder = str(check_saved_model_dir(path)) if "://" not in os.fspath(path) else os.fspath(path)
    from savedhub._savedmodel.protos import SavedModelFile

    model = SavedModelFile.read(folder)
    findings = [finding for check in CHECKS for finding in check(model)]
    return sorted(findings, key=lambda f: f.severity != ERROR)


def errors(findings: list[Finding]) -> list[Finding]:
    """Only the findings of severity error."""
    return [f for f in findings if f.severity == ERROR]
