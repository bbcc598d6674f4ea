"""A SavedModel directory read from its protos, never restored.

``info`` and ``lint`` both need to see what a SavedModel holds (its object
graph, signatures, traced functions, variables and files) without running
it: restoring a large model would read gigabytes of weights, and a model whose
ops need an uninstalled package could not be restored at all. This module
parses ``saved_model.pb`` and answers those questions from the protos.

It imports TensorFlow (for the proto classes and dtypes), so only the
commands that inspect a model import it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.framework import function_pb2, graph_pb2, variable_pb2
from tensorflow.core.protobuf import (
    meta_graph_pb2,
    saved_model_pb2,
    saved_object_graph_pb2,
    struct_pb2,
)

from savedhub._savedmodel.folder import GRAPH_FILES, TF1_HUB_MODULE_FILE
from savedhub.errors import NotASavedModelError

CHECKPOINT_COUNTER = "save_counter"  # tf.train.Checkpoint's own bookkeeping variable
_CALL_OPS = {"StatefulPartitionedCall", "PartitionedCall"}
_PASS_THROUGH_OPS = {"Identity", "IdentityN", "Snapshot", "StopGradient", "EnsureShape"}
_VARIABLE_OPS = {"VarHandleOp", "VariableV2", "Variable"}
_MAX_TRACE_DEPTH = 64


@dataclass(frozen=True)
class TensorSpecInfo:
    """The dtype and shape of one tensor; ``shape`` is None for unknown rank,
    and holds None for each unknown dimension."""

    dtype: str
    shape: tuple[int | None, ...] | None

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": None if self.shape is None else list(self.shape)}

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.dtype}[<unknown rank>]"
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"


def dtype_name(dtype_enum: int) -> str:
    return str(tf.dtypes.as_dtype(dtype_enum).name)


def shape_of(proto: Any) -> tuple[int | None, ...] | None:
    if proto.unknown_rank:
        return None
    return tuple(None if d.size < 0 else int(d.size) for d in proto.dim)


def tensor_info(proto: meta_graph_pb2.TensorInfo) -> TensorSpecInfo:
    return TensorSpecInfo(dtype_name(proto.dtype), shape_of(proto.tensor_shape))


def decode_structure(value: struct_pb2.StructuredValue) -> Any:
    """A StructuredValue (how SavedModels record Python call signatures) as plain Python.

    Tensor specs become ``TensorSpecInfo``; containers and scalars map to
    their Python equivalents; kinds not needed here become None.
    """
    kind = value.WhichOneof("kind")
    if kind in ("list_value", "tuple_value"):
        items = [decode_structure(v) for v in getattr(value, kind).values]
        return items if kind == "list_value" else tuple(items)
    if kind == "dict_value":
        return {k: decode_structure(v) for k, v in value.dict_value.fields.items()}
    if kind == "named_tuple_value":
        return {pair.key: decode_structure(pair.value) for pair in value.named_tuple_value.values}
    if kind == "tensor_spec_value":
        spec = value.tensor_spec_value
        return TensorSpecInfo(dtype_name(spec.dtype), shape_of(spec.shape))
    if kind in ("bool_value", "int64_value", "float64_value", "string_value"):
        return getattr(value, kind)
    return None


@dataclass(frozen=True)
class TracedCall:
    """One concrete function of a restored ``tf.function``: its positional and
    keyword arguments, decoded, and the function's name in the graph library."""

    function_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class SavedModelFile:
    """The protos of one SavedModel directory.

    Example:
        >>> model = SavedModelFile.read("/models/my_mul")
        >>> model.root_children()["__call__"]
        4
    """

    def __init__(self, path: str, proto: saved_model_pb2.SavedModel) -> None:
        self.path = path
        self.proto = proto

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> SavedModelFile:
        """Parse ``path/saved_model.pb`` (or ``.pbtxt``).

        Raises:
            NotASavedModelError: the graph file is missing or does not parse.
        """
        path = os.fspath(path)
        binary, text = (os.path.join(path, name) for name in GRAPH_FILES)
        proto = saved_model_pb2.SavedModel()
        try:
            if tf.io.gfile.exists(binary):
                with tf.io.gfile.GFile(binary, "rb") as f:
                    proto.ParseFromString(f.read())
            elif tf.io.gfile.exists(text):
                from google.protobuf import text_format

                with tf.io.gfile.GFile(text, "r") as f:
                    text_format.Parse(f.read(), proto)
            else:
                raise NotASavedModelError(
                    f"{path!r} is not a SavedModel folder: it has no saved_model.pb. "
                    "Pass the folder the model was saved to.",
                    path,
                )
        except (DecodeError, UnicodeDecodeError, ValueError) as exc:
            if isinstance(exc, NotASavedModelError):
                raise
            raise NotASavedModelError(
                f"The saved_model.pb in {path!r} does not parse ({exc}); the file is damaged "
                "or truncated. Save or download the model again.",
                path,
            ) from exc
        except tf.errors.OpError as exc:  # TensorFlow's filesystem: permissions, gs:// access
            raise NotASavedModelError(
                f"The SavedModel in {path!r} cannot be read: {exc.message} "
                "Check the path and your permissions for it.",
                path,
            ) from exc
        if not proto.meta_graphs:
            raise NotASavedModelError(
                f"The saved_model.pb in {path!r} holds no MetaGraph. Save the model again.", path
            )
        return cls(path, proto)

    # -- the graph -------------------------------------------------------------

    @cached_property
    def meta_graph(self) -> meta_graph_pb2.MetaGraphDef:
        """The MetaGraph a plain load uses: tagged ``serve``, else the first one."""
        for meta_graph in self.proto.meta_graphs:
            if "serve" in meta_graph.meta_info_def.tags:
                return meta_graph
        return self.proto.meta_graphs[0]

    @property
    def graph_def(self) -> graph_pb2.GraphDef:
        return self.meta_graph.graph_def

    @cached_property
    def is_tf1_hub(self) -> bool:
        return bool(tf.io.gfile.exists(os.path.join(self.path, TF1_HUB_MODULE_FILE)))

    @property
    def has_object_graph(self) -> bool:
        """TF2 SavedModels record their Python objects; TF1 ones only a graph."""
        return self.meta_graph.HasField("object_graph_def") and bool(
            self.meta_graph.object_graph_def.nodes
        )

    @property
    def format(self) -> str:
        """``tf1-hub`` (hub.Module format), ``tf2`` or ``tf1`` (a plain TF1 SavedModel)."""
        if self.is_tf1_hub:
            return "tf1-hub"
        return "tf2" if self.has_object_graph else "tf1"

    @cached_property
    def functions(self) -> dict[str, function_pb2.FunctionDef]:
        return {f.signature.name: f for f in self.graph_def.library.function}

    def signatures(self) -> dict[str, meta_graph_pb2.SignatureDef]:
        """Signature name -> SignatureDef, without TF's internal init entry."""
        return {
            name: sig
            for name, sig in sorted(self.meta_graph.signature_def.items())
            if name != "__saved_model_init_op"
        }

    # -- the object graph (TF2) -----------------------------------------------

    @property
    def nodes(self) -> Any:
        return self.meta_graph.object_graph_def.nodes

    def children(self, node_id: int) -> dict[str, int]:
        return {c.local_name: c.node_id for c in self.nodes[node_id].children}

    def root_children(self) -> dict[str, int]:
        return self.children(0) if self.has_object_graph else {}

    def kind(self, node_id: int) -> str:
        return str(self.nodes[node_id].WhichOneof("kind"))

    def list_members(self, node_id: int) -> list[int] | None:
        """The node ids in a saved Python list (``self.variables = [...]``), in order;
        None when the node is not a list."""
        node = self.nodes[node_id]
        if self.kind(node_id) != "user_object" or "list" not in node.user_object.identifier:
            return None
        indexed = [(c.local_name, c.node_id) for c in node.children if c.local_name.isdigit()]
        return [node_id for _, node_id in sorted(indexed, key=lambda item: int(item[0]))]

    def variable_nodes(self) -> dict[int, saved_object_graph_pb2.SavedVariable]:
        """Every variable the object graph holds, except a Checkpoint's save counter."""
        counter = self.root_children().get(CHECKPOINT_COUNTER)
        return {
            i: node.variable
            for i, node in enumerate(self.nodes)
            if node.WhichOneof("kind") == "variable" and i != counter
        }

    def subtree(self, node_id: int) -> Iterator[int]:
        """Every node reachable from ``node_id``, each once."""
        seen: set[int] = set()
        stack = [node_id]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            yield current
            stack.extend(c.node_id for c in self.nodes[current].children)

    def traced_calls(self, node_id: int) -> list[TracedCall]:
        """The concrete functions a restored ``tf.function`` node was traced into."""
        node = self.nodes[node_id]
        kind = self.kind(node_id)
        if kind == "function":
            names = list(node.function.concrete_functions)
        elif kind == "bare_concrete_function":
            names = [node.bare_concrete_function.concrete_function_name]
        else:
            return []
        calls = []
        for name in names:
            concrete = self.meta_graph.object_graph_def.concrete_functions.get(name)
            decoded = decode_structure(concrete.canonicalized_input_signature) if concrete else None
            args, kwargs = (), {}
            if isinstance(decoded, tuple) and len(decoded) == 2:
                args, kwargs = tuple(decoded[0] or ()), dict(decoded[1] or {})
            calls.append(TracedCall(name, args, kwargs))
        return calls

    def argument_names(self, node_id: int) -> list[str]:
        """The Python parameter names of a restored ``tf.function`` (without ``self``)."""
        if self.kind(node_id) != "function":
            return []
        spec = self.nodes[node_id].function.function_spec
        decoded = decode_structure(spec.fullargspec)
        names = list(decoded.get("args") or []) if isinstance(decoded, dict) else []
        if spec.is_method and names and names[0] == "self":
            names = names[1:]
        return names

    def training_values(self, node_id: int) -> list[bool | None] | None:
        """The ``training`` values a function was traced for, or None when it
        takes no ``training`` argument."""
        names = self.argument_names(node_id)
        if "training" not in names:
            return None
        position = names.index("training")
        values: set[bool | None] = set()
        for call in self.traced_calls(node_id):
            if "training" in call.kwargs:
                value = call.kwargs["training"]
            elif position < len(call.args):
                value = call.args[position]
            else:
                value = None
            values.add(value if isinstance(value, bool) else None)
        return sorted(values, key=lambda v: (v is None, bool(v)))

    # -- tracing outputs to the op that made them ------------------------------

    def producing_ops(self, function_name: str) -> list[str]:
        """For each output of a library function, the op that computes it,
        looking through identities and nested function calls."""
        function = self.functions.get(function_name)
        if function is None:
            return []
        nodes = {n.name: n for n in function.node_def}
        return [
            self._trace(nodes, function.ret[arg.name], 0) for arg in function.signature.output_arg
        ]

    def signature_output_ops(self, name: str) -> dict[str, str]:
        """Output key -> the op that computes it, for a signature."""
        signature = self.meta_graph.signature_def[name]
        nodes = {n.name: n for n in self.graph_def.node}
        return {
            key: self._trace(nodes, info.name, 0) for key, info in sorted(signature.outputs.items())
        }

    def _trace(self, nodes: dict[str, Any], ref: str, depth: int) -> str:
        """The op behind ``ref``: ``node:index`` in the graph, ``node:output_arg:index``
        (or a bare argument name) inside a function whose nodes are ``nodes``."""
        if depth > _MAX_TRACE_DEPTH:
            return "?"
        parts = ref.split(":")
        node = nodes.get(parts[0])
        if node is None:
            return "<argument>"
        index = int(parts[-1]) if len(parts) > 1 else 0
        if node.op in _PASS_THROUGH_OPS:
            inputs = [i for i in node.input if not i.startswith("^")]
            return self._trace(nodes, inputs[index if node.op == "IdentityN" else 0], depth + 1)
        callee = self.functions.get(node.attr["f"].func.name if node.op in _CALL_OPS else node.op)
        if callee is not None and index < len(callee.signature.output_arg):
            callee_nodes = {n.name: n for n in callee.node_def}
            ret = callee.ret[callee.signature.output_arg[index].name]
            return self._trace(callee_nodes, ret, depth + 1)
        return str(node.op)

    def string_constants(self) -> Iterator[tuple[str, str, str]]:
        """(where, node name, value) of every scalar string constant feeding a
        file-reading op, in the graph and in every function."""
        graphs: list[tuple[str, Any]] = [("graph", self.graph_def.node)]
        graphs += [(name, f.node_def) for name, f in sorted(self.functions.items())]
        for where, node_defs in graphs:
            by_name = {n.name: n for n in node_defs}
            for node in node_defs:
                if node.op not in FILE_READING_OPS:
                    continue
                source = node.input[0].split(":")[0] if node.input else ""
                seen = 0
                while source in by_name and by_name[source].op in _PASS_THROUGH_OPS and seen < 16:
                    source = by_name[source].input[0].split(":")[0]
                    seen += 1
                const = by_name.get(source)
                if const is None or const.op != "Const":
                    continue
                values = const.attr["value"].tensor.string_val
                if len(values) == 1:
                    yield where, const.name, values[0].decode("utf-8", "replace")

    # -- TF1 graphs ------------------------------------------------------------

    def graph_variables(self) -> dict[str, TensorSpecInfo]:
        """Variables of a TF1 graph: op name -> dtype and shape."""
        result = {}
        for node in self.graph_def.node:
            if node.op in _VARIABLE_OPS:
                dtype = dtype_name(node.attr["dtype"].type)
                result[node.name] = TensorSpecInfo(dtype, shape_of(node.attr["shape"].shape))
        return result

    def collection_variable_names(self, collection: str) -> list[str]:
        """The variable op names a TF1 graph lists in a collection."""
        if collection not in self.meta_graph.collection_def:
            return []
        names = []
        for raw in self.meta_graph.collection_def[collection].bytes_list.value:
            variable = variable_pb2.VariableDef()
            variable.ParseFromString(raw)
            names.append(variable.variable_name.split(":")[0])
        return names

    def asset_tensor_names(self) -> set[str]:
        """Graph nodes that TF1 rewires to the model's assets/ folder on load."""
        return {a.tensor_info.name.split(":")[0] for a in self.meta_graph.asset_file_def}


FILE_READING_OPS = {
    "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2",
    "ReadFile",
    "TextLineDataset",
    "TFRecordDataset",
    "FixedLengthRecordDataset",
}


def walk_files(path: str) -> Iterator[tuple[str, int]]:
    """(path relative to ``path`` with ``/``, size) of every file below ``path``, sorted."""
    found = []
    for directory, _, files in tf.io.gfile.walk(path):
        for name in files:
            full = os.path.join(directory, name)
            relative = os.path.relpath(full, path).replace(os.sep, "/")
            found.append((relative, int(tf.io.gfile.stat(full).length)))
    yield from sorted(found)
