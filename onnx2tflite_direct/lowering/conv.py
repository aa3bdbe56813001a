"""Conv (1-D, 2-D, 3-D; regular, depthwise, grouped, dilated, every pad mode) -> CONV_2D /
DEPTHWISE_CONV_2D / CONV_3D in channel-last layout.

Weights and bias may be runtime tensors: the CONV_2D filter [O, kH, kW, I] is exactly the
channel-last permutation of ONNX [O, I, kH, kW], so the weight is requested in a layout (a
constant is permuted in numpy, a runtime weight gets one TRANSPOSE). 1-D convs run as 2-D with
a unit height; padding TFLite cannot express becomes an explicit PAD.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from .. import layout as L
from ..policies import channel_last
from ..registry import lowering
from . import conv3d_frames, conv_split
from .common import conv2d_options, padding_mode, spatial_pads
from .conv_lattice import integer_conv
from .dynamic_sizes import any_size_padding, refuse_sample_pads, sizes_vary
from .emit import Emitter

DEPTHWISE_2D = L.Layout((1, 2, 3, 0))  # [O, 1, kH, kW] -> [1, kH, kW, O]
CONV_3D_FILTER = L.Layout((2, 3, 4, 1, 0))  # [O, I, kD, kH, kW] -> [kD, kH, kW, I, O]


def _conv_check(node, graph):
    x, w = graph.values[node.inputs[0]], graph.values[node.inputs[1]]
    group = int(node.attrs.get("group", 1))
    if w.rank != x.rank:
        return f"{errors.UNSUPPORTED_RANK}: weight rank {w.rank} != input rank {x.rank}"
    # a grouped 3-D conv runs as grouped 2-D convs over frames (conv3d_frames.py): only with a
    # constant float32 filter at fixed sizes; CONV_3D itself has no groups
    frames = (
        w.const is not None
        and np.asarray(w.const).dtype == np.float32
        and not getattr(graph, "sample_pinned", False)
        and conv3d_frames.FRAMES_AS_2D
    )
    if x.rank == 5 and group != 1 and not frames:
        return (
            f"{errors.UNSUPPORTED_ATTRIBUTE_VALUE}: grouped 3-D conv (CONV_3D has no groups; "
            "a constant float32 filter at fixed input sizes runs as grouped 2-D convs)"
        )
    return None


def _geometry(ctx):
    w_shape = ctx.shape(1)
    kernel = [int(k) for k in w_shape[2:]]
    n = len(kernel)
    strides = [int(s) for s in ctx.attr("strides", [1] * n)]
    dilations = [int(d) for d in ctx.attr("dilations", [1] * n)]
    pads = spatial_pads(ctx, list(ctx.shape(0)[2:]), kernel, strides, dilations)
    return kernel, strides, dilations, pads


# Drop kernel taps that read only padding (see _live_taps); benchmarks/bench_outliers.py turns it
# off to time the untrimmed form.
TRIM_DEAD_TAPS = True


def _live_taps(size, out, k, s, d, pad):
    """(first, last) kernel tap of one spatial axis that reads the input at some output position,
    or None when every tap does (nothing to trim) or none does, or the trimmed pads would be
    negative.

    An atrous conv whose dilation reaches past the input (DeepLab's ASPP: dilation 24 and 36 on
    a 14x14 map) multiplies most taps by zero padding only; dropping them gives the same sums
    (the zero terms are exact zeros) with a smaller kernel, often 1x1, where the padded full
    kernel costs up to 9x the arithmetic."""
    live = [t for t in range(k) if any(0 <= o * s + t * d - pad[0] < size for o in range(out))]
    if not live or (live[0] == 0 and live[-1] == k - 1):
        return None
    first, last = live[0], live[-1]
    if pad[0] - first * d < 0 or pad[1] - (k - 1 - last) * d < 0:
        return None
    return first, last


def _trim_dead_taps(ctx, kernel, dilations, pads):
    """Constant-weight ONNX filter with the dead taps of every spatial axis cut off, with the
    matching kernel, dilations and pads; None when no axis has dead taps."""
    w = ctx.const(1)
    if not TRIM_DEAD_TAPS or w is None or np.asarray(w).dtype != np.float32:
        return None
    if sizes_vary(ctx):  # taps dead at a sample size may read the input at a larger one
        return None
    spatial, out = list(ctx.shape(0)[2:]), list(ctx.out_shape(0)[2:])
    strides = [int(s) for s in ctx.attr("strides", [1] * len(kernel))]
    cut = [slice(None), slice(None)]
    kernel, dilations, pads = list(kernel), list(dilations), list(pads)
    trimmed = False
    for ax in range(len(kernel)):
        taps = _live_taps(spatial[ax], out[ax], kernel[ax], strides[ax], dilations[ax], pads[ax])
        if taps is None:
            cut.append(slice(None))
            continue
        first, last = taps
        d = dilations[ax]
        pads[ax] = (pads[ax][0] - first * d, pads[ax][1] - (kernel[ax] - 1 - last) * d)
        kernel[ax] = last - first + 1
        dilations[ax] = d if kernel[ax] > 1 else 1
        cut.append(slice(first, last + 1))
        trimmed = True
    if not trimmed:
        return None
    return np.ascontiguousarray(np.asarray(w)[tuple(cut)]), kernel, dilations, pads


def _bias(ctx, channels: int):
    if ctx.has_input(2):
        return ctx.input(2)
    return ctx.const_tensor(np.zeros(channels, np.float32), "bias")


@lowering(
    "Conv",
    channel_last(data_inputs=(0, 1)),
    nonempty=True,
    ranks=(3, 4, 5),
    dtype_inputs=(0, 1, 2),
    tflite_ops=(
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "CONV_3D",
        "PAD",
        "RESHAPE",
        "TRANSPOSE",
        "STRIDED_SLICE",
        "ADD",
        "CONCATENATION",
        "MUL",
        "DEQUANTIZE",
        "CAST",
        "SLICE",
        "FULLY_CONNECTED",
    ),
    notes="1-D convs run as 2-D with a unit height; runtime weights get one TRANSPOSE; "
    "3-D with a constant float32 filter: CONV_2D over frames folded into the batch "
    "(any group), else CONV_3D (group=1 only); on a Q/DQ lattice with int8 weights: exact "
    "integer sums (one conv per weight digit past 2**24, or im2col rows on the exact int8 "
    "FULLY_CONNECTED where cheaper, lowering/lattice_int8.py), one MUL",
    extra_check=_conv_check,
)
def lower_conv(ctx):
    if len(ctx.shape(0)) == 5:
        _conv_3d(ctx)
    else:
        _conv_2d(ctx)


def _conv_2d(ctx):
    e = Emitter(ctx)
    x_shape = ctx.shape(0)
    w_shape = ctx.shape(1)
    one_d = len(x_shape) == 3
    n, c = x_shape[0], x_shape[1]
    o = w_shape[0]
    spatial = list(x_shape[2:])
    kernel, strides, dilations, pads = _geometry(ctx)
    group = int(ctx.attr("group", 1))
    depthwise = group == c and group > 1 and w_shape[1] == 1
    w_layout = DEPTHWISE_2D if depthwise else L.channel_last(len(w_shape))
    if depthwise and one_d:
        w_layout = L.Layout((1, 2, 0))
    # 1-D (a run-time reshape of the filter) and wide depthwise (float taps) keep the float conv
    lattice = None
    if not one_d and not (depthwise and kernel[0] * kernel[1] > MAX_DEPTHWISE_TAPS):
        lattice = integer_conv(ctx, o)
    if lattice is not None:
        lattice.emit_2d(ctx, w_layout, (kernel, strides, dilations, pads), depthwise)
        return
    trim = _trim_dead_taps(ctx, kernel, dilations, pads)
    w_full = trim[0] if trim is not None else ctx.const(1)
    split = conv_split.output_parts(ctx, w_full, group, one_d)  # a filter past the cache
    if trim is not None:
        w_trim, kernel, dilations, pads = trim
        filt = ctx.const_tensor(np.ascontiguousarray(np.transpose(w_trim, w_layout.perm)), "taps")
    elif split > 1:
        filt = None  # (emitted per slice)
    else:
        filt = ctx.input(1, w_layout)  # [O, (kH,) kW, I] or [1, (kH,) kW, O]
    x = ctx.input(0)  # channel-last: [N, W, C] or [N, H, W, C]
    if one_d:  # view as [N, 1, W, C]
        spatial, kernel, strides = [1] + spatial, [1] + kernel, [1] + strides
        dilations, pads = [1] + dilations, [(0, 0)] + pads
        x = ctx.reshape(x, (n, 1, x_shape[2], c), "as_2d")
        filt = ctx.reshape(filt, (filt.shape[0], 1, *filt.shape[1:]), "filter_2d")
    final = ctx.output(0)
    out_hw = (1, ctx.out_shape(0)[2]) if one_d else tuple(ctx.out_shape(0)[2:])
    out = ctx.temp(np.float32, (n, *out_hw, o), "conv2d") if one_d else final
    w_np = w_trim if trim is not None else ctx.const(1)
    # (its tiles crop and pad by amounts taken at this size: not when the sizes vary)
    if depthwise and not sizes_vary(ctx) and _wide_depthwise(w_np, kernel):
        geometry = (kernel, strides, dilations, pads, out_hw)
        _banded_depthwise(ctx, x, np.asarray(w_np).reshape(o, 1, *kernel), geometry, out)
        if one_d:
            e.reshape(out, out=final)
        return
    if (group == 1 or depthwise) and _padding_regions(
        ctx, x, w_np, (kernel, strides, dilations, pads, out_hw), out, depthwise
    ):
        if one_d:
            e.reshape(out, out=final)
        return
    mode = padding_mode(pads, spatial, kernel, strides, dilations, any_size_padding(ctx))
    if mode is None:
        refuse_sample_pads(ctx, kernel, strides, dilations)
        x = e.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
        mode = "VALID"
    options = conv2d_options(mode, strides, dilations)
    if depthwise:
        e.op(
            "DEPTHWISE_CONV_2D", x, filt, _bias(ctx, o), out=out, depth_multiplier=o // c, **options
        )
    elif split > 1:
        conv_split.emit_split(ctx, x, np.asarray(w_np), out, options, split)
    else:  # group > 1 is a grouped CONV_2D (input channels = group * filter channels)
        e.op("CONV_2D", x, filt, _bias(ctx, o), out=out, **options)
    if one_d:
        e.reshape(out, out=final)


# A conv whose taps mostly read zero padding (an atrous conv with a dilation close to the map
# size: DeepLab's ASPP at dilation 12 on a 14x14 map computes 82% of its products on padding)
# runs as one VALID conv per output region with the taps live there, when that keeps at most
# MAX_LIVE_FRACTION of the products in at most MAX_PADDING_REGIONS convs.
# benchmarks/bench_outliers.py turns SPLIT_PADDING_REGIONS off to time the single conv.
SPLIT_PADDING_REGIONS = True
MAX_LIVE_FRACTION = 0.5
MAX_PADDING_REGIONS = 9


def _axis_runs(size, out, k, s, d, pad_begin):
    """Runs [first, stop, (ta, tb)] of output positions along one axis whose live taps (those
    reading the input, not padding) are the same range ta..tb; None if some output reads only
    padding."""
    runs: list[list] = []
    for o in range(out):
        live = [t for t in range(k) if 0 <= o * s + t * d - pad_begin < size]
        if not live:
            return None
        key = (live[0], live[-1])
        if runs and runs[-1][2] == key:
            runs[-1][1] = o + 1
        else:
            runs.append([o, o + 1, key])
    return runs


def _padding_regions(ctx, x, w, geometry, out, depthwise) -> bool:
    """The conv as a grid of VALID convs, one per region of outputs with the same live taps, on
    the input window those taps read (a STRIDED_SLICE), joined by CONCATENATION (width, then
    height). Each output sums exactly its non-padding products, as the padded conv does, so
    only the addition order of the dropped zero products differs. False when not worth it."""
    e = Emitter(ctx)
    kernel, strides, dilations, pads, out_hw = geometry
    if not SPLIT_PADDING_REGIONS or w is None or np.asarray(w).dtype != np.float32:
        return False
    if sizes_vary(ctx):  # the regions (and whether they pay) follow the input size
        return False
    if all(p == (0, 0) for p in pads):
        return False
    size = x.shape[1:3]
    runs = [
        _axis_runs(size[a], out_hw[a], kernel[a], strides[a], dilations[a], pads[a][0])
        for a in range(2)
    ]
    if any(r is None for r in runs) or len(runs[0]) * len(runs[1]) > MAX_PADDING_REGIONS:
        return False
    live = 1.0
    for a in range(2):
        live *= sum((b - f) * (tb - ta + 1) for f, b, (ta, tb) in runs[a]) / (out_hw[a] * kernel[a])
    if live > MAX_LIVE_FRACTION:
        return False
    n, o, c = out.shape[0], out.shape[3], x.shape[3]
    w = np.asarray(w).reshape(o, -1, *kernel)
    perm = (1, 2, 3, 0) if depthwise else (0, 2, 3, 1)
    bands = []
    for f0, b0, (ta, tb) in runs[0]:
        cells = []
        for f1, b1, (ua, ub) in runs[1]:
            first = (
                f0 * strides[0] + ta * dilations[0] - pads[0][0],
                f1 * strides[1] + ua * dilations[1] - pads[1][0],
            )
            last = (
                (b0 - 1) * strides[0] + tb * dilations[0] - pads[0][0],
                (b1 - 1) * strides[1] + ub * dilations[1] - pads[1][0],
            )
            begin, end = [0, first[0], first[1], 0], [n, last[0] + 1, last[1] + 1, c]
            window = x
            if begin != [0, 0, 0, 0] or end != list(x.shape):
                window = e.crop(x, begin, end, "live_window")
            taps = np.ascontiguousarray(np.transpose(w[:, :, ta : tb + 1, ua : ub + 1], perm))
            dil = [
                d if k > 1 else 1
                for d, k in zip(dilations, (tb - ta + 1, ub - ua + 1), strict=True)
            ]
            cell = ctx.temp(np.float32, (n, b0 - f0, b1 - f1, o), "live_region")
            inputs = [window, ctx.const_tensor(taps, "live_taps"), _bias(ctx, o)]
            options = conv2d_options("VALID", strides, dil)
            if depthwise:
                e.op("DEPTHWISE_CONV_2D", *inputs, out=cell, depth_multiplier=o // c, **options)
            else:
                e.op("CONV_2D", *inputs, out=cell, **options)
            cells.append(cell)
        band = cells[0]
        if len(cells) > 1:
            band = (
                out
                if len(runs[0]) == 1
                else ctx.temp(np.float32, (n, b0 - f0, out_hw[1], o), "live_band")
            )
            e.concat(cells, 2, out=band)
        bands.append(band)
    if len(bands) > 1:
        e.concat(bands, 1, out=out)
    elif bands[0] is not out:
        e.reshape(bands[0], out=out)
    return True


# XNNPACK runs a depthwise conv of more than 25 taps (7x7, 6x5, 1x31, ...) through a path
# 30-70x slower than the 5x5 one (measured on x86-64 with ai-edge-litert 2.3: 96 channels at
# 80x80, 7x7 24.9 ms, 7x3 0.35 ms, 6x4 0.34 ms, 7x4 20.8 ms); PP-OCRv5/v6 detectors use 7x7.
# benchmarks/bench_outliers.py turns SPLIT_WIDE_DEPTHWISE off to time the single-op form.
MAX_DEPTHWISE_TAPS = 25
SPLIT_WIDE_DEPTHWISE = True


def _wide_depthwise(w, kernel) -> bool:
    return (
        SPLIT_WIDE_DEPTHWISE
        and w is not None
        and np.asarray(w).dtype == np.float32
        and kernel[0] * kernel[1] > MAX_DEPTHWISE_TAPS
    )


def _bands(k: int, size: int) -> list[tuple[int, int]]:
    """``range(k)`` cut into the fewest near-equal runs of at most ``size``."""
    parts = -(-k // size)
    edges = np.linspace(0, k, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _banded_depthwise(ctx, x, w, geometry, out):
    """A depthwise conv of more than MAX_DEPTHWISE_TAPS taps as the sum of depthwise convs over
    kernel tiles of at most that many taps, each followed by an ADD (the bias on the first tile
    only). A tile reads the window of the padded input that its taps reach: the input cropped
    (STRIDED_SLICE) where the window starts or ends inside it, padded where it reaches into the
    padding (SAME, or a PAD feeding only that conv, which XNNPACK folds into it; one PAD shared
    by all tiles runs 5-25x slower there). Every output sums the same products as the single
    conv, grouped by tile (float addition order only)."""
    e = Emitter(ctx)
    kernel, strides, dilations, pads, out_hw = geometry
    o, c = out.shape[3], x.shape[3]
    cols = min(kernel[1], MAX_DEPTHWISE_TAPS)  # bands of rows: a crop of rows is contiguous
    rows = max(1, MAX_DEPTHWISE_TAPS // cols)
    tiles = [(r, q) for r in _bands(kernel[0], rows) for q in _bands(kernel[1], cols)]
    acc = None
    for i, tile in enumerate(tiles):
        begin, end, tile_pads = [0, 0, 0, 0], list(x.shape), []
        for a, (lo, hi) in enumerate(tile):
            size, (pb, _) = x.shape[1 + a], pads[a]
            start = lo * dilations[a] - pb  # window in input coordinates
            stop = start + (out_hw[a] - 1) * strides[a] + (hi - lo - 1) * dilations[a] + 1
            begin[1 + a], end[1 + a] = max(0, start), min(size, stop)
            tile_pads.append((max(0, -start), max(0, stop - size)))
        window = x
        if begin != [0, 0, 0, 0] or end != list(x.shape):
            window = e.crop(x, begin, end, "tile_window")
        tile_k = [hi - lo for lo, hi in tile]
        window_hw = list(window.shape[1:3])
        mode = padding_mode(tile_pads, window_hw, tile_k, strides, dilations, sizes_vary(ctx))
        if mode is None:
            window = e.pad(window, [(0, 0), *tile_pads, (0, 0)])
            mode = "VALID"
        (r0, r1), (c0, c1) = tile
        tile_w = np.ascontiguousarray(np.transpose(w[:, :, r0:r1, c0:c1], (1, 2, 3, 0)))
        bias = _bias(ctx, o) if i == 0 else ctx.const_tensor(np.zeros(o, np.float32), "bias")
        part = e.op(
            "DEPTHWISE_CONV_2D",
            window,
            ctx.const_tensor(tile_w, "tile_filter"),
            bias,
            shape=out.shape,
            dtype=np.float32,
            hint="tile_conv",
            depth_multiplier=o // c,
            **conv2d_options(mode, strides, dilations),
        )
        if acc is None:
            acc = part
            continue
        total = out if i == len(tiles) - 1 else ctx.temp(np.float32, out.shape, "tile_sum")
        e.op("ADD", acc, part, out=total)
        acc = total


def _conv_3d(ctx):
    e = Emitter(ctx)
    kernel, strides, dilations, pads = _geometry(ctx)
    if conv3d_frames.applies(ctx):  # XNNPACK has no CONV_3D: 2-D convs over frames
        conv3d_frames.conv3d_as_2d(ctx, (kernel, strides, dilations, pads))
        return
    x = ctx.input(0)  # [N, D, H, W, C]
    spatial = list(ctx.shape(0)[2:])
    mode = padding_mode(pads, spatial, kernel, strides, dilations, any_size_padding(ctx))
    if mode is None:
        refuse_sample_pads(ctx, kernel, strides, dilations)
        x = e.pad(x, [(0, 0), *pads, (0, 0)])
        mode = "VALID"
    o = ctx.shape(1)[0]
    bias = _bias(ctx, o)
    e.op(
        "CONV_3D",
        x,
        ctx.input(1, CONV_3D_FILTER),
        bias,
        out=ctx.output(0),
        padding=mode,
        stride_d=strides[0],
        stride_h=strides[1],
        stride_w=strides[2],
        dilation_d_factor=dilations[0],
        dilation_h_factor=dilations[1],
        dilation_w_factor=dilations[2],
        fused_activation_function="NONE",
    )
