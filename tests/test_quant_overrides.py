"""``--quant-override PATTERN=PRECISION`` (issue 21 item 3), proven in LiteRT.

Each test converts a real small model (a CNN whose BatchNormalizations are re-estimated on the
data, so activations are not near-constant; a transformer encoder block), applies overrides,
and checks in the written .tflite that the overridden nodes' operators really run at the asked
precision (their input/bias dtypes), that the SQNR against the float model in onnxruntime moves
the expected way, and that the report says each node's precision and why. User mistakes are
``invalid_option`` errors naming the option, exit code 2 and nothing written.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper, numpy_helper

from onnx2tflite_direct import BadInputError, convert
from onnx2tflite_direct import validate as V
from onnx2tflite_direct.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.models import GraphBuilder, transformer_layer  # noqa: E402

F = np.float32


# --------------------------------------------------------------------------------------------
# Models and measurement
# --------------------------------------------------------------------------------------------


def _reestimate_bn(model: onnx.ModelProto, data: np.ndarray, layers: int) -> None:
    """Set each BatchNormalization's running mean/var to its input's statistics on ``data``,
    layer by layer (each changes what the next one sees): activations then have unit spread
    rather than collapsing or exploding, as a trained network's do."""
    for i in range(1, layers + 1):
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        probe.graph.output.add().name = f"c{i}"
        sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        acts = np.concatenate([sess.run([f"c{i}"], {"x": d[None].astype(F)})[0] for d in data])
        stats = {f"m{i}": acts.mean(axis=(0, 2, 3)), f"v{i}": acts.var(axis=(0, 2, 3))}
        for t in model.graph.initializer:
            if t.name in stats:
                t.CopyFrom(numpy_helper.from_array(stats[t.name].astype(F), t.name))


def bn_cnn(seed: int = 0, blowup: float | None = None) -> onnx.ModelProto:
    """x[1,3,16,16] -> 3 x (Conv -> BatchNormalization -> Relu) -> GlobalAveragePool ->
    Flatten -> Gemm (64 -> 32). Nodes conv1..3, bn1..3, relu1..3, gap, flatten, fc.

    ``blowup``: a per-channel Mul (node ``blowup``) after relu2 scales channel 0 by that much
    and conv3's weights for that channel by its inverse: the same float function, but one
    activation with a huge range (the planted error source of the debugger's test)."""
    rng = np.random.default_rng(seed)
    chans = [3, 16, 32, 64]
    inits: dict[str, np.ndarray] = {}
    nodes = []
    x = "x"
    for i in range(1, 4):
        cin, cout = chans[i - 1], chans[i]
        inits[f"w{i}"] = rng.standard_normal((cout, cin, 3, 3)) * math.sqrt(2 / (cin * 9))
        inits[f"b{i}"] = rng.standard_normal(cout) * 0.1
        if i == 3 and blowup is not None:
            scale = np.ones((1, cin, 1, 1))
            scale[0, 0] = blowup
            inits["blowup_s"] = scale
            inits[f"w{i}"][:, 0] /= blowup
            nodes.append(helper.make_node("Mul", [x, "blowup_s"], ["big"], name="blowup"))
            x = "big"
        stride = [2, 2] if i > 1 else [1, 1]
        nodes.append(
            helper.make_node(
                "Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1] * 4, strides=stride,
                name=f"conv{i}",
            )
        )  # fmt: skip
        inits[f"g{i}"] = rng.uniform(0.8, 1.2, cout)
        inits[f"be{i}"] = rng.standard_normal(cout) * 0.1
        inits[f"m{i}"], inits[f"v{i}"] = np.zeros(cout), np.ones(cout)
        bn_in = [f"c{i}", f"g{i}", f"be{i}", f"m{i}", f"v{i}"]
        nodes.append(helper.make_node("BatchNormalization", bn_in, [f"n{i}"], name=f"bn{i}"))
        nodes.append(helper.make_node("Relu", [f"n{i}"], [f"r{i}"], name=f"relu{i}"))
        x = f"r{i}"
    inits["wf"] = rng.standard_normal((32, 64)) * math.sqrt(1 / 64)
    inits["bf"] = rng.standard_normal(32) * 0.1
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "bn_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
        [numpy_helper.from_array(np.asarray(v, F), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _reestimate_bn(model, np.random.default_rng(100).standard_normal((16, 3, 16, 16)), 3)
    return model


def transformer_block(seed: int = 3) -> onnx.ModelProto:
    """One post-norm encoder layer (BERT-like: attention with Softmax, LayerNormalization,
    GELU MLP) on 16 tokens of width 32, 2 heads; nodes named ``<op>_<k>``."""
    b = GraphBuilder("block", seed=seed)
    x = b.input("x", TensorProto.FLOAT, [1, 16, 32])
    y = transformer_layer(b, x, 16, 32, 2, 64, pre_norm=False)
    return b.build([y], ["y"])


def samples(count: int, seed: int, shape=(3, 16, 16)) -> dict[str, np.ndarray]:
    """Images ~N(0, 1) with 1% of the pixels 12x brighter: heavy tails widen the calibrated
    activation ranges, so the activations' precision (what the overrides change) dominates
    the error rather than the int8 weights every integer file shares."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, *shape)).astype(F)
    return {"x": x * np.where(rng.random(x.shape) < 0.01, F(12.0), F(1.0))}


def tokens(count: int, seed: int) -> np.ndarray:
    """``count`` [16, 32] token embeddings ~N(0, 1)."""
    return np.random.default_rng(seed).standard_normal((count, 16, 32)).astype(F)


def sqnr(model: onnx.ModelProto, tflite: bytes, io_table, evals: np.ndarray) -> float:
    """SQNR (dB) of the file's output against onnxruntime's float model over every sample."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    run = V.litert_runner(tflite, io_table)
    ref, got = [], []
    for sample in evals:
        feeds = {"x": sample[None]}
        ref.append(sess.run(None, feeds)[0].ravel())
        got.append(run(feeds)["y"].ravel())
    ref_a, got_a = np.concatenate(ref).astype(np.float64), np.concatenate(got).astype(np.float64)
    return 10 * math.log10(np.sum(ref_a**2) / np.sum((ref_a - got_a) ** 2))


def op_dtypes(tflite: bytes) -> list[tuple[str, tuple[str, ...]]]:
    """(op name, dtypes of its inputs) for every operator of the file, in order."""
    interp = Interpreter(model_content=tflite)
    dtypes = {d["index"]: np.dtype(d["dtype"]).name for d in interp.get_tensor_details()}
    return [
        (op["op_name"], tuple(dtypes.get(i, "none") for i in op["inputs"] if i >= 0))
        for op in interp._get_ops_details()
    ]


def convs(tflite: bytes) -> list[tuple[str, ...]]:
    """The input dtypes (activation, weight, bias) of each CONV_2D, in graph order."""
    return [d for name, d in op_dtypes(tflite) if name == "CONV_2D"]


def precision_of(summary: dict, node: str) -> dict:
    return next(r for r in summary["precision"] if r["node"] == node)


def summary_of(result, kind: str) -> dict:
    return next(s for s in result.report["quantization"] if s["kind"] == kind)


CALIB = samples(16, seed=1)
EVALS = samples(24, seed=2)["x"]


@pytest.fixture(scope="module")
def cnn():
    return bn_cnn()


@pytest.fixture(scope="module")
def cnn_default(cnn):
    return convert(cnn, quantize=["int8", "int16x8"], calibration_data=CALIB)


# --------------------------------------------------------------------------------------------
# Integer files: the activation width and float islands per node
# --------------------------------------------------------------------------------------------


def test_int16x8_node_in_the_int8_file_runs_16x8(cnn, cnn_default):
    res = convert(cnn, quantize=["int8"], calibration_data=CALIB, quant_overrides=["conv2=int16x8"])
    for kind in ("integer_quant", "full_integer_quant"):
        assert convs(res.variants[kind]) == [
            ("int8", "int8", "int32"),
            ("int16", "int8", "int64"),  # conv2: 16x8 kernel, int64 bias
            ("int8", "int8", "int32"),
        ]
        row = precision_of(summary_of(res, kind), "conv2")
        assert row["precision"] == "int16x8" and row["why"] == "override"
        assert row["override"] == "conv2=int16x8"
        assert precision_of(summary_of(res, kind), "conv3") == {
            "node": "conv3",
            "precision": "int8",
            "why": "default",
        }
    # the widths meet through QUANTIZE int8 <-> int16 requantizations
    quantizes = [
        d for name, d in op_dtypes(res.variants["full_integer_quant"]) if name == "QUANTIZE"
    ]
    assert ("int8",) in quantizes and ("int16",) in quantizes
    # the whole int8 file overridden to 16x8 is as accurate as the 16x8 file, far above int8
    every = convert(cnn, quantize=["int8"], calibration_data=CALIB, quant_overrides=[".*=int16x8"])
    io = cnn_default.report["io"]
    base = sqnr(cnn, cnn_default.variants["integer_quant"], io, EVALS)
    wide = sqnr(cnn, every.variants["integer_quant"], io, EVALS)
    ref16 = sqnr(cnn, cnn_default.variants["integer_quant_with_int16_act"], io, EVALS)
    assert all(d[0] == "int16" for d in convs(every.variants["integer_quant"]))
    assert wide >= base + 3.0, (base, wide)  # measured 26.5 -> 32.0 dB
    assert abs(wide - ref16) <= 1.0, (wide, ref16)
    one = sqnr(cnn, res.variants["integer_quant"], io, EVALS)
    assert one >= base - 0.5, (base, one)  # one layer wider: never clearly worse


def test_int8_node_in_the_16x8_file_runs_int8(cnn, cnn_default):
    res = convert(
        cnn, quantize=["int16x8"], calibration_data=CALIB, quant_overrides={"conv[23]": "int8"}
    )
    for kind in ("integer_quant_with_int16_act", "full_integer_quant_with_int16_act"):
        assert convs(res.variants[kind]) == [
            ("int16", "int8", "int64"),
            ("int8", "int8", "int32"),
            ("int8", "int8", "int32"),
        ]
        assert precision_of(summary_of(res, kind), "conv2")["precision"] == "int8"
        assert precision_of(summary_of(res, kind), "conv1")["precision"] == "int16x8"
    # the full-integer interface keeps the file's width
    io = {r["name"]: r["dtype"] for r in summary_of(res, "full_integer_quant_with_int16_act")["io"]}
    assert io == {"x": "int16", "y": "int16"}
    kind = "integer_quant_with_int16_act"
    table = cnn_default.report["io"]
    wide = sqnr(cnn, cnn_default.variants[kind], table, EVALS)
    narrow = sqnr(cnn, res.variants[kind], table, EVALS)
    int8 = sqnr(cnn, cnn_default.variants["integer_quant"], table, EVALS)
    assert narrow <= wide - 0.7, (wide, narrow)  # measured 32.0 -> 30.6 dB
    assert narrow >= int8 + 2.0, (int8, narrow)  # still well above the all-int8 file (26.5)


def test_float_override_is_a_float_island(cnn, cnn_default):
    res = convert(cnn, quantize=["int8"], calibration_data=CALIB, quant_overrides=["conv.*=float"])
    full = res.variants["full_integer_quant"]
    assert convs(full) == [("float32", "float32", "float32")] * 3
    summary = summary_of(res, "full_integer_quant")
    for node in ("conv1", "conv2", "conv3"):
        row = precision_of(summary, node)
        assert (row["precision"], row["why"]) == ("float", "override")
    assert precision_of(summary, "fc")["precision"] == "int8"
    io = cnn_default.report["io"]
    base = sqnr(cnn, cnn_default.variants["integer_quant"], io, EVALS)
    floats = sqnr(cnn, res.variants["integer_quant"], io, EVALS)
    assert floats >= base + 2.0, (base, floats)  # measured 26.5 -> 30.3 dB


def test_float_override_is_not_a_strict_refusal(cnn):
    res = convert(
        cnn,
        quantize=["int8"],
        calibration_data=CALIB,
        strict_integer=True,
        quant_overrides=["conv2=float"],
    )
    assert convs(res.variants["full_integer_quant"])[1] == ("float32", "float32", "float32")


def test_last_match_wins(cnn):
    res = convert(
        cnn,
        quantize=["int8"],
        calibration_data=CALIB,
        quant_overrides=["conv.*=float", "conv2=int16x8"],
    )
    assert [d[0] for d in convs(res.variants["integer_quant"])] == ["float32", "int16", "float32"]
    overrides = summary_of(res, "integer_quant")["overrides"]
    assert overrides == [
        {"override": "conv.*=float", "matched_nodes": 3},
        {"override": "conv2=int16x8", "matched_nodes": 1},
    ]


def test_pattern_matches_op_types_and_output_names(cnn):
    res = convert(
        cnn,
        quantize=["int8"],
        calibration_data=CALIB,
        quant_overrides=["Gemm=float", "c3=int16x8"],  # an op type; conv3's output tensor
    )
    summary = summary_of(res, "integer_quant")
    assert precision_of(summary, "fc")["precision"] == "float"
    assert precision_of(summary, "conv3")["precision"] == "int16x8"
    assert dict(op_dtypes(res.variants["integer_quant"]))["FULLY_CONNECTED"][0] == "float32"


# --------------------------------------------------------------------------------------------
# Weight-only files
# --------------------------------------------------------------------------------------------


def test_float_override_keeps_float_weights_in_weight_only_files(cnn):
    res = convert(
        cnn, quantize=["fp16", "dynamic"], calibration_data=CALIB, quant_overrides=["conv3=float"]
    )
    dynamic = convs(res.variants["dynamic_range_quant"])
    assert [d[1] for d in dynamic] == ["float32", "int8", "float32"]  # conv1 is too small
    fp16 = op_dtypes(res.variants["float16"])
    assert sum(1 for name, d in fp16 if name == "DEQUANTIZE" and d == ("float16",)) == 3
    row = precision_of(summary_of(res, "float16"), "conv3")
    assert (row["precision"], row["why"]) == ("float", "override")
    assert precision_of(summary_of(res, "float16"), "conv2")["precision"] == "float16-weights"
    assert precision_of(summary_of(res, "dynamic_range_quant"), "conv2") == {
        "node": "conv2",
        "precision": "int8-weights",
        "why": "default",
    }
    base = convert(cnn, quantize=["dynamic"], calibration_data=CALIB)
    io = base.report["io"]
    before = sqnr(cnn, base.variants["dynamic_range_quant"], io, EVALS)
    after = sqnr(cnn, res.variants["dynamic_range_quant"], io, EVALS)
    assert after >= before + 1.0, (before, after)


def test_precision_a_file_cannot_honour_is_said_per_file(cnn):
    res = convert(
        cnn, quantize=["dynamic", "int8"], calibration_data=CALIB, quant_overrides=["fc=int16x8"]
    )
    row = precision_of(summary_of(res, "dynamic_range_quant"), "fc")
    assert row["why"] == "default" and "not_applicable" in row
    assert precision_of(summary_of(res, "integer_quant"), "fc")["precision"] == "int16x8"


# --------------------------------------------------------------------------------------------
# Kernel constraints, transformer block
# --------------------------------------------------------------------------------------------


def test_kernel_constraints_are_reported_as_forced():
    """HARD_SWISH has no 16x8 kernel (stays int8); Sin has no integer kernel (stays float)."""
    rng = np.random.default_rng(5)
    model = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1] * 4, name="conv"),
                helper.make_node("HardSwish", ["c"], ["h"], name="hswish"),
                helper.make_node("Sin", ["h"], ["s"], name="sin"),
                helper.make_node("Conv", ["s", "w2"], ["y"], name="conv_out"),
            ],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
            [
                numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(F) * 0.5, "w"),
                numpy_helper.from_array(rng.standard_normal(8).astype(F) * 0.1, "b"),
                numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(F) * 0.3, "w2"),
            ],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    res = convert(
        model,
        quantize=["int8"],
        calibration_data=CALIB,
        quant_overrides=["hswish|conv=int16x8", "sin=int8"],
    )
    summary = summary_of(res, "integer_quant")
    hs = precision_of(summary, "hswish")
    assert (hs["precision"], hs["why"], hs["detail"]) == ("int8", "forced", "no int16x8 kernel")
    sin = precision_of(summary, "sin")
    assert (sin["precision"], sin["why"]) == ("float", "forced")
    assert "no integer kernel" in sin["detail"]
    assert precision_of(summary, "conv")["precision"] == "int16x8"
    ops = op_dtypes(res.variants["integer_quant"])
    assert dict(ops)["HARD_SWISH"] == ("int8",)
    assert dict(ops)["SIN"] == ("float32",)


def test_transformer_block_attention_at_16x8():
    """The attention products, softmax and the linear layers (MatMul + Add) at 16x8 in the
    int8 file; the data-moving ops between them (head split RESHAPE/TRANSPOSE) follow their
    input's width instead of requantizing a copy."""
    model = transformer_block()
    calib = {"x": tokens(12, 1)}
    evals = tokens(12, 2)
    base = convert(model, quantize=["int8"], calibration_data=calib)
    res = convert(
        model,
        quantize=["int8"],
        calibration_data=calib,
        quant_overrides=["MatMul|Add|Softmax=int16x8"],
    )
    ops = op_dtypes(res.variants["integer_quant"])
    bmm = [d for name, d in ops if name == "BATCH_MATMUL"]
    assert bmm and all(d[:2] == ("int16", "int16") for d in bmm), bmm
    assert [d for name, d in ops if name == "SOFTMAX"] == [("int16",)]
    summary = summary_of(res, "integer_quant")
    for row in summary["precision"]:
        if row["node"].startswith(("matmul_", "add_", "softmax_")):
            assert row["precision"] == "int16x8" and row["why"] == "override", row
    table = base.report["io"]

    def measure(r):
        return sqnr(model, r.variants["integer_quant"], table, evals)

    before, after = measure(base), measure(res)
    assert after >= before + 2.5, (before, after)  # measured 31.5 -> 36.2 dB


# --------------------------------------------------------------------------------------------
# User mistakes and warnings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "quantize", "needle"),
    [
        (["conv1=double"], ["int8"], "unknown precision 'double'"),
        (["conv1"], ["int8"], "expected PATTERN=PRECISION"),
        (["(conv=int8"], ["int8"], "not a regular expression"),
        (["conv1=int16x8"], ["fp16"], "can run a node at int16x8"),
        (["conv1=int4-weights"], ["int8"], "can run a node at int4-weights"),
    ],
)
def test_bad_overrides_are_option_errors(cnn, tmp_path, overrides, quantize, needle):
    out = tmp_path / "out"
    with pytest.raises(BadInputError) as info:
        convert(cnn, out, quantize=quantize, calibration_data=CALIB, quant_overrides=overrides)
    assert info.value.reason_code == "invalid_option"
    assert "quant_overrides" in info.value.message and needle in info.value.message
    assert info.value.exit_code == 2
    assert not out.exists()


def test_cli_bad_override_exits_2_naming_the_flag(cnn, tmp_path, capsys):
    path = tmp_path / "cnn.onnx"
    onnx.save(cnn, path)
    out = tmp_path / "out"
    code = cli_main(
        [str(path), "-o", str(out), "--quantize", "int8", "--calibration-random",
         "--quant-override", "conv1=int3"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--quant-override" in err[0] and "int3" in err[0]
    assert not out.exists()


def test_pattern_matching_nothing_warns(cnn, caplog):
    with caplog.at_level(logging.WARNING, logger="onnx2tflite_direct"):
        res = convert(
            cnn,
            quantize=["int8"],
            calibration_data=CALIB,
            quant_overrides=["nothing_here=float", "bn3=int16x8"],
        )
    entries = summary_of(res, "integer_quant")["overrides"]
    assert entries[0]["warning"] == "matches no node of the model"
    assert "bn3 (folded away)" in entries[1]["warning"]  # folded into conv3's weights
    assert any("nothing_here=float matches no node" in r.message for r in caplog.records)


def test_a_fused_node_passes_its_override_to_the_node_computing_it(cnn):
    """relu2 is computed by conv2's kernel (fused activation): its override is conv2's."""
    res = convert(cnn, quantize=["int8"], calibration_data=CALIB, quant_overrides=["relu2=float"])
    summary = summary_of(res, "integer_quant")
    assert "relu2 (computed inside conv2)" in summary["overrides"][0]["via"]
    row = precision_of(summary, "conv2")
    assert (row["precision"], row["why"], row["override"]) == ("float", "override", "relu2=float")
    assert [d[0] for d in convs(res.variants["integer_quant"])] == ["int8", "float32", "int8"]
    named = convert(
        cnn,
        quantize=["int8"],
        calibration_data=CALIB,
        quant_overrides=["conv2=int16x8", "relu2=float"],  # the host named itself wins
    )
    assert [d[0] for d in convs(named.variants["integer_quant"])] == ["int8", "int16", "int8"]


def test_no_override_changes_nothing(cnn, cnn_default):
    again = convert(cnn, quantize=["int8", "int16x8"], calibration_data=CALIB, quant_overrides=[])
    assert again.variants == cnn_default.variants
    assert "overrides" not in summary_of(again, "integer_quant")


def test_weight_only_files_name_honoured_overrides_by_their_weight_formats():
    """In the weight-only files a node asked for int8 reports ``int8-weights`` (honoured), one
    asked for float keeps float weights; an activation width is not applicable there."""
    model = transformer_block()
    res = convert(
        model,
        quantize=["dynamic", "int4", "int8"],  # (int16x8 needs a file that can honour it)
        calibration_data={"x": tokens(12, 1)},
        quant_overrides=["matmul_1=float", "matmul_2=int8", "matmul_3=int16x8"],
    )
    for kind in ("dynamic_range_quant", "int4_weight_quant"):
        summary = summary_of(res, kind)
        one, two, three = (precision_of(summary, f"matmul_{k}") for k in (1, 2, 3))
        assert (one["precision"], one["why"]) == ("float", "override"), one
        assert (two["precision"], two["why"]) == ("int8-weights", "override"), two
        assert three["why"] == "default" and "not_applicable" in three, three


def test_override_without_quantize_has_no_effect_and_says_so(cnn, caplog):
    with caplog.at_level(logging.WARNING, logger="onnx2tflite_direct"):
        res = convert(cnn, quant_overrides=["conv1=float"])
    assert not res.variants
    assert any(
        "quant_overrides has no effect without quantize" in r.message for r in caplog.records
    )
