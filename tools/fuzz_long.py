"""Long fuzz run: thousands of mutated models through ``convert()`` and LiteRT, crash-isolated.

Usage: ``PYTHONPATH=. python tools/fuzz_long.py [--examples 5000] [--workers 2]``

Each worker process handles a strided slice of the example indices and prints one JSON line
when it starts an example (with the phase) and one when it finishes. If a worker dies (a
segfault in LiteRT or in a native library of the converter), the parent records the example
it was on as crashed, in the phase it had reached, and restarts the worker after it. A per-
example alarm turns hangs into a ``timeout`` outcome. Counts by outcome (typed errors by reason
code, loaded ok, internal errors, LiteRT rejections/crashes) go to
``coverage_reports/fuzz_long.json`` together with a reproducer for every bug found.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUG_OUTCOMES = (
    "internal_error",
    "raw_exception",
    "litert_rejected",
    "litert_crashed",
    "converter_crashed",
    "timeout",
)


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def run_worker(start: int, stop: int, stride: int, timeout: int) -> None:
    """Examples ``start, start+stride, ... < stop``; JSON lines on stdout."""
    from tests.fuzz.mutators import classify_conversion, mutate, run_litert, seed_models

    logging.disable(logging.CRITICAL)
    seeds = seed_models()
    names = sorted(seeds)
    signal.signal(signal.SIGALRM, _alarm)
    out = sys.stdout
    for i in range(start, stop, stride):
        seed_name = names[i % len(names)]
        out.write(json.dumps({"i": i, "phase": "convert"}) + "\n")
        out.flush()
        signal.alarm(timeout)
        try:
            model, applied = mutate(seeds[seed_name], i)
            outcome, detail, tflite = classify_conversion(model)
            if tflite is not None:
                out.write(json.dumps({"i": i, "phase": "litert"}) + "\n")
                out.flush()
                try:
                    run_litert(tflite)
                    outcome, detail = "loaded_ok", ""
                except _Timeout:
                    raise
                except Exception as exc:  # noqa: BLE001
                    outcome, detail = "litert_rejected", str(exc)[:300]
        except _Timeout:
            outcome, detail, applied = "timeout", f"over {timeout}s", []
        finally:
            signal.alarm(0)
        record = {"i": i, "seed": seed_name, "mutations": applied, "outcome": outcome}
        record["detail"] = detail
        out.write(json.dumps(record) + "\n")
        out.flush()


def _spawn(start: int, stop: int, stride: int, timeout: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        str(start),
        str(stop),
        str(stride),
        "--timeout",
        str(timeout),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT
    )


def _drive(lane: int, examples: int, workers: int, timeout: int, records: list) -> None:
    """Run one lane of indices to the end, restarting its worker after each crash."""
    start = lane
    while start < examples:
        proc = _spawn(start, examples, workers, timeout)
        current, phase = None, None
        for line in proc.stdout:
            msg = json.loads(line)
            if "outcome" in msg:
                records.append(msg)
                current = None
            else:
                current, phase = msg["i"], msg["phase"]
        proc.wait()
        if current is None:
            return
        kind = "litert_crashed" if phase == "litert" else "converter_crashed"
        records.append(
            {
                "i": current,
                "outcome": kind,
                "detail": f"exit {proc.returncode}",
                "mutations": [],
                "seed": None,
            }
        )
        start = current + workers


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=5000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=int, default=60)
    p.add_argument("--out", default=str(ROOT / "coverage_reports" / "fuzz_long.json"))
    p.add_argument("--worker", nargs=3, type=int, metavar=("START", "STOP", "STRIDE"))
    args = p.parse_args(argv)
    if args.worker:
        run_worker(*args.worker, timeout=args.timeout)
        return 0

    import threading

    started = time.time()
    records: list[dict] = []
    threads = [
        threading.Thread(
            target=_drive, args=(lane, args.examples, args.workers, args.timeout, records)
        )
        for lane in range(args.workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records.sort(key=lambda r: r["i"])
    counts = collections.Counter(r["outcome"] for r in records)
    bugs = [r for r in records if r["outcome"] in BUG_OUTCOMES]
    summary = {
        "examples": len(records),
        "workers": args.workers,
        "seconds": round(time.time() - started, 1),
        "counts": dict(sorted(counts.items())),
        "bug_count": len(bugs),
        "reproduce": "mutate(seed_models()[seed], i) from tests/fuzz/mutators.py",
        "bugs": bugs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    for outcome, n in sorted(counts.items()):
        print(f"{n:6d}  {outcome}")
    print(f"{len(records)} examples in {summary['seconds']} s; {len(bugs)} bugs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
