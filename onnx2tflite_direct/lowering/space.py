"""Space/depth rearrangements and sequence ops: DepthToSpace, SpaceToDepth, ReverseSequence,
CenterCropPad.

DEPTH_TO_SPACE/SPACE_TO_DEPTH are NHWC kernels with DCR channel order, so these run
channel-last. ONNX's CRD order differs only by a fixed permutation of the channels, applied
with one constant-index GATHER on the channel axis (before DepthToSpace, after SpaceToDepth).
CenterCropPad's offsets follow from the static input and output shapes: a STRIDED_SLICE for
cropped axes and a PAD for padded ones, in the input's layout.
"""

from __future__ import annotations

import numpy as np

from ..policies import channel_last, keep_rank, onnx_order
from ..registry import attr_in, lowering
from .emit import Emitter

# dtypes proven by tests/test_ops_space.py
SPACE_TYPES = ("float32", "int8", "uint8")


def _crd_to_dcr(channels: int, block: int) -> np.ndarray:
    """Index table: DCR channel j takes CRD channel table[j]."""
    c = channels // (block * block)
    return (
        np.arange(channels).reshape(c, block, block).transpose(1, 2, 0).reshape(-1).astype(np.int32)
    )


def _channel_gather(ctx, x, table, out, hint):
    e = Emitter(ctx)
    e.gather(x, ctx.const_tensor(table, hint), 3, out=out)


@lowering(
    "DepthToSpace",
    channel_last(),
    dtypes=SPACE_TYPES,
    ranks=(4,),
    attrs=(attr_in("mode", ("DCR", "CRD"), "DCR"),),
    tflite_ops=("DEPTH_TO_SPACE", "GATHER"),
    notes="CRD: channel permutation by GATHER first",
)
def lower_depth_to_space(ctx):
    e = Emitter(ctx)
    block = int(ctx.attr("blocksize"))
    x = ctx.input(0)
    if ctx.attr("mode", "DCR") == "CRD":
        permuted = ctx.temp(x.dtype, x.shape, "dcr")
        _channel_gather(ctx, x, _crd_to_dcr(x.shape[3], block), permuted, "crd_to_dcr")
        x = permuted
    e.op("DEPTH_TO_SPACE", x, out=ctx.output(0), block_size=block)


@lowering(
    "SpaceToDepth",
    channel_last(),
    dtypes=SPACE_TYPES,
    ranks=(4,),
    attrs=(attr_in("mode", ("DCR", "CRD"), "DCR"),),
    tflite_ops=("SPACE_TO_DEPTH", "GATHER"),
    notes="CRD: channel permutation by GATHER after",
)
def lower_space_to_depth(ctx):
    e = Emitter(ctx)
    block = int(ctx.attr("blocksize"))
    out = ctx.output(0)
    if ctx.attr("mode", "DCR") != "CRD":
        e.op("SPACE_TO_DEPTH", ctx.input(0), out=out, block_size=block)
        return
    dcr = e.op(
        "SPACE_TO_DEPTH",
        ctx.input(0),
        shape=out.shape,
        dtype=out.dtype,
        hint="dcr",
        block_size=block,
    )
    table = np.argsort(_crd_to_dcr(out.shape[3], block)).astype(np.int32)
    _channel_gather(ctx, dcr, table, out, "dcr_to_crd")


@lowering(
    "ReverseSequence",
    onnx_order,
    since=10,
    dtypes=("float32", "int32", "int64"),
    tflite_ops=("REVERSE_SEQUENCE",),
)
def lower_reverse_sequence(ctx):
    e = Emitter(ctx)
    e.op(
        "REVERSE_SEQUENCE",
        ctx.input(0),
        ctx.input(1),
        out=ctx.output(0),
        seq_dim=int(ctx.attr("time_axis", 0)),
        batch_dim=int(ctx.attr("batch_axis", 1)),
    )


@lowering(
    "CenterCropPad",
    keep_rank(),
    since=18,
    dtypes=("float32", "int32", "int64"),
    tflite_ops=("STRIDED_SLICE", "PAD"),
    notes="offsets from the static shapes",
)
def lower_center_crop_pad(ctx):
    e = Emitter(ctx)
    lay = ctx.in_layout(0)
    shape_in = [ctx.shape(0)[a] for a in lay.perm]
    shape_out = [ctx.out_shape(0)[a] for a in lay.perm]
    x = ctx.input(0)
    if any(o < i for i, o in zip(shape_in, shape_out, strict=True)):
        begin = [(i - o) // 2 if o < i else 0 for i, o in zip(shape_in, shape_out, strict=True)]
        end = [b + min(i, o) for b, i, o in zip(begin, shape_in, shape_out, strict=True)]
        x = e.crop(x, begin, end)
    pads = [((o - d) // 2, o - d - (o - d) // 2) for d, o in zip(x.shape, shape_out, strict=True)]
    if any(p != (0, 0) for p in pads):
        x = e.pad(x, pads)
    e.reshape(x, out=ctx.output(0))
