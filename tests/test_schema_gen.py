"""schema_generated.py is reproducible from the pinned schema and agrees with LiteRT's bindings.

The cross-check uses ``ai_edge_litert.schema_py_generated`` (flatc output for the same schema
revision): enum/union values by class attributes, field ids and scalar defaults by reading the
``<Table>Add<Field>`` functions' ``Prepend...Slot(id, value, default)`` calls.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from harness import load_script

from onnx2tflite_direct.schema_gen import generator, pin
from onnx2tflite_direct.schema_gen import schema_generated as S

SCHEMA = Path(__file__).resolve().parents[1].parent / "shared" / "litert" / "schema.fbs"
needs_schema = pytest.mark.skipif(not SCHEMA.exists(), reason=f"{SCHEMA} not present")

litert = pytest.importorskip("ai_edge_litert.schema_py_generated")

_SLOT = re.compile(r"builder\.Prepend(\w+)Slot\((\d+),\s*[^,]+,\s*([^)]+)\)")
_START = re.compile(r"StartObject\((\d+)\)")


def _norm(name: str) -> str:
    return name.replace("_", "").lower()


@needs_schema
def test_regeneration_reproduces_committed_module() -> None:
    committed = generator.OUTPUT_PATH.read_text(encoding="utf-8")
    assert generator.generate(SCHEMA) == committed


@needs_schema
def test_check_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert generator.main(["--schema", str(SCHEMA), "--check"]) == 0
    stale = tmp_path / "stale.py"
    stale.write_text("# old\n")
    assert generator.main(["--schema", str(SCHEMA), "--check", "--out", str(stale)]) == 1
    out = tmp_path / "fresh.py"
    assert generator.main(["--schema", str(SCHEMA), "--out", str(out)]) == 0
    assert out.read_text() == generator.OUTPUT_PATH.read_text()


def test_wrong_sha_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "schema.fbs"
    bad.write_text("namespace x;\n")
    with pytest.raises(generator.SchemaParseError, match="sha256"):
        generator.generate(bad)


def test_stamp() -> None:
    assert S.SCHEMA_COMMIT == pin.PINNED_COMMIT
    assert S.SCHEMA_SHA256 == pin.PINNED_SHA256
    assert S.FILE_IDENTIFIER == "TFL3"
    assert S.ROOT_TYPE == "Model"


def test_parser_handles_ids_structs_and_deprecation() -> None:
    text = """
    namespace t;
    enum E : short { A = 2, B, C (deprecated) }
    union U { X, Y (deprecated), Z }
    struct P { a:int; b:float; }
    table X { f:int = 7; g:E = B; h:[ubyte] (force_align: 16); }
    table Y { u:U (id: 3); old:int (id: 0, deprecated); s:string (id: 1); }
    table Z { a:bool = true; u:U; b:double; }
    root_type X;
    """
    s = generator.parse_schema(text)
    assert s.enums["E"] == ("short", {"A": 2, "B": 3, "C": 4})
    assert s.unions["U"] == {"NONE": 0, "X": 1, "Y": 2, "Z": 3}
    assert [f.name for f in s.structs["P"]] == ["a", "b"]
    layout, aligns = generator.table_layout(s, s.tables["X"])
    assert layout == {"f": (0, "int", 7), "g": (1, "E", 3), "h": (2, "[ubyte]", None)}
    assert aligns == {"h": 16}
    layout, _ = generator.table_layout(s, s.tables["Y"])
    assert layout == {
        "s": (1, "string", None),
        "u_type": (2, "utype:U", 0),
        "u": (3, "union:U", None),
    }
    layout, _ = generator.table_layout(s, s.tables["Z"])
    assert layout["u_type"][0] == 1 and layout["u"][0] == 2 and layout["b"] == (3, "double", 0.0)
    assert layout["a"] == (0, "bool", True)


@pytest.mark.parametrize("name", sorted(S.ENUMS))
def test_enum_values_match_litert(name: str) -> None:
    cls = getattr(litert, name)
    theirs = {k: v for k, v in vars(cls).items() if not k.startswith("_")}
    assert S.ENUMS[name] == theirs


@pytest.mark.parametrize("name", sorted(S.UNIONS))
def test_union_ids_match_litert(name: str) -> None:
    cls = getattr(litert, name)
    theirs = {k: v for k, v in vars(cls).items() if not k.startswith("_")}
    assert S.UNIONS[name] == theirs


def test_key_enums_present() -> None:
    for name in ("BuiltinOperator", "TensorType", "ActivationFunctionType", "Padding"):
        assert name in S.ENUMS
    assert S.ENUMS["BuiltinOperator"]["GELU"] == 150
    assert S.UNIONS["BuiltinOptions"]["Conv2DOptions"] == 1
    assert S.FORCE_ALIGN["Buffer.data"] == 16


def _litert_slots(table: str) -> dict[str, tuple[int, str, str]]:
    """normalized field name -> (slot id, Prepend kind, default text) from LiteRT bindings."""
    prefix = f"{table}Add"
    out = {}
    for fname, fn in vars(litert).items():
        if not (fname.startswith(prefix) and callable(fn)):
            continue
        m = _SLOT.search(inspect.getsource(fn))
        assert m, fname
        out[_norm(fname[len(prefix) :])] = (int(m.group(2)), m.group(1), m.group(3).strip())
    return out


@pytest.mark.parametrize("table", sorted(S.TABLES))
def test_table_field_ids_match_litert(table: str) -> None:
    ours = S.TABLES[table]
    theirs = _litert_slots(table)
    mine = {_norm(f): v[0] for f, v in ours.items()}
    assert mine == {k: v[0] for k, v in theirs.items() if k in mine}
    # The 2.3.0 wheel was generated from a slightly newer schema that appends fields
    # (BlockwiseQuantization.block_shape, FullyConnectedOptions.quant_spec); appended ids only.
    extra = [v[0] for k, v in theirs.items() if k not in mine]
    assert all(i > max(mine.values(), default=-1) for i in extra), extra
    for field, (_, ftype, default) in ours.items():
        kind, their_default = theirs[_norm(field)][1:]
        if kind != "UOffsetTRelative" and not ftype.startswith("utype:"):
            assert float(default) == float(their_default), (table, field)
    start = _START.search(inspect.getsource(getattr(litert, f"{table}Start")))
    if ours and not extra:
        assert int(start.group(1)) == max(v[0] for v in ours.values()) + 1


def _fetch_tool():
    return load_script("tools/fetch_schema.py", "fetch_schema")


@needs_schema
def test_fetch_schema_from_local_copy(tmp_path: Path) -> None:
    tool = _fetch_tool()
    out = tmp_path / "build" / "schema.fbs"
    assert tool.main(["--from", str(SCHEMA), "--out", str(out)]) == 0
    assert out.read_bytes() == SCHEMA.read_bytes()
    bad = tmp_path / "bad.fbs"
    bad.write_text("not the schema")
    with pytest.raises(tool.FetchError, match="sha256 mismatch"):
        tool.fetch(bad, tmp_path / "x.fbs")


def test_fetch_schema_without_network_is_a_clean_error(tmp_path: Path) -> None:
    tool = _fetch_tool()
    with pytest.raises(tool.FetchError, match="--from"):
        tool.fetch(None, tmp_path / "x.fbs", timeout=2, url="http://127.0.0.1:9/schema.fbs")
