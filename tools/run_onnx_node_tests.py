"""Run the ONNX backend *node* test cases through the converter and LiteRT; write a coverage report.

Why: the ~1,900 node cases ship with reference inputs/outputs for every operator variant, so they
measure both how much of ONNX we convert and whether what we convert is right. Each case is
converted with ``keep_io_layout=True`` (tensors fed as-is by their ONNX names), run in LiteRT and
compared with the expected outputs (rtol 1e-3, atol 1e-5, exact shapes and dtypes, exact
equality for non-float outputs, NaN positions must match), with the converter's defaults
(which keep ONNX's semantics, NonMaxSuppression's exact dynamic-size output included).

Statuses: ``pass``, ``mismatch``, ``refused`` (``ConversionError``, with its reason code),
``load_or_run_failed`` (converted, but LiteRT could not load or run the file -- a bug the project
must drive to zero; includes LiteRT crashes/hangs) and ``crashed`` (any other exception, crash or
timeout during conversion).

Isolation: cases run in forked worker processes (``--jobs``), each recycled after
``--max-tasks`` cases; a case that exceeds ``--timeout`` seconds or kills its worker is recorded
and the worker replaced, so no single case can stop the run.

Usage: ``python tools/run_onnx_node_tests.py [--filter REGEX] [--jobs 2] [--out coverage_reports]``
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import re
import sys
import time
import traceback
import warnings
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RTOL, ATOL = 1e-3, 1e-5
STATUSES = ("pass", "mismatch", "refused", "load_or_run_failed", "crashed", "nondeterministic")
# Unseeded random ops have no defined values: no implementation (onnxruntime included) can
# reproduce the recorded outputs. Such cases are checked for shapes and dtypes only and counted
# on their own, neither as pass nor as mismatch (the set is folding.NONDETERMINISTIC_OPS).
MSG_LEN = 300

CASES: list = []  # filled in the parent before forking; workers read it by index


def collect_cases(pattern: str | None) -> list:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    if pattern:
        rx = re.compile(pattern)
        cases = [c for c in cases if rx.search(c.name)]
    return sorted(cases, key=lambda c: c.name)


def _to_value(x):
    """Dataset entries are ndarrays, numpy scalars, TensorProtos, lists (sequences) or None."""
    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    if isinstance(x, np.generic):
        return np.asarray(x)
    return x


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MSG_LEN else text[: MSG_LEN - 3] + "..."


# ----------------------------------------------------------------------------------------------
# Worker side
# ----------------------------------------------------------------------------------------------


def _compare_outputs(expected: dict, actual: dict) -> tuple[bool, str, float, float]:
    """(ok, message, max_abs, max_rel) with the node-test tolerance."""
    from onnx2tflite_direct.validate import _is_float

    problems, max_abs, max_rel = [], None, None
    for name, e in expected.items():
        if not isinstance(e, np.ndarray):
            problems.append(f"{name}: non-tensor expected output ({type(e).__name__})")
            continue
        if name not in actual:
            problems.append(f"{name}: missing from LiteRT outputs")
            continue
        a = np.asarray(actual[name])
        if a.shape != e.shape:
            problems.append(f"{name}: shape {a.shape} != {e.shape}")
            continue
        if a.dtype != e.dtype:
            problems.append(f"{name}: dtype {a.dtype} != {e.dtype}")
            continue
        if e.dtype.kind in "OSU":
            if not np.array_equal(e.astype(str), a.astype(str)):
                problems.append(f"{name}: strings differ")
            continue
        e64, a64 = e.astype(np.float64), a.astype(np.float64)
        nan_e, nan_a = np.isnan(e64), np.isnan(a64)
        if (nan_e != nan_a).any():
            problems.append(f"{name}: NaN positions differ ({int((nan_e != nan_a).sum())})")
            max_abs = max_rel = float("inf")
            continue
        max_abs, max_rel = max_abs or 0.0, max_rel or 0.0
        fin = ~nan_e
        ef, af = e64[fin], a64[fin]
        with np.errstate(invalid="ignore"):
            diff = np.where(ef == af, 0.0, np.abs(ef - af))  # equal infs are equal
        diff = np.nan_to_num(diff, nan=np.inf)
        if diff.size:
            max_abs = max(max_abs, float(diff.max()))
            rel = diff / np.maximum(np.abs(ef), 1e-12)
            max_rel = max(max_rel, float(np.nan_to_num(rel, nan=np.inf).max()))
        bad = (diff > ATOL + RTOL * np.abs(ef)) if _is_float(e.dtype) else (diff != 0)
        if bad.any():
            problems.append(
                f"{name}: {int(bad.sum())}/{bad.size} elements off "
                f"(max_abs {float(diff.max()):.3g})"
            )
    return not problems, "; ".join(problems), max_abs, max_rel


def run_case(case, report_phase=lambda phase: None) -> dict:
    """Convert, run and compare one case; returns the per-case record (minus identification)."""
    from onnx2tflite_direct import ConversionError, convert
    from onnx2tflite_direct.folding import NONDETERMINISTIC_OPS
    from onnx2tflite_direct.validate import graph_inputs, run_litert

    inputs, outputs = case.data_sets[0]
    in_names = [vi.name for vi in graph_inputs(case.model)]
    feeds = {n: _to_value(v) for n, v in zip(in_names, inputs, strict=False)}
    expected = {
        o.name: _to_value(v) for o, v in zip(case.model.graph.output, outputs, strict=False)
    }
    # Pin only dims the model leaves dynamic, so static declarations are judged as written.
    dynamic = {vi.name for vi in graph_inputs(case.model) if _has_dynamic_dim(vi)}
    shapes = {n: tuple(v.shape) for n, v in feeds.items() if n in dynamic and hasattr(v, "shape")}

    report_phase("convert")
    try:
        res = convert(
            case.model,
            keep_io_layout=True,
            input_shapes=shapes or None,
        )
    except ConversionError as err:
        return {
            "status": "refused",
            "reason_code": err.reason_code,
            "message": _short(f"{err.node_name or ''}: {err.message}".lstrip(": ")),
        }
    except Exception as err:  # noqa: BLE001 - every other failure is a converter bug
        return {"status": "crashed", "message": _short(_exc_summary(err))}

    report_phase("litert")
    try:
        actual = run_litert(res.tflite_bytes, feeds, res.report.get("io"))
    except Exception as err:  # noqa: BLE001
        return {"status": "load_or_run_failed", "message": _short(f"{type(err).__name__}: {err}")}

    if any(n.op_type in NONDETERMINISTIC_OPS for n in case.model.graph.node):
        same = list(actual) == list(expected) and all(
            np.shape(actual[k]) == np.shape(expected[k])
            and np.asarray(actual[k]).dtype == np.asarray(expected[k]).dtype
            for k in expected
        )
        if same:
            return {"status": "nondeterministic", "message": "random values: shapes/dtypes match"}
    ok, msg, max_abs, max_rel = _compare_outputs(expected, actual)
    rec = {"status": "pass" if ok else "mismatch", "max_abs": max_abs, "max_rel": max_rel}
    if msg:
        rec["message"] = _short(msg)
    return rec


def _has_dynamic_dim(vi: onnx.ValueInfoProto) -> bool:
    tt = vi.type.tensor_type
    return tt.HasField("shape") and any(not d.HasField("dim_value") for d in tt.shape.dim)


def _exc_summary(err: BaseException) -> str:
    tb = traceback.extract_tb(err.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(err).__name__}: {err}{where}"


def _worker_main(conn, quiet: bool) -> None:
    if quiet:  # LiteRT/XNNPACK chatter goes to the C-level stderr
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    warnings.simplefilter("ignore")
    while True:
        idx = conn.recv()
        if idx is None:
            return
        try:
            rec = run_case(CASES[idx], lambda phase, i=idx: conn.send(("phase", i, phase)))
        except BaseException as err:  # noqa: BLE001 - keep the worker alive
            rec = {"status": "crashed", "message": _short(_exc_summary(err))}
        conn.send(("done", idx, rec))


# ----------------------------------------------------------------------------------------------
# Parent side: a tiny process pool that survives hangs and segfaults
# ----------------------------------------------------------------------------------------------


class _Worker:
    def __init__(self, ctx, quiet: bool):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, quiet), daemon=True)
        self.proc.start()
        child.close()
        self.done = 0
        self.idx: int | None = None
        self.phase = "start"
        self.started = 0.0

    def assign(self, idx: int) -> None:
        self.idx, self.phase, self.started = idx, "start", time.monotonic()
        self.conn.send(idx)

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _failure_record(phase: str, what: str) -> dict:
    if phase == "litert":
        return {"status": "load_or_run_failed", "message": f"LiteRT {what}"}
    return {"status": "crashed", "message": f"{what} during {phase}"}


def run_all(indices: list[int], jobs: int, timeout: float, max_tasks: int, quiet: bool, log):
    ctx = mp.get_context("fork")
    results: dict[int, dict] = {}
    pending = collections.deque(indices)
    workers = [_Worker(ctx, quiet) for _ in range(min(jobs, len(indices)) or 1)]
    t0 = time.monotonic()

    def finish(w: _Worker, rec: dict) -> None:
        results[w.idx] = rec
        w.idx = None
        w.done += 1
        n = len(results)
        if n % 100 == 0 or n == len(indices):
            log(f"[{n}/{len(indices)}] {time.monotonic() - t0:.0f}s")

    while pending or any(w.idx is not None for w in workers):
        for i, w in enumerate(workers):
            if w.idx is None and w.done >= max_tasks:
                w.stop()
                workers[i] = w = _Worker(ctx, quiet)
            if w.idx is None and pending:
                w.assign(pending.popleft())
        busy = {w.conn: w for w in workers if w.idx is not None}
        for conn in wait(list(busy), timeout=1.0):
            w = busy[conn]
            try:
                kind, _idx, payload = conn.recv()
            except (EOFError, OSError):
                w.proc.join(1)
                code = w.proc.exitcode
                finish(w, _failure_record(w.phase, f"worker died (exit code {code})"))
                w.stop(kill=True)
                workers[workers.index(w)] = _Worker(ctx, quiet)
                continue
            if kind == "phase":
                w.phase = payload
            else:
                finish(w, payload)
        now = time.monotonic()
        for i, w in enumerate(workers):
            if w.idx is not None and now - w.started > timeout:
                finish(w, _failure_record(w.phase, f"timeout after {timeout:.0f}s"))
                w.stop(kill=True)
                workers[i] = _Worker(ctx, quiet)
    for w in workers:
        w.stop()
    return results


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------


def op_group(case, by_name: dict) -> tuple[list[str], str]:
    """(op types in the graph, the op this case tests). Expanded cases count for their op."""
    ops = list(dict.fromkeys(n.op_type for n in case.model.graph.node))
    if "_expanded" in case.name:
        base = by_name.get(case.name.split("_expanded")[0])
        if base is not None:
            return ops, "+".join(dict.fromkeys(n.op_type for n in base.model.graph.node))
    return ops, "+".join(ops) if ops else "(none)"


def _num(v):
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v


def write_reports(records: list[dict], out: Path, elapsed: float) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    totals = collections.Counter(r["status"] for r in records)
    js = out / "onnx_node_tests.json"
    payload = {
        "tolerance": {"rtol": RTOL, "atol": ATOL},
        "elapsed_s": round(elapsed, 1),
        "totals": {s: totals.get(s, 0) for s in STATUSES} | {"total": len(records)},
        "cases": [{k: _num(v) for k, v in r.items()} for r in records],
    }
    cases = payload.pop("cases")
    head = json.dumps(payload, indent=1)[:-2]  # one case per line keeps diffs readable
    body = ",\n".join("  " + json.dumps(c) for c in cases)
    js.write_text(f'{head},\n "cases": [\n{body}\n ]\n}}\n')

    by_op: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in records:
        by_op[r["op"]][r["status"]] += 1
    lines = [
        "# ONNX backend node tests through onnx2tflite_direct + LiteRT",
        "",
        (
            f"Generated by `tools/run_onnx_node_tests.py` in {elapsed:.0f}s; "
            f"tolerance rtol={RTOL:g}, atol={ATOL:g}; exact shapes and dtypes."
        ),
        "",
        "| status | cases |",
        "|---|---:|",
        *(f"| {s} | {totals.get(s, 0)} |" for s in STATUSES),
        f"| **total** | **{len(records)}** |",
        "",
    ]
    lines += _section("LiteRT load/run failures (must be zero)", records, "load_or_run_failed")
    lines += _section("Crashes", records, "crashed")
    lines += _section("Mismatches", records, "mismatch")

    lines += ["## By op", "", "| op | pass | mismatch | refused | load fail | crashed | random |"]
    lines += ["|---|---:|---:|---:|---:|---:|---:|"]
    for op in sorted(by_op):
        c = by_op[op]
        cells = [c[s] for s in STATUSES]
        lines.append(f"| {op} | " + " | ".join(str(x or "") for x in cells) + " |")
    lines.append("")

    refusals: dict[str, list[dict]] = collections.defaultdict(list)
    for r in records:
        if r["status"] == "refused":
            refusals[r.get("reason_code") or "?"].append(r)
    lines += ["## Refusals by reason code", ""]
    for code, rs in sorted(refusals.items(), key=lambda kv: -len(kv[1])):
        ops = collections.Counter(r["op"] for r in rs)
        op_list = ", ".join(f"{o} ({n})" if n > 1 else o for o, n in sorted(ops.items()))
        lines += [f"### `{code}` — {len(rs)} cases", "", op_list, ""]
    md = out / "onnx_node_tests.md"
    md.write_text("\n".join(lines))
    return js, md


def _section(title: str, records: list[dict], status: str) -> list[str]:
    rs = [r for r in records if r["status"] == status]
    if not rs:
        return []
    lines = [f"## {title} ({len(rs)})", "", "| case | op | detail |", "|---|---|---|"]
    for r in rs:
        msg = (r.get("message") or "").replace("|", "\\|")
        lines.append(f"| {r['name']} | {r['op']} | {msg} |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--filter", help="only cases whose name matches this regex (re.search)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "coverage_reports")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    ap.add_argument("--max-tasks", type=int, default=200, help="cases per worker before recycling")
    ap.add_argument("--verbose", action="store_true", help="keep worker stdout/stderr")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.monotonic()
    CASES[:] = collect_cases(args.filter)
    if not CASES:
        log("no cases match")
        return 1
    # Import the converter once before forking so workers start fast.
    import onnx2tflite_direct.validate  # noqa: F401

    log(f"{len(CASES)} cases, {args.jobs} workers")
    results = run_all(
        list(range(len(CASES))), args.jobs, args.timeout, args.max_tasks, not args.verbose, log
    )
    by_name = {c.name: c for c in CASES}
    records = []
    for i, case in enumerate(CASES):
        ops, op = op_group(case, by_name)
        rec = {"name": case.name, "op": op, "op_types": ops, "status": "", "reason_code": None}
        rec.update(results[i])
        records.append(rec)
    js, md = write_reports(records, args.out, time.monotonic() - t0)
    totals = collections.Counter(r["status"] for r in records)
    log(", ".join(f"{s}={totals.get(s, 0)}" for s in STATUSES) + f" -> {js}, {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
