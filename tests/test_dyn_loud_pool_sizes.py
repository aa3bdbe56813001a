"""Pools over a dynamic axis at run-time sizes smaller than their window.

Where a VALID window overhangs its input, onnxruntime's output size truncates toward zero: it
pools one partial window (k=4, s=4 at 1..3 cells), returns an empty output (k=3, s=2 at 1
cell) or fails (k=3, s=1 at 1 cell). LiteRT reproduces none of it: XNNPACK pools one window
padded with zeros (an average divided by the whole window), the builtin kernels give no
output. No one file can follow both runtimes there, so the conversion says so, loudly: a
warning naming the pool, the smallest input it is exact at and the symbol's size below which
that happens, with the pin hint (before, nothing was said and the file silently gave one
value). Pools whose pads cover the window (k=3, s=2, p=1; auto_pad SAME_UPPER) are exact at
every size, the smallest included, and get no warning.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_at_sizes, convert, make_model
from onnx import helper


def _pool(op, rank=1, **attrs):
    spatial = ["L"] if rank == 1 else ["H", "W"]
    return make_model(
        [helper.make_node(op, ["x"], ["y"], **attrs)],
        [("x", np.float32, (1, 2, *spatial))],
        [("y", np.float32, (1, 2, *[None] * rank))],
    )


@pytest.mark.parametrize(
    ("op", "k", "s", "least"), [("MaxPool", 3, 2, 3), ("AveragePool", 4, 4, 4)]
)
def test_a_window_that_can_overhang_is_named_with_its_smallest_exact_size(op, k, s, least):
    model = _pool(op, kernel_shape=[k], strides=[s])
    res = convert(model)
    (line,) = [w for w in res.report["warnings"] if "narrower than the window" in w]
    assert f"ONNX node '{op}:y'" in line and f"at least {least} cells in its width" in line
    assert f"L below about {least}" in line and "--input-shape" in line
    check_at_sizes(res, model, [(1, 2, n) for n in (least, least + 1, least + 2, 64, 101)])


@pytest.mark.parametrize(
    ("rank", "attrs"),
    [
        (1, {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
        (2, {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
        (2, {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER"}),
    ],
)
def test_windows_whose_pads_cover_them_are_exact_at_the_smallest_sizes(rank, attrs):
    model = _pool("MaxPool", rank, **attrs)
    res = convert(model)
    assert not [w for w in res.report["warnings"] if "narrower than the window" in w]
    check_at_sizes(res, model, [(1, 2, *[n] * rank) for n in (1, 2, 3, 4, 9, 64)])
