"""KV cache kept inside the interpreter (resource variables) vs the cache as I/O (issue 23).

A toy decoder (``--layers`` single-head attention blocks with residuals, width ``--dim``, a
fixed maximum context ``T``) is written directly with ``onnx2tflite_direct.tfl`` + the builder
(no ONNX), in two forms, each with a ``prefill`` (``P`` prompt rows) and a ``decode`` (one
row at position ``pos``) signature:

- ``var``: the caches live in resource variables. Each signature opens them with VAR_HANDLE
  (same ``shared_name`` in both subgraphs), ``prefill`` writes them (PAD of the prompt's K/V
  to ``[T, D]``, ASSIGN_VARIABLE) and ``decode`` reads them (READ_VARIABLE), writes the new
  row at ``pos`` (DYNAMIC_UPDATE_SLICE) and stores them back (ASSIGN_VARIABLE). The caller
  passes only the token's hidden state and ``pos``.
- ``io``: the same graph with the caches as signature inputs/outputs that the caller feeds
  back every step.

Both attend over the whole ``[T, D]`` buffer with the positions after ``pos`` masked
(SELECT_V2 to -1e9 before SOFTMAX), so one file serves every position without resizing.

Checks (before any timing): prefill + 8 decode steps of both forms match a float64 numpy
reference (max abs error <= 1e-4 * max(1, max|ref|)); the variable form's state persists across
invocations and from the ``prefill`` signature to the ``decode`` one; and a separate
``grow`` probe tests whether ASSIGN_VARIABLE may change a variable's shape (a cache growing
by CONCATENATION instead of a fixed buffer). XNNPACK partitions come from
``_get_ops_details()`` (DELEGATE nodes vs operators left to the CPU kernels).

Timing: one decode step of each form, 1 thread (LiteRT default XNNPACK, ``num_threads=1``),
alternating step by step (var, io, var, io, ...), median of ``--runs`` after ``--warmup``,
at each ``--contexts`` size.

    PYTHONPATH=. python benchmarks/bench_kv_variables.py [--contexts 128,512,2048]

Writes ``benchmarks/results/kv_variables.json`` and prints one line per context size.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnx2tflite_direct import tfl, versioning  # noqa: E402
from onnx2tflite_direct.builder import build_flatbuffer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "kv_variables.json"

# The converter has no numpy dtype for TensorType RESOURCE (it never writes one); this
# benchmark registers a private sentinel dtype for it in the type cache instead of changing
# versioning.py (read-only here). The tensor holds a resource id, written by VAR_HANDLE.
RESOURCE = np.dtype([("resource_id", "<i4")])
versioning._TYPE_CACHE[RESOURCE] = "RESOURCE"

F32 = np.dtype(np.float32)
I32 = np.dtype(np.int32)
NEG = -1e9


def _const(name, values, dtype=F32):
    arr = np.asarray(values, dtype=dtype)
    return tfl.Tensor(name, arr.dtype, arr.shape, data=arr)


def _weights(layers: int, dim: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(dim)
    return [
        {
            k: (rng.standard_normal((dim, dim)) * scale).astype(np.float32)
            for k in ("q", "k", "v", "o")
        }
        for _ in range(layers)
    ]


class _Graph:
    """A tiny op-appending helper over one tfl.Subgraph."""

    def __init__(self, name: str) -> None:
        self.sg = tfl.Subgraph(name=name)
        self.n = 0

    def t(self, shape, dtype=F32, name="t"):
        self.n += 1
        return tfl.Tensor(f"{self.sg.name}/{name}_{self.n}", np.dtype(dtype), tuple(shape))

    def op(self, opcode, inputs, out_shape, dtype=F32, **options):
        out = self.t(out_shape, dtype, opcode.lower()) if out_shape is not None else None
        self.sg.operators.append(tfl.Operator(opcode, inputs, [out] if out else [], options))
        return out

    def inp(self, key, shape, dtype=F32):
        t = self.t(shape, dtype, key)
        self.sg.inputs.append(t)
        self.sg.input_names.append(key)
        return t

    def out(self, key, t):
        self.sg.outputs.append(t)
        self.sg.output_names.append(key)


def _attend(g, w, h, rows, keys, vals, mask, dim, T):
    """Residual single-head attention of ``h`` [rows, D] over ``keys``/``vals`` [T, D]."""
    q = g.op("FULLY_CONNECTED", [h, w["q"], None], (rows, dim))
    s = g.op("BATCH_MATMUL", [q, keys], (rows, T), adj_y=True)
    s = g.op("SELECT_V2", [mask, s, w["neg"]], (rows, T))
    p = g.op("SOFTMAX", [s], (rows, T), beta=1.0)
    o = g.op("BATCH_MATMUL", [p, vals], (rows, dim))
    a = g.op("FULLY_CONNECTED", [o, w["o"], None], (rows, dim))
    return g.op("ADD", [h, a], (rows, dim))


def build(kind: str, weights, dim: int, T: int, P: int) -> bytes:
    """The ``prefill`` + ``decode`` file of form ``kind`` ("var" or "io")."""
    ws = [
        {k: _const(f"w{i}_{k}", v / (np.sqrt(dim) if k == "q" else 1)) for k, v in lw.items()}
        for i, lw in enumerate(weights)
    ]
    neg = _const("neg", [NEG])
    for w in ws:
        w["neg"] = neg

    def handle(g, name):
        return g.op("VAR_HANDLE", [], (), RESOURCE, container="", shared_name=name)

    # prefill: xs [P, D] -> ys [P, D]; caches = PAD(prompt K/V) to [T, D].
    g = _Graph("prefill")
    h = g.inp("xs", (P, dim))
    causal = _const("causal", np.arange(T)[None, :] <= np.arange(P)[:, None], np.bool_)
    pads = _const("pads", [[0, T - P], [0, 0]], I32)
    for i, w in enumerate(ws):
        caches = []
        for c in ("k", "v"):
            x = g.op("FULLY_CONNECTED", [h, w[c], None], (P, dim))
            full = g.op("PAD", [x, pads], (T, dim))
            if kind == "var":
                g.op("ASSIGN_VARIABLE", [handle(g, f"{c}{i}"), full], None)
            else:
                g.out(f"{c}{i}", full)
            caches.append(full)
        h = _attend(g, w, h, P, *caches, causal, dim, T)
    g.out("ys", h)
    prefill = g.sg

    # decode: x [1, D], pos [1] (+ caches in io form) -> y [1, D] (+ caches).
    g = _Graph("decode")
    h = g.inp("x", (1, dim))
    pos = g.inp("pos", (1,), I32)
    start = g.op("CONCATENATION", [pos, _const("zero1", [0], I32)], (2,), I32, axis=0)
    mask = g.op("LESS_EQUAL", [_const("iota", np.arange(T), I32), pos], (T,), np.bool_)
    for i, w in enumerate(ws):
        caches = []
        for c in ("k", "v"):
            x = g.op("FULLY_CONNECTED", [h, w[c], None], (1, dim))
            if kind == "var":
                hd = handle(g, f"{c}{i}")
                old = g.op("READ_VARIABLE", [hd], (T, dim))
            else:
                old = g.inp(f"{c}{i}", (T, dim))
            new = g.op("DYNAMIC_UPDATE_SLICE", [old, x, start], (T, dim))
            if kind == "var":
                g.op("ASSIGN_VARIABLE", [hd, new], None)
            else:
                g.out(f"{c}{i}", new)
            caches.append(new)
        h = _attend(g, w, h, 1, *caches, mask, dim, T)
    g.out("y", h)
    # decode is subgraph 0: the partition count below reads the primary subgraph only.
    model = tfl.Model(
        subgraphs=[g.sg, prefill],
        signatures=[tfl.Signature("decode", 0), tfl.Signature("prefill", 1)],
    )
    return bytes(build_flatbuffer(model))


def build_grow(dim: int) -> bytes:
    """``init`` assigns a [1, D] value; ``grow`` appends a row (CONCATENATION) and re-assigns:
    a variable whose shape changes with every call (a cache growing without a max length)."""
    g0 = _Graph("init")
    x = g0.inp("x", (1, dim))
    hd = g0.op("VAR_HANDLE", [], (), RESOURCE, container="", shared_name="c")
    g0.op("ASSIGN_VARIABLE", [hd, x], None)
    g0.out("y", g0.op("ADD", [x, _const("z", [0.0])], (1, dim)))
    g = _Graph("grow")
    x = g.inp("x", (1, dim))
    hd = g.op("VAR_HANDLE", [], (), RESOURCE, container="", shared_name="c")
    # READ_VARIABLE resizes its output to the variable's shape only when the output is
    # declared rank 0 (then dynamic); a ranked output is copied at its declared size.
    old = g.op("READ_VARIABLE", [hd], ())
    new = g.op("CONCATENATION", [old, x], (2, dim), axis=0)
    new.shape_signature = (-1, dim)
    g.op("ASSIGN_VARIABLE", [hd, new], None)
    g.out("cache", new)
    model = tfl.Model(
        subgraphs=[g.sg, g0.sg],
        signatures=[tfl.Signature("grow", 0), tfl.Signature("init", 1)],
    )
    return bytes(build_flatbuffer(model))


def build_growing_io(weights, dim: int) -> bytes:
    """The cache as I/O at its actual length (what the converter writes today): ``decode``
    takes ``k<i>``/``v<i>`` [past, D] (past dynamic), CONCATENATEs the new row and attends
    over past + 1 rows without a mask; the caches come back one row longer."""
    ws = [
        {k: _const(f"w{i}_{k}", v / (np.sqrt(dim) if k == "q" else 1)) for k, v in lw.items()}
        for i, lw in enumerate(weights)
    ]
    g = _Graph("decode")
    h = g.inp("x", (1, dim))
    for i, w in enumerate(ws):
        caches = []
        for c in ("k", "v"):
            x = g.op("FULLY_CONNECTED", [h, w[c], None], (1, dim))
            old = g.inp(f"{c}{i}", (1, dim))
            old.shape_signature = (-1, dim)
            new = g.op("CONCATENATION", [old, x], (2, dim), axis=0)
            new.shape_signature = (-1, dim)
            g.out(f"{c}{i}", new)
            caches.append(new)
        q = g.op("FULLY_CONNECTED", [h, w["q"], None], (1, dim))
        sc = g.op("BATCH_MATMUL", [q, caches[0]], (1, 2), adj_y=True)
        sc.shape_signature = (1, -1)
        pr = g.op("SOFTMAX", [sc], (1, 2), beta=1.0)
        pr.shape_signature = (1, -1)
        o = g.op("BATCH_MATMUL", [pr, caches[1]], (1, dim))
        a = g.op("FULLY_CONNECTED", [o, w["o"], None], (1, dim))
        h = g.op("ADD", [h, a], (1, dim))
    g.out("y", h)
    return bytes(build_flatbuffer(tfl.Model(subgraphs=[g.sg])))


# -- numpy reference (float64) ------------------------------------------------------------
def _ref_attend(w, h, keys, vals, mask):
    q = h @ w["q"].T.astype(np.float64) / np.sqrt(h.shape[1])
    s = np.where(mask, q @ keys.T, NEG)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return h + (p @ vals) @ w["o"].T.astype(np.float64)


class Reference:
    def __init__(self, weights, T):
        self.w, self.T = weights, T
        self.caches = None

    def prefill(self, xs):
        P, dim = xs.shape
        h = xs.astype(np.float64)
        mask = np.arange(self.T)[None, :] <= np.arange(P)[:, None]
        self.caches = []
        for w in self.w:
            kv = []
            for c in ("k", "v"):
                full = np.zeros((self.T, dim))
                full[:P] = h @ w[c].T.astype(np.float64)
                kv.append(full)
            self.caches.append(kv)
            h = _ref_attend(w, h, *kv, mask)
        return h

    def decode(self, x, pos):
        h = x.astype(np.float64)
        mask = np.arange(self.T)[None, :] <= pos
        for w, kv in zip(self.w, self.caches, strict=True):
            for j, c in enumerate(("k", "v")):
                kv[j][pos] = (h @ w[c].T.astype(np.float64))[0]
            h = _ref_attend(w, h, *kv, mask)
        return h


def _close(got, ref) -> float:
    err = float(np.max(np.abs(got - ref)))
    bound = 1e-4 * max(1.0, float(np.max(np.abs(ref))))
    if not err <= bound:
        raise AssertionError(f"max abs error {err:.3g} > {bound:.3g}")
    return err


def _partitions(interp) -> dict:
    """XNNPACK partitions of the primary subgraph (``decode``) and the ops left outside,
    attributed by bench_partitions' dataflow walk."""
    from bench_partitions import owned_nodes

    ops = interp._get_ops_details()
    owner, delegates = owned_nodes(ops)
    outside = Counter(
        o["op_name"] for o in ops if o["op_name"] != "DELEGATE" and o["index"] not in owner
    )
    return {"partitions": len(delegates), "outside": dict(sorted(outside.items()))}


def _interpreter(data: bytes, use_xnnpack: bool = True):
    from onnx2tflite_direct.validate import make_interpreter

    return make_interpreter(data, num_threads=1, use_xnnpack=use_xnnpack)


def run_context(T, args, weights):
    dim, P, L = args.dim, args.prompt, args.layers
    rng = np.random.default_rng(T)
    xs = rng.standard_normal((P, dim)).astype(np.float32)
    steps = [rng.standard_normal((1, dim)).astype(np.float32) for _ in range(8)]
    files = {k: build(k, weights, dim, T, P) for k in ("var", "io")}
    interps = {k: _interpreter(v) for k, v in files.items()}
    runners = {
        k: {s: it.get_signature_runner(s) for s in ("prefill", "decode")}
        for k, it in interps.items()
    }

    # numerics: prefill + 8 decode steps, both forms, against the reference
    ref = Reference(weights, T)
    errs = {"var": [], "io": []}
    r_ys = ref.prefill(xs)
    out_v = runners["var"]["prefill"](xs=xs)
    errs["var"].append(_close(out_v["ys"], r_ys))
    out_io = runners["io"]["prefill"](xs=xs)
    errs["io"].append(_close(out_io["ys"], r_ys))
    io_caches = {k: v for k, v in out_io.items() if k != "ys"}
    for n, x in enumerate(steps):
        pos = np.array([P + n], np.int32)
        r_y = ref.decode(x, P + n)
        errs["var"].append(_close(runners["var"]["decode"](x=x, pos=pos)["y"], r_y))
        o = runners["io"]["decode"](x=x, pos=pos, **io_caches)
        io_caches = {k: v for k, v in o.items() if k != "y"}
        errs["io"].append(_close(o["y"], r_y))
    # the same checks with the reference kernels only (XNNPACK takes VAR_HANDLE/READ_VARIABLE
    # in the var form: both paths must agree with the reference)
    plain = _interpreter(files["var"], use_xnnpack=False)
    pre, dec = plain.get_signature_runner("prefill"), plain.get_signature_runner("decode")
    ref3 = Reference(weights, T)
    errs["var_no_xnnpack"] = [_close(pre(xs=xs)["ys"], ref3.prefill(xs))]
    for n, x in enumerate(steps):
        pos = np.array([P + n], np.int32)
        errs["var_no_xnnpack"].append(_close(dec(x=x, pos=pos)["y"], ref3.decode(x, P + n)))
    # the state really is carried: re-running decode at the same position with the cache
    # reset by a fresh prefill must give the first step's answer again, and not doing so
    # (a decode that ignores the cache) would have failed the reference comparison above.
    runners["var"]["prefill"](xs=xs)
    ref2 = Reference(weights, T)
    ref2.prefill(xs)
    _close(
        runners["var"]["decode"](x=steps[0], pos=np.array([P], np.int32))["y"],
        ref2.decode(steps[0], P),
    )

    # growing I/O: one decode step at past = pos (the reference's caches up to pos) must give
    # the reference's answer at that position
    grow_it = _interpreter(build_growing_io(weights, dim))
    grow_dec = grow_it.get_signature_runner("serving_default")
    ref4 = Reference(weights, T)
    ref4.prefill(xs)
    past = {
        f"{c}{i}": kv[j][:P].astype(np.float32)
        for i, kv in enumerate(ref4.caches)
        for j, c in enumerate(("k", "v"))
    }
    errs["growing_io"] = [_close(grow_dec(x=steps[0], **past)["y"], ref4.decode(steps[0], P))]

    def grow_feeds(n):
        return {k: np.ascontiguousarray(np.resize(v, (n, dim))) for k, v in past.items()}

    grow_half, grow_full = grow_feeds(T // 2), grow_feeds(T - 1)

    # timing: decode at a fixed position (the masked full-buffer cost does not depend on it)
    pos = np.array([P], np.int32)
    x = steps[0]
    var_dec, io_dec = runners["var"]["decode"], runners["io"]["decode"]
    state = {"c": io_caches}

    def run_var():
        var_dec(x=x, pos=pos)

    def run_io():
        o = io_dec(x=x, pos=pos, **state["c"])
        state["c"] = {k: v for k, v in o.items() if k != "y"}

    def run_grow_half():
        grow_dec(x=x, **grow_half)

    def run_grow_full():
        grow_dec(x=x, **grow_full)

    order = (
        ("var", run_var),
        ("io", run_io),
        ("growing_io_past_half", run_grow_half),
        ("growing_io_past_full", run_grow_full),
    )
    for _ in range(args.warmup):
        for _k, f in order:
            f()
    times = {k: [] for k, _f in order}
    for _ in range(args.runs):
        for k, f in order:
            t0 = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t0) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "context": T,
        "cache_bytes_per_step_io": 2 * L * T * dim * 4,
        "file_bytes": {k: len(v) for k, v in files.items()},
        "max_abs_err": {k: max(v) for k, v in errs.items()},
        "decode_ms_median": med,
        "io_over_var": med["io"] / med["var"],
        "partitions": {k: _partitions(it) for k, it in interps.items()},
    }


def grow_probe(dim: int, use_xnnpack: bool) -> dict:
    """Whether ASSIGN_VARIABLE accepts a value of another shape than the variable's."""
    try:
        it = _interpreter(build_grow(dim), use_xnnpack)
        init, grow = it.get_signature_runner("init"), it.get_signature_runner("grow")
        x = np.arange(dim, dtype=np.float32)[None]
        init(x=x)
        shapes = []
        for n in range(3):
            c = grow(x=x + n + 1)["cache"]
            shapes.append(list(c.shape))
        expect = np.concatenate([x] + [x + n + 1 for n in range(3)])
        ok = shapes == [[2, dim], [3, dim], [4, dim]] and np.array_equal(c, expect)
        return {"works": bool(ok), "shapes": shapes, "partitions": _partitions(it)}
    except Exception as exc:  # the probe's answer is the error itself
        return {"works": False, "error": f"{type(exc).__name__}: {exc}"[:400]}


def _grow_in_child(use_xnnpack: bool) -> dict:
    """The grow probe in a child process: a wrong shape can corrupt the heap (seen with
    XNNPACK), which must not take the benchmark down with it."""
    cmd = [sys.executable, __file__, "--grow-probe", "xnnpack" if use_xnnpack else "plain"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    err = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return {"works": False, "crashed": True, "returncode": proc.returncode, "error": err}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grow-probe", choices=("xnnpack", "plain"), help=argparse.SUPPRESS)
    ap.add_argument("--contexts", default="128,512,2048")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runs", type=int, default=60)
    args = ap.parse_args()
    if args.grow_probe:
        print(json.dumps(grow_probe(8, args.grow_probe == "xnnpack")), flush=True)
        return
    weights = _weights(args.layers, args.dim)
    results = []
    for T in (int(s) for s in args.contexts.split(",")):
        r = run_context(T, args, weights)
        results.append(r)
        m = r["decode_ms_median"]
        print(
            f"T={T}: var {m['var']:.3f} ms, io {m['io']:.3f} ms, io/var {r['io_over_var']:.2f}x, "
            f"growing io past T/2 {m['growing_io_past_half']:.3f} ms, "
            f"past T-1 {m['growing_io_past_full']:.3f} ms, "
            f"err var {r['max_abs_err']['var']:.2e} io {r['max_abs_err']['io']:.2e}, "
            f"partitions {r['partitions']}",
            flush=True,
        )
    grow = {f"xnnpack_{x}": _grow_in_child(x) for x in (True, False)}
    print(f"grow probe: {grow}")
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # pragma: no cover - informational only
        litert = "?"
    RESULTS.write_text(
        json.dumps(
            {
                "command": "PYTHONPATH=. python benchmarks/bench_kv_variables.py "
                + " ".join(sys.argv[1:]),
                "machine": platform.machine(),
                "ai_edge_litert": litert,
                "layers": args.layers,
                "dim": args.dim,
                "prompt": args.prompt,
                "runs": args.runs,
                "warmup": args.warmup,
                "threads": 1,
                "contexts": results,
                "grow_probe": grow,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
