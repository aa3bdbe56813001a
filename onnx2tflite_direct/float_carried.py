"""Integers carried as float32: dynamic quantization's integer chains as float ops XNNPACK runs.

onnxruntime's ``quantize_dynamic`` writes every MatMul/Conv as
``DynamicQuantizeLinear(x) -> MatMulInteger/ConvInteger -> Cast(float) -> Mul(x_scale * w_scale)``
(older exports add an int32 bias between the integer op and the Cast; onnxruntime's optimizer
fuses the chain into DynamicQuantizeMatMul / MatMulIntegerToFloat). Lowered literally, the
uint8 and int32 tensors need CASTs, and an exact int32 accumulation needs digit splits
(``lowering/qlinear.py``): XNNPACK takes none of those ops, so a quantize_dynamic BERT ran in
dozens of delegate partitions at several times onnxruntime's latency.

The mechanism (rule ``float_carried_integers`` of ``onnx_rewrites.RULES``): an integer value
is *carried as float32* -- the same numbers, stored in a float tensor -- when it is produced by
an op that can compute it in float and every reader can consume it as float. Producers:
DynamicQuantizeLinear (y and its zero point: integers in [0, 255], exact in float32),
MatMulInteger / ConvInteger (the accumulator), int32 Add/Sub/Mul, a Cast to int32 of a
Floor/Ceil/Round result, and data movement (Reshape, Flatten, Squeeze, Unsqueeze, Transpose,
Identity). Readers: those ops, MatMulIntegerToFloat, and a Cast to float32 (which then
disappears). The set is the largest one closed under both conditions (a fixpoint); a value
that is a graph output, or read by anything else, keeps the exact integer lowering, and so does
every value it depends on through a node that then leaves the set.

What each op becomes (all float32):

* DynamicQuantizeLinear, as onnxruntime computes it (``GetQuantizationParameter`` +
  ``MlasQuantizeLinear``): ``lo = min(0, min x)``, ``hi = max(0, max x)``, scale
  ``(hi - lo) / 255`` (1.0 when ``hi == lo``, selected arithmetically: ``max(1 - r * 2**127,
  0)`` is 1 for r = 0 and 0 for every r >= 2**-127), zero point ``round(clamp(0 - lo /
  scale, 0, 255))``, ``y = clamp(round(x / scale) + zp, 0, 255)`` (a division, as MLAS does;
  ROUND is half-to-even in TFLite and XNNPACK). Bit-identical to onnxruntime.
* MatMulInteger / ConvInteger: ``MatMul / Conv(a - a_zp, b - b_zp)``. A constant weight's
  ``b - b_zp`` is static for FULLY_CONNECTED / CONV_2D: a 2-D conv's 8-bit filter stays
  8-bit in the file behind ``DequantizeLinear(w, 1.0, w_zp)`` (int8; uint8 moved to int8);
  MatMul weights, per-channel uint8 or nonzero per-channel zero points and 1-D conv filters
  become float32 constants (exact integers either way; why: ``WEIGHTS_AS_INT8``).
  ConvInteger pads with the zero point; after the shift that is Conv's zero padding.
* MatMulIntegerToFloat: ``MatMul(a - a_zp, b - b_zp) * (a_scale * b_scale) + bias``;
  DynamicQuantizeMatMul: the DynamicQuantizeLinear above on A, then the same.
* Cast(int -> float32) of a carried value: its readers read the carried value.
* A float GlobalAveragePool of the same graph sums in onnxruntime's order (``mlas_pool.py``):
  one ulp there can move the next DynamicQuantizeLinear's scale.

Where the weights are constant, the products run on LiteRT's int8 kernel instead
(``MATMUL_ON_INT8_KERNEL``, ``CONV_ON_INT8_KERNEL``; the converter's ExactIntegerDense /
ExactIntegerConv, ``lowering/contrib_quant.exact_dense``): a hybrid FULLY_CONNECTED with int8
weights of scale 1 whose per-row input quantization is pinned to onnxruntime's lattice by two
lattice-end columns, so that its int32 accumulator is onnxruntime's and is converted to float32
once, as onnxruntime converts it: error 0 in the accumulator (tests/test_exact_dense.py), and
2.4-3.5x faster than a float32 FULLY_CONNECTED at transformer shapes. A ConvInteger (2-D, group
1, stride and dilation 1, >= CONV_MIN_CHANNELS input channels) becomes im2col rows for it.
Weights the kernels cannot sum exactly (``int8_codes``) keep the float32 form below.

Error bound of the float32 form (``docs/ops.md``, ``docs/dynamic_range.md``): the only departure
from onnxruntime is the accumulation. Each product ``(a - a_zp) (b - b_zp)`` is an exact integer below 2**16
in magnitude; float32 sums of integers are exact while every partial sum stays below 2**24,
which holds whenever ``K * max|a - a_zp| * max|b - b_zp| < 2**24`` and in practice far beyond
(partial sums of realistic activations grow like sqrt(K)). Past that, with u = 2**-24 and
``S = sum_k |a_k - a_zp| |b_k - b_zp|``, the float32 sum differs from the exact int32 sum by
at most ``gamma_(K-1) * S`` (``gamma_n = n u / (1 - n u)``: the recursive-summation bound, any
order, FMA or not), and onnxruntime's own int32 -> float conversion rounds by at most ``u *
S``: together at most ``gamma_K * S`` (about K float32 ulps of S, typically ~sqrt(K)), times
``scale_a * scale_b`` in the output. An int32 bias add or other int32 arithmetic on the
accumulator adds one rounding of its operands' magnitude. The activation quantization is
bit-identical; a value that feeds the next DynamicQuantizeLinear and lands within the error
above of a rounding tie can move one quantization step there.

``--disable-rewrite float_carried_integers`` (or ``--no-fuse``) keeps the int32-exact lowering.
"""

from __future__ import annotations

import numpy as np

from . import mlas_pool, op_classes
from .ir import Graph, Node, Value, prune_to_fixpoint, value_const, value_dtype
from .registry import REGISTRY

MS = "com.microsoft"
F32 = np.dtype(np.float32)
SMALL_INTS = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16)}
INT32 = np.dtype(np.int32)
INT32_ARITH = {"Add", "Sub", "Mul"}
# Data movement carried as float: the permutations, which is what quantize_dynamic graphs put
# between their integer ops (other copies would carry as well; not taken without a test).
MOVERS = op_classes.REORDERS
ROUNDERS = {"Floor", "Ceil", "Round"}
# 2**127 (the largest power of two in float32): r * 2**127 >= 1 for every r >= 2**-127.
ZERO_RANGE_GAIN = float(2.0**127)
# Constant conv filters stored as 8-bit integers behind a DequantizeLinear (else float32).
# MatMul weights stay float32 constants: a MatMul on a DEQUANTIZE output lowers to
# BATCH_MATMUL (+ reshapes), not FULLY_CONNECTED, which ran slower on minilm_l6_ts_qdyn
# (paired LiteRT timings) for a 2.4x smaller file; a conv filter's DEQUANTIZE timed the same
# as a float32 filter (tv_resnet18_ts_qdyn, ddddocr_common_old) in a 4x smaller file.
WEIGHTS_AS_INT8 = True
# A MatMul of a carried 8-bit activation and constant weights as the converter's
# ExactIntegerDense (lowering/contrib_quant.exact_dense): LiteRT's dynamically quantized
# FULLY_CONNECTED made to compute onnxruntime's exact int32 accumulator (int8 weights; on
# XNNPACK an int8 GEMM, 3-16x faster than the float32 FULLY_CONNECTED at MiniLM's and
# ddddocr_common_old's classifier shapes). Off: the float32 MatMul of the shifted integers.
MATMUL_ON_INT8_KERNEL = True
# The converter's own op that form is written as (lowered by lowering/contrib_quant.py; never
# read from a model file): inputs (q, zp, w_shift int32 constant [K, N]), attributes ``low``
# and ``shifted`` (1: input 0 is ``q - zp`` already).
INTERNAL = "onnx2tflite_direct.internal"
EXACT_DENSE = "ExactIntegerDense"
EXACT_CONV = "ExactIntegerConv"
# A ConvInteger (2-D, group 1, stride and dilation 1) as im2col rows (PAD, one SLICE per tap,
# CONCATENATION) on the same int8 kernel: ~2x faster than XNNPACK's float32 CONV_2D from 48
# input channels (ddddocr_common_old's 48->192 and 64->256 3x3 convs), ~2x slower at 24 (the
# copies cost more than the GEMM saves): benchmarks/bench_outliers.py. LiteRT's own hybrid
# CONV_2D is not exact (its builtin kernel quantizes symmetrically; XNNPACK's per image).
CONV_ON_INT8_KERNEL = True
CONV_MIN_CHANNELS = 48
CONV_MIN_CHANNELS_1X1 = 48
INT8_MAX = 127  # TFLite's symmetric int8 weights: [-127, 127]
# LiteRT's builtin hybrid FULLY_CONNECTED on x86 (sse_tensor_utils SseReductionSumVector) sums
# each weight row for the input offset in 8 int16 lanes (lane j: columns 16 b + 2 j, 16 b + 2 j
# + 1 of the 16-column blocks; wrap-around arithmetic, the tail in int32): a lane's total must
# fit int16 or the row sum, and every output of that row, is wrong (measured: a 3072-column row
# of 127s). NEON sums in int32 and XNNPACK packs its own sums; the codes are checked for the SSE
# lanes so that the file is exact on every kernel set.
ROW_SUM_LANE_MAX = 32767


def int8_codes(w_shift: np.ndarray) -> np.ndarray | None:
    """The int8 weight codes [N, parts * K + 2] of ``exact_dense`` for integer weights
    ``w_shift`` [K, N]: ``w_shift = w_1 + w_2 + ...`` (each clipped to +-127, stacked along K,
    the input repeated per part), then two zero columns for the lattice ends. None when a
    kernel could not sum a code row exactly (``ROW_SUM_LANE_MAX``)."""
    w = np.asarray(w_shift, np.int64)
    parts, rest = [], w
    while not parts or np.any(rest):
        part = np.clip(rest, -INT8_MAX, INT8_MAX)
        parts.append(part)
        rest = rest - part
    codes = np.concatenate([*parts, np.zeros((2, w.shape[1]), np.int64)], 0).T
    blocked = codes.shape[1] // 16 * 16
    lanes = codes[:, :blocked].reshape(codes.shape[0], -1, 8, 2).sum(axis=(1, 3))
    if lanes.size and np.max(np.abs(lanes)) > ROW_SUM_LANE_MAX:
        return None
    return np.ascontiguousarray(codes.astype(np.int8))


def _inp(node: Node, i: int) -> str:
    return node.inputs[i] if i < len(node.inputs) else ""


def _size(graph: Graph, name: str) -> int | None:
    v = graph.values.get(name)
    if v is None or v.shape is None or any(not isinstance(d, int) for d in v.shape):
        return None
    return int(np.prod(v.shape, dtype=np.int64))


def _shape(graph: Graph, name: str):
    v = graph.values.get(name)
    return None if v is None else v.shape


# ---- which nodes can compute in float ------------------------------------------------------


def _per_tensor(graph: Graph, name: str) -> bool:
    return not name or _size(graph, name) == 1


def _along(graph: Graph, name: str, n) -> bool:
    """A parameter that is per-tensor or a 1-D vector of ``n`` entries."""
    if _per_tensor(graph, name):
        return True
    shape = _shape(graph, name)
    return shape is not None and tuple(shape) == (n,) and isinstance(n, int)


def _matmul_ok(graph: Graph, a: str, b: str, az: str, bz: str) -> bool:
    sa, sb = _shape(graph, a), _shape(graph, b)
    if sa is None or sb is None or len(sa) < 2 or len(sb) < 2:
        return False
    return _per_tensor(graph, az) and _along(graph, bz, sb[-1])


def _conv_ok(graph: Graph, node: Node) -> bool:
    sx, sw = _shape(graph, node.inputs[0]), _shape(graph, node.inputs[1])
    if sx is None or sw is None or len(sx) not in (3, 4) or len(sw) != len(sx):
        return False
    if value_const(graph, node.inputs[1]) is None:
        return False  # CONV_2D needs static weights
    return _per_tensor(graph, _inp(node, 2)) and _along(graph, _inp(node, 3), sw[0])


def _float_op_known(graph: Graph, op_type: str) -> bool:
    return REGISTRY.lookup("", op_type, graph.opsets.get("", 1)) is not None


def _candidate(graph: Graph, node: Node, producers: dict[str, Node]) -> str | None:
    """The role a node can play in float form (None: it stays as it is)."""
    op, dom = node.op_type, node.domain
    if dom == "" and op == "DynamicQuantizeLinear":
        return "dql" if value_dtype(graph, node.inputs[0]) == F32 else None
    if dom == "" and op == "MatMulInteger":
        ok = _matmul_ok(graph, node.inputs[0], node.inputs[1], _inp(node, 2), _inp(node, 3))
        return "matmul" if ok and _float_op_known(graph, "MatMul") else None
    if dom == "" and op == "ConvInteger":
        return "conv" if _conv_ok(graph, node) and _float_op_known(graph, "Conv") else None
    if dom == MS and op == "MatMulIntegerToFloat":
        ok = _matmul_ok(graph, node.inputs[0], node.inputs[1], _inp(node, 4), _inp(node, 5))
        ok = ok and _per_tensor(graph, node.inputs[2])
        ok = ok and _along(graph, node.inputs[3], _shape(graph, node.inputs[1])[-1])
        return "mm_to_float" if ok else None
    if dom == MS and op == "DynamicQuantizeMatMul":
        ok = value_dtype(graph, node.inputs[0]) == F32
        ok = ok and _matmul_ok(graph, node.inputs[0], node.inputs[1], "", _inp(node, 3))
        ok = ok and _along(graph, node.inputs[2], _shape(graph, node.inputs[1])[-1])
        return "dqmm" if ok else None
    if dom != "":
        return None
    if op == "Cast":
        to, src = value_dtype(graph, node.outputs[0]), value_dtype(graph, node.inputs[0])
        if to == F32 and src is not None and src.kind in "iu":
            return "sink"
        p = producers.get(node.inputs[0])
        if to == INT32 and src == F32 and p is not None and p.op_type in ROUNDERS:
            return "rounded"
        return None
    if op in INT32_ARITH and len(node.inputs) == 2:
        if all(value_dtype(graph, i) == INT32 for i in (*node.inputs, node.outputs[0])):
            return "arith"
        return None
    if op in MOVERS and value_dtype(graph, node.inputs[0]) in (SMALL_INTS | {INT32}):
        return "mover"
    return None


# Input positions a role reads as carried integers (the others are shapes, scales, axes).
def _int_inputs(role: str, node: Node) -> tuple[int, ...]:
    n = len(node.inputs)
    return {
        "matmul": tuple(range(min(n, 4))),
        "conv": tuple(range(min(n, 4))),
        "mm_to_float": tuple(i for i in (0, 1, 4, 5) if i < n),
        "dqmm": tuple(i for i in (1, 3) if i < n),
        "sink": (0,),
        "arith": (0, 1),
        "mover": (0,),
    }.get(role, ())


# Outputs a role writes as carried integers.
def _int_outputs(role: str, node: Node) -> tuple[int, ...]:
    if role == "dql":
        return tuple(i for i in (0, 2) if i < len(node.outputs) and node.outputs[i])
    if role in ("matmul", "conv", "arith", "mover", "rounded"):
        return (0,)
    return ()


def _plan(graph: Graph) -> dict[int, str]:
    """The largest set of nodes that can run in float with every carried value read only by
    members (or by a Cast to float32), as {id(node): role}."""
    producers = graph.producers()
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    roles = {}
    for node in graph.nodes:
        role = _candidate(graph, node, producers)
        if role is not None:
            roles[id(node)] = role
    return prune_to_fixpoint(
        graph,
        roles,
        lambda node, role: _fits(graph, node, role, roles, producers, consumers, outputs),
    )


def _fits(graph, node, role, roles, producers, consumers, outputs) -> bool:
    for i in _int_inputs(role, node):
        name = node.inputs[i]
        if not name or value_const(graph, name) is not None:
            continue
        p = producers.get(name)
        if p is not None and id(p) in roles and name in _carried_names(p, roles[id(p)]):
            continue
        if role == "sink" or value_dtype(graph, name) not in SMALL_INTS:
            return False  # an int32 from elsewhere would round when cast; a sink is pointless
    useful = role in ("sink", "mm_to_float", "dqmm")
    for o in _int_outputs(role, node):
        name = node.outputs[o]
        if name in outputs:
            return False
        for reader, idx in consumers.get(name, []):
            r = roles.get(id(reader))
            if r is None or idx not in _int_inputs(r, reader):
                return False
            useful = True
    return useful


def _carried_names(node: Node, role: str) -> set[str]:
    return {node.outputs[i] for i in _int_outputs(role, node)}


# ---- emission ------------------------------------------------------------------------------


class _Emitter:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.opset = graph.opsets.get("", 13)
        self.carried: dict[str, str] = {}  # integer value -> its float32 twin
        # carried DynamicQuantizeLinear y -> (float32 y - zp, zp's ONNX name): the form its
        # products read, computed without y itself (which is dropped when nothing else reads it)
        self.shifted: dict[str, tuple[str, str]] = {}
        self.rename: dict[str, str] = {}
        self.nodes: list[Node] = []
        self.like: Node | None = None

    def fresh(self, base: str, shape, dtype=F32, const=None) -> str:
        name, k = base, 1
        while name in self.graph.values:
            k += 1
            name = f"{base}_{k}"
        shape = None if shape is None else tuple(shape)
        self.graph.values[name] = Value(name, np.dtype(dtype), shape, const)
        return name

    def const(self, value, hint: str) -> str:
        arr = np.asarray(value, np.float32)
        name = self.fresh(f"{self.like.label}/{hint}", arr.shape)
        self.graph.values[name].const = arr
        return name

    def op(self, op_type: str, inputs, shape, hint: str, out: str | None = None, **attrs) -> str:
        if out is None:
            out = self.fresh(f"{self.like.label}/{hint}", shape)
        label = f"{self.like.label}/{hint}"
        self.nodes.append(Node(label, op_type, "", list(inputs), [out], attrs, self.opset))
        return out

    def as_float(self, name: str, hint: str, param=None) -> str:
        """A carried, constant or small-integer value as float32 (exact in every case)."""
        if name in self.carried:
            return self.carried[name]
        c = value_const(self.graph, name)
        if c is not None:
            arr = np.asarray(c).astype(np.float32)
            return self.const(arr if param is None else param(arr), hint)
        return self.op("Cast", [name], _shape(self.graph, name), f"{hint}_f", to=1)

    def carry(self, name: str) -> str:
        out = self.fresh(f"{name}/float", _shape(self.graph, name))
        self.carried[name] = out
        return out

    def target(self, name: str) -> str:
        """Where a float result that replaces ``name`` goes: its carried twin, or ``name``
        itself when the node's output already is float (a graph output keeps its name)."""
        if value_dtype(self.graph, name) == F32:
            return name
        return self.carry(name)


def _int8_weight(em: _Emitter, q: np.ndarray, zp, axis: int, hint: str) -> str | None:
    """A constant 8-bit weight as ``DequantizeLinear(q, 1.0, zp)`` with int8 ``q``: the same
    exact integers ``q - zp``, stored as int8 in the file (a DEQUANTIZE of a constant, which
    XNNPACK unpacks once) instead of 4x larger float32. uint8 with one zero point is moved to
    int8 (``q - 128``, ``zp - 128``: the same differences), because XNNPACK leaves a CONV_2D
    whose filter is a dequantized *uint8* constant to the reference kernels (measured: every
    conv of ddddocr_common_old). Per-axis zero points must be 0 (int8: TFLite's per-channel
    rule; uint8 per-axis is no TFLite quantization): None otherwise, a float32 constant."""
    zp = np.zeros((), q.dtype) if zp is None else np.asarray(zp)
    if zp.dtype != q.dtype:
        return None
    if q.dtype == np.dtype(np.uint8) and zp.size == 1:
        q = (q.astype(np.int16) - 128).astype(np.int8)
        zp = (zp.astype(np.int16) - 128).astype(np.int8)
    if q.dtype != np.dtype(np.int8):
        return None
    per_axis = zp.size > 1
    if per_axis and (zp.ndim != 1 or np.any(zp != 0)):
        return None
    if not _float_op_known(em.graph, "DequantizeLinear"):
        return None
    zp = zp.reshape(-1) if per_axis else zp.reshape(())
    q_name = em.fresh(f"{em.like.label}/{hint}_q", q.shape, q.dtype, q)
    z_name = em.fresh(f"{em.like.label}/{hint}_zp", zp.shape, zp.dtype, zp)
    scale = em.const(np.ones(zp.shape, np.float32), f"{hint}_unit_scale")
    attrs = {"axis": axis} if per_axis else {}
    return em.op("DequantizeLinear", [q_name, scale, z_name], q.shape, f"{hint}_int", **attrs)


def _shifted(em: _Emitter, q: str, zp: str, hint: str, param=None, axis=None) -> str:
    """``q - zp`` as float32; a constant pair is folded (exact integers): stored as 8-bit
    integers behind a DequantizeLinear where ``axis`` says which axis a zero-point vector
    runs along, else as a float32 constant."""
    g = em.graph
    twin = em.shifted.get(q)
    if twin is not None and zp and twin[1] == zp:
        return twin[0]
    qc, zc = value_const(g, q), (value_const(g, zp) if zp else None)
    if qc is not None and (not zp or zc is not None):
        if axis is not None and WEIGHTS_AS_INT8:
            stored = _int8_weight(em, np.asarray(qc), zc, axis % np.ndim(qc), hint)
            if stored is not None:
                return stored
        value = np.asarray(qc).astype(np.float32)
        if zp:
            value = value - (param(np.asarray(zc).astype(np.float32)) if param else zc)
        return em.const(value, f"{hint}_shifted")
    qf = em.as_float(q, hint)
    if not zp:
        return qf
    zf = em.as_float(zp, f"{hint}_zp", param)
    return em.op("Sub", [qf, zf], _shape(g, q), f"{hint}_shifted")


def _dynamic_quantize(em: _Emitter, x: str, scale_out: str | None, q_out, zp_out):
    """DynamicQuantizeLinear in float32, as onnxruntime computes it (see the docstring).
    Returns (q, zp, scale, shifted) names, ``shifted`` = ``q - zp`` computed directly as
    ``min(round(x / scale), 255 - zp)`` (the same integers: ``clamp(r + zp, 0, 255) - zp`` with
    integral r and zp, all exact in float32, and ``r >= -zp`` always; three full-tensor passes
    fewer for the products, which read only this); ``*_out`` name the results when given."""
    shape = _shape(em.graph, x)
    zero, one = em.const(0.0, "zero"), em.const(1.0, "one")
    span = em.const(255.0, "q_span")
    mx = em.op("ReduceMax", [x], (), "max", keepdims=0)
    mn = em.op("ReduceMin", [x], (), "min", keepdims=0)
    hi = em.op("Max", [mx, zero], (), "hi")
    lo = em.op("Min", [mn, zero], (), "lo")
    spread = em.op("Sub", [hi, lo], (), "range")
    lifted = em.op("Mul", [spread, em.const(ZERO_RANGE_GAIN, "gain")], (), "range_lifted")
    empty = em.op("Max", [em.op("Sub", [one, lifted], (), "empty_raw"), zero], (), "empty")
    spread = em.op("Add", [spread, em.op("Mul", [empty, span], (), "empty_span")], (), "range_nz")
    scale = em.op("Div", [spread, span], (), "scale", out=scale_out)
    initial = em.op("Sub", [zero, em.op("Div", [lo, scale], (), "min_scaled")], (), "zp0")
    zp = em.op("Max", [initial, zero], (), "zp_lo")
    zp = em.op("Min", [zp, span], (), "zp_hi")
    zp = em.op("Round", [zp], (), "zp", out=zp_out)
    rounded = em.op("Round", [em.op("Div", [x, scale], shape, "x_scaled")], shape, "x_round")
    # no lower clamp: x >= lo, so round(x / scale) >= round(lo / scale) = -zp (zp is
    # round(0 - lo / scale), or 255 when that exceeds 255, and rounding half to even is odd)
    shifted = rounded
    hi_s = em.op("Sub", [span, zp], (), "q_hi_shifted")
    shifted = em.op("Min", [shifted, hi_s], shape, "shifted")
    q = em.op("Add", [shifted, zp], shape, "q", out=q_out)
    return q, zp, scale, shifted


def _emit_dql(em: _Emitter, node: Node) -> None:
    outs = node.outputs
    q_out = em.carry(outs[0]) if outs[0] else None
    zp_out = em.carry(outs[2]) if len(outs) > 2 and outs[2] else None
    scale_out = outs[1] if len(outs) > 1 and outs[1] else None
    *_, shifted = _dynamic_quantize(em, node.inputs[0], scale_out, q_out, zp_out)
    if outs[0] and zp_out:
        em.shifted[outs[0]] = (shifted, outs[2])


def _matmul(em: _Emitter, a, b, az, bz, out_shape, out=None) -> str:
    g = em.graph
    exact = _exact_dense(em, a, b, az, bz, out_shape, out)
    if exact is not None:
        return exact
    a_s = _shifted(em, a, az, "a")
    n = _shape(g, b)[-1]
    column = lambda z: z.reshape(-1) if z.size == n else z.reshape(())  # noqa: E731
    b_s = _shifted(em, b, bz, "b", column)  # float32: see MATMUL_WEIGHTS_AS_FLOAT
    return em.op("MatMul", [a_s, b_s], out_shape, "matmul", out=out)


def _lattice_low(graph: Graph, name: str) -> int | None:
    """The lowest code of the 8-bit lattice a value lives on (0 uint8, -128 int8)."""
    dt = value_dtype(graph, name)
    return {np.dtype(np.uint8): 0, np.dtype(np.int8): -128}.get(dt)


def _const_shift(graph: Graph, b: str, bz: str) -> np.ndarray | None:
    """``b - b_zp`` of a constant 2-D weight with per-tensor or per-column zero point."""
    bc = value_const(graph, b)
    zc = value_const(graph, bz) if bz else np.zeros((), np.int64)
    if bc is None or zc is None or np.ndim(bc) != 2:
        return None
    zc = np.asarray(zc, np.int64)
    zc = zc.reshape(-1) if zc.size > 1 else zc.reshape(())
    return np.asarray(bc, np.int64) - zc


def _exact_dense(
    em: _Emitter, a, b, az, bz, out_shape, out=None, low=None, shifted=False
) -> str | None:
    """``(a - az) x (b - bz)`` as an ExactIntegerDense node when ``a`` is a carried (or given,
    with its lattice's ``low``; ``shifted``: given as ``a - az`` already) 8-bit activation and
    ``b`` a constant 2-D weight; else None."""
    g = em.graph
    if not MATMUL_ON_INT8_KERNEL or not _float_op_known(g, "MatMul"):
        return None
    if low is None:
        if a not in em.carried:
            return None
        low = _lattice_low(g, a)
        twin = em.shifted.get(a)
        if twin is not None and az and twin[1] == az:
            a, shifted = twin[0], True
        else:
            a = em.carried[a]
    w = _const_shift(g, b, bz)
    if low is None or w is None or int8_codes(w) is None:
        return None
    zp = em.as_float(az, "a_zp") if az else em.const(0.0, "a_zp")
    w_name = em.fresh(f"{em.like.label}/b_shifted", w.shape, np.int32, w.astype(np.int32))
    if out is None:
        out = em.fresh(f"{em.like.label}/acc", out_shape)
    label = f"{em.like.label}/exact_dense"
    attrs = {"low": low, "shifted": int(shifted)}
    em.nodes.append(Node(label, EXACT_DENSE, INTERNAL, [a, zp, w_name], [out], attrs, 1))
    return out


def _emit_matmul(em: _Emitter, node: Node) -> None:
    out = node.outputs[0]
    i = node.inputs
    _matmul(em, i[0], i[1], _inp(node, 2), _inp(node, 3), _shape(em.graph, out), em.target(out))


def _conv_geometry(em: _Emitter, node: Node):
    """(pads [top, left, bottom, right], w_shift [O, C, kh, kw]) of a ConvInteger the int8
    kernel can take as im2col rows (``CONV_ON_INT8_KERNEL``), else None."""
    g = em.graph
    x, w_name = node.inputs[0], node.inputs[1]
    sx = _shape(g, x)
    wc = value_const(g, w_name)
    if not CONV_ON_INT8_KERNEL or wc is None or np.ndim(wc) != 4 or x not in em.carried:
        return None
    if _lattice_low(g, x) is None or sx is None or any(not isinstance(d, int) for d in sx):
        return None
    a = node.attrs
    kh, kw = np.shape(wc)[2:]
    if int(a.get("group", 1)) != 1 or any(int(v) != 1 for v in a.get("dilations", [1, 1])):
        return None
    if any(int(v) != 1 for v in a.get("strides", [1, 1])):
        return None
    auto_pad = a.get("auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)) != "NOTSET":
        return None
    if sx[1] < (CONV_MIN_CHANNELS_1X1 if kh * kw == 1 else CONV_MIN_CHANNELS):
        return None
    pads = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
    zc = value_const(g, _inp(node, 3)) if _inp(node, 3) else np.zeros((), np.int64)
    if zc is None:
        return None
    zc = np.asarray(zc, np.int64)
    zc = zc.reshape(-1, 1, 1, 1) if zc.size > 1 else zc.reshape(())
    w = np.asarray(wc, np.int64) - zc
    if int8_codes(conv_rows_weights(w)) is None:
        return None
    return pads, w


def conv_rows_weights(w: np.ndarray) -> np.ndarray:
    """[O, C, kh, kw] filter as the [kh * kw * C, O] weights of im2col rows (tap-major)."""
    o, c, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(kh * kw * c, o))


def _emit_conv(em: _Emitter, node: Node) -> None:
    g = em.graph
    geometry = _conv_geometry(em, node)
    if geometry is not None:
        pads, w = geometry
        x, az = node.inputs[0], _inp(node, 2)
        twin = em.shifted.get(x)
        shifted = twin is not None and bool(az) and twin[1] == az
        a = twin[0] if shifted else em.carried[x]
        zp = em.as_float(az, "x_zp") if az else em.const(0.0, "x_zp")
        w_name = em.fresh(f"{node.label}/w_shifted", w.shape, np.int32, w.astype(np.int32))
        out = node.outputs[0]
        attrs = {"low": _lattice_low(g, x), "shifted": int(shifted), "pads": pads}
        inputs = [a, zp, w_name]
        em.nodes.append(
            Node(
                f"{node.label}/exact_conv", EXACT_CONV, INTERNAL, inputs, [em.target(out)], attrs, 1
            )
        )
        return
    w_shape = _shape(g, node.inputs[1])
    o, rank = w_shape[0], len(w_shape)
    x_s = _shifted(em, node.inputs[0], _inp(node, 2), "x")

    def per_channel(z):
        return z.reshape((o,) + (1,) * (rank - 1)) if z.size == o and o != 1 else z.reshape(())

    # A 1-D conv's filter is reshaped to 2-D after the DEQUANTIZE, which XNNPACK then no
    # longer sees as static (hf_wav2vec2_ts_qdyn's 4 convs stayed outside): float32 there.
    axis = 0 if rank == 4 else None
    w_s = _shifted(em, node.inputs[1], _inp(node, 3), "w", per_channel, axis=axis)
    out = node.outputs[0]
    em.op("Conv", [x_s, w_s], _shape(g, out), "conv", out=em.target(out), **dict(node.attrs))


def _broadcast(graph: Graph, a: str, b: str):
    sa, sb = _shape(graph, a), _shape(graph, b)
    if sa is None or sb is None or any(not isinstance(d, int) for d in (*sa, *sb)):
        return None
    return tuple(np.broadcast_shapes(tuple(sa), tuple(sb)))


def _scaled_output(em: _Emitter, acc: str, a_scale: str, b_scale: str, bias: str, out: str):
    g = em.graph
    shape = _shape(g, out)
    scale = em.op("Mul", [a_scale, b_scale], _broadcast(g, a_scale, b_scale), "scale_ab")
    if not bias:
        em.op("Mul", [acc, scale], shape, "scaled", out=out)
        return
    value = em.op("Mul", [acc, scale], shape, "scaled")
    em.op("Add", [value, bias], shape, "biased", out=out)


def _emit_mm_to_float(em: _Emitter, node: Node) -> None:
    g = em.graph
    i = node.inputs
    out = node.outputs[0]
    acc = _matmul(em, i[0], i[1], _inp(node, 4), _inp(node, 5), _shape(g, out))
    _scaled_output(em, acc, i[2], i[3], _inp(node, 6), out)


def _emit_dqmm(em: _Emitter, node: Node) -> None:
    g = em.graph
    i = node.inputs
    out = node.outputs[0]
    _, zp, a_scale, a_s = _dynamic_quantize(em, i[0], None, None, None)
    acc = _exact_dense(em, a_s, i[1], zp, _inp(node, 3), _shape(g, out), low=0, shifted=True)
    if acc is None:
        n = _shape(g, i[1])[-1]
        column = lambda z: z.reshape(-1) if z.size == n else z  # noqa: E731
        b_s = _shifted(em, i[1], _inp(node, 3), "b", column)
        acc = em.op("MatMul", [a_s, b_s], _shape(g, out), "matmul")
    _scaled_output(em, acc, a_scale, i[2], _inp(node, 4), out)


def _emit_arith(em: _Emitter, node: Node) -> None:
    ins = [em.as_float(name, f"in{k}") for k, name in enumerate(node.inputs)]
    out = node.outputs[0]
    em.op(node.op_type, ins, _shape(em.graph, out), "float", out=em.carry(out))


def _emit_mover(em: _Emitter, node: Node) -> None:
    ins = [em.as_float(node.inputs[0], "in0"), *node.inputs[1:]]
    out = node.outputs[0]
    em.nodes.append(
        Node(
            f"{node.label}/float",
            node.op_type,
            "",
            ins,
            [em.carry(out)],
            dict(node.attrs),
            node.opset,
        )
    )


def _emit_rounded(em: _Emitter, node: Node) -> None:
    em.carried[node.outputs[0]] = node.inputs[0]  # already integral float32


def _emit_sink(em: _Emitter, node: Node) -> None:
    src, out = em.carried[node.inputs[0]], node.outputs[0]
    if out in em.graph.outputs:
        em.op("Identity", [src], _shape(em.graph, out), "carried", out=out)
    else:
        em.rename[out] = src


EMIT = {
    "dql": _emit_dql,
    "matmul": _emit_matmul,
    "conv": _emit_conv,
    "mm_to_float": _emit_mm_to_float,
    "dqmm": _emit_dqmm,
    "arith": _emit_arith,
    "mover": _emit_mover,
    "rounded": _emit_rounded,
    "sink": _emit_sink,
    "mlas_pool": mlas_pool.emit,  # a float GlobalAveragePool as onnxruntime sums it
}


def float_carried_integers(graph: Graph) -> list[str]:
    """Rewrite every node of the float-carried set (see the module docstring)."""
    roles = _plan(graph)
    if not roles:
        return []
    em = _Emitter(graph)
    nodes: list[Node] = []
    changed: list[str] = []
    for node in graph.nodes:
        node.inputs = [em.rename.get(i, i) for i in node.inputs]
        role = roles.get(id(node))
        if role is None and mlas_pool.applies(graph, node):  # (its rounding feeds the scales)
            role = "mlas_pool"
        if role is None:
            nodes.append(node)
            continue
        em.like, em.nodes = node, []
        EMIT[role](em, node)
        nodes.extend(em.nodes)
        changed.append(node.label)
    graph.nodes = nodes
    graph.invalidate()
    return changed


TRIGGERS = {
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
}
