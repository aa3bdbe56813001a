"""Preparation of a lowered float model for integer quantization: fewer integer roundings,
the same float function.

Per-channel MUL/ADD/SUB by constants fold into the weighted op before them (or a per-channel
MUL of an NHWC tensor becomes a 1x1 DEPTHWISE_CONV_2D that the following ones fold into), and a
global AVERAGE_POOL_2D becomes MEAN (which may take its own output scale). Calibrated ranges of
the surviving tensors stay valid. Used by ``integer.quantize_integer`` (pass 0).
"""

from __future__ import annotations

import numpy as np

from .. import tfl
from ..tfl_edit import Editor
from .integer_plan import FLOAT, is_float_activation, is_float_constant

# Weighted op -> (weight input, output-channel axis of the weight, bias input).
_AFFINE_HOSTS = {
    "CONV_2D": (1, 0, 2),
    "DEPTHWISE_CONV_2D": (1, 3, 2),
    "FULLY_CONNECTED": (1, 0, 2),
}


def fold_affine_constants(sub: tfl.Subgraph, keep_nodes=frozenset()) -> int:
    """Fold per-channel ``MUL``/``ADD``/``SUB`` by constants into the weighted op producing
    their input, and start a new host (a 1x1 DEPTHWISE_CONV_2D) for a per-channel ``MUL`` of
    any other NHWC tensor; returns how many operators disappeared.

    Why: every integer op rounds its output onto an int8 lattice. ``Conv -> Mul -> Add ->
    Relu`` (a BatchNormalization written out as Mul/Add, as in DenseNet or Inception) or a
    BatchNormalization after a concatenation would round three or four times where one
    weighted op rounds once, with the scale exact in its per-channel int8 weight and the
    shift in its int32 bias. onnxruntime's quantizer folds such chains into the Conv before
    quantizing (its graph optimizer's Conv+Mul/Add fusions); this is the same on the lowered
    graph. In float the result is the same up to float rounding. Operators of ONNX nodes in
    ``keep_nodes`` (nodes that stay float as a whole) are left alone.
    """
    before = len(sub.operators)
    graph_outputs = {id(t) for t in sub.outputs}
    changed = True
    while changed:
        changed = False
        readers = sub.consumers()
        producer = sub.producers()
        ed = Editor(sub, fresh_names=False)
        for op in sub.operators:
            if op.onnx_node not in keep_nodes and _is_global_average_pool(op):
                ed.replace(op, [_pool_as_mean(op)])
                changed = True
                continue
            affine = None if op.onnx_node in keep_nodes else _per_channel_affine(op)
            if affine is None:
                continue
            x, kind, vector = affine
            host = producer.get(id(x))
            foldable = (
                host is not None
                and host.opcode in _AFFINE_HOSTS
                and host.onnx_node not in keep_nodes
                and host.options.get("fused_activation_function", "NONE") == "NONE"
                and [id(r) for r, _ in readers.get(id(x), [])] == [id(op)]
                and id(x) not in graph_outputs
                and _host_constants_ok(host)
            )
            if foldable:
                _fold_into(host, kind, vector, op)
                producer[id(host.outputs[0])] = host  # the next op of a chain folds too
                ed.remove(op)
                changed = True
                continue
            if kind == "MUL" and x.rank == 4:
                scaled = _depthwise_scale(op, x, vector)
                ed.replace(op, [scaled])
                producer[id(op.outputs[0])] = scaled
                changed = True
        ed.commit()
    return before - len(sub.operators)


def _per_channel_affine(op: tfl.Operator):
    """(activation, MUL|ADD|SUB, per-channel float64 vector) when ``op`` scales or shifts one
    float activation by a constant that varies at most along the last (channel) axis and does
    not broadcast the activation; else None."""
    if op.opcode not in ("MUL", "ADD", "SUB") or len(op.inputs) != 2 or len(op.outputs) != 1:
        return None
    a, b = op.inputs
    if is_float_activation(a) and is_float_constant(b):
        x, c = a, b
    elif op.opcode != "SUB" and is_float_activation(b) and is_float_constant(a):
        x, c = b, a
    else:
        return None
    out = op.outputs[0]
    if x.rank < 1 or tuple(out.shape) != tuple(x.shape) or c.data.ndim > x.rank:
        return None
    if x.shape_signature and x.shape_signature[-1] == -1:
        return None  # a run-time channel count: no per-channel weight can be sized for it
    channels = x.shape[-1]
    if any(d != 1 for d in c.data.shape[:-1]) or (
        c.data.ndim and c.data.shape[-1] not in (1, channels)
    ):
        return None
    vector = np.broadcast_to(c.data.astype(np.float64).reshape(-1), (channels,)).copy()
    if not np.all(np.isfinite(vector)):
        return None
    return x, op.opcode, vector


def _host_constants_ok(host: tfl.Operator) -> bool:
    w_index, _, b_index = _AFFINE_HOSTS[host.opcode]
    w = host.inputs[w_index]
    bias = host.inputs[b_index] if len(host.inputs) > b_index else None
    return is_float_constant(w) and (bias is None or is_float_constant(bias))


def _fold_into(host: tfl.Operator, kind: str, vector: np.ndarray, op: tfl.Operator) -> None:
    """``op(host(x))`` becomes ``host'(x)`` writing ``op``'s output with its activation."""
    w_index, axis, b_index = _AFFINE_HOSTS[host.opcode]
    w = host.inputs[w_index]
    channels = w.shape[axis]
    bias = host.inputs[b_index] if len(host.inputs) > b_index else None
    b = np.zeros(channels) if bias is None else bias.data.astype(np.float64).reshape(channels)
    if kind == "MUL":
        shape = [1] * w.data.ndim
        shape[axis] = channels
        new_w = (w.data.astype(np.float64) * vector.reshape(shape)).astype(np.float32)
        host.inputs[w_index] = tfl.Tensor(f"{w.name}/folded", FLOAT, w.shape, data=new_w)
        b = b * vector
    else:
        b = b + vector if kind == "ADD" else b - vector
    name = f"{op.outputs[0].name}/bias" if bias is None else f"{bias.name}/folded"
    new_b = tfl.Tensor(name, FLOAT, (channels,), data=b.astype(np.float32))
    host.inputs[b_index:] = [new_b]
    host.options["fused_activation_function"] = op.options.get("fused_activation_function", "NONE")
    host.outputs[0] = op.outputs[0]


def _depthwise_scale(op: tfl.Operator, x: tfl.Tensor, vector: np.ndarray) -> tfl.Operator:
    """A per-channel MUL of an NHWC tensor as a 1x1 DEPTHWISE_CONV_2D (weight = the scale,
    bias 0): exact in float, and a host that following shifts and scales fold into."""
    channels = x.shape[-1]
    weight = tfl.Tensor(
        f"{op.outputs[0].name}/scale",
        FLOAT,
        (1, 1, 1, channels),
        data=vector.astype(np.float32).reshape(1, 1, 1, channels),
    )
    bias = tfl.Tensor(
        f"{op.outputs[0].name}/bias", FLOAT, (channels,), data=np.zeros(channels, np.float32)
    )
    options = {
        "padding": "VALID",
        "stride_w": 1,
        "stride_h": 1,
        "depth_multiplier": 1,
        "dilation_w_factor": 1,
        "dilation_h_factor": 1,
        "fused_activation_function": op.options.get("fused_activation_function", "NONE"),
    }
    return tfl.Operator(
        "DEPTHWISE_CONV_2D", [x, weight, bias], list(op.outputs), options, onnx_node=op.onnx_node
    )


def _is_global_average_pool(op: tfl.Operator) -> bool:
    """An AVERAGE_POOL_2D whose one window is the whole (unpadded) image."""
    if op.opcode != "AVERAGE_POOL_2D" or not is_float_activation(op.inputs[0]):
        return False
    o = op.options
    x, y = op.inputs[0], op.outputs[0]
    return (
        x.rank == 4
        and o.get("padding") == "VALID"
        and o.get("fused_activation_function", "NONE") == "NONE"
        and (o.get("filter_height"), o.get("filter_width")) == tuple(x.shape[1:3])
        and tuple(y.shape[1:3]) == (1, 1)
    )


def _pool_as_mean(op: tfl.Operator) -> tfl.Operator:
    """The same average as MEAN over H, W. Why: the int8 AVERAGE_POOL_2D kernel must write its
    input's scale, far too coarse for a mean of thousands of values (its range is a fraction
    of the input's); MEAN rescales to the output's own calibrated range."""
    axes = tfl.Tensor(
        f"{op.outputs[0].name}/axes", np.dtype(np.int32), (2,), data=np.array([1, 2], np.int32)
    )
    return tfl.Operator(
        "MEAN", [op.inputs[0], axes], list(op.outputs), {"keep_dims": True}, onnx_node=op.onnx_node
    )
