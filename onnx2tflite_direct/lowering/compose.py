"""Small emit helpers for lowerings that are compositions of many builtins.

Composite ops (Attention, Einsum, losses, DFT ...) chain a dozen TFLite operators whose
intermediate shapes the lowering has to compute itself; these helpers keep that bookkeeping
(temp tensors, broadcast shapes, constant operands) out of the op logic.
"""

from __future__ import annotations

import numpy as np

NONE = {"fused_activation_function": "NONE"}
ARITH = {"ADD", "SUB", "MUL", "DIV"}


def op(ctx, opcode: str, inputs, shape, dtype=np.float32, hint: str = "t", out=None, **options):
    """Emit ``opcode`` into a new temp of ``shape`` (or into ``out``) and return it."""
    if opcode in ARITH:
        options = {**NONE, **options}
    if out is None:
        out = ctx.temp(dtype, tuple(int(d) for d in shape), hint)
    ctx.emit(opcode, list(inputs), [out], **options)
    return out


def const(ctx, value, dtype=np.float32, hint: str = "c"):
    return ctx.const_tensor(np.asarray(value, dtype=dtype), hint)


def binary(ctx, opcode: str, a, b, hint: str = "t", out=None, dtype=None):
    """Broadcasting binary op; the result shape is the numpy broadcast of both operands."""
    shape = np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
    return op(ctx, opcode, [a, b], shape, dtype or a.dtype, hint, out)


def reshape(ctx, x, shape, hint: str = "reshaped", out=None):
    if out is not None:
        ctx.driver.reshape(x, out)
        return out
    if tuple(x.shape) == tuple(shape):
        return x
    return ctx.reshape(x, tuple(int(d) for d in shape), hint)


def transpose(ctx, x, perm, hint: str = "transposed"):
    if list(perm) == list(range(len(perm))):
        return x
    shape = [x.shape[p] for p in perm]
    return op(ctx, "TRANSPOSE", [x, const(ctx, perm, np.int32, "perm")], shape, x.dtype, hint)


def matmul(ctx, a, b, adj_y: bool = False, hint: str = "matmul", out=None):
    """BATCH_MATMUL with numpy-style batch broadcasting."""
    batch = np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    n = b.shape[-2] if adj_y else b.shape[-1]
    shape = (*batch, a.shape[-2], n)
    return op(ctx, "BATCH_MATMUL", [a, b], shape, a.dtype, hint, out, adj_x=False, adj_y=adj_y)


def dense(ctx, x, weights, bias, shape, hint: str = "fc"):
    """FULLY_CONNECTED of rows ``x`` [N, K] with a weights tensor [M, K] (+ a bias tensor or
    None) into a new float32 [N, M] ``shape``: no fused activation, no kept dims."""
    return op(
        ctx,
        "FULLY_CONNECTED",
        [x, weights, bias],
        shape,
        np.float32,
        hint,
        fused_activation_function="NONE",
        keep_num_dims=False,
    )


def select(ctx, cond, a, b, hint: str = "select", out=None):
    shape = np.broadcast_shapes(tuple(cond.shape), tuple(a.shape), tuple(b.shape))
    return op(ctx, "SELECT_V2", [cond, a, b], shape, a.dtype, hint, out)


def cast(ctx, x, dtype, hint: str = "cast"):
    if np.dtype(x.dtype) == np.dtype(dtype):
        return x
    return op(ctx, "CAST", [x], x.shape, dtype, hint)


def unary(ctx, opcode: str, x, hint: str = "t", out=None):
    """A one-input op whose result has the input's shape and dtype (ABS, SQRT, RSQRT ...)."""
    return op(ctx, opcode, [x], x.shape, x.dtype, hint, out)


def reduce(ctx, opcode: str, x, axes, keep_dims: bool, hint: str = "reduced", out=None):
    axes = sorted({int(a) % len(x.shape) for a in axes})
    shape = [1 if i in axes else d for i, d in enumerate(x.shape)]
    if not keep_dims:
        shape = [d for i, d in enumerate(shape) if i not in axes]
    return op(
        ctx,
        opcode,
        [x, const(ctx, axes, np.int32, "axes")],
        shape,
        x.dtype,
        hint,
        out,
        keep_dims=keep_dims,
    )


def concat(ctx, parts, axis: int, hint: str = "concat", out=None):
    axis = axis % len(parts[0].shape)
    shape = list(parts[0].shape)
    shape[axis] = sum(p.shape[axis] for p in parts)
    return op(
        ctx,
        "CONCATENATION",
        parts,
        shape,
        parts[0].dtype,
        hint,
        out,
        axis=axis,
        fused_activation_function="NONE",
    )


def split_v(ctx, x, sizes, axis: int, hint: str = "part"):
    axis = axis % len(x.shape)
    outs = []
    for k, size in enumerate(sizes):
        shape = list(x.shape)
        shape[axis] = size
        outs.append(ctx.temp(x.dtype, tuple(shape), f"{hint}{k}"))
    ctx.emit(
        "SPLIT_V",
        [x, const(ctx, sizes, np.int32, "sizes"), const(ctx, axis, np.int32, "axis")],
        outs,
        num_splits=len(sizes),
    )
    return outs


def gather(ctx, x, indices: np.ndarray | object, axis: int, hint: str = "gathered"):
    """GATHER along ``axis`` with constant (numpy) or runtime indices."""
    axis = axis % len(x.shape)
    idx = const(ctx, indices, np.int32, "indices") if isinstance(indices, np.ndarray) else indices
    shape = list(x.shape[:axis]) + list(idx.shape) + list(x.shape[axis + 1 :])
    return op(ctx, "GATHER", [x, idx], shape, x.dtype, hint, axis=axis, batch_dims=0)
