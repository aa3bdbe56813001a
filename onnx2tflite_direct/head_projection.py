"""Attention head splits of constant projections, regrouped so heads cost fewer TRANSPOSE ops.

Why: exporters write each multi-head projection as ``MatMul(x, W) [+ b] -> Reshape [B, S, H, d]
-> Transpose(0, 2, 1, 3)`` (Q, V) or ``Transpose(0, 2, 3, 1)`` (K^T). Lowered literally that is
a FULLY_CONNECTED and a TRANSPOSE per projection, plus the context merge: 4 TRANSPOSE per
attention layer. Two ONNX rules regroup the same arithmetic:

* ``fused_head_projection`` (on by default; ``--disable-rewrite fused_head_projection`` keeps
  the exporter's form): the projections of one activation that each split heads with one head
  size d become one MatMul by the concatenated weights [K, N_q + N_k + N_v] (+ the
  concatenated biases), one Reshape to [B, S, H_q + H_k + H_v, d], one Transpose to head-major
  [B, H, S, d] and one Split along the heads. K^T is ``Transpose(0, 1, 3, 2)`` of its part,
  which the layout engine folds into the score BATCH_MATMUL's ``adj_y`` (lowering/matmul.py);
  the Split takes its input in ONNX order (matmul.split_heads_policy), so the head split is one
  TRANSPOSE per layer and the merge another: 2 per layer. Each output element is the same dot
  product over K (one FULLY_CONNECTED instead of three); the Split is a copy.
* ``head_major_projection`` (opt-in: ``onnx_rewrites.opt_in``): each projection becomes
  ``MatMul(Unsqueeze(x, 1) [B, 1, S, K], W_h [1, H, K, d])`` (+ ``b_h [1, H, 1, d]``), a
  BATCH_MATMUL with constant per-head weights broadcast over the heads that writes [B, H, S, d]
  directly: 1 TRANSPOSE per layer (the merge). Per head it is a GEMM of d columns, and the bias
  is a separate ADD.

Measured side by side at 1 thread on XNNPACK (benchmarks/bench_attention_forms.py,
results/attention_forms.json; thread CPU time, two interpreters per form): the fused form is
0.96-0.99x the 4-TRANSPOSE form on the corpus's BERT/DistilBERT/RoBERTa/ViT exports and
0.99-1.01x on MiniLM-L6, within the +-1.5% the same procedure shows between identical files;
the per-head form is 1.04-1.14x on the corpus (narrow GEMMs, the separate bias ADD), so it
stays opt-in.

Constraints (checked, otherwise a chain is left alone): a default-domain float32 MatMul of a
rank-3 activation by a constant 2-D weight [K, N], or onnxruntime's optimized form of it,
Reshape [B*S, K] -> Gemm (constant W, C; alpha = beta = 1, no transA); an optional Add of a
float32 constant with N elements broadcast along the last axis; a Reshape whose output is
[B, S, H, d] with H * d = N (only the last axis split, H > 1); a Transpose with perm (0, 2, 1,
3) or (0, 2, 3, 1); every intermediate read only by the next node of the chain and none a graph
output. The fused rule needs at least two such chains on one activation with equal d.
"""

from __future__ import annotations

import numpy as np

from .ir import Graph, Node, Value, fresh_value_name

_SPLIT_PERMS = ((0, 2, 1, 3), (0, 2, 3, 1))


def _const_value(graph: Graph, base: str, data: np.ndarray) -> str:
    name = fresh_value_name(graph, base)
    graph.values[name] = Value(name, data.dtype, tuple(data.shape), data)
    return name


def _temp(graph: Graph, base: str, dtype, shape) -> str:
    name = fresh_value_name(graph, base)
    graph.values[name] = Value(name, dtype, tuple(shape))
    return name


def _only_reader(consumers, graph: Graph, name: str) -> Node | None:
    users = consumers.get(name, [])
    if len(users) != 1 or name in graph.outputs:
        return None
    return users[0][0]


def _keeps_rows(vals, reshape: Node, in_shape, out_shape) -> bool:
    """Does the Reshape give [B, S] of the projected activation ``in_shape`` (and only split
    the last axis)? Known when the dims are static and equal, or when its constant shape
    copies them (0, with allowzero off) from a [B, S, N] input."""
    if all(isinstance(d, int) for d in (*in_shape[:2], *out_shape[:2])):
        return tuple(in_shape[:2]) == tuple(out_shape[:2])
    shape = vals[reshape.inputs[1]].const if len(reshape.inputs) > 1 else None
    return (
        vals[reshape.inputs[0]].rank == 3
        and shape is not None
        and shape.size == 4
        and not reshape.attrs.get("allowzero", 0)
        and [int(v) for v in shape.reshape(-1)[:2]] == [0, 0]
    )


def _gemm_rows(graph: Graph, consumers, producers, gemm: Node):
    """onnxruntime's optimized form of a projection, ``Reshape(x [B, S, K] -> [B*S, K]) ->
    Gemm(W, C)``: (x, weight [K, N], bias [N] | None) or None. The flattening Reshape may be
    shared by the Q/K/V Gemms; it stays (dead once they are regrouped, removed after
    lowering)."""
    vals = graph.values
    a = vals[gemm.inputs[0]]
    w = vals[gemm.inputs[1]].const
    if gemm.attrs.get("transA", 0) or w is None or w.ndim != 2 or w.dtype != np.float32:
        return None
    if gemm.attrs.get("alpha", 1.0) != 1.0 or a.rank != 2:
        return None
    w = w.T if gemm.attrs.get("transB", 0) else w
    bias = None
    if len(gemm.inputs) > 2 and gemm.inputs[2]:
        c = vals[gemm.inputs[2]].const
        if c is None or c.dtype != np.float32 or c.size != w.shape[1] or c.shape[-1] != w.shape[1]:
            return None
        if gemm.attrs.get("beta", 1.0) != 1.0:
            return None
        bias = c.reshape(-1)
    flat = producers.get(gemm.inputs[0])
    if flat is None or flat.op_type != "Reshape" or flat.domain != "":
        return None
    x = vals[flat.inputs[0]]
    if x.rank != 3 or not all(isinstance(d, int) for d in (*x.shape, *a.shape)):
        return None
    if a.shape != (x.shape[0] * x.shape[1], x.shape[2]):
        return None
    return flat.inputs[0], w, bias


def _match(graph: Graph, consumers, producers, matmul: Node):
    """(x, weight [K, N], bias [N] | None, heads, d, perm, nodes) or None."""
    vals = graph.values
    if matmul.op_type == "Gemm" and matmul.domain == "":
        rows = _gemm_rows(graph, consumers, producers, matmul)
        if rows is None:
            return None
        x_name, weight, bias = rows
        nodes = [matmul]
    elif matmul.op_type == "MatMul" and matmul.domain == "" and len(matmul.inputs) == 2:
        x_name, weight, bias = matmul.inputs[0], vals[matmul.inputs[1]].const, None
        nodes = [matmul]
    else:
        return None
    x = vals[x_name]
    if weight is None or weight.ndim != 2 or weight.dtype != np.float32:
        return None
    if x.is_constant or x.rank != 3 or x.dtype != np.float32:
        return None
    n_out = weight.shape[1]
    cur = matmul.outputs[0]
    nxt = _only_reader(consumers, graph, cur)
    if nxt is not None and nxt.op_type == "Add" and nxt.domain == "" and bias is None:
        other = [i for i in nxt.inputs if i != cur]
        if len(other) != 1 or vals[other[0]].const is None:
            return None
        c = vals[other[0]].const
        if c.size != n_out or c.shape[-1:] != (n_out,) or c.ndim > 3:
            return None
        if c.dtype != np.float32 or vals[nxt.outputs[0]].shape != vals[cur].shape:
            return None
        bias = c.reshape(n_out)
        nodes.append(nxt)
        cur = nxt.outputs[0]
        nxt = _only_reader(consumers, graph, cur)
    if nxt is None or nxt.op_type != "Reshape" or nxt.domain != "":
        return None
    reshape = nxt
    in_shape, out_shape = vals[cur].shape, vals[reshape.outputs[0]].shape
    if in_shape is None or out_shape is None or len(out_shape) != 4:
        return None
    heads, depth = out_shape[2], out_shape[3]
    if not (isinstance(heads, int) and isinstance(depth, int) and heads * depth == n_out):
        return None
    if heads == 1 or not _keeps_rows(vals, reshape, x.shape, out_shape):
        return None
    nodes.append(reshape)
    transpose = _only_reader(consumers, graph, reshape.outputs[0])
    if transpose is None or transpose.op_type != "Transpose" or transpose.domain != "":
        return None
    perm = tuple(transpose.attrs.get("perm", ()))
    if perm not in _SPLIT_PERMS:
        return None
    nodes.append(transpose)
    return x_name, weight, bias, heads, depth, perm, nodes


def head_major_projection(graph: Graph) -> list[str]:
    """Each matched projection chain becomes Unsqueeze -> MatMul(W_h) [-> Add(b_h)]
    [-> Transpose(0, 1, 3, 2) for K^T]; see the module docstring."""
    consumers, producers = graph.consumers(), graph.producers()
    replaced: dict[int, list[Node]] = {}
    changed: list[str] = []
    for node in graph.nodes:
        m = _match(graph, consumers, producers, node)
        if m is None or any(id(n) in replaced for n in m[-1]):
            continue
        x, w, bias, heads, depth, perm, nodes = m
        k_in = w.shape[0]
        label = node.label
        vals = graph.values
        xv = vals[x]
        b, s = xv.shape[0], xv.shape[1]
        w_h = np.ascontiguousarray(w.reshape(k_in, heads, depth).transpose(1, 0, 2))[None]
        x4 = _temp(graph, f"{label}/rows", xv.dtype, (b, 1, s, k_in))
        opset = node.opset
        if opset >= 13:
            axes = _const_value(graph, f"{label}/head_axes", np.array([1], np.int64))
            new = [Node(f"{label}/rows", "Unsqueeze", "", [x, axes], [x4], {}, opset)]
        else:
            new = [Node(f"{label}/rows", "Unsqueeze", "", [x], [x4], {"axes": [1]}, opset)]
        w_name = _const_value(graph, f"{label}/head_weights", w_h)
        final = nodes[-1].outputs[0]
        prod_shape = (b, heads, s, depth)
        turned = perm == (0, 2, 3, 1)
        prod = (
            final
            if bias is None and not turned
            else _temp(graph, f"{label}/heads", xv.dtype, prod_shape)
        )
        new.append(Node(f"{label}/heads", "MatMul", "", [x4, w_name], [prod], {}, opset))
        if bias is not None:
            b_name = _const_value(
                graph, f"{label}/head_bias", np.ascontiguousarray(bias.reshape(1, heads, 1, depth))
            )
            biased = final if not turned else _temp(graph, f"{label}/biased", xv.dtype, prod_shape)
            new.append(Node(f"{label}/bias", "Add", "", [prod, b_name], [biased], {}, opset))
            prod = biased
        if turned:
            new.append(
                Node(
                    f"{label}/keys_t",
                    "Transpose",
                    "",
                    [prod],
                    [final],
                    {"perm": [0, 1, 3, 2]},
                    opset,
                )
            )
        for n in nodes[:-1]:
            replaced[id(n)] = []
        replaced[id(nodes[-1])] = new
        changed.append(label)
    if changed:
        graph.nodes = [new for n in graph.nodes for new in replaced.get(id(n), [n])]
        graph.invalidate()
    return changed


def fused_head_projection(graph: Graph) -> list[str]:
    """The projections of one activation that each split heads (Q, K, V) become one MatMul by
    the concatenated weights, one Transpose to head-major [B, H_q + H_k + H_v, S, d] and one
    Split along the heads; K^T is a ``Transpose(0, 1, 3, 2)`` of its part (adj_y)."""
    consumers, producers = graph.consumers(), graph.producers()
    groups: dict[str, list] = {}
    for node in graph.nodes:
        m = _match(graph, consumers, producers, node)
        if m is not None:
            groups.setdefault(m[0], []).append(m)
    replaced: dict[int, list[Node]] = {}
    changed: list[str] = []
    vals = graph.values
    for x, ms in groups.items():
        depth = ms[0][4]
        if len(ms) < 2 or any(m[4] != depth for m in ms):
            continue
        first = ms[0][-1][0]
        label, opset = first.label, first.opset
        xv = vals[x]
        b, s = xv.shape[0], xv.shape[1]
        heads = [m[3] for m in ms]
        total = sum(heads)
        w_cat = np.ascontiguousarray(np.concatenate([m[1] for m in ms], axis=1))
        k_in, n_tot = w_cat.shape
        new: list[Node] = []
        y = _temp(graph, f"{label}/qkv", xv.dtype, (b, s, n_tot))
        w_name = _const_value(graph, f"{label}/qkv_weights", w_cat)
        new.append(Node(f"{label}/qkv", "MatMul", "", [x, w_name], [y], {}, opset))
        if any(m[2] is not None for m in ms):
            parts = [m[2] if m[2] is not None else np.zeros(m[1].shape[1], np.float32) for m in ms]
            b_name = _const_value(graph, f"{label}/qkv_bias", np.concatenate(parts))
            yb = _temp(graph, f"{label}/qkv_biased", xv.dtype, (b, s, n_tot))
            new.append(Node(f"{label}/qkv_bias", "Add", "", [y, b_name], [yb], {}, opset))
            y = yb
        shape = _const_value(graph, f"{label}/qkv_shape", np.array([0, 0, total, depth], np.int64))
        split_in = _temp(graph, f"{label}/qkv_split", xv.dtype, (b, s, total, depth))
        new.append(Node(f"{label}/qkv_split", "Reshape", "", [y, shape], [split_in], {}, opset))
        major = _temp(graph, f"{label}/qkv_heads", xv.dtype, (b, total, s, depth))
        new.append(
            Node(
                f"{label}/qkv_heads",
                "Transpose",
                "",
                [split_in],
                [major],
                {"perm": [0, 2, 1, 3]},
                opset,
            )
        )
        outs, tails = [], []
        for m in ms:
            final = m[-1][-1].outputs[0]
            if m[5] == (0, 2, 1, 3):
                outs.append(final)
                continue
            part = _temp(graph, f"{final}/heads", xv.dtype, (b, m[3], s, depth))
            outs.append(part)
            tails.append(
                Node(
                    f"{final}/keys_t",
                    "Transpose",
                    "",
                    [part],
                    [final],
                    {"perm": [0, 1, 3, 2]},
                    opset,
                )
            )
        sizes = np.array(heads, np.int64)
        if opset >= 13:
            sizes_name = _const_value(graph, f"{label}/qkv_sizes", sizes)
            new.append(
                Node(
                    f"{label}/qkv_parts", "Split", "", [major, sizes_name], outs, {"axis": 1}, opset
                )
            )
        else:
            new.append(
                Node(
                    f"{label}/qkv_parts",
                    "Split",
                    "",
                    [major],
                    outs,
                    {"axis": 1, "split": list(heads)},
                    opset,
                )
            )
        new.extend(tails)
        for m in ms:
            for n in m[-1]:
                replaced[id(n)] = []
        replaced[id(first)] = new
        changed.extend(m[-1][0].label for m in ms)
    if changed:
        graph.nodes = [new for n in graph.nodes for new in replaced.get(id(n), [n])]
        graph.invalidate()
    return changed


# Opt-in rules of this module, by name (onnx_rewrites.OPT_IN / opt_in): measured, not default.
OPT_IN = {"head_major_projection": head_major_projection}
