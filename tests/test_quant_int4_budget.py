"""The int4 file's precision within its size budget (``--int4-size-budget``, default 0.3):
embedding tables as int8 rows (codes at one scale, the rows' scales gathered apart), a tied
output projection sharing the table's codes, and int8 for the weights whose measured 4-bit
output noise per byte is largest. Kernels: the stock LiteRT CPU interpreter, with and without
XNNPACK; references: numpy on the stored values, onnxruntime for the float model."""

from __future__ import annotations

import numpy as np
import pytest
from harness import make_model
from onnx import helper
from test_quant_int4 import _sqnr, _weights

from onnx2tflite_direct import cli, convert
from onnx2tflite_direct.validate import run_litert, run_onnxruntime

RNG = np.random.default_rng(2104)
F = np.float32
KERNELS = [pytest.param(True, id="xnnpack"), pytest.param(False, id="builtin")]


def _int4(model, **kw):
    res = convert(model, quantize=("int4",), **kw)
    (entry,) = res.report["quantization"]
    return res, res.variants["int4_weight_quant"], entry


def _row_scales(blob: bytes, name: str) -> np.ndarray:
    from ai_edge_litert import schema_py_generated as S

    model = S.ModelT.InitFromObj(S.Model.GetRootAs(blob, 0))
    (t,) = [t for t in model.subgraphs[0].tensors if t.name.decode() == name]
    return np.asarray(model.buffers[t.buffer].data, np.uint8).view(np.float32).reshape(t.shape)


def _lm(v=1000, d=64, tied=True):
    """Embedding table, one layer, output projection by the table's transpose (tied) or by
    a weight of its own."""
    table = (RNG.standard_normal((v, d)) * 0.5).astype(F)
    inits = {
        "emb": table,
        "w": (RNG.standard_normal((d, d)) * 0.2).astype(F),
        "head": table.T.copy() if tied else (RNG.standard_normal((d, v)) * 0.5).astype(F),
    }
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], axis=0),
        helper.make_node("MatMul", ["e", "w"], ["h"]),
        helper.make_node("Add", ["h", "e"], ["r"]),
        helper.make_node("MatMul", ["r", "head"], ["logits"]),
    ]
    outputs = [("e", F, (1, 10, d)), ("logits", F, (1, 10, v))]
    return make_model(nodes, [("ids", np.int64, (1, 10))], outputs, inits), inits


@pytest.mark.parametrize("xnnpack", KERNELS)
def test_table_int8_rows_exact_and_tied_head_shares_the_codes(xnnpack):
    """The table becomes int8 rows: EMBEDDING_LOOKUP of codes at scale 1, times the gathered
    row scale (one float32 product: exact against numpy's). The tied head reads the same
    codes per channel: one stored copy, so the file is smaller than with an untied head."""
    model, inits = _lm()
    res, blob, entry = _int4(model, int4_size_budget=0.4)  # (the table: 93% of the weights)
    assert entry["weights"]["int8-rows"] == 1 and entry["weights"]["int8-tied"] == 1
    assert len(blob) <= 0.4 * len(res.tflite_bytes)
    stored = _weights(blob)
    codes = stored["emb/int8"]["codes"]
    scales = _row_scales(blob, "emb/int8_row_scales")
    assert codes.shape == (1000, 64) and scales.shape == (1000, 1) and np.abs(codes).max() <= 127
    ids = RNG.integers(0, 1000, (1, 10)).astype(np.int64)
    got = run_litert(blob, {"ids": ids}, res.report["io"], use_xnnpack=xnnpack)
    rows = codes.astype(F) * scales  # float32, as the MUL computes it
    np.testing.assert_array_equal(got["e"], rows[ids])
    assert _sqnr(got["e"], inits["emb"][ids]) > 40.0  # int8 rows, not int4 (~20 dB)
    (head,) = [v for k, v in stored.items() if k != "emb/int8" and v["codes"].shape == (1000, 64)]
    np.testing.assert_array_equal(head["codes"], codes)  # the tied head: the same codes
    untied, _ = _lm(tied=False)
    res2, blob2, entry2 = _int4(untied, int4_size_budget=0.6)
    assert "int8-tied" not in entry2["weights"] and entry2["weights"]["int8-rows"] == 1
    assert len(blob2) > len(blob) + 40_000  # (a second copy of 64,000 codes)
    ref = run_onnxruntime(model, {"ids": ids})
    assert _sqnr(got["logits"], ref["logits"]) > 30.0


def test_budget_zero_keeps_every_weight_4_bit_and_the_table_when_it_does_not_fit():
    """``--int4-size-budget 0``: 4-bit wherever a kernel takes it, tables included; a budget
    the int8 table does not fit in keeps it 4-bit too (all tables or none)."""
    model, _ = _lm(tied=False)
    _, blob0, entry0 = _int4(model, int4_size_budget=0.0)
    assert all(k.startswith("int4") for k in entry0["weights"])
    assert "int8_chooser" not in entry0
    tied, _ = _lm()
    res, blob, entry = _int4(tied, int4_size_budget=0.3)  # (int8 rows and tied head: 0.33x)
    assert entry["weight_formats"]["Gather:e"].startswith("int4-block")
    assert len(blob) <= 0.3 * len(res.tflite_bytes)


def _two_branches():
    """y = x W1 + 0.001 * (x W2): W2's rounding barely reaches the output."""
    d = 256
    inits = {
        "w1": (RNG.standard_normal((d, d)) * 0.1).astype(F),
        "w2": (RNG.standard_normal((d, d)) * 0.1).astype(F),
        "w3": (RNG.standard_normal((d, d)) * 0.1).astype(F),
        "k": np.array(0.001, F),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="loud"),
        helper.make_node("MatMul", ["x", "w2"], ["b"], name="quiet"),
        helper.make_node("Mul", ["b", "k"], ["bk"]),
        helper.make_node("Add", ["a", "bk"], ["ab"]),
        helper.make_node("MatMul", ["ab", "w3"], ["y"], name="last"),
    ]
    model = make_model(nodes, [("x", F, (1, 16, d))], [("y", F, (1, 16, d))], inits)
    return model


@pytest.mark.parametrize("xnnpack", KERNELS)
def test_measured_chooser_spends_the_budget_where_the_noise_is(xnnpack):
    """The weight whose 4-bit rounding barely reaches the output (scaled by 0.001) stays
    4-bit; the others get int8; the file stays within the budget and beats the all-4-bit
    file against onnxruntime's float model."""
    model = _two_branches()
    res, blob, entry = _int4(model)
    formats = entry["weight_formats"]
    assert formats["quiet"].startswith("int4") and formats["loud"] == "int8-channel"
    chooser = entry["int8_chooser"]
    assert chooser["measured"] == 3 and chooser["int8"] == 2
    heard = chooser["output_sqnr_db_one_weight_int4"]
    assert heard["quiet"] > heard["loud"] + 40  # 0.001 in amplitude: 60 dB
    assert len(blob) <= 0.3 * len(res.tflite_bytes)
    x = RNG.standard_normal((1, 16, 256)).astype(F)
    ref = run_onnxruntime(model, {"x": x})["y"]
    got = run_litert(blob, {"x": x}, res.report["io"], use_xnnpack=xnnpack)["y"]
    _, blob0, _ = _int4(model, int4_size_budget=0.0)
    base = run_litert(blob0, {"x": x}, res.report["io"], use_xnnpack=xnnpack)["y"]
    assert _sqnr(got, ref) > _sqnr(base, ref) + 15.0
    rows = {r["node"]: r for r in entry["precision"]}
    assert "measured" in rows["loud"]["detail"]


def test_explicit_int4_override_wins_over_the_budget():
    model = _two_branches()
    _, _, entry = _int4(model, quant_overrides=["loud=int4-weights"])
    assert entry["weight_formats"]["loud"].startswith("int4")


@pytest.mark.parametrize("value", ["1.5", "-0.1", "x"])
def test_budget_option_is_checked(tmp_path, value):
    model = _two_branches()
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    code = cli.main(
        [str(path), "-o", str(tmp_path), "--quantize", "int4", "--int4-size-budget", value]
    )
    assert code == 2
    assert not list(tmp_path.glob("*.tflite"))


# -- the done-when on the corpus's transformers (when the corpus cache is present) -------
def _zoo_model(name: str):
    from tools.zoo import paths

    folder = paths.models_dir() / name
    if not (folder / "model.onnx").exists() or not (folder / "feeds.npz").exists():
        pytest.skip(f"{name} is not in the corpus cache (tools/zoo)")
    return folder / "model.onnx", dict(np.load(folder / "feeds.npz"))


def _anchor(name: str) -> float:
    """onnxruntime's MatMulNBits 4-bit file's SQNR on the stored feed, as the benchmark
    measured it (``benchmarks/results/int4.json``; the quantizer needs ``onnx-ir``)."""
    import json
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "int4.json"
    (row,) = [r for r in json.loads(results.read_text())["models"] if r["name"] == name]
    return row["ort_matmul"]["sqnr_db"]


@pytest.mark.parametrize("xnnpack", KERNELS)
@pytest.mark.parametrize("name", ["hf_bert_ts", "hf_gpt2_past_ts"])
def test_corpus_transformers_meet_the_int4_targets(name, xnnpack):
    """Issue 21: <= 0.3x the float32 file, SQNR >= onnxruntime's MatMulNBits 4-bit file
    - 1 dB, runs in the stock LiteRT CPU interpreter (with and without XNNPACK)."""
    path, feeds = _zoo_model(name)
    pins = {k: tuple(v.shape) for k, v in feeds.items()}
    res = convert(str(path), quantize=("int4",), keep_io_layout=True, input_shapes=pins)
    blob = res.variants["int4_weight_quant"]
    assert len(blob) <= 0.3 * len(res.tflite_bytes)
    got = run_litert(blob, feeds, res.report["io"], use_xnnpack=xnnpack)
    ref = run_onnxruntime(path, feeds)
    worst = min(_sqnr(got[k], v) for k, v in ref.items() if v.dtype.kind == "f")
    assert worst >= _anchor(name) - 1.0
