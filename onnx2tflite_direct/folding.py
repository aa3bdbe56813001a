"""Constant folding of nodes whose inputs are all known at conversion time.

Common shape-arithmetic ops are folded with small numpy functions; everything else in the
default domain is evaluated with onnx's reference implementation, one node at a time, so the
folded value is what the ONNX spec defines. Random ops and control flow are never folded.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Unseeded random ops: no defined values, so never folded, merged or compared by value.
NONDETERMINISTIC_OPS = frozenset(
    {
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)
NEVER_FOLD = NONDETERMINISTIC_OPS | {
    "If",
    "Loop",
    "Scan",
    "SequenceConstruct",
    "SequenceEmpty",
    "Optional",
    "DequantizeLinear",
    "QuantizeLinear",
}
# Folding that would materialize more than this many elements is left to run time.
MAX_FOLDED_ELEMENTS = 1 << 28
# Ops whose output can be far larger than their inputs: folded only when ONNX shape inference
# gives every output a static shape within the cap (checked *before* anything is allocated).
EXPANDING_OPS = {
    "ConstantOfShape",
    "Expand",
    "Tile",
    "Range",
    "Resize",
    "Upsample",
    "Pad",
    "OneHot",
    "EyeLike",
    "MatMul",
    "Gemm",
    "Einsum",
    "Conv",
    "ConvTranspose",
    "Col2Im",
    "CenterCropPad",
}


def static_shape(name: str, infos) -> tuple[int, ...] | None:
    vi = infos.get(name)
    if vi is None or not vi.type.tensor_type.HasField("shape"):
        return None
    dims = vi.type.tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(d.dim_value for d in dims)


def _elements(shape: tuple[int, ...]) -> int:
    count = 1
    for d in shape:
        count *= d  # Python ints: no int64 wrap-around for absurd dims
    return count


def _outputs_fit(node: onnx.NodeProto, infos: dict) -> bool:
    """Is every output known to be small enough to materialize at conversion time?

    Outputs of unknown shape pass unless the op can expand its inputs; the result is checked
    again after folding.
    """
    for name in node.output:
        if not name:
            continue
        shape = static_shape(name, infos)
        if shape is None:
            if node.op_type in EXPANDING_OPS:
                return False
            continue
        if any(d < 0 for d in shape) or _elements(shape) > MAX_FOLDED_ELEMENTS:
            return False
    return True


def is_foldable(node: onnx.NodeProto, consts: dict, infos: dict, probe: dict | None = None) -> bool:
    """``probe``: shape inference at other input sizes; a Shape/Size whose value differs there
    reads a dynamic dim and stays a run-time op."""
    if node.domain not in ("", "ai.onnx") or node.op_type in NEVER_FOLD:
        return False
    if not node.input or not node.output:
        return False
    if node.op_type in ("Shape", "Size"):
        if node.input[0] in consts:
            return True
        shape = static_shape(node.input[0], infos)
        if shape is None:
            return False
        if probe is None:
            return True
        other = static_shape(node.input[0], probe)
        return other is not None and np.array_equal(
            _shape_value(node, shape), _shape_value(node, other)
        )
    if not all(not i or i in consts for i in node.input):
        return False
    return _outputs_fit(node, infos)


def static_dims_picked(
    node: onnx.NodeProto, shape_nodes: dict, consts: dict, infos: dict, probe: dict | None
) -> np.ndarray | None:
    """The value of a Gather with constant indices from a run-time Shape (``x.shape[-1]``)
    when the dims it picks are the same at the probe's input sizes: the per-dim form of
    :func:`is_foldable`'s Shape rule (a Shape reading a dynamic batch stays at run time, its
    static feature dim folds). ``shape_nodes``: Shape output name -> Shape node."""
    if probe is None or node.op_type != "Gather" or len(node.input) != 2:
        return None
    source = shape_nodes.get(node.input[0])
    if source is None or node.input[1] not in consts:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("axis", 0) not in (0, -1):
        return None
    here, there = static_shape(source.input[0], infos), static_shape(source.input[0], probe)
    if here is None or there is None or len(here) != len(there):
        return None
    dims, other = _shape_value(source, here), _shape_value(source, there)
    index = np.asarray(consts[node.input[1]])
    if index.dtype.kind not in "iu" or np.any(index >= dims.size) or np.any(index < -dims.size):
        return None
    value = np.take(dims, index)
    return value if np.array_equal(value, np.take(other, index)) else None


def _shape_value(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    if node.op_type == "Size":
        return np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rank = len(shape)
    start = attrs.get("start", 0)
    end = attrs.get("end", rank)
    start = max(0, min(rank, start + rank if start < 0 else start))
    end = max(0, min(rank, end + rank if end < 0 else end))
    return np.array(shape[start:end], dtype=np.int64)


def _numpy_fold(node, args, attrs):
    op = node.op_type
    if op == "Identity":
        return [args[0]]
    if op == "Unsqueeze":
        axes = attrs.get("axes") if len(args) < 2 else args[1].tolist()
        out = args[0]
        rank = out.ndim + len(axes)
        for a in sorted(a + rank if a < 0 else a for a in axes):
            out = np.expand_dims(out, a)
        return [out]
    if op == "ConstantOfShape":
        value = attrs.get("value")
        value = np.zeros(1, np.float32) if value is None else numpy_helper.to_array(value)
        shape = tuple(int(d) for d in args[0].reshape(-1))
        if any(d < 0 for d in shape) or _elements(shape) > MAX_FOLDED_ELEMENTS:
            return None
        return [np.full(shape, value.reshape(-1)[0], dtype=value.dtype)]
    if op == "Concat" and all(a.ndim >= 1 for a in args):
        return [np.concatenate(args, axis=attrs.get("axis", 0))]
    if op == "GatherElements":
        # onnx.reference fails when the indices are shorter than the data on another axis
        # (torch's token_type_ids buffer gathered by position ids), so that stayed run-time
        return [_gather_elements(args[0], args[1], int(attrs.get("axis", 0)))]
    return None


def _gather_elements(data: np.ndarray, idx: np.ndarray, axis: int) -> np.ndarray:
    axis = axis % data.ndim
    idx = np.where(idx < 0, idx + data.shape[axis], idx)
    if idx.min(initial=0) < 0 or idx.max(initial=0) >= data.shape[axis]:
        raise IndexError("GatherElements index out of range")
    window = tuple(slice(None) if d == axis else slice(0, n) for d, n in enumerate(idx.shape))
    return np.take_along_axis(data[window], idx, axis=axis)


def fold_node(node: onnx.NodeProto, consts: dict, infos: dict, opset: int):
    """Return {output name: value} or None when the node cannot be folded here."""
    if node.op_type in ("Shape", "Size"):
        src = consts.get(node.input[0])
        shape = tuple(src.shape) if src is not None else static_shape(node.input[0], infos)
        return {node.output[0]: _shape_value(node, shape)}
    args = [consts[i] if i else None for i in node.input]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    try:
        out = _numpy_fold(node, args, attrs)
    except Exception:
        out = None
    if out is None and node.op_type == "ConstantOfShape":
        return None  # refused by the size check above: the reference would allocate it
    if out is None:
        out = _reference_fold(node, args, opset)
    if out is None:
        return None
    result = {}
    for name, value in zip(node.output, out, strict=False):
        if name and value is not None:
            value = np.asarray(value)
            if value.dtype == object or value.size > MAX_FOLDED_ELEMENTS:
                return None
            result[name] = value
    return result


def _reference_fold(node: onnx.NodeProto, args, opset: int):
    from onnx.reference import ReferenceEvaluator

    feeds = {}
    inputs = []
    for i, (name, value) in enumerate(zip(node.input, args, strict=False)):
        if not name:
            inputs.append("")
            continue
        key = f"in{i}"
        feeds[key] = value
        inputs.append(key)
    outputs = [f"out{i}" if o else "" for i, o in enumerate(node.output)]
    single = helper.make_node(
        node.op_type, inputs, outputs, domain=node.domain, **_attr_kwargs(node)
    )
    graph = helper.make_graph(
        [single],
        "fold",
        [
            helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for k, v in feeds.items()
        ],
        [helper.make_tensor_value_info(o, 0, None) for o in outputs if o],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, 7))])
    try:
        values = iter(ReferenceEvaluator(model).run(None, feeds))
    except Exception:
        return None
    return [next(values) if o else None for o in outputs]


def _attr_kwargs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}
