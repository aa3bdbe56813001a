"""The prelude of real graphs (reversals, masks, index arithmetic) in forms XNNPACK takes.

Each case converts, compares with onnxruntime (harness.check_conversion: exact here, these are
copies and 0/1 arithmetic) and counts the XNNPACK partitions with bench_partitions' counter.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

from benchmarks.bench_partitions import count_partitions

RNG = np.random.default_rng(22)
F = np.float32
I64 = np.int64


def _parts(chk) -> dict:
    return count_partitions(chk.tflite_bytes)


@pytest.mark.parametrize(
    "shape,axis,start,end",
    [((20, 1, 16), 0, -1, -(2**63) + 1), ((2, 7, 5), 1, 5, 0), ((3, 4, 6), -1, 4, -7)],
)
def test_reverse_slice_is_slices_and_concat(shape, axis, start, end):
    """x[::-1] (a CRNN's backward LSTM input): SLICEs + CONCATENATION, one partition."""
    inits = {
        "s": np.array([start], I64),
        "e": np.array([end], I64),
        "a": np.array([axis], I64),
        "st": np.array([-1], I64),
    }
    x = RNG.standard_normal(shape).astype(F)
    sl = [slice(None)] * len(shape)
    sl[axis] = slice(start, end if end > -(2**62) else None, -1)
    y = x[tuple(sl)]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Slice", ["r", "s", "e", "a", "st"], ["t"]),
        helper.make_node("Neg", ["t"], ["y"]),
    ]
    model = make_model(nodes, [("x", F, shape)], [("y", F, y.shape)], inits)
    chk = check_conversion(model, feeds={"x": x}, atol=0, rtol=0)
    assert "STRIDED_SLICE" not in chk.ops
    parts = _parts(chk)
    assert parts["partitions"] == 1 and parts["outside"] == {}, parts
