"""The op classes of ``onnx2tflite_direct/op_classes.py`` are facts about ONNX ops, checked
against onnxruntime; and the dead chain drop_empty_concat_operands removes is any op's.

Each op of a class runs in onnxruntime on distinct values (a shuffled arange, so every element
says where it came from): a RESHAPES op keeps the row-major order, a REORDERS op outputs each
input element exactly once, a COPIES op outputs only input elements.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx2tflite_direct import op_classes
from tests.harness import check_conversion, make_model

SHAPE = (2, 3, 4)
I64 = np.int64

# op -> (its other inputs, as constants; attributes)
CASES = {
    "Reshape": ([np.array([4, 6], I64)], {}),
    "Flatten": ([], {"axis": 2}),
    "Squeeze": ([], {}),  # on a [2, 1, 3, 4] input below
    "Unsqueeze": ([np.array([1], I64)], {}),
    "Identity": ([], {}),
    "Transpose": ([], {"perm": [2, 0, 1]}),
    "Expand": ([np.array([3, 2, 3, 4], I64)], {}),
    "Tile": ([np.array([1, 2, 2], I64)], {}),
    "Slice": ([np.array([1, 0], I64), np.array([3, 3], I64), np.array([1, 2], I64)], {}),
    "Gather": ([np.array([[2, 0], [0, 1]], I64)], {"axis": 1}),
    "GatherElements": ([np.tile(np.array([[2], [0], [1]], I64), (2, 1, 4))], {"axis": 1}),
    "GatherND": ([np.array([[1, 2], [0, 0]], I64)], {}),
}


def _run(op: str) -> tuple[np.ndarray, np.ndarray]:
    extra, attrs = CASES[op]
    shape = (2, 1, 3, 4) if op == "Squeeze" else SHAPE
    x = np.random.default_rng(1).permutation(np.prod(shape)).astype(np.float32).reshape(shape)
    names = [f"c{i}" for i in range(len(extra))]
    node = helper.make_node(op, ["x", *names], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(c, n) for c, n in zip(extra, names, strict=True)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return x, sess.run(None, {"x": x})[0]


def test_every_class_member_has_a_case():
    assert set(CASES) == set(op_classes.COPIES)
    assert op_classes.RESHAPES <= op_classes.REORDERS <= op_classes.COPIES


@pytest.mark.parametrize("op", sorted(op_classes.COPIES))
def test_class_facts_hold_in_onnxruntime(op):
    x, y = _run(op)
    assert set(y.ravel().tolist()) <= set(x.ravel().tolist())  # copies only
    if op in op_classes.REORDERS:
        assert np.array_equal(np.sort(y.ravel()), np.sort(x.ravel()))  # each element once
    if op in op_classes.RESHAPES:
        assert np.array_equal(y.ravel(), x.ravel())  # same order
    elif op == "Transpose":
        assert not np.array_equal(y.ravel(), x.ravel())


@pytest.mark.parametrize(
    ("op", "extra"),
    [("Sub", ["c"]), ("Div", ["c"]), ("Tile", ["reps"]), ("Relu", []), ("Flatten", [])],
)
def test_empty_concat_operand_behind_any_op_is_dropped(op, extra):
    """cat(q * q, f(q[..., 8:])) with f of the default domain: the empty slice went only when
    f was on a hand-written list (Mul, Neg, Cast, ...); behind Sub, Div, Tile or Relu it was
    lowered and refused (unsupported_attribute_value: Slice with an empty result)."""
    flat = op == "Flatten"  # its output is 2-D: [10, 0], concatenated to q * q as [10, 8]
    nodes = [
        helper.make_node("Slice", ["q", "r", "big", "ax"], ["passthrough"]),
        helper.make_node(op, ["passthrough", *extra], ["p2"], **({"axis": 3} if flat else {})),
        helper.make_node("Mul", ["q", "q"], ["sq"]),
        *([helper.make_node("Reshape", ["sq", "rows"], ["sq2"])] if flat else []),
        helper.make_node("Concat", ["sq2" if flat else "sq", "p2"], ["y"], axis=-1),
    ]
    out_shape = [10, 8] if flat else [1, 2, 5, 8]
    inits = {
        "r": np.array([8]), "big": np.array([2**63 - 1]), "ax": np.array([-1]),
        "c": np.array(1.5, np.float32), "reps": np.array([1, 1, 1, 1]), "rows": np.array([10, 8]),
    }  # fmt: skip
    model = make_model(
        nodes, [("q", np.float32, [1, 2, 5, 8])], [("y", np.float32, out_shape)], inits
    )
    q = np.random.default_rng(0).standard_normal((1, 2, 5, 8)).astype(np.float32)
    check_conversion(model, {"q": q})
