"""Reading ONNX protos into Python values: dims, dtypes, attributes, constants, reads.

Why a module of its own: every other front-end stage (checks, inference, the proto passes,
sequence resolution, IR building) reads value infos, attributes and Constant nodes the same
way; one definition keeps them agreeing (e.g. a negative dim is unknown everywhere).
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import errors
from ..errors import UnsupportedError


def dims_of(value_info) -> tuple[int | None, ...] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    # Some exporters write -1 for a dynamic dim: treat any negative dim as unknown. (A positive
    # dim_value is set; HasField is asked only for 0: called for every value of the graph.)
    dims = []
    for d in t.shape.dim:
        v = d.dim_value
        dims.append(v if v > 0 or (v == 0 and d.HasField("dim_value")) else None)
    return tuple(dims)


@functools.cache  # one per element type; called for every value of the graph
def dtype_of(elem_type: int) -> np.dtype | None:
    if elem_type == 0:
        return None
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return None


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Inputs of a node including outer-scope names read by its subgraphs."""
    names = [i for i in node.input if i]
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs = [attr.g]
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs = list(attr.graphs)
        else:
            continue
        for sub in graphs:
            inner = {i.name for i in sub.input} | {t.name for t in sub.initializer}
            for sn in sub.node:
                names.extend(i for i in node_reads(sn) if i not in inner)
                inner.update(sn.output)
    return names


_SUBGRAPH_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def outer_scope_reads(node: onnx.NodeProto) -> list[str]:
    """Names the node's subgraphs read from the enclosing scope, first-use order, no repeats."""
    if not any(a.type in _SUBGRAPH_TYPES for a in node.attribute):
        return []  # (most nodes: skip building their input list once more)
    seen: dict[str, None] = {}
    for name in node_reads(node)[len([i for i in node.input if i]) :]:
        seen.setdefault(name, None)
    return list(seen)


def attributes(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = numpy_helper.to_array(a.t)
        elif a.type == onnx.AttributeProto.GRAPH:
            out[a.name] = a.g
        else:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [x.decode("utf-8", "replace") for x in v]
            out[a.name] = v
    return out


def constant_value(node: onnx.NodeProto) -> np.ndarray:
    attrs = attributes(node)
    if "value" in attrs:
        value = attrs["value"]
        if value.dtype == object:
            raise UnsupportedError(
                errors.UNSUPPORTED_DTYPE, "string constants are not supported", node.name
            )
        return value
    for key, dtype in (
        ("value_float", np.float32),
        ("value_int", np.int64),
        ("value_floats", np.float32),
        ("value_ints", np.int64),
    ):
        if key in attrs:
            return np.array(attrs[key], dtype=dtype)
    raise UnsupportedError(
        errors.UNSUPPORTED_ATTRIBUTE_VALUE,
        f"Constant with attributes {sorted(attrs)} (sparse or string constants) is not supported",
        node.name,
    )


def tensor_value_info(name: str, arr: np.ndarray) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        name, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape)
    )


# Element types whose raw_data is the plain little-endian array (what numpy_helper.to_array
# reads too, with more per-call overhead: models have hundreds of initializers).
_PLAIN_RAW = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.UINT32: np.uint32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.UINT64: np.uint64,
    onnx.TensorProto.BOOL: np.bool_,
}


def initializer_array(t: onnx.TensorProto) -> np.ndarray:
    dtype = _PLAIN_RAW.get(t.data_type)
    if (
        dtype is not None
        and sys.byteorder == "little"
        and t.HasField("raw_data")
        and t.data_location != onnx.TensorProto.EXTERNAL
        and not t.HasField("segment")
    ):
        return np.frombuffer(t.raw_data, dtype).reshape(tuple(t.dims))
    return numpy_helper.to_array(t)


def dims_compatible(want, got) -> bool:
    """Same rank, and every dim known on both sides equal (None is an unknown dim)."""
    return len(want) == len(got) and all(
        w is None or g is None or w == g for w, g in zip(want, got, strict=True)
    )
