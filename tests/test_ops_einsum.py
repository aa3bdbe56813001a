"""Einsum: pairwise BATCH_MATMUL contractions checked against onnxruntime."""

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

CASES = [
    ("ij->ji", [(3, 4)], (4, 3)),
    ("ij->i", [(3, 4)], (3,)),
    ("ij->", [(3, 4)], ()),
    ("i,i", [(5,), (5,)], ()),
    ("i,j->ij", [(3,), (4,)], (3, 4)),
    ("ij,jk->ik", [(2, 3), (3, 4)], (2, 4)),
    ("bij,bjk->bik", [(5, 2, 3), (5, 3, 4)], (5, 2, 4)),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 8), (2, 3, 6, 8)], (2, 3, 4, 6)),
    ("...ij,...jk->...ik", [(2, 1, 2, 3), (1, 4, 3, 5)], (2, 4, 2, 5)),
    ("...ij,...jk->...ik", [(2, 2, 3), (2, 3, 5)], (2, 2, 5)),
    ("ij,jk", [(2, 3), (3, 4)], (2, 4)),
    ("abc,cd,de->abe", [(2, 3, 4), (4, 5), (5, 6)], (2, 3, 6)),
    ("ijk,ik->j", [(2, 3, 4), (2, 4)], (3,)),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)], (2, 4)),
]


@pytest.mark.parametrize("equation,in_shapes,out_shape", CASES)
def test_einsum_matches(equation, in_shapes, out_shape):
    names = [f"x{i}" for i in range(len(in_shapes))]
    model = make_model(
        [helper.make_node("Einsum", names, ["y"], equation=equation)],
        inputs=[(n, np.float32, s) for n, s in zip(names, in_shapes, strict=True)],
        outputs=[("y", np.float32, out_shape)],
        opset=12,
    )
    check_conversion(model)


def test_einsum_matmul_uses_batch_matmul():
    model = make_model(
        [helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik")],
        inputs=[("a", np.float32, (2, 3, 4)), ("b", np.float32, (2, 4, 5))],
        outputs=[("y", np.float32, (2, 3, 5))],
        opset=12,
    )
    assert check_conversion(model).ops["BATCH_MATMUL"] == 1


def test_einsum_diagonal_refused():
    model = make_model(
        [helper.make_node("Einsum", ["x"], ["y"], equation="ii->i")],
        inputs=[("x", np.float32, (3, 3))],
        outputs=[("y", np.float32, (3,))],
        opset=12,
    )
    expect_refusal(model, "unsupported_attribute_value")
