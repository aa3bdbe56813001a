"""Full-integer means integer (issue 21 item 1): the ``*_full_integer_quant*`` file runs integer
kernels only, or it is refused naming the node, op and reason; normalizations run as integer
compositions (int16 inside the int8 file) measured against onnxruntime; the TFLite-only
temporaries of a lowering get calibrated ranges from a LiteRT run of the float model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from harness import make_model, operators_with_float_flag
from onnx import helper, numpy_helper

from onnx2tflite_direct import UnsupportedError, cli, convert, errors
from onnx2tflite_direct import tflite_reader as R
from onnx2tflite_direct import validate as V
from onnx2tflite_direct.lowering import recurrent
from onnx2tflite_direct.quant import variants


def _samples(model, count, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for vi in V.graph_inputs(model):
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        out[vi.name] = rng.standard_normal((count * shape[0], *shape[1:])).astype(np.float32)
    return out


def _float_ops(tflite: bytes) -> list[str]:
    """Opcodes of the operators (every subgraph) reading or writing a float tensor."""
    return [code for code, floating in operators_with_float_flag(tflite) if floating]


def _sqnr_db(expected, actual) -> float:
    noise = np.sum((expected.astype(np.float64) - actual) ** 2)
    return float(10 * np.log10(np.sum(expected.astype(np.float64) ** 2) / max(noise, 1e-30)))


def _summary(res, kind):
    return next(s for s in res.report["quantization"] if s["kind"] == kind)


def with_sin():
    """MatMul -> Sin -> MatMul: SIN has no integer kernel in LiteRT."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Sin", ["h"], ["s"], name="wave"),
        helper.make_node("MatMul", ["s", "w2"], ["y"]),
    ]
    inits = {
        "w1": (rng.standard_normal((16, 16)) * 0.3).astype(np.float32),
        "w2": (rng.standard_normal((16, 8)) * 0.3).astype(np.float32),
    }
    return make_model(
        nodes,
        inputs=[("x", np.float32, (4, 16))],
        outputs=[("y", np.float32, (4, 8))],
        initializers=inits,
    )


def encoder_block(tokens=16, dim=32, seed=0):
    """x -> MatMul -> LayerNormalization -> MatMul -> Gelu-free ReLU MLP, with a residual Add:
    the LayerNormalization is what used to stay float."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "x"], ["r"]),
        helper.make_node("LayerNormalization", ["r", "g", "b"], ["n"], axis=-1, name="norm"),
        helper.make_node("MatMul", ["n", "w2"], ["m"]),
        helper.make_node("Relu", ["m"], ["a"]),
        helper.make_node("MatMul", ["a", "w3"], ["y"]),
    ]
    inits = {
        "w1": (rng.standard_normal((dim, dim)) / np.sqrt(dim)).astype(np.float32),
        "g": (1.0 + 0.1 * rng.standard_normal(dim)).astype(np.float32),
        "b": (0.05 * rng.standard_normal(dim)).astype(np.float32),
        "w2": (rng.standard_normal((dim, 2 * dim)) / np.sqrt(dim)).astype(np.float32),
        "w3": (rng.standard_normal((2 * dim, dim)) / np.sqrt(2 * dim)).astype(np.float32),
    }
    return make_model(
        nodes,
        inputs=[("x", np.float32, (1, tokens, dim))],
        outputs=[("y", np.float32, (1, tokens, dim))],
        initializers=inits,
        opset=17,
    )


def test_full_integer_file_with_a_float_op_is_refused_alone_naming_it(caplog):
    model = with_sin()
    data = _samples(model, 8, seed=1)
    res = convert(model, quantize=["int8"], calibration_data=data)
    assert "full_integer_quant" not in res.variants
    assert "integer_quant" in res.variants  # the float-I/O file keeps its float island
    refused = _summary(res, "full_integer_quant")["refused"]
    assert refused["reason_code"] == errors.INTEGER_KERNEL_UNAVAILABLE
    message = refused["message"]
    assert "'wave'" in message and "SIN" in message and "no integer kernel" in message
    assert "--allow-float-ops" in message and "--quant-override" in message
    assert any("full_integer_quant not written" in r.getMessage() for r in caplog.records)
    # The float-I/O file is still right: its SIN island is reported and it tracks onnxruntime.
    islands = _summary(res, "integer_quant")["float_ops"]
    assert [f["onnx_node"] for f in islands] == ["wave"]


def test_allow_float_ops_writes_the_float_islands_and_strict_refuses_everything():
    model = with_sin()
    data = _samples(model, 8, seed=1)
    res = convert(model, quantize=["int8"], calibration_data=data, allow_float_ops=True)
    assert "SIN" in _float_ops(res.variants["full_integer_quant"])
    with pytest.raises(UnsupportedError) as info:
        convert(model, quantize=["int8"], calibration_data=data, strict_integer=True)
    assert info.value.reason_code == errors.INTEGER_KERNEL_UNAVAILABLE
    assert "'wave'" in info.value.message


def test_a_float_override_accepts_the_island_in_the_full_integer_file():
    model = with_sin()
    data = _samples(model, 8, seed=1)
    res = convert(model, quantize=["int8"], calibration_data=data, quant_overrides=["wave=float"])
    assert _float_ops(res.variants["full_integer_quant"]) == ["DEQUANTIZE", "SIN", "QUANTIZE"]


def test_layer_norm_runs_in_integer_and_is_as_accurate_as_the_float_island():
    """The LayerNormalization's MEAN/SUB/MUL/RSQRT run at int16 inside the int8 files (its
    temporaries calibrated in LiteRT): no float op, and SQNR against onnxruntime within 1 dB
    of the file keeping it a float island (measured: 31.2 dB at int16, 31.7 dB as an island, 30.1 dB at int8)."""
    model = encoder_block()
    calib = _samples(model, 16, seed=3)
    held_out = _samples(model, 4, seed=4)
    res = convert(model, quantize=["int8"], calibration_data=calib)
    full = res.variants["full_integer_quant"]
    assert _float_ops(full) == []
    precision = {r["node"]: r for r in _summary(res, "full_integer_quant")["precision"]}
    assert precision["norm"]["precision"] == "int16x8"
    island = convert(
        model, quantize=["int8"], calibration_data=calib, quant_overrides=["norm=float"]
    )
    feeds = [{"x": held_out["x"][i : i + 1]} for i in range(4)]
    expected = np.concatenate([V.run_onnxruntime(model, f)["y"] for f in feeds])

    def sqnr(data):
        got = np.concatenate([V.run_litert(data, f, res.report["io"])["y"] for f in feeds])
        return _sqnr_db(expected, got)

    integer, floating = sqnr(full), sqnr(island.variants["full_integer_quant"])
    assert integer >= floating - 1.0, (integer, floating)
    assert integer > 25.0, integer


def test_temporaries_are_calibrated_on_the_float_model():
    """The variance temporary of a LayerNormalization (no ONNX name) gets the min/max of the
    per-row variances over the calibration samples, as numpy computes them."""
    model = encoder_block(tokens=4, dim=8)
    calib = _samples(model, 6, seed=5)
    res = convert(model)
    names = {r["name"] for r in R.tensor_table(res.tflite_bytes)}
    captured = {}
    original = variants.temporary_ranges

    def spy(model_ir, build_, data, batches, tensor_map, known):
        captured.update(original(model_ir, build_, data, batches, tensor_map, known))
        return captured

    variants.temporary_ranges = spy
    try:
        convert(model, quantize=["int8"], calibration_data=calib)
    finally:
        variants.temporary_ranges = original
    assert captured and set(captured) <= names
    # numpy: r = x @ w1 + x; variance over the last axis, per row, over all samples
    x = calib["x"].astype(np.float64)
    w1 = next(i for i in model.graph.initializer if i.name == "w1")
    r = x @ numpy_helper.to_array(w1).astype(np.float64) + x
    var = r.var(axis=-1)
    lo, hi = var.min(), var.max()
    matches = [
        rng
        for rng in captured.values()
        if np.isclose(rng[0], lo, rtol=1e-4) and np.isclose(rng[1], hi, rtol=1e-4)
    ]
    assert matches, (lo, hi, captured)


def lstm_model(steps=6, hidden=8, size=4):
    rng = np.random.default_rng(3)
    return make_model(
        [helper.make_node("LSTM", ["x", "W", "R"], ["", "y_h"], hidden_size=hidden, name="lstm")],
        inputs=[("x", np.float32, (steps, 1, size))],
        outputs=[("y_h", np.float32, (1, 1, hidden))],
        initializers={
            "W": (rng.standard_normal((1, 4 * hidden, size)) * 0.5).astype(np.float32),
            "R": (rng.standard_normal((1, 4 * hidden, hidden)) * 0.5).astype(np.float32),
        },
    )


def test_recurrent_loop_is_replaced_by_an_integer_form(monkeypatch):
    """The float file's WHILE loop has no integer kernel: the full-integer file swaps in a form
    that has (tests/test_full_integer_recurrent.py; a dynamic sequence length is refused)."""
    monkeypatch.setattr(recurrent, "UNROLL_STEPS", range(0))  # the WHILE loop form
    model = lstm_model()
    res = convert(model, quantize=["int8"], calibration_data=_samples(model, 8, seed=6))
    assert "refused" not in _summary(res, "full_integer_quant")
    assert _float_ops(res.variants["full_integer_quant"]) == []


def test_unrolled_lstm_runs_in_integer():
    """Unrolled cells (``--unroll-rnn``, or short sequences by default) run integer kernels:
    their gate temporaries are calibrated on the float model and the cells run at int16
    activations inside the int8 file (measured 22.1 dB on held-out sequences, 8 calibration
    samples; benchmarks/bench_full_integer.py: 2-layer LSTM 27.6 -> 34.6 dB with int16 cells)."""
    model = lstm_model()
    calib = _samples(model, 8, seed=6)
    res = convert(model, quantize=["int8"], calibration_data=calib, unroll_rnn=True)
    full = res.variants["full_integer_quant"]
    assert _float_ops(full) == []
    precision = _summary(res, "full_integer_quant")["precision"]
    assert [(r["node"], r["precision"]) for r in precision] == [("lstm", "int16x8")]
    held_out = _samples(model, 8, seed=7)
    feeds = [{"x": held_out["x"][6 * i : 6 * (i + 1)]} for i in range(8)]
    expected = np.concatenate([V.run_onnxruntime(model, f)["y_h"] for f in feeds])
    got = np.concatenate([V.run_litert(full, f, res.report["io"])["y_h"] for f in feeds])
    assert _sqnr_db(expected, got) > 18.0


def lrn_model(beta):
    """Conv -> LRN (AlexNet/GoogLeNet's) -> Conv, NCHW."""
    rng = np.random.default_rng(8)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("LRN", ["c"], ["n"], size=5, alpha=1e-3, beta=beta, bias=1.0, name="lrn"),
        helper.make_node("Conv", ["n", "w2"], ["y"]),
    ]
    inits = {
        "w1": (rng.standard_normal((16, 3, 3, 3)) * 0.5).astype(np.float32),
        "w2": (rng.standard_normal((8, 16, 1, 1)) * 0.3).astype(np.float32),
    }
    return make_model(
        nodes,
        inputs=[("x", np.float32, (1, 3, 12, 12))],
        outputs=[("y", np.float32, (1, 8, 12, 12))],
        initializers=inits,
    )


@pytest.mark.parametrize("beta", [0.75, 0.5])
def test_lrn_runs_as_an_integer_composition(beta):
    """LiteRT has no integer LRN kernel: MUL, a 1x1 CONV_2D band sum, RSQRT (SQRT) and MULs
    compute it, at int16 inside the int8 file; as accurate as keeping the LRN a float island
    (measured 32.7 vs 32.8 dB at beta 0.75, 32.9 vs 32.9 at 0.5)."""
    model = lrn_model(beta)
    calib = _samples(model, 16, seed=9)
    held_out = _samples(model, 4, seed=10)
    feeds = [{"x": held_out["x"][i : i + 1]} for i in range(4)]
    expected = np.concatenate([V.run_onnxruntime(model, f)["y"] for f in feeds])
    res = convert(model, quantize=["int8"], calibration_data=calib, keep_io_layout=True)
    full = res.variants["full_integer_quant"]
    assert _float_ops(full) == []
    ops = R.operator_codes(R.root(full))
    assert "LOCAL_RESPONSE_NORMALIZATION" not in {name for name, _, _ in ops}
    island = convert(
        model,
        quantize=["int8"],
        calibration_data=calib,
        keep_io_layout=True,
        allow_float_ops=True,
        quant_overrides=["lrn=float"],
    )

    def sqnr(data):
        got = np.concatenate([V.run_litert(data, f, res.report["io"])["y"] for f in feeds])
        return _sqnr_db(expected, got)

    integer, floating = sqnr(full), sqnr(island.variants["full_integer_quant"])
    assert integer >= floating - 1.0, (integer, floating)
    assert integer > 30.0, integer


def test_cli_writes_the_other_files_and_says_why_the_full_integer_file_is_missing(tmp_path, capsys):
    model = with_sin()
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", _samples(model, 8, seed=1)["x"])
    args = [str(tmp_path / "m.onnx"), "-o", str(tmp_path / "out"), "--quantize", "int8"]
    code = cli.main([*args, "--calibration-data", f"x={tmp_path / 'x.npy'}"])
    err = capsys.readouterr().err
    assert code == 0, err
    written = sorted(p.name for p in (tmp_path / "out").glob("*.tflite"))
    assert written == ["m_float32.tflite", "m_integer_quant.tflite"]
    (line,) = [ln for ln in err.splitlines() if "full_integer_quant not written" in ln]
    assert "[integer_kernel_unavailable]" in line and "'wave'" in line and "SIN" in line
    code = cli.main([*args, "--calibration-data", f"x={tmp_path / 'x.npy'}", "--allow-float-ops"])
    assert code == 0
    assert (tmp_path / "out" / "m_full_integer_quant.tflite").exists()


def test_temporaries_of_a_dynamic_sequence_are_calibrated():
    """Calibration samples of another length than the declared one (a symbolic sequence):
    the float interpreter is resized to them, and the LayerNorm still runs integer."""
    model = encoder_block()
    for vi in (model.graph.input[0], model.graph.output[0]):
        vi.type.tensor_type.shape.dim[1].dim_param = "T"
    calib = {"x": np.random.default_rng(11).standard_normal((8, 16, 32)).astype(np.float32)}
    res = convert(model, quantize=["int8"], calibration_data=calib)
    assert _float_ops(res.variants["full_integer_quant"]) == []
    feeds = {"x": np.random.default_rng(12).standard_normal((1, 10, 32)).astype(np.float32)}
    expected = V.run_onnxruntime(model, feeds)["y"]
    got = V.run_litert(res.variants["integer_quant"], feeds, res.report["io"])["y"]
    assert _sqnr_db(expected, got) > 28.0  # measured 33.4 dB
