"""ONNX front end: safe loading, shape pins, shape inference, constant folding -> graph IR.

Opset policy: the default domain is supported directly for opsets 7..``onnx.defs`` newest; each
lowering declares the opset range whose semantics it implements (older opsets are not
rewritten, so what runs is what the model says). Models below opset 7 are refused.

Large initializers are kept out of ONNX shape inference (it serializes the whole model): the
inference runs on a data-free *skeleton* in which big constants are declared inputs, and constant
folding alternates with inference until nothing changes.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from . import errors
from .dynamic_shapes import DynamicShapeModel, find_symbols
from .errors import BadInputError, UnsupportedError
from .folding import fold_node, is_foldable
from .ir import Graph, Node, Value
from .lowering.sequence import resolve_static as resolve_static_sequences
from .sample_shapes import SampleValues

MIN_DEFAULT_OPSET = 7
# Constants up to this many elements stay inside the skeleton (shape inference reads them).
SMALL_CONST_ELEMENTS = 1024
MAX_FOLD_ROUNDS = 8
# TFLite shapes are int32 and kernels index flat buffers with int: larger tensors are refused.
MAX_TFLITE_DIM = 2**31 - 1
# ONNX data propagation materializes Range values; above this many the limit is hidden from it.
MAX_PROPAGATED_RANGE = 1 << 22


@dataclass
class FrontEndResult:
    graph: Graph
    # Returns the loaded model with the user's shape pins applied (unfolded), for validation.
    # A model given by path is re-read on demand instead of holding its weights twice.
    model_loader: Callable[[], onnx.ModelProto]
    folded_nodes: list[str]


def _check_external_data(model: onnx.ModelProto, base_dir: Path) -> bool:
    """Refuse external data that points outside the model folder or at missing bytes."""
    base = base_dir.resolve()
    found = False
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        found = True
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if not location or os.path.isabs(location):
            raise BadInputError(
                errors.UNSAFE_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data location {location!r} must be a "
                "relative path inside the model folder",
            )
        target = (base / location).resolve()
        if base not in target.parents:
            raise BadInputError(
                errors.UNSAFE_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data {location!r} resolves outside the "
                f"model folder {str(base)!r}; refused and not read",
            )
        if not target.is_file():
            raise BadInputError(
                errors.MISSING_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data file {location!r} does not exist",
            )
        try:
            offset = int(info.get("offset", 0) or 0)
            length = None if info.get("length") in (None, "") else int(info["length"])
        except ValueError:
            raise BadInputError(
                errors.MISSING_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data offset/length are not integers",
            ) from None
        size = target.stat().st_size
        if offset < 0 or offset > size or (length is not None and not 0 <= length <= size - offset):
            raise BadInputError(
                errors.MISSING_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data range exceeds file {location!r}",
            )
    return found


def _all_tensors(model: onnx.ModelProto):
    """Every TensorProto that may carry data, sub-graphs and sparse tensors included.

    onnx's external-data loader descends into sub-graphs, so the safety check must too.
    """
    yield from _graph_tensors(model.graph)
    for func in model.functions:
        for node in func.node:
            yield from _node_tensors(node)


def _graph_tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto):
    for attr in node.attribute:  # HasField first: reading an unset message field builds one
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        for sparse in attr.sparse_tensors:
            yield sparse.values
            yield sparse.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def load_model(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """Load from path or take a ModelProto; never modifies the caller's file or proto."""
    if isinstance(model, onnx.ModelProto):
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in _all_tensors(model)):
            raise BadInputError(
                errors.MISSING_EXTERNAL_DATA,
                "ModelProto references external data; pass the model path instead so the "
                "data can be located safely",
            )
        return model
    path = Path(model)
    if path.is_dir():
        raise BadInputError(errors.FILE_NOT_FOUND, f"{str(path)!r} is a directory, not a model")
    if not path.is_file():
        raise BadInputError(errors.FILE_NOT_FOUND, f"model file {str(path)!r} not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for garbage input
        raise BadInputError(
            errors.INVALID_MODEL, f"{str(path)!r} is not a readable ONNX model: {exc}"
        ) from None
    if not proto.graph.node and not proto.graph.output:
        raise BadInputError(
            errors.INVALID_MODEL, f"{str(path)!r} holds no graph (empty or not an ONNX model)"
        )
    if _check_external_data(proto, path.parent):
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
        except Exception as exc:
            raise BadInputError(errors.MISSING_EXTERNAL_DATA, str(exc)) from None
    return proto


def _dims(value_info) -> tuple[int | None, ...] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    # Some exporters write -1 for a dynamic dim: treat any negative dim as unknown. (A positive
    # dim_value is set; HasField is asked only for 0: called for every value of the graph.)
    dims = []
    for d in t.shape.dim:
        v = d.dim_value
        dims.append(v if v > 0 or (v == 0 and d.HasField("dim_value")) else None)
    return tuple(dims)


@functools.cache  # one per element type; called for every value of the graph
def _dtype(elem_type: int) -> np.dtype | None:
    if elem_type == 0:
        return None
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return None


def apply_shape_pins(
    model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]] | None, batch_size: int | None
) -> onnx.ModelProto:
    """Return a copy of ``model`` whose graph inputs carry the user's pinned dims."""
    if not input_shapes and batch_size is None:
        return model
    pinned = onnx.ModelProto()
    pinned.CopyFrom(model)
    init_names = {t.name for t in pinned.graph.initializer}
    real_inputs = {i.name: i for i in pinned.graph.input if i.name not in init_names}
    for name, dims in (input_shapes or {}).items():
        if name not in real_inputs:
            raise BadInputError(
                errors.INVALID_OPTION,
                f"--input-shape names {name!r}, which is not a model input "
                f"(inputs: {', '.join(real_inputs) or 'none'})",
            )
        shape = real_inputs[name].type.tensor_type.shape
        if len(shape.dim) != len(dims):
            raise BadInputError(
                errors.INVALID_OPTION,
                f"--input-shape {name}: rank {len(dims)} given, the model input has rank "
                f"{len(shape.dim)}",
            )
        for d, v in zip(shape.dim, dims, strict=True):
            if int(v) < 0:
                raise BadInputError(errors.INVALID_OPTION, f"--input-shape {name}: dim {v} < 0")
            d.Clear()
            d.dim_value = int(v)
    if batch_size is not None:
        if batch_size <= 0:
            raise BadInputError(errors.INVALID_OPTION, f"--batch-size {batch_size} must be > 0")
        for vi in real_inputs.values():
            dims = vi.type.tensor_type.shape.dim
            if dims and not dims[0].HasField("dim_value"):
                dims[0].Clear()
                dims[0].dim_value = int(batch_size)
    return pinned


def _check_structure(model: onnx.ModelProto) -> None:
    """Refuse models that are not well-formed ONNX before anything reads them further."""
    g = model.graph
    if not g.output:
        raise BadInputError(errors.INVALID_MODEL, "the graph has no outputs")
    _check_opsets(model)
    _check_unique_names(g)
    _check_node_schemas(model)
    for n in g.node:
        where = n.name or n.op_type or "<unnamed>"
        if not n.op_type:
            raise BadInputError(errors.INVALID_MODEL, f"node {where!r} has an empty op_type")
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            if len(n.output) != 1 or not n.output[0] or any(n.input):
                raise BadInputError(
                    errors.INVALID_MODEL,
                    f"Constant {where!r} must have no inputs and exactly one named output",
                )


def _check_opsets(model: onnx.ModelProto) -> None:
    g = model.graph
    default = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not default and any(n.domain in ("", "ai.onnx") for n in g.node):
        raise BadInputError(errors.INVALID_MODEL, "the model declares no default-domain opset")
    if default and default[0] < MIN_DEFAULT_OPSET:
        raise UnsupportedError(
            errors.UNSUPPORTED_OPSET,
            f"default-domain opset {default[0]} is older than {MIN_DEFAULT_OPSET}; upgrade the "
            "model with onnx.version_converter first",
        )
    if default and default[0] > onnx.defs.onnx_opset_version():
        raise UnsupportedError(
            errors.UNSUPPORTED_OPSET,
            f"default-domain opset {default[0]} is newer than this onnx "
            f"({onnx.defs.onnx_opset_version()})",
        )
    imported = {"" if o.domain == "ai.onnx" else o.domain for o in model.opset_import}
    for n in g.node:
        domain = "" if n.domain == "ai.onnx" else n.domain
        if domain and domain not in imported:
            raise BadInputError(
                errors.INVALID_MODEL,
                f"node {n.name or n.op_type!r} uses domain {n.domain!r}, which the model does "
                "not import (opset_import)",
            )


def _check_node_schemas(model: onnx.ModelProto) -> None:
    """Arity, required inputs and attribute types of default-domain nodes (onnx's checker).

    Shape inference skips these checks, and a missing required input would otherwise surface
    as an index error deep in a lowering.
    """
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = max(model.ir_version, 3)
    ctx.opset_imports = {
        ("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import
    }
    lex = onnx.checker.C.LexicalScopeContext()
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            continue
        if any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute
        ):
            continue  # subgraphs read outer-scope names the node-level checker cannot see
        try:
            onnx.checker.C.check_node(n.SerializeToString(), ctx, lex)
        except Exception as exc:
            msg = " ".join(str(exc).split())
            raise BadInputError(
                errors.INVALID_MODEL, f"node {n.name or n.op_type!r} is not valid ONNX: {msg}"
            ) from None


def _check_unique_names(g: onnx.GraphProto) -> None:
    """Static single assignment: every tensor name has exactly one source.

    An initializer may also be listed as a graph input (IR < 4 style); nothing else may share
    a name.
    """

    def dup(names) -> str | None:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                return name
            seen.add(name)
        return None

    for kind, names in (
        ("initializer", [t.name for t in g.initializer]),
        ("graph input", [i.name for i in g.input]),
        ("graph output", [o.name for o in g.output]),
    ):
        if (name := dup(names)) is not None:
            raise BadInputError(errors.INVALID_MODEL, f"duplicate {kind} name {name!r}")
    if any(not o.name for o in g.output) or any(not i.name for i in g.input):
        raise BadInputError(errors.INVALID_MODEL, "a graph input or output has an empty name")
    sources = {t.name for t in g.initializer} | {i.name for i in g.input}
    for n in g.node:
        for o in n.output:
            if o and o in sources:
                raise BadInputError(
                    errors.INVALID_MODEL,
                    f"tensor {o!r} is produced by node {n.name or n.op_type!r} and is also a "
                    "graph input, an initializer or the output of another node",
                )
            sources.add(o)


def _topo_sort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Kahn's algorithm; refuses cycles and inputs nothing produces.

    Most files are already in topological order: one pass proves it (every input is
    available or produced earlier, so there is no cycle and nothing dangles) and the file
    order is kept, which is also what the stable sort below would return."""
    node_inputs = [_node_inputs(n) for n in nodes]
    seen = set(available)
    for n, names in zip(nodes, node_inputs, strict=True):
        if not all(name in seen for name in names):
            break
        seen.update(n.output)
    else:
        return list(nodes)
    produced_by: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                produced_by[o] = i
    indeg = [0] * len(nodes)
    users: list[list[int]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        for name in set(node_inputs[i]):
            if name in available:
                continue
            if name not in produced_by:
                raise BadInputError(
                    errors.INVALID_MODEL,
                    f"node {n.name or n.op_type!r} reads {name!r}, which is neither a graph "
                    "input, an initializer nor produced by any node",
                )
            indeg[i] += 1
            users[produced_by[name]].append(i)
    ready = [i for i in range(len(nodes)) if indeg[i] == 0]
    order: list[int] = []
    while ready:
        i = ready.pop()
        order.append(i)
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    if len(order) != len(nodes):
        raise BadInputError(errors.INVALID_MODEL, "the graph contains a cycle")
    return _stable_topo(nodes, produced_by, available, node_inputs)


def _stable_topo(nodes, produced_by, available, node_inputs) -> list[onnx.NodeProto]:
    """Depth-first order that follows the file order: deterministic and usually identical.

    ``node_inputs[i]``: ``_node_inputs(nodes[i])``."""
    state = [0] * len(nodes)
    out: list[onnx.NodeProto] = []
    for root in range(len(nodes)):
        if state[root]:
            continue
        stack = [(root, iter(node_inputs[root]))]
        state[root] = 1
        while stack:
            i, it = stack[-1]
            for name in it:
                j = produced_by.get(name)
                if name in available or j is None or state[j]:
                    continue
                state[j] = 1
                stack.append((j, iter(node_inputs[j])))
                break
            else:
                stack.pop()
                out.append(nodes[i])
    return out


def _node_inputs(node: onnx.NodeProto) -> list[str]:
    """Inputs of a node including outer-scope names read by its subgraphs."""
    names = [i for i in node.input if i]
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs = [attr.g]
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs = list(attr.graphs)
        else:
            continue
        for sub in graphs:
            inner = {i.name for i in sub.input} | {t.name for t in sub.initializer}
            for sn in sub.node:
                names.extend(i for i in _node_inputs(sn) if i not in inner)
                inner.update(sn.output)
    return names


def _inline_constant_ifs(nodes, consts) -> tuple[list[onnx.NodeProto], list[str]]:
    """Replace each If whose condition is a known constant by the nodes of the taken branch.

    The branch's outputs are renamed to the If's outputs through Identity nodes; its Constant
    nodes and initializers join ``consts``. Outer-scope reads precede the If in topological
    order, and a branch is itself topologically sorted, so the order stays valid.
    """
    out: list[onnx.NodeProto] = []
    inlined: list[str] = []
    for n in nodes:
        cond = consts.get(n.input[0]) if n.op_type == "If" and n.input else None
        if cond is None or n.domain not in ("", "ai.onnx") or np.asarray(cond).size != 1:
            out.append(n)
            continue
        key = "then_branch" if bool(np.asarray(cond).reshape(-1)[0]) else "else_branch"
        branch = next((a.g for a in n.attribute if a.name == key), None)
        if branch is None:  # malformed If: left for the lowering to refuse
            out.append(n)
            continue
        for t in branch.initializer:
            consts[t.name] = numpy_helper.to_array(t)
        for sn in branch.node:
            if sn.op_type == "Constant" and sn.domain in ("", "ai.onnx"):
                consts[sn.output[0]] = _constant_node_value(sn)
            else:
                out.append(sn)
        for src, dst in zip(branch.output, n.output, strict=False):
            if dst:
                out.append(helper.make_node("Identity", [src.name], [dst], name=f"{dst}/inlined"))
        inlined.append(n.name or n.op_type)
    return out, inlined


WINDOW_WRAPPERS = ("Unsqueeze", "Reshape", "Identity", "Squeeze", "Cast")


def _window_slice_hints(nodes, consts, infos, known) -> dict[str, onnx.ValueInfoProto]:
    """Output shapes of ``Slice(x, s, s + k)`` with a run-time ``s`` (``x[i:i+k]`` in loops).

    ONNX inference cannot see that such a window has ``k`` elements along its axis; the
    window's length is ``k`` whenever ``s`` is in range (when it is not, the run-time
    STRIDED_SLICE computes the real, smaller shape and the following ops fail loudly)."""
    candidates = [n for n in nodes if n.op_type == "Slice" and len(n.input) >= 3]
    if not any(n.input[1] not in consts for n in candidates):
        return {}  # no run-time start: nothing to prove (most models: the pass is skipped)
    producer = {o: n for n in nodes for o in n.output if o}

    def strip(name: str) -> str:
        while name in producer and producer[name].op_type in WINDOW_WRAPPERS:
            name = producer[name].input[0]
        return name

    out = {}
    for n in candidates:
        if n.output[0] in known:
            continue
        vi, src = infos.get(n.output[0]), infos.get(n.input[0])
        dims = _dims(vi) if vi else None
        x = consts[n.input[0]].shape if n.input[0] in consts else (_dims(src) if src else None)
        if dims is None or x is None or None not in dims or None in x:
            continue
        steps = consts.get(n.input[4]) if len(n.input) > 4 and n.input[4] else np.ones(1)
        axes = consts.get(n.input[3]) if len(n.input) > 3 and n.input[3] else np.zeros(1)
        add = producer.get(strip(n.input[2]))
        if steps is None or axes is None or np.asarray(axes).size != 1 or add is None:
            continue
        if np.any(np.asarray(steps) != 1) or add.op_type != "Add":
            continue
        start = strip(n.input[1])
        terms = list(add.input)
        if start not in terms or len(terms) != 2:
            continue
        k = consts.get(terms[1 - terms.index(start)])
        if k is None or np.asarray(k).size != 1 or int(np.asarray(k).reshape(-1)[0]) <= 0:
            continue
        axis = int(np.asarray(axes).reshape(-1)[0]) % len(x)
        shape = list(x)
        shape[axis] = min(int(np.asarray(k).reshape(-1)[0]), x[axis])
        out[n.output[0]] = helper.make_tensor_value_info(
            n.output[0], vi.type.tensor_type.elem_type, shape
        )
    return out


def _always_true_loop(node: onnx.NodeProto, consts) -> bool:
    """Condition input constant true and the body's condition output provably true: the body
    passes its condition input through, or returns a true Constant (exporters' for-loops)."""
    cond = consts.get(node.input[1])
    if cond is None or not bool(np.all(cond)):
        return False
    body = next((a.g for a in node.attribute if a.name == "body"), None)
    if body is None or not body.input or not body.output:
        return False
    name = body.output[0].name
    producer = {o: sn for sn in body.node for o in sn.output}
    while name in producer and producer[name].op_type == "Identity":
        name = producer[name].input[0]
    if name == body.input[1].name:
        return True
    src = producer.get(name)
    if src is not None and src.op_type == "Constant" and src.domain in ("", "ai.onnx"):
        try:
            return bool(np.all(_constant_node_value(src)))
        except UnsupportedError:
            return False
    return False


def _pin_loop_scan_lengths(nodes, values: dict[str, Value], consts) -> None:
    """A Loop with a constant trip count and no condition input runs exactly that many times:
    its scan outputs have that length (ONNX shape inference leaves it unknown)."""
    for n in nodes:
        if n.op_type != "Loop" or n.domain not in ("", "ai.onnx") or len(n.input) < 2:
            continue
        if n.input[0] not in consts or (n.input[1] and not _always_true_loop(n, consts)):
            continue
        trips = max(int(np.asarray(consts[n.input[0]]).reshape(-1)[0]), 0)
        for name in n.output[len(n.input) - 2 :]:
            v = values.get(name)
            if v is not None and v.shape and v.shape[0] is None:
                v.shape = (trips, *v.shape[1:])


_SUBGRAPH_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def _outer_scope_reads(node: onnx.NodeProto) -> list[str]:
    """Names the node's subgraphs read from the enclosing scope, first-use order, no repeats."""
    if not any(a.type in _SUBGRAPH_TYPES for a in node.attribute):
        return []  # (most nodes: skip building their input list once more)
    seen: dict[str, None] = {}
    for name in _node_inputs(node)[len([i for i in node.input if i]) :]:
        seen.setdefault(name, None)
    return list(seen)


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = numpy_helper.to_array(a.t)
        elif a.type == onnx.AttributeProto.GRAPH:
            out[a.name] = a.g
        else:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [x.decode("utf-8", "replace") for x in v]
            out[a.name] = v
    return out


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray:
    attrs = _attrs(node)
    if "value" in attrs:
        value = attrs["value"]
        if value.dtype == object:
            raise UnsupportedError(
                errors.UNSUPPORTED_DTYPE, "string constants are not supported", node.name
            )
        return value
    for key, dtype in (
        ("value_float", np.float32),
        ("value_int", np.int64),
        ("value_floats", np.float32),
        ("value_ints", np.int64),
    ):
        if key in attrs:
            return np.array(attrs[key], dtype=dtype)
    raise UnsupportedError(
        errors.UNSUPPORTED_ATTRIBUTE_VALUE,
        f"Constant with attributes {sorted(attrs)} (sparse or string constants) is not supported",
        node.name,
    )


def _check_input_types(real_inputs) -> None:
    for vi in real_inputs:
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type" or _dtype(vi.type.tensor_type.elem_type) is None:
            raise UnsupportedError(
                errors.UNSUPPORTED_DTYPE,
                f"graph input {vi.name!r} is not a typed tensor ({kind or 'no type'}); only "
                "tensor inputs with a known element type are supported",
            )


def _check_output_types(outputs) -> None:
    for vi in outputs:
        kind = vi.type.WhichOneof("value")
        if kind not in (None, "tensor_type"):
            raise UnsupportedError(
                errors.UNSUPPORTED_DTYPE,
                f"graph output {vi.name!r} is a {kind.replace('_type', '')}, not a tensor; "
                "TFLite outputs are tensors (sequences/optionals only convert when they are "
                "resolved inside the graph)",
            )


def _check_sizes(values: dict[str, Value]) -> None:
    """Refuse tensors TFLite cannot describe (int32 dims, int-indexed flat buffers)."""
    for v in values.values():
        if not v.shape or not all(isinstance(d, int) for d in v.shape):
            continue
        count = 1
        for d in v.shape:
            count *= d
        if max(v.shape) > MAX_TFLITE_DIM or count > MAX_TFLITE_DIM:
            raise BadInputError(
                errors.INVALID_MODEL,
                f"tensor {v.name!r} has shape {list(v.shape)} ({count} elements); TFLite tensors "
                f"are limited to {MAX_TFLITE_DIM} elements with int32 dims",
            )


ELEMENT_PRESERVING = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"}


def _check_element_preserving(nodes, values: dict[str, Value]) -> None:
    """ONNX shape inference does not check that a Reshape keeps the element count; we do."""
    for n in nodes:
        if n.op_type not in ELEMENT_PRESERVING or n.domain not in ("", "ai.onnx"):
            continue
        if not n.input or not n.output:
            continue
        src, dst = values.get(n.input[0]), values.get(n.output[0])
        if src is None or dst is None or not src.is_static or not dst.is_static:
            continue
        if math.prod(src.shape) != math.prod(dst.shape):  # static: python ints, exact
            raise BadInputError(
                errors.INVALID_MODEL,
                f"{n.op_type} {n.name or n.output[0]!r} turns shape {list(src.shape)} into "
                f"{list(dst.shape)}: the element counts differ",
            )


def _check_axis_attributes(nodes, values: dict[str, Value]) -> None:
    """Refuse an ``axis`` attribute beyond every rank the node sees (ONNX inference may not).

    The bound is generous (|axis| <= max rank + 1 covers ops whose axis counts in the output,
    like OneHot); exact per-op ranges are the lowerings' business.
    """
    for n in nodes:
        if n.domain not in ("", "ai.onnx"):
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis" and a.type == a.INT), None)
        if axis is None:
            continue
        ranks = [values[t].rank for t in list(n.input) + list(n.output) if t in values]
        known = [r for r in ranks if r is not None]
        if known and abs(axis) > max(known) + 1:
            raise BadInputError(
                errors.INVALID_MODEL,
                f"{n.op_type} {n.name or n.output[0]!r}: axis={axis} is outside the tensors' "
                f"ranks ({max(known)})",
            )


def _check_operand_shapes(nodes, values: dict[str, Value]) -> None:
    """Operand shapes the ONNX spec fixes but ONNX shape inference does not check.

    Later stages (layout planning, fusions) rely on them; a violation is an invalid model.
    """
    for n in nodes:
        if n.domain not in ("", "ai.onnx") or not n.input:
            continue
        problem = None
        shapes = [values[i].shape if i in values else None for i in n.input]
        x = shapes[0]
        if n.op_type == "Transpose" and x is not None:
            perm = next((list(a.ints) for a in n.attribute if a.name == "perm"), None)
            if perm is not None and sorted(perm) != list(range(len(x))):
                problem = f"perm {perm} is not a permutation of the input's {len(x)} axes"
        elif n.op_type in ("BatchNormalization", "InstanceNormalization") and x is not None:
            channels = x[1] if len(x) >= 2 else None
            for k, shape in enumerate(shapes[1:5], start=1):
                if shape is not None and channels is not None and tuple(shape) != (channels,):
                    problem = f"input {k} has shape {list(shape)}, expected [{channels}]"
                    break
        elif n.op_type == "Clip" and any(
            sh is not None and int(np.prod(sh, dtype=object)) != 1 for sh in shapes[1:3]
        ):
            problem = f"min/max must be scalars, got shapes {shapes[1:3]}"
        elif n.op_type == "Conv":
            problem = _conv_operand_problem(n, shapes)
        elif n.op_type == "Gemm" and len(shapes) >= 2 and _gemm_k_problem(n, shapes):
            problem = _gemm_k_problem(n, shapes)
        elif n.op_type == "Gemm" and len(shapes) >= 3 and shapes[2] is not None:
            out = values[n.output[0]].shape if n.output[0] in values else None
            c = tuple(shapes[2])
            if out is not None and len(out) == 2 and not _broadcasts_to(c, tuple(out)):
                problem = f"C of shape {list(c)} does not broadcast to the output {list(out)}"
        if problem:
            raise BadInputError(
                errors.INVALID_MODEL, f"{n.op_type} {n.name or n.output[0]!r}: {problem}"
            )


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    """Unidirectional (numpy-style) broadcast of ``shape`` to ``target``."""
    if len(shape) > len(target):
        return False
    tail = target[len(target) - len(shape) :]
    return all(d in (1, t) or d is None or t is None for d, t in zip(shape, tail, strict=True))


def _gemm_k_problem(n, shapes) -> str | None:
    a, b = shapes[0], shapes[1]
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    flags = {x.name: x.i for x in n.attribute if x.name in ("transA", "transB")}
    k_a = a[0] if flags.get("transA") else a[1]
    k_b = b[1] if flags.get("transB") else b[0]
    if None not in (k_a, k_b) and k_a != k_b:
        return f"A gives K={k_a} but B gives K={k_b}"
    return None


def _conv_operand_problem(n, shapes) -> str | None:
    x, w = shapes[0], shapes[1] if len(shapes) > 1 else None
    if x is None or w is None or len(x) < 2 or len(w) < 2:
        return None
    group = next((a.i for a in n.attribute if a.name == "group"), 1)
    if None not in (x[1], w[1]) and x[1] != w[1] * group:
        return f"input has {x[1]} channels, weights expect {w[1]} x group {group}"
    if len(shapes) >= 3 and shapes[2] is not None and tuple(shapes[2]) != (w[0],):
        return f"bias shape {list(shapes[2])} does not match {w[0]} filters"
    return None


def _infer_with(samples: SampleValues, proto, nodes, consts, real_inputs, hints) -> dict:
    """Shape inference with run-time shape arithmetic stood in for by its sample values."""
    skeleton = _skeleton(
        proto,
        samples.skeleton_nodes(nodes),
        samples.known(consts),
        real_inputs,
        list(hints.values()),
    )
    infos = _infer(skeleton)
    samples.add_infos(infos)
    return infos


def _with_shapes(inputs, shapes: dict[str, tuple[int, ...]]) -> list[onnx.ValueInfoProto]:
    """Copies of the input value infos with the given inputs' dims replaced."""
    result = []
    for vi in inputs:
        if vi.name in shapes:
            vi = helper.make_tensor_value_info(
                vi.name, vi.type.tensor_type.elem_type, list(shapes[vi.name])
            )
        result.append(vi)
    return result


def _value_info(name: str, arr: np.ndarray) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        name, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape)
    )


def _skeleton(model, nodes, consts, real_inputs, hints=()) -> onnx.ModelProto:
    """A data-light copy for shape inference: big constants become typed inputs.

    ``hints``: value infos the front end proved itself (see :func:`_window_slice_hints`)."""
    inputs = list(real_inputs)
    inits = []
    hidden = _huge_range_limits(nodes, consts)
    for name, arr in consts.items():
        if arr.size <= SMALL_CONST_ELEMENTS and arr.dtype != object and name not in hidden:
            inits.append(numpy_helper.from_array(arr, name))
        else:
            inputs.append(_value_info(name, arr))
    known = {v.name for v in inputs} | {t.name for t in inits}
    hinted = {v.name for v in hints}
    value_info = [v for v in model.graph.value_info if v.name not in known | hinted]
    value_info += [v for v in hints if v.name not in known]
    graph = helper.make_graph(
        nodes,
        model.graph.name or "g",
        inputs,
        _skeleton_outputs(model, nodes, consts, real_inputs),
        inits,
        value_info=value_info,
    )
    sk = helper.make_model(graph, opset_imports=list(model.opset_import))
    sk.ir_version = max(model.ir_version, 4)
    return sk


def _huge_range_limits(nodes, consts) -> set[str]:
    """Names of Range limits whose Range would count more than ``MAX_PROPAGATED_RANGE`` values.

    ONNX data propagation computes every value of a constant Range (minutes or out of memory
    for 2**40); hiding the limit leaves the output shape unknown instead.
    """
    hidden = set()
    for n in nodes:
        if n.op_type != "Range" or len(n.input) != 3 or not all(i in consts for i in n.input):
            continue
        start, limit, delta = (consts[i] for i in n.input)
        try:
            count = np.ceil((limit.astype(np.float64) - start) / delta)
            huge = not np.all(np.isfinite(count)) or float(np.max(count)) > MAX_PROPAGATED_RANGE
        except Exception:
            huge = True
        if huge:
            hidden.add(n.input[1])
    return hidden


def _skeleton_outputs(model, nodes, consts, real_inputs) -> list[onnx.ValueInfoProto]:
    """Graph outputs for inference: without their declared shapes when every op has a schema.

    onnx silently keeps a declared dim that contradicts the inferred one; inferring from
    scratch lets :func:`_check_declared_outputs` compare the two.
    """
    if not all(n.domain in ("", "ai.onnx") for n in nodes):
        return list(model.graph.output)
    produced = {o for n in nodes for o in n.output}
    exact = {vi.name: vi for vi in real_inputs}
    exact.update((name, _value_info(name, arr)) for name, arr in consts.items())
    outputs = []
    for vi in model.graph.output:
        if vi.name in exact and vi.name not in produced:
            # An output that is a constant or an input gets its exact type: onnx would let a
            # shapeless declaration here hide the shape from the nodes that read the tensor.
            outputs.append(exact[vi.name])
            continue
        out = onnx.ValueInfoProto()
        out.CopyFrom(vi)
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
        outputs.append(out)
    return outputs


def _check_declared_outputs(declared, infos) -> None:
    """A graph output declared with static dims must match what inference computes."""
    for vi in declared:
        want, got = _dims(vi), _dims(infos[vi.name]) if vi.name in infos else None
        if want is None or got is None:
            continue
        if len(want) != len(got) or any(
            w is not None and g is not None and w != g for w, g in zip(want, got, strict=True)
        ):
            raise BadInputError(
                errors.SHAPE_INFERENCE_FAILED,
                f"graph output {vi.name!r} is declared {list(want)} but computes to {list(got)}",
            )


def _merge_declared(declared, inferred):
    """Per dim: the inferred value, else the declared one (they never conflict here)."""
    want = _dims(declared)
    got = _dims(inferred) if inferred is not None else None
    if want is None:
        return inferred if inferred is not None else declared
    if got is None:
        return declared
    merged = onnx.ValueInfoProto()
    merged.CopyFrom(inferred)
    if not merged.type.tensor_type.elem_type:
        merged.type.tensor_type.elem_type = declared.type.tensor_type.elem_type
    for dim, g, w in zip(merged.type.tensor_type.shape.dim, got, want, strict=True):
        if g is None and w is not None:
            dim.Clear()
            dim.dim_value = w
    return merged


def _infer(skeleton: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """ONNX shape inference; strict for standard ops, lenient when custom domains are present.

    Strict mode turns contradictions (declared vs inferred dtype or rank, broadcast or axis
    errors) into a clear ``shape_inference_failed`` instead of a tensor of unknown shape that
    fails later with a misleading reason. Custom-domain nodes have no schema, so models with
    them fall back to the lenient mode.
    """
    strict = all(n.domain in ("", "ai.onnx") for n in skeleton.graph.node)
    try:
        inferred = shape_inference.infer_shapes(skeleton, strict_mode=strict, data_prop=True)
    except Exception as exc:
        # onnx's data propagation mis-infers ranks on some valid graphs once constants are
        # folded (seen on attention subgraphs); the front end folds shape arithmetic itself,
        # so inference without it is the judge of last resort.
        try:
            inferred = shape_inference.infer_shapes(skeleton, strict_mode=strict, data_prop=False)
        except Exception:
            msg = " ".join(str(exc).split())
            raise BadInputError(
                errors.SHAPE_INFERENCE_FAILED, f"ONNX shape inference failed: {msg}"
            ) from None
    g = inferred.graph
    return {vi.name: vi for vi in list(g.input) + list(g.value_info) + list(g.output)}


# Element types whose raw_data is the plain little-endian array (what numpy_helper.to_array
# reads too, with more per-call overhead: models have hundreds of initializers).
_PLAIN_RAW = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.UINT32: np.uint32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.UINT64: np.uint64,
    onnx.TensorProto.BOOL: np.bool_,
}


def _initializer_array(t: onnx.TensorProto) -> np.ndarray:
    dtype = _PLAIN_RAW.get(t.data_type)
    if (
        dtype is not None
        and sys.byteorder == "little"
        and t.HasField("raw_data")
        and t.data_location != onnx.TensorProto.EXTERNAL
        and not t.HasField("segment")
    ):
        return np.frombuffer(t.raw_data, dtype).reshape(tuple(t.dims))
    return numpy_helper.to_array(t)


def load_graph(
    model: str | os.PathLike | onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    batch_size: int | None = None,
    find_dynamic: bool = False,
    probe_shapes: dict[str, tuple[int, ...]] | None = None,
) -> FrontEndResult:
    """``find_dynamic``: raise :class:`DynamicShapeModel` (before any heavy work) when input
    dims are left unknown after the pins, so the caller can lower the model at sample sizes
    instead (``dynamic_shapes.py``). ``probe_shapes``: the inputs' shapes at another sample;
    shape arithmetic whose value differs there is kept for run time instead of folded."""
    loaded = load_model(model)
    proto = apply_shape_pins(loaded, input_shapes, batch_size)
    _check_structure(proto)
    if find_dynamic:
        symbols, input_dims = find_symbols(loaded, set(input_shapes or ()), batch_size)
        if symbols:
            raise DynamicShapeModel(symbols, input_dims)
    g = proto.graph
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in proto.opset_import}

    # A proto we loaded ourselves is ours to empty: releasing each initializer's bytes once
    # copied into numpy keeps peak memory near one copy of the weights instead of two.
    owned = not isinstance(model, onnx.ModelProto)  # (a pinned copy still feeds validation)
    consts: dict[str, np.ndarray] = {}
    for t in g.initializer:
        try:
            consts[t.name] = _initializer_array(t)
        except Exception as exc:
            raise BadInputError(errors.INVALID_MODEL, f"initializer {t.name!r}: {exc}") from None
        if owned and t.HasField("raw_data"):
            t.ClearField("raw_data")
    real_inputs = [i for i in g.input if i.name not in consts]
    for vi in g.input:
        declared = vi.type.tensor_type.elem_type
        if vi.name in consts and declared and _dtype(declared) != consts[vi.name].dtype:
            raise BadInputError(
                errors.INVALID_MODEL,
                f"graph input {vi.name!r} is declared {_dtype(declared)} but its initializer "
                f"holds {consts[vi.name].dtype}",
            )
    if len({i.name for i in g.input}) != len(g.input):
        raise BadInputError(errors.INVALID_MODEL, "duplicate graph input names")
    _check_input_types(real_inputs)
    _check_output_types(g.output)
    nodes = []
    for n in g.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            consts[n.output[0]] = _constant_node_value(n)
        else:
            nodes.append(n)
    available = set(consts) | {i.name for i in real_inputs}
    nodes = _topo_sort(nodes, available)

    folded: list[str] = []
    infos: dict[str, onnx.ValueInfoProto] = {}
    hints: dict[str, onnx.ValueInfoProto] = {}
    samples, probe_samples = SampleValues(), SampleValues()  # stay empty without a probe
    for _ in range(MAX_FOLD_ROUNDS):
        nodes, inlined = _inline_constant_ifs(nodes, consts)
        folded.extend(inlined)
        infos = _infer_with(samples, proto, nodes, consts, real_inputs, hints)
        probe = None
        if probe_shapes:
            probe_inputs = _with_shapes(real_inputs, probe_shapes)
            probe = _infer_with(probe_samples, proto, nodes, consts, probe_inputs, hints)
        new_hints = _window_slice_hints(nodes, consts, infos, hints)
        hints.update(new_hints)
        nodes, resolved = resolve_static_sequences(
            nodes, consts, infos, opsets.get("", 0), [o.name for o in g.output]
        )
        folded.extend(resolved)
        remaining = []
        changed = bool(inlined or resolved or new_hints)
        for n in nodes:
            out = None
            if is_foldable(n, consts, infos, probe):
                out = fold_node(n, consts, infos, opsets.get(n.domain, 0))
            if out is None:
                remaining.append(n)
                continue
            consts.update(out)
            folded.append(n.name or n.op_type)
            changed = True
        nodes = remaining
        if probe is not None:
            # (both, not short-circuited: each sample values its own run-time arithmetic)
            found = samples.evaluate(nodes, consts, infos, opsets)
            changed |= probe_samples.evaluate(nodes, consts, probe, opsets) or found
        if not changed:
            break

    graph_outputs = [o.name for o in g.output]
    _check_declared_outputs(g.output, infos)
    for vi in g.output:  # the declaration fills what inference left unknown (checked compatible)
        infos[vi.name] = _merge_declared(vi, infos.get(vi.name))
    values: dict[str, Value] = {}
    for name, arr in consts.items():
        values[name] = Value(name, arr.dtype, tuple(arr.shape), arr)
    for vi in real_inputs:
        values[vi.name] = Value(vi.name, _dtype(vi.type.tensor_type.elem_type), _dims(vi))
    for name, vi in infos.items():
        if name not in values:
            values[name] = Value(name, _dtype(vi.type.tensor_type.elem_type), _dims(vi))
    _pin_loop_scan_lengths(nodes, values, consts)
    ir_nodes = []
    for i, n in enumerate(nodes):
        domain = "" if n.domain == "ai.onnx" else n.domain
        for o in n.output:
            if o and o not in values:
                values[o] = Value(o, None, None)
        implicit = _outer_scope_reads(n)
        ir_nodes.append(
            Node(
                name=n.name or f"{n.op_type}:{n.output[0] if n.output else i}",
                op_type=n.op_type,
                domain=domain,
                inputs=list(n.input) + implicit,
                outputs=list(n.output),
                attrs=_attrs(n),
                opset=opsets.get(domain, 1),
                implicit_inputs=list(implicit),
            )
        )
    produced = {o for n in nodes for o in n.output} | set(consts) | {i.name for i in real_inputs}
    for o in graph_outputs:
        if o not in produced:
            raise BadInputError(errors.INVALID_MODEL, f"graph output {o!r} is never produced")
    _check_sizes(values)
    _check_element_preserving(nodes, values)
    _check_axis_attributes(nodes, values)
    _check_operand_shapes(nodes, values)
    graph = Graph(
        nodes=ir_nodes,
        values=values,
        inputs=[i.name for i in real_inputs],
        outputs=graph_outputs,
        opsets=opsets,
    )
    if isinstance(model, onnx.ModelProto):
        loader = lambda: proto  # noqa: E731  (the caller holds it already)
    else:
        loader = lambda: apply_shape_pins(load_model(model), input_shapes, batch_size)  # noqa: E731
    return FrontEndResult(graph=graph, model_loader=loader, folded_nodes=folded)
