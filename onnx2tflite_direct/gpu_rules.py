"""The LiteRT GPU delegate's own op rules, as a data table applied to the in-memory model.

Why: whether the GPU delegate takes an operator is decided before anything runs, by two pieces
of LiteRT source, and both are ported here as facts (no LiteRT code is run or copied):

- ``tflite/delegates/gpu/common/model_builder.cc`` (cited as MB): ``NewOperationParser`` says
  which builtins have a parser at all; each parser's ``IsSupported`` caps the operator-code
  version (``CheckMaxSupportedOpVersion``); ``GetOpsToReplace`` / ``IsAllAllowedTensors`` reject
  any tensor of rank >= 5 and any runtime (arena) tensor whose type is not float32/float16
  (int8/uint8 allowed because the default options enable quantized ops, bool/int32 only for the
  ops listed below). Some parsers also refuse at ``Parse`` time (reverse strided slices,
  identical operands of a binary op, ...); those are listed too, tagged ``parse``.
- ``tflite/tools/versioning/gpu_compatibility.cc`` (cited as GC): ``CheckGpuDelegateCompatibility``
  holds the per-op attribute, operand and shape limits the parsers call. The runtime delegate
  calls it with ``GpuCompatibilityFlags::kStandard`` (the strict broadcast rules); only the
  offline analyzer assumes ``kEnhancedBroadcast``. This table follows the delegate.
- ``tflite/delegates/gpu/delegate_options.cc``: default options enable quantized ops
  (``TFLITE_GPU_EXPERIMENTAL_FLAGS_ENABLE_QUANT``) and delegate one partition.

Read from google-ai-edge/LiteRT at commit f67457790c9c (2026-08). :data:`OPS` maps a builtin to
an :class:`OpRule`; :func:`check_op` returns the reasons one operator is not delegable (empty:
it is). Reason codes are stable; see ``REASONS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import tfl

SOURCE = "google-ai-edge/LiteRT@f67457790c9c: delegates/gpu/common/model_builder.cc, " + (
    "tools/versioning/gpu_compatibility.cc (kStandard broadcast)"
)

# Stable reason codes (users script against them) -> what they mean.
REASONS = {
    "no_gpu_kernel": "the GPU delegate has no parser for this builtin (MB NewOperationParser)",
    "version_above_gpu_cap": "operator-code version above the parser's cap "
    "(MB CheckMaxSupportedOpVersion)",
    "rank_above_4": "a tensor of rank >= 5 (MB IsAllAllowedTensors)",
    "non_float_tensor": "a runtime tensor of a type the delegate does not take "
    "(MB GetOpsToReplace allowed types)",
    "operands": "wrong number of runtime/constant inputs or outputs for the parser",
    "fused_activation": "fused activation the delegate cannot apply (SIGN_BIT)",
    "broadcast": "a broadcast the delegate's ADD/MUL kernels do not do (GC kStandard)",
    "attribute": "an attribute value outside the parser's limits",
    "tensor_rank": "an operand rank the parser does not take",
    "dtype": "an operand type the parser does not take",
    "graph_context": "comparison/cast pattern the delegate only takes next to a float consumer",
    "parse": "rejected when the delegate builds its graph (MB Parse)",
    "unchecked": "the ported rules could not judge the operator (counted as falling back)",
}

FLOAT = frozenset({"float32", "float16"})
QUANT = frozenset({"int8", "uint8"})  # default options enable quantized ops
MAX_RANK = 4  # MB IsAllAllowedTensors: dims->size >= 5 is refused

# Schema defaults (schema.fbs) of the option fields read below, used when a lowering left one
# out; the builder writes the same defaults.
_DEFAULTS = {
    "stride_w": 0,
    "stride_h": 0,
    "dilation_w_factor": 1,
    "dilation_h_factor": 1,
    "filter_width": 0,
    "filter_height": 0,
    "depth_multiplier": 0,
    "fused_activation_function": "NONE",
    "beta": 0.0,
    "block_size": 0,
    "ellipsis_mask": 0,
    "new_axis_mask": 0,
    "shrink_axis_mask": 0,
    "weights_format": "DEFAULT",
    "keep_num_dims": False,
    "mode": "REFLECT",
    "align_corners": False,
    "half_pixel_centers": False,
    "kernel_type": "FULL",
    "cell_clip": 0.0,
    "proj_clip": 0.0,
    "axis": 0,
}


def _opt(op: tfl.Operator, name: str):
    value = op.options.get(name)
    return _DEFAULTS.get(name) if value is None else value


# ----------------------------------------------------------------------------------------------
# Operand helpers (the OpSignature view: optional inputs are no tensor, constants have data)
# ----------------------------------------------------------------------------------------------


def _runtime_inputs(op: tfl.Operator) -> int:
    return sum(1 for t in op.inputs if t is not None and t.data is None)


def _const_inputs(op: tfl.Operator) -> int:
    return sum(1 for t in op.inputs if t is not None and t.data is not None)


def _dims(t: tfl.Tensor | None) -> tuple[int, ...]:
    return () if t is None else tuple(t.shape)


def _dtype(t: tfl.Tensor | None) -> str | None:
    return None if t is None else t.dtype.name


def _input(op: tfl.Operator, i: int) -> tfl.Tensor | None:
    return op.inputs[i] if i < len(op.inputs) else None


Finding = tuple[str, str]  # (reason code, detail)
Check = Callable[[tfl.Operator, "GraphContext | None"], "Finding | None"]


class GraphContext:
    """Producers and consumers of one subgraph's tensors, built on first use (only the
    comparison and bool-cast rules look at an operator's neighbours)."""

    def __init__(self, sub: tfl.Subgraph) -> None:
        self._sub = sub
        self._producer: dict[int, tfl.Operator] | None = None
        self._consumers: dict[int, list[tfl.Operator]] | None = None

    def producer(self, t: tfl.Tensor) -> tfl.Operator | None:
        if self._producer is None:
            self._producer = self._sub.producers()
        return self._producer.get(id(t))

    def consumers(self, t: tfl.Tensor) -> list[tfl.Operator]:
        if self._consumers is None:
            self._consumers = {k: [op for op, _ in v] for k, v in self._sub.consumers().items()}
        return self._consumers.get(id(t), [])


# ----------------------------------------------------------------------------------------------
# Checks: each one a limit stated in the source it cites
# ----------------------------------------------------------------------------------------------


def operands(runtime: int | Sequence[int], const: int | None = None, outputs: int = 1) -> Check:
    """GC CheckInputsOutputs / CheckInputsConstsOutputs: exact runtime-input count (any of
    several when a sequence), exact constant-input count when given, exact output count."""
    allowed = (runtime,) if isinstance(runtime, int) else tuple(runtime)

    def check(op, ctx):
        r, c = _runtime_inputs(op), _const_inputs(op)
        if r not in allowed or (const is not None and c != const) or len(op.outputs) != outputs:
            want = "/".join(map(str, allowed)) + " runtime"
            if const is not None:
                want += f" + {const} constant"
            return (
                "operands",
                f"takes {want} input(s) and {outputs} output(s); has {r} runtime + {c} constant"
                f" input(s) and {len(op.outputs)} output(s)",
            )
        return None

    return check


def binary_operands(op, ctx):
    """GC two-argument elementwise ops: 2 runtime inputs, or 1 runtime + 1 constant."""
    r, c = _runtime_inputs(op), _const_inputs(op)
    if (r, c) not in ((2, 0), (1, 1)) or len(op.outputs) != 1:
        return ("operands", f"takes 2 operands (at most one constant); has {r} runtime + {c}")
    return None


def input_count(n: int) -> Check:
    """GC ADD/MUL/BATCH_MATMUL/DEQUANTIZE: exactly ``n`` input tensors (constants included)."""

    def check(op, ctx):
        got = sum(1 for t in op.inputs if t is not None)
        if got != n:
            return ("operands", f"takes exactly {n} inputs; has {got}")
        return None

    return check


def at_most_runtime_inputs(n: int) -> Check:
    """GC CheckConvolutionInputOutput (<= 2 runtime inputs, 1 output) and FULLY_CONNECTED."""

    def check(op, ctx):
        r = _runtime_inputs(op)
        if r > n or len(op.outputs) != 1:
            return ("operands", f"takes at most {n} runtime inputs and 1 output; has {r}")
        return None

    return check


def activation(op, ctx):
    """GC IsActivationSupported: every fused activation but SIGN_BIT."""
    act = _opt(op, "fused_activation_function")
    if act == "SIGN_BIT":
        return ("fused_activation", "fused activation SIGN_BIT")
    return None


def positive(*fields: str) -> Check:
    """GC CheckStrides / CheckDilation / CheckKernels: the named attributes must be > 0."""

    def check(op, ctx):
        bad = [f"{f}={_opt(op, f)}" for f in fields if int(_opt(op, f)) <= 0]
        return ("attribute", ", ".join(bad) + " (must be > 0)") if bad else None

    return check


def _broadcastable_standard(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """GC CheckAddMulBroadcastCompatibility with kStandard flags: when both operands have
    rank > 1 and the ranks differ, only 3-D into 4-D with batch 1, [1, 1] into [1, h, w, c]
    and [b, c] into [b, h, w, c] broadcast."""
    if len(a) <= 1 or len(b) <= 1 or len(a) == len(b):
        return True
    longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
    if len(longer) != 4:
        return False
    if len(shorter) == 3:
        return longer[0] == 1
    if len(shorter) == 2:
        if longer[0] == 1 and shorter == (1, 1):
            return True
        return longer[0] == shorter[0] and longer[3] == shorter[1]
    return False


def broadcast(op, ctx):
    """GC ADD and MUL (MUL only when the ranks differ, which is the same condition)."""
    a, b = _dims(_input(op, 0)), _dims(_input(op, 1))
    if not _broadcastable_standard(a, b):
        return ("broadcast", f"no broadcast between {list(a)} and {list(b)}")
    return None


def identical_operands(op, ctx):
    """MB ElementwiseOperationParser::Parse: two runtime inputs that are the same tensor are
    taken only by MUL (as SQUARE) and ADD (as MUL by 2)."""
    a, b = _input(op, 0), _input(op, 1)
    if a is not None and a is b and a.data is None:
        return ("parse", f"{op.opcode} of a tensor with itself")
    return None


def _linear(dims: tuple[int, ...]) -> bool:
    """model_builder_helper.cc CheckIfLinearConvertible: every dim but the last is 1."""
    return len(dims) > 0 and all(d == 1 for d in dims[:-1])


def constant_operand(op, ctx):
    """MB ParseInputsWithConstTensor (elementwise ops with one constant operand): the constant
    is read as a scalar, a linear (per-channel) vector, an HxW plane or an HxWxC tensor; a 4-D
    one must have batch 1."""
    for t in op.inputs[:2]:
        if t is None or t.data is None:
            continue
        dims = tuple(t.shape)
        if len(dims) == 0 or int(np.prod(dims)) == 1 or _linear(dims) or len(dims) in (2, 3):
            continue
        if len(dims) == 4 and dims[0] == 1:
            continue
        return ("parse", f"constant operand of shape {list(dims)} (batch must be 1)")
    return None


def prelu_alpha(op, ctx):
    """MB PReLUOperationParser::Parse: a constant alpha, either one value per channel or an
    HxWxC tensor matching the input."""
    x, alpha = _input(op, 0), _input(op, 1)
    if alpha is None or alpha.data is None:
        return ("operands", "alpha must be constant")
    dims, shape = tuple(alpha.shape), tuple(x.shape) if x is not None else ()
    if _linear(dims) and shape and dims[-1] == shape[-1]:
        return None
    hwc = dims[1:] if len(dims) == 4 and dims[0] == 1 else dims if len(dims) == 3 else None
    if hwc is not None and len(shape) == 4 and hwc == shape[1:]:
        return None
    return ("parse", f"alpha of shape {list(dims)} for input {list(shape)}")


def split_axis_const(index: int) -> Check:
    """MB SplitOperationParser / SplitVOperationParser::Parse: the axis is read from a
    constant int32 tensor (input 0 of SPLIT, input 2 of SPLIT_V)."""

    def check(op, ctx):
        axis = _input(op, index)
        if axis is None or axis.data is None or _dtype(axis) != "int32":
            return ("parse", "split axis must be a constant int32")
        return None

    return check


def axes_int32_const(op, ctx):
    """GC CheckAxesAreInt32Const (MEAN, SUM, REDUCE_*): input 1 is a constant int32 tensor."""
    axes = _input(op, 1)
    if axes is None or axes.data is None:
        return ("operands", "axes must be constant")
    if _dtype(axes) != "int32":
        return ("dtype", f"axes are {_dtype(axes)}, not int32")
    return None


def input_rank_in(*ranks: int, index: int = 0) -> Check:
    """GC SLICE / STRIDED_SLICE: the sliced tensor is 3-D or 4-D."""

    def check(op, ctx):
        r = len(_dims(_input(op, index)))
        if r not in ranks:
            allowed = " or ".join(map(str, ranks))
            return ("tensor_rank", f"input is {r}-D; the GPU {op.opcode} takes {allowed}-D")
        return None

    return check


def min_inputs(n: int) -> Check:
    """GC SLICE (3) / STRIDED_SLICE (4): input tensors present."""

    def check(op, ctx):
        if len(op.inputs) < n:
            return ("operands", f"needs {n} inputs; has {len(op.inputs)}")
        return None

    return check


def strided_slice_masks(op, ctx):
    """GC STRIDED_SLICE: no ellipsis, new-axis or shrink-axis mask."""
    set_masks = [m for m in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask") if _opt(op, m)]
    return ("attribute", f"{', '.join(set_masks)} set") if set_masks else None


def forward_strides(op, ctx):
    """MB StridedSliceOperationParser::Parse: "Reverse slices are not supported" (negative
    strides), and strides must be non-zero."""
    strides = _input(op, 3)
    if strides is not None and strides.data is not None:
        values = np.asarray(strides.data).reshape(-1)
        if (values < 0).any():
            return ("parse", "negative stride (reverse slice)")
        if (values == 0).any():
            return ("parse", "zero stride")
    return None


def softmax_beta(op, ctx):
    """GC SOFTMAX: beta must be 1."""
    beta = float(_opt(op, "beta"))
    return None if beta == 1.0 else ("attribute", f"beta={beta} (must be 1)")


def block_size(op, ctx):
    """GC SPACE_TO_DEPTH / DEPTH_TO_SPACE: block_size > 1 (1 is refused as a no-op)."""
    size = int(_opt(op, "block_size"))
    return None if size > 1 else ("attribute", f"block_size={size} (must be > 1)")


def paddings(op, ctx):
    """GC PAD/PADV2/MIRROR_PAD: paddings tensor of shape [4, 2] or [3, 2]."""
    pads = _dims(_input(op, 1))
    if len(pads) != 2 or pads[0] not in (3, 4) or pads[1] != 2:
        return ("tensor_rank", f"paddings of shape {list(pads)} (takes 4x2 or 3x2)")
    return None


def mirror_reflect(op, ctx):
    """GC MIRROR_PAD: only REFLECT mode."""
    mode = _opt(op, "mode")
    return None if mode in ("REFLECT", 0) else ("attribute", f"mode={mode} (only REFLECT)")


def fc_rules(op, ctx):
    """GC FULLY_CONNECTED: default weights format, a runtime data input, and keep_num_dims
    only when input and output ranks agree."""
    if _opt(op, "weights_format") not in ("DEFAULT", 0):
        return ("attribute", f"weights_format={_opt(op, 'weights_format')}")
    first = _input(op, 0)
    if first is not None and first.data is not None:
        return ("operands", "constant data input")
    if _opt(op, "keep_num_dims") and op.outputs and len(_dims(first)) != op.outputs[0].rank:
        return ("attribute", "keep_num_dims with input and output ranks that differ")
    return None


def gather_data_runtime(op, ctx):
    """MB GatherOperationParser::Parse adds input 0 with AddInput, which refuses a constant
    tensor (ObjectReader::ReadNonConstantTensor): the data must be a runtime tensor (GC only
    counts 1 runtime + 1 constant, in either position)."""
    data = _input(op, 0)
    if data is not None and data.data is not None:
        return ("parse", "constant data (the GPU GATHER reads its data as a runtime tensor)")
    return None


def gather_indices(op, ctx):
    """GC GATHER: 1-D int32 indices."""
    idx = _input(op, 1)
    if len(_dims(idx)) != 1:
        return ("tensor_rank", f"{len(_dims(idx))}-D indices (takes 1-D)")
    if _dtype(idx) != "int32":
        return ("dtype", f"{_dtype(idx)} indices (takes int32)")
    return None


def depthwise_shapes(op, ctx):
    """GC CheckDepthwiseConvGpuDelegateCompatibility: 4-D input/filter/output, matching
    batch and channels, and depth_multiplier 1 unless the input has one channel."""
    x, w, out = _input(op, 0), _input(op, 1), op.outputs[0]
    if len(_dims(x)) != 4 or len(_dims(w)) != 4 or out.rank != 4:
        return ("tensor_rank", "input, filter and output must be 4-D")
    mult = int(_opt(op, "depth_multiplier"))
    in_c, out_c = x.shape[3], out.shape[3]
    if x.shape[0] != out.shape[0] or w.shape[3] != out_c or out_c != in_c * mult:
        return ("attribute", f"channels {in_c} x depth_multiplier {mult} != {out_c}")
    bias = _input(op, 2)
    if bias is not None and int(np.prod(bias.shape)) != out_c:
        return ("attribute", "bias size != output channels")
    if mult != 1 and in_c != 1:
        return ("attribute", f"depth_multiplier={mult} with {in_c} input channels")
    return None


def resize_bilinear_flags(op, ctx):
    """GC RESIZE_BILINEAR: not both align_corners and half_pixel_centers."""
    if _opt(op, "align_corners") and _opt(op, "half_pixel_centers"):
        return ("attribute", "align_corners with half_pixel_centers")
    return None


def dequantize_type(op, ctx):
    """GC DEQUANTIZE: one input and one output, input not int16."""
    if len(op.outputs) != 1:
        return ("operands", f"{len(op.outputs)} outputs (takes 1)")
    if _dtype(_input(op, 0)) == "int16":
        return ("dtype", "int16 input")
    return None


def add_n_two(op, ctx):
    """GC ADD_N: exactly two inputs."""
    n = len(op.inputs)
    return None if n == 2 else ("operands", f"{n} inputs (takes 2)")


def cast_types(op, ctx):
    """MB CastOperationParser + GC CAST: bool -> float right after a comparison (one producer,
    one consumer each side); otherwise float -> bool, or float32/int32 -> float32/int32."""
    src, dst = _dtype(_input(op, 0)), _dtype(op.outputs[0]) if op.outputs else None
    if src == "bool" and dst in FLOAT and ctx is not None:
        x = op.inputs[0]
        producer = ctx.producer(x)
        if (
            producer is not None
            and producer.opcode in COMPARISONS
            and len(ctx.consumers(x)) == 1
            and len(ctx.consumers(op.outputs[0])) == 1
        ):
            return None
    found = operands(1)(op, ctx)
    if found:
        return found
    if (src == "bool" and dst in FLOAT) or (src in FLOAT and dst == "bool"):
        return None
    if src in ("float32", "int32") and dst in ("float32", "int32"):
        return None
    return ("dtype", f"CAST {src} -> {dst}")


COMPARISONS = frozenset(
    {"GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "EQUAL", "NOT_EQUAL"}
)  # MB IsLogicalCode


def comparison_consumer(op, ctx):
    """MB ElementwiseOperationParser::IsSupported for comparisons: the bool result has one
    consumer, a CAST, SELECT or SELECT_V2 whose output is float."""
    if ctx is None:
        return None  # judged where the graph is known
    out = op.outputs[0]
    users = ctx.consumers(out)
    if ctx.producer(out) is op and len(users) == 1:
        nxt = users[0]
        if nxt.opcode in ("CAST", "SELECT", "SELECT_V2") and _dtype(nxt.outputs[0]) in FLOAT:
            return None
    return ("graph_context", "comparison result not consumed by exactly one float CAST/SELECT")


def select_operands(op, ctx):
    """GC CheckSelectV2GpuDelegateCompatibility: bool/float condition that broadcasts to the
    output; float branches that have the output's shape or are scalars (a 2-D branch only when
    constant). MB SelectV2OperationParser::Parse adds the condition with AddInput, which
    refuses a constant."""
    if len(op.inputs) != 3 or len(op.outputs) != 1:
        return ("operands", "takes 3 inputs and 1 output")
    cond, a, b = op.inputs
    if _dtype(cond) not in FLOAT | {"bool"} or _dtype(a) not in FLOAT or _dtype(b) not in FLOAT:
        return ("dtype", "condition must be bool/float and both branches float")
    out = _dims(op.outputs[0])
    cd = _dims(cond)
    tail = out[len(out) - len(cd) :] if len(cd) <= len(out) else None
    if tail is None or any(c not in (1, o) for c, o in zip(cd, tail, strict=True)):
        return ("broadcast", f"condition {list(cd)} does not broadcast to {list(out)}")
    if cond.data is not None:  # MB SelectV2OperationParser::Parse: AddInput(node, 0)
        return ("parse", "constant condition (the GPU reads it as a runtime tensor)")
    for name, t in (("then", a), ("else", b)):
        d = _dims(t)
        if d and d != out and (len(d) > 1 or d[0] > 1):
            return ("broadcast", f"{name} branch {list(d)} neither output-shaped nor scalar")
        if t.data is not None and len(d) == 2:
            return ("tensor_rank", f"2-D constant {name} branch")
    return None


def cumsum_operands(op, ctx):
    """GC CUMSUM: two inputs; float data and output of the same type; constant int32 axis."""
    if len(op.inputs) != 2:
        return ("operands", "takes 2 inputs")
    x, axis = op.inputs
    if _dtype(x) not in FLOAT or _dtype(op.outputs[0]) != _dtype(x):
        return ("dtype", "data must be float")
    if _dtype(axis) != "int32" or axis.data is None:
        return ("operands", "axis must be a constant int32")
    return None


def one_hot_operands(op, ctx):
    """GC CheckOneHotGpuDelegateCompatibility: int32 indices, last axis, only batch/channel
    non-singleton, constant scalar float on/off values."""
    if len(op.inputs) != 4:
        return ("operands", "takes 4 inputs")
    idx, _, on, off = op.inputs
    dims = _dims(idx)
    axis = int(_opt(op, "axis"))
    if _dtype(idx) != "int32" or (axis != -1 and (not dims or axis != dims[-1])):
        return ("attribute", "int32 indices and the last axis only")
    for i in range(len(dims) - 1):
        if not (len(dims) > 3 and i == 0) and dims[i] != 1:
            return ("tensor_rank", f"non-singleton dim {i}")
    for t in (on, off):
        d = _dims(t)
        if _dtype(t) != "float32" or t.data is None or len(d) > 1 or (d and d[0] > 1):
            return ("operands", "on/off values must be constant float32 scalars")
    return None


def lstm_rules(op, ctx):
    """GC LSTM: full kernel with 20/24 inputs, 1 output, sigmoid/tanh; basic kernel with
    3 runtime + 2 constant inputs, 4 outputs, tanh, no clipping."""
    act = _opt(op, "fused_activation_function")
    if _opt(op, "kernel_type") in ("FULL", 0):
        if len(op.inputs) not in (20, 24) or len(op.outputs) != 1:
            return ("operands", "full-kernel LSTM takes 20 or 24 inputs and 1 output")
        if act not in ("TANH", "SIGMOID"):
            return ("fused_activation", f"activation {act} (sigmoid or tanh only)")
        return None
    found = operands(3, 2, 4)(op, ctx)
    if found:
        return found
    if act != "TANH" or float(_opt(op, "cell_clip")) or float(_opt(op, "proj_clip")):
        return ("attribute", "basic LSTM needs TANH and no clipping")
    return None


def batch_matmul_constant(op, ctx):
    """MB BatchedMatMulOperationParser::Parse: with one runtime input the constant one must be
    2-D (it becomes a 1x1 convolution)."""
    if _runtime_inputs(op) == 1:
        second = _input(op, 1)
        if second is None or second.data is None or second.rank != 2:
            return ("parse", "BATCH_MATMUL with a constant operand that is not a 2-D rhs")
    return None


def batch_matmul_adjoint(op, ctx):
    """MB BatchedMatMulOperationParser::Parse stores no attribute: adj_x / adj_y are read by
    neither the parser nor GC, and no GPU kernel transposes an operand, so a BATCH_MATMUL with
    either flag set would be claimed and computed as the untransposed product."""
    flags = [f for f in ("adj_x", "adj_y") if op.options.get(f)]
    if flags:
        return ("attribute", f"{', '.join(flags)} set (the GPU BATCH_MATMUL reads neither)")
    return None


def transpose_perm(op, ctx):
    """MB TransposeOperationParser::Parse: a permutation of 2, 3 or 4 axes."""
    perm = _input(op, 1)
    if perm is not None and int(np.prod(perm.shape)) not in (2, 3, 4):
        return ("parse", f"{int(np.prod(perm.shape))}-axis permutation (takes 2, 3 or 4)")
    return None


# ----------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpRule:
    """One builtin the GPU delegate has a parser for.

    ``max_version``: the parser's ``CheckMaxSupportedOpVersion`` cap (None: no version gate).
    ``checks``: the limits its ``IsSupported`` (and ``Parse``) apply. ``runtime_in`` /
    ``runtime_out``: runtime tensor types allowed besides float32/float16/int8/uint8.
    """

    max_version: int | None
    checks: tuple[Check, ...] = ()
    runtime_in: frozenset[str] = frozenset()
    runtime_out: frozenset[str] = frozenset()


def _rule(cap, *checks, runtime_in=(), runtime_out=()) -> OpRule:
    return OpRule(cap, tuple(checks), frozenset(runtime_in), frozenset(runtime_out))


_UNARY = operands(1, 0)  # GC one-argument elementwise ops
_POOL = (operands(1), positive("filter_height", "filter_width", "stride_h", "stride_w"))
_CONV = (at_most_runtime_inputs(2), positive("stride_h", "stride_w"))
_DILATED = positive("dilation_h_factor", "dilation_w_factor")
_REDUCE = (operands(1, 1), axes_int32_const)
_PAD = (operands(1), paddings)

OPS: dict[str, OpRule] = {
    # MB ElementwiseOperationParser: cap 3 for MUL, 2 for every other elementwise op.
    "ADD": _rule(2, input_count(2), broadcast, constant_operand),  # GC ADD; ADD(a, a) = MUL by 2
    "ADD_N": _rule(2, add_n_two),
    "MUL": _rule(3, input_count(2), broadcast, activation, constant_operand),  # GC MUL
    **{
        name: _rule(2, _UNARY)  # GC one-argument elementwise ops
        for name in """ABS COS ELU EXP FLOOR GELU LOG LOGISTIC NEG RSQRT SIGN SIN SQRT SQUARE
        TANH""".split()
    },
    **{
        name: _rule(2, binary_operands, identical_operands, constant_operand)  # GC binary ops
        for name in "FLOOR_DIV FLOOR_MOD MAXIMUM MINIMUM POW SQUARED_DIFFERENCE".split()
    },
    "SUB": _rule(2, binary_operands, identical_operands, activation, constant_operand),
    "DIV": _rule(2, binary_operands, identical_operands, activation, constant_operand),
    # Comparisons: bool out, only feeding a float CAST/SELECT (MB IsLogicalCode / IsLogicalOp).
    **{name: _rule(2, comparison_consumer, runtime_out={"bool"}) for name in sorted(COMPARISONS)},
    "LOGICAL_AND": _rule(2, binary_operands, runtime_in={"bool"}, runtime_out={"bool"}),
    # MB ReLUOperationParser (cap 2, no further check); MB PReLUOperationParser (cap 1).
    **{name: _rule(2) for name in "RELU RELU6 RELU_0_TO_1 RELU_N1_TO_1 LEAKY_RELU".split()},
    "PRELU": _rule(1, prelu_alpha),
    "HARD_SWISH": _rule(None, operands(1)),
    "AVERAGE_POOL_2D": _rule(2, *_POOL, activation),  # MB Pooling2DOperationParser
    "MAX_POOL_2D": _rule(2, *_POOL, activation),
    "CONV_2D": _rule(6, *_CONV, _DILATED, activation),  # MB Conv2DOperationParser
    "DEPTHWISE_CONV_2D": _rule(6, *_CONV, _DILATED, activation, depthwise_shapes),
    "TRANSPOSE_CONV": _rule(3, *_CONV),  # MB TransposeConvBuiltinOperationParser
    "FULLY_CONNECTED": _rule(9, at_most_runtime_inputs(2), fc_rules),
    "BATCH_MATMUL": _rule(None, input_count(2), batch_matmul_adjoint, batch_matmul_constant),
    "CONCATENATION": _rule(2),
    "RESHAPE": _rule(1, operands(1)),
    "TRANSPOSE": _rule(4, operands(1), transpose_perm),
    "SLICE": _rule(2, min_inputs(3), input_rank_in(3, 4)),
    "STRIDED_SLICE": _rule(
        4, strided_slice_masks, min_inputs(4), input_rank_in(3, 4), forward_strides
    ),
    "PAD": _rule(2, *_PAD),
    "PADV2": _rule(2, *_PAD),
    "MIRROR_PAD": _rule(2, mirror_reflect, *_PAD),
    "SOFTMAX": _rule(2, softmax_beta),
    "SPACE_TO_DEPTH": _rule(2, operands(1), block_size),
    "DEPTH_TO_SPACE": _rule(None, operands(1), block_size),
    "SPLIT": _rule(None, split_axis_const(0)),
    "SPLIT_V": _rule(None, split_axis_const(2)),
    "PACK": _rule(None),
    "UNPACK": _rule(None),
    "TILE": _rule(None, operands(1)),
    "MEAN": _rule(None, *_REDUCE),  # MB MeanOperationParser
    **{name: _rule(None, *_REDUCE) for name in "SUM REDUCE_MAX REDUCE_MIN REDUCE_PROD".split()},
    "RESIZE_BILINEAR": _rule(3, operands(1), resize_bilinear_flags),
    "RESIZE_NEAREST_NEIGHBOR": _rule(3, operands(1)),
    "GATHER": _rule(1, binary_operands, gather_data_runtime, gather_indices, runtime_in={"int32"}),
    "CAST": _rule(None, cast_types, runtime_in={"bool", "int32"}, runtime_out={"bool", "int32"}),
    "SELECT": _rule(1, select_operands, runtime_in={"bool"}),
    "SELECT_V2": _rule(1, select_operands, runtime_in={"bool"}),
    "ONE_HOT": _rule(1, one_hot_operands, runtime_in={"int32"}),
    "CUMSUM": _rule(1, cumsum_operands),
    "DENSIFY": _rule(1, operands(0)),
    "LSTM": _rule(4, lstm_rules),
    "QUANTIZE": _rule(2, operands(1)),  # only with quantized ops enabled (the default)
    "DEQUANTIZE": _rule(3, input_count(1), dequantize_type),  # a constant input is fine
}

# CUSTOM ops the delegate has parsers for (MB NewOperationParser, GC custom ops).
CUSTOM_OPS = frozenset(
    {"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "Resampler"}
)


def check_op(op: tfl.Operator, version: int, ctx: GraphContext | None = None) -> list[Finding]:
    """Why the GPU delegate would not take ``op`` written at ``version`` (empty: it would).

    ``ctx`` gives the operator's neighbours; without it the neighbour rules (comparisons, bool
    casts) are not judged (used for candidate rewrites, whose neighbours are not built yet).
    """
    if op.opcode == "CUSTOM":
        if op.custom_code in CUSTOM_OPS:
            return _tensor_findings(op, _rule(None))
        return [("no_gpu_kernel", f"custom op {op.custom_code!r} has no GPU parser")]
    rule = OPS.get(op.opcode)
    if rule is None:
        return [("no_gpu_kernel", f"the GPU delegate has no {op.opcode}")]
    findings: list[Finding] = []
    if rule.max_version is not None and version > rule.max_version:
        findings.append(
            ("version_above_gpu_cap", f"{op.opcode} v{version} > GPU cap v{rule.max_version}")
        )
    for check in rule.checks:
        found = check(op, ctx)
        if found is not None:
            findings.append(found)
            break  # the parser stops at its first failed limit
    findings.extend(_tensor_findings(op, rule))
    return findings


_DTYPES: dict[frozenset[str], frozenset[np.dtype]] = {}


def _as_dtypes(names: frozenset[str]) -> frozenset[np.dtype]:
    """numpy dtypes of type names (compared by identity-cheap hashing, not ``dtype.name``,
    which is slow enough to matter on 10^4-operator graphs)."""
    found = _DTYPES.get(names)
    if found is None:
        found = _DTYPES[names] = frozenset(np.dtype(n) for n in names)
    return found


def _tensor_findings(op: tfl.Operator, rule: OpRule) -> list[Finding]:
    """MB IsAllAllowedTensors over inputs and outputs: rank < 5 for every tensor, and an
    allowed type for every runtime (non-constant) one."""
    findings: list[Finding] = []
    high = 0
    bad: set[str] = set()
    allowed = _as_dtypes(FLOAT | QUANT | rule.runtime_in)
    for t in op.inputs:
        if t is not None:
            if len(t.shape) > high:
                high = len(t.shape)
            if t.data is None and t.dtype not in allowed:
                bad.add(t.dtype.name)
    allowed = _as_dtypes(FLOAT | QUANT | rule.runtime_out)
    for t in op.outputs:
        if len(t.shape) > high:
            high = len(t.shape)
        if t.data is None and t.dtype not in allowed:
            bad.add(t.dtype.name)
    if high > MAX_RANK:
        findings.append(("rank_above_4", f"{high}-D tensor (the GPU delegate is 4-D)"))
    if bad:
        findings.append(("non_float_tensor", f"runtime {'/'.join(sorted(bad))} tensor(s)"))
    return findings
