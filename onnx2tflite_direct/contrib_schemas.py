"""onnx schemas, with shape inference, for the onnxruntime contrib ops we lower.

Why: onnx's shape inference knows no ``com.microsoft`` op (nor onnxruntime's default-domain
``LayerNormalization`` below opset 17 and ``SimplifiedLayerNormalization``), so every tensor
after such a node would have an unknown shape and the whole rest of the graph would be refused.
onnxruntime registers these schemas in its own process; the front end registers the same
contracts into onnx's schema registry (output dtypes and shapes as onnxruntime's contrib-op
documentation states them) for the duration of its own checks and shape inference
(:func:`registered`), so the ordinary shape inference sees through them. One mechanism, no
special case per op in the front end. The input/output
type constraints are permissive on purpose: the lowerings declare and check the dtypes they
support (registry constraints), and onnxruntime is the judge of model validity.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import onnx
from onnx import defs

from .contrib_shapes import ATTR_TYPES, MS, SCHEMAS  # noqa: F401  (MS is re-exported)

_P = defs.OpSchema.FormalParameter
_OPT = defs.OpSchema.FormalParameterOption.Optional
_VARIADIC = defs.OpSchema.FormalParameterOption.Variadic
_ALL_TENSORS = [
    f"tensor({t})"
    for t in (
        "float",
        "float16",
        "bfloat16",
        "double",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "bool",
    )
]
_lock = threading.Lock()
_depth = 0
_added: list[tuple[str, int, str]] = []
_built: list[defs.OpSchema] = []

_TYPE_CODES = {
    "f": defs.OpSchema.AttrType.FLOAT,
    "i": defs.OpSchema.AttrType.INT,
    "s": defs.OpSchema.AttrType.STRING,
    "fs": defs.OpSchema.AttrType.FLOATS,
    "is": defs.OpSchema.AttrType.INTS,
    "ss": defs.OpSchema.AttrType.STRINGS,
}


def _guarded(fn: Callable) -> Callable:
    """An exception escaping a Python inference function would abort onnx's whole inference;
    a contract we cannot evaluate leaves the outputs unknown instead (the lowering refuses)."""

    def infer(ctx) -> None:
        try:
            fn(ctx)
        except Exception:
            return

    return infer


def _schema(domain: str, op: str, since: int, inputs, outputs, attrs, fn) -> defs.OpSchema:
    def params(names, prefix):
        out, constraints = [], []
        for k, name in enumerate(names):  # "name?" optional, "name*" variadic (mixed types)
            type_str = f"{prefix}{k}"
            kwargs = {}
            if name.endswith("?"):
                kwargs = {"param_option": _OPT}
            elif name.endswith("*"):
                kwargs = {"param_option": _VARIADIC, "is_homogeneous": False, "min_arity": 1}
            out.append(_P(name.rstrip("?*"), type_str, "", **kwargs))
            constraints.append((type_str, _ALL_TENSORS, ""))
        return out, constraints

    ins, in_types = params(inputs, "Tin")
    outs, out_types = params(outputs, "Tout")
    attributes = []
    for a in attrs:  # "name" (type from ATTR_TYPES) or "name:code" (this op's own type)
        name, _, code = a.partition(":")
        kind = _TYPE_CODES[code or ATTR_TYPES[name]]
        attributes.append(defs.OpSchema.Attribute(name, kind, "", required=False))
    schema = defs.OpSchema(
        op,
        domain,
        since,
        "onnxruntime contrib op (contract from onnxruntime's ContribOperators.md)",
        inputs=ins,
        outputs=outs,
        type_constraints=in_types + out_types,
        attributes=attributes,
    )
    schema.set_type_and_shape_inference_function(_guarded(fn))
    return schema


def needed(model: onnx.ModelProto) -> bool:
    """Whether any top-level node of ``model`` is an op of :data:`SCHEMAS`."""
    return any((n.domain, n.op_type) in SCHEMAS for n in model.graph.node)


@contextlib.contextmanager
def registered(model: onnx.ModelProto | None = None):
    """The schemas of :data:`SCHEMAS` are registered in onnx while the block runs (not at all
    when ``model`` is given and has none of these ops: registration costs about a millisecond).

    Scoped, not process-wide: onnx keeps one global registry, and a permanent entry would change
    onnx for everyone in the process (``onnx.reference`` refuses to import when two domains
    share an op name, as ``com.microsoft.Attention`` and ``Attention`` do; the checker would
    start accepting contrib nodes). Re-entrant and thread-safe (a count under a lock); a schema
    somebody else registered under the same (name, domain, version) is left alone.
    """
    global _depth
    if model is not None and not needed(model):
        yield
        return
    with _lock:
        if _depth == 0:
            _add_all()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _remove_all()


def _add_all() -> None:
    if not _built:  # OpSchema objects are built once (the costly part), registered per use
        for (domain, op), (since, inputs, outputs, attrs, fn) in SCHEMAS.items():
            _built.append(_schema(domain, op, since, inputs, outputs, attrs, fn))
    for schema in _built:
        op, since, domain = schema.name, schema.since_version, schema.domain
        if _exists(op, domain, since):
            continue
        try:
            defs.register_schema(schema)
        except Exception:  # onnx refuses (a concurrent registration): keep theirs
            continue
        _added.append((op, since, domain))


def _remove_all() -> None:
    while _added:
        op, since, domain = _added.pop()
        try:
            defs.deregister_schema(op, since, domain)
        except Exception:
            continue


def _exists(op: str, domain: str, since: int) -> bool:
    try:
        return defs.get_schema(op, since, domain).since_version == since
    except Exception:
        return False


def infer_shapes(model: onnx.ModelProto, **kwargs) -> onnx.ModelProto:
    """``onnx.shape_inference.infer_shapes`` with the contrib schemas registered."""
    with registered(model):
        return onnx.shape_inference.infer_shapes(model, **kwargs)


def has_schema(node: onnx.NodeProto) -> bool:
    """A default-domain node, or a contrib node whose contract :data:`SCHEMAS` holds."""
    return node.domain in ("", "ai.onnx") or (node.domain, node.op_type) in SCHEMAS
