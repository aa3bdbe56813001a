"""ConvTranspose (1-D and 2-D) -> TRANSPOSE_CONV in channel-last layout.

TRANSPOSE_CONV only knows SAME/VALID padding and no dilation or groups, so the lowering always
computes the full VALID result on an output canvas large enough for ``output_padding`` (cells
no input reaches hold just the bias, as in ONNX) and crops the ONNX window with SLICE.
Dilations dilate a constant kernel in numpy (zeros contribute exactly nothing); groups split
the input channels, run one TRANSPOSE_CONV per group and concatenate.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from .. import layout as L
from ..policies import channel_last
from ..registry import FLOAT, lowering
from .dynamic_sizes import axes_vary
from .emit import Emitter

FILTER_2D = L.Layout((1, 2, 3, 0))  # [C_in, C_out/g, kH, kW] -> [C_out/g, kH, kW, C_in]
FILTER_1D = L.Layout((1, 2, 0))


def _check(node, graph):
    dilations = node.attrs.get("dilations", [])
    w = graph.values[node.inputs[1]]
    if any(int(d) != 1 for d in dilations) and w.const is None:
        return f"{errors.REQUIRES_CONSTANT_INPUT}: dilated ConvTranspose needs a constant weight"
    return None


def _begin_pads(ctx, in_sizes, strides, full):
    """Start of the ONNX output window inside the full VALID result, per spatial axis."""
    n = len(in_sizes)
    auto = ctx.attr("auto_pad", "NOTSET")
    out_attr = ctx.attr("output_shape")
    if ctx.attr("pads") is not None and auto == "NOTSET":
        return [int(p) for p in ctx.attr("pads")[:n]]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        target = (
            [int(o) for o in out_attr[-n:]]
            if out_attr
            else [i * s for i, s in zip(in_sizes, strides, strict=False)]
        )
        totals = [f - t for f, t in zip(full, target, strict=False)]
        if auto == "SAME_UPPER":
            return [t // 2 for t in totals]
        return [t - t // 2 for t in totals]
    if (
        out_attr
        and auto == "NOTSET"
        and any(f > int(o) for f, o in zip(full, out_attr[-n:], strict=False))
    ):
        ctx.refuse(
            errors.UNSUPPORTED_ATTRIBUTE_VALUE,
            "output_shape smaller than the full result without pads: runtimes disagree on the crop",
        )
    return [0] * n


@lowering(
    "ConvTranspose",
    channel_last(data_inputs=(0,)),
    nonempty=True,
    ranks=(3, 4),
    dtypes=FLOAT,
    dtype_inputs=(0, 1, 2),
    tflite_ops=(
        "TRANSPOSE_CONV",
        "SLICE",
        "SPLIT",
        "CONCATENATION",
        "ADD",
        "RESHAPE",
        "TRANSPOSE",
        "CONV_2D",
        "DEPTH_TO_SPACE",
        "SHAPE",
        "MUL",
        "STRIDED_SLICE",
    ),
    notes="1-D/2-D; dilations need a constant weight; 3-D refused",
    extra_check=_check,
)
def lower_conv_transpose(ctx):
    e = Emitter(ctx)
    x_shape, w_shape = ctx.shape(0), ctx.shape(1)
    one_d = len(x_shape) == 3
    n, c_in = x_shape[0], x_shape[1]
    group = int(ctx.attr("group", 1))
    c_out = w_shape[1] * group
    kernel = list(w_shape[2:])
    nd = len(kernel)
    strides = [int(s) for s in ctx.attr("strides", [1] * nd)]
    dilations = [int(d) for d in ctx.attr("dilations", [1] * nd)]
    out_pad = [int(p) for p in ctx.attr("output_padding", [0] * nd)]
    k_eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=False)]
    in_sizes = list(x_shape[2:])
    full = [
        s * (i - 1) + k + p for s, i, k, p in zip(strides, in_sizes, k_eff, out_pad, strict=False)
    ]
    begin = _begin_pads(ctx, in_sizes, strides, full)
    out_sizes = list(ctx.out_shape(0)[2:])
    if any(b < 0 for b in begin):
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"negative begin padding {begin}")
    canvas = [max(f, b + o) for f, b, o in zip(full, begin, out_sizes, strict=False)]

    if _as_depth_to_space(ctx, kernel, strides, dilations, group, begin, full, out_sizes):
        return
    filt = _filter(ctx, dilations, one_d)  # [C_out/g, kH, kW, C_in]
    x = ctx.input(0)
    if one_d:
        x = ctx.reshape(x, (n, 1, in_sizes[0], c_in), "as_2d")
        strides, canvas, begin, out_sizes = (
            [1] + strides,
            [1] + canvas,
            [0] + begin,
            [1] + out_sizes,
        )
    bias = ctx.input(2) if ctx.has_input(2) else None
    vary = axes_vary(ctx, range(2, len(x_shape)))  # the spatial sizes
    if vary and list(canvas) != list(full if not one_d else [1, *full]):
        ctx.refuse(
            "dynamic_shape_unsupported",
            "an output window (output_shape or pads) reaching past the full transposed-conv "
            "result does not follow the input size at every size; pin the spatial sizes "
            "(--input-shape) to convert it",
        )
    growth = [0] * (len(strides) - nd) + [
        k - s + p for k, s, p in zip(k_eff, strides[-nd:], out_pad, strict=True)
    ]
    full_t = _grouped_transpose_conv(
        ctx, x, filt, bias, group, strides, (n, *canvas, c_out), growth if vary else None
    )
    final = ctx.output(0)
    crop = [0, *begin, 0], [n, *out_sizes, c_out]
    needs_crop = list(full_t.shape) != crop[1]
    target = final if not one_d else ctx.temp(np.float32, crop[1], "cropped")
    if needs_crop and vary:
        _crop_from_both_ends(ctx, full_t, crop, target)
    elif needs_crop:
        begin_t = ctx.const_tensor(np.array(crop[0], np.int32), "begin")
        size_t = ctx.const_tensor(np.array(crop[1], np.int32), "size")
        e.op("SLICE", full_t, begin_t, size_t, out=target)
    else:
        e.reshape(full_t, out=target)
    if one_d:
        e.reshape(target, out=final)


# benchmarks/bench_outliers.py turns this off to time the TRANSPOSE_CONV form.
NON_OVERLAPPING_AS_DEPTH_TO_SPACE = True


def _as_depth_to_space(ctx, kernel, strides, dilations, group, begin, full, out_sizes) -> bool:
    """A 2-D ConvTranspose whose square kernel equals its stride (no two taps write the same
    output: U-Net/DB-head upsampling, k=s=2) as a 1x1 CONV_2D to s*s*C_out channels and
    DEPTH_TO_SPACE(s): output (i*s+a, j*s+b, o) is exactly the dot product of input (i, j) with
    W[:, o, a, b], the conv's channel (a*s+b)*C_out+o. XNNPACK's deconvolution runs this 4-25x
    slower (24->1 channels at 160x160: 3.8 ms against onnxruntime's 0.16 ms). Needs constant
    weights and bias, no groups, dilations, pads or output padding; False otherwise."""
    e = Emitter(ctx)
    w = ctx.const(1)
    bias = ctx.const(2) if ctx.has_input(2) else None
    if (
        not NON_OVERLAPPING_AS_DEPTH_TO_SPACE
        or len(kernel) != 2
        or w is None
        or np.asarray(w).dtype != np.float32
        or (ctx.has_input(2) and bias is None)
        or group != 1
        or any(d != 1 for d in dilations)
        or kernel[0] != kernel[1]
        or list(strides) != list(kernel)
        or any(b != 0 for b in begin)
        or list(full) != list(out_sizes)
    ):
        return False
    s = kernel[0]
    w = np.asarray(w)
    c_in, c_out = w.shape[0], w.shape[1]
    n, h, wd = ctx.shape(0)[0], ctx.shape(0)[2], ctx.shape(0)[3]
    filt = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(s * s * c_out, 1, 1, c_in))
    b = np.zeros(c_out, np.float32) if bias is None else np.asarray(bias, np.float32)
    deep = e.op(
        "CONV_2D",
        ctx.input(0),
        ctx.const_tensor(filt, "filter"),
        ctx.const_tensor(np.tile(b, s * s)),
        shape=(n, h, wd, s * s * c_out),
        dtype=np.float32,
        hint="depth",
        padding="VALID",
        stride_h=1,
        stride_w=1,
        dilation_h_factor=1,
        dilation_w_factor=1,
        fused_activation_function="NONE",
    )
    e.op("DEPTH_TO_SPACE", deep, out=ctx.output(0), block_size=s)
    return True


def _filter(ctx, dilations, one_d):
    """The TFLite filter [C_out/g, kH, kW, C_in] (a 1-D kernel gets a unit height)."""
    w = ctx.const(1)
    if w is not None and any(d != 1 for d in dilations):
        dilated = np.zeros(
            w.shape[:2]
            + tuple((k - 1) * d + 1 for k, d in zip(w.shape[2:], dilations, strict=False)),
            w.dtype,
        )
        dilated[(slice(None), slice(None), *(slice(None, None, d) for d in dilations))] = w
        if one_d:
            dilated = dilated[:, :, None, :]
        return ctx.const_tensor(np.ascontiguousarray(dilated.transpose(1, 2, 3, 0)), "filter")
    filt = ctx.input(1, FILTER_1D if one_d else FILTER_2D)
    if one_d:
        filt = ctx.reshape(filt, (filt.shape[0], 1, filt.shape[1], filt.shape[2]), "filter_2d")
    return filt


def _crop_from_both_ends(ctx, full_t, crop, target):
    """The ONNX window of the full result when the sizes vary: its begin pads and its end pads
    (the full size minus begin and window) are the same at every size, so one STRIDED_SLICE
    whose ends count back from the run-time end (an end pad of 0 runs to the end) holds at
    every size."""
    begins, sizes = crop
    ends, end_mask = [], 0
    for axis, (b, o, f) in enumerate(zip(begins, sizes, full_t.shape, strict=True)):
        end_pad = f - b - o
        ends.append(-end_pad if end_pad else 0)
        end_mask |= 0 if end_pad else 1 << axis
    Emitter(ctx).op(
        "STRIDED_SLICE",
        full_t,
        ctx.const_tensor(np.array(begins, np.int32), "begin"),
        ctx.const_tensor(np.array(ends, np.int32), "end"),
        ctx.const_tensor(np.ones(len(begins), np.int32), "strides"),
        out=target,
        end_mask=end_mask,
    )


def _runtime_output_shape(ctx, x, strides, growth, channels):
    """TRANSPOSE_CONV's output shape computed from SHAPE of its input when the sizes vary:
    ``s * in + (k_eff - s + output_padding)`` per spatial axis, exact at every size (the
    constant a sample lowering would write holds at that size only)."""
    e = Emitter(ctx)
    dims = e.op("SHAPE", x, shape=(4,), dtype=np.int32, hint="input_dims", out_type="INT32")
    scale = ctx.const_tensor(np.array([1, *strides, 0], np.int32), "shape_scale")
    offset = ctx.const_tensor(np.array([0, *growth, channels], np.int32), "shape_offset")
    scaled = e.op("MUL", dims, scale, shape=(4,), dtype=np.int32, hint="scaled_dims")
    return e.op("ADD", scaled, offset, shape=(4,), dtype=np.int32, hint="output_shape")


def _grouped_transpose_conv(ctx, x, filt, bias, group, strides, out_shape, growth=None):
    """``growth``: per spatial axis, the full size minus stride x input size when the sizes
    vary (the output shape is then computed at run time); None: a constant shape."""
    e = Emitter(ctx)
    options = dict(
        padding="VALID", stride_h=strides[0], stride_w=strides[1], fused_activation_function="NONE"
    )
    if growth is not None:
        shape_t = _runtime_output_shape(ctx, x, strides, growth, out_shape[-1] // group)
        part_shape_t = shape_t
    else:
        shape_t = ctx.const_tensor(np.array(out_shape, np.int32), "output_shape")
    if group == 1:
        return e.op(
            "TRANSPOSE_CONV",
            shape_t,
            filt,
            x,
            bias,
            shape=out_shape,
            dtype=np.float32,
            hint="full",
            **options,
        )
    xs = _split(ctx, x, group, "x_group")
    fs = _split(ctx, filt, group, "filter_group")
    part_shape = (*out_shape[:-1], out_shape[-1] // group)
    if growth is None:
        part_shape_t = ctx.const_tensor(np.array(part_shape, np.int32), "part_shape")
    parts = []
    for k, (xg, fg) in enumerate(zip(xs, fs, strict=False)):
        part = e.op(
            "TRANSPOSE_CONV",
            part_shape_t,
            fg,
            xg,
            None,
            shape=part_shape,
            dtype=np.float32,
            hint=f"group{k}",
            **options,
        )
        parts.append(part)
    joined = e.concat(parts, 3, hint="joined")
    return joined if bias is None else e.op("ADD", joined, bias, hint="biased")


def _split(ctx, t, group, hint):
    """SPLIT along the last (channel) axis into ``group`` equal parts."""
    e = Emitter(ctx)
    shape = (*t.shape[:-1], t.shape[-1] // group)
    outs = [ctx.temp(t.dtype, shape, f"{hint}{k}") for k in range(group)]
    axis = ctx.const_tensor(np.array(3, np.int32), "split_axis")
    e.op("SPLIT", axis, t, out=outs, num_splits=group)
    return outs
