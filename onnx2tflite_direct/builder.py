"""The only writer of TFLite bytes: ``build_flatbuffer(tfl.Model) -> bytes``.

Every table is written by one generic, schema-driven routine (:func:`_TableWriter.table`) that
takes a ``{field name: python value}`` dict and reads field ids, types and defaults from the
generated ``schema_generated`` data, so builtin options need no per-table code: the options
table of an operator is found by naming convention from the ``BuiltinOptions``/``BuiltinOptions2``
union members (``CONV_2D`` -> ``Conv2DOptions``) plus :data:`OPTIONS_EXCEPTIONS`.

File-level conventions (see OP_VERSIONS.md section 3): buffer 0 is the empty sentinel; identical
constants (dtype + shape + bytes) share one buffer; ``Buffer.data`` bodies are 16-byte aligned
in the final file; one OperatorCode per builtin / custom code with the max version of its users
(checked against the CPU resolver range); a ``min_runtime_version`` metadata entry; one
SignatureDef for subgraph 0. Output depends only on the input (no ``id()`` or hash-seed order).

Speed: weight bytes are copied exactly once, straight from a uint8 view of the numpy array into
the pre-sized builder buffer; hashing for de-duplication only happens between constants that
already agree on dtype and shape.
"""

from __future__ import annotations

import hashlib
import re

import flatbuffers
import numpy as np
from flatbuffers import number_types as N

from onnx2tflite_direct import tfl, versioning
from onnx2tflite_direct.schema_gen import schema_generated as S

__all__ = [
    "BuildError",
    "UnknownOptionError",
    "build_flatbuffer",
    "options_table",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = 3
DATA_ALIGNMENT = 16
MIN_RUNTIME_VERSION_KEY = "min_runtime_version"

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

_FLAGS = {
    "bool": N.BoolFlags,
    "byte": N.Int8Flags,
    "ubyte": N.Uint8Flags,
    "short": N.Int16Flags,
    "ushort": N.Uint16Flags,
    "int": N.Int32Flags,
    "uint": N.Uint32Flags,
    "long": N.Int64Flags,
    "ulong": N.Uint64Flags,
    "float": N.Float32Flags,
    "double": N.Float64Flags,
}
_NP = {
    "bool": "<u1",
    "byte": "<i1",
    "ubyte": "<u1",
    "short": "<i2",
    "ushort": "<u2",
    "int": "<i4",
    "uint": "<u4",
    "long": "<i8",
    "ulong": "<u8",
    "float": "<f4",
    "double": "<f8",
}


class BuildError(ValueError):
    """The tfl model cannot be written as given (bad data, unknown opcode, ...)."""


class UnknownOptionError(BuildError):
    """An options dict names a field (or enum value) the schema table does not have."""


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


def options_table(opcode: str) -> tuple[str, str] | None:
    """(union name, options table) for a builtin op, or None if it has no options table."""
    if opcode in OPTIONS_EXCEPTIONS:
        member = OPTIONS_EXCEPTIONS[opcode]
        return _MEMBER_UNION[member], member
    return _OPTIONS_INDEX.get(_norm(opcode))


_NUM_SLOTS: dict[str, int] = {}


def _num_slots(table: str) -> int:
    """vtable size of a table: highest live field id + 1."""
    if table not in _NUM_SLOTS:
        _NUM_SLOTS[table] = max((v[0] for v in S.TABLES[table].values()), default=-1) + 1
    return _NUM_SLOTS[table]


class _TableWriter:
    """Schema-driven writing of tables, vectors and strings into a flatbuffers.Builder."""

    def __init__(self, initial_size: int) -> None:
        self.b = flatbuffers.Builder(initial_size)

    # -- vectors ---------------------------------------------------------------------------
    def raw_vector(self, raw: np.ndarray, elem_size: int, alignment: int) -> int:
        """Vector whose body is the little-endian bytes ``raw`` (1-D uint8), copied once."""
        b = self.b
        n = raw.size
        b.StartVector(elem_size, n // elem_size, max(alignment, elem_size))
        b.head = b.head - n
        b.Bytes[b.head : b.head + n] = memoryview(raw)
        return b.EndVector()

    def offsets_vector(self, offsets: list[int]) -> int:
        b = self.b
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    # -- values ----------------------------------------------------------------------------
    def enum_value(self, enum: str, value: object, where: str) -> int:
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

    def scalar(self, ftype: str, value: object, where: str) -> object:
        if isinstance(value, np.generic):
            value = value.item()
        if ftype == "bool":
            if not isinstance(value, (bool, int)):
                raise BuildError(f"{where}: expected bool, got {value!r}")
            return bool(value)
        if ftype in ("float", "double"):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise BuildError(f"{where}: expected a number, got {value!r}")
            return float(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BuildError(f"{where}: expected an integer, got {value!r}")
        return value

    def vector(self, elem: str, value: object, where: str, align: int) -> int:
        if isinstance(value, _Ref):
            return value.off
        if elem in _NP:
            if isinstance(value, (bytes, bytearray, memoryview)):
                arr = np.frombuffer(value, np.uint8)
            else:
                arr = np.asarray(value)
            if elem == "bool":
                arr = arr.astype(bool)
            arr = np.ascontiguousarray(arr.ravel(), dtype=_NP[elem])
            return self.raw_vector(arr.view(np.uint8), arr.itemsize, align)
        if elem in S.ENUMS:
            vals = [self.enum_value(elem, v, where) for v in value]
            arr = np.asarray(vals, dtype=_NP[S.ENUM_TYPES[elem]])
            return self.raw_vector(arr.view(np.uint8), arr.itemsize, align)
        if elem == "string":
            offs = [self.b.CreateString(str(s)) for s in value]
        elif elem in S.TABLES:
            offs = [v.off if isinstance(v, _Ref) else self.table(elem, v) for v in value]
        else:
            raise BuildError(f"{where}: unsupported vector element type {elem}")
        return self.offsets_vector(offs)

    def table(self, name: str, values: dict, force: tuple[str, ...] = ()) -> int:
        """Write table ``name`` from ``{field: value}``; None values are left out.

        Children are created in field-id order, so the bytes never depend on dict order.
        """
        layout = S.TABLES[name]
        unknown = [k for k in values if k not in layout]
        if unknown:
            raise UnknownOptionError(
                f"{name} has no field(s) {sorted(unknown)}; known fields: {list(layout)}"
            )
        fields = sorted(
            (layout[k][0], k) for k, v in values.items() if v is not None and k in layout
        )
        slots: list[tuple[int, object, object, object]] = []  # (id, flags|None, value, default)
        for fid, fname in fields:
            _, ftype, default = layout[fname]
            value = values[fname]
            where = f"{name}.{fname}"
            if ftype in _FLAGS:
                slots.append((fid, _FLAGS[ftype], self.scalar(ftype, value, where), default))
            elif ftype in S.ENUMS:
                flags = _FLAGS[S.ENUM_TYPES[ftype]]
                slots.append((fid, flags, self.enum_value(ftype, value, where), default))
            elif ftype.startswith("utype:"):
                continue  # written together with its union value
            elif ftype.startswith("union:"):
                union = ftype[len("union:") :]
                member, body = value
                type_id = layout[f"{fname}_type"][0]
                slots.append((type_id, N.Uint8Flags, self.enum_value(union, member, where), 0))
                off = body.off if isinstance(body, _Ref) else self.table(member, body)
                slots.append((fid, None, off, None))
            elif ftype == "string":
                off = value.off if isinstance(value, _Ref) else self.b.CreateString(str(value))
                slots.append((fid, None, off, None))
            elif ftype.startswith("["):
                align = S.FORCE_ALIGN.get(where, 1)
                slots.append((fid, None, self.vector(ftype[1:-1], value, where, align), None))
            elif ftype in S.TABLES:
                off = value.off if isinstance(value, _Ref) else self.table(ftype, value)
                slots.append((fid, None, off, None))
            else:
                raise BuildError(f"{where}: unsupported field type {ftype}")
        b = self.b
        b.StartObject(_num_slots(name))
        # Widest scalars first keeps padding small; ties by id keep the layout deterministic.
        slots.sort(key=lambda s: (-(s[1].bytewidth if s[1] else 4), s[0]))
        forced = {layout[f][0] for f in force}
        for fid, flags, value, default in slots:
            if flags is None:
                b.PrependUOffsetTRelativeSlot(fid, value, 0)
            elif fid in forced or value != default:
                b.Prepend(flags, value)
                b.Slot(fid)
        return b.EndObject()

    def finish(self, root: int, identifier: str) -> bytes:
        self.b.Finish(root, file_identifier=identifier.encode("ascii"))
        with memoryview(self.b.Bytes) as mv:
            return bytes(mv[self.b.Head() :])


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
    if data.size != int(np.prod(t.shape, dtype=np.int64)):
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
    their bytes; a bucket hit is confirmed by a full byte comparison.
    """

    SAMPLE = 4096

    def __init__(self) -> None:
        self.raws: list[np.ndarray | None] = [None]  # buffer 0: empty sentinel
        self._buckets: dict[tuple, list[int]] = {}
        self._by_tensor: dict[int, int] = {}

    @classmethod
    def _sample_digest(cls, raw: np.ndarray) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        if raw.size <= 3 * cls.SAMPLE:
            h.update(memoryview(raw))
        else:
            step = raw.size // cls.SAMPLE
            h.update(memoryview(raw[: cls.SAMPLE]))
            h.update(np.ascontiguousarray(raw[::step]).data)
            h.update(memoryview(raw[-cls.SAMPLE :]))
        return h.digest()

    def add_constant(self, t: tfl.Tensor) -> int:
        if id(t) in self._by_tensor:
            return self._by_tensor[id(t)]
        raw = _tensor_bytes(t)
        key = (t.dtype.str, t.dtype.name, t.shape, raw.size, self._sample_digest(raw))
        bucket = self._buckets.setdefault(key, [])
        for other in bucket:
            if np.array_equal(self.raws[other], raw):
                index = other
                break
        else:
            index = len(self.raws)
            self.raws.append(raw)
            bucket.append(index)
        self._by_tensor[id(t)] = index
        return index

    def add_raw(self, data: bytes) -> int:
        self.raws.append(np.frombuffer(data, np.uint8))
        return len(self.raws) - 1


# -- model ------------------------------------------------------------------------------------
def _unique_names(tensors: list[tfl.Tensor]) -> list[str]:
    """Tensor names made unique by suffixing ``_1``, ``_2``... in tensor order."""
    taken = {t.name for t in tensors}
    seen: set[str] = set()
    out = []
    for t in tensors:
        name = t.name
        if name in seen:
            k = 1
            while f"{t.name}_{k}" in taken:
                k += 1
            name = f"{t.name}_{k}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


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
        "inputs": np.array([-1 if t is None else index_of[id(t)] for t in op.inputs], np.int32),
        "outputs": np.array([index_of[id(t)] for t in op.outputs], np.int32),
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


def _estimate_size(model: tfl.Model, buffers: _BufferTable) -> int:
    data = sum(r.size + DATA_ALIGNMENT + 8 for r in buffers.raws if r is not None)
    items = sum(len(sg.operators) + len(sg.tensors()) for sg in model.subgraphs)
    return min(data + 256 * items + (1 << 16), flatbuffers.Builder.MAX_BUFFER_SIZE)


def build_flatbuffer(model: tfl.Model) -> bytes:
    """Serialize ``model`` to TFLite FlatBuffer bytes (deterministic for identical input)."""
    if not model.subgraphs:
        raise BuildError("model has no subgraphs")
    codes, per_op = _operator_codes(model)

    buffers = _BufferTable()
    tensor_lists = [sg.tensors() for sg in model.subgraphs]
    tensor_buffers = [
        [buffers.add_constant(t) if t.is_constant else 0 for t in tensors]
        for tensors in tensor_lists
    ]
    metadata = dict(sorted(model.metadata.items()))
    release = versioning.min_runtime_version(per_op)
    if MIN_RUNTIME_VERSION_KEY not in metadata and 0 < len(release) < 16:
        metadata = {MIN_RUNTIME_VERSION_KEY: release.encode("ascii").ljust(16, b"\0"), **metadata}
    metadata_buffers = {name: buffers.add_raw(bytes(v)) for name, v in metadata.items()}

    w = _TableWriter(_estimate_size(model, buffers))
    data_offsets = [
        None if raw is None else w.raw_vector(raw, 1, DATA_ALIGNMENT) for raw in buffers.raws
    ]
    buffer_offsets = [
        w.table("Buffer", {} if off is None else {"data": _Ref(off)}) for off in data_offsets
    ]

    subgraph_offsets = []
    for sg, tensors, bufs in zip(model.subgraphs, tensor_lists, tensor_buffers, strict=True):
        index_of = {id(t): i for i, t in enumerate(tensors)}
        tensor_offsets = []
        for t, buf, name in zip(tensors, bufs, _unique_names(tensors), strict=True):
            values = {
                "shape": np.array(t.shape, np.int32),
                "type": versioning.tensor_type(t.dtype),
                "buffer": buf,
                "name": name,
                "has_rank": True,
            }
            if t.quantization is not None:
                values["quantization"] = _quantization(t.quantization)
            if t.shape_signature is not None:
                if len(t.shape_signature) != t.rank:
                    raise BuildError(f"tensor {t.name!r}: shape_signature rank != shape rank")
                values["shape_signature"] = np.array(t.shape_signature, np.int32)
            tensor_offsets.append(w.table("Tensor", values))
        op_offsets = [
            w.table("Operator", _operator_dict(op, codes[_opcode_key(op)][0], index_of))
            for op in sg.operators
        ]
        missing = [t.name for t in (*sg.inputs, *sg.outputs) if id(t) not in index_of]
        if missing:
            raise BuildError(f"subgraph {sg.name!r}: unknown I/O tensors {missing}")
        subgraph_offsets.append(
            w.table(
                "SubGraph",
                {
                    "tensors": [_Ref(o) for o in tensor_offsets],
                    "inputs": np.array([index_of[id(t)] for t in sg.inputs], np.int32),
                    "outputs": np.array([index_of[id(t)] for t in sg.outputs], np.int32),
                    "operators": [_Ref(o) for o in op_offsets],
                    "name": sg.name,
                },
            )
        )

    builtin = S.ENUMS["BuiltinOperator"]
    opcode_offsets = []
    for (opcode, custom), (_, version) in codes.items():
        code = builtin[opcode]
        values = {
            "deprecated_builtin_code": min(code, 127),
            "builtin_code": opcode,
            "version": version,
            "custom_code": custom or None,
        }
        force = ("deprecated_builtin_code", "builtin_code", "version")
        opcode_offsets.append(w.table("OperatorCode", values, force=force))

    signature = _signature(model, tensor_lists[0])
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
    return w.finish(root, S.FILE_IDENTIFIER)


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
