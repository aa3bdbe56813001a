"""ai.onnx.ml feature preprocessing: Scaler, Normalizer, Binarizer, Imputer,
ArrayFeatureExtractor, FeatureVectorizer, OneHotEncoder, LabelEncoder (numeric). CastMap has no
lowering: its input is a map, which no TFLite tensor holds (the front end refuses map inputs).

Semantics are onnxruntime's (``core/providers/cpu/ml``): integer inputs are converted to
float32 with ``static_cast`` (round to nearest); Normalizer leaves a row whose norm is 0
unchanged; OneHotEncoder truncates float inputs to int64 and lets the last duplicate category
win; LabelEncoder maps each value to the value of its first equal key (NaN keys match NaN from
opset 4 on) and to the default otherwise.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..policies import onnx_order
from ..registry import lowering
from .emit import Emitter
from .ml_common import ML_DOMAIN, as_rows, as_text, float_input, set_output

NUMERIC_IN = ("float32", "int32", "int64")


def _per_column(values, columns: int, name: str, ctx) -> np.ndarray:
    """A length-1 or length-C attribute as a [C] (or [1]) float32 vector."""
    v = np.asarray(values, np.float32).ravel()
    if v.size not in (1, columns):
        ctx.refuse(
            errors.UNSUPPORTED_ATTRIBUTE_VALUE,
            f"{name} has {v.size} values for {columns} columns (needs 1 or {columns})",
        )
    return v


@lowering(
    "Scaler",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=NUMERIC_IN,
    tflite_ops=("CAST", "SUB", "MUL"),
    notes="(x - offset) * scale over the last axis; float32 output",
)
def lower_scaler(ctx):
    e = Emitter(ctx)
    x = float_input(ctx)
    c = x.shape[-1] if x.shape else 1
    offset = _per_column(ctx.attr("offset", [0.0]) or [0.0], c, "offset", ctx)
    scale = _per_column(ctx.attr("scale", [1.0]) or [1.0], c, "scale", ctx)
    y = x
    if np.any(offset != 0):
        y = e.op("SUB", y, e.const(offset), hint="centered")
    if np.any(scale != 1) or y is x:
        y = e.op("MUL", y, e.const(scale), hint="scaled")
    set_output(ctx, y)


@lowering(
    "Normalizer",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=NUMERIC_IN,
    ranks=(1, 2),
    attrs=(),
    tflite_ops=("CAST", "REDUCE_MAX", "SUM", "ABS", "MUL", "SQRT", "DIV", "SELECT_V2"),
    notes="norm MAX / L1 / L2 per row; a row with norm 0 is left unchanged",
)
def lower_normalizer(ctx):
    e = Emitter(ctx)
    norm = as_text(ctx.attr("norm"), "MAX")
    if norm not in ("MAX", "L1", "L2"):
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"norm={norm!r}")
    x = as_rows(ctx, float_input(ctx))
    if norm == "MAX":
        d = e.reduce("REDUCE_MAX", x, [1], True, "max")
    elif norm == "L1":
        d = e.reduce("SUM", e.op("ABS", x, hint="abs"), [1], True, "l1")
    else:
        d = e.reduce("SUM", e.op("MUL", x, x, hint="sq"), [1], True, "l2sq")
    nonzero = e.op("NOT_EQUAL", d, e.const(0.0), hint="nonzero", dtype=np.bool_)
    d = e.op("SELECT_V2", nonzero, d, e.const(1.0), hint="safe")
    if norm == "L2":
        d = e.op("SQRT", d, hint="l2")
    set_output(ctx, e.op("DIV", x, d, hint="normalized"))


@lowering(
    "Binarizer",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=("float32",),
    tflite_ops=("GREATER", "SELECT_V2"),
    notes="x > threshold ? 1 : 0",
)
def lower_binarizer(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    thr = np.float32(ctx.attr("threshold", 0.0) or 0.0)
    above = e.op("GREATER", x, e.const(thr), hint="above", dtype=np.bool_)
    y = e.op("SELECT_V2", above, e.const(1.0), e.const(0.0), hint="binary")
    if np.dtype(x.dtype) != np.float32:
        y = e.op("CAST", y, dtype=x.dtype, hint="cast")
    set_output(ctx, y)


@lowering(
    "Imputer",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=("float32", "int64"),
    tflite_ops=("EQUAL", "NOT_EQUAL", "SELECT_V2"),
    notes="replaced value (NaN or a number) -> imputed value per column",
)
def lower_imputer(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    c = x.shape[-1] if x.shape else 1
    if np.dtype(x.dtype) == np.float32:
        imputed = _per_column(
            ctx.attr("imputed_value_floats", []) or [], c, "imputed_value_floats", ctx
        )
        replaced = np.float32(ctx.attr("replaced_value_float", 0.0) or 0.0)
        if np.isnan(replaced):
            hit = e.op("NOT_EQUAL", x, x, hint="isnan", dtype=np.bool_)
        else:
            hit = e.op("EQUAL", x, e.const(replaced), hint="hit", dtype=np.bool_)
        fill = e.const(imputed)
    else:
        imputed = np.asarray(ctx.attr("imputed_value_int64s", []) or [], np.int64).ravel()
        if imputed.size not in (1, c):
            ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"{imputed.size} imputed values")
        replaced = np.int64(ctx.attr("replaced_value_int64", 0) or 0)
        hit = e.op("EQUAL", x, e.const(replaced, np.int64), hint="hit", dtype=np.bool_)
        fill = e.const(imputed, np.int64)
    set_output(ctx, e.op("SELECT_V2", hit, fill, x, hint="imputed"))


def _afe_check(node, graph):
    idx = graph.values[node.inputs[1]]
    if idx.is_constant:
        x = graph.values[node.inputs[0]]
        c = x.shape[-1] if x.shape else 0
        bad = [int(i) for i in np.asarray(idx.const).ravel() if not 0 <= int(i) < c]
        if bad:
            return f"unsupported_attribute_value: indices {bad[:5]} outside [0, {c})"
    return None


@lowering(
    "ArrayFeatureExtractor",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=("float32", "int32", "int64"),
    tflite_ops=("GATHER", "CAST"),
    notes="GATHER on the last axis (constant or runtime indices)",
    extra_check=_afe_check,
)
def lower_array_feature_extractor(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    if len(x.shape) == 1:
        x = ctx.reshape(x, (1, x.shape[0]), "x2d")
    idx_value = ctx.const(1)
    if idx_value is not None:
        idx = e.const(np.asarray(idx_value).ravel().astype(np.int32), np.int32, "indices")
    else:
        idx = ctx.input(1)
        size = int(np.prod(idx.shape)) if idx.shape else 1
        if tuple(idx.shape) != (size,):
            idx = ctx.reshape(idx, (size,), "indices")
        if np.dtype(idx.dtype) != np.int32:
            idx = e.op("CAST", idx, dtype=np.int32, hint="indices32")
    y = e.gather(x, idx, len(x.shape) - 1, hint="features")
    set_output(ctx, y)


@lowering(
    "FeatureVectorizer",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=NUMERIC_IN,
    dtype_inputs=tuple(range(64)),
    tflite_ops=("CAST", "CONCATENATION", "SLICE", "PAD"),
    notes="inputs cast to float32, each cut or zero-padded to its inputdimensions entry",
)
def lower_feature_vectorizer(ctx):
    e = Emitter(ctx)
    dims = [int(d) for d in ctx.attr("inputdimensions", []) or []]
    k = len(ctx.node.inputs)
    if len(dims) != k:
        ctx.refuse(errors.UNSUPPORTED_ATTRIBUTE_VALUE, f"{len(dims)} inputdimensions, {k} inputs")
    rows = ctx.out_shape(0)[0]
    parts = []
    for i, d in enumerate(dims):
        x = as_rows(ctx, float_input(ctx, i, f"x{i}"), f"rows{i}")
        if x.shape[0] != rows:
            x = e.op(
                "BROADCAST_TO",
                x,
                e.const(np.array([rows, x.shape[1]], np.int32), np.int32, "shape"),
                shape=(rows, x.shape[1]),
                dtype=np.float32,
                hint=f"rows{i}b",
            )
        c = x.shape[1]
        if c > d:
            x = e.op(
                "SLICE",
                x,
                e.const(np.array([0, 0], np.int32), np.int32, "begin"),
                e.const(np.array([rows, d], np.int32), np.int32, "size"),
                shape=(rows, d),
                hint=f"cut{i}",
            )
        elif c < d:
            pads = e.const(np.array([[0, 0], [0, d - c]], np.int32), np.int32, "pads")
            x = e.op("PAD", x, pads, shape=(rows, d), hint=f"pad{i}")
        parts.append(x)
    set_output(ctx, parts[0] if len(parts) == 1 else e.concat(parts, 1, "features"))


def _onehot_check(node, graph):
    if not node.attrs.get("cats_int64s") and not node.attrs.get("cats_strings"):
        return "unsupported_attribute_value: no cats_int64s / cats_strings"
    x = graph.values[node.inputs[0]]
    strings = bool(node.attrs.get("cats_strings")) and not node.attrs.get("cats_int64s")
    if strings != (np.dtype(x.dtype).kind == "O"):
        return "unsupported_dtype: string categories need a string input, numeric ones a number"
    return None


@lowering(
    "OneHotEncoder",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=("float32", "int32", "int64", "object"),
    tflite_ops=("CAST", "EQUAL"),
    notes=(
        "cats_int64s; float inputs truncated to int64 as onnxruntime; zeros=0 writes an "
        "all-zero row for an unknown category where onnxruntime fails the run"
    ),
    extra_check=_onehot_check,
)
def lower_one_hot_encoder(ctx):
    e = Emitter(ctx)
    x = ctx.input(0)
    if ctx.attr("cats_int64s"):
        cats = np.asarray(ctx.attr("cats_int64s"), np.int64).ravel()
        if np.dtype(x.dtype) != np.int64:
            x = e.op("CAST", x, dtype=np.int64, hint="as_int64")
    else:  # string categories: EQUAL compares string tensors
        cats = np.array([str(c) for c in ctx.attr("cats_strings")], dtype=object)
    x3 = ctx.reshape(x, tuple(x.shape) + (1,), "expanded")
    eq = e.op("EQUAL", x3, ctx.const_tensor(cats, "cats"), hint="is_cat", dtype=np.bool_)
    y = e.op("CAST", eq, dtype=np.float32, hint="onehot")
    last = {v: i for i, v in enumerate(cats.tolist())}  # onnxruntime: the last duplicate wins
    if len(last) != len(cats):
        keep = np.zeros(len(cats), np.float32)
        keep[list(last.values())] = 1
        y = e.op("MUL", y, e.const(keep), hint="dedup")
    if not int(ctx.attr("zeros", 1)):
        ctx.note("zeros=0: an unknown category gives an all-zero row (onnxruntime fails the run)")
    set_output(ctx, y)


def _label_encoder_attrs(attrs):
    """(keys, values, default) as numpy arrays (object arrays for strings), or Nones.

    Opset 1 (``classes_strings``) maps strings to their index and back; opset 2+ has typed
    ``keys_*`` / ``values_*`` lists, opset 4 also tensors."""
    if attrs.get("classes_strings") is not None:
        return None, None, None  # opset 1: the input type decides the direction (lowering)
    keys = values = default = None
    for k, kind in (
        ("keys_int64s", np.int64),
        ("keys_floats", np.float32),
        ("keys_strings", object),
        ("keys_tensor", None),
    ):
        if attrs.get(k) is not None and np.size(attrs[k]):
            keys = _typed(attrs[k], kind)
    for k, kind in (
        ("values_int64s", np.int64),
        ("values_floats", np.float32),
        ("values_strings", object),
        ("values_tensor", None),
    ):
        if attrs.get(k) is not None and np.size(attrs[k]):
            values = _typed(attrs[k], kind)
    if values is not None:
        if attrs.get("default_tensor") is not None:
            default = _typed(attrs["default_tensor"], None).ravel()[:1].astype(values.dtype)
        elif values.dtype == np.int64:
            default = np.array([attrs.get("default_int64", -1)], np.int64)
        elif values.dtype.kind == "f":
            default = np.array([attrs.get("default_float", -0.0)], values.dtype)
        else:
            default = np.array([str(attrs.get("default_string", "_Unused"))], dtype=object)
    return keys, values, default


def _typed(value, kind) -> np.ndarray:
    arr = np.asarray(value).ravel()
    if kind is object or arr.dtype.kind in "USO":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in arr], dtype=object)
    return arr.astype(kind) if kind is not None else arr


def _label_encoder_check(node, graph):
    keys, values, _ = _label_encoder_attrs(node.attrs)
    if node.attrs.get("classes_strings") is not None and keys is None:
        return None  # opset 1 int -> string: checked in the lowering
    if keys is None or values is None or len(keys) != len(values):
        return "unsupported_attribute_value: keys_* and values_* of equal length needed"
    if keys.dtype == np.float64 or values.dtype == np.float64:
        return "unsupported_dtype: float64 keys or values"
    return None


def unique_keys(keys: np.ndarray, values: np.ndarray, keep: str):
    """Keys without duplicates: the ``first`` (``emplace``) or ``last`` (``map[k] = v``)
    entry of a duplicated key wins, as the onnxruntime kernel builds its map (NaN keys are
    one key)."""
    seen: dict = {}
    for i, k in enumerate(keys.tolist()):
        key = "nan" if isinstance(k, float) and np.isnan(k) else k
        if keep == "last" or key not in seen:
            seen[key] = i
    order = sorted(seen.values())
    return keys[order], values[order]


def lookup(ctx, x, keys: np.ndarray, values: np.ndarray, default: np.ndarray):
    """``values[i]`` where ``keys[i] == x`` (keys unique) else ``default``, elementwise
    (strings too: EQUAL and GATHER read LiteRT string tensors). The default is the table's last
    entry, so the values are never SELECTed (SELECT_V2 has no string kernel)."""
    e = Emitter(ctx)
    if (np.dtype(x.dtype).kind == "O") != (keys.dtype.kind == "O") or (
        keys.dtype.kind != "O" and np.dtype(x.dtype) != keys.dtype
    ):
        ctx.refuse(errors.UNSUPPORTED_DTYPE, f"input {x.dtype} for {keys.dtype} keys")
    shape = tuple(x.shape)
    x3 = ctx.reshape(x, shape + (1,), "expanded")
    eq = e.op("EQUAL", x3, ctx.const_tensor(keys, "keys"), hint="eq", dtype=np.bool_)
    nan_keys = keys.dtype.kind == "f" and ctx.node.opset >= 4 and np.isnan(keys).any()
    if nan_keys:
        isnan = e.op("NOT_EQUAL", x3, x3, hint="isnan", dtype=np.bool_)
        nan_eq = e.op("LOGICAL_AND", isnan, e.const(np.isnan(keys), np.bool_), hint="nan_eq")
        eq = e.op("LOGICAL_OR", eq, nan_eq, hint="eq_nan")
    found = e.reduce("REDUCE_ANY", eq, [-1], False, "found")
    eq_i = e.op("CAST", eq, dtype=np.int32, hint="eq_i")
    axis = e.const(np.array([len(shape)], np.int32), np.int32, "axis")
    first = e.op(
        "ARG_MAX", eq_i, axis, shape=shape, dtype=np.int32, hint="first", output_type="INT32"
    )
    # the default is the table's last entry: the lookup never selects between values
    idx = e.op(
        "SELECT_V2", found, first, e.const(np.array([len(keys)], np.int32), np.int32), hint="idx"
    )
    table = np.concatenate([values, default]).astype(values.dtype)
    return e.gather(ctx.const_tensor(table, "values"), idx, 0, hint="encoded")


@lowering(
    "LabelEncoder",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=("float32", "int32", "int64", "object"),
    tflite_ops=("EQUAL", "REDUCE_ANY", "CAST", "ARG_MAX", "SELECT_V2", "GATHER"),
    notes=(
        "numeric and string keys and values (string tensors: EQUAL and GATHER); duplicate "
        "keys resolved as onnxruntime; NaN keys match NaN (opset 4)"
    ),
    extra_check=_label_encoder_check,
)
def lower_label_encoder(ctx):
    x = ctx.input(0)
    keys, values, default = _label_encoder_attrs(ctx.node.attrs)
    if keys is None:  # opset 1: strings <-> their index in classes_strings
        classes = np.array([str(c) for c in ctx.attr("classes_strings")], dtype=object)
        index = np.arange(len(classes), dtype=np.int64)
        if np.dtype(x.dtype).kind == "O":
            keys, values = classes, index
            default = np.array([ctx.attr("default_int64", -1)], np.int64)
        else:
            keys, values = index, classes
            default = np.array([str(ctx.attr("default_string", "_Unused"))], dtype=object)
    keep = "last" if ctx.attr("classes_strings") is not None else "first"
    keys, values = unique_keys(keys, values, keep)
    set_output(ctx, lookup(ctx, x, keys, values, default))


def _category_mapper_check(node, graph):
    strings, ints = node.attrs.get("cats_strings"), node.attrs.get("cats_int64s")
    if not strings or not ints or len(strings) != len(ints):
        return "unsupported_attribute_value: cats_strings and cats_int64s of equal length needed"
    return None


@lowering(
    "CategoryMapper",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=("int64", "object"),
    tflite_ops=("EQUAL", "REDUCE_ANY", "CAST", "ARG_MAX", "SELECT_V2", "GATHER"),
    notes="strings -> int64 or int64 -> strings through cats_strings / cats_int64s",
    extra_check=_category_mapper_check,
)
def lower_category_mapper(ctx):
    x = ctx.input(0)
    strings = np.array([str(v) for v in ctx.attr("cats_strings")], dtype=object)
    ints = np.asarray(ctx.attr("cats_int64s"), np.int64)
    if np.dtype(x.dtype).kind == "O":
        default = np.array([ctx.attr("default_int64", -1)], np.int64)
        y = lookup(ctx, x, *unique_keys(strings, ints, "last"), default)
    else:
        default = np.array([str(ctx.attr("default_string", "_Unused"))], dtype=object)
        y = lookup(ctx, x, *unique_keys(ints, strings, "last"), default)
    set_output(ctx, y)
