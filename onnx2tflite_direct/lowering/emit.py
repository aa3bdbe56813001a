"""The one way a lowering emits TFLite operators: an :class:`Emitter` bound to its node.

A lowering makes ``e = Emitter(ctx)`` (or ``Emitter(ctx, dtype)`` to compute in another dtype)
and chains values: each method emits one builtin, infers its result's shape and dtype, and
returns the new tensor, so the op logic reads as arithmetic and never books temp shapes:

    scaled = e.op("MUL", x, e.const(0.5))                 # broadcast shape, x's dtype
    rows = e.reshape(e.transpose(scaled, [0, 2, 1]), (n, w * h))
    e.result(e.reduce("SUM", rows, [1], keep_dims=False))  # into the node's output

Why one class and not free functions: the node's compute dtype (the dtype constants get by
default, what :meth:`input` casts to) and the record of which op produced which value (so
:meth:`result` can retarget that op onto the node's output instead of copying) belong to one
node's chain; a bound object carries both and keeps call sites short (no ``ctx`` argument).

Shapes: elementwise ops (:data:`BROADCAST`) and the structured helpers (reshape, transpose,
matmul, dense, reduce, concat, split, gather, pad, crop, cast) infer their result; any other
opcode needs an explicit ``shape=`` (a missing one is an internal error, never a guessed
shape). ``out=`` writes into a given tensor (or list of tensors, for multi-output ops) instead
of a new temp. Temps are named ``<node>/<hint>``; the default hint is the opcode in lower case.

No lowering calls ``ctx.emit`` itself (tests/test_architecture.py checks it); only
``control_flow`` builds loop and branch bodies op by op in a body's own Driver, below any node.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from .. import errors

BF16 = np.dtype(ml_dtypes.bfloat16)
ARITH = {"ADD", "SUB", "MUL", "DIV"}
# Ops whose result has the numpy broadcast shape of their (non-None) inputs.
BROADCAST = frozenset(
    """ABS ADD ATAN2 BITCAST BITWISE_XOR CAST CEIL COS DEQUANTIZE DIV ELU EQUAL EXP FLOOR FLOOR_DIV
    FLOOR_MOD GELU GREATER GREATER_EQUAL HARD_SWISH LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND
    LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MINIMUM MUL NEG NOT_EQUAL POW PRELU
    QUANTIZE RELU RELU6 RELU_0_TO_1 RELU_N1_TO_1 RIGHT_SHIFT ROUND RSQRT SELECT SELECT_V2 SIGN
    SIN SOFTMAX SQRT SQUARE SQUARED_DIFFERENCE SUB TANH ZEROS_LIKE""".split()
)


def np_dtype(dtype) -> np.dtype:
    """A numpy dtype from a dtype, a scalar type or an ONNX-style name ("bfloat16" too)."""
    if isinstance(dtype, str):
        return BF16 if dtype == "bfloat16" else np.dtype(dtype)
    return np.dtype(dtype)


class Emitter:
    """Emits the TFLite ops of one node; see the module docstring."""

    def __init__(self, ctx, dtype=np.float32):
        self.ctx = ctx
        self.dtype = np_dtype(dtype)
        self._producer: dict[int, object] = {}

    # ---- values ---------------------------------------------------------------------------
    def const(self, value, dtype=None, hint: str = "c"):
        """A constant tensor of ``value`` (default dtype: the emitter's)."""
        return self.ctx.const_tensor(np.asarray(value, dtype=dtype or self.dtype), hint)

    def input(self, i: int, dtype=None):
        """Input ``i`` cast to ``dtype`` (default: the emitter's)."""
        return self.cast(self.ctx.input(i), dtype or self.dtype)

    def result(self, t, i: int = 0, copy: bool = False) -> None:
        """Make ``t`` output ``i``: retarget the op that produced it, or CAST (RESHAPE) into the
        output. ``copy`` always does the latter: ``t`` keeps its producer (a value other ops
        read too must not be retargeted away from them)."""
        out = self.ctx.output(i)
        if t.dtype != out.dtype:
            self.ctx.emit("CAST", [t], [out])
            return
        op = None if copy else self._producer.get(id(t))
        if op is not None and tuple(t.shape) == tuple(out.shape):
            op.outputs[op.outputs.index(t)] = out
            return
        self.ctx.emit("RESHAPE", [t, self.const(np.array(out.shape, np.int32), np.int32)], [out])

    # ---- the generic op -------------------------------------------------------------------
    def op(self, opcode: str, *inputs, shape=None, dtype=None, hint=None, out=None, **options):
        """Emit ``opcode`` on ``inputs`` (None: an omitted optional input) and return its
        output: ``out`` when given (a tensor, or a list for several outputs), else a new temp
        of ``shape`` (default: the inputs' broadcast shape, for :data:`BROADCAST` ops) and
        ``dtype`` (default: the data input's, the first one but SELECT's condition)."""
        if opcode in ARITH:
            options.setdefault("fused_activation_function", "NONE")
        if out is None:
            if shape is None:
                if opcode not in BROADCAST:
                    raise errors.InternalError(
                        errors.INTERNAL_ERROR, f"{opcode}: the emitter needs its shape="
                    )
                shape = np.broadcast_shapes(*[tuple(t.shape) for t in inputs if t is not None])
            data = inputs[1] if opcode in ("SELECT", "SELECT_V2") else inputs[0]
            shape = tuple(int(d) for d in shape)
            out = self.ctx.temp(dtype or data.dtype, shape, hint or opcode.lower())
        outs = list(out) if isinstance(out, list | tuple) else [out]
        op = self.ctx.emit(opcode, list(inputs), outs, **options)
        for t in outs:
            self._producer[id(t)] = op
        return out

    def custom(self, code: str, options: bytes, inputs, outputs) -> None:
        """A CUSTOM op named ``code`` with flexbuffer ``options`` into given ``outputs``."""
        op = self.ctx.emit("CUSTOM", list(inputs), list(outputs))
        op.custom_code = code
        op.custom_options = options

    # ---- ops whose shape follows from their arguments -------------------------------------
    def cast(self, x, dtype, hint: str = "cast"):
        """``x`` as ``dtype`` (no op when it already is)."""
        dtype = np_dtype(dtype)
        return x if np.dtype(x.dtype) == dtype else self.op("CAST", x, dtype=dtype, hint=hint)

    def reshape(self, x, shape=None, hint: str = "reshaped", out=None):
        """``x`` viewed as ``shape`` (no op when it already has it; a constant stays one), or
        as the given ``out`` tensor (SQUEEZE when that is a scalar)."""
        if out is not None:
            self.ctx.driver.reshape(x, out)
            return out
        if tuple(x.shape) == tuple(shape):
            return x
        return self.ctx.reshape(x, tuple(int(d) for d in shape), hint)

    def transpose(self, x, perm, hint: str = "transposed"):
        if list(perm) == list(range(len(perm))):
            return x
        perm_t = self.const(perm, np.int32, "perm")
        return self.op("TRANSPOSE", x, perm_t, shape=[x.shape[p] for p in perm], hint=hint)

    def matmul(self, a, b, adj_y: bool = False, hint: str = "matmul", out=None):
        """BATCH_MATMUL with numpy-style batch broadcasting."""
        batch = np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
        n = b.shape[-2] if adj_y else b.shape[-1]
        shape = (*batch, a.shape[-2], n)
        return self.op(
            "BATCH_MATMUL", a, b, shape=shape, hint=hint, out=out, adj_x=False, adj_y=adj_y
        )

    def dense(self, x, weights, bias, hint: str = "fc"):
        """FULLY_CONNECTED of ``x`` (rows of K = weights.shape[1] values) with weights [M, K]
        (+ a bias tensor or None) into a float32 [rows, M]: no fused activation or kept dims."""
        rows = math.prod(x.shape) // weights.shape[1]
        return self.op(
            "FULLY_CONNECTED",
            x,
            weights,
            bias,
            shape=(rows, weights.shape[0]),
            dtype=np.float32,
            hint=hint,
            fused_activation_function="NONE",
            keep_num_dims=False,
        )

    def reduce(self, opcode: str, x, axes, keep_dims: bool, hint: str = "reduced", out=None):
        axes = sorted({int(a) % len(x.shape) for a in axes})
        shape = [1 if i in axes else d for i, d in enumerate(x.shape)]
        if not keep_dims:
            shape = [d for i, d in enumerate(shape) if i not in axes]
        axes_t = self.const(axes, np.int32, "axes")
        return self.op(opcode, x, axes_t, shape=shape, hint=hint, out=out, keep_dims=keep_dims)

    def concat(self, parts, axis: int, hint: str = "concat", out=None):
        axis = axis % len(parts[0].shape)
        shape = list(parts[0].shape)
        shape[axis] = sum(p.shape[axis] for p in parts)
        return self.op(
            "CONCATENATION",
            *parts,
            shape=shape,
            hint=hint,
            out=out,
            axis=axis,
            fused_activation_function="NONE",
        )

    def split(self, x, sizes, axis: int, hint: str = "part"):
        """SPLIT_V of ``x`` into pieces of ``sizes`` along ``axis``; returns the pieces."""
        axis = axis % len(x.shape)
        outs = []
        for k, size in enumerate(sizes):
            shape = list(x.shape)
            shape[axis] = size
            outs.append(self.ctx.temp(x.dtype, tuple(shape), f"{hint}{k}"))
        sizes_t = self.const(sizes, np.int32, "sizes")
        axis_t = self.const(axis, np.int32, "axis")
        return self.op("SPLIT_V", x, sizes_t, axis_t, out=outs, num_splits=len(sizes))

    def gather(self, x, indices, axis: int, hint: str = "gathered", out=None):
        """GATHER along ``axis`` with constant (numpy) or run-time indices."""
        axis = axis % len(x.shape)
        idx = (
            self.const(indices, np.int32, "indices") if isinstance(indices, np.ndarray) else indices
        )
        shape = list(x.shape[:axis]) + list(idx.shape) + list(x.shape[axis + 1 :])
        return self.op("GATHER", x, idx, shape=shape, hint=hint, out=out, axis=axis, batch_dims=0)

    def pad(self, x, stored_pads, value: float = 0.0, hint: str = "padded"):
        """PAD (PADV2 for a nonzero ``value``) by a (rank, 2) array of stored-axis pads."""
        stored_pads = np.asarray(stored_pads, dtype=np.int32)
        shape = tuple(int(d + b + e) for d, (b, e) in zip(x.shape, stored_pads, strict=False))
        out = self.ctx.temp(x.dtype, shape, hint)
        pads_t = self.ctx.const_tensor(stored_pads, "paddings")
        if value == 0.0:
            return self.op("PAD", x, pads_t, out=out)
        value_t = self.ctx.const_tensor(np.array(value, dtype=x.dtype), "pad_value")
        return self.op("PADV2", x, pads_t, value_t, out=out)

    def crop(self, x, begin, end, hint: str = "cropped"):
        """``x[begin:end]`` over the stored axes with one unit-stride STRIDED_SLICE (what
        negative pads and a center crop cut off)."""
        out = self.ctx.temp(x.dtype, [e - b for b, e in zip(begin, end, strict=True)], hint)
        return self.op(
            "STRIDED_SLICE",
            x,
            self.ctx.const_tensor(np.array(begin, np.int32), "begin"),
            self.ctx.const_tensor(np.array(end, np.int32), "end"),
            self.ctx.const_tensor(np.ones(len(begin), np.int32), "strides"),
            out=out,
        )
