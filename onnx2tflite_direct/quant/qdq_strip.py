"""ONNX-proto side of importing an already-quantized model: Q/DQ pairs stripped into ranges.

Each activation ``QuantizeLinear -> DequantizeLinear`` pair says "this float tensor lives on
the lattice s * (q - zp)": :func:`strip_qdq` removes the pair and records the range
``[s * (qmin - zp), s * (qmax - zp)]`` (:class:`PairParams`, :class:`StripInfo`); constant
weights behind a DequantizeLinear are folded into float initializers (``(q - zp) * s``,
computed as onnxruntime does). Q/DQ that do not form a pair stay in the graph. The small
GraphProto helpers here (:class:`GraphView`, :func:`attr`, :func:`prune_dead_nodes` ...) also
serve ``qoperator_expand.py``. Why strip at all, and what happens to the ranges on the TFLite
side: ``qdq_import.py``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..qdq_merge import MERGED_TYPES, merged_lattice

# Integer lattices an activation pair can use (the integer quantizer takes 8- or 16-bit).
Q_RANGES = {
    TensorProto.INT8: (-128, 127),
    TensorProto.UINT8: (0, 255),
    TensorProto.INT16: (-32768, 32767),
    TensorProto.UINT16: (0, 65535),
}
WEIGHTED_ONNX_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


# ---- small graph helpers (also used by qoperator_expand.py) ---------------------------------


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


def lattice_record(scale: np.ndarray, zp: np.ndarray | None, size: int) -> dict:
    """The lattice of a folded weight, kept in its ``StripInfo.weights`` entry: the integer
    quantizer stores the model's own codes on it (``qdq_weights.ModelWeightScales``) instead of
    re-deriving ``max|w| / 127``, which re-rounds every weight whose codes stop short of 127."""
    scale = np.asarray(scale, np.float32).reshape(-1)
    zp = None if zp is None else np.asarray(zp).reshape(-1)
    return {"scale": scale, "zero_point": zp, "size": int(size)}


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
    # BatchNormalizations run as 1x1 depthwise convs: node -> (factor, bias), float32
    affine: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
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
    _merge_double_pairs(view, info)
    renames = _strip_pairs(view, info)
    _batchnorm_on_lattice_as_depthwise(view, info)
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
            **lattice_record(scale, view.const(node, 2), q.size),
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


def _batchnorm_on_lattice_as_depthwise(view: GraphView, info: StripInfo) -> None:
    """A BatchNormalization reading a Conv output that had its own Q/DQ pair becomes a 1x1
    depthwise Conv (weight ``gamma / sqrt(var + eps)``, bias ``beta - mean * weight``).

    Why: onnxruntime's quantize_static puts a pair between Conv and BatchNormalization (the BN
    itself stays float, between DQ and Q). Once the pair is stripped, the lowering would fold
    the BN into the convolution and the Conv output's rounding onto its lattice would vanish:
    every layer then misses one rounding the ONNX semantics (and onnxruntime's QLinearConv ->
    float BN) have (resnet50-like, per-tensor: 33.3 dB against the semantics where
    onnxruntime's kernels reach 37.9). As a depthwise convolution it runs integer from the
    Conv's lattice to the BN output's lattice, one per-channel multiplier per channel (its
    weight is quantized per channel, ``qdq_import._per_channel_weight``), which is the float
    BN followed by the ONNX rounding up to the kernel's fixed-point requantization.
    """
    changed = 0
    for i, bn in enumerate(view.graph.node):
        if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx"):
            continue
        if len(bn.input) < 5 or len(bn.output) > 1 or attr(bn, "training_mode", 0):
            continue
        x = bn.input[0]
        conv = view.producer.get(x)
        if x not in info.activations or conv is None or conv.op_type != "Conv":
            continue
        w = view.const(conv, 1)
        stats = [view.const(bn, k) for k in range(1, 5)]
        if w is None or w.ndim != 4 or any(s is None or s.ndim != 1 for s in stats):
            continue
        # float32 as onnxruntime's BatchNormalization kernel computes them (1 / sqrt, times
        # gamma; beta - mean * factor): the float path below reproduces its outputs bit for bit
        gamma, beta, mean, var = (s.astype(np.float32) for s in stats)
        eps = np.float32(attr(bn, "epsilon", 1e-5))
        factor = (np.float32(1) / np.sqrt(var + eps)) * gamma
        channels = factor.size
        hint = bn.name or bn.output[0]
        weight = view.add_const(view.fresh(f"{hint}_dw_w"), factor.reshape(channels, 1, 1, 1))
        shift = beta - mean * factor
        bias = view.add_const(view.fresh(f"{hint}_dw_b"), shift)
        info.affine[hint] = (factor, shift)
        view.graph.node[i].CopyFrom(
            helper.make_node(
                "Conv",
                [x, weight, bias],
                list(bn.output),
                name=hint,
                group=channels,
                kernel_shape=[1, 1],
            )
        )
        changed += 1
    if changed:
        view.refresh()
        info.notes.append(
            f"{changed} BatchNormalization(s) after a Conv's Q/DQ pair run as 1x1 depthwise "
            "convolutions (folding them would drop the Conv output's rounding)"
        )


def _merge_double_pairs(view: GraphView, info: StripInfo) -> None:
    """``Q1 -> DQ1 -> [Identity | float Cast]* -> Q2 -> DQ2`` becomes ``Q1' -> DQ2'`` on the
    merged lattice onnxruntime computes there (``qdq_merge.py``: its level-1
    DoubleQDQPairsRemover), so the integer file follows onnxruntime as the float32 file does."""
    while True:
        found = next((m for n in view.graph.node if (m := _double_pair(view, n))), None)
        if found is None:
            return
        q1, dq1, copies, q2, dq2, merged = found
        label = q1.name or q1.output[0]
        if merged is not None:
            p = _per_tensor_params(view, q1, 1, 2)[0]
            dtype = helper.tensor_dtype_to_np_dtype(p.elem_type)
            scale = view.add_const(view.fresh(f"{label}/merged_scale"), np.float32(merged[0]))
            zp = view.add_const(view.fresh(f"{label}/merged_zero_point"), dtype.type(merged[1]))
            for node in (q1, dq2):
                node.input[1], node.input[2] = scale, zp
        dq2.input[0] = q1.output[0]
        gone = {id(dq1), id(q2), *(id(c) for c in copies)}
        _replace_nodes(view, [n for n in view.graph.node if id(n) not in gone])
        info.notes.append(
            f"{label}: a double Q/DQ pair runs on one merged lattice, as onnxruntime runs it"
        )


def _double_pair(view: GraphView, dq1: onnx.NodeProto):
    """(q1, dq1, copies, q2, dq2, merged (scale, zp) or None for equal pairs), see
    ``qdq_merge._match`` for the conditions (onnxruntime's)."""

    def sole_reader(name):
        users = view.consumers.get(name, [])
        if len(users) != 1 or name in view.graph_outputs or name in view.subgraph_names:
            return None
        return users[0][0]

    def params(node):
        if len(node.input) < 3 or not node.input[2]:
            return None
        return _per_tensor_params(view, node, 1, 2)[0]

    if dq1.op_type != "DequantizeLinear" or dq1.domain not in ("", "ai.onnx"):
        return None
    q1 = view.producer.get(dq1.input[0])
    if q1 is None or q1.op_type != "QuantizeLinear" or sole_reader(q1.output[0]) is not dq1:
        return None
    copies, q2 = [], sole_reader(dq1.output[0])
    while q2 is not None and (
        q2.op_type == "Identity" or (q2.op_type == "Cast" and attr(q2, "to") == TensorProto.FLOAT)
    ):
        copies.append(q2)
        q2 = sole_reader(q2.output[0])
    if q2 is None or q2.op_type != "QuantizeLinear":
        return None
    dq2 = sole_reader(q2.output[0])
    if dq2 is None or dq2.op_type != "DequantizeLinear":
        return None
    p1, p2 = params(q1), params(q2)
    if p1 is None or p2 is None or params(dq1) != p1 or params(dq2) != p2:
        return None
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(p1.elem_type))
    if p1.elem_type != p2.elem_type or dtype not in MERGED_TYPES:
        return None
    if (p1.scale, p1.zero_point) == (p2.scale, p2.zero_point):
        return q1, dq1, copies, q2, dq2, None
    merged = merged_lattice(p1.scale, p1.zero_point, p2.scale, p2.zero_point, dtype)
    return None if merged is None else (q1, dq1, copies, q2, dq2, merged)


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
        **lattice_record(scale, zp, q.size),
    }


_INEXACT_LATTICE = (
    "its lattice has no exact TFLite twin (int16 needs zero point 0; 8- and 16-bit lattices "
    "cannot mix; a scale outside 2^-60..2^60 underflows TFLite's rescaling multipliers): "
    "stays an exact float QuantizeLinear/DequantizeLinear, saturation included"
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


# Scales a stripped lattice may have. TFLite's integer kernels rescale with fixed-point
# multipliers computed from scale ratios in float32 at Prepare time: a ratio that underflows
# (quantize_static gives an attention mask of -3.4e38 the scale 1.3e36, next to scores of
# scale 1e-3) makes ADD's Prepare abort the whole process (QuantizeMultiplierSmallerThanOneExp
# CHECK, seen on a BERT export). Within 2^-60..2^60 any ratio of two scales (>= 2^-120) and
# of a scale product stays a normal float32.
STRIPPABLE_SCALE = (2.0**-60, 2.0**60)


def _exact_in_tflite(params: PairParams, widths: set[int]) -> bool:
    """A stripped pair must land on the very same lattice in TFLite: its saturation is part of
    the ONNX semantics (onnxruntime drops a Relu/Clip whose clamp the Q already does), and its
    scale must be one TFLite's fixed-point rescaling can express (``STRIPPABLE_SCALE``)."""
    if params.elem_type not in widths:
        return False
    if not STRIPPABLE_SCALE[0] <= params.scale <= STRIPPABLE_SCALE[1]:
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
