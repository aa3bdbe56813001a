"""Issue #8: a model whose float32 weights exceed what one FlatBuffer can hold (> 2 GB).

Generates a stack of large fully-connected layers (ONNX ``Gemm`` with ``transB=1``, the way
``torch.nn.Linear`` exports) whose weights are stored as ONNX external data in a work folder,
converts it in a fresh process (wall time and peak RSS = VmHWM), then checks in another process
that LiteRT loads the single .tflite *from its path* and matches onnxruntime. The converter
switches to the offset-buffer layout on its own (weights appended after the FlatBuffer).

    python benchmarks/bench_large_model.py [--layers 9] [--dim 8192] [--workdir /tmp/...]

Results go to ``benchmarks/results/large_model.json``. Needs ~3x the weight size of free disk
in the work folder (ONNX data + .tflite) and ~2.5x of RAM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CONVERT_CHILD = r"""
import json, sys, time
t = time.perf_counter()
import onnx2tflite_direct as o2t
res = o2t.convert(sys.argv[1], sys.argv[2], stem="large", external_buffers=sys.argv[3] == "1")
seconds = time.perf_counter() - t
with open("/proc/self/status") as fh:
    rss = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_rss": rss, "path": str(res.paths["float32"])}))
"""

CHECK_CHILD = r"""
import json, sys
import numpy as np
import onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter
onnx_path, tflite_path, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])
x = np.random.default_rng(0).standard_normal((1, dim)).astype(np.float32)
expected = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
runner = Interpreter(model_path=tflite_path).get_signature_runner("serving_default")
actual = runner(x=x)["y"]
err = np.abs(actual - expected)
ok = bool(np.all(err <= 1e-5 * max(1.0, float(np.abs(expected).max())) + 1e-3 * np.abs(expected)))
print(json.dumps({"max_abs_err": float(err.max()), "max_expected": float(np.abs(expected).max()),
                  "ok": ok}))
"""


def write_model(workdir: Path, layers: int, dim: int, seed: int = 0) -> tuple[Path, int]:
    """ONNX model + one external data file, written layer by layer (never all in memory)."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    data_name = "weights.bin"
    nodes, inits = [], []
    offset = 0
    with open(workdir / data_name, "wb") as fh:
        cur = "x"
        for k in range(layers):
            for name, shape in ((f"w{k}", (dim, dim)), (f"b{k}", (dim,))):
                arr = rng.standard_normal(shape, dtype=np.float32)
                arr *= np.float32(np.sqrt(2.0 / dim) if name[0] == "w" else 0.1)
                fh.write(arr.tobytes())
                t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
                t.data_location = TensorProto.EXTERNAL
                for key, value in (("location", data_name), ("offset", offset)):
                    t.external_data.add(key=key, value=str(value))
                t.external_data.add(key="length", value=str(arr.nbytes))
                offset += arr.nbytes
                inits.append(t)
                del arr
            out = "y" if k == layers - 1 else f"h{k}"
            nodes.append(helper.make_node("Gemm", [cur, f"w{k}", f"b{k}"], [f"g{k}"], transB=1))
            nodes.append(helper.make_node("Relu", [f"g{k}"], [out]))
            cur = out
    graph = helper.make_graph(
        nodes,
        "large_fc_stack",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = workdir / "large.onnx"
    onnx.save(model, str(path))  # initializers stay external: only the graph is written here
    return path, offset


def run_child(code: str, *args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode:
        raise SystemExit(f"child failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def file_layout(path: Path) -> dict:
    """Offset-layout facts read back from the file header (no weights are read)."""
    from ai_edge_litert import schema_py_generated as schema

    size = path.stat().st_size
    with open(path, "rb") as fh:
        import mmap

        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            m = schema.Model.GetRootAs(mm, 0)
            bufs = [m.Buffers(i) for i in range(m.BuffersLength())]
            external = [(b.Offset(), b.Size()) for b in bufs if b.Offset() > 1]
            inline = sum(b.DataLength() for b in bufs)
            names = [m.Metadata(i).Name().decode() for i in range(m.MetadataLength())]
    return {
        "file_bytes": size,
        "flatbuffer_bytes": min(o for o, _ in external) if external else size,
        "external_buffers": len(external),
        "inline_data_bytes": inline,
        "all_offsets_64_aligned": all(o % 64 == 0 for o, _ in external),
        "buffer_location_metadata": "buffer_location" in names,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=9)
    parser.add_argument("--dim", type=int, default=8192)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/o2t_large_model"))
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument(
        "--external-buffers", action="store_true", help="force the offset layout (small runs)"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.workdir).free
    weight_bytes = args.layers * (args.dim + 1) * args.dim * 4
    if free < 2.2 * weight_bytes:
        raise SystemExit(f"need ~{2.2 * weight_bytes / 2**30:.1f} GiB free in {args.workdir}")
    try:
        t = time.perf_counter()
        onnx_path, weight_bytes = write_model(args.workdir, args.layers, args.dim)
        print(
            f"generated {weight_bytes / 2**30:.2f} GiB of weights in {time.perf_counter() - t:.1f} s"
        )
        conv = run_child(CONVERT_CHILD, onnx_path, args.workdir / "out", int(args.external_buffers))
        print(f"converted in {conv['seconds']:.1f} s, peak RSS {conv['peak_rss'] / 2**30:.2f} GiB")
        layout = file_layout(Path(conv["path"]))
        check = run_child(CHECK_CHILD, onnx_path, conv["path"], args.dim)
        print(f"layout {layout}\nLiteRT (from path) vs onnxruntime: {check}")
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    row = {
        "model": f"{args.layers} x Gemm({args.dim}x{args.dim}, transB=1) + Relu, float32",
        "weight_bytes": weight_bytes,
        "convert_seconds": round(conv["seconds"], 2),
        "convert_peak_rss_bytes": conv["peak_rss"],
        "peak_rss_over_weights": round(conv["peak_rss"] / weight_bytes, 2),
        **layout,
        "litert_from_path_vs_onnxruntime": check,
        "machine": f"{os.cpu_count()} cores",
    }
    out = ROOT / "benchmarks" / "results" / "large_model.json"
    out.write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row, indent=2))
    return 0 if check["ok"] and layout["buffer_location_metadata"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
