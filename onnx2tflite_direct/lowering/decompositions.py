"""``--decompose``: the same ops lowered with primitive builtins only.

For runtimes and delegates whose dedicated kernel (LEAKY_RELU, HARD_SWISH, GELU, ABS, NEG) is
missing or wrong. Each is exact up to float rounding and proven against onnxruntime in tests.
"""

from __future__ import annotations

import math

from ..registry import decomposition
from .activations import _select_negative, prelu_by_select
from .elementwise import unary_decomposition
from .math import _erf

# PRelu's regular lowering is PRELU for float32; the decomposition keeps GREATER / MUL / SELECT_V2.
decomposition("PRelu")(prelu_by_select)


@unary_decomposition("LeakyRelu")
def _leaky(e, x):
    alpha = float(e.ctx.attr("alpha", 0.01))
    scaled = e.op("MUL", x, e.const(alpha))
    if 0.0 <= alpha <= 1.0:
        return e.op("MAXIMUM", x, scaled)
    if alpha > 1.0:
        return e.op("MINIMUM", x, scaled)
    return _select_negative(e, x, scaled)


@unary_decomposition("HardSwish")
def _hardswish(e, x):
    gate = e.op(
        "MINIMUM", e.op("MAXIMUM", e.op("ADD", x, e.const(3.0)), e.const(0.0)), e.const(6.0)
    )
    return e.op("MUL", e.op("MUL", x, gate), e.const(1.0 / 6.0))


@unary_decomposition("Gelu")
def _gelu(e, x):
    if e.ctx.attr("approximate", "none") == "tanh":
        cube = e.op("MUL", e.op("MUL", x, x), x)
        inner = e.op("ADD", x, e.op("MUL", cube, e.const(0.044715)))
        core = e.op("TANH", e.op("MUL", inner, e.const(math.sqrt(2.0 / math.pi))))
    else:
        core = _erf(e, e.op("MUL", x, e.const(1.0 / math.sqrt(2.0))))
    return e.op("MUL", e.op("MUL", x, e.const(0.5)), e.op("ADD", core, e.const(1.0)))


@unary_decomposition("Abs", native=("float32", "int32", "int64"))
def _abs(e, x):
    return e.op("MAXIMUM", x, e.op("MUL", x, e.const(-1)))


@unary_decomposition("Neg", native=("float32", "int32", "int64"))
def _neg(e, x):
    return e.op("MUL", x, e.const(-1))
