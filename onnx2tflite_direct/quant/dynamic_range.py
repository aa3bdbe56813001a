"""The dynamic-range variant: int8 weights, float activations, LiteRT's hybrid kernels.

Per LiteRT's quantization spec (hybrid kernels): CONV_2D and FULLY_CONNECTED take per-channel weights on axis 0,
DEPTHWISE_CONV_2D on axis 3 (one scale per output channel); weights are symmetric int8 in
[-127, 127]; weights under 1,024 elements stay float (as the reference quantizer does); the
asymmetric per-batch input scheme is used. A weight read by any other op stays float, so no
DEQUANTIZE is needed.

A product already on an integer lattice keeps its own quantization (:func:`lattice_products`):
an already-quantized model (onnxruntime's ``quantize_dynamic``) reaches this variant with its
products computed as onnxruntime computes them -- ``DynamicQuantizeLinear``'s codes carried as
float32 integers into LiteRT's int8 FULLY_CONNECTED with int8 weights of scale 1, or into a
float32 product of exact integers (``float_carried.py``). Re-quantizing those with the hybrid
kernels' own per-row input scales would replace the model's quantization with another one (item
6 of issue 21: resnet50-like 36.9 dB against the model's semantics, where onnxruntime's kernels
are bit-identical to it); so they are left as they are. In the dynamic-range file of such a
model (``qdq_import.prequantized_variant``) the float weights the model left unquantized stay
float too: the model's semantics computes them in float, as onnxruntime does, and the hybrid
kernels' per-row input quantization was the largest error of that file (inception-v1-like's
classifier: 29.9 dB against the float64 semantics, onnxruntime's kernels 32.6; float: 33.0).
A float model's ``--quantize dynamic`` (and a model whose products onnxruntime's optimizer
fused, which is not imported as pre-quantized) still gets the rules above for every product
not on a lattice (``docs/dynamic_range.md``).
"""

from __future__ import annotations

import numpy as np

from .. import tfl

MIN_ELEMENTS = 1024
# Hybrid-capable op -> the weight's output-channel axis.
HYBRID_WEIGHT_AXIS = {"CONV_2D": 0, "FULLY_CONNECTED": 0, "DEPTHWISE_CONV_2D": 3}
PER_CHANNEL_SCALES_ONLY = {"DEPTHWISE_CONV_2D"}


def quantize_weights_int8(
    model: tfl.Model, per_channel: bool = True, keep_nodes=frozenset()
) -> int:
    """Rewrite ``model`` in place; returns how many weight tensors became int8.

    ``per_channel=False`` gives one scale per weight tensor (``--quant-type per-tensor``);
    operators of the ONNX nodes in ``keep_nodes`` keep float weights (``--quant-override``)."""
    converted = 0
    on_lattice = lattice_products(model)
    for sub in model.subgraphs:
        readers = sub.consumers()  # (only constants' readers are asked for)
        done: dict[int, tfl.Tensor] = {}
        for op in sub.operators:
            axis = HYBRID_WEIGHT_AXIS.get(op.opcode)
            w = op.inputs[1] if axis is not None and len(op.inputs) > 1 else None
            if op.onnx_node in keep_nodes or id(op) in on_lattice:
                continue
            if not _eligible(w, op, readers):
                continue
            if id(w) not in done:
                done[id(w)] = hybrid_weight(w, op.opcode, per_channel)
                converted += 1
            op.inputs[1] = done[id(w)]
            if op.opcode == "FULLY_CONNECTED":
                op.options["asymmetric_quantize_inputs"] = True
    return converted


def quantizable_weight(w: tfl.Tensor | None) -> bool:
    """A constant float32 weight, not yet quantized, large enough to pay for a quantized form
    (``MIN_ELEMENTS``) and finite: what the weight-only variants (dynamic, int4) may store."""
    return (
        w is not None
        and w.data is not None
        and w.dtype == np.float32
        and w.quantization is None
        and w.data.size >= MIN_ELEMENTS
        and bool(np.all(np.isfinite(w.data)))
    )


def _eligible(w: tfl.Tensor | None, op: tfl.Operator, readers) -> bool:
    if not quantizable_weight(w):
        return False
    if op.inputs[0] is None or op.inputs[0].dtype != np.float32:
        return False
    # Every reader must be a hybrid op reading it as its weight on the same axis.
    return all(o.opcode == op.opcode and i == 1 for o, i in readers.get(id(w), []))


def hybrid_weight(w: tfl.Tensor, opcode: str, per_channel: bool) -> tfl.Tensor:
    """``w`` as the symmetric int8 weight of hybrid ``opcode``. Per tensor still writes one
    scale per output channel (all equal) for DEPTHWISE_CONV_2D: its hybrid kernel reads a
    scale per channel and would run off the end of a single one."""
    axis = HYBRID_WEIGHT_AXIS[opcode]
    q = _int8_symmetric(w, axis if per_channel else None)
    if not per_channel and opcode in PER_CHANNEL_SCALES_ONLY:
        channels = w.shape[axis]
        q.quantization = tfl.Quantization(
            scale=np.repeat(q.quantization.scale, channels),
            zero_point=np.zeros(channels, np.int64),
            axis=axis,
        )
    return q


def _int8_symmetric(w: tfl.Tensor, axis: int | None) -> tfl.Tensor:
    """Symmetric int8 in [-127, 127]: one scale per slice along ``axis`` (None: per tensor)."""
    data = np.moveaxis(w.data.astype(np.float32), axis or 0, 0)
    flat = data.reshape(data.shape[0] if axis is not None else 1, -1)
    scale = np.abs(flat).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)  # all-zero channels
    q = np.clip(np.rint(flat / scale[:, None]), -127, 127).astype(np.int8)
    q = np.moveaxis(q.reshape(data.shape), 0, axis or 0)
    quant = tfl.Quantization(scale=scale, zero_point=np.zeros_like(scale, np.int64), axis=axis or 0)
    return tfl.Tensor(
        f"{w.name}/int8", np.int8, w.shape, data=np.ascontiguousarray(q), quantization=quant
    )


# ---- products already on an integer lattice ------------------------------------------------

PRODUCTS = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL", "TRANSPOSE_CONV"}
# Float ops whose output holds integers whenever every float input does (exactly, while the
# values stay below 2**24: the sums and products of 8-bit codes the lattice products read).
INTEGER_CLOSED = {
    "ADD", "SUB", "MUL", "MINIMUM", "MAXIMUM", "NEG", "ABS", "RELU", "RELU6", "RELU_N1_TO_1",
    "SQUARE", "SQUARED_DIFFERENCE", "SUM", "REDUCE_MAX", "REDUCE_MIN", "MAX_POOL_2D",
    "RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "SLICE", "STRIDED_SLICE",
    "CONCATENATION", "PAD", "PADV2", "MIRROR_PAD", "GATHER", "GATHER_ND", "SPLIT", "SPLIT_V",
    "PACK", "UNPACK", "TILE", "BROADCAST_TO", "REVERSE_V2", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE",
    "SELECT_V2", "IDENTITY", *PRODUCTS,
}  # fmt: skip
ROUNDERS = {"ROUND", "FLOOR", "CEIL", "FLOOR_DIV"}  # integer output from any float input
INTEGER_ACTIVATIONS = {None, "NONE", "RELU", "RELU6", "RELU_N1_TO_1"}


def lattice_products(model: tfl.Model) -> set[int]:
    """``id()`` of the products (:data:`PRODUCTS`) whose input and weight both hold integers:
    a product the model has already quantized, whose integer operands make it exact (the int8
    FULLY_CONNECTED of scale-1 weights and lattice-end columns, or a float32 product of exact
    integers, ``float_carried.py``). Found by following integer values forward through each
    subgraph (:class:`IntegerValues`): a structural property of the file, not of its origin."""
    found: set[int] = set()
    for sub in model.subgraphs:
        values = IntegerValues(sub)
        for op in sub.operators:
            if op.opcode in PRODUCTS and len(op.inputs) > 1:
                if all(t is not None and values.holds(t) for t in op.inputs[:2]):
                    found.add(id(op))
    return found


class IntegerValues:
    """The tensors of one subgraph known to hold integers: constants with integral values,
    int8/int16 tensors of scale 1 (and a DEQUANTIZE of one), float results of ROUND and its
    kin or of a CAST from an integer type, and the results of :data:`INTEGER_CLOSED` ops (with
    an integer-preserving fused activation) whose float and scale-1 operands all hold integers.
    Integer-typed shape, index and axis operands are not values and do not count."""

    def __init__(self, sub: tfl.Subgraph):
        self._made: set[int] = set()
        self._constants: dict[int, bool] = {}
        for op in sub.operators:
            outs = [t for t in op.outputs if t is not None and t.dtype.kind == "f"]
            if outs and self._integral_result(op):
                self._made.update(id(t) for t in outs)

    def holds(self, t: tfl.Tensor) -> bool:
        if t.data is None:
            return id(t) in self._made
        if id(t) not in self._constants:
            self._constants[id(t)] = _integral_constant(t)
        return self._constants[id(t)]

    def _integral_result(self, op: tfl.Operator) -> bool:
        first = op.inputs[0] if op.inputs else None
        if op.opcode in ROUNDERS:
            return True
        if op.opcode == "CAST":
            return first is not None and first.dtype.kind in "iub"
        if op.opcode == "DEQUANTIZE":
            return first is not None and _unit_scale(first)
        if op.opcode not in INTEGER_CLOSED:
            return False
        if op.options.get("fused_activation_function") not in INTEGER_ACTIVATIONS:
            return False
        return all(self.holds(t) for t in op.inputs if t is not None and _is_value(t))


def _is_value(t: tfl.Tensor) -> bool:
    """A float operand, or a quantized integer one (not a shape, index or axis)."""
    return t.dtype.kind == "f" or (t.dtype.kind in "iu" and t.quantization is not None)


def _unit_scale(t: tfl.Tensor) -> bool:
    q = t.quantization
    return (
        t.dtype.kind in "iu"
        and q is not None
        and q.block_scales is None
        and np.size(q.scale) > 0
        and bool(np.all(np.asarray(q.scale) == 1.0))
    )


def _integral_constant(t: tfl.Tensor) -> bool:
    if t.dtype.kind in "iu":
        return t.quantization is None or _unit_scale(t)
    if t.dtype.kind != "f" or t.quantization is not None:
        return False
    flat = np.asarray(t.data).reshape(-1)
    head = flat[:64]  # (a float weight is told apart by its first values, without a full pass)
    if not np.all(head == np.rint(head)):
        return False
    return bool(np.all(np.isfinite(flat)) and np.all(flat == np.rint(flat)))


# ---- the report's per-node rows of an already-quantized model's dynamic-range file ----------

KEPT_INT8 = (
    "the model's own dynamic quantization, kept: an int8 x int8 product on LiteRT's int8 "
    "FULLY_CONNECTED (weights of scale 1, onnxruntime's input lattice), exact as onnxruntime's"
)
KEPT_FLOAT = (
    "the model's own dynamic quantization, kept: a product of its integer codes in float32, "
    "exact while partial sums stay below 2**24 (docs/dynamic_range.md)"
)
KEPT_CODES = (
    "the model's own dynamic quantization: integer codes and zero points computed as "
    "onnxruntime's DynamicQuantizeLinear does, carried as float32"
)
HYBRID = (
    "a float weight the model left unquantized: int8 by the dynamic-range rules (LiteRT's "
    "hybrid kernel, its own per-row input quantization)"
)
FLOAT = (
    "float, as in the model (its quantization scales, the float ops between its integer "
    "chains, or a product whose weight it left unquantized)"
)


# op kind -> (node status, reason); a node takes the first kind of ROW_ORDER among its ops.
ROWS = {
    "kept_int8": ("integer", KEPT_INT8),
    "kept_float": ("integer", KEPT_FLOAT),
    "hybrid": ("hybrid", HYBRID),
    "codes": ("integer", KEPT_CODES),  # (with the float arithmetic of its scale)
    "float": ("float", FLOAT),
    "other": ("other", "no float or quantized data (shape or index arithmetic)"),
}
ROW_ORDER = tuple(ROWS)


def node_rows(model: tfl.Model, node_names=frozenset()) -> list[dict]:
    """Per ONNX node of a dynamic-range file whose model was already quantized: ``integer``
    (the model's own quantization kept: a :func:`lattice_products` product, or ops writing
    only integer codes), ``hybrid`` (a float weight quantized here), ``float`` or ``other``
    (no float data), with the reason; the rows of ``qdq_import.PrequantizedSummary.nodes``.
    ``node_names`` (the model's node labels: name, else ``OpType:first output``) gathers the
    operators a rewrite made of one node (labelled ``label/part``) into that node's row."""
    on_lattice = lattice_products(model)
    by_node: dict[str, list[str]] = {}
    for sub in model.subgraphs:
        values = IntegerValues(sub)
        for op in sub.operators:
            node = _source_node(op.onnx_node or "", node_names)
            by_node.setdefault(node, []).append(_op_kind(op, values, on_lattice))
    rows = []
    for node, kinds in by_node.items():
        ops = sorted({k.split(":", 1)[1] for k in kinds})
        found = {k.split(":", 1)[0] for k in kinds}
        kind = next((k for k in ROW_ORDER if k in found), "other")
        status, reason = ROWS[kind]
        rows.append({"onnx_node": node, "ops": ops, "status": status, "reason": reason})
    return rows


def _source_node(label: str, names) -> str:
    """The model's node an operator label comes from: the longest ``/``-separated head of
    the label that is a node's label (else the label itself)."""
    head = label
    while head:
        if head in names:
            return head
        head = head.rpartition("/")[0]
    return label


def _op_kind(op: tfl.Operator, values: IntegerValues, on_lattice: set[int]) -> str:
    """``kind:OPCODE`` of one operator for :func:`node_rows`."""
    w = op.inputs[1] if len(op.inputs) > 1 else None
    if id(op) in on_lattice:
        kind = "kept_int8" if w is not None and w.dtype == np.int8 else "kept_float"
    elif op.opcode in PRODUCTS and w is not None and w.dtype == np.int8:
        kind = "hybrid"
    else:
        outs = [t for t in op.outputs if t is not None and t.dtype.kind == "f"]
        if not outs:
            kind = "other"
        elif all(values.holds(t) for t in outs):
            kind = "codes"
        else:
            kind = "float"
    return f"{kind}:{op.opcode}"


def product_counts(model: tfl.Model) -> dict[str, int]:
    """How many products with a constant weight (or a DEQUANTIZE of one) keep the model's own
    quantization (``integer``), run hybrid here or stay float: the share a dynamic-range file
    of an already-quantized model keeps integer (``benchmarks/bench_prequantized.py``).
    Products of two activations are not counted (onnxruntime leaves them float too), nor
    float products whose weight is not integral: a weight the model left unquantized, float
    in its semantics and in onnxruntime. ``float`` counts the products whose weight holds the
    model's integer codes but whose input is not recognized on a lattice (a lost quantization)."""
    on_lattice = lattice_products(model)
    counts = {"integer": 0, "hybrid": 0, "float": 0}
    for sub in model.subgraphs:
        made = sub.producers()
        for op in sub.operators:
            if op.opcode not in PRODUCTS or len(op.inputs) < 2 or op.inputs[1] is None:
                continue
            w = op.inputs[1]
            maker = made.get(id(w))
            if w.data is None and not (maker is not None and maker.opcode == "DEQUANTIZE"):
                continue
            if id(op) in on_lattice:
                counts["integer"] += 1
            elif w.dtype == np.int8:
                counts["hybrid"] += 1
            elif w.data is None or _integral_constant(w):
                counts["float"] += 1
    return counts
