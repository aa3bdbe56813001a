"""The op coverage report: one JSON document per conversion, written also when it fails.

Every field is documented in ``docs/coverage_report.md``; keep the two in step.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter

import onnx

from .registry import REGISTRY
from .schema_gen import pin
from .version import __version__
from .versioning import op_version

log = logging.getLogger("onnx2tflite_direct")

REPORT_FORMAT = 1


@functools.lru_cache(maxsize=8)
def _registry_policy(version: int) -> tuple[dict, ...]:
    """Every default-domain op defined at ``version`` and what the registry does with it.

    Cached per opset; names come from the newest schemas (every name has one), the opset
    check from ``defs.has``, which is far cheaper than listing every historical schema (or
    building each schema object with get_schema)."""
    rows = []
    for schema in sorted(
        {s.name for s in onnx.defs.get_all_schemas() if s.domain == ""}  # newest of each name
    ):
        if not onnx.defs.has(schema, version, ""):
            continue  # not defined at this opset
        spec = REGISTRY.lookup("", schema, version)
        rows.append(
            {
                "op_type": schema,
                "status": "builtin" if spec else "unsupported",
                "tflite_ops": list(spec.tflite_ops) if spec else [],
                "constraints": spec.describe_constraints() if spec else None,
            }
        )
    return tuple(rows)


def dumps(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


class ReportBuilder:
    def __init__(self, options, stem: str):
        self.options = options
        self.stem = stem
        self.rows: dict[str, dict] = {}
        self.rewrites: list[dict] = []
        self.io_table: list[dict] = []
        self.histogram: dict[str, dict] = {}
        self.outputs: list[dict] = []
        self._error: dict | None = None
        self._validation: dict | None = None
        self._opsets: dict[str, int] = {}
        self._seconds = 0.0
        self._graph = None
        # Optional sections added by options (gpu_friendly, quantization ...): name -> value.
        self.sections: dict[str, object] = {}
        # Things the conversion tolerated that the user should know (also logged).
        self.warnings: list[str] = []

    # collection -------------------------------------------------------------------------
    def model_info(self, fe) -> None:
        self._graph = fe.graph
        self._opsets = dict(fe.graph.opsets)
        for line in fe.warnings:
            self.warn(line)
        for name in fe.folded_nodes:
            self.rows[name] = {
                "name": name,
                "domain": "",
                "op_type": None,
                "mode": "folded",
                "tflite_ops": [],
                "reason_code": None,
                "message": None,
            }
        for node in fe.graph.nodes:
            self._row(node)

    def rewrite(self, rule: str, count: int, nodes) -> None:
        if count:
            self.rewrites.append({"rule": rule, "matched": count, "nodes": list(nodes)[:50]})
            for name in nodes:
                row = self.rows.get(name)
                if row is not None and row["mode"] == "pending":
                    row["mode"] = "folded"
                    row["message"] = f"removed by rewrite {rule}"

    def refused(self, node, exc) -> None:
        row = self._row(node)
        row.update(
            domain=node.domain,
            op_type=node.op_type,
            mode="unsupported",
            tflite_ops=[],
            reason_code=exc.reason_code,
            message=exc.message,
        )

    def _row(self, node) -> dict:
        """The node's row; nodes created by rewrites (fusions) get one on first sight.

        (Looked up before building: a setdefault default would be built for every call.)"""
        label = node.label
        row = self.rows.get(label)
        if row is None:
            row = self.rows[label] = {
                "name": label,
                "domain": node.domain,
                "op_type": node.op_type,
                "mode": "pending",
                "tflite_ops": [],
                "reason_code": None,
                "message": None,
            }
        return row

    def _nested_row(self, rec) -> dict:
        """A node of a converted subgraph (If branch, Loop/Scan body): named by its path."""
        name = f"{rec.subgraph}/{rec.node.label}"
        row = self.rows.get(name)
        if row is None:
            row = self.rows[name] = {
                "name": name,
                "domain": rec.node.domain,
                "op_type": rec.node.op_type,
                "mode": "pending",
                "tflite_ops": [],
                "reason_code": None,
                "message": None,
                "subgraph": rec.subgraph,
            }
        return row

    def blocked(self, node, tensor: str) -> None:
        row = self._row(node)
        row.update(
            domain=node.domain,
            op_type=node.op_type,
            mode="blocked",
            tflite_ops=[],
            reason_code=None,
            message=f"not judged: input {tensor!r} comes from a refused node",
        )

    def lowered(
        self, driver, size: int, versions: dict[str, int] | None = None, subgraphs=None
    ) -> None:
        """``versions``: the operator-code versions the builder wrote (recomputed if absent);
        ``subgraphs``: the histogram's subgraphs when the file holds more than the driver's
        (several signatures)."""
        self.io_table = driver.io_table
        for rec in driver.records:
            row = self._row(rec.node) if not rec.subgraph else self._nested_row(rec)
            row["mode"] = "custom" if "CUSTOM" in rec.tflite_ops else "builtin"
            row["tflite_ops"] = rec.tflite_ops
            if rec.notes:
                row["notes"] = list(rec.notes)
        hist: dict[str, dict] = {}
        subgraphs = subgraphs or (driver.sub, *driver.extra_subgraphs)
        operators = [op for sub in subgraphs for op in sub.operators]
        for op in operators:
            key = op.custom_code if op.opcode == "CUSTOM" else op.opcode
            entry = hist.get(key)
            if entry is None:
                entry = hist[key] = {"count": 0, "version": 0}
            entry["count"] += 1
            if versions is not None and key in versions:
                entry["version"] = versions[key]
            else:
                version = op_version(op) if op.opcode != "CUSTOM" else 1
                entry["version"] = max(entry["version"], version)
        self.histogram = dict(sorted(hist.items()))
        self.size = size

    def warn(self, line: str) -> None:
        """Record a warning once (a model lowered at several sample sizes repeats them)."""
        if line not in self.warnings:
            self.warnings.append(line)
            log.warning(line)

    def section(self, name: str, value) -> None:
        self.sections[name] = value

    def output_file(self, path, size: int, kind: str = "float32") -> None:
        self.outputs.append({"kind": kind, "path": str(path), "bytes": size})

    def error(self, exc) -> None:
        self._error = exc.to_dict()
        if self._graph is not None and exc.node_name in self.rows:
            row = self.rows[exc.node_name]
            if row["mode"] != "unsupported":
                row.update(mode="unsupported", reason_code=exc.reason_code, message=exc.message)

    def validation(self, outcome) -> None:
        self._validation = outcome.to_dict() if hasattr(outcome, "to_dict") else vars(outcome)

    def elapsed(self, seconds: float) -> None:
        self._seconds = seconds

    # output ---------------------------------------------------------------------------
    def _policy(self) -> list[dict]:
        version = self._opsets.get("", onnx.defs.onnx_opset_version())
        return [dict(row) for row in _registry_policy(version)]

    def to_dict(self) -> dict:
        rows = list(self.rows.values())
        modes = Counter(r["mode"] for r in rows)
        reasons = Counter(r["reason_code"] for r in rows if r.get("reason_code"))
        transposes = self.histogram.get("TRANSPOSE", {}).get("count", 0)
        return {
            "report_format": REPORT_FORMAT,
            "tool": {"name": "onnx2tflite_direct", "version": __version__},
            "schema": {"litert_commit": pin.PINNED_COMMIT, "sha256": pin.PINNED_SHA256},
            "model": {"stem": self.stem, "opsets": self._opsets},
            "success": self._error is None,
            "error": self._error,
            "warnings": list(self.warnings),
            "nodes": rows,
            "counts": {
                "by_mode": dict(sorted(modes.items())),
                "by_reason": dict(sorted(reasons.items())),
            },
            "custom_op_policy": {
                "allow_custom_ops": self.options.allow_custom_ops,
                "allowlist": list(self.options.custom_op_allowlist),
            },
            "rewrites": self.rewrites,
            "io": self.io_table,
            "tflite_ops": self.histogram,
            "transpose_count": transposes,
            "output_files": self.outputs,
            "validation": self._validation,
            "seconds": round(self._seconds, 3),
            **self.sections,
            "registry_policy": self._policy(),
        }
