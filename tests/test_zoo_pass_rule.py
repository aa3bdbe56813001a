"""The corpus' rules beyond the strict tolerance (tools/zoo/pass_rules.py) must catch wrong
answers: each test plants an error that onnxruntime's own rounding does not explain and
checks that it fails, next to a case of honest rounding that passes. Also the float64
reference they rely on (tools/zoo/exact_reference.py) against hand-computed Q/DQ semantics
and onnx.reference's own Conv."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tools.zoo import pass_rules as PR
from tools.zoo.exact_reference import output_steps, run_float64

ATOL, RTOL = 1e-5, 1e-3
STEP = 0.05


def _lattice(rng, shape=(4, 64), step=STEP):
    return rng.integers(-100, 100, size=shape).astype(np.float64) * step


def _flip(x, rng, count, quanta, step=STEP):
    """``x`` with ``count`` random elements moved by ``quanta`` steps (rounding flips)."""
    y = x.copy().ravel()
    idx = rng.choice(y.size, size=count, replace=False)
    y[idx] += quanta * step * rng.choice([-1.0, 1.0], size=count)
    return y.reshape(x.shape).astype(np.float32)


# --------------------------------------------------------------------------------------------
# judge_exact (Q/DQ lattices and float outputs)
# --------------------------------------------------------------------------------------------


def test_qdq_rounding_flips_like_onnxruntimes_pass():
    rng = np.random.default_rng(0)
    exact = _lattice(rng)
    ort = {"basic": _flip(exact, rng, 20, 1), "all": _flip(exact, rng, 12, 1)}
    litert = _flip(exact, rng, 15, 1)
    v = PR.judge_exact(litert, ort, exact, step=STEP, atol=ATOL, rtol=RTOL)
    assert v["ok"], v
    assert v["litert_vs_exact"]["max_quanta"] == pytest.approx(1.0)


def test_qdq_one_element_far_off_fails():
    """One element 3 quanta off where onnxruntime is never more than 1 off: a wrong answer,
    though the SQNR barely moves."""
    rng = np.random.default_rng(1)
    exact = _lattice(rng, (16, 256))
    ort = {"basic": _flip(exact, rng, 40, 1), "all": _flip(exact, rng, 40, 1)}
    litert = _flip(exact, rng, 30, 1)
    litert.ravel()[7] = exact.ravel()[7] + 3 * STEP
    v = PR.judge_exact(litert, ort, exact, step=STEP, atol=ATOL, rtol=RTOL)
    assert not v["ok"] and "quantum" in v["why"], v
    assert v["litert_vs_exact"]["sqnr_db"] > min(
        f["sqnr_db"] for f in v["ort_vs_exact"].values()
    )  # the SQNR test alone would have let it through


def test_qdq_many_flips_fail_on_sqnr():
    """Every element within one quantum, but ten times as many flips as onnxruntime has."""
    rng = np.random.default_rng(2)
    exact = _lattice(rng, (16, 256))
    ort = {"basic": _flip(exact, rng, 40, 1)}
    litert = _flip(exact, rng, 400, 1)
    v = PR.judge_exact(litert, ort, exact, step=STEP, atol=ATOL, rtol=RTOL)
    assert not v["ok"] and "SQNR" in v["why"], v


def test_closest_level_sets_the_bar():
    """onnxruntime's worse level does not widen the bar: the closest one sets it."""
    rng = np.random.default_rng(3)
    exact = _lattice(rng, (16, 256))
    near = _flip(exact, rng, 10, 1)
    far = _flip(exact, rng, 800, 3)
    litert = _flip(exact, rng, 800, 3)  # as bad as the worse level
    assert PR.judge_exact(litert, {"far": far}, exact, step=STEP, atol=ATOL, rtol=RTOL)["ok"]
    v = PR.judge_exact(litert, {"far": far, "near": near}, exact, step=STEP, atol=ATOL, rtol=RTOL)
    assert not v["ok"], v


def test_float_output_within_onnxruntimes_error_passes_and_a_bias_fails():
    rng = np.random.default_rng(4)
    exact = rng.uniform(0, 320, size=(300, 4))
    ort = {"basic": (exact + rng.normal(0, 3e-3, exact.shape)).astype(np.float32)}
    litert = (exact + rng.normal(0, 3e-3, exact.shape)).astype(np.float32)
    ort_max = float(np.abs(ort["basic"] - exact).max())
    # the same noise but a larger max than onnxruntime's: within its max + strict tolerance
    litert.ravel()[0] = exact.ravel()[0] + ort_max + 1e-3
    assert PR.judge_exact(litert, ort, exact, step=None, atol=ATOL, rtol=RTOL)["ok"]
    planted = litert.copy()
    planted.ravel()[5] = exact.ravel()[5] + ort_max + 0.5  # half a pixel beyond
    v = PR.judge_exact(planted, ort, exact, step=None, atol=ATOL, rtol=RTOL)
    assert not v["ok"], v


def test_shapes_and_integer_outputs_never_pass_by_the_rule():
    exact = np.arange(6.0)
    assert not PR.judge_exact(np.arange(5.0), {"b": exact}, exact, step=None, atol=ATOL, rtol=RTOL)[
        "ok"
    ]
    labels = np.arange(6)
    v = PR.judge_exact(labels + 1, {"b": labels}, labels, step=None, atol=ATOL, rtol=RTOL)
    assert not v["ok"] and "float" in v["why"]


# --------------------------------------------------------------------------------------------
# judge_spread (float models without a float64 evaluation)
# --------------------------------------------------------------------------------------------


def test_spread_rule():
    rng = np.random.default_rng(5)
    ref = rng.uniform(-1, 1, size=(1000,)).astype(np.float32)  # strict tolerance <= 1e-3
    other = {"all": ref + rng.normal(0, 1e-3, ref.shape).astype(np.float32)}
    spread = float(np.abs(other["all"] - ref).max())
    litert = ref + rng.normal(0, 1.2e-3, ref.shape).astype(np.float32)
    v = PR.judge_spread(litert, ref, other, atol=ATOL, rtol=RTOL)
    assert v["ok"] and v["spread_max_abs"] == pytest.approx(spread), v
    planted = litert.copy()
    planted[3] = ref[3] + 2.5 * spread  # beyond K x spread
    assert not PR.judge_spread(planted, ref, other, atol=ATOL, rtol=RTOL)["ok"]
    # no spread at all (the levels agree bit for bit): only the strict tolerance remains
    v = PR.judge_spread(litert, ref, {"all": ref.copy()}, atol=ATOL, rtol=RTOL)
    assert not v["ok"], v


def test_spread_rule_sqnr_catches_a_spread_out_error():
    rng = np.random.default_rng(6)
    ref = rng.uniform(-50, 50, size=(1000,)).astype(np.float32)
    other = {"all": ref.copy()}
    other["all"][:5] += 0.01  # a few elements disagree: a large max, a high SQNR
    litert = ref + 0.009  # every element off by just under the max spread
    v = PR.judge_spread(litert, ref, other, atol=ATOL, rtol=RTOL)
    assert not v["ok"] and "SQNR" in v["why"], v


def test_decide_needs_a_verdict_for_each_failing_output():
    assert PR.decide({"a": True, "b": False}, {"b": {"ok": True}})
    assert not PR.decide({"a": True, "b": False}, {"a": {"ok": True}})
    assert not PR.decide({"b": False}, {"b": {"ok": False}})
    assert PR.decide({"a": True}, {})


def test_sqnr_edges():
    assert PR.sqnr_db([1.0, 2.0], [1.0, 2.0]) == math.inf
    assert PR.sqnr_db([0.0, 0.0], [1.0, 0.0]) == -math.inf
    assert PR.sqnr_db([1.0], [0.9]) == pytest.approx(20.0)


# --------------------------------------------------------------------------------------------
# The float64 reference
# --------------------------------------------------------------------------------------------


def _qdq_conv_model(opset: int = 17) -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(int8 per-channel w), bias) -> Q -> DQ -> y (uint8 activations)."""
    rng = np.random.default_rng(7)
    w = rng.integers(-127, 128, size=(4, 3, 3, 3)).astype(np.int8)
    w_scale = rng.uniform(0.002, 0.01, size=4).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz"),
        numpy_helper.from_array(w, "wq"),
        numpy_helper.from_array(w_scale, "ws"),
        numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
        numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b"),
        numpy_helper.from_array(np.array(0.03, np.float32), "ys"),
        numpy_helper.from_array(np.array(120, np.uint8), "yz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 1]),
        helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _conv64(x, w, b, pads, strides):
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])])
    oh = (xp.shape[2] - kh) // strides[0] + 1
    ow = (xp.shape[3] - kw) // strides[1] + 1
    y = np.zeros((n, m, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[
                :, :, i * strides[0] : i * strides[0] + kh, j * strides[1] : j * strides[1] + kw
            ]
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return y + b.reshape(1, m, 1, 1)


def test_float64_reference_is_the_qdq_semantics():
    """Each op in float64, each float32 tensor rounded to float32 (correctly rounded ops),
    Q with round-half-to-even and saturation."""
    model = _qdq_conv_model()
    x = np.random.default_rng(8).normal(0, 1, (2, 3, 9, 8)).astype(np.float32)
    got = run_float64(model, {"x": x})["y"]
    c = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}

    def f32(v):
        return v.astype(np.float32).astype(np.float64)

    xq = np.clip(np.rint(x.astype(np.float64) / c["xs"]) + 128, 0, 255)
    xd = f32((xq - 128) * c["xs"])
    wd = f32(c["wq"] * c["ws"].reshape(4, 1, 1, 1))
    conv = f32(_conv64(xd, wd, c["b"], [1, 1, 1, 1], [2, 1]))
    yq = np.clip(np.rint(conv / c["ys"]) + 120, 0, 255)
    want = f32((yq - 120) * c["ys"])
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(yq)) > 20  # not a saturated, near-constant output
    assert output_steps(model) == {"y": pytest.approx(0.03)}


@pytest.mark.parametrize(
    "group, strides, dilations, pads",
    [
        (1, [1, 1], [1, 1], [0, 0, 0, 0]),
        (2, [2, 1], [1, 2], [1, 2, 0, 1]),
        (4, [1, 2], [2, 1], [2, 0, 1, 1]),
    ],
)
def test_fast_conv_matches_onnx_reference(group, strides, dilations, pads):
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 4, 11, 10))
    w = rng.normal(size=(8, 4 // group, 3, 2))
    b = rng.normal(size=8)
    node = helper.make_node(
        "Conv", ["x", "w", "b"], ["y"], group=group, strides=strides, dilations=dilations, pads=pads
    )
    graph = helper.make_graph(
        [node],
        "c",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "xwb"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": x, "w": w, "b": b}
    got = run_float64(model, feeds, round_to_float32=False)["y"]
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_reference_error_catches_a_planted_error(tmp_path):
    """End to end through the runner's judge (no LiteRT needed): onnxruntime's answer passes
    as LiteRT's; the same answer with one element moved by 3 quanta fails."""
    pytest.importorskip("onnxruntime")
    from onnx2tflite_direct.validate import run_onnxruntime
    from tools.zoo.run import _reference_error

    model = _qdq_conv_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    feeds = {"x": np.random.default_rng(10).normal(0, 1, (2, 3, 9, 8)).astype(np.float32)}
    expected = run_onnxruntime(path, feeds)
    honest = {k: v.copy() for k, v in expected.items()}
    bad = {
        "y": {
            "ok": False,
            "shape": list(honest["y"].shape),
            "actual_shape": list(honest["y"].shape),
        }
    }
    verdict = _reference_error(path, feeds, expected, honest, bad, set(), True)
    assert verdict["rule"] == "qdq_semantics" and verdict["passed"], verdict
    planted = {k: v.copy() for k, v in expected.items()}
    planted["y"].ravel()[11] += 3 * 0.03
    verdict = _reference_error(path, feeds, expected, planted, bad, set(), True)
    assert verdict["rule"] == "qdq_semantics" and not verdict["passed"], verdict
    assert "y:" in verdict["why"]


def test_each_float32_result_is_rounded_before_it_is_quantized():
    """1 + erf(x) is 2 - 1e-11 in float64 but exactly 2.0 in float32, the model's declared
    type. Shifted by c = 2 - 1.5 * step, the float32 value sits on a rounding tie (1.5 steps:
    to even, 2) and the float64 one just below it (1). The exact answer is the float32 one:
    each op correctly rounded to the type the model declares."""
    step = 2.0**-7
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(2.0 - 1.5 * step, np.float32), "c"),
        numpy_helper.from_array(np.array(step, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "z"),
    ]
    nodes = [
        helper.make_node("Erf", ["x"], ["e"]),
        helper.make_node("Add", ["one", "e"], ["a"]),
        helper.make_node("Sub", ["a", "c"], ["d"]),
        helper.make_node("QuantizeLinear", ["d", "s", "z"], ["q"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("q", TensorProto.UINT8, [2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.array([4.6, 5.0], np.float32)
    got = run_float64(model, {"x": x})["q"]
    real = run_float64(model, {"x": x}, round_to_float32=False)["q"]
    np.testing.assert_array_equal(got, [2, 2])
    np.testing.assert_array_equal(real, [1, 1])


def test_report_names_the_rule_of_every_pass():
    """A pass by a rule beyond strict is never shown as a bare pass: the status column names
    the rule, the summary counts passes by rule, and the figures table shows the verdict."""
    from tools.zoo.report import _md, summarize

    judged = {
        "rule": "qdq_semantics",
        "passed": True,
        "outputs": {
            "y": {
                "litert_vs_exact": {"sqnr_db": 37.4, "max_abs": 0.05, "max_quanta": 1.0},
                "ort_vs_exact": {"ORT_ENABLE_BASIC": {"sqnr_db": 25.2, "max_quanta": 3.0}},
                "step": 0.05,
                "ok": True,
            }
        },
    }
    rows = [
        {"name": "a", "source": "generator", "status": "pass", "pass_rule": "strict"},
        {
            "name": "b",
            "source": "generator",
            "status": "pass",
            "pass_rule": "qdq_semantics",
            "strict_message": "y: max_abs 0.151",
            "outputs": {"y": {"ok": False, "sqnr_db": 25.2, "max_quanta": 3.0}},
            "reference_error": judged,
        },
    ]
    summary = summarize(rows)
    assert summary["pass_by_rule"] == {"qdq_semantics": 1, "strict": 1}
    meta = {"converter_commit": "x", "written": "now", "versions": {}, "rtol": 1e-3, "atol": 1e-5}
    md = _md(rows, summary, meta)
    row_b = next(line for line in md.splitlines() if line.startswith("| b |"))
    assert "pass (Q/DQ semantics)" in row_b and "strict: y: max_abs 0.151" in row_b
    assert "passes by rule: qdq_semantics 1, strict 1" in md
    figures = next(line for line in md.splitlines() if line.startswith("| b | y |"))
    assert "37.4 dB / 1" in figures and figures.endswith("| ok |")


def test_runner_records_the_rule_and_keeps_a_planted_error_a_mismatch(tmp_path, monkeypatch):
    """The whole runner on a small Q/DQ model: the honest conversion passes strictly with the
    reference-error figures recorded; LiteRT's outputs with one element moved by 3 quanta
    stay a mismatch, and the message names the rule that refused it."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    import onnx2tflite_direct.validate as V
    from tools.zoo.run import run_one

    monkeypatch.setenv("ONNX2TFLITE_ZOO_CACHE", str(tmp_path))
    folder = tmp_path / "models" / "qdq_conv"
    folder.mkdir(parents=True)
    onnx.save(_qdq_conv_model(), str(folder / "model.onnx"))
    x = np.random.default_rng(11).normal(0, 1, (2, 3, 9, 8)).astype(np.float32)
    np.savez(folder / "feeds.npz", x=x)
    entry = {"name": "qdq_conv", "feeds": "stored"}

    rec = run_one(entry, latency=False, unpinned=False)
    assert rec["status"] == "pass" and rec["pass_rule"] == "strict", rec
    figures = rec["reference_error"]["outputs"]["y"]
    assert figures["step"] == pytest.approx(0.03) and "litert_vs_exact" in figures

    honest = V.run_litert

    def planted(*args, **kwargs):
        out = honest(*args, **kwargs)
        out["y"] = out["y"].copy()
        out["y"].ravel()[5] += 3 * 0.03
        return out

    monkeypatch.setattr(V, "run_litert", planted)
    rec = run_one(entry, latency=False, unpinned=False)
    assert rec["status"] == "mismatch" and "pass_rule" not in rec, rec
    assert "qdq_semantics rule: y:" in rec["message"], rec["message"]
    assert rec["reference_error"]["passed"] is False


def test_batch_norm_uses_the_running_statistics():
    """Inference BatchNormalization (paddle2onnx writes a momentum attribute at opset 12; the
    reference must not take it as training mode and normalise by the batch's own statistics)."""
    rng = np.random.default_rng(12)
    c = 5
    params = {
        "s": rng.uniform(0.5, 2, c),
        "b": rng.normal(size=c),
        "mean": rng.normal(size=c),
        "var": rng.uniform(0.5, 2, c),
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in params.items()]
    node = helper.make_node(
        "BatchNormalization", ["x", "s", "b", "mean", "var"], ["y"], epsilon=1e-3, momentum=0.9
    )
    graph = helper.make_graph(
        [node],
        "bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    x = rng.normal(size=(2, c, 3, 4)).astype(np.float32)
    got = run_float64(model, {"x": x}, round_to_float32=False)["y"]
    p = {k: v.astype(np.float32).astype(np.float64).reshape(1, c, 1, 1) for k, v in params.items()}
    want = (x - p["mean"]) / np.sqrt(p["var"] + np.float64(np.float32(1e-3))) * p["s"] + p["b"]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 4, 5), (1, 2, 3, 4, 2)])
def test_global_max_pool_reduces_the_spatial_axes(shape):
    graph = helper.make_graph(
        [helper.make_node("GlobalMaxPool", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    x = np.random.default_rng(13).normal(size=shape).astype(np.float32)
    got = run_float64(model, {"x": x})["y"]
    np.testing.assert_array_equal(got, x.max(axis=tuple(range(2, x.ndim)), keepdims=True))


def _float_model() -> onnx.ModelProto:
    rng = np.random.default_rng(14)
    w = numpy_helper.from_array(rng.normal(size=(6, 5)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 5])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _judge_float(tmp_path, actual_of):
    from onnx2tflite_direct.validate import run_onnxruntime
    from tools.zoo.run import _reference_error

    path = tmp_path / "f.onnx"
    onnx.save(_float_model(), str(path))
    feeds = {"x": np.random.default_rng(15).normal(size=(4, 6)).astype(np.float32)}
    expected = run_onnxruntime(path, feeds)
    actual = {"y": actual_of(expected["y"])}
    outs = {"y": {"ok": False, "shape": [4, 5], "actual_shape": [4, 5]}}
    return _reference_error(path, feeds, expected, actual, outs, set(), False)


def test_a_wrong_float64_answer_is_not_trusted(tmp_path, monkeypatch):
    """If the "exact" answer were itself wrong (onnx.reference has computed something else),
    LiteRT's equally wrong answer would look as close to it as onnxruntime: a float model's
    float64 answer is used only where onnxruntime agrees with it to 60 dB."""
    pytest.importorskip("onnxruntime")
    import tools.zoo.exact_reference as ER

    def wrong(model, feeds, **kw):
        return {"y": feeds["x"].astype(np.float64) @ _w() * 1.1}

    def _w():
        return numpy_helper.to_array(_float_model().graph.initializer[0]).astype(np.float64)

    verdict = _judge_float(tmp_path, lambda y: y * 1.1)  # 10% off: the true exact refuses it
    assert verdict["rule"] == "float64" and not verdict["passed"], verdict
    monkeypatch.setattr(ER, "run_float64", wrong)
    verdict = _judge_float(tmp_path, lambda y: y * 1.1)
    assert "untrusted" in verdict["float64"], verdict
    assert verdict["rule"] == "reference_spread" and not verdict["passed"], verdict


def test_a_slow_float64_evaluation_falls_back_to_the_spread_rule(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    import time

    import tools.zoo.exact_reference as ER
    import tools.zoo.run as R

    def slow(model, feeds, **kw):
        end = time.time() + 5
        while time.time() < end:
            pass
        raise AssertionError("not interrupted")

    monkeypatch.setattr(ER, "run_float64", slow)
    monkeypatch.setattr(R, "FLOAT64_SECONDS", 1)
    verdict = _judge_float(tmp_path, lambda y: y + 1e-3)
    assert "TimeoutError" in verdict["float64"]["unavailable"], verdict
    assert verdict["rule"] == "reference_spread" and not verdict["passed"], verdict
    assert "ORT_ENABLE_ALL" in verdict["ort_levels_vs_reference"]
