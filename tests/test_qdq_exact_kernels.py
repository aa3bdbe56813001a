"""Already-quantized models: the integer file rounds where the Q/DQ model rounds, with LiteRT
kernels whose requantization would not (issue 21 item 6; ``quant/qdq_import.py``).

Each test builds a small float model, quantizes it with onnxruntime's ``quantize_static``
(QDQ), converts it through the import path and compares the integer file with the model's
Q/DQ semantics (onnxruntime ORT_ENABLE_BASIC), and also shows that the mechanism is what
makes the difference (the same file without it is measurably further off).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType
from test_prequantized import _init, _model, _samples, quantized, run_litert, run_ort

from onnx2tflite_direct import builder, pipeline
from onnx2tflite_direct.quant import qdq_import as Q


def _integer_file(qmodel, monkeypatch=None, without=None):
    if without is not None:
        monkeypatch.setattr(Q, without, lambda *a, **k: set() if "matmul" not in without else 0)
    stripped, info = Q.import_quantized(qmodel)
    options = {} if without == "lowering_options" else Q.lowering_options(stripped, info)
    lowered = pipeline.lower_model(stripped, keep_io_layout=True, **options)
    model, summary = Q.prequantized_variant(lowered, info.ranges, info)
    return model, summary


def _steps_off(qmodel, model, seed=3, count=4, scale=1.0):
    """(largest |difference| in output steps, share of outputs more than half a step off)
    against the Q/DQ semantics (inputs ~ N(0, scale))."""
    feeds = [{"x": f["x"] * np.float32(scale)} for f in _samples(qmodel, count, seed=seed)]
    dq = next(n for n in qmodel.graph.node if n.output[0] == "y")
    inits = {i.name: numpy_helper.to_array(i) for i in qmodel.graph.initializer}
    step = float(inits[dq.input[1]])
    ref = np.stack(run_ort(qmodel, feeds))
    act = np.stack(run_litert(builder.build_flatbuffer(model), feeds))
    diff = np.abs(ref - act) / step
    return float(diff.max()), float(np.mean(diff > 0.5))


def attention_model(seq=16, dim=32):
    """Scores = (x Wq)(x Wk)^T as a MatMul of two activations, then their product with
    x Wv: attention's two BATCH_MATMULs of run-time operands (no softmax, to keep the
    comparison on the matmuls)."""
    rng = np.random.default_rng(31)
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("MatMul", ["x", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("MatMul", ["s", "v"], ["y"]),
    ]
    inits = [_init(rng, n, [dim, dim], 0.2) for n in ("wq", "wk", "wv")]
    return _model(nodes, [1, seq, dim], [1, seq, dim], inits)


def test_matmul_of_two_activations_is_requantized_as_onnxruntime(tmp_path, monkeypatch):
    """The int8 BATCH_MATMUL of two run-time tensors keeps its integer products; its sums are
    completed with the zero-point terms and requantized in float32 (one rounding, half to
    even), not by the builtin kernel's fixed-point multiplier (two roundings)."""
    qmodel = quantized(attention_model(), tmp_path, "qdq", False, QuantType.QUInt8)
    model, summary = _integer_file(qmodel)
    ops = model.subgraphs[0].operators
    bmm = [op for op in ops if op.opcode == "BATCH_MATMUL"]
    assert len(bmm) == 2
    assert all(t.dtype == np.int8 for op in bmm for t in op.inputs)
    assert all(op.outputs[0].dtype == np.int32 for op in bmm)
    node = next(n for n in summary.nodes if "BATCH_MATMUL" in n["ops"])
    assert node["status"] == "integer"
    worst, share = _steps_off(qmodel, model)
    assert worst <= 1.01 and share < 0.002, (worst, share)
    builtin, _ = _integer_file(qmodel, monkeypatch, "_exact_activation_matmuls")
    _, share_builtin = _steps_off(qmodel, builtin)
    assert share_builtin > max(2 * share, 2e-3), (share_builtin, share)


def embedding_sum_model():
    """A hand-written Q/DQ model: x on its int8 lattice plus rows of a constant table on an
    asymmetric uint8 lattice, spanning less than the table's range (BERT-like token-type
    embeddings gathered at constant positions, with their scales)."""
    rng = np.random.default_rng(5)
    table = rng.integers(20, 231, size=[1, 16, 64]).astype(np.uint8)

    def scalar(name, value, dtype=np.float32):
        return numpy_helper.from_array(np.array(value, dtype), name)

    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
        helper.make_node("DequantizeLinear", ["table", "sc", "zc"], ["cd"]),
        helper.make_node("Add", ["xd", "cd"], ["e"]),
        helper.make_node("QuantizeLinear", ["e", "sy", "zy"], ["eq"]),
        helper.make_node("DequantizeLinear", ["eq", "sy", "zy"], ["y"]),
    ]
    inits = [
        scalar("sx", 0.0006898845),
        scalar("zx", -8, np.int8),
        numpy_helper.from_array(table, "table"),
        scalar("sc", 0.00039942),
        scalar("zc", 135, np.uint8),
        scalar("sy", 0.00064068),
        scalar("zy", -5, np.int8),
    ]
    return _model(nodes, [1, 16, 64], [1, 16, 64], inits)


def test_sum_with_an_off_lattice_constant_runs_float(monkeypatch):
    """An Add of a run-time tensor and a constant that int8 cannot hold exactly (the lattice
    of its own range is not the table's): float between the DEQUANTIZE and an exactly rounded
    QUANTIZE (exact); the int8 ADD, reading the re-quantized constant, is measurably off."""
    qmodel = embedding_sum_model()
    model, summary = _integer_file(qmodel)
    adds = [op for op in model.subgraphs[0].operators if op.opcode == "ADD"]
    assert adds and all(t.dtype == np.float32 for op in adds for t in op.inputs)
    node = next(n for n in summary.nodes if "ADD" in n["ops"])
    assert node["status"] == "float" and "sum" in node["reason"]
    worst, share = _steps_off(qmodel, model, scale=0.09)
    assert worst <= 1.01 and share < 0.002, (worst, share)
    kernel, _ = _integer_file(qmodel, monkeypatch, "_constant_sums")
    assert all(
        t.dtype == np.int8
        for op in kernel.subgraphs[0].operators
        if op.opcode == "ADD"
        for t in op.inputs
    )
    _, share_int8 = _steps_off(qmodel, kernel, scale=0.09)
    assert share_int8 > 3 * max(share, 1e-3), (share_int8, share)


def gelu_model():
    """Linear -> GELU as exporters write it: x * 0.5 * (1 + erf(x / sqrt 2)); quantize_static
    gives each interior tensor its own Q/DQ pair."""
    rng = np.random.default_rng(51)
    consts = [
        numpy_helper.from_array(np.array(math.sqrt(2.0), np.float32), "sqrt2"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Div", ["h", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["h", "a"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
    ]
    return _model(nodes, [1, 16, 32], [1, 16, 32], [_init(rng, "w", [32, 32], 0.4), *consts])


def test_gelu_with_quantized_interior_is_not_fused(tmp_path, monkeypatch):
    """The Erf output has its own Q/DQ pair: the GELU fusion (one rounding) is disabled, so
    every interior rounding of the ONNX model happens; fused, the output is measurably off."""
    qmodel = quantized(gelu_model(), tmp_path, "qdq", False, QuantType.QUInt8)
    stripped, info = Q.import_quantized(qmodel)
    assert "fuse_gelu" in Q.lowering_options(stripped, info).get("disable_rewrites", ())
    model, _ = _integer_file(qmodel)
    assert not [op for op in model.subgraphs[0].operators if op.opcode == "GELU"]
    worst, share = _steps_off(qmodel, model)
    assert worst <= 1.01 and share < 0.005, (worst, share)
    fused, _ = _integer_file(qmodel, monkeypatch, "lowering_options")
    assert [op for op in fused.subgraphs[0].operators if op.opcode == "GELU"]
    _, share_fused = _steps_off(qmodel, fused)
    assert share_fused > 3 * max(share, 1e-3), (share_fused, share)


def hardswish_resize_model():
    """A hand-written Q/DQ model (each tensor on its own lattice, as an exporter's QDQ graph
    of a MobileNetV3 / LRASPP head, with the lattices of LRASPP's first HardSwish):
    x -> HardSwish -> bilinear Resize x2."""

    def scalar(name, value, dtype=np.float32):
        return numpy_helper.from_array(np.array(value, dtype), name)

    def pair(x, tag):
        return [
            helper.make_node("QuantizeLinear", [x, f"s{tag}", f"z{tag}"], [f"{x}_q"]),
            helper.make_node("DequantizeLinear", [f"{x}_q", f"s{tag}", f"z{tag}"], [f"{x}_d"]),
        ]

    nodes = [
        *pair("x", "x"),
        helper.make_node("HardSwish", ["x_d"], ["h"]),
        *pair("h", "h"),
        helper.make_node("Resize", ["h_d", "", "scales"], ["r"], mode="linear"),
        helper.make_node("QuantizeLinear", ["r", "sr", "zr"], ["r_q"]),
        helper.make_node("DequantizeLinear", ["r_q", "sr", "zr"], ["y"]),
    ]
    inits = [
        scalar("sx", 0.0432557538),
        scalar("zx", 5, np.int8),
        scalar("sh", 0.0221707802),
        scalar("zh", -111, np.int8),
        scalar("sr", 0.0287),
        scalar("zr", -113, np.int8),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    ]
    return _model(nodes, [1, 8, 12, 12], [1, 8, 24, 24], inits)


@pytest.mark.parametrize("op", ["HARD_SWISH", "RESIZE_BILINEAR"])
def test_fixed_point_kernels_run_float_between_the_lattices(monkeypatch, op):
    """HardSwish and bilinear Resize on Q/DQ lattices: float between the DEQUANTIZE and the
    exactly rounded QUANTIZE (their int8 kernels compute in fixed point and round on the way).
    Without the mechanism the output is measurably further from the Q/DQ semantics."""
    qmodel = hardswish_resize_model()
    model, _ = _integer_file(qmodel)
    found = [o for o in model.subgraphs[0].operators if o.opcode == op]
    assert found and all(o.inputs[0].dtype == np.float32 for o in found)
    worst, share = _steps_off(qmodel, model, scale=2.0)
    assert worst <= 1.01 and share < 0.002, (worst, share)
    monkeypatch.setattr(
        Q, "FIXED_POINT_KERNELS", tuple(k for k in Q.FIXED_POINT_KERNELS if k != op)
    )
    kernel, _ = _integer_file(qmodel)
    assert all(
        o.inputs[0].dtype == np.int8 for o in kernel.subgraphs[0].operators if o.opcode == op
    )
    _, share_int8 = _steps_off(qmodel, kernel, scale=2.0)
    assert share_int8 > max(2 * share, 1e-3), (share_int8, share)
