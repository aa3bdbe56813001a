"""A self-contained HTML page for a per-tensor accuracy bisection (``diagnostics``).

Why a page: the error curve along the network is the fastest way to see *where* a conversion
goes wrong (a jump at one node vs. a slow float drift). The page has inline CSS and an inline SVG
chart: one row per measured node in topological order, labelled with its name (readable for
hundreds of nodes), a log-scale bar of its max abs error and a tick at the tolerance *that row*
is judged by (it scales with the tensor's magnitude, so one line for all rows would contradict
the verdicts), the first divergent node highlighted; then a table of the measured nodes. No
scripts, fonts or other external resources, so it can be attached to a bug report and opened
offline. All names from the model are HTML-escaped.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

# The chart: one row per measured node (name on the left, readable for any number of nodes),
# a log-scale bar of its max abs error, and a tick at the tolerance that row is judged by.
CHART_W = 1100
LABEL_W = 320  # node labels
MARGIN_R, MARGIN_T, MARGIN_B = 24, 34, 62  # error axis labelled above and below; legend
ROW_H = 16
LABEL_CHARS = 44  # longer node labels are cut (the full name is in the tooltip)
MIN_TICK_GAP = 56  # px between error-axis labels
FLOOR = 1e-12  # exact matches are drawn at this height on the log axis

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
.verdict { padding: 8px 12px; border-radius: 4px; display: inline-block; }
.verdict.ok { background: #e3f4e1; } .verdict.bad { background: #fbe3e1; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.divergent td { background: #fff1ef; }
tr.first-divergent td { background: #ffd2cc; font-weight: bold; }
svg { border: 1px solid #ddd; background: #fff; }
.bar { fill: #4a7fc1; } .bar.divergent { fill: #e07b6e; } .bar.first { fill: #c0181a; }
.axis { stroke: #888; stroke-width: 1; } .grid { stroke: #eee; stroke-width: 1; }
.tol { stroke: #111; stroke-width: 2; } .tol.exact { stroke: #7a4fb0; }
.label { font-size: 11px; fill: #555; } .node-label { font-size: 11px; fill: #222; }
.node-label.first { fill: #c0181a; font-weight: bold; } .legend { font-size: 12px; fill: #333; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dt { font-weight: bold; }
"""


def _num(value) -> float:
    """Metric values arrive JSON-friendly: floats, None, or "inf"/"nan" strings."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value) -> str:
    v = _num(value)
    if math.isnan(v) and value is None:
        return "-"
    if math.isnan(v) or math.isinf(v):
        return str(v)
    return f"{v:.3g}"


def _tolerance(out: dict, atol: float) -> float:
    """The threshold an output is judged by: recorded by ``diagnostics`` (it scales with the
    tensor's magnitude), else recomputed the same way for floats; NaN when unknown."""
    if "tolerance" in out:
        return _num(out["tolerance"])
    return atol * max(1.0, _num(out.get("max_expected_abs")))


def _worst(node: dict, atol: float = 1e-4) -> dict:
    """The node output furthest beyond (or closest to) its own tolerance: one row per node."""

    def excess(o):
        err, tol = _num(o["max_abs"]), _tolerance(o, atol)
        if math.isnan(err) or math.isinf(err):
            return math.inf
        return err / tol if tol > 0 else (math.inf if err > 0 else 0.0)

    return max(node["outputs"], key=lambda o: (not o["ok"], excess(o), _num(o["max_abs"])))


def _short(text: str) -> str:
    """Long labels keep their start (the node index) and their end (the most specific part
    of a scoped name such as ``/encoder/layer.3/attention/MatMul``)."""
    if len(text) <= LABEL_CHARS:
        return text
    head = 12
    return text[:head] + "…" + text[len(text) - (LABEL_CHARS - head - 1) :]


def _decade_step(decades: int, width: float) -> int:
    """Label every n-th decade so that labels stay MIN_TICK_GAP apart (1, 2, 5, 10, ...)."""
    for step in (1, 2, 5, 10, 20, 50):
        if width * step / max(decades, 1) >= MIN_TICK_GAP:
            return step
    return 100


def _chart(nodes: list[dict], first: str | None, atol: float) -> str:
    """Inline SVG, one row per measured node: a bar of its max abs error (log scale) and a
    tick at the tolerance that row is judged by, so a bar past its tick is a divergence and a
    bar short of it is within tolerance, whatever the tensor's magnitude."""
    worst = [_worst(n, atol) for n in nodes]
    values = [max(_num(o["max_abs"]), FLOOR) for o in worst]
    tols = [_tolerance(o, atol) for o in worst]
    shown = [v for v in values + [t for t in tols if t > 0] if math.isfinite(v)]
    lo = math.floor(math.log10(max(min(shown + [atol]), FLOOR)))
    hi = max(math.ceil(math.log10(max(shown + [atol * 10, 1.0]))), lo + 1)
    plot_x0, plot_x1 = LABEL_W, CHART_W - MARGIN_R
    plot_w = plot_x1 - plot_x0
    height = MARGIN_T + ROW_H * len(nodes) + MARGIN_B
    base = MARGIN_T + ROW_H * len(nodes)

    def x_of(v: float) -> float:
        exp = hi if not math.isfinite(v) else min(max(math.log10(max(v, FLOOR)), lo), hi)
        return plot_x0 + plot_w * (exp - lo) / (hi - lo)

    parts = [
        f'<svg role="img" aria-label="max abs error and tolerance per node" width="{CHART_W}" '
        f'height="{height}" viewBox="0 0 {CHART_W} {height}">'
    ]
    step = _decade_step(hi - lo, plot_w)
    for exp in range(lo, hi + 1):
        x = x_of(10.0**exp)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN_T}" y2="{base}"/>')
        if (exp - lo) % step == 0:
            for y in (MARGIN_T - 6, base + 14):
                parts.append(
                    f'<text class="label" x="{x:.1f}" y="{y}" text-anchor="middle">1e{exp}</text>'
                )
    parts.append(f'<line class="axis" x1="{plot_x0}" x2="{plot_x0}" y1="{MARGIN_T}" y2="{base}"/>')
    for i, (node, out, value, tol) in enumerate(zip(nodes, worst, values, tols, strict=True)):
        y = MARGIN_T + i * ROW_H
        is_first = node["name"] == first
        cls = "bar first" if is_first else "bar divergent" if node["divergent"] else "bar"
        label = f"#{node['index']} {node['name']} ({node['op_type']})"
        tip = (
            f"{label}, output {out['name']}: max_abs {_fmt(out['max_abs'])}, "
            f"tolerance {_fmt(tol)}, {'ok' if out['ok'] else 'DIVERGES'}"
        )
        parts.append(
            f'<text class="node-label{" first" if is_first else ""}" x="{plot_x0 - 6}" '
            f'y="{y + ROW_H - 4}" text-anchor="end">{escape(_short(label))}'
            f"<title>{escape(tip)}</title></text>"
        )
        end = x_of(value)
        parts.append(
            f'<rect class="{cls}" x="{plot_x0}" y="{y + 2}" width="{max(end - plot_x0, 1.0):.1f}" '
            f'height="{ROW_H - 4}"><title>{escape(tip)}</title></rect>'
        )
        raw = _num(out["max_abs"])
        if not math.isfinite(raw):  # drawn to the right edge; say why
            parts.append(
                f'<text class="label" x="{plot_x1 - 4}" y="{y + ROW_H - 4}" '
                f'text-anchor="end">{"NaN" if math.isnan(raw) else "inf"}</text>'
            )
        if not math.isnan(tol):
            tx = x_of(tol)
            exact = " exact" if tol == 0 else ""
            parts.append(
                f'<line class="tol{exact}" data-row="{i}" x1="{tx:.1f}" x2="{tx:.1f}" '
                f'y1="{y + 1}" y2="{y + ROW_H - 1}"/>'
            )
    legend = (
        "bar: max abs error, log scale (exact matches at the left edge)",
        "black tick: the tolerance that row is judged by, atol × max(1, max|expected|); "
        "purple: exact match required",
    )
    for k, line in enumerate(legend):
        parts.append(
            f'<text class="legend" x="{plot_x0}" y="{base + 30 + 15 * k}">{escape(line)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _table(nodes: list[dict], first: str | None, atol: float = 1e-4) -> str:
    head = [
        "#",
        "node",
        "op",
        "output",
        "TFLite tensor",
        "max_abs",
        "tolerance",
        "max_rel",
        "cosine",
        "sqnr_db",
        "quant steps",
        "status",
    ]
    rows = [
        "<table>",
        "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>",
        "<tbody>",
    ]
    for node in nodes:
        out = _worst(node, atol)
        cls = (
            "first-divergent" if node["name"] == first else "divergent" if node["divergent"] else ""
        )
        row_id = ' id="first-divergent"' if node["name"] == first else ""
        cells = [
            f'<td class="num">{node["index"]}</td>',
            f"<td>{escape(node['name'])}</td>",
            f"<td>{escape(node['op_type'])}</td>",
            f"<td>{escape(out['name'])}</td>",
            f"<td>{escape(str(out.get('tflite_tensor', '')))}</td>",
            f'<td class="num">{_fmt(out.get("max_abs"))}</td>',
            f'<td class="num">{_fmt(_tolerance(out, atol))}</td>',
            *(
                f'<td class="num">{_fmt(out.get(k))}</td>'
                for k in ("max_rel", "cosine", "sqnr_db", "quant_steps")
            ),
            f"<td>{'ok' if out['ok'] else 'DIVERGES'}</td>",
        ]
        rows.append(f'<tr class="{cls}"{row_id}>' + "".join(cells) + "</tr>")
    rows += ["</tbody>", "</table>"]
    return "\n".join(rows)


def _derived_text(diag: dict[str, Any]) -> str:
    """ "k / n within tolerance", naming the copies that are off while their ONNX tensor is not."""
    derived = diag.get("derived") or {}
    text = f"{derived.get('ok', 0)} / {derived.get('compared', 0)} within tolerance"
    off = diag.get("derived_divergent") or []
    if off:
        text += "; off: " + ", ".join(
            f"{d['tensor']} ({d['relation']} {d['onnx_tensor']})" for d in off
        )
    return text


def _summary(diag: dict[str, Any]) -> str:
    first = diag.get("first_divergent_node")
    mapping = diag.get("mapping", {})
    measured = diag.get("measured", {})
    timing = diag.get("timing", {})
    ok = first is None and diag.get("outputs_ok", True)
    verdict = (
        "all measured tensors within tolerance"
        if ok
        else f"first divergent node: {first}"
        if first
        else "outputs differ, but no measured node diverges first"
    )
    items = {
        "tolerance": f"atol {diag.get('atol')} (scaled by max(1, max|expected|))",
        "suspects (unmeasured, upstream)": ", ".join(diag.get("suspects") or []) or "-",
        "chain to outputs": " → ".join(diag.get("chain") or []) or "-",
        "TFLite activation tensors mapped": f"{mapping.get('mapped', 0)} / "
        f"{mapping.get('activation_tensors', 0)} ({100 * mapping.get('ratio', 0):.1f}%), "
        f"{mapping.get('internal', 0)} internal to a lowering, "
        f"{mapping.get('unmapped_count', 0)} unmapped",
        "TFLite-only copies compared (pads, transposes)": _derived_text(diag),
        "ONNX node outputs compared": f"{measured.get('compared', 0)} / {measured.get('onnx_node_outputs', 0)}",
        "time": ", ".join(f"{k} {v:.2f}s" for k, v in timing.items()),
    }
    parts = [f'<p class="verdict {"ok" if ok else "bad"}">{escape(verdict)}</p>', "<dl>"]
    for key, value in items.items():
        parts.append(f"<dt>{escape(key)}</dt><dd>{escape(str(value))}</dd>")
    parts.append("</dl>")
    for note in diag.get("notes") or []:
        parts.append(f"<p>note: {escape(note)}</p>")
    return "\n".join(parts)


def render_html(diag: dict[str, Any], title: str) -> str:
    """The page for a :func:`diagnostics.validate_all_tensors` result."""
    nodes = [n for n in diag.get("nodes", []) if n.get("outputs")]
    first = diag.get("first_divergent_node")
    atol = float(diag.get("atol", 1e-4))
    chart = _chart(nodes, first, atol) if nodes else "<p>no measured nodes</p>"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(title)}</title>",
            f"<style>{CSS}</style>",
            "</head><body>",
            f"<h1>{escape(title)}</h1>",
            _summary(diag),
            "<h2>Max abs error and tolerance per node (log scale)</h2>",
            chart,
            f"<h2>Measured nodes ({len(nodes)})</h2>",
            _table(nodes, first, atol),
            "</body></html>",
            "",
        ]
    )
