"""ZipMap (ai.onnx.ml): why it cannot convert, and ``--drop-zipmap``.

ZipMap turns a ``[N, C]`` probability tensor into a sequence of N maps (class label ->
probability). No TFLite tensor holds a sequence of maps, so a model whose output comes from a
ZipMap is refused with the two ways out: export without it (skl2onnx ``zipmap=False``, or
``options={id(model): {'zipmap': False}}`` for a pipeline's classifier; onnxmltools
``zipmap=False``), or convert with ``--drop-zipmap`` (API ``drop_zipmap=True``), which rewrites
a copy of the model before conversion so that the ZipMap's output *is* its input: the same
output name, now the ``[N, C]`` float32 probability tensor, columns in class-label order.
"""

from __future__ import annotations

import onnx
from onnx import helper

ML_DOMAIN = "ai.onnx.ml"
ADVICE = (
    "ZipMap builds a sequence of maps, which no TFLite tensor can hold: export the classifier "
    "without it (skl2onnx: to_onnx(..., options={id(model): {'zipmap': False}}) or "
    "convert_sklearn(..., options={'zipmap': False}); onnxmltools: zipmap=False), or convert "
    "with --drop-zipmap to output the [N, C] probability tensor under the ZipMap's output name"
)


def zipmap_outputs(nodes) -> dict[str, str]:
    """ZipMap output name -> node label."""
    return {
        n.output[0]: n.name or n.op_type
        for n in nodes
        if n.op_type == "ZipMap" and n.domain == ML_DOMAIN and n.output
    }


def drop_zipmap(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` where every ZipMap is an Identity of its probability input, and
    values that were its maps are declared as ``[N, C]`` float32 tensors (``model`` itself is
    returned when it has no ZipMap)."""
    if not zipmap_outputs(model.graph.node):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    replaced: dict[str, int] = {}
    nodes = []
    for n in g.node:
        if n.op_type == "ZipMap" and n.domain == ML_DOMAIN:
            labels = 0
            for a in n.attribute:
                if a.name in ("classlabels_int64s", "classlabels_strings"):
                    labels = max(labels, len(a.ints) or len(a.strings))
            replaced[n.output[0]] = labels
            nodes.append(helper.make_node("Identity", [n.input[0]], [n.output[0]], name=n.name))
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    for vi in list(g.output) + list(g.value_info):
        if vi.name in replaced:
            cols = replaced[vi.name] or None
            vi.type.CopyFrom(helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, [None, cols]))
    return out
