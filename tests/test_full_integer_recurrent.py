"""Recurrent layers in the full-integer files (issue 21 item 1): an LSTM runs LiteRT's integer
UNIDIRECTIONAL_SEQUENCE_LSTM (8x8->16) in the int8 files, a GRU/RNN (and an LSTM the kernel
cannot express) the unrolled cell, whatever form the float file uses; only a dynamic sequence
length keeps the WHILE loop, and the strict full-integer file is then refused naming it.

Accuracy is judged against the float ONNX model in onnxruntime (SQNR over held-out sequences),
never bit equality with an integer reference: the floors sit a few dB under the figures measured
on x86-64 (noted per test), which rounding differences between CPUs cannot eat."""

from __future__ import annotations

import numpy as np
import pytest
from harness import make_model, operators_with_float_flag
from onnx import helper, numpy_helper

from onnx2tflite_direct import convert, errors
from onnx2tflite_direct import tflite_reader as R
from onnx2tflite_direct import validate as V
from onnx2tflite_direct.lowering import recurrent, recurrent_kernels
from onnx2tflite_direct.quant import integer_lstm, recurrent_forms

# LiteRT op resolvers: BUILTIN (XNNPACK delegate applied), BUILTIN_WITHOUT_DEFAULT_DELEGATES.
XNNPACK = (True, False)
STEPS, SIZE, HIDDEN = 12, 6, 16


def _ops(tflite: bytes) -> list[tuple[str, bool]]:
    """(opcode, reads or writes a float tensor) of every operator of every subgraph."""
    return operators_with_float_flag(tflite)


def _sqnr_db(expected, actual) -> float:
    noise = np.sum((expected.astype(np.float64) - actual) ** 2)
    return float(10 * np.log10(np.sum(expected.astype(np.float64) ** 2) / max(noise, 1e-30)))


def rnn_model(
    op="LSTM", layers=2, steps=STEPS, seq_dim=None, peepholes=False, y_c=False, hidden=HIDDEN
):
    """``layers`` stacked forward layers (Y squeezed into the next layer's X); output Y of the
    last layer (and its Y_c with ``y_c``). Weights scaled so the gates are not saturated."""
    rng = np.random.default_rng(11)
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    nodes, inits, x, size = [], {"axes": np.array([1], np.int64)}, "x", SIZE
    for k in range(layers):
        names = [x, f"W{k}", f"R{k}", f"B{k}"]
        inits[f"W{k}"] = (rng.standard_normal((1, gates * hidden, size)) * 0.4).astype(np.float32)
        inits[f"R{k}"] = (rng.standard_normal((1, gates * hidden, hidden)) * 0.3).astype(np.float32)
        inits[f"B{k}"] = (rng.standard_normal((1, 2 * gates * hidden)) * 0.2).astype(np.float32)
        if peepholes:
            names += ["", "", ""]
            names.append(f"P{k}")
            inits[f"P{k}"] = (rng.standard_normal((1, 3 * hidden)) * 0.3).astype(np.float32)
        last = k == layers - 1
        outs = [f"y{k}", "", "yc"] if (last and y_c) else [f"y{k}"]
        nodes.append(helper.make_node(op, names, outs, hidden_size=hidden, name=f"{op}{k}"))
        if not last:
            nodes.append(helper.make_node("Squeeze", [f"y{k}", "axes"], [f"x{k + 1}"]))
            x, size = f"x{k + 1}", hidden
    seq = seq_dim or steps
    outputs = [(f"y{layers - 1}", np.float32, (seq, 1, 1, hidden))]
    if y_c:
        outputs.append(("yc", np.float32, (1, 1, hidden)))
    return make_model(
        nodes, inputs=[("x", np.float32, (seq, 1, SIZE))], outputs=outputs, initializers=inits
    )


def _sequences(count, seed, steps=STEPS):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((steps, 1, SIZE)).astype(np.float32) for _ in range(count)]


def _calibration(seed=1):
    return {"x": np.concatenate(_sequences(16, seed))}


def _sqnr_vs_onnx(model, data: bytes, io, use_xnnpack=True) -> float:
    feeds = [{"x": x} for x in _sequences(8, seed=2)]
    names = [o.name for o in model.graph.output]
    expected = np.concatenate(
        [np.concatenate([V.run_onnxruntime(model, f)[n].ravel() for n in names]) for f in feeds]
    )
    got = []
    for f in feeds:
        outs = V.run_litert(data, f, io, use_xnnpack=use_xnnpack)
        got.append(np.concatenate([np.asarray(outs[n], np.float32).ravel() for n in names]))
    return _sqnr_db(expected, np.concatenate(got))


@pytest.fixture
def loop_form(monkeypatch):
    """The float file's LSTM/GRU in the WHILE-loop form (what longer/larger cells get)."""
    monkeypatch.setattr(recurrent, "UNROLL_STEPS", range(0))
    monkeypatch.setattr(recurrent_kernels, "MODE", "never")


@pytest.mark.parametrize("use_xnnpack", XNNPACK)
def test_lstm_loop_runs_the_integer_sequence_kernel(loop_form, use_xnnpack):
    """A 2-layer LSTM whose float file loops: the int8 full-integer file is 2 integer
    UNIDIRECTIONAL_SEQUENCE_LSTM kernels (int16 cell state) and copies, nothing float, with
    and without XNNPACK (measured 35.6 dB against onnxruntime's float model; the same model
    unrolled with --unroll-rnn, int16 cells: 27.7 dB)."""
    model = rnn_model("LSTM")
    res = convert(model, quantize=["int8"], calibration_data=_calibration())
    assert any(op == "WHILE" for op, _ in _ops(res.tflite_bytes))  # the float file loops
    full = res.variants["full_integer_quant"]
    ops = _ops(full)
    assert not [op for op, floating in ops if floating], ops
    assert [op for op, _ in ops].count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 2
    assert "WHILE" not in [op for op, _ in ops]
    assert _sqnr_vs_onnx(model, full, res.report["io"], use_xnnpack) > 32.0


def test_integer_kernel_tensors_follow_the_8x8_16_contract(loop_form):
    """What LiteRT's kernel reads: int8 X/Y/output state with Y's params, an int16 cell state
    with a power-of-two scale, int8 per-tensor weights, int32 biases at s_x * s_w, and 5
    intermediates (4 at 2^-12, the hidden one at the output's params)."""
    model = rnn_model("LSTM", layers=1)
    full = convert(model, quantize=["int8"], calibration_data=_calibration()).variants[
        "full_integer_quant"
    ]
    sch = R.schema()
    root = R.root(full, sch)
    codes = R.operator_codes(root, sch)
    sg = root.Subgraphs(0)
    rows = R.tensor_rows(root, sg, sch)
    lstm = next(
        sg.Operators(k)
        for k in range(sg.OperatorsLength())
        if codes[sg.Operators(k).OpcodeIndex()][0] == "UNIDIRECTIONAL_SEQUENCE_LSTM"
    )
    ins = list(lstm.InputsAsNumpy())
    t = [rows[i] if i >= 0 else None for i in ins]
    y = rows[lstm.OutputsAsNumpy()[0]]
    assert t[0]["dtype"] == "int8" and y["dtype"] == "int8"
    assert all(t[i]["dtype"] == "int8" for i in range(1, 9))
    assert all(t[i] is None for i in (9, 10, 11, 16, 17))
    assert all(t[i]["dtype"] == "int32" for i in range(12, 16))
    h, c = t[18], t[19]
    assert h["dtype"] == "int8" and h["quantization"] == y["quantization"]
    assert c["dtype"] == "int16" and c["quantization"]["zero_point"] == [0]
    exponent = np.log2(c["quantization"]["scale"][0])
    assert exponent == np.round(exponent) and -15 <= exponent <= -9
    s_x = t[0]["quantization"]["scale"][0]
    for gate in range(4):
        s_w = t[1 + gate]["quantization"]["scale"][0]
        assert np.isclose(t[12 + gate]["quantization"]["scale"][0], s_x * s_w, rtol=1e-6)
    inter = [rows[i] for i in lstm.IntermediatesAsNumpy()]
    assert [r["dtype"] for r in inter] == ["int16"] * 4 + ["int8"]
    assert all(r["quantization"]["scale"] == [2.0**-12] for r in inter[:4])
    assert inter[4]["quantization"] == y["quantization"]


def test_lstm_with_peepholes_runs_the_integer_kernel(loop_form):
    """Peepholes become the kernel's int16 cell-to-gate weights (measured 34.6 dB)."""
    model = rnn_model("LSTM", layers=1, peepholes=True)
    res = convert(model, quantize=["int8"], calibration_data=_calibration())
    full = res.variants["full_integer_quant"]
    ops = _ops(full)
    assert not [op for op, floating in ops if floating]
    assert ("UNIDIRECTIONAL_SEQUENCE_LSTM", False) in ops
    assert _sqnr_vs_onnx(model, full, res.report["io"]) > 31.0


@pytest.mark.parametrize("op", ["GRU", "RNN"])
def test_gru_and_rnn_loops_run_unrolled_in_the_integer_file(loop_form, op):
    """No integer sequence kernel: the integer files swap in the unrolled cell (int16x8 inside
    the int8 file), the very file --unroll-rnn writes; the float file keeps its loop
    (measured GRU 29.7 dB, RNN 35.8 dB)."""
    model = rnn_model(op, layers=1)
    res = convert(model, quantize=["int8"], calibration_data=_calibration())
    assert any(o == "WHILE" for o, _ in _ops(res.tflite_bytes))
    full = res.variants["full_integer_quant"]
    ops = _ops(full)
    assert not [o for o, floating in ops if floating]
    assert "WHILE" not in [o for o, _ in ops]
    summary = next(s for s in res.report["quantization"] if s["kind"] == "full_integer_quant")
    assert summary["recurrent_forms"] == [{"node": f"{op}0", "from": "loop", "to": "unrolled"}]
    sqnr = _sqnr_vs_onnx(model, full, res.report["io"])
    assert sqnr > {"GRU": 27.0, "RNN": 33.0}[op]
    unrolled = convert(model, quantize=["int8"], calibration_data=_calibration(), unroll_rnn=True)
    same = _sqnr_vs_onnx(model, unrolled.variants["full_integer_quant"], unrolled.report["io"])
    assert sqnr == pytest.approx(same, abs=0.5)  # (equal here; a margin for other CPUs)


def test_lstm_the_kernel_cannot_express_runs_unrolled(loop_form):
    """Y_c read: the integer kernel form does not fit (its int16 cell state is not an output
    here), so the unrolled cell runs in the int8 file (measured 26.8 dB)."""
    model = rnn_model("LSTM", layers=1, y_c=True)
    res = convert(model, quantize=["int8"], calibration_data=_calibration())
    full = res.variants["full_integer_quant"]
    ops = [o for o, _ in _ops(full)]
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops and "WHILE" not in ops
    assert not [o for o, floating in _ops(full) if floating]
    assert _sqnr_vs_onnx(model, full, res.report["io"]) > 24.0


def test_int16x8_file_runs_the_lstm_unrolled(loop_form):
    """LiteRT registers no 16x8 sequence-LSTM kernel on CPU: the int16x8 full-integer file
    swaps in the unrolled cell, as accurate as the --unroll-rnn file (measured 26.7 dB:
    the int8 weights bound it)."""
    model = rnn_model("LSTM", layers=1)
    res = convert(model, quantize=["int16x8"], calibration_data=_calibration())
    full = res.variants["full_integer_quant_with_int16_act"]
    ops = _ops(full)
    assert not [o for o, floating in ops if floating]
    assert {"UNIDIRECTIONAL_SEQUENCE_LSTM", "WHILE"}.isdisjoint(o for o, _ in ops)
    sqnr = _sqnr_vs_onnx(model, full, res.report["io"])
    assert sqnr > 24.0
    kind = "full_integer_quant_with_int16_act"
    unrolled = convert(
        model, quantize=["int16x8"], calibration_data=_calibration(), unroll_rnn=True
    )
    same = _sqnr_vs_onnx(model, unrolled.variants[kind], unrolled.report["io"])
    assert sqnr == pytest.approx(same, abs=0.5)  # (equal here; a margin for other CPUs)


def test_float_kernel_file_keeps_its_form_and_the_integer_file_uses_it(monkeypatch):
    """The float file chose LiteRT's float kernel: the int8 file runs the same kernel in
    integer; the float file itself is unchanged by the integer forms."""
    monkeypatch.setattr(recurrent_kernels, "MODE", "always")
    model = rnn_model("LSTM", layers=1)
    res = convert(model, quantize=["int8"], calibration_data=_calibration())
    assert [o for o, _ in _ops(res.tflite_bytes)].count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
    full = res.variants["full_integer_quant"]
    assert ("UNIDIRECTIONAL_SEQUENCE_LSTM", False) in _ops(full)
    assert not [o for o, floating in _ops(full) if floating]


def test_float_io_integer_file_keeps_the_loop_as_a_float_island(loop_form):
    """The float-I/O ``*_integer_quant`` file may keep float islands: the loop stays (float,
    reported), more accurate than an integer cell."""
    model = rnn_model("GRU", layers=1)
    res = convert(model, quantize=["int8"], calibration_data=_calibration())
    ops = [o for o, _ in _ops(res.variants["integer_quant"])]
    assert "WHILE" in ops
    summary = next(s for s in res.report["quantization"] if s["kind"] == "integer_quant")
    assert "recurrent_forms" not in summary
    assert any(f["op"] == "WHILE" for f in summary["float_ops"])


def test_unroll_rnn_float_file_is_unchanged(loop_form):
    """``--unroll-rnn`` still unrolls the float file (no loop, no kernel) and the integer
    file keeps that form."""
    model = rnn_model("LSTM", layers=1)
    res = convert(model, quantize=["int8"], calibration_data=_calibration(), unroll_rnn=True)
    float_ops = [o for o, _ in _ops(res.tflite_bytes)]
    assert {"WHILE", "UNIDIRECTIONAL_SEQUENCE_LSTM"}.isdisjoint(float_ops)
    full_ops = [o for o, _ in _ops(res.variants["full_integer_quant"])]
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in full_ops


def batch_first(layers=2, hidden=48):
    """x [1, T, SIZE] (T dynamic) -> Transpose -> ``layers`` LSTMs: at the dynamic-shape
    samples (64, 96 steps) a hidden-48 cell is a WHILE loop in the float file."""
    base = rnn_model("LSTM", layers=layers, seq_dim="T", hidden=hidden)
    inits = {i.name: numpy_helper.to_array(i) for i in base.graph.initializer}
    nodes = [helper.make_node("Transpose", ["xb"], ["x"], perm=[1, 0, 2]), *base.graph.node]
    out = base.graph.output[0].name
    return make_model(
        nodes,
        inputs=[("xb", np.float32, (1, "T", SIZE))],
        outputs=[(out, np.float32, ("T", 1, 1, hidden))],
        initializers=inits,
    )


@pytest.mark.parametrize("use_xnnpack", XNNPACK)
def test_dynamic_length_lstm_runs_the_integer_kernel_at_any_length(use_xnnpack):
    """The sequence kernel takes a run-time length: a dynamic-length 2-layer LSTM's loops
    become integer kernels, and the file runs 5, 12 and 30 steps (calibrated on 12-step
    sequences; measured 32.8, 32.0, 32.0 dB)."""
    model = batch_first()
    rng = np.random.default_rng(1)
    calib = {"xb": rng.standard_normal((16, STEPS, SIZE)).astype(np.float32)}
    res = convert(model, quantize=["int8"], calibration_data=calib)
    summary = next(s for s in res.report["quantization"] if s["kind"] == "full_integer_quant")
    assert [r["to"] for r in summary["recurrent_forms"]] == ["kernel", "kernel"]
    full = res.variants["full_integer_quant"]
    assert not [o for o, floating in _ops(full) if floating]
    out = model.graph.output[0].name
    for steps in (5, 12, 30):
        feeds = [{"xb": rng.standard_normal((1, steps, SIZE)).astype(np.float32)} for _ in range(8)]
        expected = np.concatenate([V.run_onnxruntime(model, f)[out] for f in feeds])
        got = np.concatenate(
            [V.run_litert(full, f, res.report["io"], use_xnnpack=use_xnnpack)[out] for f in feeds]
        )
        assert got.shape == expected.shape
        assert _sqnr_db(expected, got) > 29.0, steps


@pytest.mark.parametrize("op", ["GRU"])
def test_dynamic_sequence_length_is_refused_naming_the_loop(op):
    """A GRU's sequence length known only at run time keeps the WHILE loop (the unrolled
    cell has a fixed step count): the full-integer file is refused (the other files are
    written) naming the node, WHILE and how to pin it."""
    model = rnn_model(op, layers=1, seq_dim="T")
    res = convert(model, quantize=["int8"], calibration_data=_calibration())
    full = next(s for s in res.report["quantization"] if s["kind"] == "full_integer_quant")
    refused = full["refused"]
    assert refused["reason_code"] == errors.INTEGER_KERNEL_UNAVAILABLE
    message = refused["message"]
    assert f"'{op}0'" in message and "WHILE" in message and "--input-shape" in message
    assert "integer_quant" in res.variants


def test_cell_scale_is_a_power_of_two_within_the_kernel_bounds():
    assert integer_lstm.cell_scale(1.0) == 2.0**-15
    assert integer_lstm.cell_scale(3.0) == 2.0**-13
    assert integer_lstm.cell_scale(1e-6) == 2.0**-15
    assert integer_lstm.cell_scale(1e4) == 2.0**-9


def test_state_ranges_replay_the_float_recurrence():
    """The cell state's peak over every step (what the int16 cell scale must cover), from the
    float weights and the kernel input, equals a direct LSTM recurrence's."""
    rng = np.random.default_rng(5)
    from onnx2tflite_direct import tfl

    def const(shape, scale):
        return tfl.Tensor("w", np.float32, shape, data=(rng.standard_normal(shape) * scale))

    h, i = 5, 3
    inputs = [tfl.Tensor("x", np.float32, (7, 2, i))]
    inputs += [const((h, i), 0.8) for _ in range(4)] + [const((h, h), 0.8) for _ in range(4)]
    inputs += [None, None, None] + [const((h,), 0.5) for _ in range(4)] + [None, None]
    inputs += [tfl.Tensor("h", np.float32, (2, h)), tfl.Tensor("c", np.float32, (2, h))]
    op = tfl.Operator("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, [], {"time_major": True})
    x = rng.standard_normal((7, 2, i))
    w = [t.data for t in inputs[1:9]]
    b = [t.data for t in inputs[12:16]]
    hs, cs, peak = np.zeros((2, h)), np.zeros((2, h)), 0.0
    for step in x:
        g = [step @ w[k].T + hs @ w[4 + k].T + b[k] for k in range(4)]
        cs = 1 / (1 + np.exp(-g[1])) * cs + 1 / (1 + np.exp(-g[0])) * np.tanh(g[2])
        hs = 1 / (1 + np.exp(-g[3])) * np.tanh(cs)
        peak = max(peak, np.abs(cs).max())
    assert integer_lstm.state_ranges(op, x) == {"c": (-peak, peak)}


def test_forms_choice_by_width():
    assert recurrent_forms.PREFERRED[False][0] == "kernel"
    assert "kernel" not in recurrent_forms.PREFERRED[True]


def bidirectional_lstm(batch=2):
    """Bidirectional LSTM, batch 2, constant-zero initial states, Y and Y_h read."""
    rng = np.random.default_rng(4)
    inits = {
        "W": (rng.standard_normal((2, 4 * HIDDEN, SIZE)) * 0.4).astype(np.float32),
        "R": (rng.standard_normal((2, 4 * HIDDEN, HIDDEN)) * 0.3).astype(np.float32),
        "B": (rng.standard_normal((2, 8 * HIDDEN)) * 0.2).astype(np.float32),
        "h0": np.zeros((2, batch, HIDDEN), np.float32),
    }
    node = helper.make_node(
        "LSTM",
        ["x", "W", "R", "B", "", "h0", "h0"],
        ["y", "yh"],
        hidden_size=HIDDEN,
        direction="bidirectional",
        name="bilstm",
    )
    return make_model(
        [node],
        inputs=[("x", np.float32, (STEPS, batch, SIZE))],
        outputs=[
            ("y", np.float32, (STEPS, 2, batch, HIDDEN)),
            ("yh", np.float32, (2, batch, HIDDEN)),
        ],
        initializers=inits,
    )


def test_bidirectional_lstm_runs_two_integer_kernels(loop_form):
    """Each direction one integer kernel (the reverse one between REVERSE_V2s), Y and Y_h
    from them, batch 2, zero initial states given as constants (measured 34.5 dB)."""
    model = bidirectional_lstm()
    rng = np.random.default_rng(12)
    calib = {"x": rng.standard_normal((16 * STEPS, 2, SIZE)).astype(np.float32)}
    res = convert(model, quantize=["int8"], calibration_data=calib)
    full = res.variants["full_integer_quant"]
    ops = _ops(full)
    assert not [o for o, floating in ops if floating]
    assert [o for o, _ in ops].count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 2
    feeds = [{"x": rng.standard_normal((STEPS, 2, SIZE)).astype(np.float32)} for _ in range(8)]
    expected, got = [], []
    for f in feeds:
        ref = V.run_onnxruntime(model, f)
        out = V.run_litert(full, f, res.report["io"])
        expected += [ref["y"].ravel(), ref["yh"].ravel()]
        got += [out["y"].ravel(), out["yh"].ravel()]
    assert _sqnr_db(np.concatenate(expected), np.concatenate(got)) > 31.0


def test_unrolled_first_step_of_a_constant_state_is_computed_at_conversion():
    """The first step's recurrent product of a constant initial state is a constant, folded
    in the integer files (``recurrent_forms.fold_constant_products``): no FULLY_CONNECTED
    reads a constant activation (the integer rewrite has no params for one; a bidirectional
    GRU's full-integer file crashed on it). Measured 23.8 dB."""
    rng = np.random.default_rng(6)
    model = make_model(
        [helper.make_node("GRU", ["x", "W", "R"], ["y"], hidden_size=HIDDEN, name="g",
                          direction="bidirectional", linear_before_reset=1)],
        inputs=[("x", np.float32, (STEPS, 1, SIZE))],
        outputs=[("y", np.float32, (STEPS, 2, 1, HIDDEN))],
        initializers={
            "W": (rng.standard_normal((2, 3 * HIDDEN, SIZE)) * 0.4).astype(np.float32),
            "R": (rng.standard_normal((2, 3 * HIDDEN, HIDDEN)) * 0.3).astype(np.float32),
        },
    )  # fmt: skip
    res = convert(model, quantize=["int8"], calibration_data=_calibration(), unroll_rnn=True)
    full = res.variants["full_integer_quant"]
    assert not [o for o, floating in _ops(full) if floating]
    assert _sqnr_vs_onnx(model, full, res.report["io"]) > 20.0


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_float_file_is_the_same_with_or_without_the_integer_forms(loop_form, monkeypatch, op):
    """The integer forms are emitted beside the graph: the float file's bytes do not change."""
    model = rnn_model(op)
    with_forms = convert(model).tflite_bytes
    monkeypatch.setattr(recurrent, "_record_alternatives", lambda *args: None)
    assert bytes(convert(model).tflite_bytes) == bytes(with_forms)
