"""The only writer of TFLite bytes: ``serialize(tfl.Model) -> TFLiteFile`` / ``build_flatbuffer``.

Tables are written by one schema-driven routine (:meth:`_Writer.table`) that takes a
``{field name: python value}`` dict; field ids, types and defaults come from the generated
``schema_generated`` data (precomputed once per table), so builtin options need no per-table
code: the options table of an operator is found by naming convention from the
``BuiltinOptions``/``BuiltinOptions2`` union members (``CONV_2D`` -> ``Conv2DOptions``) plus
:data:`OPTIONS_EXCEPTIONS`. Every table body is laid out by a precomputed :class:`_Frame` (one
``struct`` pack per table); the tables a model has thousands of (plain Tensor, builtin
Operator, Buffer) skip the field dict and go straight to their frame (same bytes).

File-level conventions (see OP_VERSIONS.md section 3): buffer 0 is the empty sentinel; identical
constants (dtype + shape + bytes) share one buffer; constant data is 16-byte aligned in the
final file; one OperatorCode per builtin / custom code with the max version of its users
(checked against the CPU resolver range); a ``min_runtime_version`` metadata entry; one
SignatureDef for subgraph 0. Output depends only on the input (no ``id()`` or hash-seed order).

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
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

import numpy as np

from onnx2tflite_direct import tfl, versioning
from onnx2tflite_direct.schema_gen import schema_generated as S
from onnx2tflite_direct.tfl_edit import unique_names

__all__ = [
    "BuildError",
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

# schema scalar type -> (struct format, numpy dtype)
_SCALARS = {
    "bool": ("<B", "<u1"),
    "byte": ("<b", "<i1"),
    "ubyte": ("<B", "<u1"),
    "short": ("<h", "<i2"),
    "ushort": ("<H", "<u2"),
    "int": ("<i", "<i4"),
    "uint": ("<I", "<u4"),
    "long": ("<q", "<i8"),
    "ulong": ("<Q", "<u8"),
    "float": ("<f", "<f4"),
    "double": ("<d", "<f8"),
}
_NP = {k: v[1] for k, v in _SCALARS.items()}
_INT_VECTORS = {"int": "i", "uint": "I"}  # vectors written from python lists without numpy


class BuildError(ValueError):
    """The tfl model cannot be written as given (bad data, unknown opcode, ...)."""


class UnknownOptionError(BuildError):
    """An options dict names a field (or enum value) the schema table does not have."""


class FieldRangeError(BuildError):
    """A value does not fit its schema field (e.g. an ONNX stride beyond int32)."""


class _Ref:
    """An already-written offset, passed where a table/vector/string value is expected."""

    __slots__ = ("off",)

    def __init__(self, off: int) -> None:
        self.off = off


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


# -- per-table field layouts (computed once per table) ----------------------------------------
_SCALAR, _ENUM, _UTYPE, _UNION, _STRING, _VECTOR, _TABLE = range(7)


class _Field(NamedTuple):
    name: str
    fid: int
    kind: int
    ftype: str  # schema scalar type (_SCALAR), enum/union/table/vector element name otherwise
    fmt: str  # struct format of scalars and enums
    size: int  # bytes in the table: scalar width, 4 for offsets
    default: object
    type_fid: int  # unions: id of the companion ``<name>_type`` field
    align: int  # vectors: force_align of the body
    plain: type | dict | None  # scalars: the python type taken as is; enums: name -> value


def _field(table: str, name: str, fid: int, ftype: str, default, layout: dict) -> _Field:
    def make(kind, ref, fmt="", size=4, type_fid=-1, align=1, plain=None):
        return _Field(name, fid, kind, ref, fmt, size, default, type_fid, align, plain)

    if ftype in _SCALARS:
        fmt = _SCALARS[ftype][0]
        plain = bool if ftype == "bool" else float if ftype in ("float", "double") else int
        return make(_SCALAR, ftype, fmt, struct.calcsize(fmt), plain=plain)
    if ftype in S.ENUMS:
        fmt = _SCALARS[S.ENUM_TYPES[ftype]][0]
        return make(_ENUM, ftype, fmt, struct.calcsize(fmt), plain=S.ENUMS[ftype])
    if ftype.startswith("utype:"):
        return make(_UTYPE, ftype[len("utype:") :])
    if ftype.startswith("union:"):
        return make(_UNION, ftype[len("union:") :], type_fid=layout[f"{name}_type"][0])
    if ftype == "string":
        return make(_STRING, ftype)
    if ftype.startswith("["):
        return make(_VECTOR, ftype[1:-1], align=S.FORCE_ALIGN.get(f"{table}.{name}", 1))
    return make(_TABLE, ftype)  # unknown kinds fail when a value is given for them


class _Layout(NamedTuple):
    fields: dict[str, _Field]


_LAYOUTS: dict[str, _Layout] = {}


def _layout(table: str) -> _Layout:
    if table not in _LAYOUTS:
        raw = S.TABLES[table]
        fields = {n: _field(table, n, fid, t, d, raw) for n, (fid, t, d) in raw.items()}
        _LAYOUTS[table] = _Layout(fields)
    return _LAYOUTS[table]


def _enum_value(enum: str, value: object, where: str) -> int:
    members = S.ENUMS[enum] if enum in S.ENUMS else S.UNIONS[enum]
    if isinstance(value, str):
        if value not in members:
            raise UnknownOptionError(
                f"{where}: {value!r} is not a {enum} value (one of {sorted(members)})"
            )
        return members[value]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if int(value) not in members.values():
            raise UnknownOptionError(f"{where}: {value} is not a {enum} value")
        return int(value)
    raise BuildError(f"{where}: expected a {enum} name, got {value!r}")


def _scalar_value(f: _Field, value: object, table: str) -> object:
    """``value`` checked and converted for scalar field ``f`` (the slow, general path)."""
    ftype, where = f.ftype, f"{table}.{f.name}"
    if isinstance(value, np.generic):
        value = value.item()
    if ftype == "bool":
        if not isinstance(value, (bool, int)):
            raise BuildError(f"{where}: expected bool, got {value!r}")
        return int(bool(value))
    if ftype in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise BuildError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BuildError(f"{where}: expected an integer, got {value!r}")
    return value


# -- the FlatBuffer writer --------------------------------------------------------------------
class _Frame(NamedTuple):
    """Byte layout of one table body: the same for every table with the same fields present
    (their sizes and ids) starting at the same offset modulo 8, so it is computed once."""

    packer: struct.Struct  # soffset to the vtable, then the fields from the lowest address up
    offsets: tuple[tuple[int, int], ...]  # (packed index, position - body start) of uoffsets
    positions: tuple[tuple[int, int], ...]  # (field id, position - body start)
    size: int  # table position - body start
    vtable: bytes
    reserve: int  # bytes to reserve before writing body and vtable
    align: int  # the widest field


def _make_frame(signature: tuple[tuple[int, int, str], ...], phase: int) -> _Frame:
    """Layout of a table whose ``(size, id, struct format or "" for offsets)`` fields, widest
    first (ties by id), are written back to front from offset ``phase`` (mod 8): each field
    aligned to its size, then the 4-aligned soffset; the vtable lists ``table - field``.
    Fields are packed lowest address first, i.e. in reverse signature order."""
    at, rel = phase, []
    for width, _, _ in signature:
        at += (-at) % width + width
        rel.append(at - phase)
    at += (-at) % 4 + 4
    size = at - phase
    n_fields = 1 + max((fid for _, fid, _ in signature), default=-1)
    entries = [0] * n_fields
    for (_, fid, _), r in zip(signature, rel, strict=True):
        entries[fid] = size - r
    vtable = struct.pack(f"<{n_fields + 2}H", 4 + 2 * n_fields, size, *entries)
    fmt, cursor, offsets = "<i", 4, []
    for k, i in enumerate(reversed(range(len(signature)))):
        width, _, code = signature[i]
        fmt += "x" * (size - rel[i] - cursor) + (code[1:] if code else "I")
        cursor = size - rel[i] + width
        if not code:
            offsets.append((k, rel[i]))
    fmt += "x" * (size - cursor)
    return _Frame(
        packer=struct.Struct(fmt),
        offsets=tuple(offsets),
        positions=tuple((fid, r) for (_, fid, _), r in zip(signature, rel, strict=True)),
        size=size,
        vtable=vtable,
        reserve=size + len(vtable) + 16,
        align=signature[0][0] if signature else 1,
    )


class _TableShape:
    """The fields a table has (its signature) and their layout at each of the 8 phases."""

    __slots__ = ("signature", "frames")

    def __init__(self, signature: tuple[tuple[int, int, str], ...]) -> None:
        self.signature = signature
        self.frames: list[_Frame | None] = [None] * 8

    def frame(self, phase: int) -> _Frame:
        frame = self.frames[phase]
        if frame is None:
            frame = self.frames[phase] = _make_frame(self.signature, phase)
        return frame


_SHAPES: dict[tuple, _TableShape] = {}


def _table_shape(signature: tuple[tuple[int, int, str], ...]) -> _TableShape:
    shape = _SHAPES.get(signature)
    if shape is None:
        shape = _SHAPES[signature] = _TableShape(signature)
    return shape


_U32 = struct.Struct("<I")
_INT_VECTOR_STRUCTS: dict[tuple[int, str], struct.Struct] = {}  # (length, code) -> packer


class _Writer:
    """Back-to-front FlatBuffer writer into a growable bytearray.

    Positions are distances from the *end* of the final file (what FlatBuffers calls offsets),
    so a child written earlier is referenced by ``parent field position - child position``.
    ``tail_vector`` reserves vectors whose bytes are never copied into the bytearray: they must
    come first (they end the file) and are emitted by :meth:`chunks` from the caller's arrays.
    """

    def __init__(self, capacity: int) -> None:
        self.buf = bytearray(max(capacity, 1 << 12))
        self.head = len(self.buf)
        self.base = 0  # bytes of the reserved tail (after buf's end)
        self.minalign = 4
        self.tail: list[tuple[np.ndarray, int]] = []  # (bytes, zero padding after them)
        self._vtables: dict[bytes, int] = {}
        # (table, fields present) -> fields in id order: tables of one kind repeat their shape
        self._field_order: dict[tuple, list] = {}
        self._last: tuple[_Frame, int] | None = None  # (layout, start) of the last table

    def offset(self) -> int:
        return self.base + len(self.buf) - self.head

    def _reserve(self, n: int) -> None:
        if n > self.head:
            old, used = self.buf, len(self.buf) - self.head
            cap = max(2 * len(old), used + n + (1 << 12))
            self.buf = bytearray(cap)
            self.buf[cap - used :] = memoryview(old)[self.head :]
            self.head = cap - used

    def _align(self, size: int, additional: int) -> None:
        """Zero-pad so that ``offset()`` is a multiple of ``size`` after ``additional`` bytes."""
        self.minalign = max(self.minalign, size)
        self.head -= (self.head - self.base - len(self.buf) - additional) % size

    # -- vectors and strings ---------------------------------------------------------------
    def tail_vector(self, raw: np.ndarray, alignment: int) -> int:
        """Reserve a ``[ubyte]`` vector of ``raw`` (1-D uint8) at the end of the file."""
        if self.head != len(self.buf):
            raise AssertionError("tail vectors must be written before anything else")
        n = raw.size
        pad = (-(self.base + n)) % alignment
        self.tail.append((raw, pad))
        self.base += pad + n + 4
        self.minalign = max(self.minalign, alignment)
        return self.base

    def bytes_vector(self, raw, elem_size: int, alignment: int) -> int:
        """Vector whose body is the little-endian bytes ``raw``."""
        n = len(raw) if isinstance(raw, (bytes, bytearray)) else raw.nbytes
        alignment = max(alignment, elem_size, 4)
        self._reserve(n + alignment + 4)
        self._align(alignment, n)
        self.head -= n
        self.buf[self.head : self.head + n] = memoryview(raw).cast("B")
        self.head -= 4
        _U32.pack_into(self.buf, self.head, n // elem_size)
        return self.offset()

    def offsets_vector(self, offsets: list[int]) -> int:
        n = len(offsets)
        self._reserve(4 * n + 8)
        self._align(4, 4 * n)
        self.head -= 4 * n
        first = self.offset()
        rel = first - 4 * np.arange(n, dtype=np.int64) - np.asarray(offsets, np.int64)
        self.buf[self.head : self.head + 4 * n] = rel.astype("<u4").tobytes()
        self.head -= 4
        _U32.pack_into(self.buf, self.head, n)
        return self.offset()

    def int_vector(self, values, where: str, code: str = "i") -> int:
        """A 4-byte integer vector (``code`` "i" or "I") of python ints, packed in place."""
        n = len(values)
        packer = _INT_VECTOR_STRUCTS.get((n, code))
        if packer is None:
            packer = _INT_VECTOR_STRUCTS[(n, code)] = struct.Struct(f"<I{n}{code}")
        if 4 * n + 12 > self.head:
            self._reserve(4 * n + 12)
        end = self.base + len(self.buf)
        head = self.head - (self.head - end) % 4 - packer.size
        try:
            packer.pack_into(self.buf, head, n, *values)
        except struct.error as exc:
            raise BuildError(f"{where}: {exc}") from None
        self.head = head
        return end - head

    def string(self, value: object) -> int:
        data = str(value).encode("utf-8")
        n = len(data)
        if n + 12 > self.head:
            self._reserve(n + 12)
        end = self.base + len(self.buf)
        # 4-aligned after the bytes and their zero terminator (already zero in the buffer)
        head = self.head - (self.head - end - n - 1) % 4 - n - 1
        self.buf[head : head + n] = data
        head -= 4
        _U32.pack_into(self.buf, head, n)
        self.head = head
        return end - head

    def vector(self, elem: str, value: object, where: str, align: int) -> int:
        if isinstance(value, _Ref):
            return value.off
        if type(value) is list and elem in _INT_VECTORS and align <= 4:  # shapes, indices
            return self.int_vector(value, where, _INT_VECTORS[elem])
        if elem in _NP:
            if isinstance(value, (bytes, bytearray, memoryview)):
                arr = np.frombuffer(value, np.uint8)
            else:
                arr = np.asarray(value)
            if elem == "bool":
                arr = arr.astype(bool)
            arr = np.ascontiguousarray(arr.ravel(), dtype=_NP[elem])
            return self.bytes_vector(arr.view(np.uint8), arr.itemsize, align)
        if elem in S.ENUMS:
            vals = [_enum_value(elem, v, where) for v in value]
            arr = np.asarray(vals, dtype=_NP[S.ENUM_TYPES[elem]])
            return self.bytes_vector(arr.view(np.uint8), arr.itemsize, align)
        if elem == "string":
            offs = [self.string(s) for s in value]
        elif elem in S.TABLES:
            offs = [v.off if isinstance(v, _Ref) else self.table(elem, v) for v in value]
        else:
            raise BuildError(f"{where}: unsupported vector element type {elem}")
        return self.offsets_vector(offs)

    # -- tables ----------------------------------------------------------------------------
    def _child(self, f: _Field, value: object, where: str) -> int:
        """Write the out-of-line value of an offset field; returns its position."""
        if isinstance(value, _Ref):
            return value.off
        if f.kind == _STRING:
            return self.string(value)
        if f.kind == _VECTOR:
            return self.vector(f.ftype, value, where, f.align)
        if f.ftype in S.TABLES:
            return self.table(f.ftype, value)
        raise BuildError(f"{where}: unsupported field type {f.ftype}")

    def table(self, name: str, values: dict, force: tuple[str, ...] = ()) -> int:
        """Write table ``name`` from ``{field: value}``; None values are left out.

        Children are created in field-id order and the body is laid out widest field first
        (ties by id), so the bytes never depend on dict order.
        """
        present = tuple(k for k, v in values.items() if v is not None)
        order = self._field_order.get((name, present))
        if order is None:
            fields = _layout(name).fields
            if not fields.keys() >= values.keys():
                unknown = sorted(k for k in values if k not in fields)
                raise UnknownOptionError(
                    f"{name} has no field(s) {unknown}; known fields: {list(fields)}"
                )
            order = sorted((fields[k] for k in present), key=_by_id)
            self._field_order[(name, present)] = order
        slots: list[tuple[int, int, str, object]] = []  # (size, id, format or "" for offsets)
        for f in order:
            value = values[f.name]
            kind = f.kind
            if kind == _SCALAR:
                v = value if type(value) is f.plain else _scalar_value(f, value, name)
                if v != f.default or f.name in force:
                    slots.append((f.size, f.fid, f.fmt, v))
            elif kind == _ENUM:
                v = f.plain.get(value) if type(value) is str else None
                if v is None:
                    v = _enum_value(f.ftype, value, f"{name}.{f.name}")
                if v != f.default or f.name in force:
                    slots.append((f.size, f.fid, f.fmt, v))
            elif kind == _UTYPE:
                continue  # written together with its union value
            elif kind == _UNION:
                member, body = value
                type_id = _enum_value(f.ftype, member, f"{name}.{f.name}")
                if type_id:
                    slots.append((1, f.type_fid, "<B", type_id))
                off = body.off if isinstance(body, _Ref) else self.table(member, body)
                slots.append((4, f.fid, "", off))
            else:
                slots.append((4, f.fid, "", self._child(f, value, f"{name}.{f.name}")))
        slots.sort(key=_widest_first)
        return self._end_table(name, slots)

    def _end_table(self, name: str, slots: list[tuple[int, int, str, object]]) -> int:
        """Write a table body from widest-first ``(size, id, format or "", value)`` slots."""
        shape = _table_shape(tuple([s[:3] for s in slots]))
        return self.put_table(name, shape, [s[3] for s in reversed(slots)])

    def put_table(self, name: str, shape: _TableShape, packed: list) -> int:
        """Write a table body with ``shape``'s fields; ``packed`` holds their values in
        reverse signature order, offset fields as the child's position (replaced in place).
        Returns the table's position."""
        object_end = self.base + len(self.buf) - self.head
        frame = shape.frames[object_end & 7] or shape.frame(object_end & 7)
        if frame.reserve > self.head:
            self._reserve(frame.reserve)
        buf, head = self.buf, self.head - frame.size
        table = object_end + frame.size
        for k, rel in frame.offsets:
            packed[k] = object_end + rel - packed[k]
        vtable = self._vtables.get(frame.vtable)
        if vtable is None:
            self.head = head - len(frame.vtable)
            buf[self.head : head] = frame.vtable
            vtable = self._vtables[frame.vtable] = table + len(frame.vtable)
        else:
            self.head = head
        try:
            frame.packer.pack_into(buf, head, vtable - table, *packed)
        except struct.error as exc:
            raise FieldRangeError(f"{name}: field value out of range ({exc})") from None
        if frame.align > self.minalign:
            self.minalign = frame.align
        self._last = (frame, object_end)
        return table

    @property
    def positions(self) -> dict[int, int]:
        """Field id -> position, of the last table written."""
        frame, object_end = self._last
        return {fid: object_end + rel for fid, rel in frame.positions}

    def finish(self, root: int, identifier: bytes) -> None:
        self._reserve(8 + self.minalign)
        self._align(self.minalign, 8)
        self.head -= 4
        self.buf[self.head : self.head + 4] = identifier
        self.head -= 4
        _U32.pack_into(self.buf, self.head, self.offset() - root)

    def patch(self, position: int, fmt: str, value: int) -> None:
        """Overwrite a scalar at ``position`` (as recorded in ``positions``) after finish."""
        struct.pack_into(fmt, self.buf, self.base + len(self.buf) - position, value)

    def chunks(self) -> list:
        """The finished file as ordered chunks: the table part, then the reserved tail."""
        out: list = [memoryview(self.buf)[self.head :]]
        for raw, pad in reversed(self.tail):
            out += [_U32.pack(raw.size), memoryview(raw), bytes(pad)]
        return out


def _by_id(f: _Field) -> int:
    return f.fid


def _widest_first(slot: tuple) -> tuple[int, int]:
    return (-slot[0], slot[1])


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
def _quantization(q: tfl.Quantization) -> dict | None:
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


def _operator_codes(model: tfl.Model) -> tuple[dict, list[tuple[str, int]]]:
    """Opcode key -> [index, version], in first-use order; plus every (opcode, version)."""
    codes: dict[tuple[str, str], list[int]] = {}
    per_op: list[tuple[str, int]] = []
    for sg in model.subgraphs:
        for op in sg.operators:
            key = _opcode_key(op)
            version = 1 if op.opcode == "CUSTOM" else versioning.op_version(op)
            versioning.check_cpu_range(op.opcode, version)
            entry = codes.setdefault(key, [len(codes), version])
            entry[1] = max(entry[1], version)
            per_op.append((op.opcode, version))
    return codes, per_op


def _operator_dict(op: tfl.Operator, opcode_index: int, index_of: dict[int, int]) -> dict:
    values: dict = {
        "opcode_index": opcode_index,
        "inputs": [-1 if t is None else index_of[id(t)] for t in op.inputs],
        "outputs": [index_of[id(t)] for t in op.outputs],
    }
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


def _tensor_dict(t: tfl.Tensor, buffer: int, name: str) -> dict:
    values = {
        "shape": list(t.shape),
        "type": versioning.tensor_type(t.dtype),
        "buffer": buffer,
        "name": name,
        "has_rank": True,
    }
    if t.quantization is not None:
        values["quantization"] = _quantization(t.quantization)
    if t.shape_signature is not None:
        if len(t.shape_signature) != t.rank:
            raise BuildError(f"tensor {t.name!r}: shape_signature rank != shape rank")
        values["shape_signature"] = [int(d) for d in t.shape_signature]
    return values


# -- Tensor and Operator tables: the bulk of a model's tables, written without a values dict ---
_TENSOR_FIELDS = _layout("Tensor").fields
_OPERATOR_FIELDS = _layout("Operator").fields
_TENSOR_TYPE_IDS = S.ENUMS["TensorType"]


def _slot(fields: dict[str, _Field], name: str) -> tuple[int, int, str]:
    f = fields[name]
    return (1, f.fid, "<B") if f.kind == _UTYPE else (f.size, f.fid, f.fmt)


def _signature_of(fields: dict[str, _Field], names) -> _TableShape:
    """The named fields in :meth:`_Writer.table`'s order (widest first, then id)."""
    return _table_shape(
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


def _tensor_table(w: _Writer, t: tfl.Tensor, buffer: int, name: str) -> int:
    """Same bytes as ``w.table("Tensor", _tensor_dict(...))``, minus the per-field dispatch."""
    if t.quantization is not None or t.shape_signature is not None:
        return w.table("Tensor", _tensor_dict(t, buffer, name))
    shape = w.int_vector(t.shape, "Tensor.shape")
    label = w.string(name)
    ttype = _TENSOR_TYPE_IDS[versioning.tensor_type(t.dtype)]
    if ttype:
        packed = [True, ttype, label, buffer, shape] if buffer else [True, ttype, label, shape]
    else:
        packed = [True, label, buffer, shape] if buffer else [True, label, shape]
    return w.put_table("Tensor", _TENSOR_SHAPES[(bool(buffer), bool(ttype))], packed)


_BUFFER_DATA_SHAPE = _signature_of(_layout("Buffer").fields, ["data"])

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


def _operator_table(w: _Writer, op: tfl.Operator, opcode_index: int, index_of: dict) -> int:
    """Same bytes as ``w.table("Operator", _operator_dict(...))`` for builtin operators."""
    if op.opcode == "CUSTOM":
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
    codes: dict
    buffers: _BufferTable
    tensor_lists: list[list[tfl.Tensor]]
    tensor_buffers: list[list[int]]
    metadata: dict[str, bytes]


def _plan(model: tfl.Model) -> _Plan:
    if not model.subgraphs:
        raise BuildError("model has no subgraphs")
    codes, per_op = _operator_codes(model)
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
    return _Plan(model, codes, buffers, tensor_lists, tensor_buffers, metadata)


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
    out.versions = {custom or op: v for (op, custom), (_, v) in plan.codes.items()}
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
    w = _Writer(96 * items + sum(len(v) + 32 for v in metadata.values()) + (1 << 14))
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
    for (opcode, custom), (_, version) in plan.codes.items():
        values = {
            "deprecated_builtin_code": min(builtin[opcode], 127),
            "builtin_code": opcode,
            "version": version,
            "custom_code": custom or None,
        }
        force = ("deprecated_builtin_code", "builtin_code", "version")
        opcode_offsets.append(w.table("OperatorCode", values, force=force))

    signature = _signature(model, plan.tensor_lists[0])
    root = w.table(
        "Model",
        {
            "version": SCHEMA_VERSION,
            "operator_codes": [_Ref(o) for o in opcode_offsets],
            "subgraphs": [_Ref(o) for o in subgraph_offsets],
            "description": model.description,
            "buffers": [_Ref(o) for o in buffer_offsets],
            "metadata": [{"name": n, "buffer": i} for n, i in metadata_buffers.items()] or None,
            "signature_defs": [signature],
        },
    )
    w.finish(root, S.FILE_IDENTIFIER.encode("ascii"))
    chunks = w.chunks()
    size = w.offset()
    if not external:
        return TFLiteFile(chunks, size, size, False)
    return _append_external(w, chunks, size, constants, placeholders)


def _write_buffers(w: _Writer, constants, metadata_raws, external: bool):
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
        if off is not None:  # == w.table("Buffer", {"data": _Ref(off)})
            tables.append(w.put_table("Buffer", _BUFFER_DATA_SHAPE, [off]))
        elif constants[i].size:
            tables.append(w.table("Buffer", {"offset": 1, "size": 1}))
            placeholders[i] = (w.positions[1], w.positions[2])
        else:  # an empty constant: nothing to place outside
            tables.append(w.table("Buffer", {"data": _Ref(w.bytes_vector(b"", 1, 16))}))
    return tables, placeholders


def _append_external(w: _Writer, chunks: list, size: int, constants, placeholders) -> TFLiteFile:
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


def _write_subgraph(w: _Writer, plan: _Plan, sg: tfl.Subgraph, tensors, bufs) -> int:
    index_of = {id(t): i for i, t in enumerate(tensors)}
    tensor_offsets = [
        _Ref(_tensor_table(w, t, buf, name))
        for t, buf, name in zip(tensors, bufs, unique_names(tensors), strict=True)
    ]
    codes = plan.codes
    op_offsets = [
        _Ref(_operator_table(w, op, codes[_opcode_key(op)][0], index_of)) for op in sg.operators
    ]
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


def _signature(model: tfl.Model, tensors: list[tfl.Tensor]) -> dict:
    """SignatureDef for subgraph 0, keyed by the ONNX I/O names in the given order."""
    sg = model.subgraphs[0]
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
        "signature_key": model.signature_key,
        "subgraph_index": 0,
    }
