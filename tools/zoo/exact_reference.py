"""A float64 evaluation of an ONNX model: the reference that onnxruntime's own rounding is
measured against.

Why: onnxruntime computes in float32, and how it accumulates depends on its optimisation
level (fused integer kernels for Q/DQ groups, NCHWc convolutions at ORT_ENABLE_ALL). Where
LiteRT and onnxruntime disagree by more than the strict tolerance, the question is which of
the two is off, and by how much compared with the other. The answer needs a third opinion
that rounds far less than either: the model's own semantics evaluated in float64 (for a Q/DQ
model: dequantize, compute in float64, quantize with round-half-to-even and saturation,
exactly as the operators are specified).

How: every float32 tensor of the model (initializers, Constant values, graph inputs, Casts to
float) becomes float64, and ``onnx.reference`` evaluates the graph; each result that the model
declares float32 is then rounded to the nearest float32 (every op correctly rounded: the
correctly rounded reference of the developer guide, not a float32 accumulation).
DequantizeLinear and QuantizeLinear compute in float64 from the float32 scales (which convert
exactly): QuantizeLinear rounds the (nearly) real quotient ``x / scale``, as its formula reads,
not a float32 quotient. A float64 Conv replaces onnx.reference's slow one (im2col through
strided views and einsum), so do AveragePool and MaxPool; GatherElements, Erf,
BatchNormalization, GlobalMaxPool and LRN replace onnx 1.23's, which fail or compute something
else on real models (each found by comparing
this reference with onnxruntime over the corpus: every float model agrees to >= 82 dB, most
to > 110 dB).

Also here: :func:`output_steps`, the quantization step of graph outputs produced by a
DequantizeLinear (the unit in which lattice-valued outputs are compared), shared with
``benchmarks/bench_prequantized.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_F32 = TensorProto.FLOAT
_F64 = TensorProto.DOUBLE


def output_steps(model: onnx.ModelProto | str | Path) -> dict[str, float]:
    """Graph output -> the step (scale) of the per-tensor DequantizeLinear producing it."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    steps = {}
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] in outputs:
            scale = consts.get(node.input[1])
            if scale is not None and scale.size == 1:
                steps[node.output[0]] = float(scale.reshape(-1)[0])
    return steps


def has_qdq(model: onnx.ModelProto) -> bool:
    """True when the graph quantizes activations (a QuantizeLinear node): a Q/DQ model."""
    return any(n.op_type == "QuantizeLinear" for n in model.graph.node)


# --------------------------------------------------------------------------------------------
# float32 -> float64
# --------------------------------------------------------------------------------------------


def _tensor64(t: onnx.TensorProto) -> onnx.TensorProto:
    if t.data_type != _F32:
        return t
    arr = numpy_helper.to_array(t).astype(np.float64)
    return numpy_helper.from_array(arr, t.name)


def _graph64(graph: onnx.GraphProto) -> None:
    for i, t in enumerate(graph.initializer):
        if t.data_type == _F32:
            graph.initializer[i].CopyFrom(_tensor64(t))
    for vi in list(graph.input) + list(graph.output):
        tt = vi.type.tensor_type
        if tt.elem_type == _F32:
            tt.elem_type = _F64
    del graph.value_info[:]  # stale float32 declarations; onnx.reference does not need them
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == _F32:
                a.t.CopyFrom(_tensor64(a.t))
            elif a.type == onnx.AttributeProto.GRAPH:
                _graph64(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    _graph64(g)
        if node.op_type == "Constant" and any(a.name == "value_float" for a in node.attribute):
            v = next(a.f for a in node.attribute if a.name == "value_float")
            del node.attribute[:]
            node.attribute.append(
                helper.make_attribute("value", numpy_helper.from_array(np.array(v, np.float64)))
            )
        if node.op_type == "Constant" and any(a.name == "value_floats" for a in node.attribute):
            v = list(next(a.floats for a in node.attribute if a.name == "value_floats"))
            del node.attribute[:]
            node.attribute.append(
                helper.make_attribute("value", numpy_helper.from_array(np.array(v, np.float64)))
            )
        for a in node.attribute:  # Cast(to=FLOAT), EyeLike/Random*(dtype=FLOAT)
            if a.name in ("to", "dtype") and a.type == onnx.AttributeProto.INT and a.i == _F32:
                a.i = _F64


def to_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose float32 tensors and computations are float64."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    _graph64(out.graph)
    return out


# --------------------------------------------------------------------------------------------
# A float64 Conv fast enough for ResNet-50 at 320x320
# --------------------------------------------------------------------------------------------


def _conv(x, w, b, group, pads, strides, dilations):
    from numpy.lib.stride_tricks import sliding_window_view

    nd = x.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])
    k = w.shape[2:]
    eff = tuple((k[i] - 1) * dilations[i] + 1 for i in range(nd))
    win = sliding_window_view(x, eff, axis=tuple(range(2, 2 + nd)))
    pick = (slice(None), slice(None))
    pick += tuple(slice(None, None, s) for s in strides)
    pick += tuple(slice(None, None, d) for d in dilations)
    win = win[pick]  # (N, C, out..., k...)
    n, c = x.shape[:2]
    m = w.shape[0]
    out_sp = win.shape[2 : 2 + nd]
    win = win.reshape(n, group, c // group, *out_sp, *k)
    wg = w.reshape(group, m // group, c // group, *k)
    sp = "HWDUV"[:nd]
    kk = "ijklm"[:nd]
    y = np.einsum(f"ngc{sp}{kk},gmc{kk}->ngm{sp}", win, wg, optimize=True)
    y = y.reshape(n, m, *out_sp)
    if b is not None:
        y = y + b.reshape(1, m, *([1] * nd))
    return y


def _conv_op():
    from onnx.reference.op_run import OpRun
    from onnx.reference.ops.op_conv import _conv_implementation

    class Conv(OpRun):
        op_domain = ""

        def _run(
            self,
            X,
            W,
            B=None,
            auto_pad=None,
            dilations=None,
            group=None,
            kernel_shape=None,
            pads=None,
            strides=None,
        ):
            nd = X.ndim - 2
            pad_mode = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
            if pad_mode not in (None, "NOTSET", "VALID") or X.dtype != np.float64:
                return (
                    _conv_implementation(
                        X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides
                    ).astype(X.dtype),
                )
            pads = [0] * (2 * nd) if pad_mode == "VALID" or pads is None else list(pads)
            y = _conv(
                X,
                W,
                B,
                int(group or 1),
                pads,
                list(strides or [1] * nd),
                list(dilations or [1] * nd),
            )
            return (y,)

    return Conv


def _gather_elements_op():
    """GatherElements through ``np.take_along_axis`` (onnx 1.23's reference implementation
    fails on indices shorter than the data along the gathered axis, as BERT's position ids)."""
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):
        op_domain = ""

        def _run(self, data, indices, axis=0):
            axis = axis % data.ndim
            idx = np.where(indices < 0, indices + data.shape[axis], indices)
            data = data[
                tuple(slice(None) if d == axis else slice(0, n) for d, n in enumerate(idx.shape))
            ]
            return (np.take_along_axis(data, idx, axis),)

    return GatherElements


def _erf_op():
    """Erf in float64 (onnx.reference's returns float32 whatever its input)."""
    import math

    from onnx.reference.op_run import OpRun

    erf = np.vectorize(math.erf, otypes=[np.float64])

    class Erf(OpRun):
        op_domain = ""

        def _run(self, x):
            return (erf(x).astype(x.dtype) if x.size else x.copy(),)

    return Erf


def _batch_norm_op():
    """BatchNormalization with the running statistics (onnx 1.23's opset-9 implementation
    takes a ``momentum`` attribute as training mode, which inference never is)."""
    from onnx.reference.op_run import OpRun

    class BatchNormalization(OpRun):
        op_domain = ""

        def _run(
            self,
            x,
            scale,
            bias,
            mean,
            var,
            epsilon=1e-5,
            momentum=None,
            training_mode=0,
            is_test=None,
            spatial=None,
        ):
            if training_mode:
                raise NotImplementedError("BatchNormalization in training mode")
            shape = (-1,) + (1,) * (x.ndim - 2)
            eps = 1e-5 if epsilon is None else epsilon
            y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
            return ((y * scale.reshape(shape) + bias.reshape(shape)).astype(x.dtype),)

    return BatchNormalization


def _global_max_pool_op():
    """GlobalMaxPool over every spatial axis (onnx 1.23's reduces the wrong axes unless the
    input is 4-D: Magika's 1-D convolutions)."""
    from onnx.reference.op_run import OpRun

    class GlobalMaxPool(OpRun):
        op_domain = ""

        def _run(self, x):
            return (x.max(axis=tuple(range(2, x.ndim)), keepdims=True),)

    return GlobalMaxPool


def _lrn_op():
    """LRN over the channel window of the spec (onnx 1.23's loops over the batch axis instead of
    the channels: on a (1, C, H, W) tensor only channel 0 gets its square sum, 22 % off on
    AlexNet-like activations)."""
    from onnx.reference.op_run import OpRun

    class LRN(OpRun):
        op_domain = ""

        def _run(self, x, alpha=1e-4, beta=0.75, bias=1.0, size=None):
            channels = x.shape[1]
            below, above = (size - 1) // 2, -(-(size - 1) // 2)
            squares = x.astype(np.float64) ** 2
            square_sum = np.zeros_like(squares)
            for c in range(channels):
                lo, hi = max(0, c - below), min(channels, c + above + 1)
                square_sum[:, c] = squares[:, lo:hi].sum(axis=1)
            y = x / (bias + (alpha / size) * square_sum) ** beta
            return (y.astype(x.dtype),)

    return LRN


def _pool_ops():
    """AveragePool and MaxPool through strided windows (onnx 1.23's loop over every output
    element in Python: 33 of the 40 s of an inception-v2 evaluation). Explicit or VALID pads,
    no dilation, floor sizes, one output; anything else falls back to onnx's own."""
    from numpy.lib.stride_tricks import sliding_window_view
    from onnx.reference.ops.op_max_pool import MaxPool as OnnxMaxPool
    from onnx.reference.ops.op_pool_common import CommonPool

    def plain(x, auto_pad, ceil_mode, dilations, pads):
        mode = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if x.dtype != np.float64 or ceil_mode or mode not in (None, "", "NOTSET", "VALID"):
            return None
        if dilations is not None and any(d != 1 for d in dilations):
            return None
        nd = x.ndim - 2
        return [0] * (2 * nd) if mode == "VALID" or pads is None else list(pads)

    def windows(x, kernel, pads, strides, fill):
        nd = x.ndim - 2
        widths = [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)]
        x = np.pad(x, widths, constant_values=fill)
        win = sliding_window_view(x, tuple(kernel), axis=tuple(range(2, 2 + nd)))
        pick = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
        return win[pick], tuple(range(2 + nd, 2 + 2 * nd))

    class AveragePool(CommonPool):
        op_domain = ""

        def _run(
            self,
            x,
            auto_pad=None,
            ceil_mode=None,
            count_include_pad=None,
            dilations=None,
            kernel_shape=None,
            pads=None,
            strides=None,
        ):
            explicit = plain(x, auto_pad, ceil_mode, dilations, pads)
            if explicit is None:
                return CommonPool._run(
                    self, "AVG", count_include_pad, x, auto_pad, ceil_mode, dilations,
                    kernel_shape, pads, strides,
                )  # fmt: skip
            strides = list(strides or [1] * len(kernel_shape))
            win, axes = windows(x, kernel_shape, explicit, strides, 0.0)
            if count_include_pad:
                count = float(np.prod(kernel_shape))
            else:
                ones, _ = windows(np.ones((1, 1, *x.shape[2:])), kernel_shape, explicit, strides, 0)
                count = ones.sum(axis=axes)
            return ((win.sum(axis=axes) / count).astype(x.dtype),)

    class MaxPool(OnnxMaxPool):
        op_domain = ""

        def _run(
            self,
            x,
            auto_pad=None,
            ceil_mode=None,
            dilations=None,
            kernel_shape=None,
            pads=None,
            storage_order=None,
            strides=None,
        ):
            explicit = plain(x, auto_pad, ceil_mode, dilations, pads)
            if explicit is None or len(self.output) > 1:  # (the indices: onnx's own)
                return OnnxMaxPool._run(
                    self, x, auto_pad, ceil_mode, dilations, kernel_shape, pads,
                    storage_order, strides,
                )  # fmt: skip
            strides = list(strides or [1] * len(kernel_shape))
            win, axes = windows(x, kernel_shape, explicit, strides, -np.inf)
            return (win.max(axis=axes),)

    return [AveragePool, MaxPool]


def _per_axis(v, ndim: int, axis: int):
    v = np.asarray(v)
    if v.size == 1 or ndim == 0:
        return v.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = v.size
    return v.reshape(shape)


_RANGES = {
    np.dtype(np.int8): (-128, 127),
    np.dtype(np.uint8): (0, 255),
    np.dtype(np.int16): (-32768, 32767),
    np.dtype(np.uint16): (0, 65535),
    np.dtype(np.int32): (-(2**31), 2**31 - 1),
}


def _qdq_ops():
    """DequantizeLinear / QuantizeLinear for every opset (onnx.reference has none before 19),
    per-tensor or per-axis, integer types: ``(q - zp) * scale`` and
    ``saturate(round_half_even(x / scale) + zp)``, in float64 when the scale is float64."""
    from onnx.reference.op_run import OpRun

    class DequantizeLinear(OpRun):
        op_domain = ""

        def _run(self, x, scale, zero_point=None, axis=1, block_size=0, output_dtype=None):
            if block_size:
                raise NotImplementedError("blocked DequantizeLinear")
            x = np.asarray(x)
            dx = x.astype(np.float64)
            if zero_point is not None:
                dx = dx - _per_axis(zero_point, x.ndim, axis).astype(np.float64)
            y = dx * _per_axis(scale, x.ndim, axis)
            return (y.astype(np.result_type(scale, np.float32)),)

    class QuantizeLinear(OpRun):
        op_domain = ""

        def _run(
            self,
            x,
            scale,
            zero_point=None,
            axis=1,
            saturate=1,
            block_size=0,
            output_dtype=None,
            precision=None,
        ):
            if block_size:
                raise NotImplementedError("blocked QuantizeLinear")
            x = np.asarray(x)
            dtype = np.dtype(zero_point.dtype) if zero_point is not None else np.dtype(np.uint8)
            if output_dtype:
                dtype = np.dtype(helper.tensor_dtype_to_np_dtype(output_dtype))
            if dtype not in _RANGES:
                raise NotImplementedError(f"QuantizeLinear to {dtype}")
            q = np.rint(x / _per_axis(scale, x.ndim, axis))
            if zero_point is not None:
                q = q + _per_axis(zero_point, x.ndim, axis).astype(np.float64)
            lo, hi = _RANGES[dtype]
            return (np.clip(q, lo, hi).astype(dtype),)

    return [DequantizeLinear, QuantizeLinear]


def _double_names(model: onnx.ModelProto) -> set[str]:
    """Tensors the model itself declares float64 (not to be rounded to float32)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - large or odd models: assume nothing is float64
        inferred = model
    g = inferred.graph
    return {
        vi.name
        for vi in [*g.value_info, *g.output, *g.input]
        if vi.type.tensor_type.elem_type == _F64
    }


def _rounding(run, keep: list[bool]):
    """``run`` whose float64 results are rounded to the nearest float32 (as a float64)."""

    def wrapped(*args, **kwargs):
        outs = run(*args, **kwargs)
        rounded = []
        for i, o in enumerate(outs):
            if (
                isinstance(o, np.ndarray)
                and o.dtype == np.float64
                and not (i < len(keep) and keep[i])
            ):
                with np.errstate(over="ignore"):
                    o = o.astype(np.float32).astype(np.float64)
            rounded.append(o)
        return tuple(rounded)

    return wrapped


def run_float64(
    model: onnx.ModelProto | str | Path,
    feeds: Mapping[str, np.ndarray],
    round_to_float32: bool = True,
) -> dict[str, np.ndarray]:
    """The model's outputs computed in float64 (float feeds are widened; other dtypes kept).

    With ``round_to_float32`` (the default) every float32 tensor of the model is rounded to
    the nearest float32 after the node computing it: each op correctly rounded, which is what
    the model's float32 declarations mean (a Q/DQ model quantizes float32 values: ``1 + erf``
    that is 2.0 in float32 but 2 - 1e-10 in float64 can sit on the other side of a rounding
    boundary). Without it, the real-valued function in float64 throughout.

    Raises whatever ``onnx.reference`` raises on an op it lacks (contrib domains): the caller
    records that the float64 reference is not available for the model."""
    from onnx.reference import ReferenceEvaluator

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    m64 = to_float64(model)
    sess = ReferenceEvaluator(
        m64,
        new_ops=[
            _conv_op(),
            _gather_elements_op(),
            _erf_op(),
            _batch_norm_op(),
            _global_max_pool_op(),
            _lrn_op(),
            *_pool_ops(),
            *_qdq_ops(),
        ],
    )
    if round_to_float32:
        keep = _double_names(model)
        for node in sess.rt_nodes_:
            node.run = _rounding(node.run, [o in keep for o in node.output])
    f64 = {
        k: (np.asarray(v, np.float64) if np.asarray(v).dtype == np.float32 else np.asarray(v))
        for k, v in feeds.items()
    }
    names = [o.name for o in m64.graph.output]
    outs = sess.run(None, f64)
    return {n: np.asarray(v) for n, v in zip(names, outs, strict=True)}
