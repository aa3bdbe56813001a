"""The bisection HTML page: structure, highlighting, escaping, no external resources.

Structure is checked by parsing the page with ``html.parser``; when Chromium is installed the
page is also rendered headless to a screenshot (skipped otherwise).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from onnx2tflite_direct.html_report import render_html

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
)


def _out(name, max_abs, ok=True, tensor=None):
    return {
        "name": name,
        "ok": ok,
        "max_abs": max_abs,
        "max_rel": max_abs,
        "mean_abs": max_abs,
        "cosine": 1.0 if ok else 0.5,
        "sqnr_db": "inf" if max_abs == 0 else 40.0,
        "max_expected_abs": 1.0,
        "shape_match": True,
        "tflite_tensor": tensor or name,
        "shape": [1, 4],
    }


def _diag():
    """Four measured nodes (one diverging first, one downstream) and one unmeasured node."""
    nodes = [
        {"index": 0, "name": "conv<1>", "op_type": "Conv", "outputs": [_out("c1", 0.0)]},
        {"index": 1, "name": "bn", "op_type": "BatchNormalization", "outputs": []},
        {"index": 2, "name": 'relu "b" & co', "op_type": "Relu", "outputs": [_out("r", 1e-7)]},
        {"index": 3, "name": "bad_node", "op_type": "Tanh", "outputs": [_out("t", 0.7, ok=False)]},
        {"index": 4, "name": "fc", "op_type": "Gemm", "outputs": [_out("y", "inf", ok=False)]},
    ]
    for node in nodes:
        node["measured"] = bool(node["outputs"])
        node["divergent"] = any(not o["ok"] for o in node["outputs"])
    return {
        "atol": 1e-4,
        "seed": 0,
        "nodes": nodes,
        "first_divergent_node": "bad_node",
        "first_divergent_index": 3,
        "suspects": [],
        "chain": ["bad_node", "fc"],
        "outputs_ok": False,
        "mapping": {
            "activation_tensors": 8,
            "mapped": 5,
            "ratio": 0.625,
            "internal": 2,
            "unmapped_count": 1,
        },
        "derived": {"compared": 2, "ok": 1},
        "derived_divergent": [
            {"tensor": "c1/pad<ded>", "onnx_tensor": "x", "relation": "padded", "ok": False}
        ],
        "measured": {"onnx_node_outputs": 5, "compared": 4},
        "notes": ["a <note>"],
        "timing": {"onnxruntime": 0.1, "litert": 0.05, "compare": 0.01, "total": 0.2},
    }


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.text_by_tag: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.stack.append(tag)

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data):
        if self.stack:
            self.text_by_tag.setdefault(self.stack[-1], []).append(data)


def _parse(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    return parser


class _SvgTexts(HTMLParser):
    """(attrs, text) of every SVG <text> element (its <title> tooltip excluded)."""

    def __init__(self):
        super().__init__()
        self.items: list[tuple[dict, str]] = []
        self.depth: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "text":
            self.items.append((dict(attrs), ""))
        self.depth.append(tag)

    def handle_endtag(self, tag):
        while self.depth and self.depth.pop() != tag:
            pass

    def handle_data(self, data):
        if self.depth and self.depth[-1] == "text" and self.items:
            attrs, text = self.items[-1]
            self.items[-1] = (attrs, text + data)


def _svg_texts(page: str) -> list[tuple[dict, str]]:
    parser = _SvgTexts()
    parser.feed(page)
    return parser.items


def _rows(page: str) -> list[tuple[float, float | None]]:
    """Per chart row, in order: (x where its bar ends, x of its tolerance tick or None)."""
    doc = _parse(page)
    bars = [a for t, a in doc.tags if t == "rect" and "bar" in a.get("class", "").split()]
    ticks = {
        int(a["data-row"]): float(a["x1"])
        for t, a in doc.tags
        if t == "line" and "tol" in a.get("class", "").split()
    }
    return [(float(b["x"]) + float(b["width"]), ticks.get(i)) for i, b in enumerate(bars)]


def _node(index, name, max_abs, max_expected, ok, tolerance=None):
    out = _out(f"t{index}", max_abs, ok=ok)
    out["max_expected_abs"] = max_expected
    if tolerance is not None:
        out["tolerance"] = tolerance
    return {
        "index": index,
        "name": name,
        "op_type": "Conv",
        "outputs": [out],
        "measured": True,
        "divergent": not ok,
    }


def test_each_row_is_drawn_against_the_tolerance_it_is_judged_by():
    """Issue 19 item 9: tolerances scale with each tensor's magnitude (atol * max(1,
    max|expected|)); an "ok" row with a large error on large values must not show a bar far
    past the drawn line, and a small divergent row must show its bar past its own tick."""
    atol = 1e-4
    nodes = [
        _node(0, "huge_ok", 1e3, 1e8, True),  # judged against 1e4: ok
        _node(1, "tiny_bad", 1e-3, 0.5, False),  # judged against 1e-4: diverges
        _node(2, "exact", 0.0, 3.0, True),
        _node(3, "recorded", 2e-2, 250.0, True, tolerance=2.5e-2),  # diagnostics' own value
    ]
    diag = {"atol": atol, "nodes": nodes, "first_divergent_node": "tiny_bad", "outputs_ok": False}
    rows = _rows(render_html(diag, "scaled"))
    assert len(rows) == 4 and all(tick is not None for _, tick in rows)
    for node, (bar_end, tick) in zip(nodes, rows, strict=True):
        if node["outputs"][0]["ok"]:
            assert bar_end <= tick + 0.5, node["name"]
        else:
            assert bar_end > tick + 0.5, node["name"]
    # The ticks follow the magnitudes: the large tensor's tolerance is far right of atol's.
    assert rows[0][1] > rows[1][1] + 100


def test_labels_stay_readable_for_hundreds_of_rows():
    """250 measured nodes over 28 decades of error: every node has its own label, one row
    apart, and the error-axis labels do not overlap."""
    nodes = [
        _node(i, f"node_{i}", 10.0 ** (-12 + (i % 29)), 10.0 ** (i % 20), i % 7 != 3)
        for i in range(250)
    ]
    page = render_html({"atol": 1e-4, "nodes": nodes, "first_divergent_node": None}, "big")
    texts = _svg_texts(page)
    node_labels = [(float(a["y"]), t) for a, t in texts if "node-label" in a.get("class", "")]
    assert [t.split()[1] for _, t in node_labels] == [n["name"] for n in nodes]
    ys = [y for y, _ in node_labels]
    assert min(b - a for a, b in zip(ys, ys[1:], strict=False)) >= 12  # 11px font
    axis = [(float(a["x"]), float(a["y"]), t) for a, t in texts if t.startswith("1e")]
    assert len(axis) >= 4
    for y in {y for _, y, _ in axis}:
        xs = sorted(x for x, yy, _ in axis if yy == y)
        assert min(b - a for a, b in zip(xs, xs[1:], strict=False)) >= 40
    long = _node(0, "x" * 200, 1e-3, 1.0, False)
    label = [
        t
        for a, t in _svg_texts(render_html({"nodes": [long]}, "l"))
        if "node-label" in a.get("class", "")
    ]
    assert len(label[0]) < 60  # cut; the tooltip keeps the full name


def test_page_structure():
    page = render_html(_diag(), "model <x>")
    doc = _parse(page)
    tags = [t for t, _ in doc.tags]
    assert tags.count("svg") == 1 and tags.count("table") == 1
    bars = [a for t, a in doc.tags if t == "rect"]
    assert len(bars) == 4  # measured nodes only
    assert sum("first" in a.get("class", "").split() for a in bars) == 1
    body_rows = [a for t, a in doc.tags if t == "tr"][1:]  # minus the header row
    assert len(body_rows) == 4
    first_rows = [a for a in body_rows if a.get("class") == "first-divergent"]
    assert len(first_rows) == 1 and first_rows[0].get("id") == "first-divergent"
    assert sum(a.get("class") == "divergent" for a in body_rows) == 1  # fc, downstream
    labels = _svg_texts(page)
    first_labels = [t for a, t in labels if "first" in a.get("class", "").split()]
    assert len(first_labels) == 1 and "bad_node" in first_labels[0]
    assert [t for _, t in labels].count("inf") == 1  # fc's infinite error, at the right edge


def test_names_are_escaped_and_nothing_is_fetched():
    page = render_html(_diag(), "model <x>")
    assert "<1>" not in page and "conv&lt;1&gt;" in page
    assert "relu &quot;b&quot; &amp; co" in page
    assert "<title>model &lt;x&gt;</title>" in page and "a &lt;note&gt;" in page
    lowered = page.lower()
    for needle in ("http://", "https://", "src=", "href=", "@import", "url("):
        assert needle not in lowered


def test_summary_states_mapping_and_derived_copies():
    page = render_html(_diag(), "m")
    assert "5 / 8 (62.5%), 2 internal to a lowering, 1 unmapped" in page
    assert "1 / 2 within tolerance; off: c1/pad&lt;ded&gt; (padded x)" in page


def test_clean_and_empty_diagnostics_render():
    diag = _diag()
    for node in diag["nodes"]:
        for out in node["outputs"]:
            out.update(ok=True, max_abs=0.0)
        node["divergent"] = False
    diag.update(first_divergent_node=None, chain=[], outputs_ok=True)
    page = render_html(diag, "clean")
    assert "all measured tensors within tolerance" in page and 'id="first-divergent"' not in page
    empty = render_html({"nodes": [], "atol": 1e-4}, "empty")
    assert "no measured nodes" in empty


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_renders_in_headless_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_html(_diag(), "chromium check"), encoding="utf-8")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--screenshot={shot}",
            "--window-size=1400,3000",
            page.as_uri(),
        ],
        check=True,
        timeout=60,
        capture_output=True,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
