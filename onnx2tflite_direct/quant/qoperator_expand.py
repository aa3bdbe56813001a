"""QOperator and quantize_dynamic graphs rewritten into QDQ form (see ``qdq_import.py``).

Why a rewrite: every QOperator node is, by its definition, "dequantize the inputs, run the
float op, quantize the result". Writing that definition out as DequantizeLinear -> float op ->
QuantizeLinear lets one mechanism (``strip_qdq`` + the integer quantizer) handle QDQ and
QOperator models alike: adjacent QOperator nodes meet as Q -> DQ pairs with the same constant
scale and zero point, which strip_qdq turns into lattices on the float tensors.

Data-moving ops that onnxruntime runs directly on quantized tensors (MaxPool, Flatten,
Reshape, Transpose, ...) are rewritten the same way with the lattice of their input (they
neither rescale nor shift, so DQ -> op -> Q with equal parameters is the same computation).

quantize_dynamic graphs (DynamicQuantizeLinear -> MatMulInteger/ConvInteger -> Cast -> Mul by
x_scale * w_scale) become a float MatMul/Conv on the unquantized input with the dequantized
constant weights: the dynamic-range variant re-quantizes those weights for LiteRT's hybrid
kernels, which quantize the input at run time just like DynamicQuantizeLinear.

A node whose operands cannot be rewritten (runtime weights or scales, channels_last pooling,
per-row activation scales) is left alone: its exact float lowering in ``lowering/qlinear.py``
still applies.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import helper

from .qdq_strip import (
    GraphView,
    StripInfo,
    attr,
    dequantize_array,
    lattice_record,
    prune_dead_nodes,
)

MS = "com.microsoft"

# com.microsoft single-input QOperator -> (float op, attributes it keeps); inputs are
# (x, x_scale, x_zp, y_scale, y_zp).
_UNARY = {
    "QLinearLeakyRelu": ("LeakyRelu", ("alpha",)),
    "QLinearSigmoid": ("Sigmoid", ()),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", ()),
    "QLinearAveragePool": (
        "AveragePool",
        ("auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides"),
    ),
    "QLinearSoftmax": ("Softmax", ("axis",)),
}
_BINARY = {"QLinearAdd": "Add", "QLinearMul": "Mul"}
QOPERATOR_TYPES = (
    "QLinearConv",
    "QLinearMatMul",
    "QGemm",
    "QLinearConcat",
    *_UNARY,
    *_BINARY,
    "ConvInteger",
    "MatMulInteger",
    "DynamicQuantizeLinear",
)
# The ONNX ops that mark a model as already quantized (QDQ, QOperator, quantize_dynamic): the
# one list, asked before the pre-quantized import is tried (``pipeline``, ``qdq_import``).
QUANTIZATION_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", *QOPERATOR_TYPES})
# Ops that move quantized values without arithmetic (same lattice in and out).
DATA_MOVING = {
    "MaxPool",
    "Flatten",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Slice",
    "Gather",
    "Split",
    "DepthToSpace",
    "SpaceToDepth",
    "Resize",
}


def expand_qoperators(model: onnx.ModelProto) -> tuple[onnx.ModelProto, StripInfo]:
    """A copy of ``model`` with QOperator / dynamic-quantized nodes in QDQ / float form."""
    info = StripInfo()
    types = {n.op_type for n in model.graph.node}
    if not types & set(QOPERATOR_TYPES) and not _moves_quantized(model.graph):
        return model, info
    model = copy.deepcopy(model)
    expander = _Expander(model, info)
    expander.rewrite_dynamic()
    expander.run()
    return model, info


def _moves_quantized(graph: onnx.GraphProto) -> bool:
    """A data-moving op reading a QuantizeLinear output (Q -> Transpose -> DQ exports)."""
    quantized = {n.output[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    return any(n.op_type in DATA_MOVING and n.input and n.input[0] in quantized for n in graph.node)


class _Expander:
    def __init__(self, model: onnx.ModelProto, info: StripInfo):
        self.model, self.info = model, info
        self.view = GraphView(model.graph)
        self.opset = next(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13
        )
        # quantized tensor -> (scale name, zero point name)
        self.lattice: dict[str, tuple[str, str]] = {}

    def run(self) -> None:
        out: list[onnx.NodeProto] = []
        for node in self.view.graph.node:
            new = self._expand(node)
            if new is None:
                out.append(node)
                self._track(node)
            else:
                out.extend(new)
                self.info.expanded.append({"node": node.name, "op": node.op_type})
        graph = self.view.graph
        del graph.node[:]
        graph.node.extend(out)
        self.view.refresh()

    # -- lattice bookkeeping -------------------------------------------------------------------

    def _track(self, node) -> None:
        if node.op_type == "QuantizeLinear" and len(node.input) >= 3:
            self.lattice[node.output[0]] = (node.input[1], node.input[2])

    def _const(self, name: str):
        return self.view.consts.get(name) if name else None

    def _consts(self, *names) -> bool:
        return all(self._const(n) is not None for n in names if n)

    # -- rewriting -----------------------------------------------------------------------------

    def _expand(self, node) -> list[onnx.NodeProto] | None:
        t = node.op_type
        if t == "QLinearConv":
            return self._conv_like(node, "Conv", weight_axis=0)
        if t == "QLinearMatMul":
            return self._matmul(node)
        if t == "QGemm" and node.domain == MS:
            return self._gemm(node)
        if t in _BINARY and node.domain == MS:
            return self._simple(node, _BINARY[t], [(0, 1, 2), (3, 4, 5)], (6, 7), ())
        if t in _UNARY and node.domain == MS:
            float_op, keep = _UNARY[t]
            if attr(node, "channels_last", 0):
                return None
            if t == "QLinearSoftmax" and not self._softmax_ok(node):
                return None
            return self._simple(node, float_op, [(0, 1, 2)], (3, 4), keep)
        if t == "QLinearConcat" and node.domain == MS:
            n = (len(node.input) - 2) // 3
            triples = [(2 + 3 * k, 3 + 3 * k, 4 + 3 * k) for k in range(n)]
            return self._simple(node, "Concat", triples, (0, 1), ("axis",))
        if t in DATA_MOVING and node.input and node.input[0] in self.lattice:
            return self._data_moving(node)
        return None

    def _dq(self, x: str, scale: str, zp: str, hint: str, axis: int | None = None):
        out = self.view.fresh(f"{hint}_dequantized")
        inputs = [x, scale] + ([zp] if zp else [])
        kwargs = {} if axis is None else {"axis": axis}
        return out, helper.make_node("DequantizeLinear", inputs, [out], name=out, **kwargs)

    def _q(self, y_float: str, scale: str, zp: str, y: str):
        self.lattice[y] = (scale, zp)
        inputs = [y_float, scale] + ([zp] if zp else [])
        return helper.make_node("QuantizeLinear", inputs, [y], name=f"{y}_quantize")

    def _inp(self, node, i) -> str:
        return node.input[i] if i < len(node.input) else ""

    def _simple(self, node, float_op, triples, y_idx, keep_attrs):
        """DQ every (x, scale, zp) triple -> float op -> Q (per-tensor activations)."""
        for _x, s, z in triples:
            if not self._per_tensor(node, s, z):
                return None
        ys, yz = (self._inp(node, i) for i in y_idx)
        if not ys or not self._per_tensor_names(ys, yz):
            return None
        nodes, float_inputs = [], []
        for k, (x, s, z) in enumerate(triples):
            name, dq = self._dq(
                self._inp(node, x),
                self._inp(node, s),
                self._inp(node, z),
                f"{node.name or node.output[0]}_in{k}",
            )
            nodes.append(dq)
            float_inputs.append(name)
        return [*nodes, *self._float_then_q(node, float_op, float_inputs, keep_attrs, ys, yz)]

    def _float_then_q(self, node, float_op, inputs, keep_attrs, ys, yz, extra=None):
        y = node.output[0]
        y_float = self.view.fresh(f"{y}_float")
        attrs = {a: attr(node, a) for a in keep_attrs if attr(node, a) is not None}
        attrs.update(extra or {})
        op = helper.make_node(float_op, inputs, [y_float], name=node.name or y_float, **attrs)
        if not ys:
            op.output[0] = y  # float output (QGemm without y_scale)
            return [op]
        return [op, self._q(y_float, ys, yz, y)]

    def _per_tensor(self, node, s_idx, z_idx) -> bool:
        return self._per_tensor_names(self._inp(node, s_idx), self._inp(node, z_idx))

    def _per_tensor_names(self, s: str, z: str) -> bool:
        if not self._consts(s, z):
            return False
        return self._const(s).size == 1 and (not z or self._const(z).size == 1)

    def _weight(self, node, w_idx, s_idx, z_idx, axis, hint):
        """Constant weight -> float initializer (the exact dequantized values)."""
        w, s = self._const(self._inp(node, w_idx)), self._const(self._inp(node, s_idx))
        z = self._const(self._inp(node, z_idx)) if self._inp(node, z_idx) else None
        if w is None or s is None or (self._inp(node, z_idx) and z is None):
            return None
        if s.dtype != np.float32 or (s.size > 1 and (s.ndim != 1 or s.size != w.shape[axis])):
            return None
        name = self.view.fresh(f"{hint}_dequantized")
        self.view.add_const(name, dequantize_array(w, s, z, axis))
        self.info.weights[name] = {
            "source": self._inp(node, w_idx),
            "dtype": str(w.dtype),
            "per_axis": s.size > 1,
            "axis": axis if s.size > 1 else None,
            "weight_of": [node.op_type],
            **lattice_record(s, z, w.size),
        }
        return name

    def _with_bias(self, node, inputs: list[str], b_idx: int, hint: str) -> list[str] | None:
        """``inputs`` plus the float bias of input ``b_idx`` when present (x scale = input 1,
        weight scale = input 4); None when that bias cannot be expressed."""
        if not self._inp(node, b_idx):
            return inputs
        b = self._bias(node, b_idx, node.input[1], node.input[4], hint)
        return None if b is None else [*inputs, b]

    def _bias(self, node, b_idx, x_scale: str, w_scale: str, hint: str):
        """int32 bias with scale x_scale * w_scale, zero point 0 -> float initializer."""
        b = self._const(self._inp(node, b_idx))
        if b is None:
            return None
        scale = self._const(x_scale).astype(np.float32) * self._const(w_scale).astype(np.float32)
        name = self.view.fresh(f"{hint}_bias_dequantized")
        self.view.add_const(name, dequantize_array(b, scale.reshape(-1), None, 0))
        return name

    def _conv_like(self, node, float_op, weight_axis):
        if not (self._per_tensor(node, 1, 2) and self._per_tensor(node, 6, 7)):
            return None
        hint = node.name or node.output[0]
        w = self._weight(node, 3, 4, 5, weight_axis, f"{hint}_w")
        if w is None:
            return None
        x, dq = self._dq(node.input[0], node.input[1], node.input[2], f"{hint}_x")
        inputs = self._with_bias(node, [x, w], 8, hint)
        if inputs is None:
            return None
        keep = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
        return [dq, *self._float_then_q(node, float_op, inputs, keep, node.input[6], node.input[7])]

    def _matmul(self, node):
        if not (self._per_tensor(node, 1, 2) and self._per_tensor(node, 6, 7)):
            return None
        b = self._const(node.input[3])
        if b is None:
            return self._simple(node, "MatMul", [(0, 1, 2), (3, 4, 5)], (6, 7), ())
        hint = node.name or node.output[0]
        w = self._weight(node, 3, 4, 5, b.ndim - 1, f"{hint}_b")
        if w is None:
            return None
        a, dq = self._dq(node.input[0], node.input[1], node.input[2], f"{hint}_a")
        return [dq, *self._float_then_q(node, "MatMul", [a, w], (), node.input[6], node.input[7])]

    def _gemm(self, node):
        """QGemm's int32 C is on the A_scale * B_scale lattice; with alpha != 1 its scaling is
        not pinned down here, so such nodes keep their own lowering."""
        if not self._per_tensor(node, 1, 2) or attr(node, "alpha", 1.0) != 1.0:
            return None
        ys, yz = self._inp(node, 7), self._inp(node, 8)
        if ys and not self._per_tensor_names(ys, yz):
            return None
        hint = node.name or node.output[0]
        trans_b = attr(node, "transB", 0)
        b = self._const(node.input[3])
        if b is None or b.ndim != 2:
            return None
        w = self._weight(node, 3, 4, 5, 0 if trans_b else 1, f"{hint}_b")
        if w is None:
            return None
        a, dq = self._dq(node.input[0], node.input[1], node.input[2], f"{hint}_a")
        inputs = self._with_bias(node, [a, w], 6, hint)
        if inputs is None:
            return None
        keep = ("alpha", "transA", "transB")
        return [dq, *self._float_then_q(node, "Gemm", inputs, keep, ys, yz)]

    def _softmax_ok(self, node) -> bool:
        """Opset < 13 softmax flattens from ``axis``; only the last axis means the same."""
        x = self.view.elem_type(node.input[0])
        axis = attr(node, "axis", -1)
        old = attr(node, "opset", self.opset)
        if old >= 13 and self.opset >= 13:
            return x is not None
        return axis == -1

    def _data_moving(self, node):
        s, z = self.lattice[node.input[0]]
        if not self._per_tensor_names(s, z):
            return None
        hint = node.name or node.output[0]
        x, dq = self._dq(node.input[0], s, z, f"{hint}_x")
        nodes = [dq]
        outs = []
        for o in node.output:
            outs.append(self.view.fresh(f"{o}_float") if o else "")
        op = copy.deepcopy(node)
        op.input[0] = x
        del op.output[:]
        op.output.extend(outs)
        nodes.append(op)
        for o, f in zip(node.output, outs, strict=True):
            if o:
                nodes.append(self._q(f, s, z, o))
        return nodes

    # -- quantize_dynamic ----------------------------------------------------------------------

    def rewrite_dynamic(self) -> None:
        """DynamicQuantizeLinear(x) -> XInteger(xq, wq, xz, wz) -> Cast -> Mul(xs * ws)
        becomes X(x, dequantized w) writing the last Mul's output; the integer chain dies."""
        replace: dict[str, onnx.NodeProto] = {}  # scaling Mul output -> float op
        remove: set[str] = set()  # first outputs of the integer op and its Cast
        for node in self.view.graph.node:
            if node.op_type in ("MatMulInteger", "ConvInteger"):
                found = self._dynamic(node)
                if found is not None:
                    mul_out, float_op, dead = found
                    replace[mul_out] = float_op
                    remove.update(dead)
        if not replace:
            return
        nodes = []
        for n in self.view.graph.node:
            if n.output and n.output[0] in remove:
                continue
            nodes.append(replace.get(n.output[0], n) if n.output else n)
        graph = self.view.graph
        del graph.node[:]
        graph.node.extend(nodes)
        prune_dead_nodes(graph)
        self.view.refresh()

    def _dynamic(self, node):
        view = self.view
        dql = view.producer.get(node.input[0])
        if dql is None or dql.op_type != "DynamicQuantizeLinear":
            return None
        if len(node.input) > 2 and node.input[2] and node.input[2] != dql.output[2]:
            return None
        cast = self._single_user(node.output[0], "Cast")
        mul = self._single_user(cast.output[0], "Mul") if cast is not None else None
        if mul is None or attr(cast, "to") != onnx.TensorProto.FLOAT:
            return None
        other = mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0]
        scale_mul = view.producer.get(other)
        if scale_mul is None or scale_mul.op_type != "Mul" or dql.output[1] not in scale_mul.input:
            return None
        rest = [n for n in scale_mul.input if n != dql.output[1]]
        if len(rest) != 1 or self._const(rest[0]) is None or self._const(node.input[1]) is None:
            return None
        conv = node.op_type == "ConvInteger"
        w = self._const(node.input[1])
        operands = helper.make_node("Operands", [node.input[1], rest[0], self._inp(node, 3)], [])
        hint = node.name or node.output[0]
        w_float = self._weight(operands, 0, 1, 2, 0 if conv else w.ndim - 1, f"{hint}_w")
        if w_float is None:
            return None
        self.info.weights[w_float]["weight_of"] = ["Conv" if conv else "MatMul"]
        keep = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides") if conv else ()
        attrs = {a: attr(node, a) for a in keep if attr(node, a) is not None}
        float_op = helper.make_node(
            "Conv" if conv else "MatMul",
            [dql.input[0], w_float],
            [mul.output[0]],
            name=hint,
            **attrs,
        )
        self.info.dynamic.append(hint)
        return mul.output[0], float_op, {node.output[0], cast.output[0]}

    def _single_user(self, name, op_type):
        users = self.view.consumers.get(name, [])
        if len(users) != 1 or users[0][0].op_type != op_type or name in self.view.graph_outputs:
            return None
        return users[0][0]
