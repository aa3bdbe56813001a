"""``inspect`` (FlatBuffer summary), the public ``tflite_reader`` it is built on, and LiteRT's
model analyzer as the GPU verdict's cross-check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import op_histogram

import onnx2tflite_direct as o2t
from onnx2tflite_direct import gpu_check, tflite_reader
from onnx2tflite_direct.inspect_tflite import format_inspect, inspect, main, tensor_table

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "small_cnn.onnx"


@pytest.fixture(scope="module")
def example():
    return o2t.convert(EXAMPLE)


def test_histogram_matches_conversion_report(example):
    info = inspect(example.tflite_bytes)
    assert info["op_histogram"] == example.report["tflite_ops"]
    assert dict(op_histogram(example.tflite_bytes)) == {
        k: v["count"] for k, v in info["op_histogram"].items()
    }
    assert info["operator_count"] == sum(v["count"] for v in info["op_histogram"].values())


def test_io_signature_and_metadata(example):
    info = inspect(example.tflite_bytes)
    io = {r["name"]: r for r in example.report["io"]}
    for kind in ("inputs", "outputs"):
        for row in info[kind]:
            assert row["shape"] == io[row["name"]]["tflite_shape"]
            assert row["shape_signature"] == row["shape"]
            assert row["dtype"] == io[row["name"]]["dtype"]
    (sig,) = info["signature_defs"]
    assert sig["key"] == "serving_default"
    assert set(sig["inputs"]) == {"image"} and set(sig["outputs"]) == {"probs"}
    assert info["metadata"]["min_runtime_version"][0].isdigit()
    size = info["size"]
    assert size["total"] == len(example.tflite_bytes) == size["constant_buffers"] + size["rest"]
    assert size["constant_buffers"] > size["rest"] > 0  # weights dominate this model
    rows = tensor_table(example.tflite_bytes)
    assert info["tensor_count"] == len(rows)
    assert sum(r["buffer_bytes"] for r in rows) == size["constant_buffers"]
    assert not any(r["constant"] for r in rows if r["name"] in io)


def test_format_and_cli(example, tmp_path, capsys):
    text = format_inspect(inspect(example.tflite_bytes))
    for needle in ("image", "probs", "CONV_2D", "min_runtime_version", "constant buffers"):
        assert needle in text
    path = tmp_path / "m.tflite"
    path.write_bytes(example.tflite_bytes)
    assert main([str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["op_histogram"] == example.report["tflite_ops"]
    assert main([str(path)]) == 0 and "op histogram" in capsys.readouterr().out
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    assert main([str(junk)]) == 2
    assert main([str(tmp_path / "missing.tflite")]) == 2


# ----------------------------------------------------------------------------------------------
# GPU compatibility
# ----------------------------------------------------------------------------------------------


def test_reader_tables_agree_with_inspect(example):
    """inspect and the diagnostics read files through tflite_reader's public accessors."""
    sch = tflite_reader.schema()
    model = tflite_reader.root(bytes(example.tflite_bytes), sch)
    codes = tflite_reader.operator_codes(model, sch)
    assert {name for name, _, _ in codes} == set(example.report["tflite_ops"])
    assert {name: v for name, v, _ in codes} == {
        k: v["version"] for k, v in example.report["tflite_ops"].items()
    }
    rows = tflite_reader.tensor_rows(model, model.Subgraphs(0), sch)
    assert rows == tensor_table(example.tflite_bytes)
    assert tensor_table is tflite_reader.tensor_table


def test_gpu_verdict_does_not_depend_on_the_analyzer(example):
    """The verdict comes from the ported rules; the analyzer is consulted only when its GPU
    rules are real (this ai-edge-litert build's are not: it passes a CUSTOM-op probe)."""
    assert example.report["gpu"]["verdict"] == "fully delegable"
    cross = gpu_check.analyzer_cross_check(example.tflite_bytes, example.report["gpu"]["fall_back"])
    assert set(cross) >= {"available", "effective", "disagreements"}
    assert cross["effective"] is (cross["available"] and gpu_check.analyzer_is_effective())
    if cross["effective"]:
        assert cross["disagreements"] == []
    json.dumps(cross)


def test_gpu_parser_reads_warnings():
    text = (
        "Subgraph#0 main(T#0) -> [T#3]\n"
        "  Op#0 CONV_2D(T#0, T#1, T#2) -> [T#3]\n"
        "  Op#1 GATHER_ND(T#3, T#4) -> [T#5]\n"
        "GPU COMPATIBILITY WARNING: Not supported op GATHER_ND\n\n"
        "GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 1, 2 "
        "on TFLite runtime version 2.16.1\n"
    )
    verdict = gpu_check.parse_analyzer_text(text)
    assert verdict["compatible"] is False
    assert verdict["incompatible_ops"][0] == {
        "subgraph": 0,
        "op_index": 1,
        "op": "GATHER_ND",
        "message": "Not supported op GATHER_ND",
    }
    assert [e["op_index"] for e in verdict["incompatible_ops"]] == [1, 2]
    ok = gpu_check.parse_analyzer_text(
        "Your model looks compatible with GPU delegate on TFLite runtime version 2.16.1.\n"
    )
    assert ok == {"compatible": True, "incompatible_ops": [], "runtime_version": "2.16.1"}


def test_gpu_cross_check_without_analyzer(monkeypatch, example):
    monkeypatch.setattr(gpu_check, "_analyzer", lambda: None)
    cross = gpu_check.analyzer_cross_check(example.tflite_bytes, [])
    assert cross == {"available": False, "effective": False, "disagreements": []}
