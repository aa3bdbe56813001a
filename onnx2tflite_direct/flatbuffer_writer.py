"""The schema-driven FlatBuffer writer behind ``builder.py``: tables, vectors and strings.

Tables are written by one routine (:meth:`Writer.table`) that takes a ``{field name: python
value}`` dict; field ids, types and defaults come from the generated ``schema_generated`` data
(precomputed once per table: :func:`layout`). Every table body is laid out by a precomputed
frame (one ``struct`` pack per table, :func:`table_shape`); :meth:`Writer.put_table` writes a
table whose shape is known in advance without the field dict (same bytes). FlatBuffers are
written back to front; :meth:`Writer.tail_vector` reserves the position of a large vector
without copying it. Nothing here knows what a TFLite model is: ``builder.py`` decides what goes
into which table.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from onnx2tflite_direct.schema_gen import schema_generated as S

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


class Ref:
    """An already-written offset, passed where a table/vector/string value is expected."""

    __slots__ = ("off",)

    def __init__(self, off: int) -> None:
        self.off = off


# -- per-table field layouts (computed once per table) ----------------------------------------
_SCALAR, _ENUM, UTYPE, _UNION, _STRING, _VECTOR, _TABLE = range(7)


class Field(NamedTuple):
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


def _field(table: str, name: str, fid: int, ftype: str, default, layout: dict) -> Field:
    def make(kind, ref, fmt="", size=4, type_fid=-1, align=1, plain=None):
        return Field(name, fid, kind, ref, fmt, size, default, type_fid, align, plain)

    if ftype in _SCALARS:
        fmt = _SCALARS[ftype][0]
        plain = bool if ftype == "bool" else float if ftype in ("float", "double") else int
        return make(_SCALAR, ftype, fmt, struct.calcsize(fmt), plain=plain)
    if ftype in S.ENUMS:
        fmt = _SCALARS[S.ENUM_TYPES[ftype]][0]
        return make(_ENUM, ftype, fmt, struct.calcsize(fmt), plain=S.ENUMS[ftype])
    if ftype.startswith("utype:"):
        return make(UTYPE, ftype[len("utype:") :])
    if ftype.startswith("union:"):
        return make(_UNION, ftype[len("union:") :], type_fid=layout[f"{name}_type"][0])
    if ftype == "string":
        return make(_STRING, ftype)
    if ftype.startswith("["):
        return make(_VECTOR, ftype[1:-1], align=S.FORCE_ALIGN.get(f"{table}.{name}", 1))
    return make(_TABLE, ftype)  # unknown kinds fail when a value is given for them


class _Layout(NamedTuple):
    fields: dict[str, Field]


_LAYOUTS: dict[str, _Layout] = {}


def layout(table: str) -> _Layout:
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


def _scalar_value(f: Field, value: object, table: str) -> object:
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


class TableShape:
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


_SHAPES: dict[tuple, TableShape] = {}


def table_shape(signature: tuple[tuple[int, int, str], ...]) -> TableShape:
    shape = _SHAPES.get(signature)
    if shape is None:
        shape = _SHAPES[signature] = TableShape(signature)
    return shape


_U32 = struct.Struct("<I")
_INT_VECTOR_STRUCTS: dict[tuple[int, str], struct.Struct] = {}  # (length, code) -> packer


class Writer:
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
        if isinstance(value, Ref):
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
            offs = [v.off if isinstance(v, Ref) else self.table(elem, v) for v in value]
        else:
            raise BuildError(f"{where}: unsupported vector element type {elem}")
        return self.offsets_vector(offs)

    # -- tables ----------------------------------------------------------------------------
    def _child(self, f: Field, value: object, where: str) -> int:
        """Write the out-of-line value of an offset field; returns its position."""
        if isinstance(value, Ref):
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
            fields = layout(name).fields
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
            elif kind == UTYPE:
                continue  # written together with its union value
            elif kind == _UNION:
                member, body = value
                type_id = _enum_value(f.ftype, member, f"{name}.{f.name}")
                if type_id:
                    slots.append((1, f.type_fid, "<B", type_id))
                off = body.off if isinstance(body, Ref) else self.table(member, body)
                slots.append((4, f.fid, "", off))
            else:
                slots.append((4, f.fid, "", self._child(f, value, f"{name}.{f.name}")))
        slots.sort(key=_widest_first)
        return self._end_table(name, slots)

    def _end_table(self, name: str, slots: list[tuple[int, int, str, object]]) -> int:
        """Write a table body from widest-first ``(size, id, format or "", value)`` slots."""
        shape = table_shape(tuple([s[:3] for s in slots]))
        return self.put_table(name, shape, [s[3] for s in reversed(slots)])

    def put_table(self, name: str, shape: TableShape, packed: list) -> int:
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


def _by_id(f: Field) -> int:
    return f.fid


def _widest_first(slot: tuple) -> tuple[int, int]:
    return (-slot[0], slot[1])
