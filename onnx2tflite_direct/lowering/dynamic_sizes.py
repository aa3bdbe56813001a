"""Dynamic-size predicates of the lowerings: does this node's geometry change at run time?

Why a module of its own: a model whose input dims stay dynamic is lowered at sample sizes
(``dynamic_shapes.py``) and the graphs are compared. A lowering at a sample size must make no
choice that holds at that size only (a TFLite SAME padding that equals the ONNX pads at some
residues of the stride, taps that read only padding, a clip normalized against the sample),
and must keep every choice that holds at every size (a pinned spatial size under a dynamic
batch). These predicates answer that one question for every lowering, from two facts: is the
graph lowered at a sample size (``Graph.sample_pinned``), and which dims of a tensor differ
between the samples (``Graph.varying_dims``, the front end's probe). The padding and window
arithmetic that consumes their answers stays in ``common.py``.
"""

from __future__ import annotations


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


def window_sizes_vary(ctx, n_spatial: int) -> bool:
    """Do the last ``n_spatial`` dims of the node's input (a window's spatial sizes) change at
    run time? ``sizes_vary`` narrowed by the front end's probe (``Graph.varying_dims``): with
    only the batch dynamic, the spatial sizes, pads and window counts are the sample's at
    every size. Unknown values count as varying."""
    return axes_vary(ctx, range(-n_spatial, 0))


# ``any_size`` value of a node whose auto_pad is SAME_UPPER while its sizes vary: TFLite's SAME
# at every size, also where this sample's pads are all 0 (k=2, s=2 at an even size: VALID
# there, one output short at every odd size).
EVERY_SIZE_SAME = "every_size_same"


def spatial_axes(ctx) -> range:
    """The ONNX axes of input 0 that the node's window slides over: those after batch and
    channels (NCHW), or between them for com.microsoft's NhwcConv (NHWC)."""
    rank = len(ctx.shape(0))
    return range(1, rank - 1) if ctx.node.op_type == "NhwcConv" else range(2, rank)


def any_size_padding(ctx) -> bool | str:
    """``padding_mode``'s ``any_size`` for a node's own ``pads``/``auto_pad``: ONNX's
    SAME_UPPER is TFLite's SAME at every size (:data:`EVERY_SIZE_SAME`), explicit pads are
    not (see ``common.padding_mode``). Asked of the window's spatial axes only: a dynamic
    batch leaves the spatial sizes the sample's at every size, and there TFLite's SAME that
    equals the pads is exact (one PAD op fewer a window)."""
    if not axes_vary(ctx, spatial_axes(ctx)):
        return False
    return EVERY_SIZE_SAME if ctx.attr("auto_pad", "NOTSET") == "SAME_UPPER" else True


def same_pads_vary(ctx, kernel, strides, dilations) -> bool:
    """Does the node's auto_pad SAME_UPPER/SAME_LOWER padding change with the run-time size?
    Its total, ``(ceil(n / s) - 1) * s + (k - 1) * d + 1 - n``, follows ``n`` modulo a stride
    above 1 for any window wider than one cell: pads computed at a sample size (an explicit
    PAD) hold at that size's residue only, silently wrong at the others."""
    if ctx.attr("auto_pad", "NOTSET") not in ("SAME_UPPER", "SAME_LOWER"):
        return False
    if not axes_vary(ctx, spatial_axes(ctx)):
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


def any_size_pool_pads(ctx, pads, ceil_mode: bool) -> list[tuple[int, int]]:
    """``common.pool_window_geometry``'s VALID pads when the sizes vary at run time: ONNX's own
    pads give floor's window count at every size; ceil's count, ``ceil((n + pads - K) / s) +
    1``, is floor's over ``s - 1`` more end cells, at every size (extra cells taken at a sample
    size hold only at sizes of its residue modulo the stride: k=2, s=2 at even samples needs
    none, one window short at every odd size). Refused where onnxruntime's rule that the last
    window starts inside the input or its begin padding drops that window at some sizes
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
