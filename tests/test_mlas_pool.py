"""GlobalAveragePool in a dynamically quantized graph sums in onnxruntime's order
(``onnx2tflite_direct/mlas_pool.py``): one ulp of the pooled value can move the scale of the
DynamicQuantizeLinear after it, and then every product after it.

Checked bit for bit against the order written out in numpy (four sequential float32 lanes,
``(l0 + l2) + (l1 + l3)``, the remaining values one by one, a division: every step one
correctly rounded IEEE operation, the same on any CPU), and against onnxruntime itself on
x86-64, where its MLAS kernel adds the lanes in that order (ARM64's NEON reduction pairs them
``(l0 + l1) + (l2 + l3)``).
"""

from __future__ import annotations

import platform

import numpy as np
import onnx
import pytest
from harness import convert, make_model
from onnx import TensorProto, helper
from test_dynamic_range_kept import onnxruntime_semantics, quantize_dynamic_int8

from onnx2tflite_direct import mlas_pool
from onnx2tflite_direct import validate as V

ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")

F = np.float32
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def mlas_order_mean(x: np.ndarray) -> np.ndarray:
    """[N, C, H, W] -> [N, C]: MLAS's global average (x86 lane reduction), in float32."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w).astype(F)
    body = h * w // 4 * 4
    lanes = np.zeros((n, c, 4), F)
    for i in range(0, body, 4):
        lanes = (lanes + flat[:, :, i : i + 4]).astype(F)
    total = ((lanes[..., 0] + lanes[..., 2]).astype(F) + (lanes[..., 1] + lanes[..., 3])).astype(F)
    for i in range(body, h * w):
        total = (total + flat[:, :, i]).astype(F)
    return (total / F(h * w)).astype(F)


def _pooled_classifier(c: int, h: int, w: int, rng) -> onnx.ModelProto:
    """x -> GlobalAveragePool (g, also an output) -> Flatten -> MatMul: quantize_dynamic puts
    a DynamicQuantizeLinear on the pooled values."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "w"], ["y"], name="fc"),
    ]
    return make_model(
        nodes,
        [("x", TensorProto.FLOAT, [2, c, h, w])],
        [("g", TensorProto.FLOAT, [2, c, 1, 1]), ("y", TensorProto.FLOAT, [2, 40])],
        {"w": (rng.standard_normal((c, 40)) * 0.1).astype(F)},
        opset=13,
    )


@pytest.mark.parametrize("hw", [(7, 7), (8, 8), (3, 5), (1, 3), (9, 7)])
def test_global_average_pool_sums_in_onnxruntime_order(tmp_path, hw):
    rng = np.random.default_rng(hw[0] * 31 + hw[1])
    c = 96
    qmodel = quantize_dynamic_int8(_pooled_classifier(c, *hw, rng), tmp_path)
    assert "DynamicQuantizeLinear" in {n.op_type for n in qmodel.graph.node}
    res = convert(qmodel)
    for kind, data in (
        ("float32", res.tflite_bytes),
        ("dynamic", res.variants["dynamic_range_quant"]),
    ):
        for use_xnnpack in (True, False):
            x = (rng.standard_normal((2, c, *hw)) * 3 + 0.5).astype(F)
            got = V.run_litert(data, {"x": x}, res.report["io"], use_xnnpack=use_xnnpack)
            want = mlas_order_mean(x)
            np.testing.assert_array_equal(got["g"].reshape(2, c), want, err_msg=kind)
            if X86:  # onnxruntime's own numbers, the classifier after them included
                ref = onnxruntime_semantics(qmodel, {"x": x})
                np.testing.assert_array_equal(got["g"], ref["g"], err_msg=kind)
                np.testing.assert_array_equal(got["y"], ref["y"], err_msg=kind)


def test_order_matters(tmp_path, monkeypatch):
    """LiteRT's MEAN (the rewrite off) sums otherwise: not bit-identical to that order on
    these values (so the test above can fail)."""
    rng = np.random.default_rng(5)
    qmodel = quantize_dynamic_int8(_pooled_classifier(256, 7, 7, rng), tmp_path)
    monkeypatch.setattr(mlas_pool, "ENABLED", False)
    res = convert(qmodel)
    x = (rng.standard_normal((2, 256, 7, 7)) * 3 + 0.5).astype(F)
    got = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"])
    assert not np.array_equal(got["g"].reshape(2, 256), mlas_order_mean(x))


def test_large_global_pools_keep_mean(tmp_path):
    """Past MAX_GROUPS groups of four the sequential sum would need CUMSUM, outside XNNPACK
    (a partition per pool): MEAN stays, within its float32 rounding of onnxruntime."""
    from harness import op_histogram

    rng = np.random.default_rng(8)
    qmodel = quantize_dynamic_int8(_pooled_classifier(32, 13, 13, rng), tmp_path)
    res = convert(qmodel)
    ops = op_histogram(res.tflite_bytes)
    assert ops.get("MEAN") == 1 and "CUMSUM" not in ops
    x = (rng.standard_normal((2, 32, 13, 13)) * 3 + 0.5).astype(F)
    got = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"])["g"].reshape(2, 32)
    want = mlas_order_mean(x)
    bound = 169 * 2.0**-24 * float(np.max(np.abs(x)))  # any summation order of 169 values
    np.testing.assert_allclose(got, want, rtol=0, atol=bound)


def test_float_models_keep_mean(tmp_path):
    """Only graphs onnxruntime quantized dynamically pay for the ordered sum."""
    from harness import op_histogram

    model = _pooled_classifier(64, 7, 7, np.random.default_rng(6))
    ops = op_histogram(convert(model).tflite_bytes)
    assert ops.get("MEAN") == 1 and "CUMSUM" not in ops


def mlas_window_mean(x: np.ndarray, kernel, strides, pads, include_pad: bool) -> np.ndarray:
    """MLAS's vector average pool in float32: each window's columns summed down the valid
    rows, then those sums left to right over the zero-padded row, divided by the count."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, strides, pads
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    out = np.zeros((n, c, oh, ow), F)
    for ph in range(oh):
        top = ph * sh - pt
        rows = range(max(top, 0), min(top + kh, h))
        buffer = np.zeros((n, c, w + pl + pr), F)
        column = x[:, :, rows[0], :].astype(F)
        for r in rows[1:]:
            column = (column + x[:, :, r, :]).astype(F)
        buffer[:, :, pl : pl + w] = column
        for pw in range(ow):
            start = pw * sw
            total = buffer[:, :, start]
            for k in range(1, kw):
                total = (total + buffer[:, :, start + k]).astype(F)
            left = start - pl
            count = kh * kw if include_pad else len(rows) * (min(left + kw, w) - max(left, 0))
            out[:, :, ph, pw] = (total / F(count)).astype(F)
    return out


POOLS = {
    "3x3_pad1": ([3, 3], [1, 1], [1, 1, 1, 1], False),
    "3x3_pad1_include": ([3, 3], [1, 1], [1, 1, 1, 1], True),
    "7x7_end_pads": ([7, 7], [1, 1], [0, 0, 1, 1], False),
    "3x3_stride2": ([3, 3], [2, 2], [1, 1, 1, 1], False),
    "5x3_stride3x1": ([5, 3], [3, 1], [2, 1, 2, 1], False),
}


@pytest.mark.parametrize("case", sorted(POOLS))
def test_average_pool_sums_in_onnxruntime_order(tmp_path, case):
    kernel, strides, pads, include = POOLS[case]
    rng = np.random.default_rng(len(case))
    c, h, w = 24, 11, 9
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": pads}
    if include:
        attrs["count_include_pad"] = 1
    oh = (h + pads[0] + pads[2] - kernel[0]) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - kernel[1]) // strides[1] + 1
    nodes = [
        helper.make_node("AveragePool", ["x"], ["g"], name="pool", **attrs),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "w"], ["y"], name="fc"),
    ]
    model = make_model(
        nodes,
        [("x", TensorProto.FLOAT, [1, c, h, w])],
        [("g", TensorProto.FLOAT, [1, c, oh, ow]), ("y", TensorProto.FLOAT, [1, 16])],
        {"w": (rng.standard_normal((c * oh * ow, 16)) * 0.1).astype(F)},
        opset=13,
    )
    qmodel = quantize_dynamic_int8(model, tmp_path)
    res = convert(qmodel)
    for use_xnnpack in (True, False):
        x = (rng.standard_normal((1, c, h, w)) * 3 + 0.5).astype(F)
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"], use_xnnpack=use_xnnpack)
        want = mlas_window_mean(x, kernel, strides, pads, include)
        np.testing.assert_array_equal(got["g"], want)
        if X86:
            ref = onnxruntime_semantics(qmodel, {"x": x})
            np.testing.assert_array_equal(got["g"], ref["g"])
            np.testing.assert_array_equal(got["y"], ref["y"])
