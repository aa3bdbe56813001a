"""Lowering forms chosen for speed, each timed against the form it replaced and onnxruntime,
side by side in one interleaved loop (issue 22 latency work).

Each form has a module switch; every case is converted twice (switch on = the shipped form,
off = the previous form), both files are checked against onnxruntime, and the three runners
are timed interleaved at 1 thread (ort, new, old, ort, ...; median of ``--runs`` after
``--warmup``). Ratios are to onnxruntime's median from the same loop, so machine load moves
all three alike.

| form | switch | replaces |
|---|---|---|
| ``conv3d`` | ``conv3d_frames.FRAMES_AS_2D`` | CONV_3D (LiteRT kernel, no XNNPACK) |
| ``conv_split`` | ``conv_split.SPLIT_LARGE_FILTERS`` | one CONV_2D with a filter past the cache |
| ``grid_tent`` | ``grid_tent.TENT_GRIDSAMPLE`` | GridSample's GATHER_ND corner form |
| ``reflect_pad`` | ``reflect_pad.REFLECT_AS_SLICES`` | MIRROR_PAD |

Cases: the corpus models each form was made for, and single-op layers of their shapes.

    PYTHONPATH=. python benchmarks/bench_lowering_forms.py [--runs 20] [--only NAME ...]

Writes ``benchmarks/results/lowering_forms.json`` and ``lowering_forms.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_latency import litert_runner, ort_runner  # noqa: E402
from benchmarks.bench_partitions import count_partitions  # noqa: E402
from onnx2tflite_direct import ConversionError, convert  # noqa: E402
from onnx2tflite_direct import validate as V  # noqa: E402
from onnx2tflite_direct.lowering import (  # noqa: E402
    conv3d_frames,
    conv_split,
    grid_tent,
    reflect_pad,
)

RESULTS = ROOT / "benchmarks" / "results" / "lowering_forms.json"
SWITCHES = {
    "conv3d": (conv3d_frames, "FRAMES_AS_2D"),
    "conv_split": (conv_split, "SPLIT_LARGE_FILTERS"),
    "grid_tent": (grid_tent, "TENT_GRIDSAMPLE"),
    "reflect_pad": (reflect_pad, "REFLECT_AS_SLICES"),
}


def _model(nodes, inputs, inits, name="layer"):
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def conv_layer(x_shape, w_shape, **attrs):
    rng = np.random.default_rng(0)
    inits = {
        "w": (rng.standard_normal(w_shape) * 0.05).astype(np.float32),
        "b": rng.standard_normal(w_shape[0]).astype(np.float32),
    }
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    return _model([node], [("x", x_shape)], inits), feeds


def grid_layer(x_shape, out_sp):
    rng = np.random.default_rng(0)
    node = helper.make_node(
        "GridSample", ["x", "g"], ["y"], align_corners=1, mode="bilinear", padding_mode="zeros"
    )
    g_shape = (x_shape[0], *out_sp, 2)
    model = _model([node], [("x", x_shape), ("g", g_shape)], {})
    feeds = {
        "x": rng.standard_normal(x_shape).astype(np.float32),
        "g": rng.uniform(-1.1, 1.1, g_shape).astype(np.float32),
    }
    return model, feeds


def reflect_layer(x_shape, before, after):
    rng = np.random.default_rng(0)
    pads = np.array([0, 0, before, 0, 0, after], np.int64)
    node = helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    return _model([node], [("x", x_shape)], {"p": pads}), feeds


# name -> (form, builder or corpus model name)
CASES = {
    "tv_r3d_18_ts": ("conv3d", "zoo"),
    "tv_r2plus1d_18_ts": ("conv3d", "zoo"),
    "r3d_layer1_3x3x3": (
        "conv3d",
        lambda: conv_layer((1, 64, 16, 56, 56), (64, 64, 3, 3, 3), pads=[1] * 6),
    ),
    "r3d_layer3_3x3x3_s2": (
        "conv3d",
        lambda: conv_layer(
            (1, 128, 8, 28, 28), (256, 128, 3, 3, 3), pads=[1] * 6, strides=[2, 2, 2]
        ),
    ),
    "r2plus1d_spatial_1x3x3": (
        "conv3d",
        lambda: conv_layer((1, 64, 16, 56, 56), (144, 64, 1, 3, 3), pads=[0, 1, 1, 0, 1, 1]),
    ),
    "r2plus1d_temporal_3x1x1": (
        "conv3d",
        lambda: conv_layer((1, 144, 16, 56, 56), (64, 144, 3, 1, 1), pads=[1, 0, 0, 1, 0, 0]),
    ),
    "tv_fcn_resnet50_ts": ("conv_split", "zoo"),
    "fcn_head_3x3_2048_512": (
        "conv_split",
        lambda: conv_layer((1, 2048, 16, 16), (512, 2048, 3, 3), pads=[1] * 4),
    ),
    "conv_3x3_1024_512": (
        "conv_split",
        lambda: conv_layer((1, 1024, 16, 16), (512, 1024, 3, 3), pads=[1] * 4),
    ),
    "tv_raft_small_ts": ("grid_tent", "zoo"),
    "raft_lookup_16x16": ("grid_tent", lambda: grid_layer((256, 1, 16, 16), (7, 7))),
    "raft_lookup_8x8": ("grid_tent", lambda: grid_layer((256, 1, 8, 8), (7, 7))),
    "raft_lookup_2x2": ("grid_tent", lambda: grid_layer((256, 1, 2, 2), (7, 7))),
    "grid_4ch_12x12": ("grid_tent", lambda: grid_layer((1, 4, 12, 12), (32, 32))),
    "hf_encodec_ts": ("reflect_pad", "zoo"),
    "encodec_pad_32x3200_3_3": ("reflect_pad", lambda: reflect_layer((1, 32, 3200), 3, 3)),
    "encodec_pad_64x1600_6_0": ("reflect_pad", lambda: reflect_layer((1, 64, 1600), 6, 0)),
}


def _zoo_model(name: str):
    from tools.zoo import manifest, run

    entry = manifest.by_name(name)
    model = onnx.load(str(run.model_path(name)))
    return model, run.load_feeds(entry, model)


def _convert(model, feeds, form: str, on: bool):
    module, attr = SWITCHES[form]
    setattr(module, attr, on)
    try:
        pins = {k: tuple(v.shape) for k, v in feeds.items()}
        with tempfile.TemporaryDirectory() as tmp:
            res = convert(model, tmp, keep_io_layout=True, input_shapes=pins, stem="m")
            return bytes(res.tflite_bytes), res.report.get("io")
    finally:
        setattr(module, attr, True)


def bench(name: str, runs: int, warmup: int) -> dict:
    form, build = CASES[name]
    model, feeds = _zoo_model(name) if build == "zoo" else build()
    expected = V.run_onnxruntime(model, feeds)
    row: dict = {"form": form, "source": "zoo" if build == "zoo" else "layer"}
    runners = {"ort": ort_runner(model.SerializeToString(), feeds, 1)}
    for label, on in (("new", True), ("old", False)):
        try:
            tfl, io = _convert(model, feeds, form, on)
        except ConversionError as err:  # e.g. grouped CONV_3D
            row[label] = {"refused": err.reason_code}
            continue
        got = V.run_litert(tfl, feeds, io)
        metrics = V.compare(expected, got, atol=1e-5, rtol=1e-3)
        parts = count_partitions(tfl)
        row[label] = {
            "match": all(bool(m.get("ok")) for m in metrics.values()),
            "max_rel": max(float(m.get("max_rel") or 0.0) for m in metrics.values()),
            "partitions": parts["partitions"],
            "outside": parts["outside"],
            "tflite_ops": parts["tflite_ops"],
        }
        runners[label] = litert_runner(tfl, feeds, io or [], 1)
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(runs):
        for k, run in runners.items():
            start = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - start)
    med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    row["ort_ms"] = round(med["ort"], 4)
    for label in runners.keys() - {"ort"}:
        row[label]["litert_ms"] = round(med[label], 4)
        row[label]["ratio"] = round(med[label] / med["ort"], 3)
    return row


def _cell(r: dict, key: str):
    return r.get(key, f"refused ({r['refused']})" if "refused" in r and key == "ratio" else "-")


def write_md(data: dict, path: Path) -> None:
    lines = [
        "# Lowering forms chosen for speed: new form vs the form it replaced vs onnxruntime",
        "",
        f"Commit {data['commit']}, {data['machine']}, 1 thread, median of {data['runs']} "
        "interleaved runs; ratio = LiteRT / onnxruntime from the same loop. "
        "`PYTHONPATH=. python benchmarks/bench_lowering_forms.py`",
        "",
        "| case | form | ort ms | new ratio | new partitions | old ratio | old partitions "
        "| outputs match (new, old) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in data["rows"].items():
        n, o = r["new"], r["old"]
        lines.append(
            f"| {name} | {r['form']} | {r['ort_ms']} | {_cell(n, 'ratio')} "
            f"| {_cell(n, 'partitions')} | {_cell(o, 'ratio')} | {_cell(o, 'partitions')} "
            f"| {n.get('match')}, {o.get('match', '-')} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    names = args.only or list(CASES)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    rows = {}
    for name in names:
        rows[name] = r = bench(name, args.runs, args.warmup)
        n, o = r["new"], r["old"]
        print(
            f"{name:26s} {r['form']:11s} ort {r['ort_ms']:9.3f} ms  new {_cell(n, 'ratio')} "
            f"({_cell(n, 'partitions')} part.)  old {_cell(o, 'ratio')} "
            f"({_cell(o, 'partitions')} part.)  match {n.get('match')} {o.get('match')}",
            flush=True,
        )
    data = {
        "commit": commit,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "runs": args.runs,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    write_md(data, args.out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
