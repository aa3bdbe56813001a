"""Full-integer quantization (int8, or int16 activations with int8 weights) of a lowered model.

Why it works on the lowered TFLite graph: scales must follow the rules of the TFLite kernels
(LiteRT's quantization spec), which are per TFLite op, and TFLite-only tensors (PAD/TRANSPOSE outputs,
decomposition temporaries) get their ranges derived from their source here.

A float-exact preparation, then two passes over the (topologically ordered) operators of the
main subgraph:
0. preparation (``integer_fold.fold_affine_constants``): per-channel MUL/ADD/SUB by constants fold
   into the weighted op before them (or a per-channel MUL of an NHWC tensor becomes a 1x1
   DEPTHWISE_CONV_2D that the following ones fold into), and a global AVERAGE_POOL_2D becomes
   MEAN; fewer integer roundings, same float function (calibrated ranges of the surviving
   tensors stay valid).
1. analysis (``integer_plan.py``): decide which ops run in integer (``op_rules.RULES``; every
   float activation they touch needs a calibrated range, weights/biases must be constant) and
   give every float activation they touch its (scale, zero point); ``strict=True`` refuses
   before any integer rewrite.
2. rewrite (here): integer ops read/write new integer tensors; QUANTIZE / DEQUANTIZE sit at every
   float-island boundary and at float model I/O; shared-scale inputs that disagree get a
   requantizing QUANTIZE; weights become symmetric int8 (per channel on the spec axis; an
   already-quantized model's weights keep its own codes and scales, ``weight_scales``), biases
   int32 (int8) or int64 (16x8) with scale = input scale * weight scale, after bias correction
   (``correct_bias``: the rounded weights' average error on the calibrated input means).
"""

from __future__ import annotations

import numpy as np

from .. import errors, tfl
from ..tfl_edit import Editor
from . import integer_lstm
from .bias_correction import correct_bias, dequantized
from .dynamic_range import HYBRID_WEIGHT_AXIS, MIN_ELEMENTS, hybrid_weight
from .integer_fold import fold_affine_constants
from .integer_plan import (
    FLOAT,
    INTEGER_PRECISIONS,
    IntegerPlan,
    IntegerQuantSummary,
    QParams,
    data_range,
    is_float_activation,
    is_float_constant,
    params_from_range,
    shared_inputs,
    touches_float,
)
from .op_rules import TWO_POW_M15, OpRule, rule_for
from .strict import refusal, refused_ops

__all__ = ["IntegerQuantSummary", "params_from_range", "quantize_integer"]


def quantize_integer(
    model: tfl.Model,
    ranges: dict[str, tuple[float, float]],
    *,
    activations: str = "int8",
    per_channel: bool = True,
    input_dtype: str | None = None,
    output_dtype: str | None = None,
    strict: bool = False,
    float_heads: bool = False,
    ranges_are_exact: bool = False,
    channel_means: dict[str, np.ndarray] | None = None,
    overrides=None,
    weight_scales=None,
) -> IntegerQuantSummary:
    """Rewrite ``model`` (float, lowered) IN PLACE into a full-integer model; see module doc.

    ``ranges`` maps TFLite tensor names to calibrated (min, max); ``input_dtype`` /
    ``output_dtype`` None keep float I/O, else the float32 graph inputs read by integer ops
    and outputs written by them become int8/uint8 (int8 activations) or int16 (int16
    activations) tensors; other inputs/outputs stay float (``summary.io`` says which).
    ``float_heads``: with float outputs (and not ``strict``), a fixed-output-scale op (SOFTMAX,
    LOGISTIC ...) writing a graph output runs in float on its dequantized input, so the
    output keeps float resolution instead of the kernel's fixed 1/256 step.
    ``ranges_are_exact``: the ranges are lattices an already-quantized model chose (Q/DQ
    scales), honoured as given rather than improved like calibrated ranges.
    ``channel_means``: TFLite tensor name -> calibrated mean per channel (last axis); the
    weighted ops reading such a tensor get their bias corrected for the weights' rounding.
    ``overrides``: ``overrides.Resolved`` (``--quant-override``): nodes kept float, or run at
    int8 / int16x8 activations whatever ``activations`` says (``IntegerPlan.is16``).
    ``weight_scales``: ``(data, axis, qmax, onnx_node) -> scales or None``, the lattice an
    already-quantized model gave a weight (``qdq_weights.ModelWeightScales``): its codes are
    stored as they are, on its scale, instead of being re-derived from ``max|w|``.
    """
    _check_options(activations, input_dtype, output_dtype)
    sub = model.subgraphs[0]
    folded = 0
    if not ranges_are_exact:  # an imported model's lattices name the tensors they sit on
        keep = _float_only_nodes(sub, activations == "int16", overrides)
        keep |= _other_width_nodes(sub, activations == "int16", overrides)
        folded = fold_affine_constants(sub, keep)
    float_heads = float_heads and output_dtype is None and not strict
    plan = IntegerPlan(
        sub,
        ranges,
        activations == "int16",
        input_dtype,
        output_dtype,
        float_heads,
        exact=ranges_are_exact,
        overrides=overrides,
        special=integer_lstm,
    )
    plan.run()
    plan.summary.folded = folded
    refused = refused_ops(plan.summary.float_ops)
    if strict and refused:
        raise refusal(refused)  # names each node, op and reason, and what to do instead
    means = None if ranges_are_exact else channel_means
    _Rewrite(plan, per_channel, means, weight_scales).run()
    return plan.summary


def _float_only_nodes(sub: tfl.Subgraph, int16: bool, overrides=None) -> frozenset[str]:
    """ONNX nodes with an operator that has no integer kernel (at the width it runs at), or
    overridden to float: the planner keeps them whole in float, so their operators are not
    reshaped for integer either."""
    found = set()
    for op in sub.operators:
        if not (op.onnx_node and touches_float(op)):
            continue
        o = overrides.get(op.onnx_node) if overrides else None
        if o is not None and o.precision == "float":
            found.add(op.onnx_node)
            continue
        width = o.precision == "int16x8" if o and o.precision in INTEGER_PRECISIONS else int16
        if rule_for(op.opcode, width)[0] is None and rule_for(op.opcode, int16)[0] is None:
            found.add(op.onnx_node)
    return frozenset(found)


def _other_width_nodes(sub: tfl.Subgraph, int16: bool, overrides) -> frozenset[str]:
    """Nodes overridden to the other activation width that are not weighted ops: a
    per-channel MUL/ADD the user asked to run at int16 (say) must not vanish into the int8
    convolution before it (a weighted op keeps its override when others fold into it)."""
    if not overrides:
        return frozenset()
    other = "int8" if int16 else "int16x8"
    weighted: set[str] = set()
    found: set[str] = set()
    for op in sub.operators:
        o = overrides.get(op.onnx_node)
        if o is None or o.precision != other:
            continue
        rule = rule_for(op.opcode, False)[0]
        (weighted if rule is not None and rule.kind == "weighted" else found).add(op.onnx_node)
    return frozenset(found - weighted)


def _check_options(activations, input_dtype, output_dtype) -> None:
    allowed = {"int8": (None, "int8", "uint8"), "int16": (None, "int16")}
    if activations not in allowed:
        raise errors.BadInputError(
            errors.INVALID_OPTION, f"activations must be 'int8' or 'int16', not {activations!r}"
        )
    for what, value in (("input_dtype", input_dtype), ("output_dtype", output_dtype)):
        if value not in allowed[activations]:
            raise errors.BadInputError(
                errors.INVALID_OPTION,
                f"{what}={value!r} is not available with {activations} activations "
                f"(choose from {allowed[activations]})",
            )


class _Rewrite:
    """Pass 2: apply the analysis to the subgraph."""

    def __init__(self, plan: IntegerPlan, per_channel: bool, channel_means=None, model_scales=None):
        self.plan, self.per_channel = plan, per_channel
        self.model_scales = model_scales
        self.channel_means: dict[str, np.ndarray] = dict(channel_means or {})
        self.sub = plan.sub
        self.quantized: dict[int, tfl.Tensor] = {}  # id(float tensor) -> integer twin
        self.requantized: dict[tuple[int, QParams], tfl.Tensor] = {}
        self.constants: dict[tuple, tfl.Tensor] = {}

    def run(self) -> None:
        plan, sub = self.plan, self.sub
        integer = plan.integer_ops
        float_users = self._float_users()
        for t in [*sub.inputs, *(o for op in sub.operators for o in op.outputs)]:
            if id(t) in plan.params:
                q = plan.params[id(t)]
                keeps_name = not float_users.get(id(t)) and id(plan.producer.get(id(t))) in integer
                name = t.name if keeps_name else f"{t.name}/{_dtype(q.int16).name}"
                self.quantized[id(t)] = tfl.Tensor(
                    name,
                    _dtype(q.int16),
                    t.shape,
                    quantization=q.quantization(),
                    shape_signature=t.shape_signature,
                )
        ed = Editor(sub, fresh_names=False)
        head: list[tfl.Operator] = []
        self._rewrite_inputs(head, float_users)
        ed.prepend(head)
        for op in sub.operators:
            rule = integer.get(id(op))
            float_outputs = list(op.outputs)
            if rule is not None:
                ed.replace(op, self._integer_operator(op, rule))
            for t in float_outputs:
                ed.insert_after(op, self._boundary_after(t, rule is not None, float_users))
        ed.commit()
        self._rewrite_outputs()
        self._hybrid_head_weights()

    def _hybrid_head_weights(self) -> None:
        """The float ops computing a float head's input (``IntegerPlan.head_inputs``) keep
        int8 weights as LiteRT's hybrid kernels read them (float activations, per-channel
        int8 weights, the dynamic-range variant's scheme): the file stays as small as an
        integer one, and the bias is corrected as the integer ops' biases are. A node
        overridden to ``float`` keeps its float weights (asked for: a float island)."""
        readers = self.sub.consumers()
        for op in self.sub.operators:
            if id(op) not in self.plan.head_inputs or op.opcode not in HYBRID_WEIGHT_AXIS:
                continue
            o = self.plan.overrides.get(op.onnx_node)
            if o is not None and o.precision == "float":
                continue
            w = op.inputs[1]
            if not is_float_constant(w) or w.data.size < MIN_ELEMENTS or len(readers[id(w)]) != 1:
                continue
            if not (is_float_activation(op.inputs[0]) and np.all(np.isfinite(w.data))):
                continue
            per_channel = self.per_channel(w) if callable(self.per_channel) else self.per_channel
            op.inputs[1] = hybrid_weight(w, op.opcode, per_channel)
            if op.opcode == "FULLY_CONNECTED":
                op.options["asymmetric_quantize_inputs"] = True
            correct_bias(op, w, dequantized(op.inputs[1]), self.channel_means, self.plan.producer)

    def _float_users(self) -> dict[int, bool]:
        """id(tensor) -> read by a float op or a float graph output."""
        users: dict[int, bool] = {}
        for op in self.sub.operators:
            if id(op) not in self.plan.integer_ops:
                for t in op.inputs:
                    if t is not None:
                        users[id(t)] = True
        for t in self.sub.outputs:
            if id(t) not in self.plan.int_outputs:
                users[id(t)] = True
        return users

    def _boundary_after(self, t, int_produced, float_users) -> list[tfl.Operator]:
        """DEQUANTIZE for float readers of an integer result; QUANTIZE for integer readers of
        a float result."""
        tq = self.quantized.get(id(t))
        if tq is None:
            return []
        if int_produced:
            if not float_users.get(id(t)):
                return []
            return [tfl.Operator("DEQUANTIZE", [tq], [t], onnx_node=self._node_of(t))]
        return [tfl.Operator("QUANTIZE", [t], [tq], onnx_node=self._node_of(t))]

    def _node_of(self, t: tfl.Tensor) -> str | None:
        op = self.plan.producer.get(id(t))
        return op.onnx_node if op is not None else None

    def _rewrite_inputs(self, head, float_users) -> None:
        plan, summary = self.plan, self.plan.summary
        for k, t in enumerate(self.sub.inputs):
            name = self.sub.input_names[k] if k < len(self.sub.input_names) else t.name
            tq = self.quantized.get(id(t))
            if id(t) not in plan.int_inputs:
                summary.io.append(_io_entry(name, t))
                if tq is not None:
                    head.append(tfl.Operator("QUANTIZE", [t], [tq]))
                continue
            tq.name = t.name
            if float_users.get(id(t)):
                t.name = f"{t.name}/dequantized"
                head.append(tfl.Operator("DEQUANTIZE", [tq], [t]))
            entry = tq
            if plan.input_dtype == "uint8":
                entry = _uint8_twin(tq)
                tq.name = f"{tq.name}/int8"
                head.insert(0, tfl.Operator("QUANTIZE", [entry], [tq]))
                summary.requantized += 1
            self.sub.inputs[k] = entry
            summary.io.append(_io_entry(name, entry))

    def _rewrite_outputs(self) -> None:
        plan, summary = self.plan, self.plan.summary
        for k, t in enumerate(self.sub.outputs):
            name = self.sub.output_names[k] if k < len(self.sub.output_names) else t.name
            tq = self.quantized.get(id(t))
            if id(t) not in plan.int_outputs:
                summary.io.append(_io_entry(name, t))
                continue
            exit_ = tq
            if tq.dtype != _dtype(plan.int16):  # an overridden op's output: the file's width
                if tq.name == t.name:
                    tq.name = f"{t.name}/{tq.dtype.name}"
                exit_ = self._requantize(t, tq, plan.twins[(id(t), plan.int16)], None, None)
            if plan.output_dtype == "uint8":
                src, exit_ = exit_, _uint8_twin(exit_)
                src.name = f"{t.name}/int8"
                self.sub.operators.append(tfl.Operator("QUANTIZE", [src], [exit_]))
                summary.requantized += 1
            if exit_.name != t.name:  # the interface tensor keeps the model's name
                exit_.name, t.name = t.name, f"{t.name}/float"
            self.sub.outputs[k] = exit_
            summary.io.append(_io_entry(name, exit_))

    # -- integer operators --------------------------------------------------------------------

    def _integer_operator(self, op: tfl.Operator, rule: OpRule) -> list[tfl.Operator]:
        if rule.kind in integer_lstm.KINDS:  # a contract of its own (integer_lstm.py)
            return integer_lstm.rewrite_op(self, op, rule)
        if rule.kind == "shape":  # reads the dims only: the integer tensor as it is
            op.inputs[:] = [self.quantized.get(id(t), t) for t in op.inputs]
            return [op]
        before: list[tfl.Operator] = []
        if op.opcode == "DIV":  # by a constant (see IntegerPlan.rule): multiply by 1 / c
            c = op.inputs[1]
            recip = (1.0 / c.data.astype(np.float64)).astype(np.float32)
            op.opcode, op.inputs[1] = (
                "MUL",
                tfl.Tensor(f"{c.name}/reciprocal", FLOAT, c.shape, data=recip),
            )
        shared = shared_inputs(op, rule) if rule.kind == "shared" else ()
        out_q = self.plan.params.get(id(op.outputs[0]))
        if rule.kind == "same" and len(op.outputs) == 1 and out_q is not None:
            # (a copy writes its input's codes: an imported lattice of the output's own,
            # IntegerPlan._own_copy_lattice, is reached by requantizing the input first)
            shared = (rule.sources[0],)
        w16 = self.plan.is16(op)
        special = self._weight_and_bias(op, rule)
        for i, t in enumerate(op.inputs):
            if i in special:
                op.inputs[i] = special[i]
            elif is_float_activation(t):
                tq = self.quantized[id(t)]
                want = out_q if i in shared else self.plan.read_params(op, t)
                if self.plan.params[id(t)] != want:  # shared scale, or another width
                    tq = self._requantize(t, tq, want, op, before)
                op.inputs[i] = tq
            elif is_float_constant(t):
                q = out_q if (i in shared or rule.kind == "same") else None
                op.inputs[i] = self._constant(t, q, w16)
        op.outputs[:] = [self.quantized.get(id(t), t) for t in op.outputs]
        if op.opcode == "CONV_2D" and (len(op.inputs) < 3 or op.inputs[2] is None):
            op.inputs[2:] = [self._zero_bias(op, rule)]
        if op.opcode == "DEPTHWISE_CONV_2D" and len(op.inputs) == 3 and op.inputs[2] is None:
            del op.inputs[2]
        if w16:
            op.options.update(rule.options16)
        after = []
        if id(op) in self.plan.softmax_detours:
            final = op.outputs[0]
            wide = tfl.Tensor(
                f"{final.name}/int16",
                np.int16,
                final.shape,
                quantization=QParams(TWO_POW_M15, 0, True).quantization(),
            )
            op.outputs[0] = wide
            after.append(tfl.Operator("QUANTIZE", [wide], [final], onnx_node=op.onnx_node))
            self.plan.summary.requantized += 1
        return [*before, op, *after]

    def _requantize(self, t, tq, q: QParams, op, before) -> tfl.Tensor:
        """``tq`` requantized to ``q`` (another scale, or the other width) by a QUANTIZE
        before ``op`` (in ``before``), or at the end of the graph (``op`` None: an output)."""
        key = (id(t), q)
        if key not in self.requantized:
            out = tfl.Tensor(
                f"{tq.name}/requantized", _dtype(q.int16), t.shape, quantization=q.quantization()
            )
            requantize = tfl.Operator("QUANTIZE", [tq], [out], onnx_node=self._node_of(t))
            if op is None:
                self.sub.operators.append(requantize)
            else:
                requantize.onnx_node = op.onnx_node
                before.append(requantize)
            self.requantized[key] = out
            self.plan.summary.requantized += 1
        return self.requantized[key]

    def _constant(self, t: tfl.Tensor, q: QParams | None, int16: bool) -> tfl.Tensor:
        """A float constant read by an integer op as an activation-like operand."""
        if q is None:
            q = params_from_range(*data_range(t.data), int16)
        key = (id(t), q)
        if key not in self.constants:
            dtype = _dtype(q.int16)
            info = np.iinfo(dtype)
            values = np.clip(np.rint(t.data / q.scale) + q.zero_point, info.min, info.max)
            self.constants[key] = tfl.Tensor(
                f"{t.name}/{dtype.name}",
                dtype,
                t.shape,
                data=np.ascontiguousarray(values.astype(dtype)),
                quantization=q.quantization(),
            )
        return self.constants[key]

    def _weight_and_bias(self, op, rule) -> dict[int, tfl.Tensor]:
        """Symmetric int8 weights (and the matching bias) of a conv/FC-like op; BATCH_MATMUL's
        constant operand is a per-tensor symmetric weight (its CPU kernel reads one scale)."""
        if op.opcode == "BATCH_MATMUL":
            t = op.inputs[1]
            if not is_float_constant(t):
                return {}
            narrow = _dtype(self.plan.is16(op))
            given = self._model_scale(t, None, float(np.iinfo(narrow).max), op)
            w, _ = self._weight(t, axis=0, per_channel=False, narrow_dtype=narrow, given=given)
            return {1: w}
        if rule.kind != "weighted":
            return {}
        w_float = op.inputs[rule.weight]
        # (``per_channel`` may be a predicate on the weight: a pre-quantized model keeps each
        # weight on its own lattice, ``qdq_import._per_channel_weight``.)
        per_channel = self.per_channel(w_float) if callable(self.per_channel) else self.per_channel
        given = self._model_scale(w_float, rule.weight_axis, 127.0, op)
        if given is not None:
            per_channel = given.size > 1 or op.opcode == "DEPTHWISE_CONV_2D"
            if per_channel and given.size == 1:  # (DEPTHWISE reads one scale per channel)
                given = np.repeat(given, w_float.shape[rule.weight_axis])
        w, w_scale = self._weight(w_float, rule.weight_axis, per_channel, given=given)
        out = {rule.weight: w}
        correct_bias(op, w_float, dequantized(w), self.channel_means, self.plan.producer)
        if (
            rule.bias is not None
            and rule.bias < len(op.inputs)
            and op.inputs[rule.bias] is not None
        ):
            in_scale = self.plan.read_params(op, op.inputs[rule.activation]).scale
            out[rule.bias] = self._bias(op.inputs[rule.bias], in_scale * w_scale, op)
        return out

    def _model_scale(self, t, axis, qmax, op) -> np.ndarray | None:
        """The already-quantized model's own scale(s) for weight ``t``, if it has them."""
        if self.model_scales is None or not is_float_constant(t):
            return None
        return self.model_scales(t.data, axis, qmax, op.onnx_node)

    def _weight(self, t, axis, per_channel, narrow_dtype=np.int8, given=None):
        """Symmetric weights on ``given`` scales (the model's own: exact codes), else on
        ``max|w| / qmax`` (:func:`weight_scales`)."""
        key = ("w", id(t), axis, per_channel, np.dtype(narrow_dtype).name, given is not None)
        qmax = float(np.iinfo(narrow_dtype).max)
        data = t.data.astype(np.float32)
        scale = weight_scales(data, axis if per_channel else None, qmax)
        if given is not None:
            scale = np.asarray(given, np.float32).reshape(-1)
        if key not in self.constants:
            shape = [1] * data.ndim
            if per_channel:
                shape[axis] = -1
            q = np.clip(np.rint(data / scale.reshape(shape)), -qmax, qmax).astype(narrow_dtype)
            quant = tfl.Quantization(
                scale=scale,
                zero_point=np.zeros(scale.size, np.int64),
                axis=axis if per_channel else 0,
            )
            self.constants[key] = tfl.Tensor(
                f"{t.name}/{np.dtype(narrow_dtype).name}",
                narrow_dtype,
                t.shape,
                data=np.ascontiguousarray(q),
                quantization=quant,
            )
        return self.constants[key], scale.astype(np.float64)

    def _bias(self, t: tfl.Tensor, scale: np.ndarray, op: tfl.Operator) -> tfl.Tensor:
        dtype = np.int64 if self.plan.is16(op) else np.int32
        info = np.iinfo(dtype)
        scale = np.atleast_1d(np.asarray(scale, np.float64))  # one scale per weight scale
        q = np.rint(t.data.astype(np.float64) / np.broadcast_to(scale, t.shape))
        q = np.clip(q, info.min, info.max).astype(dtype)
        quant = tfl.Quantization(
            scale=scale.astype(np.float32), zero_point=np.zeros(scale.size, np.int64), axis=0
        )
        return tfl.Tensor(
            f"{t.name}/{np.dtype(dtype).name}", dtype, t.shape, data=q, quantization=quant
        )

    def _zero_bias(self, op, rule) -> tfl.Tensor:
        """CONV_2D on CPU requires a bias tensor: zeros with the spec's scale."""
        channels = op.inputs[rule.weight].shape[rule.weight_axis]
        name = f"{op.outputs[0].name}/bias"
        zeros = tfl.Tensor(name, FLOAT, (channels,), data=np.zeros(channels, np.float32))
        w_scale = op.inputs[rule.weight].quantization.scale.astype(np.float64)
        act_scale = float(op.inputs[rule.activation].quantization.scale[0])
        return self._bias(zeros, act_scale * w_scale, op)


def _dtype(int16: bool) -> np.dtype:
    return np.dtype(np.int16 if int16 else np.int8)


def weight_scales(data: np.ndarray, axis: int | None, qmax: float) -> np.ndarray:
    """Symmetric scales from max |w| (per slice along ``axis``, or one for the tensor):
    every weight stays representable; all-zero channels get scale 1."""
    if axis is None:
        scale = np.array([np.abs(data).max(initial=0.0) / qmax])
    else:
        moved = np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1)
        scale = np.abs(moved).max(axis=1, initial=0.0) / qmax
    return np.where(scale > 0, scale, 1.0).astype(np.float32)


def _uint8_twin(tq: tfl.Tensor) -> tfl.Tensor:
    """The uint8 interface tensor of an int8 tensor: same scale, zero point + 128."""
    q = tfl.Quantization(
        scale=tq.quantization.scale.copy(), zero_point=tq.quantization.zero_point + 128
    )
    return tfl.Tensor(
        tq.name, np.uint8, tq.shape, quantization=q, shape_signature=tq.shape_signature
    )


def _io_entry(name: str, t: tfl.Tensor) -> dict:
    q = t.quantization
    return {
        "name": name,
        "dtype": t.dtype.name,
        "scale": None if q is None else float(q.scale[0]),
        "zero_point": None if q is None else int(q.zero_point[0]),
    }
