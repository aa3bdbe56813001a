"""Already-quantized ONNX models (QDQ, QOperator, quantize_dynamic) -> integer TFLite.

Why strip instead of lowering Q/DQ one by one: a QDQ model is a float model annotated with
the quantization its author chose. Each activation ``QuantizeLinear -> DequantizeLinear`` pair
says "this float tensor lives on the lattice s * (q - zp)". Removing the pair and recording the
range ``[s * (qmin - zp), s * (qmax - zp)]`` on the float tensor hands the integer quantizer
(``integer.quantize_integer``, the same one the calibrated int8 path uses) exactly that scale
and zero point: ``params_from_range`` gives ``scale = (hi - lo) / 255 = s`` and
``zp = -128 - lo / s = zp`` (a uint8 zero point z is the int8 zero point z - 128 on the same
lattice). Constant weights behind a DequantizeLinear are folded into float initializers
(``(q - zp) * s``, computed as onnxruntime does); the quantizer stores the model's own int8
codes on its own scale ``s`` (``qdq_weights.py``: found on the weight's values, whatever layout
the lowering gave it), and int32 biases with ``input scale * s``. Only codes LiteRT's
symmetric int8 weights cannot hold (beyond [-127, 127]) are re-derived with ``max|w| / 127``,
named per node in the notes.

Q/DQ that do not form a pair stay in the graph (their exact float lowerings in
``lowering/quantize.py``); ops with no pair around them have no range and stay float islands.
QOperator graphs are first rewritten into this QDQ form (``qoperator_expand.py``); the
stripping itself works on the ONNX proto (``qdq_strip.py``). This module holds the entry points
and the TFLite side: the integer or hybrid model of the lowered float model, with the ONNX
model's own lattices honoured.

Use (what ``convert`` is meant to do when ``is_prequantized(model)``)::

    stripped, info = import_quantized(model)
    lowered = pipeline.lower_model(stripped, ..., **lowering_options(stripped, info))
    model_ir, summary = prequantized_variant(lowered, info.ranges, info, options)

``summary.nodes`` says per ONNX node whether it runs integer, hybrid or float and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import onnx

from .. import tfl
from ..onnx_rewrites import RANGELESS_RULES
from ..tfl_edit import Editor
from .calibration import tflite_ranges
from .dynamic_range import HYBRID_WEIGHT_AXIS, hybrid_weight
from .dynamic_range import node_rows as dynamic_node_rows
from .integer import params_from_range, quantize_integer
from .op_rules import RULES
from .overrides import Override, Resolved
from .qdq_exact import exact_activation_matmuls as _exact_activation_matmuls
from .qdq_exact import exact_quantize_after as _exact_quantize_after
from .qdq_exact import requantize_through_float as _requantize_through_float
from .qdq_strip import WEIGHTED_ONNX_OPS, PairParams, StripInfo, strip_qdq
from .qdq_weights import ModelWeightScales
from .qoperator_expand import QUANTIZATION_OPS, expand_qoperators

__all__ = [  # PairParams and StripInfo are part of this module's interface
    "PairParams",
    "StripInfo",
    "import_if_prequantized",
    "import_quantized",
    "is_prequantized",
    "lowering_options",
    "matmul_like_share",
    "prequantized_variant",
]

MATMUL_LIKE_TFLITE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")


def is_prequantized(model: onnx.ModelProto) -> bool:
    """True when the model is QDQ-structured (at least one activation Q -> DQ pair, after
    QOperator expansion) or dynamically quantized (a DynamicQuantizeLinear feeding
    MatMulInteger/ConvInteger that is rewritten). A lone quantization op with integer graph
    I/O (the ONNX node tests) is not: its exact float lowering stays in charge."""
    return import_if_prequantized(model) is not None


def import_if_prequantized(model: onnx.ModelProto) -> tuple[onnx.ModelProto, StripInfo] | None:
    """:func:`import_quantized` for a model that :func:`is_prequantized`, else None: the
    detection and the import are one pass (each copies the model's weights once)."""
    if not {n.op_type for n in model.graph.node} & QUANTIZATION_OPS:
        return None
    try:
        stripped, info = import_quantized(model)
    except Exception:  # malformed quantization: leave it to the exact lowerings to judge
        return None
    return (stripped, info) if info.pairs > 0 or info.dynamic else None


def import_quantized(model: onnx.ModelProto) -> tuple[onnx.ModelProto, StripInfo]:
    """QOperator expansion then QDQ stripping: a float model plus the lattices to honour.

    A model quantized only dynamically (``quantize_dynamic``: no Q/DQ pair) is returned as it
    is, with ``info.dynamic`` naming its quantized products: lowered, its products are already
    on onnxruntime's int8 lattice (the exact int8 path of ``float_carried.py``), and its
    dynamic-range file keeps them (``dynamic_range.lattice_products``) instead of letting
    LiteRT's hybrid kernels quantize their inputs again (``docs/dynamic_range.md``)."""
    expanded, info = expand_qoperators(model)
    # The expansion already works on a copy when it changed anything: strip that in place.
    stripped, ranges, info = strip_qdq(expanded, info, in_place=expanded is not model)
    if info.mode == "dynamic":  # its products keep the model's own quantization (docstring)
        return model, info
    return stripped, info


# ONNX fusions whose pattern has an interior op (the trigger) that can carry its own Q/DQ
# pair: fused, the interior tensor's rounding would be skipped.
ROUNDING_FUSIONS = {
    "fuse_gelu": ("Erf",),
    "fuse_gelu_tanh": ("Tanh",),
    "fuse_hardswish": ("HardSigmoid",),
}


def lowering_options(stripped: onnx.ModelProto, info: StripInfo) -> dict:
    """``lower_model`` keyword arguments that keep the ONNX roundings of a stripped model.

    A MatMul/Gemm/Conv output that has its own Q/DQ pair and then gets a constant Add (how
    onnxruntime quantizes ``Linear`` layers: the bias Add is a separate quantized op) is
    rounded twice in ONNX; ``fuse_bias_add`` would merge the Add into FULLY_CONNECTED's bias
    and round once, drifting from onnxruntime layer after layer (vit-like: 18.5 dB -> 20.5 dB
    against the ONNX semantics, where onnxruntime's own kernels reach 19-21 dB).

    Likewise a GELU (``x * 0.5 * (1 + erf(x / sqrt 2))``) or HardSwish (``x * HardSigmoid(x)``)
    whose interior tensors have their own Q/DQ pairs is rounded at each of them in ONNX; the
    fusion into one GELU / HARD_SWISH op would round once (BERT-like: 57 of 2048 outputs of
    the GELU's product one step off): :data:`ROUNDING_FUSIONS` are disabled when a trigger
    op's output carries a lattice.

    And the rules that merge tensors into one no ONNX tensor holds (``RANGELESS_RULES``: Q/K/V
    projections as one FULLY_CONNECTED) are off: the three outputs have three Q/DQ lattices,
    the merged one none, so it ran float and rounded nowhere (vit-like: 3 of 19 matmul-like
    ops float, 21.6 -> 19.1 dB against the Q/DQ semantics).
    """
    disabled = sorted(RANGELESS_RULES)
    consts = {i.name for i in stripped.graph.initializer}
    producer = {o: n for n in stripped.graph.node for o in n.output}
    for node in stripped.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        for a, b in (node.input, reversed(node.input)):
            made = producer.get(a)
            if made is not None and made.op_type in WEIGHTED_ONNX_OPS and b in consts:
                if a in info.activations and "fuse_bias_add" not in disabled:
                    disabled.append("fuse_bias_add")
    for rule, triggers in ROUNDING_FUSIONS.items():
        if any(
            n.op_type in triggers and n.output and n.output[0] in info.activations
            for n in stripped.graph.node
        ):
            disabled.append(rule)
    return {"disable_rewrites": tuple(disabled)}


# ---- the integer model ----------------------------------------------------------------------


@dataclass
class PrequantizedSummary:
    mode: str  # "static" (integer), "dynamic" (the model's dynamic quantization) or "none"
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
    model = lowered.model_ir
    notes = list(info.notes)
    requantized = 0
    float_reasons: dict[str, str] = {}
    rounding: set[int] = set()  # id() of the float ops computing ONNX's exact rounding
    if info.mode == "static":
        bits = info.activation_bits
        full = bool(getattr(options, "full_integer", False))
        io_in = getattr(options, "input_quant_dtype", "int8") if full else None
        io_out = getattr(options, "output_quant_dtype", "int8") if full else None
        if bits == 16 and full:
            io_in = io_out = "int16"
        tfl_ranges = tflite_ranges(ranges, lowered.tensor_map)
        fixed = _fixed_lattice_nodes(model, tfl_ranges, bits)
        sums = _activation_sums(model, bits)
        pools: set[str] = set()
        if not full:  # (the full-integer file keeps every integer kernel it can)
            sums |= _constant_sums(model, bits)
            fixed |= _fixed_point_activations(model, bits)
            pools = _inexact_average_pools(model, tfl_ranges, bits)
        model_scales = ModelWeightScales(info.weights)  # the model's own codes and scales
        outcome = quantize_integer(
            model,
            tfl_ranges,
            activations="int16" if bits == 16 else "int8",
            per_channel=_per_channel_weight if not info.per_channel else True,
            input_dtype=io_in,
            output_dtype=io_out,
            ranges_are_exact=True,
            overrides=_float_like_onnxruntime(info, fixed, sums, pools),
            weight_scales=model_scales,
        )
        requantized = outcome.requantized
        for node, why in sorted(model_scales.misses.items()):
            notes.append(f"{node}: {why}")
        rounded = _round_float_readers(model, tfl_ranges, bits == 16)
        _affines_as_onnxruntime(model, info.affine)
        _exact_quantize_after(model, rounding)  # (every float -> integer QUANTIZE)
        requantized_at = requantized_nodes(model)
        if bits == 8:
            _requantize_through_float(model, rounding)
            if not full:
                _exact_activation_matmuls(model, rounding)
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
    if info.mode == "dynamic":  # the model itself (import_quantized): its quantization kept
        # (and the products it left float stay float: ``dynamic_range.product_counts``)
        notes.append(KEPT_NOTE)
        graph = lowered.onnx_model.graph
        names = {n.name or f"{n.op_type}:{n.output[0] if n.output else '?'}" for n in graph.node}
        rows = dynamic_node_rows(model, names)
        return model, PrequantizedSummary(info.mode, rows, 0, info.kept, notes)
    if info.dynamic:  # the dynamic part of a mixed model: still float after the above
        _hybrid_weights(model, set(info.dynamic))
    nodes = node_statuses(model, float_reasons, info.mode, rounding)
    summary = PrequantizedSummary(info.mode, nodes, requantized, info.kept, notes)
    summary.requantized_at = requantized_at if info.mode == "static" else []
    return model, summary


KEPT_NOTE = (
    "dynamically quantized model: its products keep the model's own quantization "
    "(onnxruntime's DynamicQuantizeLinear, exact int8 products); the products it left float "
    "stay float, as onnxruntime runs them"
)
FIXED_OUTPUT_NOTE = "(integer kernel's fixed output lattice is not the ONNX one: float)"
AFFINE_NOTE = "(BatchNormalization between Q/DQ pairs: float as onnxruntime runs it)"
SUM_NOTE = "(sum of two activations: XNNPACK's int8 ADD rescales coarsely: float)"
POOL_NOTE = "(average pool whose int8 kernel rounds otherwise than ONNX: float)"


def _float_like_onnxruntime(
    info: StripInfo, fixed: set[str], sums: set[str], pools: set[str] = frozenset()
):
    """An override keeping float the nodes onnxruntime itself runs in float between Q/DQ
    (BatchNormalizations run as depthwise convs, ``qdq_strip._batchnorm_on_lattice_as_depthwise``)
    the nodes whose integer kernel writes a fixed lattice other than the ONNX model's
    (:func:`_fixed_lattice_nodes`), the sums of two activations (:func:`_activation_sums`)
    and the average pools the int8 kernel cannot round as ONNX does
    (:func:`_inexact_average_pools`): see :func:`_affines_as_onnxruntime` and
    :func:`_exact_quantize_after`."""
    if not info.affine and not fixed and not sums and not pools:
        return None
    never = re.compile(r"(?!)")
    affine = Override(AFFINE_NOTE, "float", 0, never)
    lattice = Override(FIXED_OUTPUT_NOTE, "float", 1, never)
    summed = Override(SUM_NOTE, "float", 2, never)
    pooled = Override(POOL_NOTE, "float", 3, never)
    labels = {name: pooled for name in pools} | {name: summed for name in sums}
    labels |= {name: lattice for name in fixed}
    labels |= {name: affine for name in info.affine}
    return Resolved((affine, lattice, summed, pooled), labels)


def _inexact_average_pools(model: tfl.Model, ranges: dict, bits: int) -> set[str]:
    """ONNX nodes lowered to an int8 AVERAGE_POOL_2D whose result is rounded twice: float
    between the DEQUANTIZE and an exactly rounded QUANTIZE, ``Q(mean(DQ(x)))`` as ONNX
    computes it.

    The int8 kernel rounds the window's mean onto the input's own lattice. A second rounding
    follows when the lowering corrects the divisor with a MUL (pads excluded from the count
    where TFLite's VALID padding would include them: an int8 MUL rounds again) or when the
    output lattice is not the input's (a QUANTIZE rescales the rounded mean). Each moves
    outputs by a step where the mean lies near a half step: inception-v1-like 7x7 pool with
    end pads, 25 % of its outputs (530 of 2048 against onnxruntime's QLinearAveragePool,
    14 with the float pool); shufflenet-like 3x3 stride-2 pool with pads, 3 %.

    A pool whose windows can hold an even number of elements (a 2x2 window; the border
    windows of SAME padding, which exclude the pads: 4 and 6 of a 3x3) runs float too: the
    real mean can be an exact tie. The int8 kernel rounds a tie half away from zero on the
    raw codes' sum; ONNX's semantics decide it by the float32 noise of the dequantized values
    and of the mean, which the float pool between the lattices reproduces more often
    (``benchmarks/bench_prequantized.py --ties``, 12,677 ties of a 2x2 pool against the
    float64 semantics: int8 kernel 46 %, float pool 60.5 %, onnxruntime's fused
    QLinearAveragePool 53 %). DenseNet-like (three 2x2 transition pools, a quarter of their
    outputs ties): 20.70 -> 21.63 dB against the float64 semantics, onnxruntime 21.81.

    A single rounding on the same lattice of odd windows only stays integer: the real mean
    is never a tie (2 * sum = count * (2m + 1): an even left side, an odd right one), and the
    int8 kernel gives ONNX's code."""
    if bits != 8:
        return set()
    by_node: dict[str, list[tfl.Operator]] = {}
    for op in model.subgraphs[0].operators:
        if op.onnx_node:
            by_node.setdefault(op.onnx_node, []).append(op)
    moves = {"AVERAGE_POOL_2D", "PAD", "PADV2", "RESHAPE", "TRANSPOSE"}
    found = set()
    for node, ops in by_node.items():
        pools = [op for op in ops if op.opcode == "AVERAGE_POOL_2D"]
        if not pools:
            continue
        if any(_even_windows(op) for op in pools):  # exact ties possible (docstring)
            found.add(node)
            continue
        if {op.opcode for op in ops} - moves:  # a divisor correction (MUL) or more
            found.add(node)
            continue
        first, last = ranges.get(ops[0].inputs[0].name), ranges.get(ops[-1].outputs[0].name)
        if first is not None and last is not None:
            if params_from_range(*first, False) != params_from_range(*last, False):
                found.add(node)
    return found


def _even_windows(op: tfl.Operator) -> bool:
    """An AVERAGE_POOL_2D some of whose windows hold an even number of elements: an even
    full window, or SAME padding with a window wider than 1 (its border windows leave the
    pads out of the count)."""
    h, w = int(op.options.get("filter_height", 1)), int(op.options.get("filter_width", 1))
    return (h * w) % 2 == 0 or (op.options.get("padding") == "SAME" and h * w > 1)


def _fixed_lattice_nodes(model: tfl.Model, ranges: dict, bits: int) -> set[str]:
    """ONNX nodes computed by an int8 kernel whose output lattice is fixed (LOGISTIC and
    SOFTMAX write 1/256 from -128, TANH 1/128) while the model's Q after it chose another.

    Why float: the fixed lattice rounds once, the QUANTIZE onto the ONNX lattice a second
    time, and the two steps are about the same size, so a third of the outputs land one or
    more steps away from ``Q(sigmoid(DQ(x)))`` (yolov8n-like SiLU: 33 % of the first
    sigmoid's outputs, up to 4 steps). onnxruntime's QLinearSigmoid is a table of that exact
    expression; here the float LOGISTIC between the DEQUANTIZE and the exactly rounded
    QUANTIZE (:func:`_exact_quantize_after`) computes it up to the float sigmoid's last bit.
    SOFTMAX too (its int8 kernel writes 1/256; a detour through its int16 output, 2^-15, then
    a QUANTIZE still rounded twice: vit-like per-tensor 20.2 -> 21.7 dB against the ONNX
    semantics in float, onnxruntime's kernels 21.2)."""
    if bits != 8:
        return set()
    found = set()
    for op in model.subgraphs[0].operators:
        rule = RULES.get(op.opcode)
        if rule is None or rule.kind != "fixed" or not op.onnx_node:
            continue
        out = op.outputs[0] if op.outputs else None
        rng = ranges.get(out.name) if out is not None else None
        if rng is None or rule.fixed8 is None:
            continue
        want = params_from_range(*rng, False)
        scale, zero_point = rule.fixed8
        if np.float32(want.scale) != np.float32(scale) or want.zero_point != zero_point:
            found.add(op.onnx_node)
    return found


FIXED_POINT_KERNELS = ("HARD_SWISH", "RESIZE_BILINEAR")


def _fixed_point_activations(model: tfl.Model, bits: int) -> set[str]:
    """ONNX nodes lowered to an int8 kernel that evaluates its function in fixed point
    (:data:`FIXED_POINT_KERNELS`): float between the DEQUANTIZE and the exactly rounded
    QUANTIZE, as ``Q(f(DQ(x)))`` reads (labelled like :func:`_fixed_lattice_nodes`).

    Why: LiteRT's int8 HARD_SWISH computes ``x * relu6(x + 3) / 6`` with 16-bit fixed-point
    intermediates and rounds their products on the way, which moves outputs lying near a half
    step (LRASPP-MobileNetV3-like: 41 of 200704 outputs of the first HardSwish one step off
    the Q/DQ semantics, amplified to 5 steps in the blocks after it; float: none); its int8
    RESIZE_BILINEAR interpolates with fixed-point weights and rounds the same way (the same
    model's classifier: 3638 of 100352 outputs one step off onnxruntime's)."""
    if bits != 8:
        return set()
    return {
        op.onnx_node
        for op in model.subgraphs[0].operators
        if op.opcode in FIXED_POINT_KERNELS and op.onnx_node
    }


def _activation_sums(model: tfl.Model, bits: int) -> set[str]:
    """ONNX nodes lowered to an ADD or SUB of two run-time tensors: float between the
    DEQUANTIZEs and an exactly rounded QUANTIZE, as onnxruntime computes ``Q(DQ(a) + DQ(b))``.

    Why: XNNPACK's int8 addition rescales each input with a fixed-point multiplier of limited
    precision, which moves outputs across rounding boundaries that the float sum does not
    cross; each moved step is amplified downstream (mobilenetv2-like s8 per-tensor, 10
    residual Adds: 35.9 dB against the float64 semantics, onnxruntime's kernels 39.3; with the
    Adds float the file is bit-identical to onnxruntime's fused session)."""
    if bits != 8:
        return set()
    found = set()
    for op in model.subgraphs[0].operators:
        if op.opcode not in ("ADD", "SUB") or not op.onnx_node or len(op.inputs) != 2:
            continue
        if all(t is not None and t.data is None for t in op.inputs):
            found.add(op.onnx_node)
    return found


def _constant_sums(model: tfl.Model, bits: int) -> set[str]:
    """ONNX nodes lowered to an ADD or SUB of a run-time tensor and a nonzero constant: float
    like :func:`_activation_sums`, as ``Q(DQ(x) + c)`` reads.

    Why: the int8 ADD rescales its input and the constant (itself re-quantized onto the
    lattice of its own value range) with fixed-point multipliers, then rounds its own way. It
    is exact only without any rescale, and a Q/DQ model gives the sum its own lattice:
    - GELU's ``1 + erf(x)``: the output lattice is about twice the input's, so most sums
      are exact ties that ONNX rounds half to even (88 % of the outputs one step off);
    - rows of an embedding table gathered at constant positions span less than the table,
      so the constant's int8 lattice is not the table's (BERT-like token-type and position
      embeddings: 13 % and 21 % of the two sums' outputs one step off, every later layer
      inheriting them).
    In float: none."""
    if bits != 8:
        return set()
    found = set()
    for op in model.subgraphs[0].operators:
        if op.opcode not in ("ADD", "SUB") or not op.onnx_node or len(op.inputs) != 2:
            continue
        consts = [t for t in op.inputs if t is not None and t.data is not None]
        if len(consts) == 1 and np.any(np.asarray(consts[0].data) != 0):
            found.add(op.onnx_node)
    return found


def _affines_as_onnxruntime(model: tfl.Model, affine: dict) -> int:
    """Each BatchNormalization between two Q/DQ pairs runs as onnxruntime runs it: the
    integer input dequantized, ``x * factor`` then ``+ shift`` in float32 (two roundings, no
    fused multiply-add: onnxruntime's kernel, with the factor and shift it computes), then
    ``round(y / s)`` before the QUANTIZE to the output lattice (:func:`_exact_quantize_after`).

    Why not an integer depthwise convolution: its int32 bias sits on a lattice of ``s_in *
    |factor| / 127``, and the BN's input is itself on a lattice, so every element with the
    same input value lands at the same distance from a rounding boundary: a bias error of a
    hundredth of a step moved whole value classes across it (mobilenetv2-like: 0.25 % of the
    first BN's outputs off by one step, amplified to several steps downstream; with the
    float32 BN as onnxruntime computes it, none). Returns the number rewritten."""
    sub = model.subgraphs[0]
    ed = Editor(sub)
    count = 0
    for op in sub.operators:
        if op.opcode != "DEPTHWISE_CONV_2D" or op.onnx_node not in affine:
            continue
        x, out = op.inputs[0], op.outputs[0]
        if x.dtype != np.float32 or out.dtype != np.float32 or op.inputs[1].quantization:
            continue
        factor, shift = affine[op.onnx_node]
        if x.shape[-1:] != (factor.size,):
            continue
        scaled = ed.temp(f"{out.name}/scaled", np.float32, out.shape)
        act = op.options.get("fused_activation_function", "NONE")
        ed.replace(
            op,
            [
                ed.op("MUL", [x, ed.const(f"{out.name}/factor", factor)], [scaled], like=op),
                ed.op(
                    "ADD",
                    [scaled, ed.const(f"{out.name}/shift", shift)],
                    [out],
                    like=op,
                    fused_activation_function=act,
                ),
            ],
        )
        count += 1
    ed.commit()
    return count


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


def _per_channel_weight(w: tfl.Tensor) -> bool:
    """Per-tensor ONNX weights stay exact with per-tensor TFLite weights; a weight the
    lowering moved off that lattice (a BatchNormalization folded into the convolution scales
    each output channel) or a per-channel quantity (a BatchNormalization run as a depthwise
    convolution, ``qdq_strip._batchnorm_on_lattice_as_depthwise``) is quantized per channel,
    or small-gamma channels lose most of their precision (mobilenetv2-like, per-tensor:
    27.6 dB -> 30.4 dB against the ONNX semantics). Decided per weight: per channel would
    re-round every exact per-tensor weight (why the choice is not global)."""
    return w.data is not None and not _on_tensor_lattice(w.data)


def _round_float_readers(model: tfl.Model, ranges: dict, int16: bool) -> int:
    """Float ops reading a tensor of a stripped pair get it rounded to the pair's lattice.

    The pair's DequantizeLinear(QuantizeLinear(x)) rounds x; when the op reading it stays
    float (no integer kernel, runtime weights, blocked weights), the integer quantizer leaves
    the float tensor as computed, so the rounding is restored here (also for float graph
    outputs on a lattice). A tensor written by DEQUANTIZE is on its lattice already.
    """
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


def node_statuses(
    model: tfl.Model, float_reasons: dict[str, str], mode: str, rounding: set[int] = frozenset()
) -> list[dict]:
    """Per ONNX node: integer (all its float-domain ops read/write quantized tensors), hybrid
    (float activations with int8 weights), float, or other (integer shape arithmetic), and
    why. TFLite-only ops (layout transposes of graph I/O) are listed under node "". The float
    ops of ``rounding`` (``round(x / s) * s`` before a QUANTIZE: ONNX's rounding, part of the
    quantization like QUANTIZE itself) do not make a node float."""
    by_node: dict[str, list[tfl.Operator]] = {}
    for op in model.subgraphs[0].operators:
        if (op.opcode in ("QUANTIZE", "DEQUANTIZE") or id(op) in rounding) and not op.onnx_node:
            continue
        by_node.setdefault(op.onnx_node or "", []).append(op)
    out = []
    for node, ops in by_node.items():
        statuses = {
            _op_status(op)
            for op in ops
            if op.opcode not in ("QUANTIZE", "DEQUANTIZE") and id(op) not in rounding
        }
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


def matmul_like_share(model: tfl.Model, only_nodes: set[str] | None = None) -> dict[str, int]:
    """How many conv/matmul/fc ops run integer, hybrid, float (the share of the model's
    weighted compute a pre-quantized import keeps integer; ``bench_prequantized.py`` reports it);
    ``only_nodes`` limits the count to ops of those ONNX nodes (for a dynamic model: the
    nodes onnxruntime quantized; activation x activation MatMuls stay float there too)."""
    counts = {"integer": 0, "hybrid": 0, "float": 0}
    for op in model.subgraphs[0].operators:
        if only_nodes is not None and op.onnx_node not in only_nodes:
            continue
        if op.opcode in MATMUL_LIKE_TFLITE:
            counts[_op_status(op) or "float"] += 1
    return counts
