"""Parse the subset of the FlatBuffers IDL used by schema.fbs and emit ``schema_generated.py``.

Why a home-grown parser: the project must not depend on ``flatc`` or on LiteRT's generated
bindings at runtime, and the builder only needs *data* (enum values, union member ids, and for
each table its field ids, types and defaults). The emitted module is deterministic, stamped with
the pinned commit and sha256, and compared byte-for-byte by ``--check`` and the tests.

Supported IDL: ``namespace``, ``include``, ``attribute``, ``file_identifier``,
``file_extension``, ``root_type``, ``enum``, ``union``, ``table``, ``struct``; field attributes
``deprecated``, ``id: N``, ``force_align: N`` (others are accepted and ignored).
Union fields take two ids (``<name>_type`` then ``<name>``), as in flatc.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from onnx2tflite_direct.schema_gen import pin

OUTPUT_PATH = Path(__file__).with_name("schema_generated.py")

# IDL scalar aliases -> canonical names used in the generated descriptors.
SCALARS = {
    "bool": "bool",
    "byte": "byte",
    "int8": "byte",
    "ubyte": "ubyte",
    "uint8": "ubyte",
    "short": "short",
    "int16": "short",
    "ushort": "ushort",
    "uint16": "ushort",
    "int": "int",
    "int32": "int",
    "uint": "uint",
    "uint32": "uint",
    "long": "long",
    "int64": "long",
    "ulong": "ulong",
    "uint64": "ulong",
    "float": "float",
    "float32": "float",
    "double": "double",
    "float64": "double",
}

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
  | (?P<id>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}\[\]():;,=])
)""",
    re.VERBOSE,
)


class SchemaParseError(ValueError):
    """Raised for IDL the parser does not understand (better loud than silently wrong)."""


@dataclass
class Field:
    name: str
    type: str  # canonical descriptor: scalar, enum name, table name, "string", "[T]"
    default: object
    attrs: dict[str, object]


@dataclass
class Schema:
    enums: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)
    unions: dict[str, dict[str, int]] = field(default_factory=dict)
    tables: dict[str, list[Field]] = field(default_factory=dict)
    structs: dict[str, list[Field]] = field(default_factory=dict)
    file_identifier: str = ""
    root_type: str = ""


def _tokenize(text: str) -> list[str]:
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    tokens, pos = [], 0
    while True:
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip():
                raise SchemaParseError(f"cannot tokenize near: {text[pos : pos + 40]!r}")
            return tokens
        tokens.append(m.group(m.lastgroup))
        pos = m.end()


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.schema = Schema()

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self) -> str:
        if self.i >= len(self.toks):
            raise SchemaParseError("unexpected end of schema")
        self.i += 1
        return self.toks[self.i - 1]

    def expect(self, tok: str) -> None:
        got = self.next()
        if got != tok:
            raise SchemaParseError(f"expected {tok!r}, got {got!r} (token {self.i})")

    def attrs(self) -> dict[str, object]:
        """``( name [: value], ... )`` metadata, if present."""
        out: dict[str, object] = {}
        if self.peek() != "(":
            return out
        self.next()
        while self.peek() != ")":
            name = self.next().strip('"')
            value: object = True
            if self.peek() == ":":
                self.next()
                value = _literal(self.next())
            out[name] = value
            if self.peek() == ",":
                self.next()
        self.next()
        return out

    def parse(self) -> Schema:
        while (tok := self.peek()) is not None:
            self.next()
            if tok in ("namespace", "include", "attribute", "file_extension"):
                while self.next() != ";":
                    pass
            elif tok == "file_identifier":
                self.schema.file_identifier = json.loads(self.next())
                self.expect(";")
            elif tok == "root_type":
                self.schema.root_type = self.next()
                self.expect(";")
            elif tok == "enum":
                self.enum()
            elif tok == "union":
                self.union()
            elif tok in ("table", "struct"):
                self.table(tok)
            else:
                raise SchemaParseError(f"unexpected top-level token {tok!r}")
        return self.schema

    def enum(self) -> None:
        name = self.next()
        self.expect(":")
        base = SCALARS[self.next()]
        self.attrs()
        self.expect("{")
        self.schema.enums[name] = (base, self.members({}, 0))

    def union(self) -> None:
        name = self.next()
        self.attrs()
        self.expect("{")
        self.schema.unions[name] = self.members({"NONE": 0}, 1)

    def members(self, members: dict[str, int], value: int) -> dict[str, int]:
        """Enum/union members up to the closing brace; values count up unless given."""
        while self.peek() != "}":
            member = self.next()
            if self.peek() == ":":  # aliased union member "Alias: Type"
                self.next()
                self.next()
            if self.peek() == "=":
                self.next()
                value = int(self.next(), 0)
            self.attrs()
            members[member] = value
            value += 1
            if self.peek() == ",":
                self.next()
        self.next()
        return members

    def table(self, kind: str) -> None:
        name = self.next()
        self.attrs()
        self.expect("{")
        fields: list[Field] = []
        while self.peek() != "}":
            fname = self.next()
            self.expect(":")
            if self.peek() == "[":
                self.next()
                elem = self.next()
                self.expect("]")
                ftype = f"[{SCALARS.get(elem, elem)}]"
            else:
                t = self.next()
                ftype = SCALARS.get(t, t)
            default: object = None
            if self.peek() == "=":
                self.next()
                default = _literal(self.next())
            fattrs = self.attrs()
            self.expect(";")
            fields.append(Field(fname, ftype, default, fattrs))
        self.next()
        (self.schema.structs if kind == "struct" else self.schema.tables)[name] = fields


def _literal(tok: str) -> object:
    if tok.startswith('"'):
        return json.loads(tok)
    if tok in ("true", "false"):
        return tok == "true"
    try:
        return int(tok, 0)
    except ValueError:
        pass
    try:
        return float(tok)
    except ValueError:
        return tok  # enum member name, resolved later


def parse_schema(text: str) -> Schema:
    return _Parser(text).parse()


def _resolve_default(schema: Schema, ftype: str, default: object) -> object:
    """Schema default as a Python value (enum defaults become their integer value)."""
    if ftype in schema.enums:
        base, members = schema.enums[ftype]
        if default is None:
            return 0
        return members[default] if isinstance(default, str) else int(default)
    if ftype in SCALARS.values():
        if ftype == "bool":
            return bool(default) if default is not None else False
        if ftype in ("float", "double"):
            return float(default) if default is not None else 0.0
        return int(default) if default is not None else 0
    return None


def table_layout(schema: Schema, fields: list[Field]) -> tuple[dict, dict]:
    """Field name -> (id, type, default) for live fields, plus force_align per field."""
    layout: dict[str, tuple[int, str, object]] = {}
    aligns: dict[str, int] = {}
    next_id = 0
    explicit = any("id" in f.attrs for f in fields)
    for f in fields:
        is_union = f.type in schema.unions
        fid = int(f.attrs["id"]) if explicit else next_id + (1 if is_union else 0)
        next_id = fid + 1
        if f.attrs.get("deprecated"):
            continue
        if is_union:
            layout[f"{f.name}_type"] = (fid - 1, f"utype:{f.type}", 0)
            layout[f.name] = (fid, f"union:{f.type}", None)
        else:
            layout[f.name] = (fid, f.type, _resolve_default(schema, f.type, f.default))
        if "force_align" in f.attrs:
            aligns[f.name] = int(f.attrs["force_align"])
    return dict(sorted(layout.items(), key=lambda kv: kv[1][0])), aligns


def _q(s: str) -> str:
    return json.dumps(s)


def _v(x: object) -> str:
    return _q(x) if isinstance(x, str) else repr(x)


def render(schema: Schema, sha256: str, commit: str = pin.PINNED_COMMIT) -> str:
    """The text of schema_generated.py (stable under ``ruff format``)."""
    out = [
        '"""TFLite schema as data. GENERATED by onnx2tflite_direct.schema_gen; do not edit.',
        "",
        f"Source: {pin.PINNED_REPO} {pin.PINNED_PATH} @ {commit}",
        "",
        "TABLES maps table -> field -> (field id, type descriptor, default). Type descriptors:",
        "scalar names (bool byte ubyte short ushort int uint long ulong float double), enum names",
        '(see ENUMS / ENUM_TYPES), table names, "string", "[T]" vectors, and for a union field',
        '"utype:U" (its <name>_type slot) and "union:U". Deprecated fields are omitted.',
        '"""',
        "",
        f"SCHEMA_COMMIT = {_q(commit)}",
        f"SCHEMA_SHA256 = {_q(sha256)}",
        f"FILE_IDENTIFIER = {_q(schema.file_identifier)}",
        f"ROOT_TYPE = {_q(schema.root_type)}",
        "",
        "ENUM_TYPES = {",
    ]
    out += [f"    {_q(n)}: {_q(b)}," for n, (b, _) in schema.enums.items()]
    out += ["}", "", "ENUMS = {"]
    for name, (_, members) in schema.enums.items():
        out.append(f"    {_q(name)}: {{")
        out += [f"        {_q(m)}: {v}," for m, v in members.items()]
        out.append("    },")
    out += ["}", "", "UNIONS = {"]
    for name, members in schema.unions.items():
        out.append(f"    {_q(name)}: {{")
        out += [f"        {_q(m)}: {v}," for m, v in members.items()]
        out.append("    },")
    out += ["}", "", "TABLES = {"]
    all_aligns: dict[str, int] = {}
    for name, fields in schema.tables.items():
        layout, aligns = table_layout(schema, fields)
        all_aligns.update({f"{name}.{k}": v for k, v in aligns.items()})
        if not layout:
            out.append(f"    {_q(name)}: {{}},")
            continue
        out.append(f"    {_q(name)}: {{")
        out += [f"        {_q(f)}: ({fid}, {_q(t)}, {_v(d)})," for f, (fid, t, d) in layout.items()]
        out.append("    },")
    out += ["}", ""]
    if schema.structs:
        out.append("STRUCTS = {")
        for name, fields in schema.structs.items():
            out.append(f"    {_q(name)}: [")
            out += [f"        ({_q(f.name)}, {_q(f.type)})," for f in fields]
            out.append("    ],")
        out.append("}")
    else:
        out.append("STRUCTS = {}")
    out += ["", "FORCE_ALIGN = {"]
    out += [f"    {_q(k)}: {v}," for k, v in all_aligns.items()]
    out += ["}", ""]
    return "\n".join(out)


def generate(schema_path: Path) -> str:
    data = Path(schema_path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha != pin.PINNED_SHA256:
        raise SchemaParseError(
            f"{schema_path}: sha256 {sha} does not match the pinned {pin.PINNED_SHA256}; "
            "update schema_gen/pin.py deliberately if the schema revision changed"
        )
    return render(parse_schema(data.decode("utf-8")), sha)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m onnx2tflite_direct.schema_gen")
    ap.add_argument("--schema", required=True, type=Path, help="path to the pinned schema.fbs")
    ap.add_argument("--out", type=Path, default=OUTPUT_PATH)
    ap.add_argument("--check", action="store_true", help="fail if --out is not up to date")
    args = ap.parse_args(argv)
    try:
        text = generate(args.schema)
    except (OSError, SchemaParseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date; regenerate it", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0
