"""Classes of ONNX ops by what they do to element values: the one table the passes ask.

Several rewrites and checks rest on the same fact about an op -- "it only moves elements, it
computes nothing with them" -- and each used to keep its own hand-written set of op types,
which drifted apart (one had Expand, another Gather, none said why). The classes here are
facts about the ONNX ops of the default domain, true whatever pass asks; a pass takes the
class its proof needs, and where it handles only part of a class it subtracts the rest next
to its own use and says why there.

The classes nest: ``RESHAPES`` is part of ``REORDERS``, which is part of ``COPIES``. For every
op in them input 0 is the data; any other input is a shape, axes, repeats or indices, never a
value that reaches the output. So an element-wise map ``f`` commutes with them
(``f(move(x)) == move(f(x))``), a value range or an integer lattice passes through, and a dtype
change before or after is the same. ``tests/test_op_classes.py`` checks each fact in
onnxruntime.

Who asks: ``frontend/checks`` (REORDERS: the element count), ``float_carried`` (REORDERS),
``mask_integers`` (REORDERS and Expand), ``cast_before_moves`` and ``batched_nms`` (COPIES),
``lowering/lattice_moves`` (REORDERS and MaxPool), ``quant_debug`` (COPIES and a few more).
"""

from __future__ import annotations

# The output is the input's elements in the same row-major order; only the shape changes
# (``np.reshape`` computes any of them from the output's shape).
RESHAPES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})

# Every input element appears exactly once in the output (a permutation): the element count
# is kept, which ONNX shape inference does not check for Reshape (frontend/checks.py does).
REORDERS = RESHAPES | {"Transpose"}

# Every output element is a copy of an element of the data input: it may be dropped
# (Slice, Gather*), repeated (Expand, Tile) or moved, never computed with. Split and
# DepthToSpace/SpaceToDepth are copies too but not listed: no pass asking has needed them yet
# (Split has several outputs; the passes that follow a chain of copies follow one output).
COPIES = REORDERS | {"Expand", "Tile", "Slice", "Gather", "GatherElements", "GatherND"}
