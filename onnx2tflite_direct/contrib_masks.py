"""onnxruntime's optimized BERTs: the EmbedLayerNormalization mask count as a float attention bias.

Why: onnxruntime's transformer optimizer fuses the embeddings into ``com.microsoft``
EmbedLayerNormalization, whose ``mask_index`` output counts the ones of each row of the
attention mask (an int32 [B]), and every ``com.microsoft`` Attention reads that count as the
key length: key j is masked when j >= count. Lowered literally that is EQUAL, two CASTs, SUM,
a CAST back to int32, LESS, bool RESHAPEs and a SELECT_V2, all outside XNNPACK (integer and
bool tensors), between the embeddings and the first layer: a second delegate partition.

Rule ``mask_index_as_bias`` (of ``onnx_rewrites.RULES``; ``--disable-rewrite
mask_index_as_bias`` keeps the integer form): for Attention nodes without ``past`` or an
``attention_bias`` of their own whose 1-D mask_index is an EmbedLayerNormalization's count,
the mask becomes the Attention's ``attention_bias`` input, computed in float32 from the mask:
``ones = 1 - min(|m - 1|, 1)`` (m the mask as float32: an int32 other than 1 never rounds to
1), ``count = sum(ones)`` (exact below 2**24 keys), ``keep_j = min(relu(count - j), 1)``,
``bias = (1 - keep) * mask_filter_value`` broadcast to [B, 1, S, T]: 0 or the filter, the
very values onnxruntime adds for mask_index (it adds the mask to a zero bias). A non-finite
mask_filter_value keeps the integer form (no arithmetic may make an infinity: LiteRT's
builtin MUL/ADD clamp to +-FLT_MAX). The count output is dropped when nothing else reads it.
With dynamic input sizes (``graph.sample_pinned``) nothing is sized by the sample: the key
positions j are a run-time Range over the mask's width and the bias stays [B, 1, 1, T]
(Attention's ADD broadcasts it over the queries).
"""

from __future__ import annotations

import numpy as np

from .float_masks import FloatFormBuilder
from .ir import Graph, Node, Value, fresh_value_name, value_dtype

MS = "com.microsoft"
F32 = np.dtype(np.float32)
MASK_FILTER = -10000.0  # onnxruntime's default mask_filter_value
TRIGGERS = {"mask_index_as_bias": {"EmbedLayerNormalization"}}


def _has(node: Node, i: int) -> bool:
    return i < len(node.inputs) and bool(node.inputs[i])


def _static(graph: Graph, names) -> bool:
    return all(graph.values.get(n) is not None and graph.values[n].is_static for n in names)


def _attention_reads_count(graph: Graph, node: Node, count: str) -> bool:
    if node.domain != MS or node.op_type != "Attention" or not _has(node, 3):
        return False
    if node.inputs[3] != count or _has(node, 4) or _has(node, 5) or len(node.inputs) > 6:
        return False
    if node.attrs.get("unidirectional", 0) and node.attrs.get("past_present_share_buffer", 0):
        return False
    filt = float(node.attrs.get("mask_filter_value", MASK_FILTER))
    return np.isfinite(np.float32(filt)) and _static(graph, [node.inputs[0], *node.outputs[:1]])


def _int64_const(graph: Graph, label: str, values) -> str:
    arr = np.asarray(values, np.int64)
    name = fresh_value_name(graph, f"{label}/shape")
    graph.values[name] = Value(name, arr.dtype, arr.shape, arr)
    return name


def _keep(b: FloatFormBuilder, eln: Node, batch: int, seq: int) -> str:
    """[B, S] float32 0/1: key j counts (j < number of ones in the mask row)."""
    b.label = eln.label
    mf = b.integer(eln.inputs[7])
    shape = (batch, seq)
    d = b.op("Abs", [b.op("Sub", [mf, b.const(1.0, "one")], shape, "off_one")], shape, "dist")
    ones = b.op(
        "Sub",
        [b.const(1.0, "one"), b.op("Min", [d, b.const(1.0, "one")], shape, "m")],
        shape,
        "ones",
    )
    axes = _int64_const(b.graph, eln.label, [1])
    count = b.op("ReduceSum", [ones, axes], (batch, 1), "count", keepdims=1)
    if b.graph.sample_pinned:
        key_pos = _runtime_key_positions(b, eln.inputs[7], seq)
    else:
        key_pos = b.const(np.arange(seq, dtype=np.float32)[None], "key_pos")
    gap = b.op("Sub", [count, key_pos], shape, "gap")
    return b.clamp01(gap, shape)


def _typed(graph: Graph, base: str, dtype, shape, const=None) -> str:
    name = fresh_value_name(graph, base)
    graph.values[name] = Value(name, np.dtype(dtype), tuple(shape), const)
    return name


def _runtime_key_positions(b: FloatFormBuilder, mask: str, seq: int) -> str:
    """[T] float32 0, 1, ..., T - 1 with T the mask's width read at run time (Shape, Gather,
    Range). Why: with dynamic input sizes (``graph.sample_pinned``) an ``arange(T)`` constant
    bakes in one sample's width, which the dynamic-shape lowering cannot re-express."""
    g = b.graph
    dims = _typed(g, f"{b.label}/mask_dims", np.int64, (2,))
    b.nodes.append(Node(f"{b.label}/mask_dims", "Shape", "", [mask], [dims], {}, b.opset))
    axis = _typed(g, f"{b.label}/key_axis", np.int64, (), np.asarray(1, np.int64))
    width = _typed(g, f"{b.label}/keys", np.int64, ())
    b.nodes.append(Node(f"{b.label}/keys", "Gather", "", [dims, axis], [width], {}, b.opset))
    limit = b.op("Cast", [width], (), "keys_f", to=1)
    return b.op("Range", [b.const(0.0, "zero"), limit, b.const(1.0, "one")], (seq,), "key_pos")


def mask_index_as_bias(graph: Graph) -> list[str]:
    consumers = graph.consumers()
    b = FloatFormBuilder(graph)
    changed = []
    inserts: dict[int, list[Node]] = {}
    for eln in graph.nodes:
        if eln.domain != MS or eln.op_type != "EmbedLayerNormalization" or not _has(eln, 7):
            continue
        if len(eln.outputs) < 2 or not eln.outputs[1] or eln.outputs[1] in graph.outputs:
            continue
        mask = graph.values.get(eln.inputs[7])
        if mask is None or not mask.is_static or len(mask.shape) != 2:
            continue
        if (
            value_dtype(graph, eln.inputs[7]) is None
            or value_dtype(graph, eln.inputs[7]).kind != "i"
        ):
            continue
        count = eln.outputs[1]
        readers = [n for n, _ in consumers.get(count, [])]
        takers = [n for n in readers if _attention_reads_count(graph, n, count)]
        if not takers:
            continue
        batch, seq = mask.shape
        keep = _keep(b, eln, batch, seq)
        biases: dict[float, str] = {}
        for att in takers:
            filt = float(np.float32(att.attrs.get("mask_filter_value", MASK_FILTER)))
            s = graph.values[att.inputs[0]].shape[1]
            if filt not in biases:
                b.label = f"{eln.label}/bias"
                hidden = b.op("Sub", [b.const(1.0, "one"), keep], (batch, seq), "masked")
                row = b.op("Mul", [hidden, b.const(filt, "filter")], (batch, seq), "row")
                row4 = b.op(
                    "Reshape",
                    [row, _int64_const(graph, b.label, [batch, 1, 1, seq])],
                    (batch, 1, 1, seq),
                    "rows",
                )
                biases[filt] = row4  # [B, 1, 1, T] broadcasts over the queries (dynamic S)
                if not graph.sample_pinned:
                    zeros = b.const(np.zeros((1, 1, s, 1), np.float32), "queries")
                    bias_shape = (batch, 1, s, seq)
                    biases[filt] = b.op("Add", [row4, zeros], bias_shape, "attention_bias")
            att.inputs = [*att.inputs[:3], "", "", biases[filt]]
            changed.append(att.label)
        inserts[id(eln)] = b.nodes
        b.nodes = []
        if len(takers) == len(readers):
            eln.outputs = [eln.outputs[0], "", *eln.outputs[2:]]
    if not changed:
        return []
    graph.nodes = [m for n in graph.nodes for m in (n, *inserts.get(id(n), []))]
    graph.invalidate()
    return changed


RULES = [("mask_index_as_bias", mask_index_as_bias)]
