"""Which format each operator can read its weight in, in the int4 weight variant: int4
blockwise, int4 per channel, int8, or float (and why), from what the stock LiteRT CPU kernels
(ai-edge-litert 2.3) accept; ``int4.py``'s docstring has the kernel facts, and
``docs/quantization_int4.md`` the table they were measured into.

Split from ``int4.py`` because two jobs ask the same question: the rewrite (which format
each weight gets) and the size-budget chooser (``int4_budget.py``: which weights are 4-bit
candidates that int8 could replace, and what their 4-bit rounding is).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import tfl
from .dynamic_range import HYBRID_WEIGHT_AXIS

# The CPU kernel's 4-bit FULLY_CONNECTED path (the only one that reads blockwise scales).
FC4_MIN_ROWS = 4
FC4_MIN_DEPTH = 32
# Fused activations a blockwise FULLY_CONNECTED gets as operators of their own.
UNFUSED = {"RELU": "RELU", "RELU6": "RELU6", "RELU_N1_TO_1": "RELU_N1_TO_1", "TANH": "TANH"}


@dataclass(frozen=True)
class Form:
    """How one operator reads one weight: ``kind`` int4-block / int4-channel / int8, the
    layout (``transpose`` for a BATCH_MATMUL right-hand side) and the axis or block size."""

    kind: str
    arg: int
    transpose: bool = False
    reason: str = ""  # why not int4 blockwise (a kernel constraint), for the report
    note: str = ""  # how it is run, when not the op itself (for the report)
    offsets: bool = False  # blockwise with per-block offsets
    as_fc: bool = False  # a 1x1 CONV_2D run as a FULLY_CONNECTED (which has a blockwise kernel)


def _pointwise(op: tfl.Operator, w: tfl.Tensor, x: tfl.Tensor) -> bool:
    """A 1x1, stride-1, ungrouped CONV_2D on NHWC: a FULLY_CONNECTED over the channels."""
    o = op.options
    return (
        w.rank == 4
        and w.shape[1:3] == (1, 1)
        and o.get("stride_h", 1) == 1
        and o.get("stride_w", 1) == 1
        and x.rank == 4
        and x.shape[-1] == w.shape[3]
    )


def _half_scales_fit(w: tfl.Tensor) -> bool:
    """Blockwise scales are float16: max|w| / 7 must stay finite there."""
    return float(np.abs(w.data).max()) / 7.0 < float(np.finfo(np.float16).max)


def _fc_form(rows, cols, block, transpose=False, note="", x=None, w=None, act="NONE") -> Form:
    """Blockwise where the CPU 4-bit kernel takes it, else per-channel (and why)."""
    why = ""
    if not block:
        why = "int4 per-channel: blockwise not asked for (block size 0)"
    elif act not in UNFUSED and act not in (None, "NONE"):
        why = f"int4 per-channel: the blockwise kernel ignores a fused {act}"
    elif w is not None and not _half_scales_fit(w):
        why = "int4 per-channel: weights too large for float16 block scales"
    elif cols % block or block % 2 or rows < FC4_MIN_ROWS or cols < FC4_MIN_DEPTH:
        why = (
            f"int4 per-channel: blockwise needs >= {FC4_MIN_ROWS} rows, >= {FC4_MIN_DEPTH} "
            f"input channels and blocks of {block} dividing them (CPU 4-bit kernel)"
        )
    if not why:
        offsets = x is not None and x.rank >= 2
        return Form("int4-block", block, transpose, note=note, offsets=offsets)
    return Form("int4-channel", -7, transpose, why, note)  # (-8 is misread: codes -7..7)


def reader_form(op: tfl.Operator, index: int, block: int) -> Form | str:
    """The format ``op`` can read its constant input ``index`` in, or why it cannot."""
    w = op.inputs[index]
    x = op.inputs[1 - index] if op.opcode in ("GATHER", "BATCH_MATMUL") else op.inputs[0]
    if op.opcode in HYBRID_WEIGHT_AXIS and index == 1:
        if x is None or x.dtype != np.float32:
            return "input is not float32"
        if op.opcode == "FULLY_CONNECTED":
            if w.rank != 2:
                return "weight is not 2-D"
            act = op.options.get("fused_activation_function", "NONE")
            return _fc_form(w.shape[0], w.shape[1], block, x=x, w=w, act=act)
        if op.opcode == "CONV_2D":
            if _pointwise(op, w, x):
                act = op.options.get("fused_activation_function", "NONE")
                note = "FULLY_CONNECTED (a 1x1 CONV_2D: blockwise)"
                rows, cols = w.shape[0], w.shape[3]
                form = _fc_form(rows, cols, block, x=x, w=w, act=act, note=note)
                if form.kind == "int4-block":
                    return dataclasses.replace(form, as_fc=True)
            return Form(
                "int4-channel", -7, reason="int4 per-channel: CONV_2D has no blockwise kernel"
            )
        return Form(
            "int8", HYBRID_WEIGHT_AXIS[op.opcode], reason=f"int8: {op.opcode} has no int4 kernel"
        )
    if op.opcode == "BATCH_MATMUL" and index == 1:
        if x.dtype != np.float32 or op.options.get("adj_x"):
            return "left-hand side is not a plain float32 operand"
        if any(d != 1 for d in w.shape[:-2]) or w.rank < 2:
            return "batched constant right-hand side (BATCH_MATMUL has no int4 kernel)"
        k, n = (w.shape[-1], w.shape[-2]) if op.options.get("adj_y") else w.shape[-2:]
        if tuple(op.outputs[0].shape) != tuple(x.shape[:-1]) + (n,) or x.shape[-1] != k:
            return "output shape is not the left-hand side's with the last dimension replaced"
        note = "FULLY_CONNECTED on the transposed weight (BATCH_MATMUL has no int4 kernel)"
        return _fc_form(n, k, block, transpose=not op.options.get("adj_y"), note=note, x=x, w=w)
    if op.opcode == "GATHER" and index == 0:
        if op.options.get("axis", 0) != 0 or op.options.get("batch_dims", 0) != 0:
            return "GATHER not along axis 0 of the table"
        if w.rank != 2 or x.dtype not in (np.int32, np.int64):
            return "table not 2-D or indices not integer"
        rows, cols = w.shape
        if block and cols % block == 0 and block % 2 == 0 and _half_scales_fit(w):
            return Form("int4-block", block, note="EMBEDDING_LOOKUP", offsets=True)
        if cols % 2 == 0:
            why = f"int4 per-row: blocks of {block} do not divide the row"
            return Form("int4-channel", -8, reason=why, note="EMBEDDING_LOOKUP")
        return "odd row length (EMBEDDING_LOOKUP reads odd int4 rows from the wrong nibble)"
    return f"{op.opcode} reads it (no quantized kernel for this input)"


def weight_index(op: tfl.Operator) -> int | None:
    """Which input of ``op`` is the weight a quantized kernel could read (a GATHER's table),
    or None."""
    if op.opcode == "GATHER":
        return 0
    if op.opcode in HYBRID_WEIGHT_AXIS or op.opcode == "BATCH_MATMUL":
        return 1 if len(op.inputs) > 1 else None
    return None


def shared_blocker(w: tfl.Tensor, readers, block: int) -> str:
    """Why ``w`` must stay float for every reader (one of them cannot take it), or ''."""
    for reader, i in readers.get(id(w), []):
        if weight_index(reader) != i or isinstance(reader_form(reader, i, block), str):
            return f"the weight is also read by {reader.opcode} ({reader.onnx_node}), which needs it float"
    return ""
