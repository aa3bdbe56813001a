"""Opt-in CUSTOM ops for nodes without a builtin lowering.

The op gets custom code ``ONNX_<OpType>`` (``ONNX_<domain>.<OpType>`` outside the default
domain) and its attributes as a FlexBuffer map so a runtime kernel can read them. Nothing
here happens unless the user asked for it: no silent fallback.
"""

from __future__ import annotations

import numpy as np
from flatbuffers import flexbuffers

from .. import errors
from ..errors import UnsupportedError
from ..policies import onnx_order
from ..registry import REGISTRY, OpSpec
from .emit import Emitter


def custom_code(node) -> str:
    return (
        f"ONNX_{node.op_type}"
        if node.domain in ("", "ai.onnx")
        else f"ONNX_{node.domain}.{node.op_type}"
    )


def _flex_value(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_flex_value(v) for v in value]
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(type(value).__name__)


def custom_options(node) -> bytes:
    return bytes(flexbuffers.Dumps({k: _flex_value(v) for k, v in sorted(node.attrs.items())}))


def lower_custom(ctx):
    e = Emitter(ctx)
    node = ctx.node
    inputs = [ctx.input(i) if ctx.has_input(i) else None for i in range(len(node.inputs))]
    outputs = [ctx.output(i) for i, o in enumerate(node.outputs) if o]
    e.custom(custom_code(node), custom_options(node), inputs, outputs)


def custom_spec(node, options) -> OpSpec:
    """The spec for a node with no builtin lowering, or the refusal saying why not."""
    name = f"{node.domain + '.' if node.domain else ''}{node.op_type}"
    if REGISTRY.known_op(node.domain, node.op_type):
        raise UnsupportedError(
            errors.UNSUPPORTED_ONNX_OP,
            f"{name} is supported, but not at opset {node.opset}",
            node.label,
        )
    if not options.allow_custom_ops:
        code = errors.CUSTOM_OP_CANDIDATE_DISABLED
        msg = (
            f"no builtin lowering for {name} (opset {node.opset}); "
            "--allow-custom-ops with --custom-op-allowlist would emit a CUSTOM op"
        )
        raise UnsupportedError(code, msg, node.label)
    if node.op_type not in options.custom_op_allowlist and name not in options.custom_op_allowlist:
        raise UnsupportedError(
            errors.CUSTOM_OP_NOT_IN_ALLOWLIST,
            f"{name} has no builtin lowering and is not in --custom-op-allowlist",
            node.label,
        )
    return OpSpec(
        op_type=node.op_type,
        domain=node.domain,
        lower=lower_custom,
        layout=onnx_order,
        dtypes=("float32", "float16", "int32", "int64", "int8", "uint8", "bool", "int16"),
        tflite_ops=("CUSTOM",),
    )
