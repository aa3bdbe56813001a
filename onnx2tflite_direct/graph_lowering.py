"""One lowering loop for every graph: the main graph and each control-flow body.

:func:`lower_graph` applies the ONNX rewrites, plans every node (a spec per node, all
refusals known at once), walks the graph with a :class:`~onnx2tflite_direct.driver.Driver`
and, for the main graph, applies the TFLite rewrites to every subgraph of the file. An If
branch or a Loop/Scan body goes through the very same function (``subgraphs.lower_body``
calls it through the parent driver), so a body's refusals aggregate like the main graph's and
its refused nodes get report rows named by their path (``Loop_0/body/Mystery``).

Why the body reaches this function through the driver and not an import: the control-flow
lowerings that lower bodies are themselves registered lowerings, which this module needs
(``lowering.custom``) and which are imported before any graph is lowered; handing the function
down keeps the import graph free of that circle.

Why the TFLite rewrites run once, at the root: when a body's ``lower_graph`` returns, the
lowering that asked for it is still wiring its subgraph (IF inputs, WHILE loop variables); the
root rewrites every subgraph once the whole file is lowered.
"""

from __future__ import annotations

import dataclasses

from . import errors, onnx_rewrites, report, tfl_rewrites
from .driver import Driver, LoweringOptions
from .errors import UnsupportedError
from .ir import Graph, Node
from .lowering.custom import custom_spec
from .lowering.dynamic import count_signal, data_dependent_values
from .registry import REGISTRY, OpSpec, check_node


def plan(
    graph: Graph, options: LoweringOptions, rec: report.ReportBuilder, path: str = ""
) -> dict[int, OpSpec]:
    """Pick a spec for every node and check its constraints; refuse with all problems known.

    ``path``: where a body lives (``If_0/then_branch``); its nodes' report rows are named
    ``<path>/<node>`` like the rows of its lowered nodes."""
    specs: dict[int, OpSpec] = {}
    problems: list[UnsupportedError] = []
    tainted: set[str] = set()  # outputs of refused nodes: their consumers are not re-judged
    for node in graph.nodes:
        blocker = next((i for i in node.inputs if i in tainted), None) if tainted else None
        if blocker is not None:
            tainted.update(o for o in node.outputs if o)
            rec.blocked(_as_reported(node, path), blocker)
            _mark_subgraph(rec, node, path)
            continue
        spec = REGISTRY.lookup(node.domain, node.op_type, node.opset)
        try:
            if spec is None:
                spec = custom_spec(node, options)
            check_node(spec, node, graph)
            specs[id(node)] = spec
        except UnsupportedError as exc:
            problems.append(exc)
            rec.refused(_as_reported(node, path), exc)
            _mark_subgraph(rec, node, path)
            tainted.update(o for o in node.outputs if o)
    if problems:
        first = problems[0]
        if len(problems) > 1:
            first.message += _more_refused(problems[1:])
        raise first
    return specs


# How many further refused nodes the error names (the report has a row for every one).
NAMED_REFUSALS = 5


def _more_refused(others: list[UnsupportedError]) -> str:
    """`` (and 2 more refused nodes: 'a' (code), 'b' (code))``: one error says what else
    to fix, so a user does not discover the refusals one run at a time."""
    named = ", ".join(
        f"{p.node_name!r} ({p.reason_code})" if p.node_name else p.reason_code
        for p in others[:NAMED_REFUSALS]
    )
    if len(others) > NAMED_REFUSALS:
        named += ", ..."
    noun = "node" if len(others) == 1 else "nodes"
    return f" (and {len(others)} more refused {noun}: {named})"


def _as_reported(node: Node, path: str) -> Node:
    """The node as its report row names it: a body's nodes carry their path."""
    if not path:
        return node
    return dataclasses.replace(node, name=f"{path}/{node.label}")


def _mark_subgraph(rec, node: Node, path: str) -> None:
    if path:
        rec.rows[f"{path}/{node.label}"]["subgraph"] = path


def lower_graph(
    graph: Graph,
    options: LoweringOptions,
    parent: Driver | None = None,
    *,
    rec: report.ReportBuilder | None = None,
    path: str = "",
) -> Driver:
    """Lower ``graph`` into the finished driver that holds its TFLite subgraph.

    The main graph (``parent`` None) reports its rewrites to ``rec``; a body (``parent`` the
    enclosing graph's driver, ``path`` where it lives) reports its refusals to the root's
    report, while its rewrites stay uncounted (their node names are local to the body and
    could collide with the main graph's rows)."""
    if parent is not None:
        rec = parent.report
    else:
        signal = count_signal(graph, options.nms_padded_output)
        if signal is not None:  # lowered again at sample sizes (dynamic_shapes.py)
            raise signal
    fuse, disabled = options.fuse, options.disabled_rewrites
    for name, changed in onnx_rewrites.apply(graph, enabled=fuse, disabled=disabled):
        if parent is None:
            rec.rewrite(name, len(changed), changed)
    specs = plan(graph, options, rec, path)
    if parent is not None:
        _require_static_outputs(graph)
    driver = Driver(graph, specs, options, parent=parent, path=path, report=rec, lower=lower_graph)
    if parent is None:
        driver.data_dependent = data_dependent_values(graph)
    driver.setup_inputs()
    for node in graph.nodes:
        driver.run_node(node, specs[id(node)])
    driver.finish_outputs()
    if parent is None:
        counts: dict[str, int] = {}
        for sub in (driver.sub, *driver.extra_subgraphs):
            for name, count in tfl_rewrites.apply(sub, enabled=fuse, disabled=disabled):
                counts[name] = counts.get(name, 0) + count
        for name, count in counts.items():
            rec.rewrite(name, count, [])
    return driver


def _require_static_outputs(graph: Graph) -> None:
    """A body's outputs cross a TFLite subgraph boundary, whose tensors have fixed shapes."""
    for name in graph.outputs:
        value = graph.values[name]
        if not value.is_constant and not value.is_static:
            raise UnsupportedError(
                errors.DYNAMIC_SHAPE_UNSUPPORTED,
                f"output {name!r} has no static shape ({value.shape})",
            )
