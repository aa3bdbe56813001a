"""Nodes that read a data-dependent size (NonZero, Compress, boolean masks): the size is a
symbol of ``dynamic_shapes`` (the model is lowered at two sample counts and compared), so what
follows it runs at the size WHERE finds at run time. Every case runs one converted file on
inputs with different counts and compares with onnxruntime, shapes included."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from harness import convert, expect_refusal, make_model, op_histogram
from onnx import helper, numpy_helper

from onnx2tflite_direct.validate import litert_runner

RNG = np.random.default_rng(17)


def _masked(shape, fill):
    """About ``fill`` of the entries non-zero (never none: see test_zero_count)."""
    x = (RNG.random(shape) < fill) * RNG.standard_normal(shape)
    x.reshape(-1)[0] = 1.5
    return x.astype(np.float32)


def _agree(model, feeds_list, atol=0.0, key=lambda e: e.shape):
    """Convert once; every feed's outputs equal onnxruntime's (shape and values); the counts
    must differ between feeds, else the test proves nothing about the dynamic size."""
    res = convert(model)
    run = litert_runner(res.tflite_bytes, res.report["io"])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    shapes = set()
    for feeds in feeds_list:
        got = run(feeds)
        expected = dict(zip(names, sess.run(None, feeds), strict=True))
        for name in names:
            e, a = expected[name], got[name]
            assert a.shape == e.shape and a.dtype == e.dtype, (name, a.shape, e.shape)
            np.testing.assert_allclose(a, e, rtol=0, atol=atol)
        shapes.add(str(key(expected[names[0]])))
    assert len(shapes) == len(feeds_list), shapes
    return res


FILLS = (0.15, 0.5, 0.95)


def test_nonzero_read_by_elementwise_ops():
    model = make_model(
        [
            helper.make_node("NonZero", ["x"], ["nz"]),
            helper.make_node("Cast", ["nz"], ["f"], to=1),
            helper.make_node("Mul", ["f", "s"], ["m"]),
            helper.make_node("Add", ["m", "x0"], ["y"]),
        ],
        [("x", np.float32, (4, 5)), ("x0", np.float32, (2, 1))],
        [("y", np.float32, (2, "n"))],
        initializers={"s": np.array([[2.0], [3.0]], np.float32)},
        opset=13,
    )
    x0 = np.array([[0.5], [-1.0]], np.float32)
    res = _agree(model, [{"x": _masked((4, 5), f), "x0": x0} for f in FILLS])
    (row,) = [r for r in res.report["io"] if r["kind"] == "output"]
    assert row["shape_signature"] == [2, -1]
    assert "data_dependent" in res.report["dynamic_shapes"]


def test_boolean_mask_select():
    """x[x > t] as torch exports it: NonZero, Transpose, GatherND; then a Reshape to -1 and a
    reduction over the selected values."""
    model = make_model(
        [
            helper.make_node("Greater", ["x", "t"], ["mask"]),
            helper.make_node("NonZero", ["mask"], ["nz"]),
            helper.make_node("Transpose", ["nz"], ["idx"], perm=[1, 0]),
            helper.make_node("GatherND", ["x", "idx"], ["sel"]),
            helper.make_node("Reshape", ["sel", "flat"], ["y"]),
            helper.make_node("ReduceSum", ["y"], ["total"], keepdims=0),
        ],
        [("x", np.float32, (3, 4, 5))],
        [("y", np.float32, ("n",)), ("total", np.float32, ())],
        initializers={"t": np.array(0.3, np.float32), "flat": np.array([-1], np.int64)},
        opset=13,
    )
    _agree(
        model,
        [{"x": RNG.standard_normal((3, 4, 5)).astype(np.float32) + b} for b in (-1.0, 0.0, 1.0)],
        atol=1e-5,
    )


@pytest.mark.parametrize("axis", [0, 1, None])
def test_compress_then_gather_and_concat(axis):
    """Compress along an axis (or flattened), then Gather of a table by the selected values'
    positions, and a Concat along the data-dependent axis."""
    shape = (6, 4)
    attrs = {} if axis is None else {"axis": axis}
    cond_len = 24 if axis is None else shape[axis]
    cat_axis = 0 if axis is None else axis
    extra = np.ones(
        (2,) if axis is None else tuple(2 if k == axis else d for k, d in enumerate(shape)),
        np.float32,
    )
    model = make_model(
        [
            helper.make_node("Compress", ["x", "c"], ["sel"], **attrs),
            helper.make_node("Relu", ["sel"], ["r"]),
            helper.make_node("Concat", ["r", "extra"], ["y"], axis=cat_axis),
        ],
        [("x", np.float32, shape), ("c", np.bool_, (cond_len,))],
        [("y", np.float32, ["n"] if axis is None else ["d0", "d1"])],
        initializers={"extra": extra},
        opset=13,
    )
    feeds = []
    for f in FILLS:
        c = RNG.random(cond_len) < f
        c[0] = True
        feeds.append({"x": RNG.standard_normal(shape).astype(np.float32), "c": c})
    feeds[1]["c"][:] = False
    feeds[1]["c"][:2] = True
    feeds[2]["c"][:] = True
    _agree(model, feeds)


def test_selected_indices_gather_rows():
    """Indices from NonZero of a 1-D score mask pick rows of a box table (detection style)."""
    model = make_model(
        [
            helper.make_node("Greater", ["scores", "t"], ["keep"]),
            helper.make_node("NonZero", ["keep"], ["nz"]),
            helper.make_node("Squeeze", ["nz", "zero"], ["idx"]),
            helper.make_node("Gather", ["boxes", "idx"], ["picked"], axis=0),
            helper.make_node("Gather", ["scores", "idx"], ["picked_scores"], axis=0),
            helper.make_node("Unsqueeze", ["picked_scores", "one"], ["col"]),
            helper.make_node("Concat", ["picked", "col"], ["y"], axis=1),
        ],
        [("scores", np.float32, (20,)), ("boxes", np.float32, (20, 4))],
        [("y", np.float32, ("n", 5))],
        initializers={
            "t": np.array(0.5, np.float32),
            "zero": np.array([0], np.int64),
            "one": np.array([1], np.int64),
        },
        opset=13,
    )
    boxes = RNG.standard_normal((20, 4)).astype(np.float32)
    _agree(
        model,
        [
            {"scores": RNG.random(20).astype(np.float32) ** p, "boxes": boxes}
            for p in (0.3, 1.0, 3.0)
        ],
    )


def test_count_read_as_a_shape_value():
    """Shape of the selection is run-time arithmetic (never folded at a sample count)."""
    model = make_model(
        [
            helper.make_node("NonZero", ["x"], ["nz"]),
            helper.make_node("Shape", ["nz"], ["shape"]),
            helper.make_node("Mul", ["shape", "two"], ["y"]),
        ],
        [("x", np.float32, (4, 5))],
        [("y", np.int64, (2,))],
        initializers={"two": np.array(2, np.int64)},
        opset=13,
    )
    _agree(model, [{"x": _masked((4, 5), f)} for f in FILLS], key=lambda e: e.tolist())


def test_zero_count():
    """No true entry: WHERE gives 0 rows and everything after it is empty. LiteRT's Python
    ``get_tensor`` cannot read a zero-element tensor, so the output's shape is checked."""
    from ai_edge_litert.interpreter import Interpreter

    model = make_model(
        [
            helper.make_node("NonZero", ["x"], ["nz"]),
            helper.make_node("Cast", ["nz"], ["f"], to=1),
            helper.make_node("Neg", ["f"], ["y"]),
        ],
        [("x", np.float32, (4, 5))],
        [("y", np.float32, (2, "n"))],
        opset=13,
    )
    res = convert(model)
    interp = Interpreter(model_content=res.tflite_bytes)
    interp.allocate_tensors()
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    for x, count in ((np.zeros((4, 5), np.float32), 0), (_masked((4, 5), 0.5), None)):
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        shape = tuple(interp.get_output_details()[0]["shape"])
        assert shape == (2, count if count is not None else int(np.count_nonzero(x)))
    assert out["shape_signature"].tolist() == [2, -1]


@pytest.mark.parametrize("op", ["NonZero", "Compress"])
def test_declared_static_shape_is_not_trusted(op):
    """An exporter's static declaration of a data-dependent value is a guess: the file follows
    the data (the declared 2 rows would be wrong for every other count)."""
    ins = ["x", "c"] if op == "Compress" else ["x"]
    attrs = {"axis": 0} if op == "Compress" else {}
    dtype = np.float32 if op == "Compress" else np.int64
    declared = (2, 3) if op == "Compress" else (2, 2)
    model = make_model(
        [helper.make_node(op, ins, ["y"], **attrs), helper.make_node("Neg", ["y"], ["z"])],
        [("x", np.float32, (4, 3)), ("c", np.bool_, (4,))][: len(ins)],
        [("z", dtype, ("a", "b"))],
        opset=11,
    )
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model.graph.value_info.append(helper.make_tensor_value_info("y", elem, declared))
    feeds = []
    for n in (1, 3, 4):
        x = np.zeros((4, 3), np.float32)
        x.reshape(-1)[:n] = RNG.standard_normal(n) + 3
        c = np.arange(4) < n
        feeds.append({"x": x, "c": c} if op == "Compress" else {"x": x})
    _agree(model, feeds)


def _scores_with(count, size=30):
    """``size`` scores in (0, 1), exactly ``count`` of them above 0.5, no ties."""
    scores = RNG.permutation(size).astype(np.float32) / (4 * size)  # all below 0.25
    scores[RNG.choice(size, count, replace=False)] += 0.5
    return scores


@pytest.mark.parametrize("largest", [1, 0])
def test_topk_with_k_from_the_count(largest):
    """Detection post-processing: k = min(count, cap) computed from Shape of the selection
    (run time: TOPK_V2 takes a k tensor), then the kept positions map back by Gather."""
    model = make_model(
        [
            helper.make_node("Greater", ["scores", "t"], ["keep"]),
            helper.make_node("NonZero", ["keep"], ["nz"]),
            helper.make_node("Squeeze", ["nz", "zero"], ["idx"]),
            helper.make_node("Gather", ["scores", "idx"], ["sel"], axis=0),
            helper.make_node("Shape", ["sel"], ["n"]),
            helper.make_node("Concat", ["n", "cap"], ["both"], axis=0),
            helper.make_node("ReduceMin", ["both"], ["k"], keepdims=1),
            helper.make_node("TopK", ["sel", "k"], ["vals", "pos"], largest=largest),
            helper.make_node("Gather", ["idx", "pos"], ["orig"], axis=0),
        ],
        [("scores", np.float32, (30,))],
        [("vals", np.float32, ("k",)), ("orig", np.int64, ("k",))],
        initializers={
            "t": np.array(0.5, np.float32),
            "zero": np.array([0], np.int64),
            "cap": np.array([6], np.int64),
        },
        opset=13,
    )
    _agree(model, [{"scores": _scores_with(c)} for c in (2, 4, 12)])


def _boxes(n, spread, center=False):
    """``n`` boxes, overlapping more when ``spread`` is small; corners in either order."""
    c = RNG.random((n, 2)) * spread
    wh = RNG.random((n, 2)) + 0.5
    if center:
        return np.concatenate([c, wh], 1).astype(np.float32)
    flip = RNG.random((n, 1)) < 0.3
    low, high = np.where(flip, c + wh, c), np.where(flip, c, c + wh)
    return np.concatenate([low, high], 1).astype(np.float32)


def test_nms_selection_read_by_nodes():
    """NonMaxSuppression's [num_selected, 3] read by Gathers (the box index column picks the
    kept boxes): the selection count is a sample-pinned size like NonZero's."""
    n = 12
    model = make_model(
        [
            helper.make_node("NonMaxSuppression", ["boxes", "scores", "k", "iou", "t"], ["sel"]),
            helper.make_node("Gather", ["sel", "two"], ["box"], axis=1),
            helper.make_node("Gather", ["flat_boxes", "box"], ["kept"], axis=0),
            helper.make_node("Add", ["kept", "kept"], ["y"]),
        ],
        [("boxes", np.float32, (2, n, 4)), ("scores", np.float32, (2, 3, n))],
        [("sel", np.int64, ("m", 3)), ("y", np.float32, ("m", 4))],
        initializers={
            "k": np.array([4], np.int64),
            "iou": np.array([0.4], np.float32),
            "t": np.array([0.3], np.float32),
            "two": np.array(2, np.int64),
            "flat_boxes": RNG.standard_normal((n, 4)).astype(np.float32),
        },
        opset=13,
    )
    feeds = [
        {
            "boxes": np.stack([_boxes(n, spread), _boxes(n, spread)]),
            "scores": RNG.random((2, 3, n)).astype(np.float32) ** p,
        }
        for spread, p in ((0.3, 3.0), (1.0, 6.0), (20.0, 0.2))
    ]
    _agree(model, feeds)


def _scores_kept(classes, size, count):
    """[1, classes, size] scores whose per-box maximum is above 0.5 for exactly ``count``."""
    scores = RNG.random((1, classes, size)).astype(np.float32) * 0.45
    keep = RNG.choice(size, count, replace=False)
    scores[0, RNG.integers(0, classes, count), keep] = 0.55 + 0.4 * RNG.random(count)
    return scores


@pytest.mark.parametrize(
    ("classes", "center", "threshold", "iou", "runtime_k"),
    [
        (1, 0, True, 0.4, False),
        (3, 0, True, 0.4, False),
        (1, 1, False, 0.5, True),
        (3, 0, False, 0.0, True),
        (2, 0, True, 1.0, False),
    ],
    ids=str,
)
def test_nms_over_a_data_dependent_box_count(classes, center, threshold, iou, runtime_k):
    """Boxes kept by a score mask (NonZero), then NMS over them (torchvision's detection
    post-processing): the box count is known at run time only, so the kernel's rank scores
    N..1, the slot indices and every size built from N or K come from RANGE over SHAPE."""
    n = 16
    nms_inputs = ["sel_boxes", "sel_scores", "k" if runtime_k else "k_const", "iou"]
    nms_inputs += ["t"] if threshold else []
    model = make_model(
        [
            helper.make_node("ReduceMax", ["scores"], ["best"], axes=[0, 1], keepdims=0),
            helper.make_node("Greater", ["best", "half"], ["keep"]),
            helper.make_node("NonZero", ["keep"], ["nz"]),
            helper.make_node("Squeeze", ["nz", "zero"], ["idx"]),
            helper.make_node("Gather", ["boxes", "idx"], ["sel_boxes"], axis=1),
            helper.make_node("Gather", ["scores", "idx"], ["sel_scores"], axis=2),
            helper.make_node("NonMaxSuppression", nms_inputs, ["sel"], center_point_box=center),
            helper.make_node("Gather", ["sel", "two"], ["pick"], axis=1),
            helper.make_node("Gather", ["idx", "pick"], ["orig"], axis=0),
        ],
        [("boxes", np.float32, (1, n, 4)), ("scores", np.float32, (1, classes, n))]
        + ([("k", np.int64, (1,))] if runtime_k else []),
        [("idx", np.int64, ("c",)), ("sel", np.int64, ("m", 3)), ("orig", np.int64, ("m",))],
        initializers={
            "half": np.array(0.5, np.float32),
            "zero": np.array([0], np.int64),
            "two": np.array(2, np.int64),
            "k_const": np.array([3], np.int64),
            "iou": np.array([iou], np.float32),
            "t": np.array([0.2], np.float32),
        },
        opset=13,
    )
    feeds = []
    for count, spread in ((2, 0.5), (7, 2.0), (15, 6.0)):
        feed = {
            "boxes": _boxes(n, spread, center=bool(center))[None],
            "scores": _scores_kept(classes, n, count),
        }
        if runtime_k:
            feed["k"] = np.array([count // 2 + 1], np.int64)
        feeds.append(feed)
    res = _agree(model, feeds)
    assert res.report["dynamic_shapes"]["data_dependent"]
    assert op_histogram(res.tflite_bytes)["RANGE"] >= 2  # rank scores and slots at run time


def test_slice_that_stops_short_of_the_count():
    """``sel[:4]`` runs to the end at the sample counts 2 and 3 but stops at 4 rows when more
    are selected (torchvision's ``keep[:detections_per_img]``): the end stays a run-time value."""
    model = make_model(
        [
            helper.make_node("Greater", ["scores", "t"], ["keep"]),
            helper.make_node("NonZero", ["keep"], ["nz"]),
            helper.make_node("Squeeze", ["nz", "zero"], ["idx"]),
            helper.make_node("Slice", ["idx", "zero", "four"], ["first"]),
            helper.make_node("Gather", ["scores", "first"], ["y"], axis=0),
        ],
        [("scores", np.float32, (30,))],
        [("y", np.float32, ("k",))],
        initializers={
            "t": np.array(0.5, np.float32),
            "zero": np.array([0], np.int64),
            "four": np.array([4], np.int64),
        },
        opset=13,
    )
    _agree(model, [{"scores": _scores_with(c)} for c in (2, 3, 9)])


def _empty_guarded_nms(then_value):
    """torchvision's batched_nms: ``if boxes.numel() == 0: return empty`` else NMS."""
    then = helper.make_graph(
        [helper.make_node("Constant", [], ["empty"], value=then_value)],
        "then",
        [],
        [helper.make_tensor_value_info("empty", onnx.TensorProto.INT64, None)],
    )
    orelse = helper.make_graph(
        [
            helper.make_node("Unsqueeze", ["sel_boxes", "zero"], ["b3"]),
            helper.make_node("Unsqueeze", ["sel_scores", "zero_one"], ["s3"]),
            helper.make_node("NonMaxSuppression", ["b3", "s3", "k", "iou"], ["nms"]),
            helper.make_node("Gather", ["nms", "two"], ["col"], axis=1),
        ],
        "else",
        [],
        [helper.make_tensor_value_info("col", onnx.TensorProto.INT64, None)],
    )
    n = 16
    return make_model(
        [
            helper.make_node("Greater", ["scores", "half"], ["keep"]),
            helper.make_node("NonZero", ["keep"], ["nz"]),
            helper.make_node("Squeeze", ["nz", "zero"], ["idx"]),
            helper.make_node("Gather", ["boxes", "idx"], ["sel_boxes"], axis=0),
            helper.make_node("Gather", ["scores", "idx"], ["sel_scores"], axis=0),
            helper.make_node("Shape", ["sel_boxes"], ["shape"]),
            helper.make_node("ReduceProd", ["shape"], ["numel"], keepdims=0),
            helper.make_node("Equal", ["numel", "zero_scalar"], ["is_empty"]),
            helper.make_node("If", ["is_empty"], ["picked"], then_branch=then, else_branch=orelse),
            helper.make_node("Gather", ["idx", "picked"], ["orig"], axis=0),
        ],
        [("boxes", np.float32, (n, 4)), ("scores", np.float32, (n,))],
        [("orig", np.int64, ("m",))],
        initializers={
            "half": np.array(0.5, np.float32),
            "zero": np.array([0], np.int64),
            "zero_one": np.array([0, 1], np.int64),
            "zero_scalar": np.array(0, np.int64),
            "two": np.array(2, np.int64),
            "k": np.array([100], np.int64),
            "iou": np.array([0.5], np.float32),
        },
        opset=13,
    )


def test_empty_guard_around_nms_is_the_computation():
    """The guard's empty branch equals the NMS branch on no boxes: the file is the NMS
    branch alone (an IF with data-dependent shapes in both branches is not needed)."""
    model = _empty_guarded_nms(numpy_helper.from_array(np.zeros((0,), np.int64)))
    feeds = [
        {"boxes": _boxes(16, spread)[:, [0, 1, 2, 3]], "scores": _scores_kept(1, 16, c)[0, 0]}
        for c, spread in ((2, 0.5), (6, 2.0), (14, 8.0))
    ]
    res = _agree(model, feeds)
    assert "WHILE" not in op_histogram(res.tflite_bytes)
    assert "IF" not in op_histogram(res.tflite_bytes)


def test_guard_whose_branches_differ_is_not_inlined():
    """A 'then' constant that the other branch does not give on empty inputs (here [-1]) keeps
    the If: it is refused (naming it), never replaced by the else branch."""
    model = _empty_guarded_nms(numpy_helper.from_array(np.array([-1], np.int64)))
    err = expect_refusal(model)
    assert "If" in err.message


def test_count_after_a_dynamic_input_dim():
    """An input dim left unknown and a data-dependent count in one model: both are symbols
    (the count is found once the input dim is pinned at its samples)."""
    model = make_model(
        [
            helper.make_node("Greater", ["x", "t"], ["mask"]),
            helper.make_node("NonZero", ["mask"], ["nz"]),
            helper.make_node("Transpose", ["nz"], ["idx"], perm=[1, 0]),
            helper.make_node("Cast", ["idx"], ["f"], to=1),
            helper.make_node("Mul", ["f", "f"], ["y"]),
        ],
        [("x", np.float32, ("rows", 6))],
        [("y", np.float32, ("n", 2))],
        initializers={"t": np.array(0.5, np.float32)},
        opset=13,
    )
    res = _agree(
        model,
        [{"x": RNG.standard_normal((r, 6)).astype(np.float32)} for r in (1, 4, 9)],
        atol=1e-6,
    )
    names = {s["name"] for s in res.report["dynamic_shapes"]["symbols"]}
    assert "rows" in names and len(names) == 2


def test_repeated_nonzero_of_one_mask_is_one_count():
    """torch repeats ``nonzero(mask)`` (RetinaNet: one for the values, one for k): equal
    counts at run time, so one symbol; sampled apart, TopK's k would exceed its input."""
    model = make_model(
        [
            helper.make_node("Greater", ["scores", "t"], ["keep"]),
            helper.make_node("NonZero", ["keep"], ["nz_a"]),
            helper.make_node("NonZero", ["keep"], ["nz_b"]),
            helper.make_node("Transpose", ["nz_a"], ["idx"], perm=[1, 0]),
            helper.make_node("GatherND", ["scores", "idx"], ["sel"]),
            helper.make_node("Shape", ["nz_b"], ["shape"]),
            helper.make_node("Gather", ["shape", "one_scalar"], ["n"], axis=0),
            helper.make_node("Unsqueeze", ["n", "zero"], ["n1"]),
            helper.make_node("Concat", ["n1", "cap"], ["both"], axis=0),
            helper.make_node("ReduceMin", ["both"], ["k"], keepdims=1),
            helper.make_node("TopK", ["sel", "k"], ["vals", "pos"]),
        ],
        [("scores", np.float32, (30,))],
        [("vals", np.float32, ("k",)), ("pos", np.int64, ("k",))],
        initializers={
            "t": np.array(0.5, np.float32),
            "zero": np.array([0], np.int64),
            "one_scalar": np.array(1, np.int64),
            "cap": np.array([5], np.int64),
        },
        opset=13,
    )
    res = _agree(model, [{"scores": _scores_with(c)} for c in (2, 4, 11)])
    assert len(res.report["dynamic_shapes"]["symbols"]) == 1


def test_count_inside_a_loop_body_is_refused_naming_the_reader():
    """A body's tensors cross a subgraph boundary: a count read there is refused, naming the
    node that reads it (never lowered at a guessed size)."""
    body = helper.make_graph(
        [
            helper.make_node("NonZero", ["x"], ["nz"]),
            helper.make_node("Cast", ["nz"], ["f"], to=1),
            helper.make_node("ReduceSum", ["f"], ["s"], keepdims=0),
            helper.make_node("Add", ["acc", "s"], ["acc_out"]),
            helper.make_node("Identity", ["cond"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc", onnx.TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", onnx.TensorProto.FLOAT, []),
        ],
    )
    model = make_model(
        [helper.make_node("Loop", ["trip", "", "acc0"], ["acc_final"], body=body)],
        [("x", np.float32, (3, 4)), ("acc0", np.float32, ())],
        [("acc_final", np.float32, ())],
        initializers={"trip": np.array(2, np.int64)},
        opset=13,
    )
    err = expect_refusal(model, "dynamic_shape_unsupported")
    assert "read by 'Cast:f'" in err.message and "body" in err.message, err.message


def test_zero_boxes_through_the_guarded_nms():
    """No box above the mask threshold: every op after the count runs on empty tensors (a
    Gather's index wrap by an empty axis must not divide by 0). The output's shape is read
    (LiteRT's Python API cannot read a zero-element tensor); other counts match onnxruntime."""
    from ai_edge_litert.interpreter import Interpreter

    model = _empty_guarded_nms(numpy_helper.from_array(np.zeros((0,), np.int64)))
    res = convert(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    interp = Interpreter(model_content=res.tflite_bytes)
    interp.allocate_tensors()
    for count in (0, 1, 5):
        feeds = {"boxes": _boxes(16, 2.0), "scores": np.full(16, 0.1, np.float32)}
        feeds["scores"][RNG.choice(16, count, replace=False)] = 0.6 + 0.3 * RNG.random(count)
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], feeds[d["name"]])
        interp.invoke()
        (out,) = interp.get_output_details()
        (want,) = sess.run(None, feeds)
        assert tuple(out["shape"]) == want.shape
        if count:
            np.testing.assert_array_equal(interp.get_tensor(out["index"]), want)
