"""Pass 1 of full-integer quantization: which ops run in integer, and the (scale, zero point)
of every float activation they touch (see ``integer.py`` for the whole picture).

The model is only read here, so a strict refusal leaves it untouched. Parameters follow LiteRT's
quantization spec per op kind (``op_rules.py``); ranges the calibration could not see
(TFLite-only tensors) are derived from the value they copy; a few choices maximize accuracy
within the spec: ranges include 0, concat inputs adopt the concat's params, masked softmax
logits are windowed, many-way int8 softmaxes detour through int16, a value read only by clamps
(RELU ...) takes the clamp's range, and with float outputs the logits of a float softmax head
stay float."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import tfl
from .op_rules import OpRule, rule_for
from .overrides import Resolved

SOFTMAX_WINDOW = 20.0  # exp(-20) = 2e-9: a logit that far below another weighs nothing

# Ops whose output holds exactly the elements of input 0 (so the same range).
REARRANGING = frozenset(
    {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH"}
)
# Copies for which requantizing the input equals requantizing the output (each output
# element is one input element, or the max of some): an imported lattice of their own is
# honoured by requantizing the input (``IntegerPlan._own_copy_lattice``).
REQUANTIZABLE_COPIES = REARRANGING | {
    "SLICE",
    "STRIDED_SLICE",
    "GATHER",
    "GATHER_ND",
    "TILE",
    "BROADCAST_TO",
    "REVERSE_V2",
    "MAX_POOL_2D",
}
FLOAT = np.dtype(np.float32)
# Clamping activations -> the (lo, hi) they clamp to.
CLAMP_BOUNDS = {
    "RELU": (0.0, np.inf),
    "RELU6": (0.0, 6.0),
    "RELU_N1_TO_1": (-1.0, 1.0),
    "RELU_0_TO_1": (0.0, 1.0),
}
# Why an op with an integer kernel still runs in float; ``strict`` does not refuse for it.
ISOLATED = "between float ops: integer would only add a QUANTIZE/DEQUANTIZE and rounding"
FLOAT_HEAD = (
    "writes a float graph output: its integer kernel's fixed output step (1/256 in int8) "
    "would limit the output's resolution"
)
FLOAT_HEAD_INPUT = (
    "computes the input of a float output head (e.g. softmax logits): their int8 step would "
    "dominate the head's output error"
)
FIXED_SCALE_HEADS = frozenset({"SOFTMAX", "LOG_SOFTMAX", "LOGISTIC", "TANH"})
# Ops for which a -inf/+inf constant (max-pool padding, clamp bounds) may be clamped to the
# range the output params cover: they only select/compare-and-keep, never test for equality.
CLAMPS_INFINITY = frozenset({"PADV2", "MAXIMUM", "MINIMUM"})
PARTLY_FLOAT = "the rest of ONNX node"
# Float reasons that are the default rule's accuracy choices, not kernel constraints: an
# override to an integer precision lifts them (the report calls the others "forced").
HEURISTIC_REASONS = (ISOLATED, FLOAT_HEAD, FLOAT_HEAD_INPUT, PARTLY_FLOAT)
# (PARTLY_FLOAT is not lifted: a node whose other operators have no kernel stays whole.)
INTEGER_PRECISIONS = ("int8", "int16x8")


@dataclass(frozen=True)
class QParams:
    """Per-tensor affine parameters of one activation: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int
    int16: bool = False  # the integer type it is stored in (int16, else int8)

    def quantization(self) -> tfl.Quantization:
        return tfl.Quantization(
            scale=np.array([self.scale], np.float32),
            zero_point=np.array([self.zero_point], np.int64),
        )


@dataclass
class IntegerQuantSummary:
    """What ``quantize_integer`` did: for the report and for ``strict`` refusals."""

    integer_ops: int = 0
    float_ops: list[dict] = field(default_factory=list)  # {"op", "onnx_node", "reason"}
    requantized: int = 0
    folded: int = 0  # per-channel MUL/ADD/SUB folded into a weighted op (see integer.py)
    io: list[dict] = field(default_factory=list)  # {"name", "dtype", "scale", "zero_point"}
    # One row per operator touching float values: {"node", "op", "precision", "reason"}
    # (``overrides.node_table`` turns them into the report's per-node precisions).
    ops: list[dict] = field(default_factory=list)


def params_from_range(lo: float, hi: float, int16: bool) -> QParams:
    """Affine params covering [lo, hi] nudged to include 0 exactly (padding and ReLU need an
    exact zero); int16 is symmetric with zero point 0 as the 16x8 kernels require."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo <= 1e-30:
        lo, hi = (-1.0, 1.0) if int16 else (0.0, 1.0)  # constant zero: any scale is exact
    if int16:
        return QParams(float(np.float32(max(-lo, hi) / 32767.0)), 0, True)
    scale = float(np.float32((hi - lo) / 255.0))
    zp = int(np.clip(np.rint(-128.0 - lo / scale), -128, 127))
    return QParams(scale, zp)


def is_float_activation(t: tfl.Tensor | None) -> bool:
    return t is not None and t.data is None and t.dtype == FLOAT and t.quantization is None


def touches_float(op: tfl.Operator) -> bool:
    return any(is_float_activation(t) for t in [*op.inputs, *op.outputs])


def is_float_constant(t: tfl.Tensor | None) -> bool:
    return t is not None and t.data is not None and t.dtype == FLOAT and t.quantization is None


class IntegerPlan:
    """Pass 1: which ops run in integer and the params of every float activation they touch."""

    def __init__(
        self,
        sub,
        ranges,
        int16,
        input_dtype,
        output_dtype,
        float_heads=False,
        exact=False,
        overrides: Resolved | None = None,
        special=None,
    ):
        self.sub, self.ranges, self.int16 = sub, ranges, int16
        # Ops whose quantization contract the rule table cannot state (``integer_lstm``): a
        # module with ``rule(op, consumers, int16)``, ``KINDS`` and ``plan_op(plan, op, rule)``.
        self.special = special
        # ``--quant-override``: per ONNX node, float (a float island), or int8 / int16x8 (the
        # op's activation width, whatever the variant's; the accuracy heuristics that would
        # keep it float are lifted). Tensors crossing widths are requantized (``twins``).
        self.overrides = overrides or Resolved()
        self.input_dtype, self.output_dtype = input_dtype, output_dtype
        # ``exact``: the ranges are an already-quantized model's own lattices, to be honoured
        # as given: no masked-softmax narrowing, and ops between float ops still go integer
        # (the model's author quantized them on purpose; their roundings are the ONNX ones).
        self.exact = exact
        # Fixed-output-scale ops (SOFTMAX ...) writing a float graph output run in float:
        # their kernel's output step (1/256 in int8) would become the output's resolution.
        self.float_heads = float_heads
        self.summary = IntegerQuantSummary()
        self.params: dict[int, QParams] = {}  # id(activation tensor) -> its integer params
        # (id(tensor), int16) -> params of the tensor as read by ops of the other width
        self.twins: dict[tuple[int, bool], QParams] = {}
        self.widths: dict[int, bool] = {}  # id(op) -> int16?, fixed when the op is planned
        self.integer_ops: dict[int, OpRule] = {}  # id(op) -> rule
        self.head_ops: set[int] = set()  # id(op) of float heads and the copies after them
        self.head_inputs: set[int] = set()  # id(op) computing a float head's input
        self.softmax_detours: set[int] = set()  # id(SOFTMAX) writing int16 then requantized
        self.int_inputs: set[int] = set()  # graph inputs / outputs given integer types
        self.int_outputs: set[int] = set()
        self.producer = sub.producers()
        self.consumers = sub.consumers()
        self.graph_outputs = {id(t) for t in sub.outputs}

    def run(self) -> None:
        float_nodes = self._float_nodes()
        self.head_ops = self._float_head_ops()
        head_inputs = self.head_inputs = self._float_head_inputs()
        for op in self.sub.operators:
            if not touches_float(op):
                continue  # integer/bool/shape arithmetic: not ours to judge
            rule, reason = self.rule(op)
            heuristics = rule is not None and not self.wants_integer(op)
            # (kept for overridden nodes too: their other operators have no kernel)
            if rule is not None and op.onnx_node in float_nodes:
                rule = None
                reason = f"{PARTLY_FLOAT} {op.onnx_node!r} runs in float (for its "
                reason += f"{float_nodes[op.onnx_node]}): a partly integer node is less exact"
            if heuristics and rule is not None and not self.exact:
                if self._isolated(op, float_nodes):
                    rule, reason = None, ISOLATED
            if heuristics and rule is not None and id(op) in self.head_ops:
                rule, reason = None, FLOAT_HEAD
            if heuristics and rule is not None and id(op) in head_inputs:
                rule, reason = None, FLOAT_HEAD_INPUT
            if rule is not None:
                reason = self._try_integer(op, rule)
            o = self.overrides.get(op.onnx_node)
            if reason:
                entry = {"op": op.opcode, "onnx_node": op.onnx_node, "reason": reason}
                if o is not None and o.precision == "float":
                    entry["override"] = o.spec  # asked for: never a strict refusal
                self.summary.float_ops.append(entry)
                precision = "float"
            else:
                self.integer_ops[id(op)] = rule
                self.summary.integer_ops += 1
                precision = "int16x8" if self.is16(op) else "int8"
                if o is not None and o.precision == "int16x8" and precision == "int8":
                    reason = "no int16x8 kernel"
            row = {"node": op.onnx_node, "op": op.opcode, "precision": precision, "reason": reason}
            if o is None and precision != "float" and self.is16(op) != self.int16:
                row["follows"] = True  # a data-moving op at its input's width
            self.summary.ops.append(row)
        # Integer interface (as the reference converter's modify_model_interface does): only
        # for inputs read by integer ops and outputs written by them; the others stay float.
        if self.input_dtype is not None:
            self.int_inputs = {id(t) for t in self.sub.inputs if id(t) in self.params}
        if self.output_dtype is not None:
            self.int_outputs = {
                id(t)
                for t in self.sub.outputs
                if id(t) in self.params and id(self.producer.get(id(t))) in self.integer_ops
            }
            for t in self.sub.outputs:  # an overridden op's output: the interface's width
                if id(t) in self.int_outputs and self.params[id(t)].int16 != self.int16:
                    rng = self.range_of(t)
                    if rng is None:
                        self.int_outputs.discard(id(t))
                    else:
                        self.twins[(id(t), self.int16)] = params_from_range(*rng, self.int16)

    # -- per-op precision (--quant-override) ----------------------------------------------------

    def wants_integer(self, op: tfl.Operator) -> bool:
        """Is ``op`` overridden to an integer precision (int8 / int16x8)?"""
        o = self.overrides.get(op.onnx_node)
        return o is not None and o.precision in INTEGER_PRECISIONS

    def is16(self, op: tfl.Operator) -> bool:
        """The activation width ``op`` runs at: the override's if it names one the op has a
        kernel for; else, for a data-moving op (RESHAPE, TRANSPOSE ...) reading a value stored
        at the other width, that width (a copy never gains from a requantization); else the
        variant's."""
        if id(op) in self.widths:
            return self.widths[id(op)]
        o = self.overrides.get(op.onnx_node)
        if o is None and self.overrides:
            rule = self._kernel_rule(op, self.int16)[0]
            if rule is not None and rule.kind == "same" and rule.sources[0] < len(op.inputs):
                home = self.params.get(id(op.inputs[rule.sources[0]]))
                if home is not None and home.int16 != self.int16:
                    if self._kernel_rule(op, home.int16)[0] is not None:
                        return home.int16
        if o is None or o.precision not in INTEGER_PRECISIONS:
            return self.int16
        want = o.precision == "int16x8"
        if want and self._kernel_rule(op, True)[0] is None:
            return self.int16  # no 16x8 kernel: a kernel constraint, reported
        return want

    def read_params(self, op: tfl.Operator, t: tfl.Tensor) -> QParams:
        """The params integer ``op`` reads activation ``t`` with: its own, or its twin at the
        op's width when ``t`` is stored at the other width."""
        home = self.params[id(t)]
        w16 = self.is16(op)
        return home if home.int16 == w16 else self.twins[(id(t), w16)]

    def _float_head_inputs(self) -> set[int]:
        """id() of the ops computing a float head's input (its logits), through copies such as
        RESHAPE: each read by nothing else. Why: the head amplifies its input's error (a
        softmax turns a logit error d into a relative probability error of about d), so the
        int8 step of the logits (range / 255) would dominate the output; in float, the
        logits keep the accuracy of the integer ops before them."""
        found: set[int] = set()
        if not self.float_heads or self.exact:
            return found
        for head in self.sub.operators:
            if head.opcode not in FIXED_SCALE_HEADS or id(head) not in self.head_ops:
                continue  # (the copies after a head are in head_ops too)
            t = head.inputs[0]
            for _ in range(100):
                op = self.producer.get(id(t))
                if op is None or len(self.consumers.get(id(t), [])) != 1:
                    break
                if id(t) in self.graph_outputs or len(op.outputs) != 1:
                    break
                found.add(id(op))
                if op.opcode not in REARRANGING:
                    break
                t = op.inputs[0]
        return found

    def _float_head_ops(self) -> set[int]:
        """id() of the fixed-output-scale ops (SOFTMAX ...) whose output is a graph output, or
        reaches one through copies (a [N, C, 1, 1] softmax is computed on [N, C] and reshaped
        back), and of those copies: all stay float."""
        found: set[int] = set()
        if not self.float_heads:
            return found
        for op in self.sub.operators:
            if op.opcode not in FIXED_SCALE_HEADS or len(op.outputs) != 1:
                continue
            if self.wants_integer(op):
                continue
            copies, end = self._copies_downstream(op.outputs[0])
            if id(end) in self.graph_outputs:
                found.update(id(o) for o in (op, *copies))
        return found

    def _copies_downstream(self, t: tfl.Tensor) -> tuple[list[tfl.Operator], tfl.Tensor]:
        """The copies (RESHAPE-like ops) carrying ``t`` on, each the sole reader of what it
        copies, and the tensor where they stop (a graph output, or read otherwise)."""
        copies = []
        for _ in range(100):
            users = self.consumers.get(id(t), [])
            if id(t) in self.graph_outputs or len(users) != 1:
                break
            op, i = users[0]
            if op.opcode not in REARRANGING or i != 0 or len(op.outputs) != 1:
                break
            copies.append(op)
            t = op.outputs[0]
        return copies, t

    def _isolated(self, op: tfl.Operator, float_nodes: dict[str, str]) -> bool:
        """Every float input comes from a float op and every reader is a float op that cannot
        run in integer (e.g. a layout RESHAPE inside a GridSample decomposition): integer would
        only add a QUANTIZE / DEQUANTIZE pair and its rounding. Model inputs and outputs count
        as integer-capable neighbours (the user asked for an integer model)."""
        for t in op.inputs:
            if is_float_activation(t) and (id(t) in self.params or id(t) not in self.producer):
                return False
        for t in op.outputs:
            if not is_float_activation(t):
                continue
            if id(t) in self.graph_outputs:
                return False
            for user, _ in self.consumers.get(id(t), []):
                if self.rule(user)[0] is not None and user.onnx_node not in float_nodes:
                    return False
        return True

    def rule(self, op: tfl.Operator) -> tuple[OpRule | None, str]:
        """The rule ``op`` runs integer by at its width (:meth:`is16`), or (None, why not):
        an override to float, or no kernel (:meth:`_kernel_rule`)."""
        o = self.overrides.get(op.onnx_node)
        if o is not None and o.precision == "float":
            return None, f"override {o.spec}"
        return self._kernel_rule(op, self.is16(op))

    def _kernel_rule(self, op: tfl.Operator, int16: bool) -> tuple[OpRule | None, str]:
        """``op_rules.rule_for``, plus DIV by a constant, which runs as MUL by its reciprocal
        (the CPU has no int8/int16 DIV kernel), plus the ops of :attr:`special`."""
        if self.special is not None:
            found = self.special.rule(op, self.consumers, int16)
            if found is not None:
                return found, ""
        if op.opcode == "DIV" and is_float_constant(op.inputs[1]):
            d = op.inputs[1].data
            if d.size and np.all(np.isfinite(d)) and np.all(d != 0):
                return rule_for("MUL", int16)
        return rule_for(op.opcode, int16)

    def _float_nodes(self) -> dict[str, str]:
        """ONNX node -> an opcode of its lowering that has no integer kernel: a node is kept
        whole in float (e.g. a LayerNormalization whose RSQRT is float: its MEAN/SUB/MUL
        decomposition in int8 would add noise at every step, and calibration from ONNX
        gives no ranges for its TFLite-only temporaries anyway)."""
        found: dict[str, str] = {}
        for op in self.sub.operators:
            if op.onnx_node and touches_float(op) and self.rule(op)[0] is None:
                found.setdefault(op.onnx_node, op.opcode)
        return found

    def range_of(self, t: tfl.Tensor) -> tuple[float, float] | None:
        """The calibrated range, else the source's range through data-moving ops; None when
        unknown or not finite (e.g. a -inf max-pool padding value)."""
        seen = 0
        while t is not None and seen < 10_000:
            rng = self.ranges.get(t.name)
            if rng is not None:
                return self._clamped_by_readers(t, _finite(rng))
            if t.data is not None:
                return _finite(data_range(t.data))
            op = self.producer.get(id(t))
            rule = self._kernel_rule(op, self.is16(op))[0] if op is not None else None
            if rule is None or rule.kind != "same":
                return self._range_downstream(t)
            t = op.inputs[rule.sources[0]]
            seen += 1
        return None

    def _clamped_by_readers(self, t: tfl.Tensor, rng):
        """A value only ever read by clamps (RELU, RELU6 ...) needs no resolution outside the
        clamp: the range narrows to it, so the integer lattice spends its steps where values
        survive. Exact by construction: the int8 result saturates at the clamp bound, which is
        what the clamp would output. This is how a Concat or an average pool before a Relu,
        which cannot fuse it, still gets the Relu's range (as onnxruntime's quantizer gives
        the Relu's output params to the op before a Relu it drops)."""
        if rng is None or self.exact or id(t) in self.graph_outputs:
            return rng
        readers = self.consumers.get(id(t), [])
        bounds = [CLAMP_BOUNDS.get(op.opcode) for op, _ in readers]
        if not readers or any(b is None for b in bounds):
            return rng
        lo = max(rng[0], min(b[0] for b in bounds))
        hi = min(rng[1], max(b[1] for b in bounds))
        return (lo, hi) if lo < hi else rng

    def _range_downstream(self, t: tfl.Tensor) -> tuple[float, float] | None:
        """A TFLite-only result (e.g. FULLY_CONNECTED before the RESHAPE to the ONNX shape)
        has the range of its value-preserving copy."""
        for _ in range(10_000):
            users = self.consumers.get(id(t), [])
            copy = next((op for op, i in users if op.opcode in REARRANGING and i == 0), None)
            if copy is None:
                return None
            t = copy.outputs[0]
            rng = self.ranges.get(t.name)
            if rng is not None:
                return _finite(rng)
        return None

    # -- one operator -------------------------------------------------------------------------

    def _try_integer(self, op: tfl.Operator, rule: OpRule) -> str:
        """'' and params assigned if ``op`` can run in integer, else the reason it cannot."""
        if self.special is not None and rule.kind in self.special.KINDS:
            return self.special.plan_op(self, op, rule)
        if rule.kind == "shape":
            return self._dims_reader(op)
        for t in [*op.inputs, *op.outputs]:
            if t is not None and t.dtype.kind == "f" and t.dtype != FLOAT:
                return f"{t.dtype} tensor {t.name!r}"
            if t is not None and t.quantization is not None:
                return f"tensor {t.name!r} is already quantized"
        for t in op.inputs:
            if is_float_constant(t) and op.opcode not in CLAMPS_INFINITY:
                if not np.all(np.isfinite(t.data)):
                    return f"constant {t.name!r} holds inf/NaN, which no integer represents"
        if rule.kind == "weighted":
            w = op.inputs[rule.weight]
            b = (
                op.inputs[rule.bias]
                if rule.bias is not None and len(op.inputs) > rule.bias
                else None
            )
            if not is_float_constant(w):
                return "weights are not a float32 constant"
            if b is not None and not is_float_constant(b):
                return "bias is not a float32 constant"
        if op.opcode == "BATCH_MATMUL" and not all(2 <= t.rank <= 5 for t in op.inputs[:2]):
            return "BATCH_MATMUL rank outside 2..5"
        if not self.exact and any(self._clamped_mask(t) for t in op.outputs):
            return (
                "computes an additive attention mask far beyond the logits' range: in float, "
                "the QUANTIZE into the sum clamps it exactly (an integer kernel's rescale "
                "would overflow)"
            )
        w16 = self.widths[id(op)] = self.is16(op)
        shared = self._shared_params(op, rule) if rule.kind == "shared" else None
        if rule.kind == "shared" and shared is None:
            return "no calibration range for the shared output scale"
        sharing = shared_inputs(op, rule) if rule.kind == "shared" else ()
        new: dict[int, QParams] = {}
        twins: dict[tuple[int, bool], QParams] = {}
        for i, t in enumerate(op.inputs):
            if not is_float_activation(t):
                continue
            home = self.params.get(id(t), new.get(id(t)))
            if home is None or (home.int16 != w16 and i not in sharing):
                rng = self.range_of(t)
                if rng is None:
                    return f"no calibration range for input {t.name!r}"
                if home is None:  # a graph input of an integer interface: the file's width
                    at16 = self.int16 if self._integer_entry(t) else w16
                    home = new[id(t)] = self._activation_params(t, rng, at16)
                if home.int16 != w16 and i not in sharing:
                    twins[(id(t), w16)] = self._activation_params(t, rng, w16)
        lookup = {**self.params, **new}  # params as this op reads them: twins at its width
        for (k, at16), p in [*self.twins.items(), *twins.items()]:
            if at16 == w16 and k in lookup and lookup[k].int16 != w16:
                lookup[k] = p
        for t in op.outputs:
            if not is_float_activation(t):
                continue
            p = self._output_params(op, rule, t, lookup, shared, w16)
            if p is None:
                return f"no calibration range for output {t.name!r}"
            new[id(t)] = p
        if op.opcode in ("ADD", "SUB"):
            self._floor_add_output_scale(op, lookup, new, w16)
        if op.opcode == "HARD_SWISH":  # the int8 kernel needs s_in / 128 < s_out
            s_in, s_out = lookup[id(op.inputs[0])].scale, new[id(op.outputs[0])].scale
            if not s_in / 128.0 < s_out:
                return "HARD_SWISH output scale too small for the int8 kernel"
        self.params.update(new)
        self.twins.update(twins)
        return ""

    def _dims_reader(self, op: tfl.Operator) -> str:
        """A ``shape`` op (SHAPE) reads only the dims of its input, which the integer tensor
        has as the float one did: it needs the input quantized at any params (those its
        producer gives it, else its calibrated range) and assigns none of its own."""
        for t in op.inputs:
            if not is_float_activation(t) or id(t) in self.params:
                continue
            rng = self.range_of(t)
            if rng is None:
                return f"no calibration range for input {t.name!r}"
            self.params[id(t)] = self._activation_params(t, rng, self.is16(op))
        return ""

    def _integer_entry(self, t: tfl.Tensor) -> bool:
        """Is ``t`` a graph input given an integer type (its width is the file's)?"""
        return self.input_dtype is not None and id(t) not in self.producer

    def _floor_add_output_scale(self, op, lookup, new, int16: bool) -> None:
        """ADD/SUB kernels rescale inputs to 2 * max input scale with 20 (int8) / 15 (int16)
        spare bits and need the output multiplier below 1 (else LiteRT aborts at Prepare): an
        output range that collapsed (cancellation, x - x) is widened to 4x that bound."""
        scales = []
        for t in op.inputs[:2]:
            if id(t) in lookup:
                scales.append(lookup[id(t)].scale)
            elif is_float_constant(t):
                scales.append(params_from_range(*data_range(t.data), int16).scale)
        out = op.outputs[0]
        if not scales or id(out) not in new:
            return
        spare_bits = 15 if int16 else 20
        floor = float(np.float32(2.0 * max(scales) * 2.0 ** (2 - spare_bits)))
        if new[id(out)].scale < floor:
            new[id(out)] = QParams(floor, new[id(out)].zero_point, int16)

    def _output_params(self, op, rule, t, lookup, shared, int16: bool) -> QParams | None:
        if rule.kind == "fixed":
            detour = self._softmax_detour(op, t, int16)
            if detour is not None:
                return detour
            scale, zp = rule.fixed16 if int16 else rule.fixed8
            return QParams(float(np.float32(scale)), zp, int16)
        if rule.kind == "shared":
            return shared
        if rule.kind == "same":
            src = op.inputs[rule.sources[0]]
            if id(src) in lookup:
                return self._own_copy_lattice(op, t, lookup[id(src)], int16) or lookup[id(src)]
            rng = self.range_of(src)  # constant source
            return None if rng is None else params_from_range(*rng, int16)
        # free / weighted: adopt the params of a sole shared-scale consumer (saves a requantize),
        # unless the tensor has an exact lattice of its own (an imported Q/DQ pair: writing the
        # consumer's lattice directly would skip the model's rounding onto it)
        own = self.exact and self.range_of(t) is not None
        adopted = None if own else self._consumer_shared_params(t)
        if adopted is not None and adopted.int16 == int16:
            return adopted
        rng = self.range_of(t)
        return None if rng is None else self._activation_params(t, rng, int16)

    def _own_copy_lattice(self, op, t, inherited: QParams, int16: bool) -> QParams | None:
        """An already-quantized model's own lattice on a copy's output when it is not its
        input's (``exact`` only): ONNX rounds and clips the copied values onto it, so the
        output keeps it and ``integer.py`` requantizes the input onto it before the copy
        (the same as after it for these ops: elementwise, monotone). Inception-v1-like
        ``Dropout -> Reshape -> Q/DQ`` (onnxruntime calibrated the Reshape apart from the
        pool before the Dropout): read on the pool's lattice, 667 of the 1024 classifier
        inputs were off the Q/DQ semantics, by up to 43 steps (the model's clipping)."""
        if not self.exact or len(op.outputs) != 1 or op.opcode not in REQUANTIZABLE_COPIES:
            return None
        rng = self.ranges.get(t.name)
        if rng is None or not all(np.isfinite(rng)):
            return None
        own = params_from_range(*rng, int16)
        return own if own != inherited else None

    def _activation_params(self, t: tfl.Tensor, rng: tuple[float, float], int16: bool) -> QParams:
        """Params from the range, except for masked SOFTMAX logits: ``scores + mask`` with an
        additive mask (-1e4) would take the whole integer range and leave no resolution for
        the scores. Logits more than ``SOFTMAX_WINDOW / beta`` below the scores' own minimum
        can only come from the mask; they weigh < 2e-9 of an unmasked logit of their row (or
        the whole row is masked and stays uniform), so clamping them there changes nothing."""
        lo, hi = rng
        beta = self._softmax_beta(t)
        op = self.producer.get(id(t))
        if not self.exact and beta and beta > 0 and op is not None and op.opcode == "ADD":
            lows = [self.range_of(x) for x in op.inputs[:2]]
            if all(r is not None for r in lows):
                lo = max(lo, max(r[0] for r in lows) - SOFTMAX_WINDOW / beta)
        floor = None if self.exact else self._mask_floor(t)
        if floor is not None and lo < floor < hi:
            lo = floor
        return params_from_range(lo, hi, int16)

    def _clamped_mask(self, t: tfl.Tensor | None) -> bool:
        """Is ``t`` a mask whose calibrated range reaches far below its floor (by more than an
        int8 rescale can bridge, here 2^16 times the useful span)?"""
        if t is None or not is_float_activation(t):
            return False
        rng = self.range_of(t)
        floor = self._mask_floor(t) if rng is not None else None
        return floor is not None and rng[0] < floor and -rng[0] > 65536.0 * max(-floor, 1.0)

    def _mask_floor(self, t: tfl.Tensor) -> float | None:
        """For an additive attention mask (read only by ADDs whose sums feed a SOFTMAX): the
        value below which a mask entry acts as minus infinity. With ``s`` the other addend's
        range, any entry <= lo(s) - span(s) - SOFTMAX_WINDOW / beta makes its sum fall below
        every unmasked logit of the row by the window, where the sum's own params already
        saturate. Quantizing the mask over its full range instead (a torch/transformers mask
        is ``finfo(float32).min``, 3.4e38) leaves a step so coarse that the ADD kernel's
        multiplier for the scores underflows to zero: the scores vanish."""
        users = self.consumers.get(id(t), [])
        if not users or id(t) in self.graph_outputs:
            return None
        floors = []
        for op, i in users:
            if op.opcode != "ADD" or len(op.inputs) != 2 or i not in (0, 1):
                return None
            beta = self._softmax_beta(op.outputs[0])
            other = self.range_of(op.inputs[1 - i]) if op.inputs[1 - i] is not None else None
            if not beta or beta <= 0 or other is None:
                return None
            floors.append(other[0] - (other[1] - other[0]) - SOFTMAX_WINDOW / beta)
        return min(floors)

    def _softmax_beta(self, t: tfl.Tensor) -> float | None:
        """beta of the SOFTMAX that alone reads ``t`` (through RESHAPE-like copies)."""
        _, end = self._copies_downstream(t)
        users = self.consumers.get(id(end), [])
        if id(end) in self.graph_outputs or len(users) != 1 or users[0][0].opcode != "SOFTMAX":
            return None
        return float(users[0][0].options.get("beta", 1.0))

    def _softmax_detour(self, op, t, int16: bool) -> QParams | None:
        """int8 SOFTMAX's fixed 1/256 output step is coarse for many-way softmaxes (attention
        rows, 1000 classes) whose probabilities stay far below 1. The int8 kernel may instead
        write int16 (2^-15); a QUANTIZE then brings it to int8 with the calibrated range, a
        step up to 1/(255 * max p). Used when that gains at least 2x."""
        if int16 or op.opcode != "SOFTMAX":
            return None
        rng = self.range_of(t)
        if rng is None or not 0 < rng[1] <= 0.5:
            return None
        self.softmax_detours.add(id(op))
        return params_from_range(0.0, rng[1], False)

    def _consumer_shared_params(self, t: tfl.Tensor) -> QParams | None:
        users = self.consumers.get(id(t), [])
        if not users or id(t) in self.graph_outputs:
            return None
        found = set()
        for op, i in users:
            rule = self.rule(op)[0]
            if rule is None or rule.kind != "shared" or i not in shared_inputs(op, rule):
                return None
            if self.is16(op) != self.is16(self.producer[id(t)]):
                return None  # read at another width: requantized anyway
            found.add(self._shared_params(op, rule))
        return found.pop() if len(found) == 1 and None not in found else None

    def _shared_params(self, op: tfl.Operator, rule: OpRule) -> QParams | None:
        """Params every shared input and the output carry: the output's calibrated range, else
        the union of the inputs' ranges (a concatenation's output range covers its inputs)."""
        rng = self.range_of(op.outputs[0])
        if rng is None:  # e.g. PADV2 with a -inf value: the data inputs decide, it is clamped
            parts = [
                self.range_of(op.inputs[i])
                for i in shared_inputs(op, rule)
                if op.inputs[i] is not None and op.inputs[i].data is None
            ]
            if not parts or any(p is None for p in parts):
                return None
            rng = (min(p[0] for p in parts), max(p[1] for p in parts))
        return params_from_range(*rng, self.is16(op))


def _finite(rng) -> tuple[float, float] | None:
    lo, hi = float(rng[0]), float(rng[1])
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else None


def data_range(data: np.ndarray) -> tuple[float, float]:
    finite = data[np.isfinite(data)]
    return float(finite.min(initial=0.0)), float(finite.max(initial=0.0))


def shared_inputs(op: tfl.Operator, rule: OpRule) -> tuple[int, ...]:
    if rule.sources:
        return tuple(i for i in rule.sources if i < len(op.inputs))
    return tuple(range(len(op.inputs)))
