"""GlobalAveragePool / AveragePool summed in the order of onnxruntime's CPU kernels, for
dynamically quantized graphs (part of rule ``float_carried_integers``, ``float_carried.py``).

Why: in a ``quantize_dynamic`` model every DynamicQuantizeLinear derives its scale from the
max and min of its input, so one float32 ulp in a float op before it can move a rounding tie
of the quantization and shift the whole next tensor. The float ops between the integer chains
must therefore round as onnxruntime rounds them, not merely to within an ulp. LiteRT's MEAN
(XNNPACK or builtin) sums in its own order; onnxruntime's GlobalAveragePool (MLAS
``MlasPoolGlobalKernel``) sums each channel's ``n = H * W`` values in four float32 lanes
(lane j: values j, j + 4, ... of the first ``4 * (n // 4)``, each lane sequentially), adds the
lanes as ``(l0 + l2) + (l1 + l3)`` (its SSE/AVX reduction), adds the remaining ``n % 4`` values
one by one and divides by ``n`` (measured: the same bits as onnxruntime's GlobalAveragePool
on any input tried; a resnet50-like and a mobilenetv2-like dynamic model then match
onnxruntime's outputs bit for bit, where MEAN left the classifier's DynamicQuantizeLinear
scale one ulp off: 143 and 139 dB).

An AveragePool whose kernel covers the whole input (stride 1, no pads) is the same global
kernel. A windowed AveragePool that MLAS runs in its vector kernel (2-D, kernels up to 32, a
horizontal stride up to 2: ``MlasPool2DVectorKernel``) sums each output's window column by
column down the valid rows (sequentially), then those column sums left to right (the padding
columns as zeros), and divides by the count of valid values (``count_include_pad=0``) or by
the kernel size: here as a zero PAD, one strided SLICE per kernel row and column and
sequential ADDs, then a DIV by the constant counts (inception-v2-like 3x3 pools with pads:
4 of every 10 outputs were an ulp or more off with AVERAGE_POOL_2D). From opset 19 (dilations)
onnxruntime runs AveragePool in its own loop (AveragePoolV19), not MLAS: each window's valid
values added one by one, rows outer, from 0, then divided by their count or by kh * kw
(``count_include_pad``; with ``ceil_mode`` the taps up to the padded end): here one strided
SLICE and one ADD per kernel tap (a padding tap adds an exact zero), up to ``MAX_TAPS`` taps,
and a DIV by the constant counts.

The global order as ONNX ops, every one a correctly rounded IEEE operation on any CPU: the
channel-last values as [N, n, C], one ADD per group of four (the four lanes' sequential sums),
the lane additions, the remaining values, a division; up to ``MAX_GROUPS`` groups (larger
pools keep MEAN: a sequential sum that long needs CUMSUM, outside XNNPACK). onnxruntime on
ARM64 adds the lanes pairwise ``(l0 + l1) + (l2 + l3)`` (NEON ``vpaddq``): there one rounding
of that step may differ. An infinite or NaN input: the same bits on XNNPACK; LiteRT's builtin
ADD clamps its results to +-FLT_MAX (and its SSE min/max turn a NaN into a bound), so on the
builtin kernels such a pool is finite where onnxruntime's is not (as every float ADD there).
"""

from __future__ import annotations

import numpy as np

from .ir import Graph, Node, value_dtype

F32 = np.dtype(np.float32)
LANES = 4  # MLAS_FLOAT32X4
MIN_OPSET = 11  # Slice with steps
# onnxruntime runs AveragePool-19 and later (dilations) in its own loop (AveragePoolV19), not
# MLAS: each window's valid values added one by one in row-major order from 0, divided by their
# count (or, count_include_pad, by its kernel count clamped as below): ``_emit_taps``
# (measured: opset 19 and 21 3x3 pools with pads were an ulp off onnxruntime in MLAS's order).
AVERAGE_POOL_MLAS_BEFORE = 19
MAX_TAPS = 64  # (one SLICE and one ADD per kernel tap)
REDUCTION_BUFFER = 2048  # MLAS_POOL_REDUCTION_BUFFER_STACK (floats)
# Global pools of up to 16 groups of four values (7x7, 8x8: a classifier's pool) as one ADD
# per group in XNNPACK. Larger ones keep LiteRT's MEAN: their sequential sum needs CUMSUM,
# which XNNPACK does not take (one more partition per pool: efficientnet-lite-like's 17 SE
# pools 1.24x the latency, tv_mobilenet_v3_small_ts_qdyn 1.09x; benchmarks/bench_mlas_pool.py).
MAX_GROUPS = 16
ENABLED = True  # (off: LiteRT's MEAN; benchmarks compare the two)


def applies(graph: Graph, node: Node) -> bool:
    """A float32 GlobalAveragePool or AveragePool that onnxruntime runs in one of the MLAS
    kernels reproduced here (:func:`_window`; a global one up to ``MAX_GROUPS``), of static
    4-D shape, in an opset with Slice steps (an AveragePool of opset 19 on: ``_taps``)."""
    if not ENABLED or node.domain != "" or not node.outputs or not node.inputs:
        return False
    if node.op_type not in ("GlobalAveragePool", "AveragePool"):
        return False
    v = graph.values.get(node.inputs[0])
    if v is None or value_dtype(graph, node.inputs[0]) != F32 or not v.is_static:
        return False
    if len(v.shape) != 4 or graph.opsets.get("", 1) < MIN_OPSET:
        return False
    form = _form(graph, node, v.shape)
    if form is None:
        return False
    return form[0] != "global" or v.shape[2] * v.shape[3] // LANES <= MAX_GROUPS


def _form(graph: Graph, node: Node, shape):
    if node.op_type == "GlobalAveragePool":
        return "global", None
    if graph.opsets.get("", 1) >= AVERAGE_POOL_MLAS_BEFORE:
        out = graph.values.get(node.outputs[0])
        return _taps(node, shape, out.shape if out is not None and out.is_static else None)
    return _window(node, shape)


def _taps(node: Node, shape, out_shape=None):
    """("taps", (kernel, strides, pads, dilations, divisors)) for an AveragePool onnxruntime
    runs in AveragePoolV19 (opset 19 on) with at most ``MAX_TAPS`` taps, else None; with
    ``ceil_mode`` the output's static shape says how many windows there are and ``pads``
    grows at the end to hold the last one (its taps beyond the padding add zeros)."""
    a = node.attrs
    _, _, h, w = shape
    kernel = [int(k) for k in a.get("kernel_shape", [])]
    strides = [int(k) for k in a.get("strides", [1, 1])]
    pads = [int(k) for k in a.get("pads", [0, 0, 0, 0])]
    dil = [int(k) for k in a.get("dilations", [1, 1])]
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if len(kernel) != 2 or len(strides) != 2 or len(pads) != 4 or len(dil) != 2:
        return None
    ceil = bool(int(a.get("ceil_mode", 0)))
    if auto_pad != "NOTSET" or kernel[0] * kernel[1] > MAX_TAPS:
        return None
    if min(*kernel, *strides, *dil) < 1 or min(pads) < 0:
        return None
    span = [(kernel[i] - 1) * dil[i] + 1 for i in (0, 1)]
    if pads[0] >= span[0] or pads[2] >= span[0] or pads[1] >= span[1] or pads[3] >= span[1]:
        return None
    oh = (h + pads[0] + pads[2] - span[0]) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - span[1]) // strides[1] + 1
    if ceil:
        if out_shape is None or len(out_shape) != 4:
            return None
        if out_shape[2] not in (oh, oh + 1) or out_shape[3] not in (ow, ow + 1):
            return None
        oh, ow = int(out_shape[2]), int(out_shape[3])
    if oh < 1 or ow < 1:
        return None
    include = bool(int(a.get("count_include_pad", 0)))
    # AveragePoolV19's divisors: the valid taps, or the kernel's taps up to the padded end
    # (measured: onnxruntime 1.32 divides by kh * kw with asymmetric pads too)
    per_axis = []
    for axis, out, size, clamp in ((0, oh, h, pads[2]), (1, ow, w, pads[3])):
        start = np.arange(out) * strides[axis] - pads[axis]
        taps = start[:, None] + np.arange(kernel[axis]) * dil[axis]
        valid = ((taps >= 0) & (taps < size)).sum(axis=1)
        end = np.minimum(start + kernel[axis] * dil[axis], size + clamp)
        full = 1 + np.trunc((end - start - 1) / dil[axis]).astype(np.int64)
        per_axis.append(full if include else valid)
    counts = np.outer(*per_axis).astype(np.float32)
    counts = np.where(counts > 0, counts, np.float32(1.0))  # (no valid value: onnxruntime's 0)
    grow_h = max(0, (oh - 1) * strides[0] + span[0] - (h + pads[0] + pads[2]))
    grow_w = max(0, (ow - 1) * strides[1] + span[1] - (w + pads[1] + pads[3]))
    pads = [pads[0], pads[1], pads[2] + grow_h, pads[3] + grow_w]
    return "taps", (kernel, strides, pads, dil, counts)


def _window(node: Node, shape):
    """("global", None) for an AveragePool over the whole input, ("window", (kernel, strides,
    pads, include_pad)) for one MLAS runs in its vector kernel, else None."""
    a = node.attrs
    _, _, h, w = shape
    kernel = [int(k) for k in a.get("kernel_shape", [])]
    strides = [int(k) for k in a.get("strides", [1, 1])]
    pads = [int(k) for k in a.get("pads", [0, 0, 0, 0])]
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if len(kernel) != 2 or auto_pad != "NOTSET" or int(a.get("ceil_mode", 0)):
        return None
    if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
        return None
    if kernel == [h, w] and strides == [1, 1] and not any(pads):
        return "global", None
    # MlasPool: the vector kernel takes strides_w <= 2, kernels <= 32, a row within its buffer
    if strides[1] > 2 or max(kernel) > 32 or pads[1] + pads[3] + w > REDUCTION_BUFFER - 3:
        return None
    if pads[0] >= kernel[0] or pads[1] >= kernel[1] or pads[2] >= kernel[0] or pads[3] >= kernel[1]:
        return None  # (a window of padding only: MLAS's row clamps differ there)
    return "window", (kernel, strides, pads, bool(int(a.get("count_include_pad", 0))))


def emit(em, node: Node) -> None:
    """``node`` as ONNX ops summing in MLAS's order (see the module docstring); ``em`` is the
    float-carried rewrite's emitter (``op``, ``const``, ``fresh``)."""
    form = _form(em.graph, node, em.graph.values[node.inputs[0]].shape)
    if form[0] == "global":
        _emit_global(em, node)
    elif form[0] == "taps":
        _emit_taps(em, node, *form[1])
    else:
        _emit_window(em, node, *form[1])


def _ints(em, values, hint):
    arr = np.asarray(values, np.int64)
    return em.fresh(f"{em.like.label}/{hint}", arr.shape, np.int64, arr)


def _part(em, src, start, stop, axis, shape, hint, step=1):
    ins = [src, _ints(em, [start], f"{hint}_from"), _ints(em, [stop], f"{hint}_to")]
    ins += [_ints(em, [axis], f"{hint}_axis"), _ints(em, [step], f"{hint}_step")]
    return em.op("Slice", ins, shape, hint)


def _emit_global(em, node: Node) -> None:
    x, y = node.inputs[0], node.outputs[0]
    n_, c, h, w = em.graph.values[x].shape
    n = h * w
    groups = n // LANES
    last = em.op("Transpose", [x], (n_, h, w, c), "channels_last", perm=[0, 2, 3, 1])
    rows = em.op("Reshape", [last, _ints(em, [n_, n, c], "rows_shape")], (n_, n, c), "rows")
    total = None
    one = (n_, 1, c)
    if groups:
        lanes = None
        for g in range(groups):  # the four lanes, each summed sequentially
            quad = _part(em, rows, g * LANES, (g + 1) * LANES, 1, (n_, LANES, c), f"quad{g}")
            lanes = (
                quad if lanes is None else em.op("Add", [lanes, quad], (n_, LANES, c), f"lanes{g}")
            )
        lane = [_part(em, lanes, j, j + 1, 1, one, f"lane{j}") for j in range(LANES)]
        even = em.op("Add", [lane[0], lane[2]], one, "lanes_02")
        odd = em.op("Add", [lane[1], lane[3]], one, "lanes_13")
        total = em.op("Add", [even, odd], one, "lanes_sum")
    for i in range(groups * LANES, n):
        value = _part(em, rows, i, i + 1, 1, one, f"rest{i}")
        total = value if total is None else em.op("Add", [total, value], one, f"sum{i}")
    mean = em.op("Div", [total, em.const(float(n), "count")], one, "mean")
    em.op(
        "Reshape", [mean, _ints(em, [n_, c, 1, 1], "out_shape")], (n_, c, 1, 1), "mean_nchw", out=y
    )


def _emit_window(em, node: Node, kernel, strides, pads, include_pad: bool) -> None:
    x, y = node.inputs[0], node.outputs[0]
    n_, c, h, w = em.graph.values[x].shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, strides, pads
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    wp = w + pl + pr
    padded = x
    if any(pads):  # zero rows add nothing exactly; zero columns are MLAS's buffer padding
        pad = _ints(em, [0, 0, pt, pl, 0, 0, pb, pr], "pads")
        padded = em.op("Pad", [x, pad], (n_, c, h + pt + pb, wp), "padded")
    columns = None
    for r in range(kh):  # down the window's rows, each column sequentially
        rows = _part(em, padded, r, r + sh * (oh - 1) + 1, 2, (n_, c, oh, wp), f"row{r}", sh)
        columns = (
            rows if columns is None else em.op("Add", [columns, rows], (n_, c, oh, wp), f"down{r}")
        )
    total = None
    for k in range(kw):  # then the column sums left to right
        cols = _part(em, columns, k, k + sw * (ow - 1) + 1, 3, (n_, c, oh, ow), f"col{k}", sw)
        total = (
            cols if total is None else em.op("Add", [total, cols], (n_, c, oh, ow), f"across{k}")
        )
    counts = np.full((oh, ow), float(kh * kw), np.float32)
    if not include_pad:
        top = np.arange(oh) * sh - pt
        left = np.arange(ow) * sw - pl
        valid_h = np.minimum(top + kh, h) - np.maximum(top, 0)
        valid_w = np.minimum(left + kw, w) - np.maximum(left, 0)
        counts = np.maximum(np.outer(valid_h, valid_w), 1).astype(np.float32)
    divisor = em.const(counts.reshape(1, 1, oh, ow), "counts")
    em.op("Div", [total, divisor], (n_, c, oh, ow), "mean", out=y)


def _emit_taps(em, node: Node, kernel, strides, pads, dil, counts) -> None:
    """AveragePoolV19's order: the window's taps added one by one, rows outer (a padding tap
    adds an exact zero where onnxruntime skips it), then a DIV by the constant counts."""
    x, y = node.inputs[0], node.outputs[0]
    n_, c, h, w = em.graph.values[x].shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = kernel, strides, pads, dil
    oh, ow = counts.shape
    padded = x
    if any(pads):
        pad = _ints(em, [0, 0, pt, pl, 0, 0, pb, pr], "pads")
        padded = em.op("Pad", [x, pad], (n_, c, h + pt + pb, w + pl + pr), "padded")
    out = (n_, c, oh, ow)
    total = None
    for r in range(kh):
        for k in range(kw):
            top, left = r * dh, k * dw
            ins = [padded, _ints(em, [top, left], f"tap{r}_{k}_from")]
            ins.append(
                _ints(em, [top + sh * (oh - 1) + 1, left + sw * (ow - 1) + 1], f"tap{r}_{k}_to")
            )
            ins += [_ints(em, [2, 3], f"tap{r}_{k}_axes"), _ints(em, [sh, sw], f"tap{r}_{k}_steps")]
            tap = em.op("Slice", ins, out, f"tap{r}_{k}")
            total = tap if total is None else em.op("Add", [total, tap], out, f"taps{r}_{k}")
    divisor = em.const(counts.reshape(1, 1, oh, ow), "counts")
    em.op("Div", [total, divisor], out, "mean", out=y)
