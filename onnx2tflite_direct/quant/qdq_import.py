"""Already-quantized ONNX models (QDQ, QOperator, quantize_dynamic) -> integer TFLite.

Why strip instead of lowering Q/DQ one by one: a QDQ model is a float model annotated with
the quantization its author chose. Each activation ``QuantizeLinear -> DequantizeLinear`` pair
says "this float tensor lives on the lattice s * (q - zp)". Removing the pair and recording the
range ``[s * (qmin - zp), s * (qmax - zp)]`` on the float tensor hands the integer quantizer
(``integer.quantize_integer``, the same one the calibrated int8 path uses) exactly that scale
and zero point: ``params_from_range`` gives ``scale = (hi - lo) / 255 = s`` and
``zp = -128 - lo / s = zp`` (a uint8 zero point z is the int8 zero point z - 128 on the same
lattice). Constant weights behind a DequantizeLinear are folded into float initializers
(``(q - zp) * s``, computed as onnxruntime does); the quantizer re-derives symmetric int8
weights with ``max|w| / 127``, which is ``s`` again whenever a channel reaches q = +-127 (what
onnxruntime's symmetric weight quantization produces), and int32 biases with
``input scale * weight scale``.

Q/DQ that do not form a pair stay in the graph (their exact float lowerings in
``lowering/quantize.py``); ops with no pair around them have no range and stay float islands.
QOperator graphs are first rewritten into this QDQ form (``qoperator_expand.py``).

Use (what ``convert`` is meant to do when ``is_prequantized(model)``)::

    stripped, info = import_quantized(model)
    lowered = pipeline.lower_model(stripped, ..., **lowering_options(stripped, info))
    model_ir, summary = prequantized_variant(lowered, info.ranges, info, options)

``summary.nodes`` says per ONNX node whether it runs integer, hybrid or float and why.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import tfl
from ..tfl_edit import Editor

# Integer lattices an activation pair can use (the integer quantizer takes 8- or 16-bit).
Q_RANGES = {
    TensorProto.INT8: (-128, 127),
    TensorProto.UINT8: (0, 255),
    TensorProto.INT16: (-32768, 32767),
    TensorProto.UINT16: (0, 65535),
}
WEIGHTED_ONNX_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
MATMUL_LIKE_TFLITE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")


# ---- small graph helpers shared with qoperator_expand.py ---------------------------------


class GraphView:
    """Constants, producers and consumers of a GraphProto's top level (rebuilt on demand)."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.consts: dict[str, np.ndarray] = {}
        for init in graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = _constant_value(node)
                if value is not None:
                    self.consts[node.output[0]] = value
        self.refresh()

    def refresh(self) -> None:
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for node in self.graph.node:
            for o in node.output:
                if o:
                    self.producer[o] = node
            for i, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, i))
        self.subgraph_names = _names_used_in_subgraphs(self.graph)
        self.graph_outputs = {o.name for o in self.graph.output}
        self.graph_inputs = {i.name for i in self.graph.input}

    def const(self, node: onnx.NodeProto, i: int) -> np.ndarray | None:
        if i < len(node.input) and node.input[i]:
            return self.consts.get(node.input[i])
        return None

    def has(self, node: onnx.NodeProto, i: int) -> bool:
        return i < len(node.input) and bool(node.input[i])

    def elem_type(self, name: str) -> int | None:
        if name in self.consts:
            return helper.np_dtype_to_tensor_dtype(self.consts[name].dtype)
        for vi in [*self.graph.input, *self.graph.output, *self.graph.value_info]:
            if vi.name == name and vi.type.HasField("tensor_type"):
                return vi.type.tensor_type.elem_type
        return None

    def add_const(self, name: str, value: np.ndarray) -> str:
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        self.consts[name] = np.asarray(value)
        return name

    def fresh(self, hint: str) -> str:
        taken = set(self.consts) | set(self.producer) | self.graph_inputs
        name, k = hint, 0
        while name in taken:
            k += 1
            name = f"{hint}_{k}"
        self.producer[name] = None  # reserve
        return name


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, np.float32)
        if a.name == "value_int":
            return np.array(a.i, np.int64)
    return None


def _names_used_in_subgraphs(graph: onnx.GraphProto) -> set[str]:
    used: set[str] = set()
    for node in graph.node:
        for a in node.attribute:
            for g in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                for n in g.node:
                    used.update(n.input)
                used |= _names_used_in_subgraphs(g)
    return used


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def zero_point_type(view: GraphView, node: onnx.NodeProto, zp_index: int) -> int:
    """The integer type of a Q/DQ: its zero point's type, else output_dtype, else uint8."""
    zp = view.const(node, zp_index)
    if zp is not None:
        return helper.np_dtype_to_tensor_dtype(zp.dtype)
    if view.has(node, zp_index):
        return view.elem_type(node.input[zp_index]) or TensorProto.UINT8
    return attr(node, "output_dtype", 0) or TensorProto.UINT8


def dequantize_array(q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int):
    """onnxruntime's DequantizeLinear: float32(q - zp) * scale, scale/zp along ``axis``."""
    shape = [1] * q.ndim
    if scale.size > 1:
        shape[axis % q.ndim] = -1
    diff = q.astype(np.int64)
    if zp is not None:
        diff = diff - zp.astype(np.int64).reshape(shape if zp.size > 1 else [1] * q.ndim)
    return diff.astype(np.float32) * scale.astype(np.float32).reshape(shape)


def quantize_array(x, scale, zp, axis: int, elem_type: int) -> np.ndarray:
    """onnxruntime's QuantizeLinear: saturate(round_half_even(x / scale) + zp)."""
    lo, hi = Q_RANGES[elem_type]
    shape = [1] * x.ndim
    if scale.size > 1:
        shape[axis % x.ndim] = -1
    q = np.rint(x.astype(np.float32) / scale.astype(np.float32).reshape(shape))
    if zp is not None:
        q = q + zp.astype(np.float32).reshape(shape if zp.size > 1 else [1] * x.ndim)
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    return np.clip(q, lo, hi).astype(dtype)


# ---- stripping ---------------------------------------------------------------------------


@dataclass
class PairParams:
    """The lattice of one activation tensor, from its Q/DQ pair."""

    scale: float
    zero_point: int
    elem_type: int

    @property
    def range(self) -> tuple[float, float]:
        qmin, qmax = Q_RANGES[self.elem_type]
        if self.elem_type == TensorProto.INT16:
            # The 16x8 quantizer is symmetric: max(|lo|, hi) / 32767 must give back s (only
            # zero point 0 is stripped, see _exact_in_tflite; -32768 * s is one step lost).
            return (-self.scale * 32767, self.scale * 32767)
        return (self.scale * (qmin - self.zero_point), self.scale * (qmax - self.zero_point))


@dataclass
class StripInfo:
    """What ``strip_qdq`` found: lattices of activations, folded weights, kept Q/DQ."""

    activations: dict[str, PairParams] = field(default_factory=dict)
    weights: dict[str, dict] = field(default_factory=dict)  # float initializer -> origin
    kept: list[dict] = field(default_factory=list)  # {"node", "op", "reason"}
    expanded: list[dict] = field(default_factory=list)  # QOperator nodes rewritten
    dynamic: list[str] = field(default_factory=list)  # nodes from quantize_dynamic
    pairs: int = 0  # activation Q -> DQ pairs stripped
    notes: list[str] = field(default_factory=list)

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        return {name: p.range for name, p in self.activations.items()}

    @property
    def activation_bits(self) -> int:
        wide = {TensorProto.INT16, TensorProto.UINT16}
        types = {p.elem_type for p in self.activations.values()}
        return 16 if types and types <= wide else 8

    @property
    def per_channel(self) -> bool:
        """Per-channel weights when any folded matmul-like weight had per-axis scales."""
        return any(w["per_axis"] for w in self.weights.values() if w.get("weight_of"))

    @property
    def mode(self) -> str:
        """static: activation pairs (integer kernels); dynamic: only quantize_dynamic nodes
        (hybrid kernels); a Q/DQ at the edge alone (a quantized embedding table's Gather ->
        DequantizeLinear in a dynamic model) does not make a model static."""
        if self.pairs:
            return "static"
        return "dynamic" if self.dynamic else "none"


def is_prequantized(model: onnx.ModelProto) -> bool:
    """True when the model is QDQ-structured (at least one activation Q -> DQ pair, after
    QOperator expansion) or dynamically quantized (a DynamicQuantizeLinear feeding
    MatMulInteger/ConvInteger that is rewritten). A lone quantization op with integer graph
    I/O (the ONNX node tests) is not: its exact float lowering stays in charge."""
    return import_if_prequantized(model) is not None


def import_if_prequantized(model: onnx.ModelProto) -> tuple[onnx.ModelProto, StripInfo] | None:
    """:func:`import_quantized` for a model that :func:`is_prequantized`, else None: the
    detection and the import are one pass (each copies the model's weights once)."""
    types = {n.op_type for n in model.graph.node}
    if not types & {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}:
        if not types & {"QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul"}:
            return None
    try:
        stripped, info = import_quantized(model)
    except Exception:  # malformed quantization: leave it to the exact lowerings to judge
        return None
    return (stripped, info) if info.pairs > 0 or info.dynamic else None


def import_quantized(model: onnx.ModelProto) -> tuple[onnx.ModelProto, StripInfo]:
    """QOperator expansion then QDQ stripping: a float model plus the lattices to honour."""
    from .qoperator_expand import expand_qoperators

    expanded, info = expand_qoperators(model)
    # The expansion already works on a copy when it changed anything: strip that in place.
    stripped, ranges, info = strip_qdq(expanded, info, in_place=expanded is not model)
    return stripped, info


def lowering_options(stripped: onnx.ModelProto, info: StripInfo) -> dict:
    """``lower_model`` keyword arguments that keep the ONNX roundings of a stripped model.

    A MatMul/Gemm/Conv output that has its own Q/DQ pair and then gets a constant Add (how
    onnxruntime quantizes ``Linear`` layers: the bias Add is a separate quantized op) is
    rounded twice in ONNX; ``fuse_bias_add`` would merge the Add into FULLY_CONNECTED's bias
    and round once, drifting from onnxruntime layer after layer (vit-like: 18.5 dB -> 20.5 dB
    against the ONNX semantics, where onnxruntime's own kernels reach 19-21 dB).
    """
    consts = {i.name for i in stripped.graph.initializer}
    producer = {o: n for n in stripped.graph.node for o in n.output}
    for node in stripped.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        for a, b in (node.input, reversed(node.input)):
            made = producer.get(a)
            if made is not None and made.op_type in WEIGHTED_ONNX_OPS and b in consts:
                if a in info.activations:
                    return {"disable_rewrites": ("fuse_bias_add",)}
    return {}


def strip_qdq(
    model: onnx.ModelProto, info: StripInfo | None = None, in_place: bool = False
) -> tuple[onnx.ModelProto, dict[str, tuple[float, float]], StripInfo]:
    """Remove activation Q->DQ pairs and fold constant DQs; see the module docstring.

    Returns (float model, {ONNX tensor: (min, max)}, info). The input model is not modified
    unless ``in_place`` (the caller's own copy).
    """
    if not in_place:
        model = copy.deepcopy(model)
    info = info or StripInfo()
    view = GraphView(model.graph)
    _fold_constant_quantize(view, info)
    _fold_constant_dequantize(view, info)
    renames = _strip_pairs(view, info)
    _keep_edge_lattices(view, info)
    _rename_graph_outputs(view, info, renames)
    prune_dead_nodes(model.graph)
    _drop_unused(model.graph)
    return model, info.ranges, info


def _per_tensor_params(view: GraphView, node: onnx.NodeProto, s_idx: int, zp_idx: int):
    """(scale, zp, elem type) when constant, per-tensor, unblocked and 8/16-bit; else why not."""
    if attr(node, "block_size", 0):
        return None, "blocked quantization (block_size) stays an exact float DequantizeLinear"
    scale = view.const(node, s_idx)
    if scale is None or (view.has(node, zp_idx) and view.const(node, zp_idx) is None):
        return None, "runtime scale or zero point"
    if scale.dtype != np.float32:
        return None, f"{scale.dtype} scale"
    if scale.size != 1:
        return None, "per-axis activation quantization (TFLite activations are per-tensor)"
    elem = zero_point_type(view, node, zp_idx)
    if elem not in Q_RANGES:
        return None, f"{TensorProto.DataType.Name(elem)} has no TFLite integer kernels"
    zp = view.const(node, zp_idx)
    zp_value = int(zp.reshape(-1)[0]) if zp is not None else 0
    return PairParams(float(scale.reshape(-1)[0]), zp_value, elem), ""


def _fold_constant_quantize(view: GraphView, info: StripInfo) -> None:
    """QuantizeLinear of a constant (fake-quantized weights) -> a quantized initializer."""
    keep = []
    for node in view.graph.node:
        scale, x = view.const(node, 1), view.const(node, 0)
        elem = zero_point_type(view, node, 2) if node.op_type == "QuantizeLinear" else None
        if (
            node.op_type != "QuantizeLinear"
            or x is None
            or scale is None
            or elem not in Q_RANGES
            or attr(node, "block_size", 0)
            or (view.has(node, 2) and view.const(node, 2) is None)
            or x.dtype != np.float32
        ):
            keep.append(node)
            continue
        q = quantize_array(x, scale, view.const(node, 2), attr(node, "axis", 1), elem)
        view.add_const(node.output[0], q)
    _replace_nodes(view, keep)


def _fold_constant_dequantize(view: GraphView, info: StripInfo) -> None:
    keep = []
    for node in view.graph.node:
        q, scale = view.const(node, 0), view.const(node, 1)
        if (
            node.op_type != "DequantizeLinear"
            or q is None
            or scale is None
            or scale.dtype != np.float32
            or (view.has(node, 2) and view.const(node, 2) is None)
            or node.output[0] in view.graph_outputs
        ):
            keep.append(node)
            continue
        if attr(node, "block_size", 0):
            keep.append(node)
            info.kept.append(
                {
                    "node": node.name,
                    "op": node.op_type,
                    "reason": "blocked quantization (block_size): the weights stay compressed "
                    "behind an exact DEQUANTIZE and their consumer runs in float",
                }
            )
            continue
        axis = attr(node, "axis", 1)
        view.add_const(node.output[0], dequantize_array(q, scale, view.const(node, 2), axis))
        users = [n.op_type for n, _ in view.consumers.get(node.output[0], [])]
        info.weights[node.output[0]] = {
            "source": node.input[0],
            "dtype": TensorProto.DataType.Name(helper.np_dtype_to_tensor_dtype(q.dtype)),
            "per_axis": scale.size > 1,
            "axis": axis if scale.size > 1 else None,
            "weight_of": sorted({t for t in users if t in WEIGHTED_ONNX_OPS}),
        }
    _replace_nodes(view, keep)


def _strip_pairs(view: GraphView, info: StripInfo) -> dict[str, str]:
    """Activation pairs: consumers of DQ(Q(x)) read x; x gets the pair's lattice.

    Returns {graph output name: x} for pairs whose DQ output was a graph output.
    """
    drop: set[int] = set()
    rewire: dict[str, str] = {}  # DQ output -> x
    outputs: dict[str, str] = {}
    widths = _strippable_types(view)
    for q in view.graph.node:
        if q.op_type != "QuantizeLinear" or q.domain not in ("", "ai.onnx"):
            continue
        params, why = _per_tensor_params(view, q, 1, 2)
        users = view.consumers.get(q.output[0], [])
        if params is not None and not _exact_in_tflite(params, widths):
            params, why = None, _INEXACT_LATTICE
        if params is None:
            info.kept.append({"node": q.name, "op": q.op_type, "reason": why})
            continue
        x = q.input[0]
        for dq, _ in users:
            if not _pairs_with(view, q, dq, params):
                continue
            value = _constant_subgraph_value(view, x)
            if value is not None and value.dtype == np.float32:
                _fold_fake_quantized(view, info, dq, value, params)
                drop.add(id(dq))
                continue
            if dq.output[0] in view.subgraph_names:
                info.kept.append(
                    {"node": dq.name, "op": dq.op_type, "reason": "read by a subgraph"}
                )
                continue
            known = info.activations.get(x)
            if known is not None and known != params:
                reason = f"{x!r} already carries another lattice: this pair stays fake-quant"
                info.kept.append({"node": dq.name, "op": dq.op_type, "reason": reason})
                continue
            info.activations[x] = params
            info.pairs += 1
            rewire[dq.output[0]] = x
            drop.add(id(dq))
            if dq.output[0] in view.graph_outputs:
                outputs[dq.output[0]] = x
        remaining = [u for u, _ in users if id(u) not in drop]
        if not remaining and q.output[0] not in view.graph_outputs:
            drop.add(id(q))
    for node in view.graph.node:
        for i, name in enumerate(node.input):
            if name in rewire:
                node.input[i] = rewire[name]
    _replace_nodes(view, [n for n in view.graph.node if id(n) not in drop])
    for n in view.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(
            k["node"] == n.name for k in info.kept
        ):
            info.kept.append({"node": n.name, "op": n.op_type, "reason": "not part of a pair"})
    return outputs


MAX_FOLDED_ANCESTORS = 16


def _constant_subgraph_value(view: GraphView, name: str) -> np.ndarray | None:
    """The value of ``name`` when only constants feed it (e.g. a Reshape of a weight that
    onnxruntime quantized as an activation); None for run-time tensors."""
    if name in view.consts:
        return view.consts[name]
    nodes, todo, seen = [], [name], set()
    while todo:
        t = todo.pop()
        if t in seen or t in view.consts or not t:
            continue
        seen.add(t)
        node = view.producer.get(t)
        if node is None or node.domain not in ("", "ai.onnx") or len(nodes) > MAX_FOLDED_ANCESTORS:
            return None
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        ):
            return None
        if all(id(node) != id(n) for n in nodes):
            nodes.append(node)
        todo.extend(node.input)
    try:
        from onnx.reference import ReferenceEvaluator

        order = [n for n in view.graph.node if any(n is m for m in nodes)]
        needed = {i for n in order for i in n.input if i in view.consts}
        graph = helper.make_graph(
            order,
            "constant",
            [],
            [helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None)],
            [numpy_helper.from_array(np.asarray(view.consts[i]), i) for i in sorted(needed)],
        )
        opset = helper.make_opsetid("", 21)
        value = ReferenceEvaluator(helper.make_model(graph, opset_imports=[opset])).run(None, {})
        return np.asarray(value[0])
    except Exception:  # anything the reference evaluator cannot do stays a run-time tensor
        return None


def _fold_fake_quantized(view: GraphView, info: StripInfo, dq, value, params: PairParams):
    """Q -> DQ around a constant-only value: the fake-quantized constant itself."""
    scale = np.array(params.scale, np.float32)
    zp = np.array(params.zero_point)
    q = quantize_array(value, scale, zp, 0, params.elem_type)
    view.add_const(dq.output[0], dequantize_array(q, scale, zp, 0))
    users = [n.op_type for n, _ in view.consumers.get(dq.output[0], [])]
    info.weights[dq.output[0]] = {
        "source": dq.input[0],
        "dtype": TensorProto.DataType.Name(params.elem_type),
        "per_axis": False,
        "axis": None,
        "weight_of": sorted({t for t in users if t in WEIGHTED_ONNX_OPS}),
        "activation_quantized_constant": True,
    }


_INEXACT_LATTICE = (
    "its lattice has no exact TFLite twin (int16 needs zero point 0; 8- and 16-bit lattices "
    "cannot mix): stays an exact float QuantizeLinear/DequantizeLinear, saturation included"
)


def _strippable_types(view: GraphView) -> set[int]:
    """The integer quantizer uses one activation width: 8-bit lattices when the model has any
    (int8 and uint8 map exactly onto int8), else symmetric int16 ones."""
    found = set()
    for node in view.graph.node:
        if node.op_type == "QuantizeLinear":
            params, _ = _per_tensor_params(view, node, 1, 2)
            if params is not None:
                found.add(params.elem_type)
    eight = {TensorProto.INT8, TensorProto.UINT8}
    return eight if found & eight or not found else {TensorProto.INT16}


def _exact_in_tflite(params: PairParams, widths: set[int]) -> bool:
    """A stripped pair must land on the very same lattice in TFLite: its saturation is part of
    the ONNX semantics (onnxruntime drops a Relu/Clip whose clamp the Q already does)."""
    if params.elem_type not in widths:
        return False
    return params.elem_type != TensorProto.INT16 or params.zero_point == 0


def _pairs_with(view: GraphView, q, dq, params: PairParams) -> bool:
    if dq.op_type != "DequantizeLinear" or dq.input[0] != q.output[0]:
        return False
    other, _ = _per_tensor_params(view, dq, 1, 2)
    return other == params


def _keep_edge_lattices(view: GraphView, info: StripInfo) -> None:
    """Lone Q/DQ at integer graph I/O: a DQ output lies on its lattice exactly, and a Q's
    input may use the Q's lattice when the Q is its only reader (clipping changes nothing)."""
    widths = _strippable_types(view)
    for node in view.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        params, _ = _per_tensor_params(view, node, 1, 2)
        if params is None or not _exact_in_tflite(params, widths):
            continue
        if node.op_type == "DequantizeLinear":
            info.activations.setdefault(node.output[0], params)
            continue
        x = node.input[0]
        readers = view.consumers.get(x, [])
        if x not in view.graph_outputs and all(r is node for r, _ in readers):
            info.activations.setdefault(x, params)


def _rename_graph_outputs(view: GraphView, info: StripInfo, outputs: dict[str, str]) -> None:
    """A stripped DQ that produced a graph output: its x takes the output's name (an Identity
    when x is itself a graph input or output)."""
    for out_name, x in outputs.items():
        producer = view.producer.get(x)
        if producer is None or x in view.graph_outputs or x in view.graph_inputs:
            view.graph.node.append(helper.make_node("Identity", [x], [out_name]))
            info.activations[out_name] = info.activations[x]
            continue
        for i, o in enumerate(producer.output):
            if o == x:
                producer.output[i] = out_name
        for node in view.graph.node:
            for i, name in enumerate(node.input):
                if name == x:
                    node.input[i] = out_name
        info.activations[out_name] = info.activations.pop(x)
        view.refresh()


def prune_dead_nodes(graph: onnx.GraphProto) -> None:
    """Drop nodes none of whose outputs is read (the leftovers of a rewritten chain)."""
    while True:
        used = {o.name for o in graph.output} | _names_used_in_subgraphs(graph)
        for n in graph.node:
            used.update(n.input)
        alive = [n for n in graph.node if any(o in used for o in n.output if o)]
        if len(alive) == len(graph.node):
            return
        del graph.node[:]
        graph.node.extend(alive)


def _replace_nodes(view: GraphView, nodes: list[onnx.NodeProto]) -> None:
    kept = [copy.deepcopy(n) for n in nodes]
    del view.graph.node[:]
    view.graph.node.extend(kept)
    view.refresh()


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Initializers and value_info nothing reads any more (the int8 weights that were folded)."""
    used = {o.name for o in graph.output} | _names_used_in_subgraphs(graph)
    produced = set()
    for node in graph.node:
        used.update(node.input)
        produced.update(node.output)
    inits = [i for i in graph.initializer if i.name in used]
    dropped = {i.name for i in graph.initializer} - {i.name for i in inits}
    del graph.initializer[:]
    graph.initializer.extend(inits)
    # IR-3 style models also list initializers as graph inputs: a dropped one must go too,
    # or it would turn into a run-time input.
    kept_inputs = [i for i in graph.input if i.name not in dropped]
    del graph.input[:]
    graph.input.extend(kept_inputs)
    live = used | produced | {i.name for i in graph.input}
    infos = [
        v for v in graph.value_info if v.name in live and v.name not in {i.name for i in inits}
    ]
    del graph.value_info[:]
    graph.value_info.extend(infos)


# ---- the integer model ----------------------------------------------------------------------


@dataclass
class PrequantizedSummary:
    mode: str  # "static" (integer), "dynamic" (hybrid) or "none"
    nodes: list[dict]  # {"onnx_node", "ops", "status": integer|hybrid|float, "reason"}
    requantized: int = 0
    kept_qdq: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    requantized_at: list[str] = field(default_factory=list)  # ONNX nodes given a rescale

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n["status"]] = out.get(n["status"], 0) + 1
        return out

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "counts": self.counts(),
            "requantized": self.requantized,
            "requantized_at": self.requantized_at,
            "nodes": self.nodes,
            "kept_qdq": self.kept_qdq,
            "notes": self.notes,
        }


def prequantized_variant(
    lowered, ranges: dict[str, tuple[float, float]], info: StripInfo, options=None
) -> tuple[tfl.Model, PrequantizedSummary]:
    """The integer (static) or hybrid (dynamic) model of a stripped, lowered QDQ model.

    ``lowered`` is ``pipeline.lower_model(stripped_model)``; its ``model_ir`` is rewritten in
    place and returned. ``options`` (a ``QuantOptions``) only sets full-integer I/O
    (``input_quant_dtype`` / ``output_quant_dtype`` when its ``full_integer`` attribute is
    true); scales come from the ONNX model, never from calibration.
    """
    from .calibration import tflite_ranges
    from .integer import quantize_integer

    model = lowered.model_ir
    notes = list(info.notes)
    requantized = 0
    float_reasons: dict[str, str] = {}
    if info.mode == "static":
        bits = info.activation_bits
        full = bool(getattr(options, "full_integer", False))
        io_in = getattr(options, "input_quant_dtype", "int8") if full else None
        io_out = getattr(options, "output_quant_dtype", "int8") if full else None
        if bits == 16 and full:
            io_in = io_out = "int16"
        tfl_ranges = tflite_ranges(ranges, lowered.tensor_map)
        outcome = quantize_integer(
            model,
            tfl_ranges,
            activations="int16" if bits == 16 else "int8",
            per_channel=info.per_channel or not _weights_on_tensor_lattice(model),
            input_dtype=io_in,
            output_dtype=io_out,
            ranges_are_exact=True,
        )
        requantized = outcome.requantized + _softmax_on_onnx_lattice(model, tfl_ranges, bits)
        rounded = _round_float_readers(model, tfl_ranges, bits == 16)
        if rounded:
            notes.append(
                f"{rounded} tensor(s) on a Q/DQ lattice are read by float ops: a QUANTIZE + "
                "DEQUANTIZE keeps the ONNX rounding there"
            )
        for f in outcome.float_ops:
            float_reasons.setdefault(f["onnx_node"] or "", f["reason"])
        if requantized:
            notes.append(
                f"{requantized} QUANTIZE requantization(s) inserted where TFLite needs equal "
                "input/output scales (CONCATENATION, shared-scale ops) or at integer I/O"
            )
    if info.dynamic:  # (also the dynamic part of a mixed model: still float after the above)
        _hybrid_weights(model, set(info.dynamic))
    nodes = node_statuses(model, float_reasons, info.mode)
    summary = PrequantizedSummary(info.mode, nodes, requantized, info.kept, notes)
    summary.requantized_at = requantized_nodes(model)
    return model, summary


def requantized_nodes(model: tfl.Model) -> list[str]:
    """ONNX nodes at which an integer -> integer QUANTIZE (a rescale TFLite needs where the
    ONNX scales differ, e.g. concatenation inputs) was inserted."""
    found = []
    for op in model.subgraphs[0].operators:
        if op.opcode == "QUANTIZE" and op.inputs[0] is not None and op.inputs[0].dtype.kind in "iu":
            label = op.onnx_node or op.outputs[0].name
            if label not in found:
                found.append(label)
    return found


OFF_LATTICE_SHARE_FOR_PER_CHANNEL = 0.25


def _weights_on_tensor_lattice(model: tfl.Model) -> bool:
    """Whether the conv/FC weights are (mostly) still on a per-tensor symmetric lattice.

    Per-tensor ONNX weights stay exact with per-tensor TFLite weights, unless the lowering
    changed them (a BatchNormalization folded into the convolution scales each output channel):
    those must be quantized per channel, or small-gamma channels lose most of their precision
    (mobilenetv2-like, per-tensor: 27.6 dB -> 30.4 dB against the ONNX semantics). The choice
    is global in ``quantize_integer``, and per channel re-rounds every exact per-tensor
    weight, so it is only taken when a good share of the weights is off the lattice (one
    Gemm whose weight onnxruntime quantized as an activation does not count).
    """
    total = off = 0
    for op in model.subgraphs[0].operators:
        if op.opcode not in MATMUL_LIKE_TFLITE or len(op.inputs) < 2:
            continue
        w = op.inputs[1]
        if w is None or w.data is None or w.dtype != np.float32 or not w.data.size:
            continue
        total += 1
        off += not _on_tensor_lattice(w.data)
    return off <= OFF_LATTICE_SHARE_FOR_PER_CHANNEL * total


# Ops whose output params are independent of their input params (they rescale).
_RESCALING = frozenset(
    {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "ADD", "SUB", "MUL"}
    | {"MEAN", "SUM", "QUANTIZE", "DEQUANTIZE"}
)


def _softmax_on_onnx_lattice(model: tfl.Model, ranges: dict, bits: int) -> int:
    """An int8 SOFTMAX writes the kernel's fixed 1/256 lattice; the ONNX model's Q after the
    Softmax usually chose another (e.g. max p / 255). The int8 kernel may write int16
    (2^-15) instead, and a QUANTIZE then lands exactly on the ONNX lattice, so the next op
    sees what onnxruntime sees (vit-like attention: the probabilities feed a MatMul). Only
    done when every reader rescales (no same-scale op inherited the fixed params)."""
    from .integer import QParams, params_from_range
    from .op_rules import TWO_POW_M15

    if bits != 8:
        return 0
    sub = model.subgraphs[0]
    readers = sub.consumers()
    outputs = {id(t) for t in sub.outputs}
    ed = Editor(sub, fresh_names=False)
    count = 0
    for op in sub.operators:
        out = op.outputs[0] if op.outputs else None
        if op.opcode != "SOFTMAX" or out is None or out.dtype != np.int8:
            continue
        name = out.name.removesuffix("/int8")
        rng = ranges.get(name)
        if rng is None or id(out) in outputs:
            continue
        if not all(r.opcode in _RESCALING for r, _ in readers.get(id(out), [])):
            continue
        want = params_from_range(*rng, False)
        have = QParams(float(out.quantization.scale[0]), int(out.quantization.zero_point[0]))
        if want == have:
            continue
        wide = ed.temp(
            f"{out.name}/int16",
            np.int16,
            out.shape,
            quantization=QParams(TWO_POW_M15, 0).quantization(),
        )
        out.quantization = want.quantization()
        op.outputs[0] = wide
        ed.insert_after(op, [ed.op("QUANTIZE", [wide], [out], like=op)])
        count += 1
    ed.commit()
    return count


def _round_float_readers(model: tfl.Model, ranges: dict, int16: bool) -> int:
    """Float ops reading a tensor of a stripped pair get it rounded to the pair's lattice.

    The pair's DequantizeLinear(QuantizeLinear(x)) rounds x; when the op reading it stays
    float (no integer kernel, runtime weights, blocked weights), the integer quantizer leaves
    the float tensor as computed, so the rounding is restored here (also for float graph
    outputs on a lattice). A tensor written by DEQUANTIZE is on its lattice already.
    """
    from .integer import params_from_range

    sub = model.subgraphs[0]
    producer = sub.producers()
    readers = sub.consumers()
    outputs = {id(t): k for k, t in enumerate(sub.outputs)}
    ed = Editor(sub, fresh_names=False)
    count = 0
    for t in sub.tensors():
        if t.name not in ranges or t.data is not None or t.quantization is not None:
            continue
        if t.dtype != np.float32:
            continue
        made_by = producer.get(id(t))
        if made_by is not None and made_by.opcode == "DEQUANTIZE":
            continue
        float_readers = [(op, i) for op, i in readers.get(id(t), []) if op.opcode != "QUANTIZE"]
        if not float_readers and id(t) not in outputs:
            continue
        p = params_from_range(*ranges[t.name], int16)
        dtype = np.int16 if int16 else np.int8
        q = ed.temp(f"{t.name}/lattice", dtype, t.shape, quantization=p.quantization())
        rounded = ed.temp(f"{t.name}/rounded", np.float32, t.shape)
        ops = [
            ed.op("QUANTIZE", [t], [q], like=made_by),
            ed.op("DEQUANTIZE", [q], [rounded], like=made_by),
        ]
        for op, i in float_readers:
            op.inputs[i] = rounded
        if id(t) in outputs:
            rounded.name, t.name = t.name, f"{t.name}/unrounded"
            sub.outputs[outputs[id(t)]] = rounded
        if made_by is None:
            ed.prepend(ops)
        else:
            ed.insert_after(made_by, ops)
        count += 1
    ed.commit()
    return count


def _hybrid_weights(model: tfl.Model, nodes: set[str]) -> None:
    """int8 weights for the ops the ONNX model quantized dynamically, with the dynamic-range
    variant's own symmetric encoding (``max|w| / 127`` gives back the ONNX scale).

    Unlike that variant, small weights are converted too (the ONNX model quantized them), and
    the granularity is chosen per op: weights still on a per-tensor lattice keep it exactly
    (DEPTHWISE_CONV_2D, whose hybrid kernel reads one scale per output channel, gets that
    scale repeated); weights the lowering moved off it (a BatchNormalization folded into the
    convolution) or per-channel ONNX weights are quantized per channel. Measured against
    onnxruntime's dynamic model: squeezenet 24.4 dB (always per channel) -> 46.9 dB;
    mobilenetv2 (BatchNormalization folded) 29.8 dB (always per tensor) -> 33.7 dB.
    """
    from .dynamic_range import HYBRID_WEIGHT_AXIS, hybrid_weight

    done: dict[int, tfl.Tensor] = {}
    for op in model.subgraphs[0].operators:
        axis = HYBRID_WEIGHT_AXIS.get(op.opcode)
        if axis is None or op.onnx_node not in nodes or len(op.inputs) < 2:
            continue
        w, x = op.inputs[1], op.inputs[0]
        if w is None or w.data is None or w.dtype != np.float32 or w.quantization is not None:
            continue
        if x is None or x.dtype != np.float32:
            continue
        if id(w) not in done:
            done[id(w)] = hybrid_weight(w, op.opcode, per_channel=not _on_tensor_lattice(w.data))
        op.inputs[1] = done[id(w)]
        if op.opcode == "FULLY_CONNECTED":
            op.options["asymmetric_quantize_inputs"] = True


def _on_tensor_lattice(data: np.ndarray) -> bool:
    peak = float(np.abs(data).max(initial=0.0))
    if peak == 0:
        return True
    q = data.astype(np.float64) * (127.0 / peak)
    return bool(np.abs(q - np.rint(q)).max() <= 1e-3)


def _is_int(t) -> bool:
    return t is not None and t.dtype.kind in "iu" and t.quantization is not None


def node_statuses(model: tfl.Model, float_reasons: dict[str, str], mode: str) -> list[dict]:
    """Per ONNX node: integer (all its float-domain ops read/write quantized tensors), hybrid
    (float activations with int8 weights), float, or other (integer shape arithmetic), and
    why. TFLite-only ops (layout transposes of graph I/O) are listed under node ""."""
    by_node: dict[str, list[tfl.Operator]] = {}
    for op in model.subgraphs[0].operators:
        if op.opcode in ("QUANTIZE", "DEQUANTIZE") and not op.onnx_node:
            continue
        by_node.setdefault(op.onnx_node or "", []).append(op)
    out = []
    for node, ops in by_node.items():
        statuses = {_op_status(op) for op in ops if op.opcode not in ("QUANTIZE", "DEQUANTIZE")}
        statuses.discard(None)
        if not statuses:
            statuses = {_op_status(op) for op in ops} - {None}
        status = next((k for k in ("float", "hybrid", "integer") if k in statuses), "other")
        reason = ""
        if status == "other":
            reason = "no float or quantized data (shape or index arithmetic)"
        elif status == "float":
            reason = float_reasons.get(node) or (
                "no quantization parameters on its tensors (a float island of the ONNX model)"
                if mode == "static"
                else "dynamic-range model: activations are float, and this op has no "
                "dynamically quantized weight (or no hybrid kernel)"
            )
        elif status == "hybrid":
            reason = "float activations with int8 weights (LiteRT hybrid kernel)"
        out.append(
            {
                "onnx_node": node,
                "ops": sorted({op.opcode for op in ops}),
                "status": status,
                "reason": reason,
            }
        )
    return out


def _op_status(op: tfl.Operator) -> str | None:
    tensors = [t for t in [*op.inputs, *op.outputs] if t is not None]
    floats = [t for t in tensors if t.dtype.kind == "f"]
    if not floats:
        return "integer" if any(_is_int(t) for t in tensors) else None
    if op.opcode in MATMUL_LIKE_TFLITE and len(op.inputs) > 1 and _is_int(op.inputs[1]):
        return "hybrid"
    return "float"


def matmul_like_share(
    summary_nodes: list[dict], model: tfl.Model, only_nodes: set[str] | None = None
) -> dict[str, int]:
    """How many conv/matmul/fc ops run integer, hybrid, float (the issue's 95 % criterion);
    ``only_nodes`` limits the count to ops of those ONNX nodes (for a dynamic model: the
    nodes onnxruntime quantized; activation x activation MatMuls stay float there too)."""
    counts = {"integer": 0, "hybrid": 0, "float": 0}
    for op in model.subgraphs[0].operators:
        if only_nodes is not None and op.onnx_node not in only_nodes:
            continue
        if op.opcode in MATMUL_LIKE_TFLITE:
            counts[_op_status(op) or "float"] += 1
    return counts
