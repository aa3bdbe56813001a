"""A 3-D Conv with a constant float32 filter as CONV_2D over frames folded into the batch.

Why: XNNPACK has no 3-D convolution, so CONV_3D runs on LiteRT's own kernel, 1.5-2x slower
than onnxruntime on video models (torchvision r3d_18, r2plus1d_18), and every CONV_3D splits
the XNNPACK partition around it. A 3-D conv is a sum over its kt time taps of 2-D convs of
frames, which XNNPACK runs:

- ``frames``: output frame t reads input frames t*st + i*dt (i < kt) of the time-padded
  input. Each tap's frames are one STRIDED_SLICE; the kt slices are joined along the
  channels (CONCATENATION) and the joined frames folded into the batch (RESHAPE) run one
  CONV_2D whose filter holds the kt 2-D kernels side by side in its input channels: the
  same products as CONV_3D in one GEMM (K = kt*kh*kw*C). A kernel with kt=1 is one CONV_2D
  on the (stride-sliced) frames, no copy at st=1.
- ``time_as_height``: a kernel 1x1 in space with unit spatial strides (R(2+1)D's temporal
  convs) reads only along time: the input viewed as [N, D, H*W, C] is a CONV_2D with a
  kt x 1 kernel, time padding, stride and dilation its own; no copy at all.
- grouped / depthwise filters (group > 1) sum kt grouped CONV_2D / DEPTHWISE_CONV_2D (one
  per tap, ADD), since joining taps along the channels would interleave the groups.

Only where the sizes are fixed (a dynamic model's frame count would change the slices);
otherwise, and for runtime or integer filters, the caller keeps CONV_3D (group 1).
``FRAMES_AS_2D`` is the switch benchmarks/bench_lowering_forms.py turns off to time CONV_3D.
"""

from __future__ import annotations

import numpy as np

from .common import conv2d_options, padding_mode
from .dynamic_sizes import sizes_vary
from .emit import Emitter

FRAMES_AS_2D = True


def applies(ctx) -> bool:
    """A constant float32 filter at fixed sizes (see the module docstring)."""
    w = ctx.const(1)
    return (
        FRAMES_AS_2D and w is not None and np.asarray(w).dtype == np.float32 and not sizes_vary(ctx)
    )


def _bias(ctx, channels: int):
    if ctx.has_input(2):
        return ctx.input(2)
    return ctx.const_tensor(np.zeros(channels, np.float32), "bias")


def conv3d_as_2d(ctx, geometry) -> None:
    """Emit the Conv (rank-5, channel-last [N, D, H, W, C]) as 2-D convs (see module doc)."""
    e = Emitter(ctx)
    kernel, strides, dilations, pads = geometry
    kt, kh, kw = kernel
    st, dt = strides[0], dilations[0]
    w = np.asarray(ctx.const(1), np.float32)  # [O, C/g, kt, kh, kw]
    group = int(ctx.attr("group", 1))
    n, d, h, wd, c = (int(s) for s in ctx.input(0).shape)
    out_final = ctx.output(0)
    _, do, ho, wo, o = (int(s) for s in out_final.shape)
    x = ctx.input(0)
    hw_pads = [tuple(pads[1]), tuple(pads[2])]
    if kh == kw == 1 and strides[1] == strides[2] == 1 and hw_pads == [(0, 0), (0, 0)]:
        _time_as_height(ctx, e, x, w, (kt, st, dt, tuple(pads[0])), group, out_final)
        return
    mode = padding_mode(hw_pads, [h, wd], [kh, kw], strides[1:], dilations[1:], False)
    stored = [(0, 0), tuple(pads[0]), (0, 0), (0, 0), (0, 0)]
    if mode is None:
        stored[2], stored[3] = hw_pads
        mode = "VALID"
    # a time stride picks every st-th frame through a unit-stride slice of st*Do frames viewed
    # as [N, Do, st*H*W*C] (XNNPACK's slice has no strides): pad the end for the last window
    reach = (kt - 1) * dt + st * do
    dp = d + stored[1][0] + stored[1][1]
    if reach > dp:
        stored[1] = (stored[1][0], stored[1][1] + reach - dp)
    if any(p != (0, 0) for p in stored):
        x = e.pad(x, stored)
    dp, hp, wp = (int(s) for s in x.shape[1:4])
    taps = [_frames(ctx, e, x, i * dt, st, do) for i in range(kt)]
    options = conv2d_options(mode, strides[1:], dilations[1:])
    out_2d = (n * do, ho, wo, o)
    if group == 1:
        joined = taps[0] if kt == 1 else e.concat(taps, 4, "frame_taps")
        folded = e.reshape(joined, (n * do, hp, wp, kt * c), "frames_in_batch")
        # [O, C, kt, kh, kw] -> [O, kh, kw, kt*C]: input channel i*C + c is tap i, channel c
        filt = np.ascontiguousarray(np.transpose(w, (0, 3, 4, 2, 1)).reshape(o, kh, kw, kt * c))
        res = e.op(
            "CONV_2D",
            folded,
            ctx.const_tensor(filt, "frames_filter"),
            _bias(ctx, o),
            shape=out_2d,
            hint="frames_conv",
            **options,
        )
        e.reshape(res, out=out_final)
        return
    depthwise = group == c and w.shape[1] == 1
    acc = None
    for i, tap in enumerate(taps):
        folded = e.reshape(tap, (n * do, hp, wp, c), "frames_in_batch")
        wi = w[:, :, i]  # [O, C/g, kh, kw]
        perm = (1, 2, 3, 0) if depthwise else (0, 2, 3, 1)
        filt = ctx.const_tensor(np.ascontiguousarray(np.transpose(wi, perm)), "tap_filter")
        bias = _bias(ctx, o) if i == 0 else ctx.const_tensor(np.zeros(o, np.float32), "bias")
        extra = {"depth_multiplier": o // c} if depthwise else {}
        part = e.op(
            "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D",
            folded,
            filt,
            bias,
            shape=out_2d,
            hint="tap_conv",
            **extra,
            **options,
        )
        acc = part if acc is None else e.op("ADD", acc, part, hint="tap_sum")
    e.reshape(acc, out=out_final)


def _frames(ctx, e, x, start, st, do):
    """Frames start, start+st, ..., start+(do-1)*st of x [N, D, H, W, C] with unit-stride
    slices only (XNNPACK takes those)."""
    n, d, hp, wp, c = (int(s) for s in x.shape)
    if not (start == 0 and st * do == d):
        x = e.crop(x, [0, start, 0, 0, 0], [n, start + st * do, hp, wp, c], "frames")
    if st == 1:
        return x
    flat = e.reshape(x, (n, do, st * hp * wp * c), "frame_groups")
    first = e.crop(flat, [0, 0, 0], [n, do, hp * wp * c], "strided_frames")
    return e.reshape(first, (n, do, hp, wp, c), "frames")


def _time_as_height(ctx, e, x, w, time_geometry, group, out_final) -> None:
    """A 1x1-in-space kernel: [N, D, H*W, C] through a kt x 1 CONV_2D (time as height)."""
    kt, st, dt, tpad = time_geometry
    n, d, h, wd, c = (int(s) for s in x.shape)
    o = int(out_final.shape[4])
    do = int(out_final.shape[1])
    x2 = e.reshape(x, (n, d, h * wd, c), "time_as_height")
    mode = padding_mode([tpad, (0, 0)], [d, h * wd], [kt, 1], [st, 1], [dt, 1], False)
    if mode is None:
        x2 = e.pad(x2, [(0, 0), tpad, (0, 0), (0, 0)])
        mode = "VALID"
    depthwise = group > 1 and group == c and w.shape[1] == 1
    wi = w[:, :, :, 0, :]  # [O, C/g, kt, 1]
    perm = (1, 2, 3, 0) if depthwise else (0, 2, 3, 1)
    filt = ctx.const_tensor(np.ascontiguousarray(np.transpose(wi, perm)), "time_filter")
    extra = {"depth_multiplier": o // c} if depthwise else {}
    res = e.op(
        "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D",
        x2,
        filt,
        _bias(ctx, o),
        shape=(n, do, h * wd, o),
        hint="time_conv",
        **extra,
        **conv2d_options(mode, [st, 1], [dt, 1]),
    )
    e.reshape(res, out=out_final)
