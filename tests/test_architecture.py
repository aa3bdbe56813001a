"""The package's import graph keeps the shape docs/architecture.md declares.

Read with ``ast`` over every module (imports inside functions included, ``TYPE_CHECKING``
blocks excluded): every module has a layer, imports never go to a later layer, there is no
import circle, the package never imports itself inside a function (only optional third-party
dependencies are imported lazily), no module grows past 800 lines, and every lowering emits
through the one ``lowering/emit.Emitter``.

Knots that other work items are still untying are listed below, each edge or module by name
with the item that removes it; nothing else is excused.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = "onnx2tflite_direct"
PKG_DIR = ROOT / PKG
DOC = ROOT / "docs" / "architecture.md"
MAX_LINES = 800

# Exempt for good: generated schema bindings and pure data tables.
SIZE_EXEMPT = {
    "schema_gen.schema_generated": "generated FlatBuffer bindings",
    "versioning": "LiteRT's op-version rules as a data table",
}
# Third-party modules that may be imported inside a function: optional or slow to import,
# needed only by some runs.
LAZY_OK = ("onnxruntime", "ai_edge_litert", "onnx.reference")

# ---- Knots still to untie; each entry names the work item that unties it. All are untied
# now: keep these empty, or name the item with any entry added while a module is reshaped. ----

# (importer, imported) edges excused from the layer order and from the circle check (fnmatch
# patterns, so a module being split keeps its entry).
KNOT_EDGES: dict[tuple[str, str], str] = {}
# (importer, imported) package imports inside functions.
FUNCTION_LEVEL_KNOTS: dict[tuple[str, str], str] = {}
# (importer, third-party module) imported inside a function without being optional.
LAZY_KNOTS: dict[tuple[str, str], str] = {}
SIZE_KNOTS: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    importer: str  # module path inside the package ("" = the package root)
    imported: str  # a package module, or a third-party module name
    line: int
    internal: bool
    in_function: bool


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG_DIR.rglob("*.py")):
        parts = list(path.relative_to(PKG_DIR).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _target(base: str, name: str) -> str:
    """The module ``from base import name`` loads: ``base.name`` when that is a module."""
    sub = f"{base}.{name}" if base else name
    return sub if sub in MODULES else base


def _type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imports_of(module: str) -> list[Import]:
    tree = ast.parse(MODULES[module].read_text())
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    name = alias.name
                    if name == PKG or name.startswith(PKG + "."):
                        found.append(
                            Import(
                                module,
                                _target(name[len(PKG) + 1 :], ""),
                                child.lineno,
                                True,
                                in_function,
                            )
                        )
                    else:
                        found.append(Import(module, name, child.lineno, False, in_function))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    parts = module.split(".") if module else []
                    if not _is_package(module):
                        parts = parts[:-1]
                    parts = parts[: len(parts) - (child.level - 1)]
                    base = ".".join(parts + ([child.module] if child.module else []))
                elif child.module == PKG or (child.module or "").startswith(PKG + "."):
                    base = child.module[len(PKG) + 1 :]
                else:
                    found.append(
                        Import(module, child.module or "", child.lineno, False, in_function)
                    )
                    continue
                for alias in child.names:
                    found.append(
                        Import(module, _target(base, alias.name), child.lineno, True, in_function)
                    )
            else:
                visit(child, in_function)

    visit(tree, False)
    return found


IMPORTS = [imp for module in MODULES for imp in _imports_of(module)]
EDGES = {(i.importer, i.imported) for i in IMPORTS if i.internal and i.importer != i.imported}


def _excused(importer: str, imported: str, knots: dict) -> bool:
    return any(
        fnmatch.fnmatchcase(importer, a) and fnmatch.fnmatchcase(imported, b) for a, b in knots
    )


def _layers() -> list[tuple[str, list[str]]]:
    text = DOC.read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```layers block"
    layers = []
    for line in block.group(1).splitlines():
        if line.strip():
            name, *patterns = line.split()
            layers.append((name, patterns))
    return layers


LAYERS = _layers()


def _layer_of(module: str) -> int | None:
    name = module or PKG
    hits = [
        rank
        for rank, (_, patterns) in enumerate(LAYERS)
        if any(fnmatch.fnmatchcase(name, p) for p in patterns)
    ]
    return hits[0] if hits else None


def _label(module: str) -> str:
    return module or PKG


def test_every_module_has_one_layer():
    missing = [_label(m) for m in MODULES if _layer_of(m) is None]
    assert not missing, f"add these modules to the layers block of docs/architecture.md: {missing}"
    twice = []
    for module in MODULES:
        ranks = [
            rank
            for rank, (_, patterns) in enumerate(LAYERS)
            if any(fnmatch.fnmatchcase(_label(module), p) for p in patterns)
        ]
        if len(ranks) > 1:
            twice.append(_label(module))
    assert not twice, f"modules listed in more than one layer: {twice}"


def test_imports_never_go_to_a_later_layer():
    upward = sorted(
        f"{_label(a)} ({LAYERS[_layer_of(a)][0]}) imports {_label(b)} ({LAYERS[_layer_of(b)][0]})"
        for a, b in EDGES
        if not _excused(a, b, KNOT_EDGES)
        and None not in (_layer_of(a), _layer_of(b))  # reported by the test above
        and _layer_of(b) > _layer_of(a)
    )
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(_label(m) for m in comp))

    for v in graph:
        if v not in index:
            strongconnect(v)
    return out


def test_no_import_circles():
    circles = _cycles({e for e in EDGES if not _excused(*e, KNOT_EDGES)})
    assert not circles, f"import circles: {circles}"


def test_cycle_finder_finds_a_circle():
    assert _cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]


def test_package_never_imported_inside_a_function():
    lazy = sorted(
        f"{_label(i.importer)}:{i.line} imports {_label(i.imported)}"
        for i in IMPORTS
        if i.internal
        and i.in_function
        and not _excused(i.importer, i.imported, FUNCTION_LEVEL_KNOTS)
    )
    assert not lazy, "package imports inside functions (hoist them):\n" + "\n".join(lazy)


def test_only_optional_dependencies_imported_lazily():
    lazy = sorted(
        f"{_label(i.importer)}:{i.line} imports {i.imported}"
        for i in IMPORTS
        if not i.internal
        and i.in_function
        and not any(i.imported == m or i.imported.startswith(m + ".") for m in LAZY_OK)
        and (i.importer, i.imported.split(".")[0]) not in LAZY_KNOTS
    )
    assert not lazy, "imports inside functions that are not optional:\n" + "\n".join(lazy)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    if module in SIZE_EXEMPT or _excused(module, "", {(m, ""): o for m, o in SIZE_KNOTS.items()}):
        return
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{_label(module)} has {lines} lines (> {MAX_LINES}): split it"


# ---- One emitter style: lowerings emit through lowering/emit.Emitter only -------------------
EMITTER = "lowering.emit"
# Lowering code that emits below any node: loop and branch bodies built op by op in a body's own
# Driver (their ops belong to no ONNX node and their tensors carry the body's names).
DRIVER_LEVEL_EMIT = {"lowering.control_flow": "WHILE/IF bodies built in the body's own Driver"}
# The emit helpers the Emitter replaced; importing them again would bring a second style back.
REMOVED_EMIT_HELPERS = {"compose", "Emit", "emit_pad", "emit_crop"}


def _emit_style_breaks(source: str, driver_level: bool = False) -> list[str]:
    """Where ``source`` (a lowering module) emits around the Emitter: ``ctx.emit``,
    ``ctx.driver.reshape``, a removed helper, or (outside driver-level code) any ``.emit``
    or a hand-made ``tfl.Operator``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            names = {a.name for a in node.names} | {node.module or ""}
            out += [f"{node.lineno}: imports {n}" for n in sorted(names & REMOVED_EMIT_HELPERS)]
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver, attr = ast.unparse(node.func.value), node.func.attr
        if attr == "emit" and (receiver.endswith("ctx") or not driver_level):
            out.append(f"{node.lineno}: {receiver}.emit")
        elif attr == "reshape" and receiver.endswith("ctx.driver"):
            out.append(f"{node.lineno}: {receiver}.reshape (use e.reshape(x, out=...))")
        elif attr == "Operator" and receiver == "tfl" and not driver_level:
            out.append(f"{node.lineno}: tfl.Operator")
    return out


def test_lowerings_emit_through_the_emitter_only():
    breaks = [
        f"{_label(module)}:{where}"
        for module, path in MODULES.items()
        if module.startswith("lowering.") and module != EMITTER
        for where in _emit_style_breaks(path.read_text(), module in DRIVER_LEVEL_EMIT)
    ]
    assert not breaks, "emit through lowering/emit.Emitter (e.op, e.reshape ...):\n" + "\n".join(
        breaks
    )


def test_emit_style_check_finds_each_break():
    source = (
        "from . import compose as C\nfrom .elementwise import Emit\n"
        "def f(ctx, e):\n    ctx.emit('ADD', [], [])\n    e.ctx.emit('ADD', [], [])\n"
        "    ctx.driver.reshape(a, b)\n    d.emit('ADD', [], [])\n    tfl.Operator('ADD', [], [])\n"
    )
    assert len(_emit_style_breaks(source)) == 7
    assert len(_emit_style_breaks(source, driver_level=True)) == 5
