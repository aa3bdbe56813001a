"""Arithmetic shared by lowerings: padding and pool-window geometry, conv options."""

from __future__ import annotations

import math


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

    ``any_size`` (see :func:`sizes_vary`): the input sizes change at run time, so SAME is
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


def sizes_vary(ctx) -> bool:
    """Is the node lowered at a sample size of a model whose input sizes vary at run time
    (``dynamic_shapes.py``)? A lowering must then make no choice that holds at some sizes only
    (a SAME padding, taps that read only padding at this size)."""
    return bool(getattr(ctx.driver.graph, "sample_pinned", False))


def axes_vary(ctx, axes, i: int = 0) -> bool:
    """Does any of the ONNX ``axes`` of input ``i`` follow the run-time sizes (True when not
    known)? A dynamic batch alone leaves a lowering's spatial choices (a resize's taps, a
    strided slice's picks) fixed: they keep their pinned form."""
    if not sizes_vary(ctx):
        return False
    varying = ctx.driver.graph.varying_dims.get(ctx.node.inputs[i])
    return varying is None or any(varying[int(a)] for a in axes)


# ``any_size`` value of a node whose auto_pad is SAME_UPPER while its sizes vary: TFLite's SAME
# at every size, also where this sample's pads are all 0 (k=2, s=2 at an even size: VALID
# there, one output short at every odd size).
EVERY_SIZE_SAME = "every_size_same"


def any_size_padding(ctx) -> bool | str:
    """``padding_mode``'s ``any_size`` for a node's own ``pads``/``auto_pad``: ONNX's
    SAME_UPPER is TFLite's SAME at every size (:data:`EVERY_SIZE_SAME`), explicit pads are
    not (see ``padding_mode``)."""
    if not sizes_vary(ctx):
        return False
    return EVERY_SIZE_SAME if ctx.attr("auto_pad", "NOTSET") == "SAME_UPPER" else True


def window_sizes_vary(ctx, n_spatial: int) -> bool:
    """Do the last ``n_spatial`` dims of the node's input (a window's spatial sizes) change at
    run time? ``sizes_vary`` narrowed by the front end's probe (``Graph.varying_dims``): with
    only the batch dynamic, the spatial sizes, pads and window counts are the sample's at
    every size. Unknown values count as varying."""
    return axes_vary(ctx, range(-n_spatial, 0))


def same_pads_vary(ctx, kernel, strides, dilations) -> bool:
    """Does the node's auto_pad SAME_UPPER/SAME_LOWER padding change with the run-time size?
    Its total, ``(ceil(n / s) - 1) * s + (k - 1) * d + 1 - n``, follows ``n`` modulo a stride
    above 1 for any window wider than one cell: pads computed at a sample size (an explicit
    PAD) hold at that size's residue only, silently wrong at the others."""
    if ctx.attr("auto_pad", "NOTSET") not in ("SAME_UPPER", "SAME_LOWER"):
        return False
    if not window_sizes_vary(ctx, len(kernel)):
        return False
    return any(
        int(s) > 1 and (int(k) - 1) * int(d) > 0
        for k, s, d in zip(kernel, strides, dilations, strict=True)
    )


def refuse_sample_pads(ctx, kernel, strides, dilations) -> None:
    """Called where a lowering is about to pad explicitly with the node's auto_pad pads: refuse
    when those pads hold at this sample size only (:func:`same_pads_vary`)."""
    if same_pads_vary(ctx, kernel, strides, dilations):
        ctx.refuse(
            "dynamic_shape_unsupported",
            f"auto_pad {ctx.attr('auto_pad', 'NOTSET')} with strides {list(strides)} needs an "
            "explicit PAD here, whose amounts change with the input size modulo the stride; "
            "pin the spatial sizes (--input-shape) to convert it",
        )


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
        return kernel, strides, dilations, pads, _any_size_full(ctx, pads, ceil_mode), outs
    full = []
    for n, k, s, (pb, _pe), o in zip(spatial, kernel, strides, pads, outs, strict=False):
        need = (o - 1) * s + k - (n + pb)
        full.append((pb, max(need, 0)))
    return kernel, strides, dilations, pads, full, outs


def _any_size_full(ctx, pads, ceil_mode: bool) -> list[tuple[int, int]]:
    """``pool_window_geometry``'s VALID pads when the sizes vary at run time: ONNX's own pads
    give floor's window count at every size; ceil's count, ``ceil((n + pads - K) / s) + 1``, is
    floor's over ``s - 1`` more end cells, at every size (extra cells taken at a sample size
    hold only at sizes of its residue modulo the stride: k=2, s=2 at even samples needs none,
    one window short at every odd size). Refused where onnxruntime's rule that the last window
    starts inside the input or its begin padding drops that window at some sizes
    (``pe + s - 1 >= K``)."""
    if not ceil_mode:
        return list(pads)
    kernel = [int(k) for k in ctx.attr("kernel_shape")]
    strides = [int(s) for s in ctx.attr("strides", [1] * len(kernel))]
    dilations = [int(d) for d in ctx.attr("dilations", [1] * len(kernel))]
    full = []
    for k, s, d, (pb, pe) in zip(kernel, strides, dilations, pads, strict=False):
        if s > 1 and pe + s - 1 >= (k - 1) * d + 1:
            ctx.refuse(
                "dynamic_shape_unsupported",
                f"ceil_mode with kernel {kernel}, strides {strides} and end pads "
                f"{[p[1] for p in pads]}: onnxruntime drops the last window at some input "
                "sizes (it must start inside the input); pin the spatial sizes "
                "(--input-shape) to convert it",
            )
        full.append((pb, pe + s - 1))
    return full
