"""The only writer of TFLite bytes: ``serialize(tfl.Model) -> TFLiteFile`` / ``build_flatbuffer``.

Tables are written by the schema-driven FlatBuffer writer of ``flatbuffer_writer.py`` (field
ids, types and defaults from the generated ``schema_generated`` data); this module decides what
goes into which table. Builtin options need no per-table code: the options table of an operator
is found by naming convention from the ``BuiltinOptions``/``BuiltinOptions2`` union members
(``CONV_2D`` -> ``Conv2DOptions``) plus :data:`OPTIONS_EXCEPTIONS`. The tables a model has
thousands of (plain Tensor, builtin Operator, Buffer) skip the field dict and go straight to a
precomputed table shape (same bytes).

File-level conventions (those of LiteRT's own exporter): buffer 0 is the empty sentinel; identical
constants (dtype + shape + bytes) share one buffer; constant data is 16-byte aligned in the
final file; one OperatorCode per builtin / custom code and version in use
(checked against the CPU resolver range); a ``min_runtime_version`` metadata entry; one
SignatureDef for subgraph 0, or one per ``Model.signatures`` entry. Output depends only on the
input (no ``id()`` or hash-seed order).

Two layouts of constant data:

- inline (default): ``Buffer.data`` vectors inside the FlatBuffer;
- offset (``external_buffers=True``, and automatically when the FlatBuffer would reach 2 GB):
  the FlatBuffer holds no constant bytes; they follow it in the same file, each 64-byte aligned,
  referenced by absolute ``Buffer.offset``/``size`` (the LiteRT exporter's layout), plus the
  ``buffer_location`` metadata marker and 16 zero bytes of tail padding.

Speed and memory: the writer never copies weights. FlatBuffers are written back to front and
the constants are the first things written, so they form the *end* of the file in both layouts;
the writer only reserves their positions and hands back a :class:`TFLiteFile`, an ordered list
of chunks (the small table part plus views of the constants' own arrays). ``write_to`` streams
the chunks to a file; ``tobytes`` joins them with exactly one copy.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import re
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from onnx2tflite_direct import inplace_guard, tfl, versioning
from onnx2tflite_direct.flatbuffer_writer import (
    UTYPE,
    BuildError,
    Field,
    FieldRangeError,
    Ref,
    TableShape,
    UnknownOptionError,
    Writer,
    layout,
    table_shape,
)
from onnx2tflite_direct.schema_gen import schema_generated as S
from onnx2tflite_direct.tfl_edit import unique_names

__all__ = [
    "BuildError",
    "FieldRangeError",
    "TFLiteFile",
    "UnknownOptionError",
    "build_flatbuffer",
    "options_table",
    "serialize",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = 3
DATA_ALIGNMENT = 16  # Buffer.data force_align
EXTERNAL_ALIGNMENT = 64  # offset layout: cache-line aligned weights for XNNPACK
EXTERNAL_TAIL_PADDING = 16  # XNNPACK may read up to 16 bytes past the last weight
# A FlatBuffer must stay below 2^31 - 1 bytes (FLATBUFFERS_MAX_BUFFER_SIZE).
FLATBUFFER_LIMIT = 2**31 - 1
MIN_RUNTIME_VERSION_KEY = "min_runtime_version"
BUFFER_LOCATION_KEY = "buffer_location"
BUFFER_LOCATION_VALUE = b"outside flatbuffers"

# Ops whose options table does not follow the OP_NAME -> OpNameOptions convention.
OPTIONS_EXCEPTIONS = {
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "L2_POOL_2D": "Pool2DOptions",
    "MEAN": "ReducerOptions",
    "SUM": "ReducerOptions",
    "REDUCE_MAX": "ReducerOptions",
    "REDUCE_MIN": "ReducerOptions",
    "REDUCE_PROD": "ReducerOptions",
    "REDUCE_ANY": "ReducerOptions",
    "REDUCE_ALL": "ReducerOptions",
    "MAXIMUM": "MaximumMinimumOptions",
    "MINIMUM": "MaximumMinimumOptions",
    "L2_NORMALIZATION": "L2NormOptions",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "SequenceRNNOptions",
    "CONV_3D_TRANSPOSE": "Conv3DOptions",
    "RANDOM_UNIFORM": "RandomOptions",
    "RANDOM_STANDARD_NORMAL": "RandomOptions",
    "MULTINOMIAL": "RandomOptions",
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _build_options_index() -> dict[str, tuple[str, str]]:
    """Normalized op name -> (union, member) for every options member of both unions."""
    index: dict[str, tuple[str, str]] = {}
    for union in ("BuiltinOptions", "BuiltinOptions2"):
        for member in S.UNIONS[union]:
            if member != "NONE" and member.endswith("Options"):
                index[_norm(member[: -len("Options")])] = (union, member)
    return index


_OPTIONS_INDEX = _build_options_index()
_MEMBER_UNION = {m: u for u, m in _OPTIONS_INDEX.values()}


@functools.cache
def options_table(opcode: str) -> tuple[str, str] | None:
    """(union name, options table) for a builtin op, or None if it has no options table."""
    if opcode in OPTIONS_EXCEPTIONS:
        member = OPTIONS_EXCEPTIONS[opcode]
        return _MEMBER_UNION[member], member
    return _OPTIONS_INDEX.get(_norm(opcode))


# -- constant data ---------------------------------------------------------------------------
def _string_tensor_bytes(data: np.ndarray) -> np.ndarray:
    """TFLite string tensor layout: count, count+1 int32 offsets, then the bytes."""
    items = [x if isinstance(x, bytes) else str(x).encode("utf-8") for x in data.ravel()]
    n = len(items)
    header = 4 * (n + 2)
    offsets = np.cumsum([header] + [len(x) for x in items], dtype=np.int64)
    head = np.concatenate([[n], offsets]).astype("<i4")
    return np.frombuffer(head.tobytes() + b"".join(items), np.uint8)


def _pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """Two 4-bit values per byte, element 2k in the low nibble (TFLite INT4/UINT4 layout)."""
    v = codes.astype(np.uint8) & 0x0F
    if v.size % 2:
        v = np.concatenate([v, np.zeros(1, np.uint8)])
    return v[0::2] | (v[1::2] << 4)


def _tensor_bytes(t: tfl.Tensor) -> np.ndarray:
    """Stored bytes of a constant as a 1-D uint8 array (a view when no conversion is needed)."""
    data = np.asarray(t.data)
    ttype = versioning.tensor_type(t.dtype)
    if data.size != math.prod(t.shape):
        raise BuildError(f"tensor {t.name!r}: data has {data.size} elements, shape {t.shape}")
    if ttype == "STRING":
        return _string_tensor_bytes(data)
    if data.dtype != t.dtype:
        raise BuildError(f"tensor {t.name!r}: data dtype {data.dtype} != tensor dtype {t.dtype}")
    if ttype in ("INT4", "UINT4"):
        return _pack_nibbles(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
    if ttype in ("INT2",):
        raise BuildError(f"tensor {t.name!r}: packing of INT2 constants is not implemented")
    if data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("<"))
    return np.ascontiguousarray(data).reshape(-1).view(np.uint8)


class _BufferTable:
    """Buffers in first-use order; identical (dtype, shape, bytes) constants share one entry.

    Candidates are bucketed by dtype, shape and a digest of a fixed-size sample of the bytes
    (both ends plus a strided pick), so distinct weights are told apart without hashing all of
    their bytes; a bucket hit is confirmed by a full byte comparison. Small constants (the many
    shape and axis operands) are keyed by their bytes themselves.
    """

    EXACT = 64  # up to this many bytes a constant is keyed by its bytes (no hash, no compare)
    SAMPLE = 1024  # bytes hashed at each end
    # bytes picked across the middle: each pick is a cache miss in a large weight, so few
    STRIDED = 256

    def __init__(self) -> None:
        self.raws: list[np.ndarray] = []  # buffer k + 1 (buffer 0 is the empty sentinel)
        self._buckets: dict[tuple, list[int]] = {}
        self._by_tensor: dict[int, int] = {}

    @classmethod
    def _sample_digest(cls, raw: np.ndarray) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        if raw.size <= 3 * cls.SAMPLE:
            h.update(memoryview(raw))
        else:
            step = raw.size // cls.STRIDED
            h.update(memoryview(raw[: cls.SAMPLE]))
            h.update(np.ascontiguousarray(raw[::step]).data)
            h.update(memoryview(raw[-cls.SAMPLE :]))
        return h.digest()

    def add_constant(self, t: tfl.Tensor) -> int:
        if id(t) in self._by_tensor:
            return self._by_tensor[id(t)]
        raw = _tensor_bytes(t)
        exact = raw.size <= self.EXACT  # small (shapes, scalars): the bytes are the key
        digest = raw.tobytes() if exact else self._sample_digest(raw)
        key = (t.dtype, t.shape, raw.size, digest)
        bucket = self._buckets.setdefault(key, [])
        for other in bucket:
            if exact or np.array_equal(self.raws[other - 1], raw):
                index = other
                break
        else:
            self.raws.append(raw)
            index = len(self.raws)
            bucket.append(index)
        self._by_tensor[id(t)] = index
        return index


# -- model ------------------------------------------------------------------------------------
def _quantization(q: tfl.Quantization, index_of: dict[int, int] | None = None) -> dict | None:
    if q.block_scales is not None:  # BlockwiseQuantization: the scales are a tensor
        details = {"scales": (index_of or {})[id(q.block_scales)], "zero_points": -1}
        details["block_size"] = int(q.block_size)
        return {"details": ("BlockwiseQuantization", details), "quantized_dimension": q.axis}
    scale = np.asarray(q.scale, np.float32).ravel()
    if scale.size == 0:
        return None
    zp = np.asarray(q.zero_point, np.int64).ravel()
    if zp.size == 1 and scale.size > 1:
        zp = np.repeat(zp, scale.size)
    if zp.size != scale.size:
        raise BuildError(f"quantization has {scale.size} scales but {zp.size} zero points")
    return {"scale": scale, "zero_point": zp, "quantized_dimension": int(q.axis)}


def _opcode_key(op: tfl.Operator) -> tuple[str, str]:
    if op.opcode == "CUSTOM":
        if not op.custom_code:
            raise BuildError("CUSTOM operator without custom_code")
        return ("CUSTOM", op.custom_code)
    if op.opcode not in S.ENUMS["BuiltinOperator"]:
        raise BuildError(f"unknown builtin operator {op.opcode!r}")
    return (op.opcode, "")


def _operator_codes(model: tfl.Model) -> tuple[dict, dict[int, int], list[tuple[str, int]]]:
    """(opcode key, version) -> OperatorCode index, in first-use order; the code index of each
    operator (by id); every (opcode, version) used.

    One OperatorCode per version in use, as LiteRT's own converter writes them: a delegate
    reads the version of the code an operator points to, so one integer ADD that needs v4
    must not lift every float ADD of the file to v4 (past the GPU delegate's cap, say)."""
    codes: dict[tuple[str, str, int], int] = {}
    op_code: dict[int, int] = {}
    per_op: list[tuple[str, int]] = []
    for sg in model.subgraphs:
        for op in sg.operators:
            opcode, custom = _opcode_key(op)
            version = 1 if op.opcode == "CUSTOM" else versioning.op_version(op)
            versioning.check_cpu_range(op.opcode, version)
            op_code[id(op)] = codes.setdefault((opcode, custom, version), len(codes))
            per_op.append((op.opcode, version))
    return codes, op_code, per_op


def _operator_dict(op: tfl.Operator, opcode_index: int, index_of: dict[int, int]) -> dict:
    values: dict = {
        "opcode_index": opcode_index,
        "inputs": [-1 if t is None else index_of[id(t)] for t in op.inputs],
        "outputs": [index_of[id(t)] for t in op.outputs],
    }
    if op.intermediates:
        values["intermediates"] = [index_of[id(t)] for t in op.intermediates]
    if op.opcode == "CUSTOM":
        if op.options:
            raise BuildError(f"CUSTOM op {op.custom_code!r}: use custom_options, not options")
        if op.custom_options is not None:
            values["custom_options"] = bytes(op.custom_options)
            values["custom_options_format"] = "FLEXBUFFERS"
        return values
    target = options_table(op.opcode)
    if target is None:
        if op.options:
            raise UnknownOptionError(f"{op.opcode} has no options table; got {op.options}")
        return values
    union, member = target
    slot = "builtin_options" if union == "BuiltinOptions" else "builtin_options_2"
    values[slot] = (member, dict(op.options))
    return values


def _tensor_dict(t: tfl.Tensor, buffer: int, name: str, index_of: dict | None = None) -> dict:
    values = {
        "shape": list(t.shape),
        "type": versioning.tensor_type(t.dtype),
        "buffer": buffer,
        "name": name,
        "has_rank": True,
    }
    if t.quantization is not None:
        values["quantization"] = _quantization(t.quantization, index_of)
    if t.shape_signature is not None:
        if len(t.shape_signature) != t.rank:
            raise BuildError(f"tensor {t.name!r}: shape_signature rank != shape rank")
        values["shape_signature"] = [int(d) for d in t.shape_signature]
    if t.is_variable:
        values["is_variable"] = True
    return values


# -- Tensor and Operator tables: the bulk of a model's tables, written without a values dict ---
_TENSOR_FIELDS = layout("Tensor").fields
_OPERATOR_FIELDS = layout("Operator").fields
_TENSOR_TYPE_IDS = S.ENUMS["TensorType"]


def _slot(fields: dict[str, Field], name: str) -> tuple[int, int, str]:
    f = fields[name]
    return (1, f.fid, "<B") if f.kind == UTYPE else (f.size, f.fid, f.fmt)


def _signature_of(fields: dict[str, Field], names) -> TableShape:
    """The named fields in :meth:`Writer.table`'s order (widest first, then id)."""
    return table_shape(
        tuple(sorted((_slot(fields, n) for n in names), key=lambda s: (-s[0], s[1])))
    )


# (buffer != 0, type != FLOAT32) -> the fields of a plain tensor: no quantization or signature
_TENSOR_SHAPES = {
    (buffer, typed): _signature_of(
        _TENSOR_FIELDS,
        ["shape", "name", "has_rank"] + ["buffer"] * buffer + ["type"] * typed,
    )
    for buffer in (False, True)
    for typed in (False, True)
}


def _tensor_table(w: Writer, t: tfl.Tensor, buffer: int, name: str, index_of=None) -> int:
    """Same bytes as ``w.table("Tensor", _tensor_dict(...))``, minus the per-field dispatch."""
    if t.quantization is not None or t.shape_signature is not None or t.is_variable:
        return w.table("Tensor", _tensor_dict(t, buffer, name, index_of))
    shape = w.int_vector(t.shape, "Tensor.shape")
    label = w.string(name)
    ttype = _TENSOR_TYPE_IDS[versioning.tensor_type(t.dtype)]
    if ttype:
        packed = [True, ttype, label, buffer, shape] if buffer else [True, ttype, label, shape]
    else:
        packed = [True, label, buffer, shape] if buffer else [True, label, shape]
    return w.put_table("Tensor", _TENSOR_SHAPES[(bool(buffer), bool(ttype))], packed)


_BUFFER_DATA_SHAPE = _signature_of(layout("Buffer").fields, ["data"])

# (opcode_index != 0, options union field or None) -> the fields of a builtin operator
_OPERATOR_SHAPES = {
    (indexed, union): _signature_of(
        _OPERATOR_FIELDS,
        ["inputs", "outputs"]
        + ["opcode_index"] * indexed
        + ([union, f"{union}_type"] if union else []),
    )
    for indexed in (False, True)
    for union in (None, "builtin_options", "builtin_options_2")
}


def _operator_table(w: Writer, op: tfl.Operator, opcode_index: int, index_of: dict) -> int:
    """Same bytes as ``w.table("Operator", _operator_dict(...))`` for builtin operators."""
    if op.opcode == "CUSTOM" or op.intermediates:
        return w.table("Operator", _operator_dict(op, opcode_index, index_of))
    inputs = w.int_vector(
        [-1 if t is None else index_of[id(t)] for t in op.inputs], "Operator.inputs"
    )
    outputs = w.int_vector([index_of[id(t)] for t in op.outputs], "Operator.outputs")
    packed = [outputs, inputs, opcode_index] if opcode_index else [outputs, inputs]
    target = options_table(op.opcode)
    if target is None:
        if op.options:
            raise UnknownOptionError(f"{op.opcode} has no options table; got {op.options}")
        return w.put_table("Operator", _OPERATOR_SHAPES[(bool(opcode_index), None)], packed)
    union, member = target
    options = w.table(member, op.options)
    packed[:0] = [S.UNIONS[union][member], options]
    field_name = "builtin_options" if union == "BuiltinOptions" else "builtin_options_2"
    return w.put_table("Operator", _OPERATOR_SHAPES[(bool(opcode_index), field_name)], packed)


@dataclass
class TFLiteFile:
    """A serialized .tflite as ordered chunks; the constants' chunks are views of their arrays.

    Nothing here copies weights: ``write_to`` streams the chunks into a file, ``tobytes``
    joins them with one copy. ``flatbuffer_size`` is the FlatBuffer part (all of the file in
    the inline layout); ``external_buffers`` tells which layout was written.
    """

    chunks: list
    nbytes: int
    flatbuffer_size: int
    external_buffers: bool
    # Operator code (custom code for CUSTOM) -> the version written (for the report).
    versions: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.nbytes

    def tobytes(self) -> bytes:
        return b"".join(self.chunks)

    def write_to(self, fh: BinaryIO) -> None:
        """Write the chunks to ``fh``; a real file gets them by ``writev``, a few system calls
        instead of two per constant."""
        try:
            fd = fh.fileno() if hasattr(os, "writev") else None
        except (AttributeError, OSError, io.UnsupportedOperation):
            fd = None
        if fd is None:
            for chunk in self.chunks:
                fh.write(chunk)
            return
        fh.flush()
        _writev_all(fd, [memoryview(c).cast("B") for c in self.chunks if len(c)])


_IOV_MAX = 1024  # buffers per writev call (the POSIX minimum of IOV_MAX is 16; Linux: 1024)


def _writev_all(fd: int, views: list[memoryview]) -> None:
    """``os.writev`` until every byte is written (a call may write only part of its buffers)."""
    i = 0
    while i < len(views):
        written = os.writev(fd, views[i : i + _IOV_MAX])
        while written and i < len(views):
            if written >= views[i].nbytes:
                written -= views[i].nbytes
                i += 1
            else:
                views[i] = views[i][written:]
                written = 0


@dataclass
class _Plan:
    """Everything the writer needs, computed once for either layout."""

    model: tfl.Model
    codes: dict  # (opcode, custom code, version) -> OperatorCode index
    op_code: dict  # id(operator) -> its OperatorCode index
    buffers: _BufferTable
    tensor_lists: list[list[tfl.Tensor]]
    tensor_buffers: list[list[int]]
    metadata: dict[str, bytes]


def _plan(model: tfl.Model) -> _Plan:
    if not model.subgraphs:
        raise BuildError("model has no subgraphs")
    for sg in model.subgraphs:  # (in place, idempotent: the report counts what is written)
        inplace_guard.protect(sg)
    codes, op_code, per_op = _operator_codes(model)
    buffers = _BufferTable()
    tensor_lists = [sg.tensors() for sg in model.subgraphs]
    tensor_buffers = [
        [buffers.add_constant(t) if t.is_constant else 0 for t in tensors]
        for tensors in tensor_lists
    ]
    metadata = {n: bytes(v) for n, v in sorted(model.metadata.items())}
    release = versioning.min_runtime_version(dict.fromkeys(per_op))  # distinct pairs
    if MIN_RUNTIME_VERSION_KEY not in metadata and 0 < len(release) < 16:
        metadata = {MIN_RUNTIME_VERSION_KEY: release.encode("ascii").ljust(16, b"\0"), **metadata}
    return _Plan(model, codes, op_code, buffers, tensor_lists, tensor_buffers, metadata)


def serialize(model: tfl.Model, *, external_buffers: bool = False) -> TFLiteFile:
    """Serialize ``model`` (deterministic for identical input) without copying its weights.

    The offset layout is used when asked for, or when the inline FlatBuffer would reach the
    2 GB FlatBuffer limit.
    """
    plan = _plan(model)
    out = _write(plan, external=external_buffers)
    if out.flatbuffer_size >= FLATBUFFER_LIMIT and not external_buffers:
        out = _write(plan, external=True)
    if out.flatbuffer_size >= FLATBUFFER_LIMIT:
        raise BuildError(f"the FlatBuffer part alone is {out.flatbuffer_size} bytes (> 2 GB)")
    for op, custom, version in plan.codes:  # the highest version of each code, for the report
        key = custom or op
        out.versions[key] = max(version, out.versions.get(key, 0))
    return out


def build_flatbuffer(model: tfl.Model, *, external_buffers: bool = False) -> bytes:
    """Serialize ``model`` to the bytes of a .tflite file (see :func:`serialize`)."""
    return serialize(model, external_buffers=external_buffers).tobytes()


def _write(plan: _Plan, external: bool) -> TFLiteFile:
    model = plan.model
    metadata = dict(plan.metadata)
    if external:
        metadata.setdefault(BUFFER_LOCATION_KEY, BUFFER_LOCATION_VALUE)
    constants = plan.buffers.raws
    metadata_buffers = {name: 1 + len(constants) + k for k, name in enumerate(metadata)}
    items = sum(len(sg.operators) for sg in model.subgraphs) + sum(map(len, plan.tensor_lists))
    # ~40-70 bytes per tensor/operator table with its vectors and name (the buffer grows if
    # needed): a generous estimate would only zero-fill pages that are never written
    w = Writer(96 * items + sum(len(v) + 32 for v in metadata.values()) + (1 << 14))
    metadata_raws = [np.frombuffer(v, np.uint8) for v in metadata.values()]
    buffer_offsets, placeholders = _write_buffers(w, constants, metadata_raws, external)

    subgraph_offsets = [
        _write_subgraph(w, plan, sg, tensors, bufs)
        for sg, tensors, bufs in zip(
            model.subgraphs, plan.tensor_lists, plan.tensor_buffers, strict=True
        )
    ]
    builtin = S.ENUMS["BuiltinOperator"]
    opcode_offsets = []
    for opcode, custom, version in plan.codes:  # (insertion order = index order)
        values = {
            "deprecated_builtin_code": min(builtin[opcode], 127),
            "builtin_code": opcode,
            "version": version,
            "custom_code": custom or None,
        }
        force = ("deprecated_builtin_code", "builtin_code", "version")
        opcode_offsets.append(w.table("OperatorCode", values, force=force))

    signatures = model.signatures or [tfl.Signature(model.signature_key, 0)]
    keys = [s.key for s in signatures]
    if len(set(keys)) != len(keys):
        raise BuildError(f"signature keys must be unique, got {keys}")
    signature_defs = [_signature(model, s, plan.tensor_lists[s.subgraph_index]) for s in signatures]
    root = w.table(
        "Model",
        {
            "version": SCHEMA_VERSION,
            "operator_codes": [Ref(o) for o in opcode_offsets],
            "subgraphs": [Ref(o) for o in subgraph_offsets],
            "description": model.description,
            "buffers": [Ref(o) for o in buffer_offsets],
            "metadata": [{"name": n, "buffer": i} for n, i in metadata_buffers.items()] or None,
            "signature_defs": signature_defs,
        },
    )
    w.finish(root, S.FILE_IDENTIFIER.encode("ascii"))
    chunks = w.chunks()
    size = w.offset()
    if not external:
        return TFLiteFile(chunks, size, size, False)
    return _append_external(w, chunks, size, constants, placeholders)


def _write_buffers(w: Writer, constants, metadata_raws, external: bool):
    """Buffer tables (sentinel, constants, metadata); their data is written first.

    Inline: every data vector is reserved at the end of the file. Offset: metadata stays
    inline, non-empty constants get placeholder ``offset``/``size`` fields (patched by
    :func:`_append_external`); returns the table positions and ``{constant index: (offset
    field position, size field position)}``.
    """
    if external:
        data = [None] * len(constants)
        data += [w.bytes_vector(raw, 1, DATA_ALIGNMENT) for raw in metadata_raws]
    else:
        data = [w.tail_vector(raw, DATA_ALIGNMENT) for raw in (*constants, *metadata_raws)]
    tables = [w.table("Buffer", {})]
    placeholders: dict[int, tuple[int, int]] = {}
    for i, off in enumerate(data):
        if off is not None:  # == w.table("Buffer", {"data": Ref(off)})
            tables.append(w.put_table("Buffer", _BUFFER_DATA_SHAPE, [off]))
        elif constants[i].size:
            tables.append(w.table("Buffer", {"offset": 1, "size": 1}))
            placeholders[i] = (w.positions[1], w.positions[2])
        else:  # an empty constant: nothing to place outside
            tables.append(w.table("Buffer", {"data": Ref(w.bytes_vector(b"", 1, 16))}))
    return tables, placeholders


def _append_external(w: Writer, chunks: list, size: int, constants, placeholders) -> TFLiteFile:
    """Offset layout: constants after the FlatBuffer, 64-byte aligned, then tail padding."""
    cursor = size
    for i, (off_pos, size_pos) in placeholders.items():
        raw = constants[i]
        start = -(-cursor // EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT
        chunks += [bytes(start - cursor), memoryview(raw)]
        w.patch(off_pos, "<Q", start)
        w.patch(size_pos, "<Q", raw.size)
        cursor = start + raw.size
    chunks.append(bytes(EXTERNAL_TAIL_PADDING))
    return TFLiteFile(chunks, cursor + EXTERNAL_TAIL_PADDING, size, True)


def _write_subgraph(w: Writer, plan: _Plan, sg: tfl.Subgraph, tensors, bufs) -> int:
    index_of = {id(t): i for i, t in enumerate(tensors)}
    tensor_offsets = [
        Ref(_tensor_table(w, t, buf, name, index_of))
        for t, buf, name in zip(tensors, bufs, unique_names(tensors), strict=True)
    ]
    op_code = plan.op_code
    op_offsets = [Ref(_operator_table(w, op, op_code[id(op)], index_of)) for op in sg.operators]
    missing = [t.name for t in (*sg.inputs, *sg.outputs) if id(t) not in index_of]
    if missing:
        raise BuildError(f"subgraph {sg.name!r}: unknown I/O tensors {missing}")
    return w.table(
        "SubGraph",
        {
            "tensors": tensor_offsets,
            "inputs": [index_of[id(t)] for t in sg.inputs],
            "outputs": [index_of[id(t)] for t in sg.outputs],
            "operators": op_offsets,
            "name": sg.name,
        },
    )


def _signature(model: tfl.Model, signature: tfl.Signature, tensors: list[tfl.Tensor]) -> dict:
    """SignatureDef of one signature's subgraph, keyed by the ONNX I/O names in the given
    order."""
    sg = model.subgraphs[signature.subgraph_index]
    index_of = {id(t): i for i, t in enumerate(tensors)}

    def maps(ts: list[tfl.Tensor], names: list[str], what: str) -> list[dict]:
        names = names or [t.name for t in ts]
        if len(names) != len(ts):
            raise BuildError(f"{len(ts)} {what} tensors but {len(names)} {what} names")
        return [
            {"name": n, "tensor_index": index_of[id(t)]} for n, t in zip(names, ts, strict=True)
        ]

    return {
        "inputs": maps(sg.inputs, sg.input_names, "input"),
        "outputs": maps(sg.outputs, sg.output_names, "output"),
        "signature_key": signature.key,
        "subgraph_index": signature.subgraph_index,
    }
