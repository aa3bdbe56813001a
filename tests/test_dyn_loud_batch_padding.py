"""Windows in a file whose only dynamic dim is the batch: the spatial sizes are the sample's at
every run-time size, so TFLite's SAME padding that equals the ONNX pads there is exact and no
explicit PAD is needed (``dynamic_sizes.any_size_padding`` asks the window's spatial axes, not
whether any size varies). Before, every such strided window got a PAD op in a batch-dynamic
CNN; the same windows over dynamic spatial sizes keep their PADs (SAME would hold at some
residues of the stride only).
"""

from __future__ import annotations

import numpy as np
from harness import check_at_sizes, convert, make_model, op_histogram
from onnx import helper


def _cnn(h, w, pool="AveragePool"):
    """Strided windows whose ONNX pads are TFLite's SAME at odd sizes (k=3 s=2 p=1: 33 -> 17
    -> 9 -> 5 -> 3): a conv, a depthwise conv, a pool (an average that excludes the padding,
    as TFLite's SAME does), a conv."""
    rng = np.random.default_rng(3)
    inits = {
        "w1": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "w2": (rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32),
        "w3": (rng.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w3"], ["c2"], strides=[2, 2], pads=[1] * 4, group=8),
        helper.make_node(pool, ["c2"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
        helper.make_node("Conv", ["p", "w2"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    return make_model(
        nodes,
        [("x", np.float32, ("N", 3, h, w))],
        [("y", np.float32, ("N", 8, None, None))],
        inits,
    )


def test_batch_only_windows_take_same_padding():
    model = _cnn(33, 33)
    res = convert(model)
    symbols = res.report["dynamic_shapes"]["symbols"]
    assert [s["name"] for s in symbols] == ["N"]
    assert op_histogram(res.tflite_bytes)["PAD"] == 0  # was 4: one per window
    check_at_sizes(res, model, [(n, 3, 33, 33) for n in (1, 2, 3, 7)])


def test_spatially_dynamic_windows_keep_their_pads():
    # (an average pool with pads is refused when its sizes vary: a max pool here)
    model = _cnn("H", "W", pool="MaxPool")
    res = convert(model)
    assert op_histogram(res.tflite_bytes)["PAD"] >= 3
    shapes = [(1, 3, h, w) for h, w in ((33, 33), (32, 32), (17, 30), (9, 12), (64, 97))]
    check_at_sizes(res, model, [*shapes, (3, 3, 33, 40)])
