"""The corpus' headline file (tools/zoo/deploy.py): for a model that is already statically
quantized, its status and latency ratio are its integer file's, judged by the same pass rules
as a float32 file; a missing or failing integer file falls back to the float32 file and says
so; the choice is read from the graph (never from names) and never from which file is
faster; the float32 file's figures stay in the record and the report."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tools.zoo import deploy
from tools.zoo.report import _md, summarize

# --------------------------------------------------------------------------------------------
# static_quantization: read from the graph
# --------------------------------------------------------------------------------------------


def _model(nodes, inits, producer="", name="g", in_type=TensorProto.FLOAT):
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", in_type, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.producer_name = producer
    return m


def _scale_zp():
    return [
        numpy_helper.from_array(np.array(0.02, np.float32), "s"),
        numpy_helper.from_array(np.array(3, np.int8), "z"),
    ]


def test_activation_qdq_pairs_are_static_quantization():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["y"]),
    ]
    assert deploy.static_quantization(_model(nodes, _scale_zp())) == (
        "1 QuantizeLinear -> DequantizeLinear pairs on activations"
    )


def test_qlinear_ops_are_static_quantization():
    inits = _scale_zp() + [numpy_helper.from_array(np.ones((4, 4), np.int8), "w")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("QLinearMatMul", ["xq", "s", "z", "w", "s", "z", "s", "z"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"]),
    ]
    evidence = deploy.static_quantization(_model(nodes, inits))
    assert evidence is not None and "QLinear ops: QLinearMatMul 1" in evidence


def test_weight_only_and_dynamic_quantization_are_not_static():
    # DequantizeLinear of a constant weight (weight-only), and a QuantizeLinear ->
    # DequantizeLinear pair on an initializer (a constant, folded at load).
    w = numpy_helper.from_array(np.ones((4, 4), np.int8), "w")
    wf = numpy_helper.from_array(np.ones((4, 4), np.float32), "wf")
    nodes = [
        helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wd"]),
        helper.make_node("QuantizeLinear", ["wf", "s", "z"], ["wfq"]),
        helper.make_node("DequantizeLinear", ["wfq", "s", "z"], ["wfd"]),
        helper.make_node("Add", ["wd", "wfd"], ["w2"]),
        helper.make_node("MatMul", ["x", "w2"], ["y"]),
    ]
    assert deploy.static_quantization(_model(nodes, _scale_zp() + [w, wf])) is None
    # quantize_dynamic's form: activations quantized at run time, not with fixed scales
    wu = numpy_helper.from_array(np.ones((4, 4), np.uint8), "wu")
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "wu", "xz"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["accf", "xs"], ["y"]),
    ]
    assert deploy.static_quantization(_model(nodes, [wu])) is None


def test_names_and_producers_do_not_decide():
    """A float graph named like a quantized one, from onnxruntime's quantizer, is float."""
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    m = _model(nodes, [], producer="onnx.quantize", name="resnet_qstatic_int8")
    assert deploy.static_quantization(m) is None


# --------------------------------------------------------------------------------------------
# headline: which file, never by speed
# --------------------------------------------------------------------------------------------

F32 = {"status": "pass", "pass_rule": "strict", "litert_ms": 12.0, "ort_ms": 5.0}
F32["latency_ratio"] = 2.4


def _integer(status="pass", ratio=1.0, **extra):
    out = {"status": status, "litert_ms": ratio * 5.0, "ort_ms": 5.0, "latency_ratio": ratio}
    if status == "pass":
        out["pass_rule"] = "qdq_semantics"
    return {**out, **extra}


def test_headline_is_the_integer_file_of_a_statically_quantized_model():
    rec = {**F32, "static_quantization": "33 pairs", "variants": {"integer_quant": _integer()}}
    head = deploy.headline(rec)
    assert head["file"] == "integer_quant" and head["latency_ratio"] == 1.0
    assert head["pass_rule"] == "qdq_semantics" and "note" not in head
    # even when the integer file is the slower one: the rule never looks at the numbers
    rec["variants"]["integer_quant"] = _integer(ratio=3.0)
    assert deploy.headline(rec)["file"] == "integer_quant"
    assert deploy.headline(rec)["latency_ratio"] == 3.0


@pytest.mark.parametrize(
    "variants, said",
    [
        ({"integer_quant": _integer("mismatch", 0.5, message="y: SQNR 9 dB")}, "mismatch"),
        ({"integer_quant": {"status": "load_or_run_failed", "message": "died"}}, "failed"),
        ({}, "no integer file"),
        ({"dynamic_range_quant": _integer("pass", 0.5)}, "no integer file"),
    ],
)
def test_a_failing_or_missing_integer_file_falls_back_and_says_so(variants, said):
    rec = {**F32, "static_quantization": "33 pairs", "variants": variants}
    head = deploy.headline(rec)
    assert head["file"] == "float32" and head["latency_ratio"] == 2.4, head
    assert head["status"] == "pass" and said in head["note"], head


def test_a_refused_conversion_is_the_headline_and_says_no_integer_file_was_judged():
    rec = {"status": "refused", "reason_code": "x", "static_quantization": "3 pairs"}
    head = deploy.headline(rec)
    assert head["file"] == "float32" and head["status"] == "refused"
    assert "no integer file was judged (the float32 file: refused)" in head["note"]
    assert not deploy.passed_everywhere(rec)


def test_a_float_model_with_a_faster_variant_keeps_its_float32_file():
    rec = {**F32, "variants": {"integer_quant": _integer(ratio=0.3)}}
    assert deploy.headline(rec) == {"file": "float32", **F32}


# --------------------------------------------------------------------------------------------
# the report: headline figures, the float32 files beside them
# --------------------------------------------------------------------------------------------


def test_report_shows_the_headline_and_keeps_the_float32_files():
    rows = [
        {"name": "fl", "source": "generator", **F32, "latency_ratio": 0.8},
        {
            "name": "qs",
            "source": "generator",
            **F32,
            "static_quantization": "33 QuantizeLinear -> DequantizeLinear pairs on activations",
            "variants": {"integer_quant": _integer(ratio=1.1, strict_message="y: max_abs 0.01")},
        },
        {
            "name": "qf",
            "source": "generator",
            **{**F32, "latency_ratio": 1.5},
            "static_quantization": "5 QuantizeLinear -> DequantizeLinear pairs on activations",
            "variants": {"integer_quant": _integer("mismatch", 0.4, message="y: 3 quanta")},
        },
    ]
    for r in rows:
        r["headline"] = deploy.headline(r)
    s = summarize(rows)
    assert s["median_latency_ratio_litert_over_ort"] == 1.1  # 0.8, 1.1 (qs integer), 1.5 (qf)
    assert s["float32_files"]["median_latency_ratio_litert_over_ort"] == 1.5  # 0.8, 2.4, 1.5
    assert s["headline_integer_files"] == ["qs"] and list(s["headline_fallbacks"]) == ["qf"]
    assert s["by_status"] == {"pass": 3}
    meta = {"converter_commit": "x", "written": "now", "versions": {}, "rtol": 1e-3, "atol": 1e-5}
    md = _md(rows, s, meta)
    assert "**Headline file.**" in md and "never looks at which file is faster" in md
    table, section = md.split("## Models")[1].split("## Already statically quantized models")
    main = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    row_qs = main["| qs"]
    assert "| integer | pass (Q/DQ semantics) |" in row_qs and "| 1.100 |" in row_qs
    assert "strict: y: max_abs 0.01" in row_qs
    row_qf = main["| qf"]
    assert "| float32 | pass |" in row_qf and "| 1.500 |" in row_qf
    assert "integer file mismatch (y: 3 quanta)" in row_qf
    side = next(line for line in section.splitlines() if line.startswith("| qs |"))
    assert "| 1.100 |" in side and "| 2.400 |" in side  # both files' ratios, side by side


# --------------------------------------------------------------------------------------------
# the runner end to end on a small Q/DQ model
# --------------------------------------------------------------------------------------------


def test_runner_judges_times_and_falls_back(tmp_path, monkeypatch):
    """The runner on a small statically quantized Conv: the integer file is judged by the
    pass rules, timed beside the float32 file, and is the headline; with an error planted in
    the integer file's outputs only it fails by the Q/DQ rule and the headline falls back to
    the float32 file, whose own status is untouched."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    from tests.test_zoo_pass_rule import _qdq_conv_model
    from tools.zoo import run

    monkeypatch.setenv("ONNX2TFLITE_ZOO_CACHE", str(tmp_path))
    folder = tmp_path / "models" / "qdq_conv"
    folder.mkdir(parents=True)
    model = _qdq_conv_model()
    # every output channel's int8 weights reach 127 (as a symmetric quantizer leaves them):
    # the integer file then reproduces the model's lattices exactly
    wq = next(t for t in model.graph.initializer if t.name == "wq")
    w = numpy_helper.to_array(wq).copy()
    w[:, 0, 0, 0] = 127
    wq.CopyFrom(numpy_helper.from_array(w, "wq"))
    onnx.save(model, str(folder / "model.onnx"))
    x = np.random.default_rng(11).normal(0, 1, (2, 3, 9, 8)).astype(np.float32)
    np.savez(folder / "feeds.npz", x=x)
    entry = {"name": "qdq_conv", "feeds": "stored"}

    rec = run.run_one(entry, runs=3, latency=True, unpinned=False)
    integer = rec["variants"]["integer_quant"]
    assert rec["static_quantization"].startswith("2 QuantizeLinear -> DequantizeLinear")
    assert rec["status"] == "pass" and integer["status"] == "pass", (rec["status"], integer)
    assert integer["latency_ratio"] > 0 and rec["latency_ratio"] > 0
    assert integer["ort_ms"] == rec["ort_ms"]  # one onnxruntime timing for both files
    assert rec["headline"]["file"] == "integer_quant"
    assert rec["headline"]["latency_ratio"] == integer["latency_ratio"]

    honest = run._variant_outputs

    def planted(*args, **kwargs):
        out = honest(*args, **kwargs)
        out["actual"]["y"] = out["actual"]["y"].copy()
        out["actual"]["y"].ravel()[5] += 3 * 0.03
        return out

    monkeypatch.setattr(run, "_variant_outputs", planted)
    rec = run.run_one(entry, latency=False, unpinned=False)
    integer = rec["variants"]["integer_quant"]
    assert rec["status"] == "pass", rec  # the float32 file is not touched
    assert integer["status"] == "mismatch" and "qdq_semantics rule: y:" in integer["message"]
    assert integer["reference_error"]["passed"] is False
    assert rec["headline"]["file"] == "float32" and rec["headline"]["status"] == "pass"
    assert "integer file mismatch" in rec["headline"]["note"]
