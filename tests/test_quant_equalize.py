"""Channel equalization (``quant/equalize.py``) for ``--quantize auto``, with numbers.

The model: a 3x3 conv, a depthwise 3x3 conv and a 1x1 conv, each followed by a
BatchNormalization whose per-channel gains spread over 40x and a ReLU6 (the last without), so
each activation's int8 range is set by a few wide channels while most are narrow, as in
MobileNetV2. Checked in LiteRT: the equalized float file computes what the original does on
the samples the channel extremes come from; the channel factors keep every channel inside its
tensor's range; a tensor with two readers or one that is a graph output is left alone; and
through ``convert(quantize=["auto"])``, the equalized all-int8 file measures higher than the
plain one (+1.4 dB when written), and the written file meets the target on the held-back
samples.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_quant_auto import auto_section, held_back, sqnr

from onnx2tflite_direct import builder, convert, litert_tensors, pipeline
from onnx2tflite_direct.quant import equalize as EQ


def spread_cnn(seed: int = 0, second_reader: bool = False) -> onnx.ModelProto:
    """x[1,3,16,16] -> conv1 (3->16, 3x3) -> bn1 -> clip1 -> dw (3x3, group 16) -> bn2 ->
    clip2 -> pw (16->8, 1x1) -> y. BN gains per channel log-uniform over [0.05, 2].
    ``second_reader``: clip1's output is also added to the dw output (two readers)."""
    rng = np.random.default_rng(seed)
    inits = {
        "w1": rng.standard_normal((16, 3, 3, 3)) * math.sqrt(2 / 27),
        "b1": rng.standard_normal(16) * 0.1,
        "wd": rng.standard_normal((16, 1, 3, 3)) * math.sqrt(2 / 9),
        "bd": rng.standard_normal(16) * 0.1,
        "wp": rng.standard_normal((8, 16, 1, 1)) * math.sqrt(1 / 16),
        "bp": rng.standard_normal(8) * 0.1,
        "lo": np.array(0.0),
        "hi": np.array(6.0),
    }
    for k in (1, 2):
        inits[f"g{k}"] = np.exp(rng.uniform(math.log(0.05), math.log(2.0), 16))
        inits[f"be{k}"] = rng.standard_normal(16) * 0.05
        inits[f"m{k}"], inits[f"v{k}"] = np.zeros(16), np.ones(16)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4, name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "g1", "be1", "m1", "v1"], ["n1"],
                         name="bn1"),
        helper.make_node("Clip", ["n1", "lo", "hi"], ["r1"], name="clip1"),
        helper.make_node("Conv", ["r1", "wd", "bd"], ["c2"], pads=[1] * 4, group=16,
                         name="dw"),
        helper.make_node("BatchNormalization", ["c2", "g2", "be2", "m2", "v2"], ["n2"],
                         name="bn2"),
        helper.make_node("Clip", ["n2", "lo", "hi"], ["r2"], name="clip2"),
    ]  # fmt: skip
    pw_in = "r2"
    if second_reader:
        nodes.append(helper.make_node("Add", ["r2", "r1"], ["s"], name="add"))
        pw_in = "s"
    nodes.append(helper.make_node("Conv", [pw_in, "wp", "bp"], ["y"], name="pw"))
    graph = helper.make_graph(
        nodes,
        "spread_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, 16, 16)).astype(np.float32)


def build(ir) -> bytes:
    return builder.serialize(ir).tobytes()


def run(data: bytes, x: np.ndarray) -> np.ndarray:
    """The file's output ``y`` for one NCHW sample (the file takes NHWC: fed as stored)."""
    interp = litert_tensors.run_keeping_all_tensors(data, {"x": np.transpose(x, (0, 2, 3, 1))}, [])
    out = interp.get_output_details()[0]
    return np.asarray(interp.get_tensor(out["index"]), np.float64)


@pytest.fixture(scope="module")
def lowered():
    return pipeline.lower_model(spread_cnn())


def file_feeds(xs: np.ndarray) -> list[dict]:
    return [{"x": np.transpose(xs[k : k + 1], (0, 2, 3, 1))} for k in range(len(xs))]


def tensor_ranges(extremes: dict) -> dict:
    return {n: (float(e[0].min()), float(e[1].max())) for n, e in extremes.items()}


def test_both_pairs_are_found_and_the_float_function_is_kept(lowered):
    ir = copy.deepcopy(lowered.model_ir)
    pairs = EQ.pairs(ir)
    assert [(p.opcode, c.opcode) for p, _, c in pairs] == [
        ("CONV_2D", "DEPTHWISE_CONV_2D"),
        ("DEPTHWISE_CONV_2D", "CONV_2D"),
    ]
    xs = images(8, seed=3)
    plain = build(ir)
    names = {chain[0].name for _, chain, _ in pairs}
    extremes = EQ.channel_extremes(plain, file_feeds(xs), [], names)
    assert set(extremes) == names
    done, _ = EQ.equalize(ir, tensor_ranges(extremes), extremes)
    assert len(done) == 2
    equalized = build(ir)
    for k in range(len(xs)):  # the samples the extremes come from: no clamp newly binds
        want, got = run(plain, xs[k : k + 1]), run(equalized, xs[k : k + 1])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_weights_move_between_the_pair(lowered):
    """The producer's output channel c and the reader's input channel c change by inverse
    factors, the bias with the producer; the factors are the ones ``scales`` gives."""
    ir = copy.deepcopy(lowered.model_ir)
    (p, chain, c), _ = EQ.pairs(ir)
    w_p, b_p, w_c = p.inputs[1].data.copy(), p.inputs[2].data.copy(), c.inputs[1].data.copy()
    xs = images(8, seed=3)
    extremes = EQ.channel_extremes(build(ir), file_feeds(xs), [], {chain[0].name})
    ranges = tensor_ranges(extremes)
    EQ.equalize(ir, ranges, extremes)
    s = EQ.scales(extremes[chain[0].name], *ranges[chain[0].name])  # a depthwise reader
    assert s.max() > 4  # the gains spread over 40x: narrow channels widen
    np.testing.assert_allclose(p.inputs[1].data, w_p * s[:, None, None, None], rtol=1e-6)
    np.testing.assert_allclose(p.inputs[2].data, b_p * s, rtol=1e-6)
    np.testing.assert_allclose(c.inputs[1].data, w_c / s, rtol=1e-6)


def test_scales_keep_each_channel_inside_the_tensor_range(monkeypatch):
    extremes = np.array([[-1.0, 0.0, 0.0, -0.1, 0.0], [2.0, 0.5, 0.0, 0.1, 1e-6]])
    s = EQ.scales(extremes, -2.0, 4.0)  # with the headroom: the extremes x HEADROOM inside
    widened = extremes * s * EQ.HEADROOM
    assert widened[0].min() >= -2.0 - 1e-12 and widened[1].max() <= 4.0 + 1e-12
    assert s[0] == pytest.approx(2.0 / EQ.HEADROOM)
    monkeypatch.setattr(EQ, "HEADROOM", 1.0)
    s = EQ.scales(extremes, -2.0, 4.0)
    # channel 0: min(4/2, -2/-1) = 2; 1: 4/0.5 = 8; 2: no values -> 1;
    # 3: min(40, 20) capped at MAX_SCALE; 4: 4e6 capped.
    np.testing.assert_allclose(s, [2.0, 8.0, 1.0, EQ.MAX_SCALE, EQ.MAX_SCALE])
    widened = extremes * s
    assert widened[0].min() >= -2.0 - 1e-12 and widened[1].max() <= 4.0 + 1e-12
    assert EQ.scales(np.array([[0.0], [6.0]]), 0.0, 6.0)[0] == 1.0  # the widest stays


def test_two_readers_or_a_graph_output_are_not_paired():
    ir = pipeline.lower_model(spread_cnn(second_reader=True)).model_ir
    # clip1's output has two readers (dw and add); the dw output one (the add).
    assert EQ.pairs(ir) == []
    ir = copy.deepcopy(pipeline.lower_model(spread_cnn()).model_ir)
    sub = ir.subgraphs[0]
    sub.outputs = [*sub.outputs, sub.operators[0].outputs[0]]  # conv1's output exposed
    assert [p.opcode for p, _, _ in EQ.pairs(ir)] == ["DEPTHWISE_CONV_2D"]


def test_auto_uses_equalization_when_it_measures_better_and_meets_the_target():
    model = spread_cnn()
    calib = {"x": images(16, seed=1)}
    plain = convert(model, quantize=["int8"], calibration_data=calib)
    int8_db = sqnr(model, plain.variants["integer_quant"], plain.report["io"], held_back(calib))
    target = math.floor(int8_db) + 3.0
    res = convert(model, quantize=["auto"], target_sqnr=target, calibration_data=calib)
    eq = auto_section(res)["auto"]["equalization"]
    assert eq["used"] and eq["equalized"] == 2
    assert eq["equalized_all_int8_sensitivity_sqnr_db"] > eq["all_int8_sensitivity_sqnr_db"] + 0.5
    got = sqnr(model, res.variants["auto_quant"], res.report["io"], held_back(calib))
    assert got >= target


def test_auto_measures_the_range_method_unless_the_user_chose_one():
    """``minmax`` (the default) and ``mse`` ranges: the all-int8 file of each is measured and
    the better kept (the report gives both figures); a method the user gave is kept."""
    model = spread_cnn()
    calib = {"x": images(16, seed=1)}
    plain = convert(model, quantize=["int8"], calibration_data=calib)
    int8_db = sqnr(model, plain.variants["integer_quant"], plain.report["io"], held_back(calib))
    target = math.floor(int8_db) + 3.0
    res = convert(model, quantize=["auto"], target_sqnr=target, calibration_data=calib)
    r = auto_section(res)["auto"]["activation_ranges"]
    assert r["chosen_by"] == "measurement"
    figures = {m: r[f"{m}_all_int8_sensitivity_sqnr_db"] for m in ("minmax", "mse")}
    assert r["method"] == max(figures, key=figures.get)
    res = convert(
        model,
        quantize=["auto"],
        target_sqnr=target,
        calibration_data=calib,
        calibration_method="percentile",
    )
    r = auto_section(res)["auto"]["activation_ranges"]
    assert r == {"method": "percentile", "chosen_by": "--calibration-method"}
