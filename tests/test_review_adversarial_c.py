"""Adversarial review (c): cases against the exactness claims of ``mlas_pool.py``,
``quant/dynamic_range.py``, ``quant/equalize.py`` and ``tools/zoo/deploy.py``.

Each case converts a hand-made model, runs it in LiteRT and compares with onnxruntime on
seeded inputs; where a module claims onnxruntime's bits on x86-64 the comparison is bit for
bit there and within the claimed rounding elsewhere.
"""

from __future__ import annotations

import platform
import warnings

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
    with warnings.catch_warnings():  # (a padding-only window: the reference's empty mean)
        warnings.simplefilter("ignore", RuntimeWarning)
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
    # opset 19+: onnxruntime's AveragePoolV19 loop, not MLAS (was summed in MLAS's order: an
    # ulp off; now in AveragePoolV19's order, the same bits)
    "v19_pads": ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 19, True),
    "v21_include": (
        "AveragePool",
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        21,
        True,
    ),
    "v19_dilations": ("AveragePool", {"kernel_shape": [2, 2], "dilations": [2, 2]}, 19, True),
    "v19_dilations_pads_strides": (
        "AveragePool",
        {"kernel_shape": [3, 2], "dilations": [2, 3], "pads": [2, 1, 1, 1], "strides": [2, 1]},
        19,
        True,
    ),
    "v19_asymmetric_include": (  # (kh * kw: onnxruntime 1.32 as the spec)
        "AveragePool",
        {"kernel_shape": [3, 3], "pads": [0, 1, 2, 0], "count_include_pad": 1},
        19,
        True,
    ),
    "v19_include_dilations": (
        "AveragePool",
        {"kernel_shape": [2, 3], "dilations": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        19,
        True,
    ),
    "v19_stride_gt_kernel": ("AveragePool", {"kernel_shape": [2, 2], "strides": [3, 3]}, 19, True),
    "v19_ceil_mode": (
        "AveragePool",
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
        19,
        True,
    ),
    "v19_ceil_mode_include_dilations": (
        "AveragePool",
        {
            "kernel_shape": [3, 2],
            "strides": [3, 2],
            "dilations": [2, 3],
            "pads": [1, 1, 0, 1],
            "ceil_mode": 1,
            "count_include_pad": 1,
        },
        19,
        True,
    ),  # fmt: skip
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
    """onnxruntime runs AveragePool-19+ in AveragePoolV19 (taps one by one), not MLAS: MLAS's
    order is an ulp off there (the rewrite wrote it out before the fix); the file now sums the
    taps in AveragePoolV19's order, onnxruntime's bits on any CPU (no vector reduction)."""
    attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    shape = (1, 8, 11, 9)
    qmodel = quantize_dynamic_int8(_pool_model("AveragePool", attrs, shape, opset), tmp_path)
    x = (np.random.default_rng(opset).standard_normal(shape) * 3 + 0.5).astype(F)
    ref = onnxruntime_semantics(qmodel, {"x": x})["g"]
    mlas = mlas_window_mean(x, [3, 3], [1, 1], [1, 1, 1, 1], False)
    assert not np.array_equal(ref, mlas)  # (the order the rewrite wrote out)
    res = convert(qmodel)
    assert "AVERAGE_POOL_2D" not in op_histogram(res.tflite_bytes)
    for use_xnnpack in (True, False):
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"], use_xnnpack=use_xnnpack)
        np.testing.assert_array_equal(got["g"], ref)
        np.testing.assert_array_equal(got["y"], onnxruntime_semantics(qmodel, {"x": x})["y"])


@pytest.mark.parametrize(
    ("attrs", "shape"),
    [
        ({"kernel_shape": [7, 7]}, (2, 16, 7, 7)),  # the whole input, 49 taps
        ({"kernel_shape": [2, 2], "dilations": [4, 4], "pads": [1, 1, 1, 1]}, (1, 8, 3, 3)),
    ],
    ids=["whole_input", "padding_only_window"],
)
def test_v21_whole_input_and_padding_only_windows(tmp_path, attrs, shape):
    """AveragePool-21 over the whole input (AveragePoolV19, not MLAS's global kernel) and a
    dilated window whose taps all fall on padding (onnxruntime writes 0): the same bits."""
    model = _pool_model("AveragePool", attrs, shape, 21)
    qmodel = quantize_dynamic_int8(model, tmp_path)
    res = convert(qmodel)
    assert "AVERAGE_POOL_2D" not in op_histogram(res.tflite_bytes)
    x = (np.random.default_rng(shape[2]).standard_normal(shape) * 3 + 0.5).astype(F)
    _assert_pool_matches(qmodel, x, res, exact=True)


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


# ----------------------------------------------------------------------------------------------
# 2. The dynamic-range file of an already dynamically quantized model (lattice_products)
# ----------------------------------------------------------------------------------------------


def _quantize_dynamic(model, tmp_path, **kw):
    import onnx
    from onnxruntime import quantization

    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, str(src))
    quantization.quantize_dynamic(str(src), str(dst), **kw)
    return onnx.load(str(dst))


def _assert_files_exact(qmodel, feeds_list, quantize=None, allow_ulp=()):
    """Both the float32 and the dynamic-range file give onnxruntime's bits (outputs named in
    ``allow_ulp``: a float op the model left float, within a few float32 ulps), XNNPACK on
    and off."""
    res = convert(qmodel, quantize=quantize) if quantize else convert(qmodel)
    assert "dynamic_range_quant" in res.variants
    for data in (res.tflite_bytes, res.variants["dynamic_range_quant"]):
        for use_xnnpack, feeds in zip((True, False), feeds_list, strict=True):
            ref = onnxruntime_semantics(qmodel, feeds)
            got = V.run_litert(data, feeds, res.report["io"], use_xnnpack=use_xnnpack)
            for name, want in ref.items():
                if name in allow_ulp:
                    tol = 8 * np.spacing(np.abs(want).max())
                    np.testing.assert_allclose(got[name], want, rtol=0, atol=tol, err_msg=name)
                else:
                    np.testing.assert_array_equal(got[name], want, err_msg=name)
    return res


def _w(rng, *shape, scale=0.05):
    return (rng.standard_normal(shape) * scale).astype(F)


def test_weight_shared_with_an_excluded_float_matmul(tmp_path):
    """fc1 quantized, fc2 (same weight) left float by nodes_to_exclude: fc1's product keeps
    the model's quantization, fc2 reads the model's DequantizeLinear of the shared codes."""
    from onnxruntime import quantization

    rng = np.random.default_rng(11)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y1"], name="fc1"),
        helper.make_node("MatMul", ["x2", "w"], ["y2"], name="fc2"),
    ]
    model = make_model(
        nodes,
        [("x", TensorProto.FLOAT, [4, 256]), ("x2", TensorProto.FLOAT, [4, 256])],
        [("y1", TensorProto.FLOAT, [4, 128]), ("y2", TensorProto.FLOAT, [4, 128])],
        {"w": _w(rng, 256, 128)},
        opset=13,
    )
    qmodel = _quantize_dynamic(
        model, tmp_path, weight_type=quantization.QuantType.QInt8, nodes_to_exclude=["fc2"]
    )
    feeds = [{k: rng.standard_normal((4, 256)).astype(F) for k in ("x", "x2")} for _ in range(2)]
    _assert_files_exact(qmodel, feeds, allow_ulp=("y2",))


DYNAMIC_CASES = {
    # name: (op attrs, input shape, weight shape, quantize_dynamic keywords)
    "per_channel_matmul": (None, (4, 256), (256, 128), {"per_channel": True}),
    "per_channel_conv": ({}, (1, 16, 10, 10), (32, 16, 3, 3), {"per_channel": True}),
    "group4_conv": ({"group": 4}, (1, 32, 10, 10), (64, 8, 3, 3), {}),
    "depthwise_conv": ({"group": 32}, (1, 32, 10, 10), (64, 1, 3, 3), {}),
    "uint8_matmul": (None, (4, 256), (256, 128), {"weight_type": "QUInt8"}),
    "uint8_conv": ({}, (1, 16, 10, 10), (32, 16, 3, 3), {"weight_type": "QUInt8"}),
}


@pytest.mark.parametrize("case", sorted(DYNAMIC_CASES))
def test_quantize_dynamic_forms_exact(tmp_path, case):
    from onnxruntime import quantization

    attrs, xshape, wshape, kw = DYNAMIC_CASES[case]
    rng = np.random.default_rng(len(case))
    spread = np.linspace(0.2, 3.0, wshape[-1 if attrs is None else 0]).astype(F)
    if attrs is None:
        w = _w(rng, *wshape) * spread + 0.01
        node = helper.make_node("MatMul", ["x", "w"], ["y"], name="p")
        yshape = [xshape[0], wshape[1]]
        inits = {"w": w}
    else:
        w = _w(rng, *wshape, scale=0.2) * spread[:, None, None, None] + 0.01
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="p", pads=[1] * 4, **attrs)
        yshape = [1, wshape[0], *xshape[2:]]
        inits = {"w": w, "b": _w(rng, wshape[0])}
    model = make_model(
        [node], [("x", TensorProto.FLOAT, list(xshape))], [("y", TensorProto.FLOAT, yshape)],
        inits, opset=13,
    )  # fmt: skip
    kw = dict(kw)
    kw["weight_type"] = getattr(quantization.QuantType, kw.get("weight_type", "QInt8"))
    qmodel = _quantize_dynamic(model, tmp_path, **kw)
    assert {"MatMulInteger", "ConvInteger"} & {n.op_type for n in qmodel.graph.node}
    feeds = [{"x": rng.standard_normal(xshape).astype(F)} for _ in range(2)]
    _assert_files_exact(qmodel, feeds)


def test_matmul_integer_of_two_runtime_operands(tmp_path):
    """DynamicQuantizeLinear on both operands of one MatMulInteger (no weight): the
    ``--quantize dynamic`` file has nothing to quantize and stays exact."""
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["a"], ["aq", "as", "az"]),
        helper.make_node("DynamicQuantizeLinear", ["b"], ["bq", "bs", "bz"]),
        helper.make_node("MatMulInteger", ["aq", "bq", "az", "bz"], ["p"]),
        helper.make_node("Cast", ["p"], ["pf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["as", "bs"], ["s"]),
        helper.make_node("Mul", ["pf", "s"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("a", TensorProto.FLOAT, [2, 4, 64]), ("b", TensorProto.FLOAT, [2, 64, 48])],
        [("y", TensorProto.FLOAT, [2, 4, 48])],
        {},
        opset=13,
    )
    rng = np.random.default_rng(2)
    feeds = [
        {
            "a": rng.standard_normal((2, 4, 64)).astype(F),
            "b": rng.standard_normal((2, 64, 48)).astype(F),
        }
        for _ in range(2)
    ]
    _assert_files_exact(model, feeds, quantize=["dynamic"])


def _body(tag, w):
    from onnx import numpy_helper

    nodes = [
        helper.make_node("MatMul", ["x", f"w_{tag}"], [f"m_{tag}"], name=f"fc_{tag}"),
        helper.make_node("Relu", [f"m_{tag}"], [f"o_{tag}"], name=f"relu_{tag}"),
    ]
    out = [helper.make_tensor_value_info(f"o_{tag}", TensorProto.FLOAT, [4, 128])]
    return helper.make_graph(nodes, tag, [], out, [numpy_helper.from_array(w, f"w_{tag}")])


def test_quantize_dynamic_in_if_and_loop_bodies(tmp_path):
    """quantize_dynamic with EnableSubgraph: MatMulInteger chains inside If branches and a
    Loop body (with float Relu between iterations): both files exact."""
    from onnx import numpy_helper
    from onnxruntime import quantization

    rng = np.random.default_rng(5)
    if_node = helper.make_node(
        "If", ["c"], ["y"], then_branch=_body("then", _w(rng, 256, 128)),
        else_branch=_body("else", _w(rng, 256, 128)),
    )  # fmt: skip
    graph = helper.make_graph(
        [if_node],
        "main",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 256]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 128])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    opts = {"weight_type": quantization.QuantType.QInt8, "extra_options": {"EnableSubgraph": True}}
    qmodel = _quantize_dynamic(model, tmp_path, **opts)
    branch = {n.op_type for n in qmodel.graph.node[0].attribute[0].g.node}
    assert "MatMulInteger" in branch
    feeds = [
        {"x": rng.standard_normal((4, 256)).astype(F), "c": np.array(flag)}
        for flag in (True, False)
    ]
    _assert_files_exact(qmodel, feeds, quantize=["dynamic"])

    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["h", "wl"], ["m"], name="fc_loop"),
            helper.make_node("Relu", ["m"], ["h2"], name="relu_loop"),
            helper.make_node("Identity", ["cond"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [4, 128]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h2", TensorProto.FLOAT, [4, 128]),
        ],
        [numpy_helper.from_array(_w(rng, 128, 128, scale=0.15), "wl")],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["n", "", "x"], ["y"], body=body)],
        "main",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 128])],
        [numpy_helper.from_array(np.array(3, np.int64), "n")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    qmodel = _quantize_dynamic(model, tmp_path, **opts)
    assert "MatMulInteger" in {n.op_type for n in qmodel.graph.node[0].attribute[0].g.node}
    feeds = [{"x": rng.standard_normal((4, 128)).astype(F)} for _ in range(2)]
    _assert_files_exact(qmodel, feeds, quantize=["dynamic"])


# ----------------------------------------------------------------------------------------------
# 4. tools/zoo/deploy.py: "statically quantized" read from the graph
# ----------------------------------------------------------------------------------------------


def _deploy():
    import importlib
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("tools.zoo.deploy")


def _scale_zp(dtype=np.uint8):
    return {"s": np.array(0.02, F), "z": np.array(0, dtype)}


def test_weight_only_qdq_and_dynamic_are_not_static():
    deploy = _deploy()
    rng = np.random.default_rng(0)
    wq = rng.integers(-127, 128, (8, 8, 3, 3)).astype(np.int8)
    nodes = [  # a float weight through Q -> DQ, and an int8 weight through DQ only
        helper.make_node("QuantizeLinear", ["wf", "s", "zi"], ["wfq"]),
        helper.make_node("DequantizeLinear", ["wfq", "s", "zi"], ["w1"]),
        helper.make_node("DequantizeLinear", ["wq", "s", "zi"], ["w2"]),
        helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1] * 4),
        helper.make_node("Conv", ["c", "w2"], ["y"], pads=[1] * 4),
    ]
    inits = {
        "wf": _w(rng, 8, 8, 3, 3),
        "wq": wq,
        "s": np.array(0.02, F),
        "zi": np.array(0, np.int8),
    }
    model = make_model(
        nodes, [("x", TensorProto.FLOAT, [1, 8, 6, 6])], [("y", TensorProto.FLOAT, [1, 8, 6, 6])],
        inits, opset=13,
    )  # fmt: skip
    assert deploy.static_quantization(model) is None
    # hand-written dynamic quantization: a QuantizeLinear whose scale is computed at run time
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0),
        helper.make_node("Div", ["mx", "k"], ["sc"]),
        helper.make_node("QuantizeLinear", ["x", "sc", "z"], ["xq"]),
        helper.make_node("MatMulInteger", ["xq", "wu", "z"], ["p"]),
        helper.make_node("Cast", ["p"], ["y"], to=TensorProto.FLOAT),
    ]
    inits = {"k": np.array(127.0, F), "z": np.array(0, np.uint8)}
    inits["wu"] = rng.integers(0, 255, (8, 4)).astype(np.uint8)
    model = make_model(
        nodes, [("x", TensorProto.FLOAT, [2, 8])], [("y", TensorProto.FLOAT, [2, 4])], inits,
        opset=13,
    )  # fmt: skip
    assert deploy.static_quantization(model) is None
    # the same as a Q -> DQ pair (was: "1 ... pairs on activations", a static model)
    nodes[3] = helper.make_node("DequantizeLinear", ["xq", "sc", "z"], ["xd"])
    nodes[4] = helper.make_node("MatMul", ["xd", "wf"], ["y"])
    inits = {"k": np.array(127.0, F), "z": np.array(0, np.uint8), "wf": _w(rng, 8, 4)}
    model = make_model(
        nodes, [("x", TensorProto.FLOAT, [2, 8])], [("y", TensorProto.FLOAT, [2, 4])], inits,
        opset=13,
    )  # fmt: skip
    assert deploy.static_quantization(model) is None


def test_qlinear_conv_without_pairs_is_static():
    deploy = _deploy()
    rng = np.random.default_rng(1)
    inits = {
        "xs": np.array(0.05, F), "xz": np.array(128, np.uint8),
        "w": rng.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8),
        "ws": np.array(0.01, F), "wz": np.array(0, np.int8),
        "ys": np.array(0.1, F), "yz": np.array(128, np.uint8),
    }  # fmt: skip
    node = helper.make_node(
        "QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], pads=[1] * 4
    )
    model = make_model(
        [node], [("x", TensorProto.UINT8, [1, 4, 6, 6])], [("y", TensorProto.UINT8, [1, 8, 6, 6])],
        inits, opset=13,
    )  # fmt: skip
    assert deploy.static_quantization(model) == "QLinear ops: QLinearConv 1"


def test_qoperator_qgemm_model_is_static(tmp_path):
    """onnxruntime's quantize_static in QOperator format writes com.microsoft QGemm for Gemm:
    no QLinear* op and no Q -> DQ pair on an activation (the pair is split by the QGemms), yet
    every activation runs with fixed calibrated scales (was: not static, headline float32)."""
    import onnx
    from onnxruntime import quantization as Q

    deploy = _deploy()
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1, name="g1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1, name="g2"),
    ]
    inits = {
        "w": _w(rng, 32, 64, scale=0.1),
        "b": _w(rng, 32),
        "w2": _w(rng, 16, 32),
        "b2": _w(rng, 16),
    }
    model = make_model(
        nodes, [("x", TensorProto.FLOAT, [4, 64])], [("y", TensorProto.FLOAT, [4, 16])], inits,
        opset=13,
    )  # fmt: skip

    class Reader(Q.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": rng.standard_normal((4, 64)).astype(F)} for _ in range(4)])

        def get_next(self):
            return next(self.it, None)

    onnx.save(model, str(tmp_path / "f.onnx"))
    Q.quantize_static(
        str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), Reader(),
        quant_format=Q.QuantFormat.QOperator,
    )  # fmt: skip
    qmodel = onnx.load(str(tmp_path / "q.onnx"))
    assert "QGemm" in {n.op_type for n in qmodel.graph.node}
    assert (
        deploy.static_quantization(qmodel) == "1 QuantizeLinear of activations read by integer ops"
    )


def test_lone_qdq_pair_at_the_output(tmp_path):
    """A float conv with one Q -> DQ pair on its output: static (one activation pair), and the
    integer file it gets is onnxruntime's bits, so a headline on it is sound."""
    deploy = _deploy()
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1] * 4),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["y"]),
    ]
    inits = {"w": _w(rng, 16, 8, 3, 3, scale=0.2), "b": _w(rng, 16, scale=0.1), **_scale_zp()}
    model = make_model(
        nodes, [("x", TensorProto.FLOAT, [1, 8, 12, 12])], [("y", TensorProto.FLOAT, [1, 16, 12, 12])],
        inits, opset=13,
    )  # fmt: skip
    assert (
        deploy.static_quantization(model)
        == "1 QuantizeLinear -> DequantizeLinear pairs on activations"
    )
    res = convert(model)
    x = rng.standard_normal((1, 8, 12, 12)).astype(F)
    ref = onnxruntime_semantics(model, {"x": x})["y"]
    for data in (res.tflite_bytes, res.variants["integer_quant"]):
        got = V.run_litert(data, {"x": x}, res.report["io"])["y"]
        np.testing.assert_array_equal(got, ref)


# ----------------------------------------------------------------------------------------------
# 3. quant/equalize.py: which pairs, and the float function kept
# ----------------------------------------------------------------------------------------------


def _eq_model(kind: str):
    """x[1,4,12,12] -> conv1 (4->16; channel 3 all zero, channels 4-5 negative only when
    ``kind`` has no activation) -> ... ``kind`` picks what reads conv1's output."""
    import onnx
    from onnx import numpy_helper

    rng = np.random.default_rng(7)
    gains = np.exp(rng.uniform(np.log(0.05), np.log(2.0), 16)).astype(F)
    w1 = _w(rng, 16, 4, 3, 3, scale=0.3) * gains[:, None, None, None]
    b1 = _w(rng, 16, scale=0.1)
    w1[3], b1[3] = 0.0, 0.0  # an all-zero channel
    w1[4:6] *= 0.01
    b1[4:6] = (-1.5, -0.2)  # negative-only channels (no activation)
    inits = {
        "w1": w1, "b1": b1,
        "wd": _w(rng, 16, 1, 3, 3, scale=0.4), "bd": _w(rng, 16, scale=0.1),
        "wp": _w(rng, 8, 16, 1, 1, scale=0.25), "bp": _w(rng, 8, scale=0.1),
        "wo": _w(rng, 16, 4, 1, 1, scale=0.3),
    }  # fmt: skip
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4, name="conv1")]
    a1 = "c1"
    if kind != "dw_pw_none":
        nodes.append(helper.make_node("Relu", ["c1"], ["r1"], name="relu1"))
        a1 = "r1"
    outs = [("y", [1, 8, 12, 12])]
    dw_in = a1
    if kind == "residual":
        nodes.append(helper.make_node("Conv", ["x", "wo"], ["o"], name="other"))
        nodes.append(helper.make_node("Add", [a1, "o"], ["s"], name="add"))
        dw_in = "s"
    elif kind == "concat":
        nodes.append(helper.make_node("Conv", ["x", "wo"], ["o"], name="other"))
        nodes.append(helper.make_node("Concat", [a1, "o"], ["s"], axis=1, name="cat"))
        nodes.append(helper.make_node("Conv", ["s", "wp2"], ["s2"], name="squeeze"))
        inits["wp2"] = _w(rng, 16, 32, 1, 1, scale=0.2)
        dw_in = "s2"
    elif kind == "graph_output":
        outs.append((a1, [1, 16, 12, 12]))
    nodes += [
        helper.make_node("Conv", [dw_in, "wd", "bd"], ["c2"], pads=[1] * 4, group=16, name="dw"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
    ]
    pw_in = "r2"
    if kind == "two_readers":
        nodes.append(helper.make_node("Add", ["r2", a1], ["t"], name="add2"))
        pw_in = "t"
    nodes.append(helper.make_node("Conv", [pw_in, "wp", "bp"], ["y"], name="pw"))
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 12, 12])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outs],
        [numpy_helper.from_array(np.asarray(v, F), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


EQ_PAIRS = {  # which producers pair (the conv1 output has to have its one reader)
    "dw_pw_none": ["conv1", "dw"],
    "dw_pw_relu": ["conv1", "dw"],
    "two_readers": [],
    "residual": ["dw"],
    "concat": ["dw", "squeeze"],  # (the 1x1 after the concat pairs with dw)
    "graph_output": ["dw"],
}


@pytest.mark.parametrize("kind", sorted(EQ_PAIRS))
def test_equalization_pairs_and_float_function(kind):
    import copy

    from onnx2tflite_direct import builder, litert_tensors, pipeline
    from onnx2tflite_direct.quant import equalize as EQ

    def build(ir) -> bytes:
        return builder.serialize(ir).tobytes()

    def outputs(data: bytes, x: np.ndarray) -> list[np.ndarray]:
        interp = litert_tensors.run_keeping_all_tensors(data, {"x": x.transpose(0, 2, 3, 1)}, [])
        return [np.asarray(interp.get_tensor(o["index"]), np.float64)
                for o in interp.get_output_details()]  # fmt: skip

    ir = copy.deepcopy(pipeline.lower_model(_eq_model(kind)).model_ir)
    pairs = EQ.pairs(ir)
    assert sorted((p.onnx_node or "").split("/")[0] for p, _, _ in pairs) == EQ_PAIRS[kind]
    if not pairs:
        return
    rng = np.random.default_rng(8)
    xs = rng.standard_normal((6, 1, 4, 12, 12)).astype(F)
    plain = build(ir)
    names = {chain[0].name for _, chain, _ in pairs}
    feeds = [{"x": x.transpose(0, 2, 3, 1)} for x in xs]
    extremes = EQ.channel_extremes(plain, feeds, [], names)
    ranges = {n: (float(e[0].min()), float(e[1].max())) for n, e in extremes.items()}
    done, _ = EQ.equalize(ir, ranges, extremes)
    assert len(done) == len(pairs)
    equalized = build(ir)
    # on the samples the extremes come from and (no ReLU6 here: nothing clips) far outside
    for x in (*xs, xs[0] * 20):
        for want, got in zip(outputs(plain, x), outputs(equalized, x), strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_auto_never_changes_the_float32_file():
    """``--quantize auto`` with equalization used: the float32 file is byte for byte the one
    written without ``--quantize``."""
    import math

    from test_quant_auto import auto_section
    from test_quant_equalize import images, spread_cnn

    model = spread_cnn()
    calib = {"x": images(16, seed=1)}
    res = convert(model, quantize=["auto"], target_sqnr=60.0, calibration_data=calib)
    assert auto_section(res)["auto"]["equalization"]["used"]
    assert res.tflite_bytes == convert(model).tflite_bytes
    assert math.isfinite(auto_section(res)["auto"]["equalization"]["all_int8_sensitivity_sqnr_db"])


def test_auto_range_choice_with_an_explicit_method():
    """``percentile`` given: kept as given. ``minmax`` given is the default's value and is
    measured against ``mse`` as the default is (docs/quantization_auto.md says so now; it said
    every given method was kept)."""
    from test_quant_auto import auto_section
    from test_quant_equalize import images, spread_cnn

    model = spread_cnn()
    calib = {"x": images(16, seed=1)}
    kw = {"quantize": ["auto"], "target_sqnr": 60.0, "calibration_data": calib}
    got = auto_section(convert(model, calibration_method="percentile", **kw))["auto"]
    assert got["activation_ranges"] == {"method": "percentile", "chosen_by": "--calibration-method"}
    got = auto_section(convert(model, calibration_method="minmax", **kw))["auto"]
    r = got["activation_ranges"]
    assert r["chosen_by"] == "measurement"
    figures = {m: r[f"{m}_all_int8_sensitivity_sqnr_db"] for m in ("minmax", "mse")}
    assert r["method"] == max(figures, key=figures.get)


@pytest.mark.parametrize("case", ["conv1d_dilated", "conv2d_asymmetric_dilated_uint8"])
def test_conv_integer_strides_dilations_pads(tmp_path, case):
    from onnxruntime import quantization

    rng = np.random.default_rng(13)
    if case == "conv1d_dilated":
        attrs = {"pads": [2, 2], "dilations": [2], "strides": [2]}
        xshape, wshape, yshape, wt = (1, 16, 40), (32, 16, 3), [1, 32, 20], "QInt8"
    else:
        attrs = {"pads": [0, 1, 2, 1], "dilations": [1, 2], "strides": [2, 1]}
        xshape, wshape, yshape, wt = (1, 16, 11, 13), (32, 16, 3, 3), [1, 32, 6, 11], "QUInt8"
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", **attrs)
    model = make_model(
        [node], [("x", TensorProto.FLOAT, list(xshape))], [("y", TensorProto.FLOAT, yshape)],
        {"w": _w(rng, *wshape, scale=0.2)}, opset=13,
    )  # fmt: skip
    qmodel = _quantize_dynamic(model, tmp_path, weight_type=getattr(quantization.QuantType, wt))
    assert "ConvInteger" in {n.op_type for n in qmodel.graph.node}
    feeds = [{"x": rng.standard_normal(xshape).astype(F)} for _ in range(2)]
    _assert_files_exact(qmodel, feeds)
