"""Unpinned conversion over the real-model corpus: does a model with dynamic input dims
convert with default settings (every unknown dim left dynamic) and match onnxruntime?

Reuses the corpus runner's own unpinned measurement (``tools.zoo.run._run_unpinned``: convert
with ``keep_io_layout=True`` alone, run LiteRT on the corpus feeds, compare with onnxruntime),
one model per child process (a crash or a hang costs one row). The "before" columns are the
unpinned records of committed corpus runs (``coverage_reports/zoo.json`` at the git revisions
in ``BASELINES``, keyed by the converter commit each one measured).

    python benchmarks/bench_unpinned.py [--only NAME ...] [--update] [--out FILE]

``--update`` re-measures the ``--only`` models in an existing results file, keeping the rest.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO_REPORT = "coverage_reports/zoo.json"
# converter commit measured -> the commit that recorded that corpus run
BASELINES = {"55ee82a": "817995c", "cc447aa": "d45e83a"}
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


def _baselines() -> dict[str, dict[str, dict]]:
    """converter commit -> model -> its unpinned record in that corpus run."""
    out = {}
    for converter, rev in BASELINES.items():
        text = subprocess.run(
            ["git", "show", f"{rev}:{ZOO_REPORT}"], capture_output=True, text=True, cwd=ROOT
        ).stdout
        out[converter] = {m["name"]: m.get("unpinned") for m in json.loads(text)["models"]}
    return out


def _brief(rec: dict | None) -> dict | None:
    if rec is None:
        return None
    keep = ("status", "reason_code", "node", "op_type", "message")
    return {k: rec[k] for k in keep if rec.get(k) is not None}


def cause(rec: dict | None) -> str | None:
    """A refusal's root cause in a few words: the TFLite/ONNX operator or mechanism named."""
    if not rec or rec.get("status") == "pass":
        return None
    msg = rec.get("message") or ""
    for pattern, label in (
        (r"number of operators depends on the input sizes \((\w+) from", "op count differs: {}"),
        (r"(\w+) \(from ONNX node [^)]*\): operand \d+ changes shape", "{} constant operand"),
        (r"(\w+) \(from ONNX node [^)]*\): operand \d+ holds values", "{} size-dependent values"),
        (r"(\w+) \(from ONNX node [^)]*\): a shape entry", "{} shape entry"),
        (r"does not accept the sample sizes", "model rejects the sample sizes"),
        (r"number of operators depends on the input sizes", "op count differs"),
    ):
        found = re.search(pattern, msg)
        if found:
            return label.format(*found.groups())
    return f"{rec.get('op_type') or '?'}: {rec.get('reason_code') or rec.get('status')}"


def _with_before(row: dict, baselines) -> dict:
    before = {k: _brief(v.get(row["name"])) for k, v in baselines.items()}
    return {"name": row["name"], "before": before, "after": row["after"]}


def _head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()


def _summary(rows: list[dict], measured_on: str | None = None) -> dict:
    summary = {"models": len(rows), "baselines": BASELINES}
    for converter in BASELINES:
        olds = [(r["before"].get(converter) or {}) for r in rows]
        summary[f"before_{converter}"] = dict(Counter(o.get("status", "n/a") for o in olds))
        summary[f"causes_before_{converter}"] = dict(Counter(c for o in olds if (c := cause(o))))
    summary["after_converter_commit"] = measured_on or _head()  # (the working tree as it was)
    summary["after"] = dict(Counter(r["after"].get("status") for r in rows))
    summary["causes_after"] = dict(Counter(c for r in rows if (c := cause(r["after"]))))
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--child")
    ap.add_argument("--update", action="store_true")
    ap.add_argument("--summarize", action="store_true", help="only rewrite the summary")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "unpinned.json"))
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_one(args.child)))
        return 0
    baselines = _baselines()
    if args.summarize:  # keeps the commit the rows were measured on
        old = json.loads(Path(args.out).read_text())
        rows = [_with_before(r, baselines) for r in old["models"]]
        _write(args.out, rows, old["summary"].get("after_converter_commit"))
        return 0
    names = args.only or sorted({n for b in baselines.values() for n, rec in b.items() if rec})
    rows = []
    for name in names:
        after = _in_child(name)
        rows.append(_with_before({"name": name, "after": _brief(after)}, baselines))
        before = [(b or {}).get("status") for b in rows[-1]["before"].values()]
        print(name, before, "->", after.get("status"), flush=True)
    if args.update and Path(args.out).exists():
        fresh = {r["name"]: r for r in rows}
        old = json.loads(Path(args.out).read_text())["models"]
        rows = [_with_before(fresh.pop(r["name"], r), baselines) for r in old]
        rows += list(fresh.values())
    _write(args.out, rows)
    return 0


def _write(out: str, rows: list[dict], measured_on: str | None = None) -> None:
    summary = _summary(rows, measured_on)
    Path(out).write_text(json.dumps({"summary": summary, "models": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(main())
