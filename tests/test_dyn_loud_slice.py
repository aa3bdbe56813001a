"""A Slice that clips a dynamic axis (``x[..., :100]``) in a file converted with that axis
dynamic: every run-time size gives onnxruntime's answer, above the clip too.

Before the fix the lowering at the samples (64 and 96, both below the clip) normalized the end
100 as "to the end" (it is past both samples' sizes), so the file sliced nothing at L > 100:
148 columns at L = 150 where onnxruntime gives 100, silently. The end is now kept as the end
itself when the axis varies; LiteRT's STRIDED_SLICE clamps it to the run-time size.

When the samples both exceed the clip (a stride-128 window after ``x[..., :100]`` is sampled
at 512 and 576), the length after the slice is the same at both and came out fixed in the
file: exact from the clip up, failing in LiteRT below it (L <= 99), silently for the user.
Now the symbol is sampled again on both sides of the clip (``dynamic_sample_plans.
_below_clips``), so the length stays a run-time value, exact at every size; where the model
itself takes no size below the clip, the fixed length stays with a warning naming the slice.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_at_sizes, convert, make_model
from onnx import helper

# run-time sizes: small ones, around the clip, far above it
SIZES = (3, 7, 16, 64, 99, 100, 101, 150, 700)


def _clipped(tail: str, clip: int = 100, start: int = 0) -> object:
    rng = np.random.default_rng(7)
    inits = {
        "st": np.array([start], np.int64),
        "en": np.array([clip], np.int64),
        "ax": np.array([2], np.int64),
    }
    nodes = [helper.make_node("Slice", ["x", "st", "en", "ax"], ["c"])]
    if tail == "conv":
        inits["w"] = rng.standard_normal((4, 2, 3)).astype(np.float32)
        nodes.append(helper.make_node("Conv", ["c", "w"], ["y"], pads=[1, 1]))
    elif tail == "strided_conv":
        inits["w"] = rng.standard_normal((4, 2, 3)).astype(np.float32)
        nodes.append(helper.make_node("Conv", ["c", "w"], ["y"], strides=[2], pads=[1, 1]))
    elif tail == "stride128":
        inits["w"] = rng.standard_normal((4, 2, 16)).astype(np.float32)
        nodes.append(helper.make_node("Conv", ["c", "w"], ["y"], strides=[128]))
    elif tail == "stride50":
        inits["w"] = rng.standard_normal((4, 2, 3)).astype(np.float32)
        nodes.append(helper.make_node("Conv", ["c", "w"], ["y"], strides=[50]))
    elif tail == "reshape200":  # the model itself takes the full clip only
        inits["shape"] = np.array([1, 2 * clip], np.int64)
        nodes.append(helper.make_node("Reshape", ["c", "shape"], ["f"]))
        nodes.append(helper.make_node("Relu", ["f"], ["y3"]))
        nodes.append(helper.make_node("Unsqueeze", ["y3", "ax"], ["y"]))
    elif tail == "pool":
        nodes.append(helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[3], strides=[3]))
    else:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    return make_model(
        nodes, [("x", np.float32, (1, 2, "L"))], [("y", np.float32, (1, None, None))], inits
    )


@pytest.mark.parametrize("tail", ["relu", "conv", "strided_conv", "pool"])
def test_clip_above_the_samples_holds_at_every_size(tail):
    model = _clipped(tail)
    res = convert(model)
    assert res.report["dynamic_shapes"]["symbols"][0]["samples"] == [64, 96]
    assert not [w for w in res.report["warnings"] if "cuts a dynamic axis" in w]
    check_at_sizes(res, model, [(1, 2, n) for n in SIZES])


@pytest.mark.parametrize(
    ("tail", "sizes"),
    [
        ("stride128", (16, 17, 50, 99, 100, 101, 150, 700)),  # one window at every size
        ("stride50", (3, 20, 52, 53, 99, 100, 101, 700)),  # 1 window below 53, 2 from it
    ],
)
def test_clip_below_both_samples_is_sampled_on_both_sides_and_exact(tail, sizes):
    model = _clipped(tail)
    res = convert(model)
    lo, hi = res.report["dynamic_shapes"]["symbols"][0]["samples"]
    assert lo < 100 < hi  # (the declared samples, then 512 and 576, all pass the clip)
    assert not [w for w in res.report["warnings"] if "cuts a dynamic axis" in w]
    check_at_sizes(res, model, [(1, 2, n) for n in sizes])


def test_a_clip_the_model_needs_whole_stays_fixed_with_a_warning():
    model = _clipped("reshape200", clip=16)
    res = convert(model)
    (line,) = [w for w in res.report["warnings"] if "cuts a dynamic axis" in w]
    assert "'Slice:c'" in line and "L below about 16 may fail" in line
    assert "--input-shape" in line
    check_at_sizes(res, model, [(1, 2, n) for n in (16, 17, 64, 700)])


def test_clip_with_a_start_holds_at_every_size():
    model = _clipped("conv", clip=90, start=5)
    res = convert(model)
    check_at_sizes(res, model, [(1, 2, n) for n in (8, 16, 64, 94, 95, 96, 200)])
