"""``--gpu-friendly`` rewrites of operand forms the GPU parsers reject (gpu_rewrites_operands):
each one fires where the ported rule rejects the operator (``parse`` / ``operands``), leaves a
file the same rules take whole, and still agrees with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

from onnx2tflite_direct import gpu_rules, tfl


def _rules(chk) -> list[str]:
    return [r["rule"] for r in chk.report["gpu_friendly"]["rewrites"]]


def _fallback_reasons(chk) -> set[str]:
    return {r for f in chk.report["gpu"]["fall_back"] for r in f["rules"]}


def _friendly(model, rule: str, reason: str, **options):
    """Default conversion falls back for ``reason``; --gpu-friendly applies ``rule`` and the
    verdict is fully delegable; both files agree with onnxruntime (check_conversion)."""
    plain = check_conversion(model, **options)
    assert reason in _fallback_reasons(plain), plain.report["gpu"]["fall_back"]
    chk = check_conversion(model, gpu_friendly=True, **options)
    assert rule in _rules(chk), _rules(chk)
    assert chk.report["gpu_friendly"]["verdict_after"] == "fully delegable", chk.report["gpu"]
    assert chk.report["gpu"]["fully_delegable"]
    return chk


def _binary(op: str, x_shape, c: np.ndarray, const_first: bool = False):
    out = np.broadcast_shapes(tuple(x_shape), c.shape)
    inputs = ["c", "x"] if const_first else ["x", "c"]
    return make_model(
        [helper.make_node(op, inputs, ["y"])],
        inputs=[("x", np.float32, list(x_shape))],
        outputs=[("y", np.float32, list(out))],
        initializers={"c": c},
    )


def _const(shape, seed=1):
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape).astype(np.float32)


@pytest.mark.parametrize(
    "op, x_shape, c_shape, const_first",
    [
        ("Add", (2, 4, 5, 5), (2, 1, 5, 5), False),  # a causal mask with batch 2
        ("Add", (2, 4, 6, 6), (2, 4, 6, 6), False),  # a same-shape bias
        ("Mul", (9, 1, 4, 8), (9, 1, 1, 8), False),  # rotary sin/cos over sequence x heads
        ("Sub", (2, 3, 5, 4), (2, 3, 1, 4), True),  # constant first: operand order kept
        ("Div", (3, 2, 4, 5), (3, 1, 4, 1), True),  # 4 groups: the constant is expanded
        ("Add", (1, 2, 1, 8), (8, 1, 1, 8), False),  # the runtime operand broadcasts: TILE
    ],
)
def test_constant_operand_view(op, x_shape, c_shape, const_first):
    """A 4-D constant with batch != 1 (MB ParseInputsWithConstTensor reads 1xHxWxC) -> the
    same op on a batch-1 4-D view; exact (the same elementwise op on the same values)."""
    model = _binary(op, x_shape, _const(c_shape), const_first)
    _friendly(model, "constant_operand_view", "parse", atol=0, rtol=0)


def test_readable_constant_left_alone():
    """A constant of batch 1 is what the parser reads: nothing to rewrite."""
    chk = check_conversion(_binary("Add", (2, 4, 5, 5), _const((1, 4, 5, 5))), gpu_friendly=True)
    assert "constant_operand_view" not in _rules(chk)
    assert chk.report["gpu"]["fully_delegable"]


def _matmul(a_shape, b_shape, const_a: bool):
    rng = np.random.default_rng(2)
    const_shape, run_shape = (a_shape, b_shape) if const_a else (b_shape, a_shape)
    w = rng.standard_normal(const_shape).astype(np.float32)
    out = (*np.broadcast_shapes(a_shape[:-2], b_shape[:-2]), a_shape[-2], b_shape[-1])
    inputs = ["w", "x"] if const_a else ["x", "w"]
    return make_model(
        [helper.make_node("MatMul", inputs, ["y"])],
        inputs=[("x", np.float32, list(run_shape))],
        outputs=[("y", np.float32, list(out))],
        initializers={"w": w},
    )


@pytest.mark.parametrize(
    "a_shape, b_shape, const_a",
    [
        ((2, 4, 6, 8), (1, 4, 8, 5), False),  # per-head constant rhs: SPLIT + 4 products
        ((1, 4, 6, 8), (1, 4, 8, 5), True),  # constant queries (DETR): transposed form
        ((3, 6, 8), (3, 8, 5), False),  # 3-D, the batch axis split
        ((1, 8), (8, 5), True),  # 2-D constant lhs (a tree ensemble's leaf sums)
    ],
)
def test_batch_matmul_constant_slices(a_shape, b_shape, const_a):
    """BATCH_MATMUL by a constant that is not a 2-D rhs (MB BatchedMatMulOperationParser) ->
    products by 2-D constant right-hand sides. The sums run in another order than
    onnxruntime's: 8 products of N(0, 1) values, so a few float32 ulps of the largest."""
    _friendly(_matmul(a_shape, b_shape, const_a), "batch_matmul_constant_slices", "parse")


def test_transposed_constant_einsum():
    """An Einsum by a constant writes TRANSPOSE(constant) (GC TRANSPOSE takes one runtime
    input): folded, then the BATCH_MATMUL by the 3-D constant is split by its batch."""
    w = np.random.default_rng(3).standard_normal((12, 4, 8)).astype(np.float32)
    model = make_model(
        [helper.make_node("Einsum", ["x", "w"], ["y"], equation="hmd,nhd->hmn")],
        inputs=[("x", np.float32, [4, 6, 8])],
        outputs=[("y", np.float32, [4, 6, 12])],
        initializers={"w": w},
    )
    chk = _friendly(model, "fold_constant_transpose", "operands")
    assert "batch_matmul_constant_slices" in _rules(chk)


def test_gather_elements_flat():
    """GatherElements on the last axis by constant indices (GATHER with batch_dims, v5 on
    the GPU's v1 cap) -> one GATHER by flat 1-D int32 indices; exact (it moves elements)."""
    rng = np.random.default_rng(4)
    idx = rng.integers(-6, 6, (2, 3, 4, 5)).astype(np.int64)
    model = make_model(
        [helper.make_node("GatherElements", ["x", "i"], ["y"], axis=3)],
        inputs=[("x", np.float32, [2, 3, 4, 6])],
        outputs=[("y", np.float32, [2, 3, 4, 5])],
        initializers={"i": idx},
    )
    _friendly(model, "gather_elements_flat", "version_above_gpu_cap", atol=0, rtol=0)


@pytest.mark.parametrize(
    "data_shape, indices, updates_shape",
    [
        ((6, 3, 4), [[4], [1], [2]], (3, 3, 4)),  # rows (funnel's pooled-attention writes)
        ((5, 4, 3), [[0, 1], [3, 2], [4, 0]], (3, 3)),  # depth 2: rows of a [20, 3] view
    ],
)
def test_scatter_nd_select_by_gather(data_shape, indices, updates_shape):
    """ScatterND by constant distinct coordinates (SCATTER_ND x2 + GREATER + SELECT_V2; no
    GPU SCATTER_ND) -> CONCATENATION of the data's rows and the updates + GATHER by a
    constant row map; exact (it moves elements)."""
    model = make_model(
        [helper.make_node("ScatterND", ["x", "i", "u"], ["y"])],
        inputs=[("x", np.float32, list(data_shape)), ("u", np.float32, list(updates_shape))],
        outputs=[("y", np.float32, list(data_shape))],
        initializers={"i": np.array(indices, np.int64)},
    )
    chk = _friendly(model, "scatter_nd_select_by_gather", "no_gpu_kernel", atol=0, rtol=0)
    assert "SCATTER_ND" not in chk.ops and "SELECT_V2" not in chk.ops, chk.ops


@pytest.mark.parametrize(
    "flags", [{"adj_x": True}, {"adj_y": True}, {"adj_x": True, "adj_y": True}]
)
def test_batch_matmul_adjoint_is_not_delegable(flags):
    """MB BatchedMatMulOperationParser::Parse stores no attribute (adj_x / adj_y are read by
    neither it nor gpu_compatibility.cc): a flagged BATCH_MATMUL would be computed
    untransposed, so the port rejects it; without flags it is delegable."""
    a = tfl.Tensor("a", np.float32, (2, 6, 6))
    b = tfl.Tensor("b", np.float32, (2, 6, 6))
    y = tfl.Tensor("y", np.float32, (2, 6, 6))
    op = tfl.Operator("BATCH_MATMUL", [a, b], [y], {"adj_x": False, "adj_y": False, **flags})
    assert [r for r, _ in gpu_rules.check_op(op, 1)] == ["attribute"]
    plain = tfl.Operator("BATCH_MATMUL", [a, b], [y], {"adj_x": False, "adj_y": False})
    assert gpu_rules.check_op(plain, 1) == []


def test_batch_matmul_adjoint_transpose():
    """Attention scores q @ k^T (the lowering folds k^T into adj_y) -> TRANSPOSE of k +
    BATCH_MATMUL without flags: the same products summed in the same order."""
    model = make_model(
        [
            helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
            helper.make_node("MatMul", ["q", "kt"], ["y"]),
        ],
        inputs=[("q", np.float32, [1, 4, 6, 8]), ("k", np.float32, [1, 4, 5, 8])],
        outputs=[("y", np.float32, [1, 4, 6, 5])],
    )
    chk = _friendly(model, "batch_matmul_adjoint_transpose", "attribute")
    assert dict(chk.ops) == {"TRANSPOSE": 1, "BATCH_MATMUL": 1}
    plain = check_conversion(model)
    assert np.array_equal(chk.actual["y"], plain.actual["y"])


def test_gather_of_a_constant_table_is_not_delegable():
    """MB GatherOperationParser::Parse reads input 0 with AddInput, which refuses a constant
    (ObjectReader::ReadNonConstantTensor): a constant table is rejected, runtime data is not."""
    ids = tfl.Tensor("i", np.int32, (5,))
    y = tfl.Tensor("y", np.float32, (5, 6))
    table = tfl.Tensor("t", np.float32, (10, 6), data=np.zeros((10, 6), np.float32))
    op = tfl.Operator("GATHER", [table, ids], [y], {"axis": 0, "batch_dims": 0})
    assert [r for r, _ in gpu_rules.check_op(op, 1)] == ["parse"]
    runtime = tfl.Tensor("x", np.float32, (10, 6))
    op = tfl.Operator("GATHER", [runtime, ids], [y], {"axis": 0, "batch_dims": 0})
    assert gpu_rules.check_op(op, 1) == []


@pytest.mark.parametrize("axis, table_shape", [(0, (10, 6)), (1, (3, 10, 4))])
def test_gather_table_by_concatenation(axis, table_shape):
    """An embedding lookup GATHER(constant table, runtime ids) -> the table as CONCATENATION
    of two 4-D constant pieces (the parser takes constants there), GATHER, RESHAPE; exact."""
    table = np.random.default_rng(5).standard_normal(table_shape).astype(np.float32)
    out = list(table_shape)
    out[axis] = 5
    model = make_model(
        [helper.make_node("Gather", ["t", "i"], ["y"], axis=axis)],
        inputs=[("i", np.int32, [5])],
        outputs=[("y", np.float32, out)],
        initializers={"t": table},
    )
    feeds = {"i": np.array([9, 0, 3, 3, 7], np.int32)}
    chk = _friendly(model, "gather_table_by_concatenation", "parse", feeds=feeds, atol=0, rtol=0)
    assert chk.ops["CONCATENATION"] == 1 and chk.ops["GATHER"] == 1, chk.ops


def test_select_condition_rules():
    """GC CheckSelectV2GpuDelegateCompatibility: the condition broadcasts to the output;
    MB SelectV2OperationParser::Parse adds it with AddInput, which refuses a constant."""
    a = tfl.Tensor("a", np.float32, (2, 3, 4))
    b = tfl.Tensor("b", np.float32, (2, 3, 4))
    y = tfl.Tensor("y", np.float32, (2, 3, 4))

    def reasons(cond):
        op = tfl.Operator("SELECT_V2", [cond, a, b], [y], {})
        return [r for r, _ in gpu_rules.check_op(op, 1)]

    assert reasons(tfl.Tensor("c", np.float32, (3, 1))) == []
    assert reasons(tfl.Tensor("c", np.float32, (2, 3, 4))) == []
    assert reasons(tfl.Tensor("c", np.float32, (5, 1))) == ["broadcast"]
    assert reasons(tfl.Tensor("c", np.float32, (1, 2, 3, 4))) == ["broadcast"]
    const = tfl.Tensor("c", np.float32, (3, 1), data=np.ones((3, 1), np.float32))
    assert reasons(const) == ["parse"]
