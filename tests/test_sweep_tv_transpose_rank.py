"""8-D window partitions (torchvision's video Swin: ``[B, D/wd, wd, H/wh, wh, W/ww, ww, C]``
permuted) as a TRANSPOSE XNNPACK takes: unit axes dropped and axes that stay adjacent merged,
rank <= 6 (rule ``transpose_within_xnnpack_rank``). The 8-D TRANSPOSE and its RESHAPEs ran
outside the delegate (six partitions on a small Swin3D, two after)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

from onnx2tflite_direct.transpose_rank import merged_permutation

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_partitions import count_partitions  # noqa: E402

F = np.float32


@pytest.mark.parametrize(
    "windows, perm",
    [
        # Swin3D's window partition (batch 1, one temporal window): unit axes 0 and 1
        ((1, 1, 4, 4, 4, 4, 4, 8), [0, 1, 3, 5, 2, 4, 6, 7]),
        # two temporal windows, the reverse partition's order
        ((1, 2, 2, 2, 4, 2, 4, 8), [0, 1, 4, 2, 5, 3, 6, 7]),
    ],
)
def test_eight_dim_window_partition(windows, perm):
    frames = windows[1] * windows[2]
    h, w, c = windows[3] * windows[4], windows[5] * windows[6], windows[7]
    out_shape = [windows[p] for p in perm]
    flat = (int(np.prod(out_shape[:-2])), out_shape[-2] * out_shape[-1])
    nodes = [
        helper.make_node("Reshape", ["x", "win"], ["xw"]),
        helper.make_node("Transpose", ["xw"], ["t"], perm=perm),
        helper.make_node("Reshape", ["t", "flat"], ["f"]),
        helper.make_node("Relu", ["f"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("x", F, (1, frames, h, w, c))],
        [("y", F, flat)],
        initializers={
            "win": np.array(windows, np.int64),
            "flat": np.array(flat, np.int64),
        },
    )
    x = np.random.default_rng(0).standard_normal((1, frames, h, w, c)).astype(F)
    chk = check_conversion(model, feeds={"x": x}, atol=0, rtol=0)
    parts = count_partitions(chk.tflite_bytes)
    assert parts["partitions"] == 1 and parts["outside"] == {}, parts


def test_merged_permutation_moves_blocks():
    shape, perm = [1, 4, 2, 4, 2, 4, 2, 8], [0, 1, 3, 5, 2, 4, 6, 7]
    small_shape, small_perm = merged_permutation(shape, perm)
    assert (small_shape, small_perm) == ([4, 2, 4, 2, 4, 16], [0, 2, 4, 1, 3, 5])
    x = np.arange(np.prod(shape)).reshape(shape)
    want = x.transpose(perm).reshape(-1)
    got = x.reshape(small_shape).transpose(small_perm).reshape(-1)
    np.testing.assert_array_equal(got, want)
