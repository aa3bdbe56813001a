"""The per-layer quantization debugger (issue 21 item 5): ``--validate-all-tensors`` on the
quantized files gives every tensor's SQNR against the float ONNX model and names the node where
the error enters.

The proof plants a known error source in a real small CNN (BatchNormalizations re-estimated on
data): a per-channel Mul (node ``blowup``) scales one channel by 300 and the next convolution's
weights for that channel by 1/300, the same float function with one activation whose range a
single loud channel widened 300-fold (the outlier channels of large models). In the int8 files
every other channel of that activation is crushed onto a few int8 steps, and the debugger must
name ``blowup``; in the 16x8 files the range costs nothing and the error enters at the
convolution whose int8 weights lost the 1/300 channel instead.
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_quant_overrides import CALIB, EVALS, bn_cnn, sqnr

from onnx2tflite_direct import convert
from onnx2tflite_direct import quant_debug as QD
from onnx2tflite_direct.cli import main as cli_main

FEEDS = {"x": EVALS[:2]}


def _feeds(k: int) -> dict[str, np.ndarray]:
    return {"x": EVALS[k : k + 1]}


@pytest.fixture(scope="module")
def planted():
    model = bn_cnn(blowup=300.0)
    return model, convert(model, quantize=["int8", "int16x8"], calibration_data=CALIB)


@pytest.fixture(scope="module")
def plain():
    model = bn_cnn()
    return model, convert(model, quantize=["int8"], calibration_data=CALIB)


def _rows(section) -> dict[str, dict]:
    return {r["node"]: r for r in section["tensors"]}


def test_planted_range_is_named_in_the_int8_files(planted, plain):
    _, res = planted
    sections = QD.debug_variants(res, feeds=_feeds(0))
    for kind in ("integer_quant", "full_integer_quant"):
        entry = sections[kind]["error_enters_at"]
        assert entry["node"] == "blowup", json.dumps(sections[kind]["largest_drops"][:3])
        assert entry["drop_db"] >= 12.0, entry
        # the whole-tensor SQNR hides it (the loud channel dominates): the channel median shows it
        assert entry["sqnr_db"] >= entry["channel_sqnr_db"] + 12.0, entry
    base = _rows(QD.debug_variants(plain[1], feeds=_feeds(0))["integer_quant"])
    blow = _rows(sections["integer_quant"])
    assert blow["blowup"]["level_db"] <= base["relu2"]["level_db"] - 12.0


def test_16x8_files_name_the_weights_instead(planted):
    _, res = planted
    sections = QD.debug_variants(res, feeds=_feeds(0), kinds=["integer_quant_with_int16_act"])
    assert set(sections) == {"integer_quant_with_int16_act"}
    section = sections["integer_quant_with_int16_act"]
    entry = section["error_enters_at"]
    # conv3 (its BatchNormalization folded, its Relu fused) writes relu3's output
    assert entry["node"] == "relu3" and "conv3" in entry["unmeasured_upstream"], entry
    assert _rows(section)["blowup"]["drop_db"] < 3.0  # int16 holds the wide range


def test_following_the_debugger_fixes_the_file(planted):
    """Override what it names: the blowup activation at 16x8 and, as the debugger then says,
    conv3 in float. Each step's local level and the output SQNR rise."""
    model, res = planted
    io = res.report["io"]
    before = sqnr(model, res.variants["integer_quant"], io, EVALS)
    step = convert(
        model, quantize=["int8"], calibration_data=CALIB, quant_overrides=["blowup=int16x8"]
    )
    section = QD.debug_variants(step, feeds=_feeds(0), kinds=["integer_quant"])["integer_quant"]
    assert _rows(section)["blowup"]["level_db"] >= 20.0
    assert section["error_enters_at"]["node"] == "relu3"
    fixed = convert(
        model,
        quantize=["int8"],
        calibration_data=CALIB,
        quant_overrides=["blowup=int16x8", "conv3=float"],
    )
    after = sqnr(model, fixed.variants["integer_quant"], io, EVALS)
    assert before < 10.0 and after >= before + 10.0, (before, after)


def test_output_sqnr_agrees_with_the_files_own_run(planted):
    model, res = planted
    section = QD.debug_variants(res, feeds=_feeds(3), kinds=["integer_quant"])["integer_quant"]
    direct = sqnr(model, res.variants["integer_quant"], res.report["io"], EVALS[3:4])
    assert abs(section["outputs"]["y"] - direct) <= 1.0, (section["outputs"], direct)
    nodes = section["measured"]["onnx_node_outputs"]
    assert nodes == 13 and section["measured"]["compared"] >= 6  # (fused and folded: not kept)


def test_cli_writes_the_section_and_prints_the_table(planted, tmp_path, capsys):
    model, _ = planted
    path = tmp_path / "planted.onnx"
    onnx.save(model, path)
    calib = tmp_path / "calib.npy"
    np.save(calib, CALIB["x"])
    code = cli_main(
        [str(path), "-o", str(tmp_path / "out"), "--quantize", "int8",
         "--calibration-data", f"x={calib}", "--validate-all-tensors", "-q"]
    )  # fmt: skip
    assert code == 0  # measured, never judged
    out = capsys.readouterr().out
    assert "quantized file integer_quant" in out and "error enters at blowup (Mul)" in out
    diag = json.loads((tmp_path / "out" / "planted_tensor_diagnostics.json").read_text())
    quantized = diag["quantized_variants"]
    assert set(quantized) == {"integer_quant", "full_integer_quant"}
    assert quantized["full_integer_quant"]["error_enters_at"]["node"] == "blowup"
    assert diag["outputs_ok"] is True  # the float file's own diagnosis is unchanged


def test_attribution_rules():
    """Unmeasured tensors inherit their producer's input noise (the node after them is charged
    and names them); data-moving ops are listed but never charged."""
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),  # unmeasured (fused)
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("Slice", ["r", "s", "e"], ["sl"], name="slice"),
            helper.make_node("MatMul", ["sl", "m"], ["y"], name="mm"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    rows = {r["node"]: r for r in QD.attribute(graph, {"r": 30.0, "sl": 20.0, "y": 19.0})}
    assert rows["relu"]["unmeasured_upstream"] == ["conv"]
    assert math.isinf(rows["relu"]["input_level_db"]) and rows["relu"]["added_noise"] > 0
    assert rows["slice"]["moves_data"] and rows["slice"]["added_noise"] == 0.0
    expected = 10**-1.9 - 10**-2.0  # y's noise over the slice's
    assert rows["mm"]["added_noise"] == pytest.approx(expected)
    assert rows["mm"]["drop_db"] == pytest.approx(1.0)


def test_channel_sqnr_sees_crushed_channels():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 8, 4, 4))
    ref[:, 0] *= 300.0
    got = ref.copy()
    got[:, 1:] = np.round(got[:, 1:] / 5.0) * 5.0  # the others on a step of 5
    whole = 10 * math.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))
    assert QD.channel_sqnr(ref, got) <= 0.0 and whole > 30.0


def tiny_vit() -> onnx.ModelProto:
    """benchmarks/models.vit_small_like at toy size: 4x4 patches of a 16x16 image (16 tokens
    of width 32) after a class token drawn at 0.02 (as ViT initializes it), one pre-norm
    block, the class token's row into the classifier."""
    import math as m

    from benchmarks.models import GraphBuilder, conv, layer_norm, transformer_layer

    b = GraphBuilder("tiny_vit", seed=16)
    dim = 32
    x = b.input("x", TensorProto.FLOAT, [1, 3, 16, 16])
    x = conv(b, x, 3, dim, 4, stride=4, pad=0, gain=1.0)
    x = b.op("Transpose", [b.op("Reshape", [x, b.ints([1, dim, 16])])], perm=[0, 2, 1])
    x = b.op("Concat", [b.const(b.normal((1, 1, dim), 0.02), "cls_token"), x], axis=1)
    x = b.op("Add", [x, b.const(b.normal((1, 17, dim), 0.02), "pos_embed")])
    x = layer_norm(b, transformer_layer(b, x, 17, dim, 2, 64, pre_norm=True), dim)
    cls = b.op("Gather", [x, b.const(0, "cls_index", dtype=np.int64)], axis=1)
    w = b.const(b.normal((10, dim), m.sqrt(1.0 / dim)), "head_w")
    y = b.op("Gemm", [cls, w, b.const(b.normal((10,), 0.01), "head_b")], transB=1)
    return b.build([y], ["y"])


def test_a_crushed_class_token_is_named_where_it_is_crushed():
    """The class token's row is ~100x smaller than the patch tokens: the int8 scale their range
    sets crushes it to zero at the Concat, and again at the position-embedding Add; the
    LayerNorms rescale it and the logits read only it. The whole-tensor SQNR there is fine,
    the worst token's is not: the debugger names the Concat, then (once it runs at 16x8 as
    told) the Add, and the logits' SQNR rises from next to nothing."""
    model = tiny_vit()
    res = convert(model, quantize=["int8"], calibration_data=CALIB)
    io = res.report["io"]
    before = sqnr(model, res.variants["integer_quant"], io, EVALS)
    overrides, named = [], []
    for _ in range(2):
        section = QD.debug_variants(res, feeds=_feeds(0), kinds=["integer_quant"])
        entry = section["integer_quant"]["error_enters_at"]
        assert entry["token_sqnr_db"] <= entry["sqnr_db"] - 10.0, entry
        named.append(entry["node"])
        overrides.append(f"{entry['node']}=int16x8")
        res = convert(model, quantize=["int8"], calibration_data=CALIB, quant_overrides=overrides)
    assert named == ["concat_1", "add_1"]
    after = sqnr(model, res.variants["integer_quant"], io, EVALS)
    assert before < 5.0 and after >= before + 10.0, (before, after)  # measured 1.4 -> 18.0


def test_steepest_drop_is_the_planted_range_too(planted):
    _, res = planted
    section = QD.debug_variants(res, feeds=_feeds(1), kinds=["integer_quant"])["integer_quant"]
    assert section["steepest_drop"]["node"] == "blowup", section["steepest_drop"]


@pytest.mark.parametrize("drop", [-1e9, -1e4])  # a sentinel; BERT's -10000
def test_masked_logits_are_not_blamed(drop):
    """An additive attention mask on padded keys: the integer file clamps the masked
    logits to a window below the row (exact after the softmax), so their SQNR means nothing;
    the debugger leaves them out, says so, and names another node."""
    from benchmarks.models import GraphBuilder, transformer_layer

    b = GraphBuilder("masked", seed=5)
    x = b.input("x", TensorProto.FLOAT, [1, 16, 32])
    mask = b.input("mask", TensorProto.FLOAT, [1, 1, 1, 16])
    y = transformer_layer(b, x, 16, 32, 2, 64, pre_norm=False, mask=mask)
    model = b.build([y], ["y"])
    rng = np.random.default_rng(0)
    keep = np.where(np.arange(16) < 11, 0.0, drop).astype(np.float32).reshape(1, 1, 1, 16)
    calib = {
        "x": rng.standard_normal((8, 16, 32)).astype(np.float32),
        "mask": np.repeat(keep, 8, axis=0),
    }
    res = convert(model, quantize=["int8"], calibration_data=calib)
    feeds = {"x": rng.standard_normal((1, 16, 32)).astype(np.float32), "mask": keep}
    section = QD.debug_variants(res, feeds=feeds, kinds=["integer_quant"])["integer_quant"]
    masked = [t for t in section["tensors"] if t["op_type"] == "Add" and "add_" in t["node"]]
    assert section["notes"] and "mask values" in section["notes"][0]
    entry = section["error_enters_at"]
    assert entry is not None and entry["level_db"] > 10.0, entry
    assert all(t["level_db"] > 10.0 for t in masked), masked


def test_weight_only_files_are_measured_too(plain):
    model, _ = plain
    res = convert(model, quantize=["fp16", "dynamic"], calibration_data=CALIB)
    sections = QD.debug_variants(res, feeds=_feeds(0))
    assert set(sections) == {"float16", "dynamic_range_quant"}
    assert sections["float16"]["outputs"]["y"] >= 50.0  # float16 weights: tiny error
    assert (
        15.0
        <= sections["dynamic_range_quant"]["outputs"]["y"]
        < sections["float16"]["outputs"]["y"]
    )
    for section in sections.values():
        assert section["measured"]["compared"] >= 6 and section["error_enters_at"] is not None
