"""The GPU verdict: the ported delegate rules (``gpu_rules``) on cases where they are
unambiguous, the verdict text, the report's ``gpu`` section and what ``--check-gpu`` prints.

Each case is one operator that clearly passes or fails one rule of LiteRT's
``delegates/gpu/common/model_builder.cc`` / ``tools/versioning/gpu_compatibility.cc``; the
converted files are also checked against onnxruntime (a verdict on a wrong model is worth
nothing)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import _opcodes, check_conversion, make_model
from onnx import helper

from onnx2tflite_direct import cli, gpu_check, gpu_rules, tfl


def _gpu(model, **options) -> dict:
    return check_conversion(model, **options).report["gpu"]


def _single(op_type, in_shape, out_shape, dtype=np.float32, out_dtype=None, **attrs):
    return make_model(
        [helper.make_node(op_type, ["x"], ["y"], **attrs)],
        inputs=[("x", dtype, in_shape)],
        outputs=[("y", out_dtype or dtype, out_shape)],
    )


# ---- through convert(): one op, one rule ------------------------------------------------------


def test_4d_relu_is_delegable_5d_is_not():
    """model_builder.cc IsAllAllowedTensors: a tensor of rank >= 5 is refused."""
    ok = _gpu(_single("Relu", (1, 2, 3, 4), (1, 2, 3, 4)))
    assert ok["verdict"] == "fully delegable" and ok["fully_delegable"] and ok["fall_back"] == []
    bad = _gpu(_single("Relu", (1, 2, 2, 3, 2), (1, 2, 2, 3, 2)))
    assert bad["verdict"] == "1 op falls back" and not bad["fully_delegable"]
    (entry,) = bad["fall_back"]
    assert entry["op"] == "RELU" and entry["rules"] == ["rank_above_4"]
    assert entry["op_index"] == 0 and entry["subgraph"] == 0 and entry["onnx_node"]


def test_op_without_gpu_parser():
    """No parser for the builtin (NewOperationParser has no CEIL case)."""
    (entry,) = _gpu(_single("Ceil", (2, 5), (2, 5)))["fall_back"]
    assert entry["op"] == "CEIL" and entry["rules"] == ["no_gpu_kernel"]


def test_version_above_the_parsers_cap():
    """TRANSPOSE_CONV with a fused activation is written at v4; its parser's cap is 3."""
    w = np.random.default_rng(0).standard_normal((3, 2, 3, 3)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("ConvTranspose", ["x", "w"], ["c"], strides=[2, 2]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        inputs=[("x", np.float32, (1, 3, 5, 5))],
        outputs=[("y", np.float32, (1, 2, 11, 11))],
        initializers={"w": w},
    )
    chk = check_conversion(model)
    gpu = chk.report["gpu"]
    assert chk.versions["TRANSPOSE_CONV"] == 4 > gpu_rules.OPS["TRANSPOSE_CONV"].max_version
    assert [(f["op"], f["version"], f["rules"]) for f in gpu["fall_back"]] == [
        ("TRANSPOSE_CONV", 4, ["version_above_gpu_cap"])
    ]
    assert gpu["by_op"]["TRANSPOSE_CONV"] == {"count": 1, "fall_back": 1}


def test_integer_runtime_tensors_fall_back():
    gpu = _gpu(_single("Neg", (2, 5), (2, 5), dtype=np.int32))
    assert [f["rules"] for f in gpu["fall_back"]] == [["non_float_tensor"]]


@pytest.mark.parametrize(
    "shape, delegable", [((2, 3, 8), True), ((1, 2, 3, 8), True), ((3, 8), False)]
)
def test_strided_slice_takes_3d_and_4d_only(shape, delegable):
    """gpu_compatibility.cc STRIDED_SLICE: input of 3 or 4 dimensions (built as IR: which
    slices the lowering writes is its own choice)."""
    rank = len(shape)
    consts = [
        _t(n, (rank,), np.int32, np.array(v, np.int32))
        for n, v in (("b", [0] * rank), ("e", list(shape)), ("s", [1] * (rank - 1) + [2]))
    ]
    out = _t("y", shape[:-1] + (4,))
    op = tfl.Operator("STRIDED_SLICE", [_t("x", shape), *consts], [out])
    assert _codes(op) == ([] if delegable else ["tensor_rank"])


def test_comparison_feeding_a_float_cast_is_delegable_alone_it_is_not():
    """model_builder.cc: a comparison is taken only when its one consumer is a CAST/SELECT
    to float; a bool graph output stays on the CPU."""
    cast = make_model(
        [
            helper.make_node("Greater", ["x", "z"], ["g"]),
            helper.make_node("Cast", ["g"], ["y"], to=1),
        ],
        inputs=[("x", np.float32, (2, 5)), ("z", np.float32, (2, 5))],
        outputs=[("y", np.float32, (2, 5))],
    )
    assert _gpu(cast)["verdict"] == "fully delegable"
    bare = make_model(
        [helper.make_node("Greater", ["x", "z"], ["y"])],
        inputs=[("x", np.float32, (2, 5)), ("z", np.float32, (2, 5))],
        outputs=[("y", np.bool_, (2, 5))],
    )
    assert [f["rules"] for f in _gpu(bare)["fall_back"]] == [["graph_context"]]


def test_verdict_counts_every_fallback():
    model = make_model(
        [
            helper.make_node("Ceil", ["x"], ["a"]),
            helper.make_node("Relu", ["a"], ["b"]),
            helper.make_node("Ceil", ["b"], ["y"]),
        ],
        inputs=[("x", np.float32, (2, 5))],
        outputs=[("y", np.float32, (2, 5))],
    )
    gpu = _gpu(model)
    assert gpu["verdict"] == "2 ops fall back" and gpu["operators"] == 3
    assert [f["op_index"] for f in gpu["fall_back"]] == [0, 2]
    assert gpu["partitions"] == 1 and gpu["delegated_ops"] == 1
    assert gpu["by_op"] == {
        "CEIL": {"count": 2, "fall_back": 2},
        "RELU": {"count": 1, "fall_back": 0},
    }
    assert "model_builder.cc" in gpu["rules"]


# ---- the table on IR operators (attribute limits) ---------------------------------------------


def _t(name, shape, dtype=np.float32, data=None):
    return tfl.Tensor(name, dtype, shape, data=data)


def _codes(op, version=1, ctx=None):
    return [code for code, _ in gpu_rules.check_op(op, version, ctx)]


@pytest.mark.parametrize(
    "a, b, ok",
    [
        ((1, 4, 4, 8), (1, 4, 4, 8), True),  # same shape
        ((1, 4, 4, 8), (4, 4, 8), True),  # 3-D into 4-D with batch 1
        ((2, 4, 4, 8), (4, 4, 8), False),  # ... not with batch 2
        ((1, 4, 4, 8), (1, 1), True),  # [1, 1] into [1, h, w, c]
        ((2, 4, 4, 8), (2, 8), True),  # [b, c] into [b, h, w, c]
        ((1, 4, 4, 8), (4, 8), False),  # [h?, c]: none of the three cases
        ((1, 4, 8), (4, 8), False),  # 2-D into 3-D
        ((1, 4, 4, 8), (8,), True),  # a 1-D operand is never checked
    ],
)
def test_add_broadcast_rules_standard(a, b, ok):
    """gpu_compatibility.cc CheckAddMulBroadcastCompatibility, kStandard flags (the runtime
    delegate's): different ranks > 1 broadcast in three cases only."""
    out = a if len(a) >= len(b) else b
    op = tfl.Operator("ADD", [_t("a", a), _t("b", b)], [_t("y", out)])
    assert _codes(op) == ([] if ok else ["broadcast"])


@pytest.mark.parametrize(
    "options, codes",
    [
        ({"stride_h": 1, "stride_w": 1}, []),
        ({"stride_h": 1, "stride_w": 1, "dilation_h_factor": 2, "dilation_w_factor": 2}, []),
        ({"stride_h": 0, "stride_w": 1}, ["attribute"]),
        ({"stride_h": 1, "stride_w": 1, "dilation_h_factor": 0}, ["attribute"]),
        (
            {"stride_h": 1, "stride_w": 1, "fused_activation_function": "SIGN_BIT"},
            ["fused_activation"],
        ),
        ({"stride_h": 1, "stride_w": 1, "fused_activation_function": "TANH"}, []),
    ],
)
def test_conv_strides_dilations_activation(options, codes):
    w = np.ones((2, 3, 3, 2), np.float32)
    op = tfl.Operator(
        "CONV_2D",
        [_t("x", (1, 5, 5, 2)), _t("w", w.shape, data=w)],
        [_t("y", (1, 3, 3, 2))],
        options,
    )
    assert _codes(op) == codes
    assert _codes(op, version=7) == ["version_above_gpu_cap", *codes]


@pytest.mark.parametrize(
    "opcode, options, codes",
    [
        ("SOFTMAX", {"beta": 1.0}, []),
        ("SOFTMAX", {"beta": 0.5}, ["attribute"]),
        ("SPACE_TO_DEPTH", {"block_size": 2}, []),
        ("SPACE_TO_DEPTH", {"block_size": 1}, ["attribute"]),
        ("DEPTH_TO_SPACE", {"block_size": 1}, ["attribute"]),
    ],
)
def test_single_attribute_limits(opcode, options, codes):
    op = tfl.Operator(opcode, [_t("x", (1, 4, 4, 8))], [_t("y", (1, 4, 4, 8))], options)
    assert _codes(op) == codes


def test_strided_slice_masks_and_reverse_strides():
    def op(strides, **options):
        consts = [
            _t(n, (3,), np.int32, np.array(v, np.int32))
            for n, v in (("b", [0, 0, 0]), ("e", [1, 4, 8]), ("s", strides))
        ]
        return tfl.Operator(
            "STRIDED_SLICE", [_t("x", (1, 4, 8)), *consts], [_t("y", (1, 4, 4))], options
        )

    assert _codes(op([1, 1, 2])) == []
    assert _codes(op([1, 1, -1])) == ["parse"]  # "Reverse slices are not supported"
    assert _codes(op([1, 1, 2], shrink_axis_mask=1)) == ["attribute"]


def test_mean_axes_must_be_constant_int32():
    x, y = _t("x", (1, 4, 4, 8)), _t("y", (1, 1, 1, 8))
    const_axes = _t("a", (2,), np.int32, np.array([1, 2], np.int32))
    assert _codes(tfl.Operator("MEAN", [x, const_axes], [y])) == []
    assert _codes(tfl.Operator("MEAN", [x, _t("a", (2,), np.int32)], [y])) == [
        "operands",
        "non_float_tensor",
    ]


def test_fully_connected_weights_format_and_constant_input():
    w = np.ones((4, 8), np.float32)
    x, out = _t("x", (2, 8)), _t("y", (2, 4))
    ok = tfl.Operator("FULLY_CONNECTED", [x, _t("w", w.shape, data=w), None], [out])
    assert _codes(ok) == [] and _codes(ok, version=10) == ["version_above_gpu_cap"]
    shuffled = tfl.Operator(
        "FULLY_CONNECTED",
        [x, _t("w", w.shape, data=w)],
        [out],
        {"weights_format": "SHUFFLED4x16INT8"},
    )
    assert _codes(shuffled) == ["attribute"]


def test_depthwise_multiplier_rule():
    def dw(in_c, mult):
        out_c = in_c * mult
        w = np.ones((1, 3, 3, out_c), np.float32)
        return tfl.Operator(
            "DEPTHWISE_CONV_2D",
            [_t("x", (1, 6, 6, in_c)), _t("w", w.shape, data=w)],
            [_t("y", (1, 4, 4, out_c))],
            {"stride_h": 1, "stride_w": 1, "depth_multiplier": mult},
        )

    assert _codes(dw(4, 1)) == [] and _codes(dw(1, 3)) == []
    assert _codes(dw(2, 2)) == ["attribute"]  # depth_multiplier != 1 && input.c != 1


def test_custom_ops():
    x, y = _t("x", (1, 4)), _t("y", (1, 4))
    assert _codes(tfl.Operator("CUSTOM", [x], [y], custom_code="MyOp")) == ["no_gpu_kernel"]
    assert _codes(tfl.Operator("CUSTOM", [x, x], [y], custom_code="Resampler")) == []


def test_every_table_entry_is_a_builtin():
    from onnx2tflite_direct.schema_gen import schema_generated as S

    assert set(gpu_rules.OPS) <= set(S.ENUMS["BuiltinOperator"])


# ---- --check-gpu ------------------------------------------------------------------------------


def test_check_gpu_prints_the_verdict(tmp_path, capsys):
    model = make_model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Ceil", ["r"], ["y"])],
        inputs=[("x", np.float32, (2, 5))],
        outputs=[("y", np.float32, (2, 5))],
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    assert cli.main([str(path), "-o", str(tmp_path / "out"), "--check-gpu", "-q"]) == 0
    out = capsys.readouterr().out
    assert "static rule check" in out and "1 op falls back" in out
    assert "op #1 CEIL" in out and "no_gpu_kernel" in out
    assert cli.main([str(path), "-o", str(tmp_path / "o2"), "--check-gpu", "--gpu-friendly"]) == 0
    assert "fully delegable" in capsys.readouterr().out


def test_analyzer_is_a_cross_check_only(monkeypatch):
    """This ai-edge-litert's analyzer lacks GPU rules: not consulted. Where it has them, its
    differences are listed next to the verdict, which does not change."""
    fallbacks = [{"subgraph": 0, "op_index": 1, "op": "CEIL"}]
    cross = gpu_check.analyzer_cross_check(b"unused", fallbacks)
    if cross["available"] and not cross["effective"]:
        assert cross["disagreements"] == [] and "not consulted" in cross["note"]
    text = (
        "Subgraph#0 main(T#0) -> [T#2]\n"
        "  Op#0 RELU(T#0) -> [T#1]\n"
        "GPU COMPATIBILITY WARNING: made-up limit\n"
        "  Op#1 CEIL(T#1) -> [T#2]\n"
    )
    monkeypatch.setattr(gpu_check, "_analyzer", lambda: lambda data, path, gpu: text)
    monkeypatch.setattr(gpu_check, "analyzer_is_effective", lambda: True)
    cross = gpu_check.analyzer_cross_check(b"unused", fallbacks)
    assert cross["effective"]
    assert [
        (d["op_index"], d["rules_say"], d["analyzer_says"]) for d in cross["disagreements"]
    ] == [
        (0, "delegable", "made-up limit"),
        (1, "falls back", "compatible"),
    ]


def test_partitions_follow_the_greedy_partitioner():
    """graph_info.cc: a subset takes every ready op of its kind; the next one starts from the
    lowest-index ready op. Relu(x) and Ceil(x) are both ready; the second Relu joins the
    first; the Add waits for the Ceil: partitions {0, 2} (delegable), {1}, {3} (delegable)."""
    model = make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Ceil", ["x"], ["b"]),
            helper.make_node("Relu", ["a"], ["c"]),
            helper.make_node("Add", ["c", "b"], ["y"]),
        ],
        inputs=[("x", np.float32, (2, 5))],
        outputs=[("y", np.float32, (2, 5))],
    )
    chk = check_conversion(model)
    kinds = [op for op in chk.report["tflite_ops"]]
    assert sorted(kinds) == ["ADD", "CEIL", "RELU"]
    gpu = chk.report["gpu"]
    assert gpu["verdict"] == "1 op falls back"
    assert gpu["partitions"] == 2 and gpu["delegated_ops"] == 2
    sub = tfl.Subgraph()
    sub.operators = [tfl.Operator("RELU", [], [])]
    assert gpu_check.partitions(sub, set()) == [(True, 1)]


def test_each_operator_keeps_its_own_version():
    """One operator code per (builtin, version): a TRANSPOSE_CONV with a fused ReLU (v4) does
    not lift a plain one (v1) above the GPU cap, so only the fused one falls back."""
    rng = np.random.default_rng(6)
    w = rng.standard_normal((3, 3, 3, 3)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("ConvTranspose", ["x", "w"], ["a"], strides=[2, 2]),
            helper.make_node("Relu", ["a"], ["r"]),
            helper.make_node("ConvTranspose", ["x", "w2"], ["b"], strides=[2, 2]),
            helper.make_node("Add", ["r", "b"], ["y"]),
        ],
        inputs=[("x", np.float32, (1, 3, 4, 4))],
        outputs=[("y", np.float32, (1, 3, 9, 9))],
        initializers={"w": w, "w2": -w},
    )
    fall = _gpu(model)["fall_back"]
    assert [(f["op"], f["rules"], f["version"]) for f in fall] == [
        ("TRANSPOSE_CONV", ["version_above_gpu_cap"], 4)
    ]
    codes = _opcodes(check_conversion(model).tflite_bytes)[1]
    assert sorted(v for name, v in codes if name == "TRANSPOSE_CONV") == [1, 4]


@pytest.mark.parametrize(
    "const_shape, ok",
    [((), True), ((1, 1, 1, 8), True), ((8,), True), ((4, 8), True), ((4, 4, 8), True),
     ((1, 4, 4, 8), True), ((2, 4, 4, 8), False), ((2, 1, 1, 1), False)],
)  # fmt: skip
def test_constant_operand_shapes(const_shape, ok):
    """model_builder.cc ParseInputsWithConstTensor: scalar, per-channel, HxW, HxWxC, or 4-D
    with batch 1."""
    data = np.ones(const_shape, np.float32) * 2
    x = _t("x", (2, 4, 4, 8))
    op = tfl.Operator("SUB", [x, _t("c", const_shape, data=data)], [_t("y", (2, 4, 4, 8))])
    assert _codes(op) == ([] if ok else ["parse"])


@pytest.mark.parametrize(
    "alpha_shape, ok", [((8,), True), ((1, 1, 8), True), ((4, 4, 8), True), ((4, 1, 8), False)]
)
def test_prelu_alpha_shapes(alpha_shape, ok):
    alpha = np.full(alpha_shape, 0.25, np.float32)
    op = tfl.Operator(
        "PRELU", [_t("x", (1, 4, 4, 8)), _t("a", alpha_shape, data=alpha)], [_t("y", (1, 4, 4, 8))]
    )
    assert _codes(op) == ([] if ok else ["parse"])
    runtime = tfl.Operator("PRELU", [_t("x", (1, 4, 4, 8)), _t("a", (8,))], [_t("y", (1, 4, 4, 8))])
    assert _codes(runtime) == ["operands"]


def test_split_axis_must_be_constant():
    x = _t("x", (1, 4, 4, 8))
    outs = [_t("a", (1, 4, 4, 4)), _t("b", (1, 4, 4, 4))]
    const_axis = _t("ax", (), np.int32, np.array(3, np.int32))
    assert _codes(tfl.Operator("SPLIT", [const_axis, x], outs, {"num_splits": 2})) == []
    runtime_axis = tfl.Operator("SPLIT", [_t("ax", (), np.int32), x], outs, {"num_splits": 2})
    assert _codes(runtime_axis) == ["parse", "non_float_tensor"]


def test_dequantize_of_a_constant_is_delegable():
    """gpu_compatibility.cc DEQUANTIZE asks for one input and one output, not a runtime one:
    float16 or int8 weights dequantized on the fly are taken (int16 is not)."""
    for dtype, ok in ((np.float16, True), (np.int8, True), (np.int16, False)):
        w = _t("w", (4, 8), dtype, np.ones((4, 8), dtype))
        op = tfl.Operator("DEQUANTIZE", [w], [_t("y", (4, 8))])
        assert _codes(op) == ([] if ok else ["dtype"])
