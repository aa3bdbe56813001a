"""Unpinned conversion over the real-model corpus: does a model with dynamic input dims
convert with default settings (every unknown dim left dynamic) and match onnxruntime?

Reuses the corpus runner's own unpinned measurement (``tools.zoo.run._run_unpinned``: convert
with ``keep_io_layout=True`` alone, run LiteRT on the corpus feeds, compare with onnxruntime),
one model per child process (a crash or a hang costs one row). The "before" column is the
unpinned record of the last full corpus run (``coverage_reports/zoo.json``).

    python benchmarks/bench_unpinned.py [--only NAME ...] [--update] [--out FILE]

``--update`` re-measures the ``--only`` models in an existing results file, keeping the rest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO_REPORT = ROOT / "coverage_reports" / "zoo.json"
TIMEOUT_S = 600


def _one(name: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from tools.zoo.manifest import by_name
    from tools.zoo.run import _run_unpinned

    try:
        return _run_unpinned(by_name(name)) or {"status": "not_applicable"}
    except Exception as exc:  # noqa: BLE001 - one row, never the whole run
        return {"status": "error", "message": f"runner: {exc!r}"[:300]}


def _in_child(name: str) -> dict:
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", name],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode or not lines:
        return {"status": "crashed", "message": proc.stderr[-300:]}
    return json.loads(lines[-1])


def _brief(rec: dict | None) -> dict | None:
    if rec is None:
        return None
    keep = ("status", "reason_code", "node", "op_type", "message")
    return {k: rec[k] for k in keep if rec.get(k) is not None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--child")
    ap.add_argument("--update", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "unpinned.json"))
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_one(args.child)))
        return 0
    before = {
        m["name"]: m.get("unpinned")
        for m in json.loads(ZOO_REPORT.read_text())["models"]
        if m.get("unpinned")
    }
    names = args.only or sorted(before)
    rows = []
    for name in names:
        after = _in_child(name)
        rows.append({"name": name, "before": _brief(before.get(name)), "after": _brief(after)})
        print(name, (before.get(name) or {}).get("status"), "->", after.get("status"), flush=True)
    if args.update and Path(args.out).exists():
        fresh = {r["name"]: r for r in rows}
        old = json.loads(Path(args.out).read_text())["models"]
        rows = [fresh.pop(r["name"], r) for r in old] + list(fresh.values())
    summary = {
        "models": len(rows),
        "before": dict(Counter((r["before"] or {}).get("status", "n/a") for r in rows)),
        "after": dict(Counter(r["after"].get("status") for r in rows)),
    }
    Path(args.out).write_text(
        json.dumps({"summary": summary, "models": rows}, indent=1, sort_keys=False) + "\n"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
