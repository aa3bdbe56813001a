"""``--gpu-friendly`` rewrites that compute: an activation un-fused, a function expressed
with operators the GPU delegate has, a constant computed once, a branch made scalar.

Each rule takes an operator the GPU rules (``gpu_rules``) reject and returns replacement
operators, or None; the driver (``gpu_friendly``) keeps a replacement only if the same rules
accept it. Bit-exact unless said:

- ``fold_constant_fully_connected``: FULLY_CONNECTED of constants (an unrolled RNN's first
  step from a zero state) becomes its result (float64 accumulation, rounded once).
- ``unfuse_activation``: a fused activation that raises the version above the GPU cap
  (TRANSPOSE_CONV v4, cap 3) becomes a separate activation operator.
- ``ceil_by_floor``: CEIL (no GPU parser) becomes MUL(-1), FLOOR, MUL(-1).
- ``select_scalar_branches``: a uniform constant SELECT_V2 branch becomes a scalar.
- ``lrn_by_conv``: LOCAL_RESPONSE_NORMALIZATION becomes SQUARE, a banded 1x1 CONV_2D, POW and
  MUL (same formula; the window sum is added in another order).
- ``not_into_select``: LOGICAL_NOT read only as select conditions disappears; the selects
  read the mask with their branches swapped.
- ``log_softmax_decomposed``: LOG_SOFTMAX becomes REDUCE_MAX, SUB, EXP, SUM, LOG, SUB (the
  kernel's formula; the exp sum is added in another order).
"""

from __future__ import annotations

import numpy as np

from . import tfl
from .gpu_rewrites import Editor, Rule, delegable, static

UNFUSED_ACTIVATION = {"RELU": "RELU", "RELU6": "RELU6", "RELU_N1_TO_1": "RELU_N1_TO_1"}


# Passes over the graph at most (a rewrite's output may enable another one).
def _unfuse_activation(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """Producer with a version-raising fused activation -> producer + activation operator."""
    act = op.options.get("fused_activation_function", "NONE")
    if act not in UNFUSED_ACTIVATION:
        return None
    out = op.outputs[0]
    pre = ed.temp(f"{out.name}/pre_activation", out.dtype, out.shape)
    conv = tfl.Operator(
        op.opcode,
        list(op.inputs),
        [pre, *op.outputs[1:]],
        {**op.options, "fused_activation_function": "NONE"},
        onnx_node=op.onnx_node,
    )
    return [conv, ed.op(UNFUSED_ACTIVATION[act], [pre], [out], op)]


def _ceil_by_floor(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """CEIL (no GPU parser) -> MUL by -1, FLOOR, MUL by -1: ceil(x) == -floor(-x) bit for bit.

    MUL rather than NEG: LiteRT's NEG computes 0 - x, which turns -0.0 into +0.0.
    """
    if op.opcode != "CEIL" or op.inputs[0].dtype != np.float32:
        return None
    x, out = op.inputs[0], op.outputs[0]
    minus_one = ed.const(f"{out.name}/minus_one", np.array(-1.0, np.float32))
    neg = ed.temp(f"{out.name}/neg", x.dtype, x.shape)
    floor = ed.temp(f"{out.name}/floor_neg", x.dtype, x.shape)
    return [
        ed.op("MUL", [x, minus_one], [neg], op, fused_activation_function="NONE"),
        ed.op("FLOOR", [neg], [floor], op),
        ed.op("MUL", [floor, minus_one], [out], op, fused_activation_function="NONE"),
    ]


def _lrn_by_conv(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """LOCAL_RESPONSE_NORMALIZATION (no GPU parser) -> x * pow(bias + alpha * window sum of
    x^2, -beta): SQUARE, a 1x1 CONV_2D whose banded weights sum the channel window (its bias is
    the LRN bias), POW and MUL. The same formula the CPU kernel evaluates; only the order of the
    window sum differs (float rounding)."""
    if op.opcode != "LOCAL_RESPONSE_NORMALIZATION":
        return None
    x, out = op.inputs[0], op.outputs[0]
    if x.data is not None or x.dtype != np.float32 or x.rank != 4 or not static(x, out):
        return None
    channels = x.shape[3]
    radius = int(op.options.get("radius", 5))
    alpha = float(op.options.get("alpha", 1.0))
    bias = float(op.options.get("bias", 1.0))
    beta = float(op.options.get("beta", 0.5))
    idx = np.arange(channels)
    band = (np.abs(idx[:, None] - idx[None, :]) <= radius).astype(np.float32) * np.float32(alpha)
    weights = ed.const(f"{out.name}/lrn_window", band.reshape(channels, 1, 1, channels))
    bias_t = ed.const(f"{out.name}/lrn_bias", np.full(channels, bias, np.float32))
    square = ed.temp(f"{out.name}/square", x.dtype, x.shape)
    scale = ed.temp(f"{out.name}/scale", x.dtype, x.shape)
    power = ed.temp(f"{out.name}/power", x.dtype, x.shape)
    exponent = ed.const(f"{out.name}/minus_beta", np.array(-beta, np.float32))
    conv = ed.op(
        "CONV_2D",
        [square, weights, bias_t],
        [scale],
        op,
        padding="VALID",
        stride_w=1,
        stride_h=1,
        dilation_w_factor=1,
        dilation_h_factor=1,
        fused_activation_function="NONE",
    )
    return [
        ed.op("SQUARE", [x], [square], op),
        conv,
        ed.op("POW", [scale, exponent], [power], op),
        ed.op("MUL", [x, power], [out], op, fused_activation_function="NONE"),
    ]


_CLAMPS = {
    "NONE": (None, None),
    "RELU": (0.0, None),
    "RELU6": (0.0, 6.0),
    "RELU_N1_TO_1": (-1.0, 1.0),
}


def _fold_constant_fully_connected(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """FULLY_CONNECTED of constants only (an unrolled RNN's first step with a zero initial
    state; the GPU takes a runtime data input only) -> its result as a constant, accumulated
    in float64 and rounded once (at least as accurate as the kernel)."""
    if op.opcode != "FULLY_CONNECTED" or len(op.outputs) != 1:
        return None
    x, w = op.inputs[0], op.inputs[1]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    out = op.outputs[0]
    operands = [x, w] + ([bias] if bias is not None else [])
    if any(t is None or t.data is None for t in operands):
        return None
    if any(t.dtype != np.float32 or t.quantization is not None for t in (*operands, out)):
        return None
    if (
        op.options.get("weights_format", "DEFAULT") not in ("DEFAULT", 0)
        or op.options.get("fused_activation_function", "NONE") not in _CLAMPS
        or id(out) in ed.io
        or not static(out)
    ):
        return None
    if w.rank != 2 or x.data.size % w.shape[1]:
        return None
    rows = x.data.astype(np.float64).reshape(-1, w.shape[1])
    y = rows @ w.data.astype(np.float64).T
    if bias is not None:
        y = y + bias.data.astype(np.float64)
    low, high = _CLAMPS[op.options.get("fused_activation_function", "NONE")]
    y = np.clip(y, low, high) if low is not None else y
    if y.size != int(np.prod(out.shape)):
        return None
    out.data = np.ascontiguousarray(y.astype(np.float32).reshape(out.shape))
    return []


def _select_scalar_branches(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """SELECT_V2 with a constant branch holding one value in a broadcast shape ([1, 1,
    1, 1] masks of exported attention; the GPU takes branches of the output's shape or
    scalars, and no 2-D constant) -> the same select with that branch as a scalar."""
    if op.opcode != "SELECT_V2" or len(op.inputs) != 3:  # SELECT does not broadcast
        return None
    inputs = list(op.inputs)
    changed = False
    for k in (1, 2):
        t = inputs[k]
        if t is None or t.data is None or t.rank == 0 or t.data.size == 0:
            continue
        flat = t.data.reshape(-1)
        if not (flat == flat[0]).all() or (t.dtype.kind == "f" and np.isnan(flat[0])):
            continue
        inputs[k] = ed.const(f"{t.name}/scalar", np.array(flat[0], t.dtype))
        changed = True
    if not changed:
        return None
    return [
        tfl.Operator(op.opcode, inputs, list(op.outputs), dict(op.options), onnx_node=op.onnx_node)
    ]


def _log_softmax_decomposed(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """LOG_SOFTMAX (no GPU parser) over the last axis -> (x - max) - log(sum(exp(x - max))):
    REDUCE_MAX, SUB, EXP, SUM, LOG, SUB. The formula LiteRT's kernel evaluates, in the same
    association; only the order of the exp sum differs (float rounding)."""
    if op.opcode != "LOG_SOFTMAX":
        return None
    x, out = op.inputs[0], op.outputs[0]
    if x.data is not None or x.dtype != np.float32 or not 1 <= x.rank <= 4 or not static(x, out):
        return None
    kept = (*x.shape[:-1], 1)
    axis = ed.const(f"{out.name}/last_axis", np.array([x.rank - 1], np.int32))
    peak = ed.temp(f"{out.name}/max", x.dtype, kept)
    shifted = ed.temp(f"{out.name}/shifted", x.dtype, x.shape)
    exps = ed.temp(f"{out.name}/exp", x.dtype, x.shape)
    total = ed.temp(f"{out.name}/sum", x.dtype, kept)
    log_total = ed.temp(f"{out.name}/log_sum", x.dtype, kept)
    return [
        ed.op("REDUCE_MAX", [x, axis], [peak], op, keep_dims=True),
        ed.op("SUB", [x, peak], [shifted], op, fused_activation_function="NONE"),
        ed.op("EXP", [shifted], [exps], op),
        ed.op("SUM", [exps, axis], [total], op, keep_dims=True),
        ed.op("LOG", [total], [log_total], op),
        ed.op("SUB", [shifted, log_total], [out], op, fused_activation_function="NONE"),
    ]


def _not_into_select(ed: Editor, op: tfl.Operator) -> list[tfl.Operator] | None:
    """LOGICAL_NOT (no GPU parser) read only as the condition of SELECT / SELECT_V2 ops the
    GPU takes (a padding mask's ``masked_fill(~mask, ...)``) -> nothing: each select reads the
    mask itself with its branches swapped (``not c ? a : b`` is ``c ? b : a``, bit for bit)."""
    if op.opcode != "LOGICAL_NOT" or id(op.outputs[0]) in ed.io:
        return None
    src, out = op.inputs[0], op.outputs[0]
    users = ed.uses.get(id(out), [])
    if not users:
        return None
    for user in users:
        if user.opcode not in ("SELECT", "SELECT_V2") or len(user.inputs) != 3:
            return None
        if user.inputs[0] is not out or out in user.inputs[1:] or not delegable(user):
            return None
    for user in users:  # delegable: the driver leaves them alone in this pass
        _, a, b = user.inputs
        swapped = tfl.Operator(
            user.opcode,
            [src, b, a],
            list(user.outputs),
            dict(user.options),
            onnx_node=user.onnx_node,
        )
        ed.replace(user, [swapped])
    return []


RULES: dict[str, Rule] = {
    "fold_constant_fully_connected": _fold_constant_fully_connected,
    "unfuse_activation": _unfuse_activation,
    "ceil_by_floor": _ceil_by_floor,
    "select_scalar_branches": _select_scalar_branches,
    "lrn_by_conv": _lrn_by_conv,
    "not_into_select": _not_into_select,
    "log_softmax_decomposed": _log_softmax_decomposed,
}
