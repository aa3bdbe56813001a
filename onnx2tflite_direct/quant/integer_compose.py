"""Float ops without a LiteRT integer kernel, rewritten as compositions of ops that have one.

Why: a full-integer file must not keep float ops (``strict.py``), and LiteRT has no int8/int16
LOCAL_RESPONSE_NORMALIZATION kernel (AlexNet, GoogLeNet). Its definition is a composition of
kernels that do exist in integer:

    out = x * (bias + alpha * sum_{|c' - c| <= radius} x[c']^2) ** -beta
        = x * p(v),  v = CONV_2D(x * x, alpha * band, bias),  band[c, c'] = |c - c'| <= radius
        p(v) = RSQRT(v)                      (beta = 0.5)
        p(v) = RSQRT(v) * SQRT(RSQRT(v))     (beta = 0.75, the usual one)

The channel window sum is a 1x1 CONV_2D with a constant band matrix (alpha folded in; its
int8 weights hold one value per row, exactly), the shift is its bias. The rewrite is applied
to the integer files' copy of the float model only, and identically to the copy whose
temporaries are calibrated (``temporaries.py``), so every new tensor has a measured range;
the normalization rule (``integer_widths.py``, it contains RSQRT) runs it at int16 inside the
int8 files. Other betas keep the float op (the refusal names it).
"""

from __future__ import annotations

import numpy as np

from .. import tfl
from ..tfl_edit import Editor
from .integer_plan import FLOAT, is_float_activation

COMPOSABLE = frozenset({"LOCAL_RESPONSE_NORMALIZATION"})
BETAS = (0.5, 0.75)


def needs_composition(sub: tfl.Subgraph) -> bool:
    return any(_lrn_composable(op) for op in sub.operators)


def compose_for_integer(sub: tfl.Subgraph) -> int:
    """Rewrite every composable op of ``sub`` in place; returns how many were rewritten.
    Deterministic names (from the op's output), so two copies rewrite alike."""
    ed = Editor(sub, fresh_names=False)
    count = 0
    for op in sub.operators:
        if _lrn_composable(op):
            ed.replace(op, _lrn_ops(op))
            count += 1
    ed.commit()
    return count


def _lrn_composable(op: tfl.Operator) -> bool:
    if op.opcode != "LOCAL_RESPONSE_NORMALIZATION" or len(op.inputs) != 1:
        return False
    x = op.inputs[0]
    beta = float(op.options.get("beta", 0.75))
    return (
        is_float_activation(x)
        and x.rank == 4
        and x.shape[-1] > 0
        and (not x.shape_signature or x.shape_signature[-1] != -1)
        and any(abs(beta - b) < 1e-7 for b in BETAS)
    )


def _lrn_ops(op: tfl.Operator) -> list[tfl.Operator]:
    x, out = op.inputs[0], op.outputs[0]
    o = op.options
    radius, beta = int(o.get("radius", 5)), float(o.get("beta", 0.75))
    alpha, bias = float(o.get("alpha", 1.0)), float(o.get("bias", 1.0))
    channels = x.shape[-1]
    base = out.name

    def temp(suffix: str) -> tfl.Tensor:
        return tfl.Tensor(f"{base}/{suffix}", FLOAT, x.shape, shape_signature=x.shape_signature)

    c = np.arange(channels)
    band = (np.abs(c[:, None] - c[None, :]) <= radius).astype(np.float64) * alpha
    weight = tfl.Tensor(
        f"{base}/window",
        FLOAT,
        (channels, 1, 1, channels),
        data=band.astype(np.float32).reshape(channels, 1, 1, channels),
    )
    shift = tfl.Tensor(f"{base}/bias", FLOAT, (channels,), data=np.full(channels, bias, np.float32))
    sq, v, r = temp("square"), temp("v"), temp("rsqrt")
    node = op.onnx_node
    conv_options = {
        "padding": "VALID",
        "stride_w": 1,
        "stride_h": 1,
        "dilation_w_factor": 1,
        "dilation_h_factor": 1,
        "fused_activation_function": "NONE",
    }
    ops = [
        tfl.Operator("MUL", [x, x], [sq], {"fused_activation_function": "NONE"}, onnx_node=node),
        tfl.Operator("CONV_2D", [sq, weight, shift], [v], conv_options, onnx_node=node),
        tfl.Operator("RSQRT", [v], [r], onnx_node=node),
    ]
    p = r
    if beta > 0.5:  # 0.75: v^-0.75 = r * sqrt(r)
        s, p = temp("sqrt"), temp("power")
        ops += [
            tfl.Operator("SQRT", [r], [s], onnx_node=node),
            tfl.Operator("MUL", [r, s], [p], {"fused_activation_function": "NONE"}, onnx_node=node),
        ]
    ops.append(
        tfl.Operator("MUL", [x, p], [out], {"fused_activation_function": "NONE"}, onnx_node=node)
    )
    return ops
