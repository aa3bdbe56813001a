"""A self-contained HTML page for a per-tensor accuracy bisection (``diagnostics``).

Why a page: the error curve along the network is the fastest way to see *where* a conversion
goes wrong (a jump at one node vs. a slow float drift). The page has inline CSS and an inline SVG
chart (log-scale max abs error per measured node, in topological order, first divergent node
highlighted), then a table of the measured nodes. No scripts, fonts or other external
resources, so it can be attached to a bug report and opened offline. All names from the model
are HTML-escaped.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

CHART_W, CHART_H = 960, 300
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 60, 20, 20, 40
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
.tol { stroke: #c0181a; stroke-dasharray: 4 3; stroke-width: 1; }
.label { font-size: 11px; fill: #555; } .first-label { font-size: 12px; fill: #c0181a; }
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


def _worst(node: dict) -> dict:
    """The node output with the largest max_abs (nodes with several outputs get one row)."""
    return max(node["outputs"], key=lambda o: (not o["ok"], _num(o["max_abs"])))


def _chart(nodes: list[dict], first: str | None, atol: float) -> str:
    """Inline SVG: one bar per measured node, height = log10(max_abs)."""
    values = [max(_num(_worst(n)["max_abs"]), FLOOR) for n in nodes]
    finite = [v for v in values if math.isfinite(v)]
    lo = math.floor(math.log10(min(finite + [atol, 1e-8])))
    hi = math.ceil(math.log10(max(finite + [atol * 10, 1.0])))
    plot_w = CHART_W - MARGIN_L - MARGIN_R
    plot_h = CHART_H - MARGIN_T - MARGIN_B

    def y_of(v: float) -> float:
        exp = hi if not math.isfinite(v) else min(max(math.log10(v), lo), hi)
        return MARGIN_T + plot_h * (hi - exp) / (hi - lo)

    parts = [
        f'<svg role="img" aria-label="max abs error per node" width="{CHART_W}" '
        f'height="{CHART_H}" viewBox="0 0 {CHART_W} {CHART_H}">'
    ]
    for exp in range(lo, hi + 1):
        y = y_of(10.0**exp)
        parts.append(
            f'<line class="grid" x1="{MARGIN_L}" x2="{CHART_W - MARGIN_R}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="label" x="{MARGIN_L - 6}" y="{y + 4:.1f}" text-anchor="end">1e{exp}</text>'
        )
    base = MARGIN_T + plot_h
    parts.append(
        f'<line class="axis" x1="{MARGIN_L}" x2="{MARGIN_L}" y1="{MARGIN_T}" y2="{base}"/>'
    )
    parts.append(
        f'<line class="axis" x1="{MARGIN_L}" x2="{CHART_W - MARGIN_R}" y1="{base}" y2="{base}"/>'
    )
    step = plot_w / max(len(nodes), 1)
    bar_w = max(step * 0.8, 1.0)
    for i, (node, value) in enumerate(zip(nodes, values, strict=True)):
        x = MARGIN_L + i * step + (step - bar_w) / 2
        y = y_of(value)
        cls = (
            "bar first"
            if node["name"] == first
            else "bar divergent"
            if node["divergent"]
            else "bar"
        )
        tip = f"#{node['index']} {node['name']} ({node['op_type']}): max_abs {_fmt(_worst(node)['max_abs'])}"
        parts.append(
            f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
            f'height="{max(base - y, 0.5):.1f}"><title>{escape(tip)}</title></rect>'
        )
        if node["name"] == first:
            parts.append(
                f'<text class="first-label" x="{x:.1f}" y="{max(y - 4, 12):.1f}">'
                f"first divergent: {escape(node['name'])}</text>"
            )
    tol_y = y_of(atol)
    parts.append(
        f'<line class="tol" x1="{MARGIN_L}" x2="{CHART_W - MARGIN_R}" y1="{tol_y:.1f}" y2="{tol_y:.1f}"/>'
    )
    parts.append(
        f'<text class="label" x="{CHART_W - MARGIN_R - 4}" y="{tol_y - 4:.1f}" text-anchor="end">atol {atol:g}</text>'
    )
    parts.append(
        f'<text class="label" x="{MARGIN_L + plot_w / 2:.1f}" y="{CHART_H - 10}" '
        'text-anchor="middle">ONNX nodes in topological order (measured only)</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _table(nodes: list[dict], first: str | None) -> str:
    head = [
        "#",
        "node",
        "op",
        "output",
        "TFLite tensor",
        "max_abs",
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
        out = _worst(node)
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
            *(
                f'<td class="num">{_fmt(out.get(k))}</td>'
                for k in ("max_abs", "max_rel", "cosine", "sqnr_db", "quant_steps")
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
    chart = (
        _chart(nodes, first, float(diag.get("atol", 1e-4))) if nodes else "<p>no measured nodes</p>"
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(title)}</title>",
            f"<style>{CSS}</style>",
            "</head><body>",
            f"<h1>{escape(title)}</h1>",
            _summary(diag),
            "<h2>Max abs error per node (log scale)</h2>",
            chart,
            f"<h2>Measured nodes ({len(nodes)})</h2>",
            _table(nodes, first),
            "</body></html>",
            "",
        ]
    )
