"""Conv (1-D and 2-D; regular, depthwise, grouped, dilated, every pad mode) -> CONV_2D /
DEPTHWISE_CONV_2D in channel-last layout."""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import channel_last
from ..registry import lowering
from .common import emit_pad, padding_mode, spatial_pads


def _conv_check(node, graph):
    w = graph.values[node.inputs[1]]
    if w.rank not in (3, 4):
        return f"{errors.UNSUPPORTED_RANK}: weight rank {w.rank}; 1-D and 2-D convs are supported"
    return None


@lowering(
    "Conv",
    channel_last(),
    ranks=(3, 4),
    const_inputs=(1, 2),
    dtype_inputs=(0, 1),
    tflite_ops=("CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "RESHAPE"),
    notes="1-D convs run as 2-D with a unit height",
    extra_check=_conv_check,
)
def lower_conv(ctx):
    w = ctx.const(1).astype(np.float32)
    x_shape = ctx.shape(0)
    one_d = len(x_shape) == 3
    n, c = x_shape[0], x_shape[1]
    spatial = list(x_shape[2:])
    o = w.shape[0]
    kernel = list(w.shape[2:])
    group = int(ctx.attr("group", 1))
    strides = list(ctx.attr("strides", [1] * len(kernel)))
    dilations = list(ctx.attr("dilations", [1] * len(kernel)))
    pads = spatial_pads(ctx, spatial, kernel, strides, dilations)
    bias = ctx.const(2).astype(np.float32) if ctx.has_input(2) else np.zeros(o, np.float32)
    x = ctx.input(0)  # channel-last: [N, W, C] or [N, H, W, C]
    if one_d:  # view as [N, 1, W, C]
        spatial = [1] + spatial
        kernel = [1] + kernel
        strides = [1] + strides
        dilations = [1] + dilations
        pads = [(0, 0)] + pads
        w = w[:, :, None, :]
        x = ctx.reshape(x, (n, 1, x_shape[2], c), "as_2d")
    mode = padding_mode(pads, spatial, kernel, strides, dilations)
    if mode is None:
        x = emit_pad(ctx, x, [(0, 0), pads[0], pads[1], (0, 0)])
        mode = "VALID"
    out_final = ctx.output(0)
    out_h = ctx.out_shape(0)[2] if not one_d else 1
    out_w = ctx.out_shape(0)[-1]
    out = ctx.temp(np.float32, (n, out_h, out_w, o), "conv2d") if one_d else out_final
    common = dict(
        padding=mode,
        stride_h=int(strides[0]),
        stride_w=int(strides[1]),
        dilation_h_factor=int(dilations[0]),
        dilation_w_factor=int(dilations[1]),
        fused_activation_function="NONE",
    )
    b = ctx.const_tensor(bias, "bias")
    if group == 1:
        filt = ctx.const_tensor(np.ascontiguousarray(w.transpose(0, 2, 3, 1)), "filter")
        ctx.emit("CONV_2D", [x, filt, b], [out], **common)
    elif group == c and w.shape[1] == 1:
        filt = ctx.const_tensor(np.ascontiguousarray(w.transpose(1, 2, 3, 0)), "filter")
        ctx.emit("DEPTHWISE_CONV_2D", [x, filt, b], [out], depth_multiplier=o // c, **common)
    else:
        filt = ctx.const_tensor(np.ascontiguousarray(w.transpose(0, 2, 3, 1)), "filter")
        ctx.emit("CONV_2D", [x, filt, b], [out], **common)
    if one_d:
        ctx.driver.reshape(out, out_final)
