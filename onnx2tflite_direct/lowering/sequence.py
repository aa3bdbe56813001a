"""Sequence and optional ops that the front end could not resolve: refused with a reason.

The front end (``frontend/sequences.py``) rewrites every statically known use of a sequence
or optional into plain tensor ops before lowering. What reaches these lowerings needs run-time
sequences, which TFLite does not have; they are registered so that the refusal names the node
and the reason (``unsupported_dtype``), and so that docs/ops.md lists the ops.
"""

from __future__ import annotations

from .. import errors
from ..frontend.sequences import OPTIONAL_OPS, SEQUENCE_OPS
from ..policies import onnx_order
from ..registry import lowering


def _refuse_sequences(node, graph) -> str:
    return (
        f"{errors.UNSUPPORTED_DTYPE}: {node.op_type} on a sequence/optional that is not "
        "statically known (run-time position, sequence-typed graph input/output, or a sequence "
        "crossing a Loop/If boundary); TFLite has no sequence tensors"
    )


def _refuse_unresolved(ctx) -> None:  # never reached: extra_check refuses first
    ctx.refuse(errors.UNSUPPORTED_DTYPE, "sequence/optional values are not TFLite tensors")


STATIC_NOTE = (
    "no TFLite counterpart: resolved at conversion time when positions and shapes are static "
    "(becomes Identity/Split/Squeeze/Unsqueeze/Concat or a constant); refused with "
    "unsupported_dtype otherwise"
)
for _op in SEQUENCE_OPS + OPTIONAL_OPS:
    lowering(
        _op,
        onnx_order,
        dtypes=("sequence/optional/tensor",),
        dtype_inputs=(),
        dynamic_outputs=True,
        extra_check=_refuse_sequences,
        notes="always refused (unsupported_dtype): needs run-time sequences"
        if _op == "SequenceMap"
        else STATIC_NOTE,
    )(_refuse_unresolved)
