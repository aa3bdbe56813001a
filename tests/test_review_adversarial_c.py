"""Adversarial review (c): cases against the exactness claims of ``mlas_pool.py``,
``quant/dynamic_range.py``, ``quant/equalize.py`` and ``tools/zoo/deploy.py``.

Each case converts a hand-made model, runs it in LiteRT and compares with onnxruntime on
seeded inputs; where a module claims onnxruntime's bits on x86-64 the comparison is bit for
bit there and within the claimed rounding elsewhere.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest
from harness import convert, make_model, op_histogram
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from test_dynamic_range_kept import onnxruntime_semantics, quantize_dynamic_int8
from test_mlas_pool import mlas_window_mean

from onnx2tflite_direct import validate as V

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

F = np.float32
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


# ----------------------------------------------------------------------------------------------
# 1. mlas_pool: AveragePool / GlobalAveragePool of a dynamically quantized graph
# ----------------------------------------------------------------------------------------------


def _pool_model(op, attrs, shape, opset, extra_reader=False):
    """x -> pool (g, a graph output) -> Flatten -> MatMul (y); optionally a Relu reading g."""
    rng = np.random.default_rng(3)
    pool = helper.make_node(op, ["x"], ["g"], name="pool", **attrs)
    probe = helper.make_model(
        helper.make_graph(
            [pool],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
            [helper.make_tensor_value_info("g", TensorProto.FLOAT, None)],
        ),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    gshape = list(ReferenceEvaluator(probe).run(None, {"x": np.zeros(shape, F)})[0].shape)
    k = int(np.prod(gshape[1:]))
    nodes = [
        pool,
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "w"], ["y"], name="fc"),
    ]
    outs = [("g", TensorProto.FLOAT, gshape), ("y", TensorProto.FLOAT, [shape[0], 16])]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["g"], ["r"], name="relu"))
        outs.append(("r", TensorProto.FLOAT, gshape))
    w = (rng.standard_normal((k, 16)) * 0.1).astype(F)
    return make_model(nodes, [("x", TensorProto.FLOAT, list(shape))], outs, {"w": w}, opset=opset)


def _assert_pool_matches(qmodel, x, res, exact: bool, xnnpack=(True, False)):
    k = 1
    for use_xnnpack in xnnpack:
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"], use_xnnpack=use_xnnpack)
        ref = onnxruntime_semantics(qmodel, {"x": x})
        if exact and X86:
            for name in got:
                np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
        else:  # any order of k values: k ulps of the largest magnitude
            k = int(np.prod(x.shape[2:]))
            bound = k * 2.0**-23 * float(np.max(np.abs(x)))
            np.testing.assert_allclose(got["g"], ref["g"], rtol=0, atol=bound)


POOL_CASES = {
    # name: (op, attrs, shape, opset, exact on x86-64)
    "stride_gt_kernel": ("AveragePool", {"kernel_shape": [2, 2], "strides": [3, 3]}, 13, True),
    "stride_w3": ("AveragePool", {"kernel_shape": [2, 2], "strides": [1, 3]}, 13, True),
    "1x1_stride2": ("AveragePool", {"kernel_shape": [1, 1], "strides": [2, 2]}, 13, True),
    "nonsquare_pads": ("AveragePool", {"kernel_shape": [2, 5], "pads": [1, 2, 0, 1]}, 13, True),
    "nonsquare_include": (
        "AveragePool",
        {"kernel_shape": [4, 1], "pads": [2, 0, 1, 0], "count_include_pad": 1},
        13,
        True,
    ),
    "whole_input_stride2": ("AveragePool", {"kernel_shape": [11, 9], "strides": [2, 2]}, 13, True),
    "ceil_mode_pads": (
        "AveragePool",
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
        13,
        False,
    ),
    "auto_pad": ("AveragePool", {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER"}, 13, False),
    # opset 19+: onnxruntime's AveragePoolV19 loop, not MLAS (was summed in MLAS's order: off
    # by an ulp; now AVERAGE_POOL_2D within rounding)
    "opset19_pads": ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 19, False),
    "opset21_include": (
        "AveragePool",
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        21,
        False,
    ),
    "opset19_dilations": ("AveragePool", {"kernel_shape": [2, 2], "dilations": [2, 2]}, 19, False),
}


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pool_forms_against_onnxruntime(tmp_path, case):
    op, attrs, opset, exact = POOL_CASES[case]
    shape = (1, 8, 11, 9)
    qmodel = quantize_dynamic_int8(_pool_model(op, attrs, shape, opset), tmp_path)
    res = convert(qmodel)
    x = (np.random.default_rng(len(case)).standard_normal(shape) * 3 + 0.5).astype(F)
    _assert_pool_matches(qmodel, x, res, exact)


@pytest.mark.parametrize("hw", [(8, 8), (13, 5), (9, 8)])
def test_global_pool_at_the_group_cap_read_twice(tmp_path, hw):
    """64 and 65 values (16 groups: the ordered sum), 72 (18 groups: MEAN); the pool is a
    graph output and read by a Relu too."""
    shape = (2, 16, *hw)
    model = _pool_model("GlobalAveragePool", {}, shape, 13, extra_reader=True)
    qmodel = quantize_dynamic_int8(model, tmp_path)
    res = convert(qmodel)
    ordered = hw[0] * hw[1] // 4 <= 16
    assert ("MEAN" in op_histogram(res.tflite_bytes)) is not ordered
    x = (np.random.default_rng(hw[0]).standard_normal(shape) * 3 + 0.5).astype(F)
    _assert_pool_matches(qmodel, x, res, exact=ordered)


def test_global_pool_infinities_and_nan_on_xnnpack(tmp_path):
    """NaN and +-inf in the pooled values: the same bits as onnxruntime on XNNPACK (the builtin
    ADD clamps to +-FLT_MAX: mlas_pool's docstring)."""
    shape = (1, 16, 7, 7)
    qmodel = quantize_dynamic_int8(_pool_model("GlobalAveragePool", {}, shape, 13), tmp_path)
    res = convert(qmodel)
    x = (np.random.default_rng(9).standard_normal(shape) * 3 + 0.5).astype(F)
    x[0, 0, 0, 0] = np.nan
    x[0, 1, 2, 2] = np.inf
    x[0, 2, 3, 3], x[0, 2, 3, 4] = -np.inf, np.inf
    got = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"], use_xnnpack=True)["g"]
    ref = onnxruntime_semantics(qmodel, {"x": x})["g"]
    assert np.isnan(got[0, 0]) and np.isinf(got[0, 1]) and np.isnan(got[0, 2])
    if X86:
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("opset", [19, 21])
def test_opset19_average_pool_is_not_summed_in_mlas_order(tmp_path, opset):
    """onnxruntime runs AveragePool-19+ in AveragePoolV19 (row by row), not MLAS: MLAS's order
    is off by an ulp there (so the rewrite, which claimed onnxruntime's bits, must not apply;
    it did before the fix and the pooled values were off onnxruntime's)."""
    attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    shape = (1, 8, 11, 9)
    qmodel = quantize_dynamic_int8(_pool_model("AveragePool", attrs, shape, opset), tmp_path)
    x = (np.random.default_rng(opset).standard_normal(shape) * 3 + 0.5).astype(F)
    ref = onnxruntime_semantics(qmodel, {"x": x})["g"]
    mlas = mlas_window_mean(x, [3, 3], [1, 1], [1, 1, 1, 1], False)
    assert not np.array_equal(ref, mlas)  # (the order the rewrite writes out)
    res = convert(qmodel)
    assert "AVERAGE_POOL_2D" in op_histogram(res.tflite_bytes)
    _assert_pool_matches(qmodel, x, res, exact=False)


def test_dynamic_batch_pool(tmp_path):
    """A batch left symbolic: the rewrite needs static shapes and leaves the pool to LiteRT."""
    model = _pool_model(
        "AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, (1, 8, 11, 9), 13
    )
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[0].dim_param = "N"
    qmodel = quantize_dynamic_int8(model, tmp_path)
    res = convert(qmodel)
    x = (np.random.default_rng(4).standard_normal((1, 8, 11, 9)) * 3 + 0.5).astype(F)
    _assert_pool_matches(qmodel, x, res, exact=False)
