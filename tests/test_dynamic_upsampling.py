"""Upsampling and strided reads converted with their spatial dims left dynamic (no
``input_shapes``), run in LiteRT at many run-time sizes (odd, even, 1, prime, larger than the
converter's samples) and compared with onnxruntime.

ConvTranspose with a stride and pads or auto_pad SAME_*: the full result's size,
``s * (n - 1) + k_eff + output_padding``, is no multiple of the input size, so the sample
lowerings' constant TRANSPOSE_CONV output shape was refused. When the sizes vary the shape is
computed from SHAPE of the input (``s * n + k_eff - s + output_padding``) and the ONNX window
is cut by one STRIDED_SLICE whose begin and end pads are the same at every size (the end
counted back from the run-time end). Pinned conversions keep their constant form.

Resize downscaling by a power of two (``out = floor(in / k)``): the builtins place their taps
with the run-time in / out, ONNX with the scale, so the builtin a sample lowering picked was
refused (its size no multiple of the input's). Half_pixel and asymmetric taps read
``k x + c`` at every size: strided slices (``lowering/resize_strided.py``). Taps that depend on
the size (pytorch_half_pixel's size-1 output, align_corners, cubic's clamped edges) stay
refused, naming the node and the pin.

Slice with a step: the sample lowerings' copy forms (SLICE/RESHAPE blocks, one SLICE per
reversed element) and normalized bounds follow the sample's sizes; when the sizes vary the
ONNX starts/ends/steps go into one STRIDED_SLICE as they are, whose negative-index and clamp
rules are ONNX's at every size.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V
from onnx2tflite_direct.errors import UnsupportedError

RNG = np.random.default_rng(4242)
SIZES = [1, 2, 3, 5, 7, 8, 13, 16]


def _model(op, attrs, inits=(), extra_inputs=(), nd=2, cin=3):
    dims = ["N", cin] + [f"S{i}" for i in range(nd)]
    node = helper.make_node(op, ["x", *extra_inputs], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        list(inits),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def _conv_transpose(attrs, kernel, group=1, bias=False, cin=3, cout=4):
    w = RNG.standard_normal([cin, cout // group, *kernel]).astype(np.float32)
    inits, inputs = [numpy_helper.from_array(w, "w")], ["w"]
    if bias:
        inits.append(numpy_helper.from_array(RNG.standard_normal([cout]).astype(np.float32), "b"))
        inputs.append("b")
    attrs = dict(kernel_shape=list(kernel), group=group, **attrs)
    return _model("ConvTranspose", attrs, inits, inputs, nd=len(kernel), cin=cin)


def _check_sizes(model, nd, sizes=SIZES, cin=3):
    """Convert once (dims dynamic), compare with onnxruntime at every size."""
    res = convert(model, keep_io_layout=True)
    sess = ort.InferenceSession(model.SerializeToString())
    for n in sizes:
        shape = [2, cin] + [n + 2 * i for i in range(nd)]  # a different size per axis
        x = RNG.standard_normal(shape).astype(np.float32)
        want = sess.run(None, {"x": x})[0]
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"])["y"]
        assert got.shape == want.shape, (shape, got.shape, want.shape)
        tol = 1e-4 * max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=str(shape))
    return res


CONV_TRANSPOSE_CASES = {
    "pads_output_padding": (dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]), [3, 3]),
    "pads_k4": (dict(strides=[2, 2], pads=[1, 1, 1, 1]), [4, 4]),
    "valid_k3": (dict(strides=[2, 2]), [3, 3]),
    "same_upper": (dict(strides=[2, 2], auto_pad="SAME_UPPER"), [3, 3]),
    "same_lower": (dict(strides=[2, 2], auto_pad="SAME_LOWER"), [3, 3]),
    "uneven_strides_pads": (
        dict(strides=[3, 2], pads=[1, 0, 0, 1], output_padding=[2, 1]),
        [3, 3],
    ),
    "dilated": (dict(strides=[2, 2], pads=[0, 1, 2, 1], dilations=[2, 2]), [3, 3]),
    "one_d": (dict(strides=[2], pads=[1, 2], output_padding=[1]), [3]),
}


@pytest.mark.parametrize("case", sorted(CONV_TRANSPOSE_CASES))
def test_conv_transpose_strided_every_size(case):
    attrs, kernel = CONV_TRANSPOSE_CASES[case]
    _check_sizes(_conv_transpose(attrs, kernel, bias=True), len(kernel))


def test_conv_transpose_grouped_same_upper_every_size():
    model = _conv_transpose(dict(strides=[2, 2], auto_pad="SAME_UPPER"), [3, 3], group=3, cout=6)
    _check_sizes(model, 2)


def test_conv_transpose_pinned_keeps_constant_shape():
    """A pinned conversion writes the constant output shape and SLICE (no run-time SHAPE)."""
    from harness import op_histogram

    model = _conv_transpose(dict(strides=[2, 2], pads=[1, 1, 1, 1]), [3, 3])
    res = convert(model, input_shapes={"x": (1, 3, 7, 9)}, keep_io_layout=True)
    ops = op_histogram(res.tflite_bytes)
    assert ops["SHAPE"] == 0 and ops["SLICE"] == 1 and ops["STRIDED_SLICE"] == 0, ops


def _resize(scales, **attrs):
    attrs.setdefault("mode", "linear")
    sc = numpy_helper.from_array(np.array(scales, np.float32), "scales")
    return _model("Resize", attrs, [sc], ["", "scales"])


# Resize downscaling by a power of two: output x reads input k x + c (half_pixel, asymmetric).
RESIZE_DOWN_CASES = {
    "linear_half_pixel_2": ([1, 1, 0.5, 0.5], {}),
    "linear_half_pixel_4x2": ([1, 1, 0.25, 0.5], {}),
    "linear_half_pixel_width_only": ([1, 1, 1, 0.5], {}),
    "linear_asymmetric_2": ([1, 1, 0.5, 0.5], dict(coordinate_transformation_mode="asymmetric")),
    "nearest_half_pixel_2": ([1, 1, 0.5, 0.5], dict(mode="nearest")),
    "nearest_prefer_ceil_4": (
        [1, 1, 0.25, 0.25],
        dict(mode="nearest", nearest_mode="round_prefer_ceil"),
    ),
    "nearest_asymmetric_floor": (
        [1, 1, 0.5, 0.25],
        dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    ),
}


@pytest.mark.parametrize("case", sorted(RESIZE_DOWN_CASES))
def test_resize_downscale_every_size(case):
    scales, attrs = RESIZE_DOWN_CASES[case]
    # sizes from 4 up (an output of at least one cell at factor 4), odd and prime among them
    _check_sizes(_resize(scales, **attrs), 2, sizes=[4, 5, 7, 8, 13, 17, 31])


@pytest.mark.parametrize(
    "attrs",
    [
        dict(coordinate_transformation_mode="pytorch_half_pixel"),  # size-1 output reads cell 0
        dict(coordinate_transformation_mode="align_corners"),  # taps follow (in-1)/(out-1)
        dict(mode="cubic"),  # edge taps clamp differently per size
    ],
)
def test_resize_downscale_size_dependent_taps_refused(attrs):
    """Taps that are no fixed stride pattern stay refused, naming the node and the pin."""
    with pytest.raises(UnsupportedError) as err:
        convert(_resize([1, 1, 0.5, 0.5], **attrs), keep_io_layout=True)
    message = str(err.value)
    assert "dynamic_shape_unsupported" in message and "Resize:y" in message, message
    assert "pin the dims" in message, message


def test_resize_halving_is_one_average_pool():
    """Linear half_pixel halving (the mean of two cells per axis) is one AVERAGE_POOL_2D."""
    from harness import op_histogram

    res = _check_sizes(_resize([1, 1, 0.5, 0.5]), 2, sizes=[2, 3, 7, 16])
    ops = op_histogram(res.tflite_bytes)
    assert ops["AVERAGE_POOL_2D"] == 1 and ops["STRIDED_SLICE"] == 0, ops


def test_resize_downscale_pinned_keeps_builtin():
    """Pinned, the exact builtin stays (no strided taps)."""
    from harness import op_histogram

    res = convert(_resize([1, 1, 0.5, 0.5]), input_shapes={"x": (1, 3, 8, 10)})
    ops = op_histogram(res.tflite_bytes)
    assert ops["RESIZE_BILINEAR"] == 1 and ops["STRIDED_SLICE"] == 0, ops


def _slice(starts, ends, axes, steps):
    def const(name, values):
        return numpy_helper.from_array(np.array(values, np.int64), name)

    inits = [const("st", starts), const("en", ends), const("ax", axes), const("sp", steps)]
    return _model("Slice", {}, inits, ["st", "en", "ax", "sp"])


BIG = 1 << 62
# Strided Slice: the ONNX operands as they are in one STRIDED_SLICE (its clamps are ONNX's).
SLICE_CASES = {
    "focus_every_other": ([0, 1], [BIG, BIG], [2, 3], [2, 2]),  # YOLOv5 Focus
    "inner_step2": ([1], [-1], [2], [2]),
    "negative_start_step2": ([-5], [BIG], [3], [2]),
    "bounded_steps": ([1, 2], [7, -1], [2, 3], [3, 2]),
    "reverse": ([-1], [-BIG], [2], [-1]),
    "reverse_step2_and_3": ([BIG, 3], [-BIG, -BIG], [2, 3], [-2, -3]),
    "reverse_in_range": ([-2], [-5], [3], [-1]),
}


@pytest.mark.parametrize("case", sorted(SLICE_CASES))
def test_strided_slice_every_size(case):
    # sizes from 5 up: every case's result is non-empty there
    _check_sizes(_slice(*SLICE_CASES[case]), 2, sizes=[5, 6, 7, 8, 13, 16, 31])


def test_strided_slice_pinned_keeps_copy_form():
    """Pinned, a step-2 float slice stays SLICE/RESHAPE (XNNPACK has no strided slices)."""
    from harness import op_histogram

    res = convert(_slice(*SLICE_CASES["focus_every_other"]), input_shapes={"x": (1, 3, 8, 10)})
    ops = op_histogram(res.tflite_bytes)
    assert ops["STRIDED_SLICE"] == 0 and ops["RESHAPE"] >= 2, ops


@pytest.mark.parametrize("auto_pad", ["NOTSET", "SAME_UPPER"])
def test_conv_transpose_fixed_output_shape_refused_when_sizes_vary(auto_pad):
    """A constant output_shape is a window that does not follow the input size: refused,
    naming the node and the pin."""
    attrs = dict(strides=[2, 2], output_shape=[20, 21], auto_pad=auto_pad)
    with pytest.raises(UnsupportedError) as err:
        convert(_conv_transpose(attrs, [3, 3]), keep_io_layout=True)
    message = str(err.value)
    assert "ConvTranspose:y" in message and "pin the" in message, message


def test_resize_runtime_sizes_halving_refused():
    """Resize with ``sizes`` = Shape(x) / 2: ONNX's taps follow sizes / in (3/7 at 7), not a
    fixed 1/2, so the strided taps would be wrong at odd sizes (they were, briefly): refused."""
    i64 = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Div", ["shape", "two"], ["sizes"]),
        helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [i64("two", [1, 1, 2, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    with pytest.raises(UnsupportedError) as err:
        convert(model, keep_io_layout=True)
    message = str(err.value)
    assert "Resize:y" in message and "pin the dims" in message, message


def test_dynamic_batch_only_keeps_pinned_forms():
    """Only the batch varies: the spatial choices keep their pinned forms (a constant
    TRANSPOSE_CONV shape, the resize's taps) and still match at every batch."""
    from harness import op_histogram

    models = {
        "conv_transpose": _conv_transpose(dict(strides=[2, 2], pads=[1, 1, 1, 1]), [3, 3]),
        "resize": _resize([1, 1, 0.5, 0.5]),
        "slice": _slice(*SLICE_CASES["focus_every_other"]),
    }
    for name, model in models.items():
        x_info = model.graph.input[0].type.tensor_type.shape
        x_info.dim[2].dim_value, x_info.dim[3].dim_value = 9, 12
        res = convert(model, keep_io_layout=True)
        ops = op_histogram(res.tflite_bytes)
        # the forms of sizes that vary: a run-time output shape (MUL), strided taps, a pool
        # (a step slice with a dynamic batch was one STRIDED_SLICE before too)
        if name != "slice":
            assert ops["STRIDED_SLICE"] == 0 and ops["AVERAGE_POOL_2D"] == 0, (name, ops)
            assert name != "conv_transpose" or ops["MUL"] == 0, ops
        sess = ort.InferenceSession(model.SerializeToString())
        for batch in (1, 3, 5):
            x = RNG.standard_normal([batch, 3, 9, 12]).astype(np.float32)
            want = sess.run(None, {"x": x})[0]
            got = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"])["y"]
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(np.abs(want).max()))
