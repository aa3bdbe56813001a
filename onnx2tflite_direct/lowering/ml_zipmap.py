"""ZipMap: refused with what to do (``frontend/zipmap.py`` has the advice and the
``--drop-zipmap`` rewrite, applied before conversion).

A ZipMap whose maps are a graph output is refused by the front end's output check with the
same advice; this registration covers a ZipMap read inside the graph and lists the op in
docs/ops.md.
"""

from __future__ import annotations

from .. import errors
from ..policies import onnx_order
from ..registry import lowering
from .ml_common import ML_DOMAIN


def _advice(node, graph) -> str:
    from ..frontend.zipmap import ADVICE  # at conversion time: no import-order coupling

    return f"{errors.UNSUPPORTED_DTYPE}: {ADVICE}"


@lowering(
    "ZipMap",
    onnx_order,
    domain=ML_DOMAIN,
    dtypes=(),
    dtype_inputs=(),
    dynamic_outputs=True,
    notes="refused (a sequence of maps); --drop-zipmap outputs the probability tensor instead",
    extra_check=_advice,
)
def lower_zipmap(ctx):  # never reached: extra_check refuses first
    ctx.refuse(errors.UNSUPPORTED_DTYPE, "ZipMap builds a sequence of maps")
