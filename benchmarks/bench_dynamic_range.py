"""quantize_dynamic models: the float32 file and the dynamic-range file against onnxruntime.

The float32 file keeps the model's exact DynamicQuantizeLinear -> MatMulInteger/ConvInteger
semantics (exact int32 accumulators, lowering/qlinear.py), so it must agree with onnxruntime to
float32 rounding. The dynamic-range file (``<stem>_dynamic_range_quant.tflite``) re-expresses
the model's own int8 weights for LiteRT's hybrid kernels, which quantize the *input* at run
time differently from onnxruntime (symmetric int8 per batch row vs onnxruntime's asymmetric
uint8 per tensor): it cannot match onnxruntime's quantized output, so it is measured three
ways (SQNR, dB; a model's figure is its worst output):

* ``litert_dynrange_vs_ort_qdyn``: the two quantizers against each other;
* ``ort_qdyn_vs_float`` and ``litert_dynrange_vs_float``: each against the float model the
  quantized one came from (how much accuracy each quantizer costs).

Models: the ``*_qdyn`` entries of the real-model corpus (``tools/zoo``; built with
``python -m tools.zoo.build``, skipped when absent) and a generated BERT-base-sized FFN
(768 -> 3072 -> 768, GELU, quantize_dynamic per-tensor and per-channel) whose reductions reach
K = 3072.

    PYTHONPATH=. python benchmarks/bench_dynamic_range.py

Writes ``benchmarks/results/dynamic_range.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnx2tflite_direct import convert  # noqa: E402
from onnx2tflite_direct.validate import run_litert, run_onnxruntime  # noqa: E402

ZOO = (
    "hf_bert_ts_qdyn",
    "minilm_l6_ts_qdyn",
    "hf_gpt2_past_ts_qdyn",
    "hf_vit_ts_qdyn",
    "hf_wav2vec2_ts_qdyn",
    "hf_whisper_encoder_ts_qdyn",
    "tv_resnet18_ts_qdyn",
    "tv_mobilenet_v3_small_ts_qdyn",
)


def sqnr(actual: np.ndarray, expected: np.ndarray) -> float:
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    noise = max(float(np.sum((a - e) ** 2)), 1e-30)
    return round(float(10 * np.log10(np.sum(e**2) / noise)), 1)


def worst(actual: dict, expected: dict) -> float:
    return min(sqnr(actual[k], expected[k]) for k in expected)


def measure(name: str, qpath: Path, fpath: Path, feeds: dict) -> dict:
    ort_q = run_onnxruntime(qpath, feeds)
    ort_f = run_onnxruntime(fpath, feeds)
    pins = {k: tuple(v.shape) for k, v in feeds.items()}
    with tempfile.TemporaryDirectory() as tmp:
        res = convert(str(qpath), tmp, keep_io_layout=True, input_shapes=pins, stem="m")
        io = res.report.get("io")
        f32 = run_litert(res.tflite_bytes, feeds, io)
        dyn = run_litert(res.variants["dynamic_range_quant"], feeds, io)
    return {
        "name": name,
        "float32_file_vs_ort_qdyn": worst(f32, ort_q),
        "litert_dynrange_vs_ort_qdyn": worst(dyn, ort_q),
        "ort_qdyn_vs_float": worst(ort_q, ort_f),
        "litert_dynrange_vs_float": worst(dyn, ort_f),
    }


def ffn_models(tmp: Path) -> list[tuple[str, Path, Path, dict]]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    hidden, inner = 768, 3072
    inits = [
        numpy_helper.from_array(
            (rng.standard_normal((hidden, inner)) * 0.03).astype(np.float32), "w1"
        ),
        numpy_helper.from_array((rng.standard_normal(inner) * 0.02).astype(np.float32), "b1"),
        numpy_helper.from_array(
            (rng.standard_normal((inner, hidden)) * 0.02).astype(np.float32), "w2"
        ),
        numpy_helper.from_array((rng.standard_normal(hidden) * 0.02).astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Gelu", ["hb"], ["g"]),
        helper.make_node("MatMul", ["g", "w2"], ["o"]),
        helper.make_node("Add", ["o", "b2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "ffn",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 128, hidden])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 128, hidden])],
        inits,
    )
    fpath = tmp / "ffn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), fpath)
    feeds = {"x": rng.standard_normal((1, 128, hidden)).astype(np.float32)}
    out = []
    for per_channel in (False, True):
        qpath = tmp / f"ffn_q{int(per_channel)}.onnx"
        quantize_dynamic(
            str(fpath), str(qpath), weight_type=QuantType.QInt8, per_channel=per_channel
        )
        name = f"ffn_768_3072_{'per_channel' if per_channel else 'per_tensor'}"
        out.append((name, qpath, fpath, feeds))
    return out


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for name, qpath, fpath, feeds in ffn_models(Path(tmpdir)):
            rows.append(measure(name, qpath, fpath, feeds))
            print(json.dumps(rows[-1]), flush=True)
    try:
        from tools.zoo import manifest
        from tools.zoo.run import load_feeds, model_path
    except ImportError:
        manifest = None
    for name in ZOO if manifest is not None else ():
        qpath, fpath = model_path(name), model_path(name[: -len("_qdyn")])
        if not (qpath.exists() and fpath.exists()):
            print(f"{name}: not built, skipped", flush=True)
            continue
        feeds = load_feeds(manifest.by_name(name), onnx.load(str(qpath)))
        rows.append(measure(name, qpath, fpath, feeds))
        print(json.dumps(rows[-1]), flush=True)
    out = ROOT / "benchmarks" / "results" / "dynamic_range.json"
    out.write_text(json.dumps({"models": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
