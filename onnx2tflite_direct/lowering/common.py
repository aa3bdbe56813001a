"""Arithmetic shared by lowerings: padding and pool-window geometry, conv options.

Whether a choice may follow the sample size a model with dynamic dims is lowered at is asked
of ``dynamic_sizes.py``; the arithmetic here applies its answers.
"""

from __future__ import annotations

import math

from .dynamic_sizes import EVERY_SIZE_SAME, any_size_pool_pads, same_pads_vary, window_sizes_vary


def spatial_pads(ctx, in_spatial, kernel, strides, dilations) -> list[tuple[int, int]]:
    """Per spatial axis (begin, end) padding from ONNX ``pads``/``auto_pad``."""
    auto = ctx.attr("auto_pad", "NOTSET")
    n = len(in_spatial)
    if auto == "SAME_LOWER" and same_pads_vary(ctx, kernel, strides, dilations):
        ctx.refuse(
            "dynamic_shape_unsupported",
            f"auto_pad SAME_LOWER with strides {list(strides)}: its pads change with the input "
            "size modulo the stride, and TFLite's SAME puts the extra cell at the end; pin the "
            "spatial sizes (--input-shape) to convert it",
        )
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for size, k, s, d in zip(in_spatial, kernel, strides, dilations, strict=False):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            out.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        return out
    if auto == "VALID":
        return [(0, 0)] * n
    pads = list(ctx.attr("pads", [0] * (2 * n)))
    return [(int(pads[i]), int(pads[i + n])) for i in range(n)]


def tf_same_pads(in_spatial, kernel, strides, dilations) -> list[tuple[int, int]]:
    """The padding TFLite's SAME uses (extra cell at the end)."""
    out = []
    for size, k, s, d in zip(in_spatial, kernel, strides, dilations, strict=False):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        out.append((total // 2, total - total // 2))
    return out


def padding_mode(pads, in_spatial, kernel, strides, dilations, any_size=False) -> str | None:
    """'VALID' or 'SAME' when TFLite's own padding equals ``pads``, else None.

    ``any_size`` (see ``dynamic_sizes.sizes_vary``): the input sizes change at run time, so SAME is
    chosen only where it equals ``pads`` at every size. With a stride above 1 TFLite's SAME
    padding depends on the size modulo the stride (k=3, s=2, pads (1, 1) is SAME at odd sizes
    only): taken at a sample size it would differ between samples (refused) or, when the
    samples agree, be silently wrong at other run-time sizes. An explicit PAD is exact."""
    if any_size == EVERY_SIZE_SAME:  # ONNX SAME_UPPER: TFLite's SAME at every size, also
        # where this sample's pads are 0 (SAME_UPPER's pads are TFLite's by construction)
        same = list(pads) == tf_same_pads(in_spatial, kernel, strides, dilations)
        return "SAME" if same else None
    if all(p == (0, 0) for p in pads):
        return "VALID"
    if list(pads) != tf_same_pads(in_spatial, kernel, strides, dilations):
        return None
    if any_size and any(int(s) != 1 for s in strides):
        return None
    return "SAME"


def conv2d_options(mode: str, strides, dilations) -> dict:
    """CONV_2D / DEPTHWISE_CONV_2D options for a 2-D window (activation fused later)."""
    return dict(
        padding=mode,
        stride_h=int(strides[0]),
        stride_w=int(strides[1]),
        dilation_h_factor=int(dilations[0]),
        dilation_w_factor=int(dilations[1]),
        fused_activation_function="NONE",
    )


def pool_output_size(size, k, s, d, pb, pe, ceil_mode) -> int:
    span = size + pb + pe - ((k - 1) * d + 1)
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + pb:
        out -= 1  # the last window must start inside the input or the begin padding
    return out


def pool_window_geometry(ctx, spatial):
    """(kernel, strides, dilations, ONNX pads, pads making a VALID pool exact, output sizes)
    of a MaxPool/AveragePool/LpPool node over ``spatial`` input sizes."""
    kernel = [int(k) for k in ctx.attr("kernel_shape")]
    strides = [int(s) for s in ctx.attr("strides", [1] * len(kernel))]
    dilations = [int(d) for d in ctx.attr("dilations", [1] * len(kernel))]
    pads = spatial_pads(ctx, spatial, kernel, strides, dilations)
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    outs = [
        pool_output_size(n, k, s, d, pb, pe, ceil_mode)
        for n, k, s, d, (pb, pe) in zip(spatial, kernel, strides, dilations, pads, strict=False)
    ]
    # Extra end padding so that a VALID pool yields exactly ``outs`` windows.
    if window_sizes_vary(ctx, len(spatial)):
        return kernel, strides, dilations, pads, any_size_pool_pads(ctx, pads, ceil_mode), outs
    full = []
    for n, k, s, (pb, _pe), o in zip(spatial, kernel, strides, pads, outs, strict=False):
        need = (o - 1) * s + k - (n + pb)
        full.append((pb, max(need, 0)))
    return kernel, strides, dilations, pads, full, outs
