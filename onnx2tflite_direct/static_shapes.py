"""Keep LiteRT's shapes computable at prepare time in a dynamic-shape model.

LiteRT prepares an operator (computes its output shape, plans memory, lets a delegate such as
XNNPACK set up its kernels) once in ``AllocateTensors`` as long as every shape follows from
the input shapes and from constant (or ``SHAPE``-derived, "persistent") tensors. An operator
whose output shape depends on tensor *values* computed at run time (a RESHAPE or BROADCAST_TO
whose target shape is built by arithmetic the kernels do not evaluate at prepare time) has a
*dynamic* output: at every ``Invoke`` the interpreter re-prepares every later operator and
re-plans the arena after it runs. In a decoder exported by torch.onnx, repeat_kv's Expand and
the attention reshapes compute their targets from ``Shape(present)`` through
Gather/Concat/Equal/Where/Cast chains; each decode step then re-prepared the whole model
(a 4-layer Llama: 5.7 ms a step instead of 0.4 ms at a static past).

The dynamic-shape lowering (``dynamic_shapes.py``) already knows every tensor's
``shape_signature`` (-1 where it follows a dynamic input dim, the size otherwise). This pass
uses it:

* a RESHAPE with a run-time target whose output has at most one -1 gets a constant target,
  that signature (LiteRT infers the -1 from the element count, as for a constant target the
  comparison relaxed itself);
* a BROADCAST_TO with a run-time target whose every dynamic output dim is also a dynamic dim
  of the input (the broadcast keeps those dims: the target was computed from the input's own
  shape) becomes a MUL by ones shaped like the static growth (x * 1 is exact for every
  value, -0, inf and NaN included), which also broadcasts at prepare time;

and the shape arithmetic left without readers is dropped. Only targets computed from SHAPE
outputs and constants by dim-preserving operators are trusted (``_DIM_OPS``): a dim that a
MINIMUM or an integer division makes equal at both samples, or a target read from an input's
values, is not the same at every size, and its operator is left as it is.
"""

from __future__ import annotations

import numpy as np

from . import tfl
from .tfl_edit import Editor
from .tfl_rewrites import remove_dead_ops

# dtypes whose MUL by one (bool: LOGICAL_AND with true) is the identity in LiteRT's kernels
_MUL_DTYPES = {np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.bool_)}


def _signature(t: tfl.Tensor) -> tuple[int, ...]:
    return tuple(t.shape_signature) if t.shape_signature is not None else tuple(t.shape)


def _runtime(t: tfl.Tensor | None) -> bool:
    return t is not None and t.data is None


# Operators a target may be computed with for the signature to be trusted: reading dims
# (SHAPE) and moving, joining, converting, scaling or -1-guarding them. Each keeps a dim that
# is the same at both sample sizes the same at every size; a threshold (MINIMUM, LESS), an
# integer division or a value read from a graph input does not, so such targets stay.
_DIM_OPS = frozenset(
    {"GATHER", "STRIDED_SLICE", "SLICE", "CONCATENATION", "RESHAPE", "SQUEEZE", "EXPAND_DIMS",
     "CAST", "ADD", "SUB", "MUL", "EQUAL", "SELECT", "SELECT_V2", "PACK"}
)  # fmt: skip
# BROADCAST_TO's lowering of Expand takes the larger of the target and the input's dims.
_BROADCAST_OPS = _DIM_OPS | {"MAXIMUM"}


def _from_dims(t: tfl.Tensor, producers: dict, allowed: frozenset, seen: dict) -> bool:
    """``t`` is computed from constants and SHAPE outputs by ``allowed`` operators only."""
    if t.data is not None:
        return True
    key = id(t)
    if key not in seen:
        seen[key] = False  # (a cycle cannot occur; this also bounds the walk)
        op = producers.get(key)
        seen[key] = op is not None and (
            op.opcode == "SHAPE"
            or (
                op.opcode in allowed
                and all(i is None or _from_dims(i, producers, allowed, seen) for i in op.inputs)
            )
        )
    return seen[key]


def keep_static(sub: tfl.Subgraph) -> int:
    """Rewrite the run-time-shaped RESHAPE / BROADCAST_TO operators of ``sub`` (see the module
    docstring); returns how many were rewritten."""
    ed = Editor(sub)
    done = 0
    producers = sub.producers()
    dims: dict = {}
    broadcast_dims: dict = {}
    for op in sub.operators:
        if op.opcode == "RESHAPE" and len(op.inputs) > 1 and _runtime(op.inputs[1]):
            if not _from_dims(op.inputs[1], producers, _DIM_OPS, dims):
                continue
            out = _signature(op.outputs[0])
            if sum(d < 0 for d in out) > 1:
                continue
            target = ed.const(f"{op.outputs[0].name}/static_shape", np.array(out, np.int32))
            options = dict(op.options)
            if "new_shape" in options:
                options["new_shape"] = list(out)
            ed.replace(op, [ed.op("RESHAPE", [op.inputs[0], target], op.outputs, op, **options)])
            done += 1
        elif op.opcode == "BROADCAST_TO" and _runtime(op.inputs[1]):
            if not _from_dims(op.inputs[1], producers, _BROADCAST_OPS, broadcast_dims):
                continue
            ones = _ones_for(op.inputs[0], op.outputs[0])
            if ones is None:
                continue
            const = ed.const(f"{op.outputs[0].name}/ones", ones)
            opcode = "LOGICAL_AND" if ones.dtype == np.bool_ else "MUL"
            ed.replace(op, [ed.op(opcode, [op.inputs[0], const], op.outputs, op)])
            done += 1
    if done:
        ed.commit()
        remove_dead_ops(sub)
    return done


def _ones_for(x: tfl.Tensor, out: tfl.Tensor) -> np.ndarray | None:
    """Ones of the shape that broadcasts ``x`` to ``out`` (rank of ``out``), or None when a
    dynamic output dim is not a dynamic input dim (or the dtype has no exact MUL)."""
    if x.dtype not in _MUL_DTYPES or x.quantization is not None:
        return None
    src, dst = _signature(x), _signature(out)
    if len(src) > len(dst) or len(dst) > 6:
        return None
    src = (1,) * (len(dst) - len(src)) + src
    shape = []
    for s, d in zip(src, dst, strict=True):
        if d < 0:
            if s >= 0:
                return None
            shape.append(1)
        elif s < 0:
            return None  # a dynamic input dim broadcast to a static size: not provable here
        elif s == d:
            shape.append(1)
        elif s == 1:
            shape.append(d)
        else:
            return None
    return np.ones(shape, x.dtype)
