"""``inspect``: what is inside a .tflite file, read from the FlatBuffer without running it.

Why: after a conversion one wants to check the I/O contract (names, dtypes, static and
signature shapes), which ops and versions a runtime must provide, where the bytes go
(constant weights vs. graph structure) and the metadata a loader checks
(``min_runtime_version``). The file is parsed by ``tflite_reader`` (the schema bindings shipped
with ai-edge-litert, the ``validate`` extra); nothing is executed, so this works for files the
local runtime cannot load.

CLI: ``python -m onnx2tflite_direct inspect FILE [--json]`` dispatches to :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import errors
from . import tflite_reader as R
from .tflite_reader import tensor_table

__all__ = ["format_inspect", "inspect", "main", "tensor_table"]


def _io_row(row: dict) -> dict:
    sig = row["shape_signature"]
    return {
        "name": row["name"],
        "index": row["index"],
        "dtype": row["dtype"],
        "shape": row["shape"],
        "shape_signature": sig if sig is not None else row["shape"],
        "quantization": row["quantization"],
    }


def _signature_defs(sg_model) -> list[dict]:
    sigs = []
    for i in range(sg_model.SignatureDefsLength()):
        s = sg_model.SignatureDefs(i)

        def maps(n, get):
            return {R.text(get(j).Name()): int(get(j).TensorIndex()) for j in range(n)}

        sigs.append(
            {
                "key": R.text(s.SignatureKey()),
                "subgraph": int(s.SubgraphIndex()),
                "inputs": maps(s.InputsLength(), s.Inputs),
                "outputs": maps(s.OutputsLength(), s.Outputs),
            }
        )
    return sigs


def _signature_details(sigs: list[dict], tables: list[list[dict]]) -> list[dict]:
    """Each signature's I/O tensors (dtype, shapes) under ``io``: a file with several
    signatures (prefill/decode, encoder/decoder) has one subgraph's I/O per signature."""
    for sig in sigs:
        rows = tables[sig["subgraph"]] if 0 <= sig["subgraph"] < len(tables) else []
        sig["io"] = {
            kind: [
                {"key": key, **_io_row(rows[i])}
                for key, i in sig[kind].items()
                if 0 <= i < len(rows)
            ]
            for kind in ("inputs", "outputs")
        }
    return sigs


def _metadata(data: bytes, model) -> dict[str, Any]:
    """Metadata entries; printable ones (min_runtime_version...) as text, others by size."""
    out: dict[str, Any] = {}
    for i in range(model.MetadataLength()):
        m = model.Metadata(i)
        b = m.Buffer()
        raw = R.buffer_bytes(data, model.Buffers(b)) if 0 <= b < model.BuffersLength() else b""
        text = raw.rstrip(b"\0")
        try:
            decoded = text.decode("ascii")
            printable = decoded.isprintable()
        except UnicodeDecodeError:
            printable = False
        out[R.text(m.Name())] = decoded if printable else f"<{len(raw)} bytes>"
    return out


def inspect(source: str | Path | bytes) -> dict[str, Any]:
    """A JSON-friendly summary of a .tflite file (path or bytes); see the module docstring."""
    schema = R.schema()
    data = R.read_bytes(source)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("not a TFLite FlatBuffer (file identifier 'TFL3' missing)")
    model = schema.Model.GetRootAs(data, 0)
    codes = [
        (f"CUSTOM:{custom}" if name == "CUSTOM" else name, version)
        for name, version, custom in R.operator_codes(model, schema)
    ]
    histogram: dict[str, dict[str, int]] = {}
    subgraphs = []
    inputs: list[dict] = []
    outputs: list[dict] = []
    const_bytes = 0
    tensor_count = 0
    tables: list[list[dict]] = []  # each subgraph's tensor rows (signature I/O details)
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        rows = R.tensor_rows(model, sg, schema)
        tables.append(rows)
        tensor_count += len(rows)
        const_bytes += sum(r["buffer_bytes"] for r in rows)
        for o in range(sg.OperatorsLength()):
            name, version = codes[sg.Operators(o).OpcodeIndex()]
            entry = histogram.setdefault(name, {"count": 0, "version": 0})
            entry["count"] += 1
            entry["version"] = max(entry["version"], version)
        sg_in = [_io_row(rows[int(i)]) for i in sg.InputsAsNumpy()] if sg.InputsLength() else []
        sg_out = [_io_row(rows[int(i)]) for i in sg.OutputsAsNumpy()] if sg.OutputsLength() else []
        if s == 0:
            inputs, outputs = sg_in, sg_out
        subgraphs.append(
            {
                "index": s,
                "name": R.text(sg.Name()),
                "operators": int(sg.OperatorsLength()),
                "tensors": len(rows),
                "constant_tensors": sum(r["constant"] for r in rows),
            }
        )
    return {
        "file_bytes": len(data),
        "schema_version": int(model.Version()),
        "description": R.text(model.Description()),
        "inputs": inputs,
        "outputs": outputs,
        "signature_defs": _signature_details(_signature_defs(model), tables),
        "subgraphs": subgraphs,
        "op_histogram": dict(sorted(histogram.items())),
        "operator_count": sum(v["count"] for v in histogram.values()),
        "tensor_count": tensor_count,
        "size": {
            "total": len(data),
            "constant_buffers": const_bytes,
            "rest": len(data) - const_bytes,
        },
        "metadata": _metadata(data, model),
    }


def _shape_text(row: dict) -> str:
    shape = "x".join(map(str, row["shape"])) or "scalar"
    if row["shape_signature"] != row["shape"]:
        shape += " (signature " + "x".join(map(str, row["shape_signature"])) + ")"
    return shape


def format_inspect(info: dict[str, Any]) -> str:
    """The human-readable form of :func:`inspect`'s summary."""
    lines = [f"TFLite schema v{info['schema_version']}, {info['file_bytes']} bytes"]
    if info["description"]:
        lines.append(f"description: {info['description']}")
    for kind in ("inputs", "outputs"):
        lines.append(f"{kind}:")
        for row in info[kind]:
            lines.append(f"  {row['name']}  {row['dtype']}  {_shape_text(row)}")
    for sig in info["signature_defs"]:
        lines.append(
            f"signature {sig['key']!r} (subgraph {sig['subgraph']}): "
            f"inputs {sorted(sig['inputs'])}, outputs {sorted(sig['outputs'])}"
        )
        if len(info["signature_defs"]) > 1:  # each signature's own I/O contract
            for kind, label in (("inputs", "in "), ("outputs", "out")):
                for row in sig["io"][kind]:
                    lines.append(f"  {label} {row['key']}  {row['dtype']}  {_shape_text(row)}")
    lines.append(
        f"{info['operator_count']} operators, {info['tensor_count']} tensors, "
        f"{len(info['subgraphs'])} subgraph(s)"
    )
    lines.append("op histogram (count, version):")
    width = max((len(k) for k in info["op_histogram"]), default=0)
    for name, entry in info["op_histogram"].items():
        lines.append(f"  {name.ljust(width)}  {entry['count']:>5}  v{entry['version']}")
    size = info["size"]
    total = max(size["total"], 1)
    lines.append(
        f"size: constant buffers {size['constant_buffers']} bytes "
        f"({100 * size['constant_buffers'] / total:.1f}%), "
        f"rest {size['rest']} bytes ({100 * size['rest'] / total:.1f}%)"
    )
    if info["metadata"]:
        lines.append("metadata:")
        for key, value in info["metadata"].items():
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def _error(reason_code: str, message: str) -> int:
    """One line with its reason code, as every other error line of the command line."""
    print(f"error: [{reason_code}] {message}", file=sys.stderr)
    return errors.REASON_CODES[reason_code]


def main(argv: Sequence[str] | None = None) -> int:
    """``inspect FILE [--json]``: exit 0, or 2 when the file is missing or not a TFLite file."""
    parser = argparse.ArgumentParser(
        prog="onnx2tflite-direct inspect", description="Summarize a .tflite file."
    )
    parser.add_argument("file", help="path to the .tflite file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        info = inspect(args.file)
    except (FileNotFoundError, IsADirectoryError) as exc:
        return _error(errors.FILE_NOT_FOUND, f"{args.file}: {(exc.strerror or str(exc)).lower()}")
    except OSError as exc:  # permission denied, an unreadable device
        return _error(errors.INVALID_MODEL, f"{args.file}: {(exc.strerror or str(exc)).lower()}")
    except ValueError as exc:  # not a TFLite file
        return _error(errors.INVALID_MODEL, f"{args.file}: {exc}")
    except (IndexError, struct.error) as exc:  # an offset past the end of the bytes
        return _error(errors.INVALID_MODEL, f"{args.file}: truncated or corrupt ({exc})")
    print(json.dumps(info, indent=2) if args.json else format_inspect(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
