"""Safe loading: a path or a ModelProto in, a ModelProto out; external data checked first.

Why checked before onnx reads it: onnx's loader follows any ``location`` it is given (absolute
paths, ``../``), in sub-graphs too; a model file must not make the converter read outside its
own folder, nor fail half-way on a truncated data file.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from .. import errors
from ..errors import BadInputError


def _check_external_data(model: onnx.ModelProto, base_dir: Path) -> bool:
    """Refuse external data that points outside the model folder or at missing bytes."""
    base = base_dir.resolve()
    found = False
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        found = True
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if not location or os.path.isabs(location):
            raise BadInputError(
                errors.UNSAFE_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data location {location!r} must be a "
                "relative path inside the model folder",
            )
        target = (base / location).resolve()
        if base not in target.parents:
            raise BadInputError(
                errors.UNSAFE_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data {location!r} resolves outside the "
                f"model folder {str(base)!r}; refused and not read",
            )
        if not target.is_file():
            raise BadInputError(
                errors.MISSING_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data file {location!r} does not exist",
            )
        try:
            offset = int(info.get("offset", 0) or 0)
            length = None if info.get("length") in (None, "") else int(info["length"])
        except ValueError:
            raise BadInputError(
                errors.MISSING_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data offset/length are not integers",
            ) from None
        size = target.stat().st_size
        if offset < 0 or offset > size or (length is not None and not 0 <= length <= size - offset):
            raise BadInputError(
                errors.MISSING_EXTERNAL_DATA,
                f"tensor {tensor.name!r}: external data range exceeds file {location!r}",
            )
    return found


def _all_tensors(model: onnx.ModelProto):
    """Every TensorProto that may carry data, sub-graphs and sparse tensors included.

    onnx's external-data loader descends into sub-graphs, so the safety check must too.
    """
    yield from _graph_tensors(model.graph)
    for func in model.functions:
        for node in func.node:
            yield from _node_tensors(node)


def _graph_tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto):
    for attr in node.attribute:  # HasField first: reading an unset message field builds one
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        for sparse in attr.sparse_tensors:
            yield sparse.values
            yield sparse.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def load_model(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """Load from path or take a ModelProto; never modifies the caller's file or proto."""
    if isinstance(model, onnx.ModelProto):
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in _all_tensors(model)):
            raise BadInputError(
                errors.MISSING_EXTERNAL_DATA,
                "ModelProto references external data; pass the model path instead so the "
                "data can be located safely",
            )
        return model
    path = Path(model)
    if path.is_dir():
        raise BadInputError(errors.FILE_NOT_FOUND, f"{str(path)!r} is a directory, not a model")
    if not path.is_file():
        raise BadInputError(errors.FILE_NOT_FOUND, f"model file {str(path)!r} not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for garbage input
        raise BadInputError(
            errors.INVALID_MODEL, f"{str(path)!r} is not a readable ONNX model: {exc}"
        ) from None
    if not proto.graph.node and not proto.graph.output:
        raise BadInputError(
            errors.INVALID_MODEL, f"{str(path)!r} holds no graph (empty or not an ONNX model)"
        )
    if _check_external_data(proto, path.parent):
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
        except Exception as exc:
            raise BadInputError(errors.MISSING_EXTERNAL_DATA, str(exc)) from None
    return proto
