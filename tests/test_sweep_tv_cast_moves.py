"""A float64 constant read through data movement and then cast to float32 (rule
``cast_constant_before_moves``): skl2onnx's KNeighborsRegressor keeps its training targets as
a float64 table read by ArrayFeatureExtractor; TFLite's GATHER has no float64 kernel, so the
literal graph was refused. Casting the table first is exact (a move only copies elements)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, make_model
from onnx import helper

ML = "ai.onnx.ml"
N, K, ROWS = 8, 5, 60


def _table(seed=0):
    # float64 values that float32 rounds: a cast before or after must round them alike
    return np.random.default_rng(seed).normal(0, 100, ROWS) + 1 / 3


def _knn_tail():
    """skl2onnx's KNeighborsRegressor tail: Flatten(neighbour ids) -> AFE(float64 targets)
    -> Reshape [N, K] -> Cast(float32) -> ReduceMean over the neighbours."""
    nodes = [
        helper.make_node("Flatten", ["idx"], ["flat"]),
        helper.make_node("ArrayFeatureExtractor", ["table", "flat"], ["z"], domain=ML),
        helper.make_node("Reshape", ["z", "shape"], ["zr"]),
        helper.make_node("Cast", ["zr"], ["zf"], to=1),
        helper.make_node("ReduceMean", ["zf"], ["y"], axes=[1], keepdims=1),
    ]
    inits = {"table": _table(), "shape": np.array([-1, K], np.int64)}
    return make_model(
        nodes,
        [("idx", np.int64, (N, K))],
        [("y", np.float32, (N, 1))],
        initializers=inits,
        opset={"": 17, ML: 1},
    )


def test_knn_regressor_tail_float64_targets():
    rng = np.random.default_rng(1)
    feeds = {"idx": rng.integers(0, ROWS, (N, K)).astype(np.int64)}
    # a mean of K signed float32 values: summation order moves it by a few ulps of sum|x|
    # (|x| <= ~300), i.e. up to ~1e-4 absolute: atol 1e-6 scaled by max|y|
    check_conversion(_knn_tail(), feeds=feeds, atol=1e-6, rtol=0)


@pytest.mark.parametrize("axis", [0, 1])
def test_gather_transpose_of_float64_constant(axis):
    """Gather (default domain) then Transpose of a float64 [6, 7] constant, cast to float32."""
    table = np.random.default_rng(2).normal(0, 10, (6, 7)) + 1 / 7
    nodes = [
        helper.make_node("Gather", ["table", "idx"], ["g"], axis=axis),
        helper.make_node("Transpose", ["g"], ["t"], perm=[1, 0]),
        helper.make_node("Cast", ["t"], ["y"], to=1),
    ]
    size = 3
    out_shape = (7, size) if axis == 0 else (size, 6)
    model = make_model(
        nodes,
        [("idx", np.int64, (size,))],
        [("y", np.float32, out_shape)],
        initializers={"table": table},
    )
    feeds = {"idx": np.array([4, 0, 4], np.int64)}
    check_conversion(model, feeds=feeds, atol=0, rtol=0)


def test_shared_constant_keeps_its_other_reader():
    """Two chains read the same float64 table: each gets its own cast copy."""
    table = np.random.default_rng(3).normal(0, 10, ROWS) + 1 / 3
    nodes = [
        helper.make_node("Gather", ["table", "idx"], ["a"]),
        helper.make_node("Cast", ["a"], ["y1"], to=1),
        helper.make_node("Gather", ["table", "idx2"], ["b"]),
        helper.make_node("Cast", ["b"], ["y2"], to=1),
    ]
    model = make_model(
        nodes,
        [("idx", np.int64, (N,)), ("idx2", np.int64, (N,))],
        [("y1", np.float32, (N,)), ("y2", np.float32, (N,))],
        initializers={"table": table},
    )
    rng = np.random.default_rng(4)
    feeds = {k: rng.integers(0, ROWS, N).astype(np.int64) for k in ("idx", "idx2")}
    check_conversion(model, feeds=feeds, atol=0, rtol=0)
