"""Per-op quantization rules for full-integer models (LiteRT's quantization spec), as data.

Why a table: the integer rewrite (``integer.py``) is generic; what differs per TFLite op is
only how its output scale is chosen, which inputs are weights/biases, and whether the CPU has an
int16 (16x8) kernel. Ops absent from the table have no integer kernel (or one whose error is
unacceptable, e.g. RSQRT/DIV/LOG in normalization arithmetic) and run as float islands.

Kinds of output parameters:
- ``free``: the op rescales, its output gets its own calibrated (s, zp).
- ``same``: a data-moving op; its outputs reuse the params of input ``sources[0]`` (the spec's same-scale ops).
- ``shared``: several inputs and the output must all carry identical params (CONCATENATION,
  PACK, MAXIMUM, ...): they come from the output's range, inputs are requantized if needed.
- ``fixed``: the kernel dictates the output params (the spec's fixed-output-scale ops).
- ``weighted``: conv/FC-like; like ``free`` plus a symmetric int8 weight and an int32/int64 bias.
- ``shape``: reads only its input's dims (SHAPE, in the run-time shape arithmetic of a file
  with dynamic sizes): it takes the integer tensor as it is (no requantization) and
  writes int32 dims, which carry no params. (The int32 ops that compute with those
  dims touch no float value and need no rule.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

TWO_POW_M15 = 2.0**-15


@dataclass(frozen=True)
class OpRule:
    kind: str
    int16: bool = True  # the CPU has a 16x8 kernel for it
    sources: tuple[int, ...] = (0,)  # same: the source input; shared: inputs that share params
    fixed8: tuple[float, int] | None = None  # (scale, zero point) of the int8 output
    fixed16: tuple[float, int] | None = None
    activation: int = 0  # weighted: index of the data input
    weight: int | None = None  # weighted: index and output-channel axis of the weight
    weight_axis: int = 0
    bias: int | None = None
    options16: dict = field(default_factory=dict)  # options to set on 16x8 operators


FREE = OpRule("free")
FREE_INT8 = OpRule("free", int16=False)
SAME = OpRule("same")
SAME_INT8 = OpRule("same", int16=False)

RULES: dict[str, OpRule] = {
    "CONV_2D": OpRule("weighted", weight=1, weight_axis=0, bias=2),
    "DEPTHWISE_CONV_2D": OpRule("weighted", weight=1, weight_axis=3, bias=2),
    "FULLY_CONNECTED": OpRule("weighted", weight=1, weight_axis=0, bias=2),
    "TRANSPOSE_CONV": OpRule("weighted", activation=2, weight=1, weight_axis=0, bias=3),
    "SHAPE": OpRule("shape"),
    "BATCH_MATMUL": FREE,
    "ADD": OpRule("free", options16={"pot_scale_int16": False}),
    "SUB": OpRule("free", options16={"pot_scale_int16": False}),
    "MUL": FREE,
    "MEAN": FREE,
    "SUM": FREE_INT8,
    "RELU": FREE,
    "RELU6": FREE,
    "RELU_0_TO_1": FREE_INT8,
    "RELU_N1_TO_1": FREE_INT8,
    "LEAKY_RELU": FREE,
    "HARD_SWISH": FREE_INT8,
    "PRELU": FREE_INT8,
    "ELU": FREE_INT8,
    "GELU": FREE,
    "EXP": FREE,
    # int8 and int16 LUT kernels; its input is a variance-like value whose range the
    # temporaries' calibration (``temporaries.py``) measures (a LayerNorm in integer).
    "RSQRT": FREE,
    "SQRT": FREE,  # (int8 and int16 LUT kernels; in integer_compose's LRN)
    "ABS": FREE,
    "ARG_MAX": FREE_INT8,
    # int8 comparisons rescale both sides; int16 ones compare raw integers (same scale needed)
    **{
        name: FREE_INT8
        for name in ("EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL")
    },
    "ARG_MIN": FREE_INT8,
    "LOGISTIC": OpRule("fixed", fixed8=(1 / 256, -128), fixed16=(TWO_POW_M15, 0)),
    "TANH": OpRule("fixed", fixed8=(1 / 128, 0), fixed16=(TWO_POW_M15, 0)),
    "SOFTMAX": OpRule("fixed", fixed8=(1 / 256, -128), fixed16=(TWO_POW_M15, 0)),
    "LOG_SOFTMAX": OpRule("fixed", int16=False, fixed8=(16 / 256, 127)),
    "L2_NORMALIZATION": OpRule("fixed", int16=False, fixed8=(1 / 128, 0)),
    "CONCATENATION": OpRule("shared", sources=()),  # () = every input
    "PACK": OpRule("shared", sources=()),
    "MAXIMUM": OpRule("shared", sources=(0, 1)),
    "MINIMUM": OpRule("shared", sources=(0, 1)),
    "SELECT": OpRule("shared", sources=(1, 2)),
    "SELECT_V2": OpRule("shared", sources=(1, 2)),
    "PADV2": OpRule("shared", sources=(0, 2)),
    "SPLIT": OpRule("same", sources=(1,)),
    "DEPTH_TO_SPACE": SAME_INT8,
    "SPACE_TO_DEPTH": SAME_INT8,
    **{
        name: SAME
        for name in (
            "MAX_POOL_2D",
            "AVERAGE_POOL_2D",
            "RESHAPE",
            "SQUEEZE",
            "EXPAND_DIMS",
            "TRANSPOSE",
            "SLICE",
            "STRIDED_SLICE",
            "GATHER",
            "GATHER_ND",
            "RESIZE_BILINEAR",
            "RESIZE_NEAREST_NEIGHBOR",
            "PAD",
            "MIRROR_PAD",
            "TILE",
            "BROADCAST_TO",
            "REVERSE_V2",
            "REDUCE_MAX",
            "REDUCE_MIN",
            "BATCH_TO_SPACE_ND",
            "SPACE_TO_BATCH_ND",
            "UNPACK",
            "SPLIT_V",
            "TOPK_V2",  # values keep the input params; indices are int32
        )
    },
}


def rule_for(opcode: str, int16: bool) -> tuple[OpRule | None, str]:
    """The rule for ``opcode`` in the given activation width, or (None, why not)."""
    rule = RULES.get(opcode)
    if rule is None:
        return None, "no integer kernel (or unacceptable quantized error)"
    if int16 and not rule.int16:
        return None, "no int16x8 kernel"
    return rule, ""
