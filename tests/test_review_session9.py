"""Adversarial review of session 9's dynamic-shape window lowerings (conv/pool padding "for
every size", ``lowering/common.py``): each model is converted with its spatial dims left
dynamic, run in LiteRT at many run-time sizes (odd, even, 1, prime, larger than the samples)
and compared with onnxruntime.

Found silently wrong (the converter's samples are even, the run-time size odd):

* ``auto_pad=SAME_UPPER`` with an even kernel and stride 2 (k=2, s=2: a patch embedding, a
  strided 2x2 pool): its pads are 0 at every even size, so the sample lowering took VALID, one
  output short at every odd size; SAME_UPPER is TFLite's SAME at every size;
* ``auto_pad=SAME_LOWER`` with a stride: its pads follow the size modulo the stride, the
  sample's explicit PAD held at even sizes only (an output short at odd ones). Refused now,
  naming ``--input-shape``;
* LpPool (and 3-D or dilated MaxPool/AveragePool: the slice composition of ``pool3d.py``) with
  a stride: each tap's slice ended at the sample's last window, ``j*d + (o-1)*s + 1``, a fixed
  distance from the end at the sample's residue only (one window short at odd sizes). The taps
  now end ``(k-1-j)*d`` cells before the padded end, ONNX's own end pads kept;
* ceil_mode with k=2, s=2 and no pads: ceil's count equals floor's at every even size, so the
  samples took the VALID pool (one window short at every odd size). Ceil's count is floor's
  over ``s - 1`` more end cells at every size; refused where onnxruntime drops a last window
  that would start in the end padding at some sizes.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V
from onnx2tflite_direct.errors import UnsupportedError

RNG = np.random.default_rng(909)
SIZES = [1, 2, 3, 5, 7, 8, 13, 16, 31]


def _window_model(op, nd, kernel, attrs, cin=3, cout=4):
    dims = ["N", cin] + [f"S{i}" for i in range(nd)]
    inits, inputs = [], ["x"]
    if op in ("Conv", "ConvTranspose"):
        group = attrs.get("group", 1)
        shape = [cout, cin // group, *kernel] if op == "Conv" else [cin, cout, *kernel]
        w = RNG.standard_normal(shape).astype(np.float32)
        inits.append(numpy_helper.from_array(w, "w"))
        inputs.append("w")
    node = helper.make_node(op, inputs, ["y"], kernel_shape=kernel, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def _check_sizes(model, nd, sizes=SIZES, cin=3):
    """Convert once (dims dynamic), compare with onnxruntime at every size it accepts."""
    res = convert(model, keep_io_layout=True)
    sess = ort.InferenceSession(model.SerializeToString())
    compared = 0
    for n in sizes:
        shape = [2, cin] + [n + i for i in range(nd)]  # a different size per axis
        x = RNG.standard_normal(shape).astype(np.float32)
        want = sess.run(None, {"x": x})[0]
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"])["y"]
        assert got.shape == want.shape, (shape, got.shape, want.shape)
        tol = 1e-4 * max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=str(shape))
        compared += 1
    assert compared >= min(4, len(sizes))
    return res


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_conv_same_upper_strided_every_size(nd, k):
    """SAME_UPPER, stride 2: k=2 and k=4 were VALID (k=2) or a sample's PAD at even samples."""
    sizes = SIZES if nd < 3 else [2, 3, 5, 8]
    attrs = dict(strides=[2] * nd, auto_pad="SAME_UPPER")
    _check_sizes(_window_model("Conv", nd, [k] * nd, attrs), nd, sizes)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool_same_upper_k2_s2_every_size(op):
    attrs = dict(strides=[2, 2], auto_pad="SAME_UPPER")
    _check_sizes(_window_model(op, 2, [2, 2], attrs), 2)


@pytest.mark.parametrize(
    "op, attrs",
    [
        ("Conv", {}),
        ("MaxPool", {}),
        ("AveragePool", {}),
        ("AveragePool", {"count_include_pad": 1}),
        ("LpPool", {}),
    ],
)
def test_strided_same_lower_refused_not_wrong(op, attrs):
    """SAME_LOWER's pads follow the size modulo the stride: refused (was a sample's PAD)."""
    model = _window_model(op, 2, [3, 3], dict(strides=[2, 2], auto_pad="SAME_LOWER", **attrs))
    with pytest.raises(UnsupportedError) as err:
        convert(model, keep_io_layout=True)
    assert err.value.reason_code == "dynamic_shape_unsupported"
    # input_shapes in the API, the flag in the CLI
    assert "pin the spatial sizes" in str(err.value)


@pytest.mark.parametrize(
    "k, attrs",
    [
        (11, {"strides": [2, 2], "pads": [5, 5, 5, 5]}),
        (13, {"strides": [1, 1], "auto_pad": "SAME_UPPER"}),
        (9, {"strides": [3, 3], "auto_pad": "SAME_UPPER"}),
    ],
)
def test_wide_depthwise_every_size(k, attrs):
    """A depthwise conv of more than 25 taps (lowering/conv.py ``_banded_depthwise``) cropped
    and padded its kernel tiles by amounts taken at the sample: wrong at every other size with
    a stride (k=11, s=2), a failed XNNPACK reshape below the kernel (k=13, s=1), refused with
    SAME_UPPER s=3. The single DEPTHWISE_CONV_2D holds at every size."""
    model = _window_model("Conv", 2, [k, k], dict(group=6, **attrs), cin=6, cout=6)
    _check_sizes(model, 2, cin=6)


def test_avg_pool_same_upper_count_include_pad_refused():
    """count_include_pad has no TFLite SAME form: its explicit PAD would be a sample's."""
    attrs = dict(strides=[2, 2], auto_pad="SAME_UPPER", count_include_pad=1)
    with pytest.raises(UnsupportedError) as err:
        convert(_window_model("AveragePool", 2, [3, 3], attrs), keep_io_layout=True)
    assert err.value.reason_code == "dynamic_shape_unsupported"


def test_same_lower_unit_stride_still_converts():
    """Stride 1: SAME_LOWER's pads do not depend on the size (no needless refusal)."""
    attrs = dict(strides=[1, 1], auto_pad="SAME_LOWER")
    _check_sizes(_window_model("Conv", 2, [4, 4], attrs), 2)


@pytest.mark.parametrize(
    "k, attrs",
    [
        (1, {"strides": [2], "pads": [0, 0]}),
        (1, {"strides": [2], "auto_pad": "VALID"}),
        (3, {"strides": [2], "pads": [0, 0]}),
        (3, {"strides": [2], "pads": [1, 1]}),
        (3, {"strides": [3], "pads": [0, 2]}),
        (3, {"strides": [2], "auto_pad": "VALID"}),
    ],
)
def test_lppool_strided_every_size(k, attrs):
    """LpPool's taps (pool3d's slice composition) held one window short at odd sizes."""
    _check_sizes(_window_model("LpPool", 1, [k], attrs), 1, [n for n in SIZES if n >= k])


@pytest.mark.parametrize(
    "op, nd, attrs",
    [
        ("MaxPool", 3, {"strides": [2, 2, 2], "pads": [1, 1, 1, 1, 1, 1]}),
        ("MaxPool", 3, {"strides": [2, 2, 2], "auto_pad": "VALID"}),
        ("MaxPool", 1, {"strides": [2], "dilations": [2], "pads": [1, 1]}),
        ("MaxPool", 2, {"strides": [2, 2], "dilations": [2, 2]}),
    ],
)
def test_slice_composed_pools_every_size(op, nd, attrs):
    sizes = [5, 6, 7, 8, 9] if nd == 3 else [n for n in SIZES if n >= 5]
    _check_sizes(_window_model(op, nd, [3] * nd, attrs), nd, sizes)


@pytest.mark.parametrize(
    "nd, k, attrs",
    [
        (2, 2, {"strides": [2, 2], "ceil_mode": 1, "auto_pad": "VALID"}),
        (1, 2, {"strides": [2], "ceil_mode": 1, "pads": [0, 0]}),
        (2, 3, {"strides": [2, 2], "ceil_mode": 1}),
        (3, 2, {"strides": [2, 2, 2], "ceil_mode": 1}),
        (1, 3, {"strides": [2], "ceil_mode": 1, "dilations": [2]}),
    ],
)
def test_max_pool_ceil_mode_every_size(nd, k, attrs):
    """ceil_mode: k=2, s=2 at even samples was a VALID pool, one window short at odd sizes."""
    sizes = [2, 3, 5, 8] if nd == 3 else [n for n in SIZES if n >= 2 * k - 1]
    _check_sizes(_window_model("MaxPool", nd, [k] * nd, attrs), nd, sizes)


def test_ceil_mode_dropped_last_window_refused():
    """k=2, s=2, end pad 1: onnxruntime drops a last window starting in the end padding at
    odd sizes only; refused with the sizes dynamic (pinned files are unaffected)."""
    attrs = dict(strides=[2, 2], ceil_mode=1, pads=[1, 1, 1, 1])
    with pytest.raises(UnsupportedError) as err:
        convert(_window_model("MaxPool", 2, [2, 2], attrs), keep_io_layout=True)
    assert err.value.reason_code == "dynamic_shape_unsupported"
    assert "ceil_mode" in str(err.value)


def _shape_read_model(dims, end=16):
    """``h = x[:, :end]; out = h * h.shape[1]``: the dim is min(A, end), ``end`` at both
    samples."""
    inits = [
        numpy_helper.from_array(np.array(value, np.int64), name)
        for name, value in (("one", 1), ("st", [0]), ("en", [end]), ("ax", [1]))
    ]
    nodes = [
        helper.make_node("Slice", ["x", "st", "en", "ax"], ["h"]),
        helper.make_node("Shape", ["h"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["d"], axis=0),
        helper.make_node("Cast", ["d"], ["df"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["h", "df"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("end", [16, 2])
@pytest.mark.parametrize("dims", [["N", "A"], [2, "A"]])
def test_shape_dim_clipped_below_both_samples_stays_run_time(dims, end):
    """A dim equal at both samples because both exceed a Slice's end (min(A, 16) = 16 at 64
    and 96) folded to 16: at A = 5 the model multiplied by 16 instead of 5. The per-dim Gather
    fold (dynamic batch, e79f8ed) and the whole-Shape fold (static batch) now check a small
    size first (frontend/inference.py ``_SmallProbe``): sizes 2 and 1, so that a clip at 2
    (``x[:, :2]`` read 2 at A = 1) is kept at run time too."""
    model = _shape_read_model(dims, end)
    res = convert(model, keep_io_layout=True)
    sess = ort.InferenceSession(model.SerializeToString())
    for a in (64, 96, 20, 16, 5, 1):
        x = RNG.standard_normal((2, a)).astype(np.float32)
        want = sess.run(None, {"x": x})[0]
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"])["y"]
        assert got.shape == want.shape, a
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=str(a))


def test_shape_dim_sum_of_two_symbols_stays_run_time():
    """``concat(x, y).shape[1]`` is A + B; the probe (every symbol larger) keeps it apart."""
    nodes = [
        helper.make_node("Concat", ["x", "y"], ["h"], axis=1),
        helper.make_node("Shape", ["h"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["d"], axis=0),
        helper.make_node("Cast", ["d"], ["df"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["h", "df"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "A"]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "B"]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(1, np.int64), "one")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    res = convert(model, keep_io_layout=True)
    sess = ort.InferenceSession(model.SerializeToString())
    for a, b in ((64, 96), (96, 64), (80, 80), (3, 5), (7, 100)):
        feeds = {
            "x": RNG.standard_normal((1, a)).astype(np.float32),
            "y": RNG.standard_normal((1, b)).astype(np.float32),
        }
        want = sess.run(None, feeds)[0]
        got = V.run_litert(res.tflite_bytes, feeds, res.report["io"])["out"]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=str((a, b)))
