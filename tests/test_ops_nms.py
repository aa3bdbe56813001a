"""NonMaxSuppression: the exact dynamic-size output (default) and the fixed-size padded one
(``nms_padded_output``), ONNX tie and threshold rules, runtime inputs, class-argmax mode and a
YOLO-style head, all compared with onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import convert, expect_refusal, make_model, op_histogram
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from onnx2tflite_direct.validate import run_litert

OPTIONAL = ("max_output_boxes_per_class", "iou_threshold", "score_threshold")


def _nms_model(b, c, n, max_out=3, iou=0.5, score=None, center=0, runtime=(), opset=11):
    """One NMS node; ``max_out``/``iou``/``score`` are constants unless named in ``runtime``
    (then graph inputs); ``None`` leaves the input out."""
    inputs = [("boxes", np.float32, (b, n, 4)), ("scores", np.float32, (b, c, n))]
    inits = {}
    names = ["boxes", "scores"]
    for name, value, dtype in zip(
        OPTIONAL, (max_out, iou, score), (np.int64, np.float32, np.float32), strict=True
    ):
        if value is None and name not in runtime:
            names.append("")
            continue
        names.append(name)
        if name in runtime:
            inputs.append((name, dtype, (1,)))
        else:
            inits[name] = np.array([value], dtype)
    while names[-1] == "":
        names.pop()
    node = helper.make_node("NonMaxSuppression", names, ["selected"], center_point_box=center)
    return make_model(
        [node], inputs, [("selected", np.int64, ("num", 3))], initializers=inits, opset=opset
    )


def _boxes(rng, b, n, center=0):
    """Clustered boxes (many overlaps); corner order randomly flipped for the corner format."""
    mid = rng.uniform(0, 6, (b, n, 2)).astype(np.float32)
    size = rng.uniform(1, 4, (b, n, 2)).astype(np.float32)
    if center:
        return np.concatenate([mid, size], axis=2)
    lo, hi = mid - size / 2, mid + size / 2
    flip = rng.random((b, n, 1)) < 0.3
    return np.concatenate([np.where(flip, hi, lo), np.where(flip, lo, hi)], axis=2)


def _onnxruntime(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def _litert(model, feeds, **options):
    res = convert(model, **options)
    return res, run_litert(res.tflite_bytes, feeds, res.report.get("io"))


def _assert_fixed(actual, expected, name="selected"):
    """Fixed-size output: ONNX's rows first, then only [-1, -1, -1] rows; the count agrees."""
    rows, count = actual[name], actual[f"{name}_valid_count"]
    assert rows.dtype == np.int64 and count.shape == ()
    assert int(count) == len(expected), (int(count), expected)
    np.testing.assert_array_equal(rows[: len(expected)], expected)
    assert (rows[len(expected) :] == -1).all(), rows


def _check(model, feeds, dynamic, **options):
    expected = _onnxruntime(model, feeds)
    res, actual = _litert(model, feeds, nms_padded_output=not dynamic, **options)
    if dynamic:
        assert set(actual) == {"selected"}
        assert actual["selected"].dtype == np.int64
        np.testing.assert_array_equal(actual["selected"], expected)
    else:
        _assert_fixed(actual, expected)
    return res, expected


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("center", [0, 1])
@pytest.mark.parametrize("b,c", [(1, 1), (2, 3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_boxes(dynamic, center, b, c, seed):
    rng = np.random.default_rng(seed)
    n = 12
    feeds = {
        "boxes": _boxes(rng, b, n, center),
        "scores": rng.random((b, c, n)).astype(np.float32),
    }
    _check(_nms_model(b, c, n, max_out=4, iou=0.3, score=0.2, center=center), feeds, dynamic)


@pytest.mark.parametrize("max_out", [1, 5, 100])
@pytest.mark.parametrize("iou", [0.0, 0.45, 1.0])
@pytest.mark.parametrize("score", [None, 0.5])
def test_thresholds_and_limits(max_out, iou, score):
    rng = np.random.default_rng(7)
    b, c, n = 1, 2, 10
    feeds = {"boxes": _boxes(rng, b, n), "scores": rng.random((b, c, n)).astype(np.float32)}
    model = _nms_model(b, c, n, max_out=max_out, iou=iou, score=score)
    res, _ = _check(model, feeds, dynamic=False)
    k = min(max_out, n)
    assert res.report["io"], res.report
    kernels = 0 if iou >= 1 else b * c  # IoU threshold 1 never suppresses: no kernel
    assert op_histogram(res.tflite_bytes)["NON_MAX_SUPPRESSION_V4"] == kernels
    assert _litert(model, feeds, nms_padded_output=True)[1]["selected"].shape == (b * c * k, 3)


def _empty_dynamic_output_shape(tflite_bytes, feeds):
    """LiteRT's Python API cannot read a zero-element tensor; its shape is still readable."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite_bytes)
    interp.allocate_tensors()
    for detail in interp.get_input_details():
        interp.set_tensor(detail["index"], feeds[detail["name"]].astype(detail["dtype"]))
    interp.invoke()
    return tuple(interp.get_output_details()[0]["shape"])


@pytest.mark.parametrize("dynamic", [False, True])
def test_all_inputs_at_runtime(dynamic):
    """Runtime limit (incl. above N and negative), IoU threshold (incl. 0 and 1, which never
    suppresses) and score threshold."""
    rng = np.random.default_rng(3)
    b, c, n = 2, 2, 9
    model = _nms_model(b, c, n, runtime=OPTIONAL)
    res = convert(model, nms_padded_output=not dynamic)
    boxes, scores = _boxes(rng, b, n), rng.random((b, c, n)).astype(np.float32)
    for max_out, iou, score in [(3, 0.4, 0.3), (100, 0.0, -1.0), (2, 1.0, 0.6), (-2, 0.5, 0.1)]:
        feeds = {
            "boxes": boxes,
            "scores": scores,
            "max_output_boxes_per_class": np.array([max_out], np.int64),
            "iou_threshold": np.array([iou], np.float32),
            "score_threshold": np.array([score], np.float32),
        }
        expected = _onnxruntime(model, feeds)
        if dynamic and len(expected) == 0:
            assert _empty_dynamic_output_shape(res.tflite_bytes, feeds) == (0, 3)
            continue
        actual = run_litert(res.tflite_bytes, feeds, res.report.get("io"))
        if dynamic:
            np.testing.assert_array_equal(actual["selected"], expected)
        else:
            _assert_fixed(actual, expected)


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("center", [0, 1])
def test_empty_boxes_are_never_suppressed(dynamic, center):
    """Zero-area boxes neither suppress nor get suppressed in ONNX (the kernel alone would
    select a zero-area box over and over)."""
    rng = np.random.default_rng(4)
    b, c, n = 1, 2, 8
    boxes = _boxes(rng, b, n, center)
    boxes[0, 1] = boxes[0, 2] = 0  # empty boxes, the second one a duplicate of the first
    if center:
        boxes[0, 5, 2] = 0  # a line (width 0)
    else:
        boxes[0, 5, 3] = boxes[0, 5, 1]
    scores = rng.random((b, c, n)).astype(np.float32)
    scores[0, :, 1] = 0.99
    model = _nms_model(b, c, n, max_out=6, iou=0.3, score=0.1, center=center)
    _, expected = _check(model, {"boxes": boxes, "scores": scores}, dynamic)
    assert {1, 2, 5} <= set(expected[:, 2].tolist())


@pytest.mark.parametrize("dynamic", [False, True])
def test_iou_equal_to_threshold_is_kept(dynamic):
    """IoU exactly 0.5 with threshold 0.5: ONNX keeps the box (strict >); the kernel's >= is
    shifted by one float. Touching boxes (IoU 0) survive threshold 0."""
    boxes = np.array([[[0, 0, 1, 3], [0, 1, 1, 4], [1, 0, 2, 1], [2, 0, 3, 1]]], np.float32)
    scores = np.array([[[0.9, 0.8, 0.7, 0.6]]], np.float32)
    for iou, kept in ((0.5, 4), (0.0, 3)):  # at 0.0 only the overlapping box 1 goes
        model = _nms_model(1, 1, 4, max_out=4, iou=iou)
        _, expected = _check(model, {"boxes": boxes, "scores": scores}, dynamic)
        assert len(expected) == kept


@pytest.mark.parametrize("center", [0, 1])
def test_ties_take_lower_index_first(center):
    """Equal scores: ONNX selects the lower box index first (the kernel alone would not)."""
    rng = np.random.default_rng(11)
    b, c, n = 1, 2, 30
    boxes = _boxes(rng, b, n, center)
    scores = rng.integers(0, 3, (b, c, n)).astype(np.float32) / 4
    model = _nms_model(b, c, n, max_out=30, iou=0.2, score=0.1, center=center)
    _check(model, {"boxes": boxes, "scores": scores}, dynamic=True)
    _check(model, {"boxes": boxes, "scores": scores}, dynamic=False)


@pytest.mark.parametrize("opset", [10, 11])
def test_opsets_and_default_iou_threshold(opset):
    """No IoU threshold input: ONNX's default 0 suppresses every overlapping box."""
    rng = np.random.default_rng(8)
    feeds = {"boxes": _boxes(rng, 1, 8), "scores": rng.random((1, 2, 8)).astype(np.float32)}
    model = _nms_model(1, 2, 8, max_out=8, iou=None, opset=opset)
    _check(model, feeds, dynamic=True)
    _check(model, feeds, dynamic=False)


def test_negative_infinite_scores_without_threshold():
    boxes = np.array([[[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]]], np.float32)
    scores = np.array([[[-np.inf, 0.3, -np.inf]]], np.float32)
    model = _nms_model(1, 1, 3, max_out=3, iou=0.5, score=None)
    _check(model, {"boxes": boxes, "scores": scores}, dynamic=True)


def test_default_output_is_onnx_exact_and_nms_dynamic_output_is_a_no_op(caplog):
    """The default keeps ONNX's [num_selected, 3] (no padding rows, no extra output); the
    former opt-in flag is still accepted, changes nothing and says so."""
    rng = np.random.default_rng(5)
    model = _nms_model(2, 3, 9, max_out=4, iou=0.4, score=0.2)
    feeds = {"boxes": _boxes(rng, 2, 9), "scores": rng.random((2, 3, 9)).astype(np.float32)}
    expected = _onnxruntime(model, feeds)
    res, actual = _litert(model, feeds)
    assert list(actual) == ["selected"] and actual["selected"].shape == expected.shape
    np.testing.assert_array_equal(actual["selected"], expected)
    row = next(r for r in res.report["nodes"] if r["op_type"] == "NonMaxSuppression")
    assert not any("fixed-size" in n for n in row.get("notes", []))
    with caplog.at_level("WARNING"):
        again = convert(model, nms_dynamic_output=True)
    assert bytes(again.tflite_bytes) == bytes(res.tflite_bytes)
    assert "nms_dynamic_output has no effect" in caplog.text


def test_dynamic_output_shape_signature():
    """The default output: shape signature [-1, 3] in the file and in the report."""
    from ai_edge_litert.interpreter import Interpreter

    res = convert(_nms_model(1, 1, 5))
    details = Interpreter(model_content=res.tflite_bytes).get_output_details()
    assert [list(d["shape_signature"]) for d in details] == [[-1, 3]]
    # The report's I/O table says the same as the file.
    row = next(r for r in res.report["io"] if r["kind"] == "output")
    assert row["shape_signature"] == [-1, 3]


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("b", [1, 2])
def test_class_argmax(dynamic, b):
    """Class-agnostic NMS on per-box max scores; reference: ReduceMax + NMS + ArgMax/Gather."""
    rng = np.random.default_rng(5)
    c, n = 4, 10
    boxes, scores = _boxes(rng, b, n), rng.random((b, c, n)).astype(np.float32)
    scores[0, :2, 3] = 0.99  # a tie between classes: the first class wins (ArgMax)
    feeds = {"boxes": boxes, "scores": scores}
    reference = make_model(
        [
            helper.make_node("ReduceMax", ["scores"], ["best"], axes=[1], keepdims=1),
            helper.make_node(
                "NonMaxSuppression", ["boxes", "best", "k", "iou", "thr"], ["selected"]
            ),
        ],
        [("boxes", np.float32, (b, n, 4)), ("scores", np.float32, (b, c, n))],
        [("selected", np.int64, ("num", 3))],
        initializers={
            "k": np.array([5], np.int64),
            "iou": np.array([0.4], np.float32),
            "thr": np.array([0.3], np.float32),
        },
        opset=11,
    )
    expected = _onnxruntime(reference, feeds)
    classes = scores.argmax(axis=1)
    expected[:, 1] = classes[expected[:, 0], expected[:, 2]]
    model = _nms_model(b, c, n, max_out=5, iou=0.4, score=0.3)
    res, actual = _litert(model, feeds, nms_padded_output=not dynamic, nms_class_argmax=True)
    assert op_histogram(res.tflite_bytes)["NON_MAX_SUPPRESSION_V4"] == b
    if dynamic:
        np.testing.assert_array_equal(actual["selected"], expected)
    else:
        _assert_fixed(actual, expected)


def _yolo_model(n_cells=16, classes=3):
    """conv head [1, 4 + C, 4, 4] -> boxes [1, N, 4] (center format) and sigmoid scores
    [1, C, N] via Reshape/Transpose/Slice -> NMS (max 5 per class)."""
    rng = np.random.default_rng(2)
    ch = 4 + classes
    weights = {
        "w": rng.normal(0, 0.5, (ch, 3, 3, 3)).astype(np.float32),
        "bias": np.concatenate([[2.0, 2.0, 1.5, 1.5], np.zeros(classes)]).astype(np.float32),
        "flat": np.array([1, ch, n_cells], np.int64),
        "box_start": np.array([0], np.int64),
        "box_end": np.array([4], np.int64),
        "cls_end": np.array([ch], np.int64),
        "axis1": np.array([1], np.int64),
        "k": np.array([5], np.int64),
        "iou": np.array([0.45], np.float32),
        "thr": np.array([0.25], np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "w", "bias"], ["head"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["head", "flat"], ["preds"]),
        helper.make_node("Slice", ["preds", "box_start", "box_end", "axis1"], ["box_cn"]),
        helper.make_node("Transpose", ["box_cn"], ["boxes"], perm=[0, 2, 1]),
        helper.make_node("Slice", ["preds", "box_end", "cls_end", "axis1"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["scores"]),
        helper.make_node(
            "NonMaxSuppression",
            ["boxes", "scores", "k", "iou", "thr"],
            ["selected"],
            center_point_box=1,
        ),
    ]
    return make_model(
        nodes,
        [("image", np.float32, (1, 3, 4, 4))],
        [("selected", np.int64, ("num", 3))],
        initializers=weights,
        opset=13,
    )


@pytest.mark.parametrize("dynamic", [False, True])
def test_yolo_style_head(dynamic):
    model = _yolo_model()
    feeds = {"image": np.random.default_rng(9).normal(size=(1, 3, 4, 4)).astype(np.float32)}
    expected = _onnxruntime(model, feeds)
    assert len(expected) >= 3  # the test exercises real selections
    _, actual = _litert(model, feeds, nms_padded_output=not dynamic)
    if dynamic:
        np.testing.assert_array_equal(actual["selected"], expected)
    else:
        _assert_fixed(actual, expected)
        assert actual["selected"].shape == (3 * 5, 3)


@pytest.mark.parametrize(
    "kwargs,reason",
    [
        ({"max_out": 0}, "unsupported_attribute_value"),
        ({"max_out": None}, "unsupported_attribute_value"),
        ({"center": 2}, "unsupported_attribute_value"),
    ],
)
def test_refusals(kwargs, reason):
    expect_refusal(_nms_model(1, 2, 4, **kwargs), reason)


def test_refuses_too_many_kernels():
    expect_refusal(_nms_model(2, 2049, 3), "unsupported_attribute_value")


@settings(max_examples=12, deadline=None)
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 3),
    n=st.integers(1, 12),
    max_out=st.integers(1, 14),
    iou=st.sampled_from([0.0, 0.25, 0.5, 0.9]),
    score=st.sampled_from([None, 0.0, 0.4]),
    center=st.integers(0, 1),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_and_attributes(b, c, n, max_out, iou, score, center, seed):
    rng = np.random.default_rng(seed)
    feeds = {
        "boxes": _boxes(rng, b, n, center),
        "scores": rng.random((b, c, n)).astype(np.float32),
    }
    model = _nms_model(b, c, n, max_out=max_out, iou=iou, score=score, center=center)
    _check(model, feeds, dynamic=False)


def test_valid_count_output_follows_the_onnx_outputs_in_the_signature():
    from onnx2tflite_direct import convert as o2t_convert

    res = o2t_convert(_nms_model(1, 2, 6, max_out=3), nms_padded_output=True)
    outputs = [r["name"] for r in res.report["io"] if r["kind"] == "output"]
    assert outputs == ["selected", "selected_valid_count"]
    row = next(r for r in res.report["nodes"] if r["op_type"] == "NonMaxSuppression")
    assert any("--nms-padded-output: fixed-size output" in n for n in row["notes"])


def test_validate_compares_the_valid_rows_of_the_fixed_size_output():
    """--validate on the fixed-size padded output: the valid rows must equal onnxruntime's
    exact-size output and the rest be -1 padding."""
    from onnx2tflite_direct import convert as o2t_convert

    rng = np.random.default_rng(4)
    model = _nms_model(1, 2, 8, max_out=3, iou=0.5, score=0.1)
    feeds = {"boxes": _boxes(rng, 1, 8), "scores": rng.random((1, 2, 8)).astype(np.float32)}
    res = o2t_convert(
        model, validate=True, test_data={k: v for k, v in feeds.items()}, nms_padded_output=True
    )
    assert res.validation.ok and res.validation.extra_outputs == []
    (metrics,) = res.validation.outputs.values()
    assert metrics["shape_match"]
