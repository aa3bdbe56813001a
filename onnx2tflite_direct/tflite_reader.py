"""Reading a .tflite FlatBuffer: the few accessors ``inspect`` and the diagnostics share.

Why: files written by someone else (``inspect``) or already on disk (diagnostics of a
converted file) are read without running them, through the schema bindings that ship with
ai-edge-litert (the ``validate`` extra). Models this package has just built are never read back
here: checks on them (GPU verdict, ``--gpu-friendly``) work on the in-memory ``tfl.Model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXTRA_HINT = "pip install onnx2tflite_direct[validate]"


def schema():
    """The generated FlatBuffer bindings (``schema_py_generated``) of ai-edge-litert."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"reading .tflite files needs ai-edge-litert; install it with `{EXTRA_HINT}`"
        ) from e
    return schema_py_generated


def enum_names(enum_cls) -> dict[int, str]:
    """Value -> name of a generated enum class."""
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def read_bytes(source: str | Path | bytes | bytearray | memoryview) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    return Path(source).read_bytes()


def text(value) -> str:
    """A FlatBuffer string (bytes or None) as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def root(data: bytes, sch=None):
    """The ``Model`` table of a FlatBuffer."""
    return (sch or schema()).Model.GetRootAs(data, 0)


def buffer_size(buf) -> int:
    """Bytes of a buffer, inline (``data``) or appended after the FlatBuffer (offset/size)."""
    if buf is None:
        return 0
    if buf.Offset() > 1:
        return int(buf.Size())
    return int(buf.DataLength())


def buffer_bytes(data: bytes, buf) -> bytes:
    if buf is None:
        return b""
    if buf.Offset() > 1:
        return data[buf.Offset() : buf.Offset() + buf.Size()]
    return buf.DataAsNumpy().tobytes() if buf.DataLength() else b""


def quantization(tensor) -> dict | None:
    """A tensor's quantization parameters, or None when it has no scale."""
    q = tensor.Quantization()
    if q is None or q.ScaleLength() == 0:
        return None
    return {
        "scale": [float(s) for s in q.ScaleAsNumpy()],
        "zero_point": [int(z) for z in q.ZeroPointAsNumpy()] if q.ZeroPointLength() else [],
        "quantized_dimension": int(q.QuantizedDimension()),
    }


def operator_codes(model, sch=None) -> list[tuple[str, int, str]]:
    """(builtin name, version, custom code) per operator code, in file order."""
    names = enum_names((sch or schema()).BuiltinOperator)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        codes.append((names.get(code, f"UNKNOWN_{code}"), int(oc.Version()), text(oc.CustomCode())))
    return codes


def tensor_rows(model, sg, sch=None) -> list[dict[str, Any]]:
    """One row per tensor of subgraph ``sg``: index, name, dtype, shape, shape_signature,
    ``constant`` (backed by a non-empty buffer), ``buffer_bytes`` and ``quantization``."""
    dtypes = enum_names((sch or schema()).TensorType)
    n_buffers = model.BuffersLength()
    rows = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        b = t.Buffer()
        size = buffer_size(model.Buffers(b)) if 0 < b < n_buffers else 0
        rows.append(
            {
                "index": i,
                "name": text(t.Name()),
                "dtype": dtypes.get(t.Type(), f"TYPE_{t.Type()}").lower(),
                "shape": [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else [],
                "shape_signature": [int(d) for d in t.ShapeSignatureAsNumpy()]
                if t.ShapeSignatureLength()
                else None,
                "constant": size > 0,
                "buffer_bytes": size,
                "quantization": quantization(t),
            }
        )
    return rows


def tensor_table(source, subgraph: int = 0) -> list[dict[str, Any]]:
    """:func:`tensor_rows` of one subgraph of a file (path or bytes)."""
    sch = schema()
    model = root(read_bytes(source), sch)
    return tensor_rows(model, model.Subgraphs(subgraph), sch)
