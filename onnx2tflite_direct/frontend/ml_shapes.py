"""Output shapes of ai.onnx.ml nodes, which onnx's shape inference leaves unknown.

onnx's ai.onnx.ml schemas infer element types but (for most ops) no shapes, so a classifier
exported with a pinned batch still has ``[None]`` labels and ``[None, C]`` scores. The shapes
follow from the input shape and the attributes, exactly as onnxruntime's kernels allocate them
(``core/providers/cpu/ml``): rows are the first input dim (1 for a 1-D input), columns come
from the class, target or category counts. The front end feeds these as hints to the next
inference round, like its other proved facts.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .protos import attributes, dims_of

ML_DOMAIN = "ai.onnx.ml"
SAME_SHAPE = ("Scaler", "Normalizer", "Binarizer", "Imputer", "LabelEncoder", "CategoryMapper")


def _labels(a: dict) -> int:
    for key in ("classlabels_int64s", "classlabels_ints", "classlabels_strings"):
        if a.get(key) is not None and len(a[key]):
            return len(a[key])
    return 0


def _classifier_columns(op: str, a: dict) -> int | None:
    labels = _labels(a)
    if op == "TreeEnsembleClassifier":
        return labels or None
    if op == "LinearClassifier":
        count = len(a.get("intercepts") or [])
        return 2 if count == 1 and labels == 2 else count or None
    if op == "SVMClassifier":
        svc = sum(int(v) for v in a.get("vectors_per_class") or []) > 0
        if svc and not (a.get("prob_a") is not None and len(a["prob_a"])):
            return labels * (labels - 1) // 2 if labels > 2 else 2
        return labels or None
    return None


def output_shapes(node: onnx.NodeProto, in_shapes: list, consts: dict) -> list | None:
    """Per output: its dims (``None`` where unknown), or ``None`` for the node."""
    x = in_shapes[0] if in_shapes else None
    op = node.op_type
    if x is None or None in x or not x:
        return None
    rows = x[0] if len(x) >= 2 else 1
    a = attributes(node)
    if op in SAME_SHAPE:
        return [tuple(x)]
    if op in ("TreeEnsembleClassifier", "LinearClassifier", "SVMClassifier"):
        cols = _classifier_columns(op, a)
        return [(rows,), (rows, cols) if cols else None]
    if op in ("TreeEnsembleRegressor", "TreeEnsemble"):
        return [(rows, int(a.get("n_targets", 1) or 1))]
    if op == "LinearRegressor":
        return [(rows, int(a.get("targets", 1) or 1))]
    if op == "SVMRegressor":
        return [(rows, 1)]
    if op == "OneHotEncoder":
        cats = a.get("cats_int64s") or a.get("cats_strings") or []
        return [(*x, len(cats))] if len(cats) else None
    if op == "ArrayFeatureExtractor":
        idx = in_shapes[1] if len(in_shapes) > 1 else None
        if idx is None or None in idx:
            return None
        count = int(np.prod(idx)) if idx else 1
        return [(1, count) if len(x) == 1 else (*x[:-1], count)]
    if op == "FeatureVectorizer":
        dims = a.get("inputdimensions") or []
        return [(rows, int(sum(dims)))] if len(dims) else None
    return None


F32, I64, STR = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64, onnx.TensorProto.STRING


def default_types(node: onnx.NodeProto, x_elem: int) -> list[int]:
    """Output element types from the op's contract (when inference recorded none)."""
    op, a = node.op_type, attributes(node)
    if op in ("TreeEnsembleClassifier", "LinearClassifier", "SVMClassifier"):
        return [STR if a.get("classlabels_strings") else I64, F32]
    if op in ("Binarizer", "Imputer", "ArrayFeatureExtractor", "TreeEnsemble"):
        return [x_elem]
    if op == "CategoryMapper":
        return [I64 if x_elem == STR else STR]
    if op == "LabelEncoder" and a.get("classes_strings") is not None:  # opset 1
        return [I64 if x_elem == STR else STR]
    if op == "LabelEncoder":
        for key, elem in (("values_int64s", I64), ("values_floats", F32), ("values_strings", STR)):
            if a.get(key) is not None and len(a[key]):
                return [elem]
        t = a.get("values_tensor")
        return [helper.np_dtype_to_tensor_dtype(np.asarray(t).dtype)] if t is not None else [0]
    return [F32]


def ml_output_hints(nodes, consts, infos, known) -> dict[str, onnx.ValueInfoProto]:
    """Value infos for ai.onnx.ml outputs whose shape inference left dims unknown."""
    out: dict[str, onnx.ValueInfoProto] = {}
    for n in nodes:
        if n.domain != ML_DOMAIN:
            continue
        in_shapes = []
        for name in n.input:
            if name in consts:
                in_shapes.append(tuple(np.shape(consts[name])))
            elif name in infos:
                in_shapes.append(dims_of(infos[name]))
            else:
                in_shapes.append(None)
        shapes = output_shapes(n, in_shapes, consts)
        if not shapes:
            continue
        x_vi = infos.get(n.input[0]) if n.input else None
        x_elem = x_vi.type.tensor_type.elem_type if x_vi is not None else 0
        types = default_types(n, x_elem)
        for k, (name, shape) in enumerate(zip(n.output, shapes, strict=False)):
            if not name or shape is None or name in known:
                continue
            vi = infos.get(name)
            elem = vi.type.tensor_type.elem_type if vi is not None else 0
            elem = elem or (types[k] if k < len(types) else 0)
            if not elem or (vi is not None and not vi.type.HasField("tensor_type")):
                continue
            if vi is not None and dims_of(vi) == tuple(shape):
                continue
            out[name] = helper.make_tensor_value_info(name, elem, list(shape))
    return out
