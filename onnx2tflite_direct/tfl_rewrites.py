"""Rewrites on the emitted TFLite operators: activation fusion, dead-code removal, and
long reductions split for float accuracy.

Each rule indexes only the tensors it looks at (``Subgraph.producers`` / ``consumers`` with
``wanted``) and removes operators through a ``tfl_edit.Editor``."""

from __future__ import annotations

import numpy as np

from . import tfl
from .tfl_edit import Editor
from .transpose_rank import RULES as TRANSPOSE_RANK_RULES

# Ops whose kernels apply ``fused_activation_function`` on the CPU (float path).
FUSABLE_PRODUCERS = {
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "SUB",
    "MUL",
    "DIV",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "TRANSPOSE_CONV",
}
ACTIVATIONS = {"RELU": "RELU", "RELU6": "RELU6", "RELU_N1_TO_1": "RELU_N1_TO_1"}


def fuse_activations(sub: tfl.Subgraph) -> int:
    """producer -> RELU/RELU6/RELU_N1_TO_1 becomes the producer with a fused activation."""
    acts = [op for op in sub.operators if op.opcode in ACTIVATIONS]
    if not acts:
        return 0
    wanted = {id(a.inputs[0]) for a in acts}
    producer = sub.producers(wanted, FUSABLE_PRODUCERS)
    readers = sub.consumers(wanted)
    outputs = {id(t) for t in sub.outputs}
    ed = Editor(sub, fresh_names=False)
    for act in acts:
        fused = ACTIVATIONS[act.opcode]
        src = act.inputs[0]
        prod = producer.get(id(src))
        if (
            prod is None
            or prod.opcode not in FUSABLE_PRODUCERS
            or prod.options.get("fused_activation_function", "NONE") != "NONE"
            or len(readers.get(id(src), ())) != 1
            or id(src) in outputs
            or src.dtype.name != "float32"
        ):
            continue
        prod.options["fused_activation_function"] = fused
        prod.outputs[prod.outputs.index(src)] = act.outputs[0]
        producer[id(act.outputs[0])] = prod
        ed.remove(act)
    return ed.commit()


BIAS_PRODUCERS = {"FULLY_CONNECTED": 2, "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2}


def _channel_vector(t: tfl.Tensor, channels: int) -> np.ndarray | None:
    """A constant that broadcasts along the last axis only, as a [channels] vector."""
    if t.data is None or t.quantization is not None or t.dtype != np.float32:
        return None
    data = t.data
    if data.size == 1:
        return np.full(channels, data.reshape(-1)[0], np.float32)
    if data.shape[-1] == channels and data.size == channels:
        return data.reshape(channels)
    return None


def fuse_bias_add(sub: tfl.Subgraph) -> int:
    """FULLY_CONNECTED/CONV_2D/DEPTHWISE_CONV_2D -> ADD(per-channel constant) folds the
    constant into the bias (MatMul + Add exported separately is the common case)."""
    adds, producers = [], False
    for op in sub.operators:
        if op.opcode == "ADD":
            if op.options.get("fused_activation_function", "NONE") == "NONE":
                adds.append(op)
        elif op.opcode in BIAS_PRODUCERS:
            producers = True
    if not adds or not producers:
        return 0
    wanted = {id(t) for add in adds for t in add.inputs}
    producer = sub.producers(wanted, BIAS_PRODUCERS)
    readers = sub.consumers(wanted)
    outputs = {id(t) for t in sub.outputs}
    ed = Editor(sub, fresh_names=False)
    for add in adds:
        for mid, other in ((add.inputs[0], add.inputs[1]), (add.inputs[1], add.inputs[0])):
            prod = producer.get(id(mid))
            if (
                prod is None
                or prod.opcode not in BIAS_PRODUCERS
                or ed.removed(prod)
                or prod.options.get("fused_activation_function", "NONE") != "NONE"
                or len(readers.get(id(mid), ())) != 1
                or id(mid) in outputs
                or mid.dtype != np.float32
                or mid.quantization is not None
                or tuple(add.outputs[0].shape) != tuple(mid.shape)
            ):
                continue
            extra = _channel_vector(other, mid.shape[-1])
            slot = BIAS_PRODUCERS[prod.opcode]
            bias = prod.inputs[slot] if len(prod.inputs) > slot else None
            if extra is None or (bias is not None and bias.data is None):
                continue
            total = extra if bias is None else (bias.data.astype(np.float32) + extra)
            new_bias = ed.const(f"{mid.name}/bias", total, np.float32)
            while len(prod.inputs) <= slot:
                prod.inputs.append(None)
            prod.inputs[slot] = new_bias
            prod.outputs[prod.outputs.index(mid)] = add.outputs[0]
            producer[id(add.outputs[0])] = prod
            ed.remove(add)
            break
    return ed.commit()


def collapse_reshapes(sub: tfl.Subgraph) -> int:
    """RESHAPE -> RESHAPE becomes one RESHAPE; a RESHAPE that changes nothing disappears."""
    reshapes = [op for op in sub.operators if op.opcode == "RESHAPE"]
    if not reshapes:
        return 0
    # every tensor a RESHAPE reads after renaming is the original input of some RESHAPE
    wanted = {id(op.inputs[0]) for op in reshapes}
    producer = sub.producers(wanted, ("RESHAPE",))
    readers = sub.consumers(wanted)
    outputs = {id(t) for t in sub.outputs}
    ed = Editor(sub, fresh_names=False)
    rename: dict[int, tfl.Tensor] = {}
    for op in sub.operators:
        if op.opcode != "RESHAPE":  # rewired only if it reads a removed RESHAPE's output
            if rename and any(t is not None and id(t) in rename for t in op.inputs):
                op.inputs = [rename.get(id(t), t) if t is not None else None for t in op.inputs]
            continue
        op.inputs = [rename.get(id(t), t) if t is not None else None for t in op.inputs]
        src, out = op.inputs[0], op.outputs[0]
        prev = producer.get(id(src))
        if (
            prev is not None
            and prev.opcode == "RESHAPE"
            and not ed.removed(prev)
            and len(readers.get(id(src), ())) == 1
            and id(src) not in outputs
        ):
            op.inputs[0] = prev.inputs[0]
            ed.remove(prev)
            src = op.inputs[0]
        if (
            tuple(src.shape) == tuple(out.shape)
            and id(out) not in outputs
            and src.shape_signature is None
        ):
            rename[id(out)] = src
            sub.renamed[id(out)] = src
            ed.remove(op)
    return ed.commit()


# A float MEAN/SUM over several axes that adds up more elements per output than this becomes
# one reduction per axis. Why: LiteRT's kernels (XNNPACK's and the reference one alike) add a
# channel-last [N, H, W, C] tensor's H*W values per channel one after another in float32, so the
# rounding error grows with H*W: a squeeze-excite mean over 80x80 positions came out 4e-5 off
# (relative), 20x onnxruntime's error, and a 240-layer OCR detector drifted past tolerance.
# Reducing W, then H, adds at most max(H, W) values per sum; the result is the same mean.
# The bound sits between what the dynamic-shape samples (64 and 96) produce at one stride
# (576 and 1024 values), so the decision never differs between the samples' lowerings.
MAX_SEQUENTIAL_REDUCTION = 768
SPLITTABLE_REDUCERS = ("MEAN", "SUM")


def split_long_reductions(sub: tfl.Subgraph) -> int:
    """MEAN/SUM over several axes of a float tensor, more than ``MAX_SEQUENTIAL_REDUCTION``
    values per output, becomes one reduction per axis (innermost first)."""
    ed = Editor(sub, fresh_names=False)
    for op in sub.operators:
        if op.opcode not in SPLITTABLE_REDUCERS or len(op.inputs) < 2:
            continue
        x, axes_t = op.inputs[0], op.inputs[1]
        if (
            axes_t is None
            or axes_t.data is None
            or x.dtype != np.float32
            or x.quantization is not None
            or x.shape_signature is not None
        ):
            continue
        axes = sorted({int(a) % x.rank for a in np.asarray(axes_t.data).reshape(-1)}, reverse=True)
        count = int(np.prod([x.shape[a] for a in axes])) if axes else 1
        if len(axes) < 2 or count <= MAX_SEQUENTIAL_REDUCTION:
            continue
        out = op.outputs[0]
        steps, src, shape = [], x, list(x.shape)
        for i, axis in enumerate(axes):
            shape[axis] = 1
            last = i == len(axes) - 1
            dst = out if last and op.options.get("keep_dims") else None
            dst = dst or ed.temp(f"{out.name}/over_axis{axis}", np.float32, tuple(shape))
            axis_t = ed.const(f"{out.name}/axis{axis}", np.array([axis], np.int32))
            steps.append(ed.op(op.opcode, [src, axis_t], [dst], op, keep_dims=True))
            src = dst
        if src is not out:  # keep_dims=False: the reduced axes go at the end
            steps.append(ed.reshape(src, out, op))
        ed.replace(op, steps)
    return ed.commit()


def _row_of(op: tfl.Operator | None) -> tuple[tfl.Tensor, int] | None:
    """(source, t) when ``op`` is a unit-stride SLICE/STRIDED_SLICE taking exactly row t of its
    source's first axis (every other axis whole, no masks): a time step of a sequence."""
    if op is None or op.opcode not in ("SLICE", "STRIDED_SLICE") or len(op.inputs) < 3:
        return None
    src = op.inputs[0]
    consts = [t.data if t is not None else None for t in op.inputs[1:]]
    if src.shape_signature is not None or any(c is None for c in consts) or src.rank < 1:
        return None
    begin = [int(v) for v in np.asarray(consts[0]).reshape(-1)]
    if len(begin) != src.rank or np.asarray(consts[1]).size != src.rank:
        return None
    if op.opcode == "SLICE":
        size = [int(v) for v in np.asarray(consts[1]).reshape(-1)]
        end = [
            b + (d - b if z == -1 else z) for b, z, d in zip(begin, size, src.shape, strict=True)
        ]
    else:
        if op.options.get("ellipsis_mask", 0) or op.options.get("new_axis_mask", 0):
            return None
        if op.options.get("shrink_axis_mask", 0) & ~1 or op.options.get("offset", False):
            return None
        if len(consts) < 3 or any(int(v) != 1 for v in np.asarray(consts[2]).reshape(-1)):
            return None
        end = [int(v) for v in np.asarray(consts[1]).reshape(-1)]
        b_mask, e_mask = op.options.get("begin_mask", 0), op.options.get("end_mask", 0)
        begin = [0 if b_mask >> i & 1 else v for i, v in enumerate(begin)]
        end = [
            d if e_mask >> i & 1 else v for i, (v, d) in enumerate(zip(end, src.shape, strict=True))
        ]
    if end[0] - begin[0] != 1 or not 0 <= begin[0] < src.shape[0]:
        return None
    rest = zip(begin[1:], end[1:], src.shape[1:], strict=True)
    if any(b != 0 or min(e, d) != d for b, e, d in rest):
        return None
    return src, begin[0]


def batch_row_projections(sub: tfl.Subgraph) -> int:
    """FULLY_CONNECTED ops with equal constant weights and bias whose inputs are single rows of
    one tensor (an unrolled RNN: torch's LSTMCell loop projects input step t with the same
    W_ih at every step) become one FULLY_CONNECTED over all rows and a STRIDED_SLICE per row.
    Why: each per-step projection is a matrix-vector product streaming its own copy of the
    weights (XNNPACK packs one per operator), so a 4096x400 W_ih over 20 steps read 130 MB per
    inference; batched, the weights are read once. Each output row is the same dot product.
    Applies when the rows used cover at least half of the source's rows."""
    fcs = [
        op
        for op in sub.operators
        if op.opcode == "FULLY_CONNECTED"
        and len(op.inputs) >= 2
        and op.inputs[1] is not None
        and op.inputs[1].data is not None
        and op.inputs[1].dtype == np.float32
        and op.inputs[1].quantization is None
        and op.inputs[0].dtype == np.float32
        and op.inputs[0].quantization is None
        and not op.options.get("keep_num_dims", False)
    ]
    if len(fcs) < 2:
        return 0
    wanted = {id(op.inputs[0]) for op in fcs}
    producer = sub.producers(wanted)
    wanted2 = {id(p.inputs[0]) for p in producer.values() if p.opcode == "RESHAPE"}
    producer2 = sub.producers(wanted2, ("SLICE", "STRIDED_SLICE")) if wanted2 else {}
    outputs = {id(t) for t in sub.outputs}
    groups: dict[tuple, list] = {}
    for op in fcs:
        x, w = op.inputs[0], op.inputs[1]
        k = w.shape[1]
        if x.shape_signature is not None or int(np.prod(x.shape)) != k:
            continue
        prod = producer.get(id(x))
        if prod is not None and prod.opcode == "RESHAPE":
            prod = producer2.get(id(prod.inputs[0]))
        row = _row_of(prod)
        if row is None or int(np.prod(row[0].shape[1:])) != k or id(op.outputs[0]) in outputs:
            continue
        bias = op.inputs[2] if len(op.inputs) > 2 else None
        if bias is not None and bias.data is None:
            continue
        key = (
            id(row[0]),
            w.shape,
            hash(w.data.tobytes()),
            None if bias is None else hash(np.asarray(bias.data).tobytes()),
            tuple(sorted(op.options.items())),
        )
        groups.setdefault(key, []).append((op, row[1], prod))
    if not any(len(members) > 1 for members in groups.values()):
        return 0
    ed = Editor(sub)
    first_reader = {}
    for op in sub.operators:  # where a source is first read: the batched ops go there
        for t in op.inputs:
            if t is not None and id(t) not in first_reader:
                first_reader[id(t)] = op
    for key, members in groups.items():
        src = members[0][2].inputs[0]
        w0, b0 = members[0][0].inputs[1], (members[0][0].inputs[2:3] or [None])[0]
        same = [
            m
            for m in members
            if np.array_equal(m[0].inputs[1].data, w0.data)
            and (b0 is None or np.array_equal(m[0].inputs[2].data, b0.data))
        ]
        if len(same) < 2 or 2 * len({t for _, t, _ in same}) < src.shape[0]:
            continue
        rows, n = src.shape[0], w0.shape[0]
        flat = src
        new_ops = []
        if src.rank != 2:
            flat = ed.temp(f"{src.name}/rows", np.float32, (rows, w0.shape[1]))
            new_ops.append(ed.reshape(src, flat, same[0][0]))
        projected = ed.temp(f"{w0.name}/all_rows", np.float32, (rows, n))
        inputs = [flat, w0] + ([b0] if b0 is not None else [])
        new_ops.append(ed.op("FULLY_CONNECTED", inputs, [projected], same[0][0], **dict(key[4])))
        ed.insert_before(first_reader[id(src)], new_ops)
        for op, t, _ in same:
            out = op.outputs[0]
            row_out = out
            if tuple(out.shape) != (1, n):
                row_out = ed.temp(f"{out.name}/row", np.float32, (1, n))
            steps = [
                ed.op(
                    "STRIDED_SLICE",
                    [
                        projected,
                        ed.const(f"{out.name}/begin", np.array([t, 0], np.int32)),
                        ed.const(f"{out.name}/end", np.array([t + 1, n], np.int32)),
                        ed.const(f"{out.name}/strides", np.array([1, 1], np.int32)),
                    ],
                    [row_out],
                    op,
                )
            ]
            if row_out is not out:
                steps.append(ed.reshape(row_out, out, op))
            ed.replace(op, steps)
    return ed.commit()


ELEMENTWISE_OF_REDUCER = {"REDUCE_MAX": "MAXIMUM", "REDUCE_MIN": "MINIMUM"}


def stacked_reduce_as_elementwise(sub: tfl.Subgraph) -> int:
    """REDUCE_MAX/REDUCE_MIN over the one axis a CONCATENATION stacked its inputs along (each
    of size 1 there: torch.stack(...).max(dim)) becomes a MAXIMUM/MINIMUM chain of the inputs.
    Why: the concatenation interleaves single elements (XNNPACK copied a [1,32,196]x3 stack in
    3x onnxruntime's time) only for the reduction to pull them apart again; the maximum of the
    same values is the same value."""
    reducers = [op for op in sub.operators if op.opcode in ELEMENTWISE_OF_REDUCER]
    if not reducers:
        return 0
    wanted = {id(op.inputs[0]) for op in reducers}
    producer = sub.producers(wanted, ("CONCATENATION",))
    readers = sub.consumers(wanted)
    outputs = {id(t) for t in sub.outputs}
    ed = Editor(sub)
    for op in reducers:
        x, axes_t, out = op.inputs[0], op.inputs[1], op.outputs[0]
        cat = producer.get(id(x))
        if (
            cat is None
            or ed.removed(cat)
            or axes_t is None
            or axes_t.data is None
            or np.asarray(axes_t.data).size != 1
            or x.dtype != np.float32
            or x.quantization is not None
            or x.shape_signature is not None
            or len(readers.get(id(x), ())) != 1
            or id(x) in outputs
            or cat.options.get("fused_activation_function", "NONE") != "NONE"
            or len(cat.inputs) < 2
        ):
            continue
        axis = int(np.asarray(axes_t.data).reshape(-1)[0]) % x.rank
        if int(cat.options.get("axis", 0)) % x.rank != axis:
            continue
        if any(
            t is None or t.shape != (*x.shape[:axis], 1, *x.shape[axis + 1 :]) for t in cat.inputs
        ):
            continue
        kind = ELEMENTWISE_OF_REDUCER[op.opcode]
        keep = tuple(out.shape) == cat.inputs[0].shape
        steps, acc = [], cat.inputs[0]
        for i, t in enumerate(cat.inputs[1:]):
            last = i == len(cat.inputs) - 2
            dst = (
                out
                if last and keep
                else ed.temp(f"{out.name}/{kind.lower()}{i}", np.float32, acc.shape)
            )
            steps.append(ed.op(kind, [acc, t], [dst], op))
            acc = dst
        if acc is not out:
            steps.append(ed.reshape(acc, out, op))
        ed.remove(cat)
        ed.replace(op, steps)
    return ed.commit()


def remove_dead_ops(sub: tfl.Subgraph) -> int:
    """Drop operators none of whose outputs reach a graph output."""
    live = {id(t) for t in sub.outputs}
    keep = []
    for op in reversed(sub.operators):
        for t in op.outputs:
            if id(t) in live:
                keep.append(op)
                for src in op.inputs:
                    if src is not None:
                        live.add(id(src))
                break
    removed = len(sub.operators) - len(keep)
    sub.operators = list(reversed(keep))
    return removed


RULES = [
    ("split_long_reductions", split_long_reductions),
    *TRANSPOSE_RANK_RULES,  # before collapse_reshapes: its RESHAPEs fold into the model's
    ("collapse_reshapes", collapse_reshapes),
    ("fuse_bias_add", fuse_bias_add),
    ("fuse_activation", fuse_activations),
    ("batch_row_projections", batch_row_projections),
    ("stacked_reduce_as_elementwise", stacked_reduce_as_elementwise),
    ("remove_dead_ops", remove_dead_ops),
]
ALWAYS = {"remove_dead_ops"}


def apply(sub: tfl.Subgraph, enabled: bool = True, disabled: frozenset[str] = frozenset()):
    for name, rule in RULES:
        if name in ALWAYS or (enabled and name not in disabled):
            yield name, rule(sub)
