"""``--quantize auto --target-sqnr DB`` (issue 21 item 4), proven in LiteRT.

Each test converts a real small model (the CNN of test_quant_overrides, its BatchNormalizations
re-estimated on the data so activations are not near-constant; a BERT-like encoder block) with
a target between the all-int8 file's SQNR and the float model's, and checks independently of the
report: the written ``_auto_quant`` file, run in LiteRT on the held-back calibration samples,
meets the target against onnxruntime's float model; its operators run at the precisions the
report's assignment says; the int8 share of multiply-accumulates is what the file's CONV_2D /
FULLY_CONNECTED inputs say. A target the float model itself misses is refused
(``target_sqnr_unreachable``, exit 2, nothing written); bad values are option errors naming
the flag.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_quant_overrides import bn_cnn, op_dtypes, samples, tokens, transformer_block

from onnx2tflite_direct import BadInputError, convert
from onnx2tflite_direct import validate as V
from onnx2tflite_direct.cli import main as cli_main
from onnx2tflite_direct.quant import auto, auto_measure

CALIB = samples(32, seed=1)  # 16 for ranges and sensitivities, the last 16 held back
TOKENS = {"x": tokens(16, seed=5)}


def held_back(data: dict) -> dict:
    n = len(next(iter(data.values())))
    held = min(auto.MAX_HELD_BACK, n - 1, max(1, round(n * auto.HELD_BACK_SHARE)))
    return {k: v[n - held :] for k, v in data.items()}


def not_held_back(data: dict) -> dict:
    """The calibration samples ``auto`` fits its ranges to (all but the held-back ones)."""
    n = len(next(iter(data.values())))
    held = len(next(iter(held_back(data).values())))
    return {k: v[: n - held] for k, v in data.items()}


def sqnr(model: onnx.ModelProto, tflite: bytes, io_table, data: dict) -> float:
    """Worst output's SQNR (dB) of the file against onnxruntime over every sample of ``data``."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    run = V.litert_runner(tflite, io_table)
    ref, got = [], []
    for k in range(len(data["x"])):
        feeds = {"x": data["x"][k : k + 1]}
        ref.append(sess.run(None, feeds)[0].ravel())
        got.append(run(feeds)["y"].ravel())
    r, g = np.concatenate(ref).astype(np.float64), np.concatenate(got).astype(np.float64)
    return 10 * math.log10(np.sum(r**2) / np.sum((r - g) ** 2))


def auto_section(result) -> dict:
    return next(s for s in result.report["quantization"] if s["kind"] == "auto_quant")


def mac_share_from_file(tflite: bytes, model_macs: dict) -> float:
    """int8 share of the MACs, from the file: CONV_2D / FULLY_CONNECTED / BATCH_MATMUL whose
    activation input is int8, weighted by the MACs of the ops in graph order."""
    ops = [d for name, d in op_dtypes(tflite) if name in auto_measure.MAC_OPS]
    assert len(ops) == len(model_macs)
    total = sum(model_macs)
    return sum(m for d, m in zip(ops, model_macs, strict=True) if d[0] == "int8") / total


@pytest.fixture(scope="module")
def cnn():
    return bn_cnn()


@pytest.fixture(scope="module")
def cnn_int8(cnn):
    """The all-int8 figure on the held-back samples: the default int8 file calibrated, as the
    auto search's is, on the other samples."""
    res = convert(cnn, quantize=["int8"], calibration_data=not_held_back(CALIB))
    return sqnr(cnn, res.variants["integer_quant"], res.report["io"], held_back(CALIB))


def test_cnn_meets_a_target_above_int8_in_litert(cnn, cnn_int8, tmp_path):
    target = round(cnn_int8 + 6.0)
    res = convert(cnn, tmp_path, quantize=["auto"], target_sqnr=target, calibration_data=CALIB)
    written = [p.name for p in tmp_path.glob("*_auto_quant.tflite")]
    assert len(written) == 1, written
    data = res.variants["auto_quant"]
    assert (tmp_path / written[0]).read_bytes() == data
    # Independently of the report: LiteRT on the held-back samples vs onnxruntime.
    measured = sqnr(cnn, data, res.report["io"], held_back(CALIB))
    section = auto_section(res)
    a = section["auto"]
    assert measured >= target
    assert abs(measured - a["sqnr_db"]) < 0.05
    assert a["target_met"] and a["held_back_samples"] == 16 and a["calibration_samples"] == 16
    assert a["verification_samples"] == 16 and "lower confidence bound" in a["bound"]
    assert a["sqnr_lower_bound_db"] == pytest.approx(a["sqnr_db"] - a["margin_db"])
    assert a["sqnr_lower_bound_db"] >= target
    assert a["all_int8_sqnr_db"] < target  # the search had something to do
    # Every candidate node has a precision and a reason; some stay integer.
    rows = {r["node"]: r for r in a["assignment"]}
    assert set(rows) >= {"conv1", "conv2", "conv3", "fc"}
    assert all(r["precision"] in ("int8", "int16x8", "float") and r["why"] for r in rows.values())
    assert any(r["precision"] != "float" for r in rows.values())
    # The file's convolutions run at the assigned precisions.
    conv_inputs = [d[0] for name, d in op_dtypes(data) if name == "CONV_2D"]
    want = {"int8": "int8", "int16x8": "int16", "float": "float32"}
    assert conv_inputs == [want[rows[f"conv{i}"]["precision"]] for i in (1, 2, 3)]
    assert 0.0 <= a["int8_mac_share"] <= 1.0
    shares = a["int8_mac_share"] + a["int16x8_mac_share"] + a["float_mac_share"]
    assert abs(shares - 1.0) < 1e-9


def test_cnn_int8_mac_share_matches_the_file(cnn, cnn_int8):
    res = convert(cnn, quantize=["auto"], target_sqnr=round(cnn_int8 + 3.0), calibration_data=CALIB)
    a = auto_section(res)["auto"]
    rows = {r["node"]: r for r in a["assignment"]}
    order = ["conv1", "conv2", "conv3", "fc"]
    macs = [rows[n]["macs"] for n in order]
    # conv: out elems * 3*3*cin; fc: 32 * 64
    assert macs == [16 * 16 * 16 * 27, 32 * 8 * 8 * 144, 64 * 4 * 4 * 288, 32 * 64]
    assert a["int8_mac_share"] == pytest.approx(
        mac_share_from_file(res.variants["auto_quant"], macs)
    )
    assert a["int8_mac_share"] > 0  # a 3 dB step keeps some of the MACs in int8


def test_a_target_the_int8_file_meets_keeps_everything_int8(cnn, cnn_int8):
    res = convert(
        cnn, quantize=["auto"], target_sqnr=math.floor(cnn_int8) - 1, calibration_data=CALIB
    )
    a = auto_section(res)["auto"]
    assert a["int8_mac_share"] == 1.0 and a["conversions"] == 1
    assert all(r["precision"] == "int8" for r in a["assignment"])
    assert sqnr(cnn, res.variants["auto_quant"], res.report["io"], held_back(CALIB)) >= (
        math.floor(cnn_int8) - 1
    )


def test_transformer_block_meets_the_target_in_litert():
    model = transformer_block()
    base = convert(model, quantize=["int8"], calibration_data=not_held_back(TOKENS))
    int8_db = sqnr(model, base.variants["integer_quant"], base.report["io"], held_back(TOKENS))
    target = round(int8_db + 3.0)
    res = convert(model, quantize=["auto"], target_sqnr=target, calibration_data=TOKENS)
    a = auto_section(res)["auto"]
    measured = sqnr(model, res.variants["auto_quant"], res.report["io"], held_back(TOKENS))
    assert measured >= target and a["target_met"]
    assert abs(measured - a["sqnr_db"]) < 0.05
    # Not everything went float: the attention / MLP matmuls keep integer kernels somewhere.
    precisions = {r["precision"] for r in a["assignment"]}
    assert precisions & {"int8", "int16x8"}
    fcs = [d[0] for name, d in op_dtypes(res.variants["auto_quant"]) if name == "FULLY_CONNECTED"]
    assert any(d in ("int8", "int16") for d in fcs)


def test_a_target_the_float_model_misses_is_refused(cnn, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(BadInputError) as info:
        convert(cnn, out, quantize=["auto", "int8"], target_sqnr=200, calibration_data=CALIB)
    assert info.value.reason_code == "target_sqnr_unreachable"
    assert info.value.exit_code == 2
    assert "target_sqnr 200" in info.value.message and "float model itself" in info.value.message
    assert not out.exists() or not any(out.iterdir())


def test_cli_unreachable_target_names_the_flag(cnn, tmp_path, capsys):
    path = tmp_path / "cnn.onnx"
    onnx.save(cnn, path)
    np.save(tmp_path / "calib.npy", CALIB["x"])
    out = tmp_path / "out"
    code = cli_main(
        [str(path), "-o", str(out), "--quantize", "auto", "--target-sqnr", "200",
         "--calibration-data", f"x={tmp_path / 'calib.npy'}"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("target_sqnr_unreachable" in e and "--target-sqnr 200" in e for e in err), err
    assert not (out / "cnn_auto_quant.tflite").exists() and not (out / "cnn.tflite").exists()


def test_cli_writes_the_auto_file(cnn, cnn_int8, tmp_path):
    path = tmp_path / "cnn.onnx"
    onnx.save(cnn, path)
    np.save(tmp_path / "calib.npy", CALIB["x"])
    out = tmp_path / "out"
    code = cli_main(
        [str(path), "-o", str(out), "--quantize", "auto", "--target-sqnr",
         str(round(cnn_int8 + 4)), "--calibration-data", f"x={tmp_path / 'calib.npy'}"]
    )  # fmt: skip
    assert code == 0
    assert (out / "cnn_auto_quant.tflite").is_file()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"quantize": ["auto"]}, "target_sqnr"),
        ({"quantize": ["int8"], "target_sqnr": 40}, "only applies to"),
        ({"quantize": ["auto"], "target_sqnr": 0}, "(0, 200]"),
        ({"quantize": ["auto"], "target_sqnr": -3.0}, "(0, 200]"),
        ({"quantize": ["auto"], "target_sqnr": float("nan")}, "(0, 200]"),
        ({"quantize": ["auto"], "target_sqnr": "40"}, "(0, 200]"),
    ],
)
def test_bad_target_is_an_option_error(cnn, tmp_path, kwargs, needle):
    out = tmp_path / "out"
    with pytest.raises(BadInputError) as info:
        convert(cnn, out, calibration_data=CALIB, **kwargs)
    assert info.value.reason_code == "invalid_option" and info.value.exit_code == 2
    assert needle in info.value.message and "target_sqnr" in info.value.message
    assert not out.exists()


def test_cli_target_without_auto_exits_2_naming_the_flag(cnn, tmp_path, capsys):
    path = tmp_path / "cnn.onnx"
    onnx.save(cnn, path)
    out = tmp_path / "out"
    code = cli_main(
        [str(path), "-o", str(out), "--quantize", "int8", "--calibration-random",
         "--target-sqnr", "40"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--target-sqnr" in err[0] and "--quantize auto" in err[0]
    assert not out.exists()


def test_one_calibration_sample_is_not_enough(cnn):
    with pytest.raises(BadInputError) as info:
        convert(cnn, quantize=["auto"], target_sqnr=30, calibration_data={"x": CALIB["x"][:1]})
    assert info.value.exit_code == 2 and "at least 2 calibration samples" in info.value.message


def test_user_overrides_are_kept_and_not_candidates(cnn, cnn_int8):
    res = convert(
        cnn, quantize=["auto"], target_sqnr=round(cnn_int8 + 3), calibration_data=CALIB,
        quant_overrides=["conv1=float"],
    )  # fmt: skip
    a = auto_section(res)["auto"]
    assert "conv1" not in {r["node"] for r in a["assignment"]}
    assert a["fixed_by_quant_override"] == ["conv1"]
    conv_inputs = [d[0] for name, d in op_dtypes(res.variants["auto_quant"]) if name == "CONV_2D"]
    assert conv_inputs[0] == "float32"


def fc_weights(tflite: bytes) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    interp.allocate_tensors()
    op = next(o for o in interp._get_ops_details() if o["op_name"] == "FULLY_CONNECTED")
    return interp.get_tensor(op["inputs"][1])


def test_float_override_of_a_softmax_heads_logits_keeps_float_weights(cnn):
    """The FULLY_CONNECTED computing a float softmax head's logits keeps int8 hybrid weights
    by default; overridden to float (what ``auto`` assigns when their noise does not fit) it
    keeps the model's float32 weights exactly."""
    model = onnx.ModelProto()
    model.CopyFrom(cnn)
    model.graph.node[-1].output[0] = "logits"
    model.graph.node.append(onnx.helper.make_node("Softmax", ["logits"], ["y"], name="head"))
    base = convert(model, quantize=["int8"], calibration_data=CALIB)
    kept = convert(model, quantize=["int8"], calibration_data=CALIB, quant_overrides=["fc=float"])
    assert fc_weights(base.variants["integer_quant"]).dtype == np.int8
    wf = next(onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "wf")
    np.testing.assert_array_equal(fc_weights(kept.variants["integer_quant"]), wf)
    # and the file still computes the model (its softmax within 30 dB of onnxruntime's)
    assert sqnr(model, kept.variants["integer_quant"], kept.report["io"], held_back(CALIB)) > 30


def test_a_softmax_heads_logits_never_get_an_integer_output(cnn, cnn_int8):
    """The logits of a float softmax head stay float activations in the auto file (int8
    hybrid weights or float ones): an integer output would clip logits beyond the calibrated
    range on unseen inputs, which the head turns into large probability errors."""
    model = onnx.ModelProto()
    model.CopyFrom(cnn)
    model.graph.node[-1].output[0] = "logits"
    model.graph.node.append(onnx.helper.make_node("Softmax", ["logits"], ["y"], name="head"))
    res = convert(model, quantize=["auto"], target_sqnr=45, calibration_data=CALIB)
    a = auto_section(res)["auto"]
    fc = next(r for r in a["assignment"] if r["node"] == "fc")
    assert fc["precision"] in ("int8-weights", "float")
    ops = op_dtypes(res.variants["auto_quant"])
    assert next(d for name, d in ops if name == "FULLY_CONNECTED")[0] == "float32"
    assert sqnr(model, res.variants["auto_quant"], res.report["io"], held_back(CALIB)) >= 45
