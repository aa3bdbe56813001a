"""Unique/NonZero/Compress: data-dependent output sizes are refused with
dynamic_shape_unsupported (never the generic custom-op refusal)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import expect_refusal, make_model
from onnx import helper

CASES = [
    ("NonZero", ["x"], [("y", np.int64, (2, 3))]),
    ("Unique", ["x"], [("y", np.float32, (3,))]),
    ("Compress", ["x", "c"], [("y", np.float32, (2, 3))]),
]


@pytest.mark.parametrize(("op", "ins", "outs"), CASES)
@pytest.mark.parametrize("declared", [True, False])
def test_data_dependent_ops_refused(op, ins, outs, declared):
    inputs = [("x", np.float32, (2, 3)), ("c", np.bool_, (2,))][: len(ins)]
    attrs = {"axis": 0} if op == "Compress" else {}
    outputs = outs if declared else [(n, t, ["d"] * len(s)) for n, t, s in outs]
    model = make_model(
        [helper.make_node(op, ins, [o[0] for o in outs], **attrs)], inputs, outputs, opset=11
    )
    expect_refusal(model, "dynamic_shape_unsupported")


def test_refusal_names_the_data_dependent_size():
    """Users get the precise reason, not the generic "pin your input shapes" advice."""
    model = make_model(
        [helper.make_node("Unique", ["x"], ["y"])],
        [("x", np.float32, (6,))],
        [("y", np.float32, ("n",))],
        opset=11,
    )
    err = expect_refusal(model, "dynamic_shape_unsupported")
    assert "number of unique elements" in err.message
    assert "--input-shape" not in err.message
