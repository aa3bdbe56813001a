"""Adversarial edge cases for the graph rewrites and lowerings that claim exactness
(float_masks, float_indices, head_projection, reversed slices, the exact int8 product):
values the authors' own tests do not reach (mask values other than 0/1, integers past 2**24,
infinities, ids at the table bounds, broadcasting, batch > 1, reshapes that are not head
splits, zero points at the ends of the lattice). Each is compared with onnxruntime: exactly
where the rule claims exactness, otherwise within the float reference's own rounding.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from harness import check_conversion, convert, make_model, op_histogram
from onnx import TensorProto, helper

from onnx2tflite_direct import validate as V

F = np.float32
I64 = np.int64
node = helper.make_node


def _exact(model, feeds, **opts):
    """check_conversion with zero tolerance (the rule claims bit-exact results)."""
    return check_conversion(model, feeds=feeds, atol=0.0, rtol=0.0, **opts)


# ---------------------------------------------------------------- float_mask_logic


def test_mask_values_other_than_0_1_and_past_2_24():
    """Cast(int64 -> bool) of 2, -1, 2**40, INT64_MIN; Where between 0 and a finite fill."""
    m = np.array([[0, 1, 2, -1], [2**40, -(2**63), 0, 7]], I64)
    model = make_model(
        [
            node("Cast", ["m"], ["b"], to=TensorProto.BOOL),
            node("Not", ["b"], ["nb"]),
            node("Where", ["nb", "ninf", "zero"], ["y"]),
        ],
        [("m", I64, [2, 4])],
        [("y", F, [2, 4])],
        {"ninf": np.array(-3.0e38, F), "zero": np.array(0.0, F)},
    )
    chk = _exact(model, {"m": m})
    assert "SELECT_V2" not in chk.ops and "LOGICAL_NOT" not in chk.ops, chk.ops


@pytest.mark.parametrize("op", ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"])
def test_comparisons_of_integers_beyond_float32(op):
    """x near 2**24 and far past it against the largest constant the rule takes: float32(x)
    rounds (2**24 + 1 -> 2**24) but the order against c and c +- 1 must stay."""
    c = 2**24 - 3
    x = np.array([[c - 2, c - 1, c, c + 1, c + 2, c + 3, c + 4, 2**40, -(2**40), -c]], I64)
    model = make_model(
        [
            node(op, ["x", "c"], ["b"]),
            node("Where", ["b", "one", "two"], ["y"]),
        ],
        [("x", I64, list(x.shape))],
        [("y", F, list(x.shape))],
        {"c": np.array(c, I64), "one": np.array(1.5, F), "two": np.array(-2.5, F)},
    )
    chk = _exact(model, {"x": x})
    assert "SELECT_V2" not in chk.ops, chk.ops


def test_where_constant_branch_broadcast_to_a_larger_shape():
    """Where(c [1, 4], zeros [3, 4], 5): the zero term is left out, the output keeps [3, 4]."""
    model = make_model(
        [node("Cast", ["m"], ["b"], to=TensorProto.BOOL), node("Where", ["b", "z", "k"], ["y"])],
        [("m", I64, [1, 4])],
        [("y", F, [3, 4])],
        {"z": np.zeros((3, 4), F), "k": np.array(5.0, F)},
    )
    _exact(model, {"m": np.array([[0, 3, 0, -1]], I64)})


@pytest.mark.parametrize("const_first", [True, False])
def test_where_runtime_branch_infinities_and_broadcast(const_first):
    """Where(mask, -inf, S) / Where(mask, S, -inf) with S holding +-inf, -0.0 and FLT_MAX, the
    mask [B, 1, S] broadcast against scores [B, 3, S] (batch 2)."""
    rng = np.random.default_rng(3)
    s = rng.standard_normal((2, 3, 5)).astype(F)
    s[0, 0, :4] = (np.inf, -np.inf, np.finfo(F).max, -np.finfo(F).max)
    s[1, 2, :2] = (np.inf, -np.inf)
    m = np.array([[[1, 0, 2, 0, -1]], [[0, 0, 1, 1, 0]]], I64)
    branches = ["ninf", "s"] if const_first else ["s", "ninf"]
    model = make_model(
        [node("Cast", ["m"], ["b"], to=TensorProto.BOOL), node("Where", ["b", *branches], ["y"])],
        [("m", I64, [2, 1, 5]), ("s", F, [2, 3, 5])],
        [("y", F, [2, 3, 5])],
        {"ninf": np.array(-np.inf, F)},
    )
    chk = _exact(model, {"m": m, "s": s})
    assert "SELECT_V2" in chk.ops, chk.ops  # a run-time branch keeps its select


def test_where_runtime_branch_with_an_array_constant():
    """The constant branch an array (per-position fill values), c broadcast over a batch."""
    rng = np.random.default_rng(4)
    s = rng.standard_normal((2, 4)).astype(F) * 100
    k = np.array([-1e30, 0.0, 3.25, -7.0], F)
    model = make_model(
        [node("Cast", ["m"], ["b"], to=TensorProto.BOOL), node("Where", ["b", "k", "s"], ["y"])],
        [("m", I64, [2, 4]), ("s", F, [2, 4])],
        [("y", F, [2, 4])],
        {"k": k},
    )
    _exact(model, {"m": np.array([[1, 0, 1, 0], [0, 5, 1, 1]], I64), "s": s})


# ---------------------------------------------------------------- gather_one_hot


def test_float_ids_at_the_table_bounds_and_fractions():
    """Float ids -> Cast(int64) -> Gather: ids -V, V - 1, -1, fractions both sides of 0
    (truncation toward zero), batch 2."""
    rng = np.random.default_rng(5)
    table = rng.standard_normal((7, 3)).astype(F)
    ids = np.array([[-7.0, 6.0, -1.0, -0.9, 0.9, 5.99], [-6.5, 3.0, -2.0, 0.0, -0.0, 2.5]], F)
    model = make_model(
        [node("Cast", ["x"], ["i"], to=TensorProto.INT64), node("Gather", ["t", "i"], ["y"])],
        [("x", F, [2, 6])],
        [("y", F, [2, 6, 3])],
        {"t": table},
    )
    chk = _exact(model, {"x": ids})
    assert "GATHER" not in chk.ops, chk.ops


# ---------------------------------------------------------------- fused_head_projection


def _projections(reshape_shapes, perms, biases, x_shape=(2, 5, 8), extra_reader=False):
    """x -> MatMul(W_i) [-> Add(b_i)] -> Reshape(shape_i) -> Transpose(perm_i) per chain."""
    rng = np.random.default_rng(6)
    k = x_shape[-1]
    nodes, inits, outs = [], {}, []
    for j, (shape, perm, bias) in enumerate(zip(reshape_shapes, perms, biases, strict=True)):
        inits[f"w{j}"] = rng.standard_normal((k, 8)).astype(F)
        nodes.append(node("MatMul", ["x", f"w{j}"], [f"p{j}"]))
        cur = f"p{j}"
        if bias:
            inits[f"b{j}"] = rng.standard_normal(8).astype(F)
            nodes.append(node("Add", [f"b{j}", cur], [f"a{j}"]))
            cur = f"a{j}"
        inits[f"s{j}"] = np.array(shape, I64)
        nodes.append(node("Reshape", [cur, f"s{j}"], [f"r{j}"]))
        nodes.append(node("Transpose", [f"r{j}"], [f"y{j}"], perm=list(perm)))
        split = np.empty((*x_shape[:-1], 8))
        target = [x_shape[i] if v == 0 else v for i, v in enumerate(shape)]
        outs.append((f"y{j}", F, list(split.reshape(target).transpose(perm).shape)))
    if extra_reader:
        nodes.append(node("Relu", ["p0"], ["extra"]))
        outs.append(("extra", F, [*x_shape[:-1], 8]))
    return make_model(nodes, [("x", F, list(x_shape))], outs, inits)


def test_head_split_with_biases_present_and_absent_batch_2():
    """Q (bias, Add(b, y) order), K^T (no bias), V (bias) on a batch of 2: numerics."""
    model = _projections(
        [[2, 5, 2, 4], [0, 0, 2, 4], [2, 5, -1, 4]],
        [(0, 2, 1, 3), (0, 2, 3, 1), (0, 2, 1, 3)],
        [True, False, True],
    )
    chk = check_conversion(model, seed=1)
    assert chk.ops["FULLY_CONNECTED"] + chk.ops.get("BATCH_MATMUL", 0) == 1, chk.ops


def test_reshapes_that_are_not_last_axis_splits_keep_their_meaning():
    """[2, 5, 8] -> [5, 2, 2, 4] (a reshuffle of rows with the same element count) and a
    [2, 5, 8] -> [2, 5, 4, 2] d/H swap mixed with a proper split: compared with onnxruntime."""
    model = _projections(
        [[5, 2, 2, 4], [2, 5, 2, 4], [2, 5, 2, 4]],
        [(0, 2, 1, 3), (0, 2, 1, 3), (0, 2, 3, 1)],
        [False, True, False],
    )
    check_conversion(model, seed=2)
    model = _projections([[2, 5, 4, 2], [2, 5, 2, 4]], [(0, 2, 1, 3), (0, 2, 1, 3)], [True, True])
    check_conversion(model, seed=3)


def test_projection_read_by_another_node_is_left_alone():
    model = _projections(
        [[2, 5, 2, 4], [2, 5, 2, 4]],
        [(0, 2, 1, 3), (0, 2, 1, 3)],
        [False, False],
        extra_reader=True,
    )
    check_conversion(model, seed=4)


# ---------------------------------------------------------------- reversed slices


def _sliced_shape(shape, starts, ends, axes, steps):
    index = [slice(None)] * len(shape)
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        index[a] = slice(s, e, st)
    return np.empty(shape)[tuple(index)].shape


@pytest.mark.parametrize(
    "starts,ends,axes,steps",
    [
        ([-1], [-(2**63)], [0], [-2]),  # axis 0, step -2, whole range
        ([4, 1], [0, 3], [1, 2], [-2, 1]),  # partial range, another axis sliced
        ([100], [-100], [-1], [-3]),  # out-of-range ends clamp, negative axis
        ([2], [1], [3], [-1]),  # one element
    ],
)
def test_reversed_slices_on_a_channel_last_tensor(starts, ends, axes, steps):
    """A Conv output (stored channel-last) sliced with a negative step on each axis."""
    rng = np.random.default_rng(7)
    model = make_model(
        [
            node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            node("Slice", ["c", "st", "en", "ax", "sp"], ["y"]),
        ],
        [("x", F, [3, 2, 6, 5])],
        [("y", F, list(_sliced_shape((3, 6, 6, 5), starts, ends, axes, steps)))],
        {
            "w": rng.standard_normal((6, 2, 3, 3)).astype(F),
            "st": np.array(starts, I64),
            "en": np.array(ends, I64),
            "ax": np.array(axes, I64),
            "sp": np.array(steps, I64),
        },
    )
    chk = check_conversion(model, seed=5)
    assert "STRIDED_SLICE" not in chk.ops, chk.ops


# ---------------------------------------------------------------- exact int8 product


@pytest.mark.parametrize("sign", [1.0, -1.0, 0.0])
@pytest.mark.parametrize("w_dtype,w_zp", [(np.int8, 0), (np.uint8, 0), (np.uint8, 255)])
def test_exact_dense_lattice_ends(sign, w_dtype, w_zp):
    """DynamicQuantizeLinear of all-positive (zp 0), all-negative (zp 255) and constant-zero
    rows, weights at -128/127 or uint8 0/255 with zero points 0 and 255: the int32 sum
    bit-identical to onnxruntime on XNNPACK and the builtin kernels."""
    rng = np.random.default_rng(8)
    k, n, rows = 64, 16, 3
    info = np.iinfo(w_dtype)
    w = rng.integers(info.min, info.max + 1, (k, n)).astype(w_dtype)
    w[0, :] = info.min
    w[1, :] = info.max
    x = (np.abs(rng.standard_normal((rows, k))) * sign + 0.0).astype(F)
    model = make_model(
        [
            node("DynamicQuantizeLinear", ["x"], ["q", "s", "zp"]),
            node("MatMulInteger", ["q", "w", "zp", "w_zp"], ["acc_i"]),
            node("Cast", ["acc_i"], ["acc"], to=TensorProto.FLOAT),
        ],
        [("x", F, [rows, k])],
        [("acc", F, [rows, n])],
        {"w": w, "w_zp": np.array(w_zp, w_dtype)},
    )
    res = convert(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = {"acc": sess.run(None, {"x": x})[0]}
    for xnn in (True, False):
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report.get("io"), use_xnnpack=xnn)
        np.testing.assert_array_equal(got["acc"], expected["acc"])
    assert op_histogram(res.tflite_bytes)["FULLY_CONNECTED"] >= 1


def test_mask_logic_with_a_bool_graph_output_and_mixed_logic():
    """And/Or/Xor/Not of cast masks (values 2, -1) and a comparison; one intermediate bool is
    also a graph output (it keeps the bool lowering), the Where reads the rest."""
    m = np.array([[0, 1, 2, -1, 0, 3], [1, 0, 0, -5, 2, 0]], I64)
    t = np.array([[5, 4, 3, 9, 0, 2], [0, 1, 2, 3, 4, 5]], I64)
    model = make_model(
        [
            node("Cast", ["m"], ["b"], to=TensorProto.BOOL),
            node("Less", ["t", "three"], ["lt"]),
            node("And", ["b", "lt"], ["a"]),
            node("Xor", ["b", "lt"], ["x"]),
            node("Or", ["a", "x"], ["o"]),
            node("Not", ["o"], ["no"]),
            node("Where", ["no", "k", "minus"], ["y"]),
        ],
        [("m", I64, [2, 6]), ("t", I64, [2, 6])],
        [("y", F, [2, 6]), ("a", TensorProto.BOOL, [2, 6])],
        {"three": np.array(3, I64), "k": np.array(0.5, F), "minus": np.array(-np.inf, F)},
    )
    _exact(model, {"m": m, "t": t})


@pytest.mark.parametrize("also_read", [False, True])
def test_cast_of_a_comparison_as_a_graph_output(also_read):
    """Greater(int64, c) -> Cast(float) whose result is a graph output (once crashed: the
    removed Cast took the output's name with it); with ``also_read`` a Mul reads it too."""
    t = np.array([[5, 4, 3, 9, 0, 2, -(2**40), 2**40]], I64)
    nodes = [node("Greater", ["t", "three"], ["g"]), node("Cast", ["g"], ["y"], to=1)]
    outputs = [("y", F, [1, 8])]
    if also_read:
        nodes.append(node("Mul", ["y", "k"], ["z"]))
        outputs.append(("z", F, [1, 8]))
    model = make_model(
        nodes,
        [("t", I64, [1, 8])],
        outputs,
        {"three": np.array(3, I64), "k": np.array(0.5, F)},
    )
    _exact(model, {"t": t})


def test_tf_negative_id_wrap_chain():
    """tf2onnx's ``where(i < 0, i + V, i)`` as Less/Not/Cast/Mul/Add on the cast ids."""
    rng = np.random.default_rng(9)
    v = 6
    table = rng.standard_normal((v, 4)).astype(F)
    ids = np.array([[-6.0, -1.5, 5.0, 0.2, -3.0, 2.7]], F)
    model = make_model(
        [
            node("Cast", ["x"], ["i"], to=TensorProto.INT32),
            node("Cast", ["i"], ["f"], to=TensorProto.FLOAT),
            node("Less", ["f", "zero"], ["neg"]),
            node("Not", ["neg"], ["pos"]),
            node("Cast", ["neg"], ["negi"], to=TensorProto.INT32),
            node("Mul", ["negi", "vv"], ["shift"]),
            node("Add", ["i", "shift"], ["w"]),
            node("Gather", ["t", "w"], ["y"]),
        ],
        [("x", F, [1, 6])],
        [("y", F, [1, 6, 4])],
        {"zero": np.array(0.0, F), "vv": np.array(v, np.int32), "t": table},
    )
    chk = _exact(model, {"x": ids})
    assert "GATHER" not in chk.ops, chk.ops


def test_gemm_form_and_symbolic_dims():
    """onnxruntime's Reshape [B*S, K] -> Gemm(transB, C [1, N]) -> Reshape form; and MatMul
    chains on [B, S] symbolic dims whose Reshape copies them (0, 0) or does not (5, -1)."""
    rng = np.random.default_rng(10)
    nodes, inits, outs = [node("Reshape", ["x", "flat"], ["x2"])], {}, []
    inits["flat"] = np.array([10, 8], I64)
    for j, perm in enumerate([(0, 2, 1, 3), (0, 2, 3, 1)]):
        inits[f"w{j}"] = rng.standard_normal((8, 8)).astype(F)
        inits[f"c{j}"] = rng.standard_normal((1, 8)).astype(F)
        inits[f"s{j}"] = np.array([2, 5, 2, 4], I64)
        nodes += [
            node("Gemm", ["x2", f"w{j}", f"c{j}"], [f"g{j}"], transB=1),
            node("Reshape", [f"g{j}", f"s{j}"], [f"r{j}"]),
            node("Transpose", [f"r{j}"], [f"y{j}"], perm=list(perm)),
        ]
        outs.append((f"y{j}", F, list(np.empty((2, 5, 2, 4)).transpose(perm).shape)))
    check_conversion(make_model(nodes, [("x", F, [2, 5, 8])], outs, inits), seed=6)
    # a [5, B, H, d] reshuffle of symbolic [B, 5, 8] beside a (0, 0) split
    nodes, inits = [], {}
    for j, shape in enumerate([[0, 0, 2, 4], [5, -1, 2, 4]]):
        inits[f"w{j}"] = rng.standard_normal((8, 8)).astype(F)
        inits[f"s{j}"] = np.array(shape, I64)
        nodes += [
            node("MatMul", ["x", f"w{j}"], [f"p{j}"]),
            node("Reshape", [f"p{j}", f"s{j}"], [f"r{j}"]),
            node("Transpose", [f"r{j}"], [f"y{j}"], perm=[0, 2, 1, 3]),
        ]
    outs = [("y0", F, ["B", 2, 5, 4]), ("y1", F, [5, 2, "B", 4])]
    model = make_model(nodes, [("x", F, ["B", 5, 8])], outs, inits)
    check_conversion(model, seed=7)


@pytest.mark.parametrize("lo", [0, -1, -127, -128, -254, -255])
def test_lattice_codes_at_the_int8_and_int32_ends(lo):
    """lattice_int8.lattice_codes with weights -128 / +-255 (uint8 weights minus a zero point
    of 0 or 255: several int8 parts), biases far past one column and at multiples of the lattice
    end, every lattice from [0, 255] to [-255, 0]: the code rows times the lattice row are the
    integer sum exactly, every tail value lies on the lattice."""
    from onnx2tflite_direct.lowering import lattice_int8

    rng = np.random.default_rng(11)
    w = rng.integers(-255, 256, (7, 12))
    w[0, :] = -128
    w[1, :] = 255
    w[2, :] = -255
    big = lo if -lo > lo + 255 else lo + 255
    huge = np.asarray([2**31 - 1, -(2**31) + 1, 0, 0, 0, 0, 0])
    # 2**31 / 255 needs ~66000 columns: past the builtin kernel's row-sum lanes, the float form
    assert lattice_int8.lattice_codes(w, huge, lo, lo + 255) is None
    bias = np.asarray([2**18 + 1, -(2**18) - 1, big * 100, -big * 3 - 1, 254, -254, 0])
    plan = lattice_int8.lattice_codes(w, bias, lo, lo + 255)
    assert plan is not None
    codes, tail, copies = plan
    x = rng.integers(lo, lo + 256, (9, 12))
    x[0, :] = lo
    x[1, :] = lo + 255
    row = np.concatenate([np.tile(x, copies), np.broadcast_to(tail, (9, len(tail)))], 1)
    assert tail[-2:] == [lo, lo + 255] and min(tail) >= lo and max(tail) <= lo + 255
    assert codes.dtype == np.int8 and codes.min() >= -127
    got = row.astype(np.int64) @ codes.T.astype(np.int64)
    np.testing.assert_array_equal(got, x @ w.T + bias)


@pytest.mark.parametrize("x_zp", [0, 255])
@pytest.mark.parametrize("bias", [True, False])
def test_lattice_matmul_at_zero_point_ends(x_zp, bias, monkeypatch):
    """A QDQ MatMul (uint8 activations with zero point 0 or 255: lattices [0, 255] and
    [-255, 0]; int8 weights with rows of -128 and 127; an int32 bias of up to 2**20) on the
    int8 kernel: its requantized output equals onnxruntime's Q/DQ semantics on every element,
    with XNNPACK and the builtin kernels."""
    from onnx2tflite_direct.lowering import lattice_int8

    monkeypatch.setattr(lattice_int8, "int8_pays", lambda *a, **k: True)
    rng = np.random.default_rng(12)
    k, n, rows = 96, 64, 6
    w = rng.integers(-128, 128, (k, n)).astype(np.int8)
    w[0], w[1] = -128, 127
    nodes = [
        node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        node("DequantizeLinear", ["w", "ws"], ["wd"]),
        node("MatMul", ["xd", "wd"], ["m"]),
    ]
    inits = {
        "xs": np.array(0.02, F),
        "xz": np.array(x_zp, np.uint8),
        "w": w,
        "ws": np.array(0.01, F),
        "ys": np.array(0.05, F),
        "yz": np.array(128, np.uint8),
    }
    cur = "m"
    if bias:
        inits["b"] = rng.integers(-(2**20), 2**20, n).astype(np.int32)
        inits["bs"] = np.array(0.0002, F)
        nodes += [node("DequantizeLinear", ["b", "bs"], ["bd"]), node("Add", ["m", "bd"], ["mb"])]
        cur = "mb"
    nodes += [
        node("QuantizeLinear", [cur, "ys", "yz"], ["yq"]),
        node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
    ]
    model = make_model(nodes, [("x", F, [rows, k])], [("y", F, [rows, n])], inits, opset=13)
    x = (rng.standard_normal((rows, k)) * 3).astype(F)
    # the Q/DQ semantics in float64 (onnxruntime's unfused float32 MatMul rounds near-ties of
    # the requantization either way; its fused QLinearMatMul and this reference agree)
    f64 = np.float64
    xq = np.clip(np.round(x / F(0.02)) + x_zp, 0, 255).astype(np.int64) - x_zp
    y = (xq @ w.astype(np.int64)) * f64(F(0.02)) * f64(F(0.01))
    if bias:
        y += inits["b"].astype(f64) * f64(F(0.0002))
    ref = ((np.clip(np.round(y / f64(F(0.05))) + 128, 0, 255) - 128) * f64(F(0.05))).astype(F)
    res = convert(model)
    assert op_histogram(res.tflite_bytes)["FULLY_CONNECTED"] == 1
    for xnn in (True, False):
        got = V.run_litert(res.tflite_bytes, {"x": x}, res.report.get("io"), use_xnnpack=xnn)
        np.testing.assert_array_equal(got["y"], ref)


def test_where_infinities_on_the_builtin_kernels():
    """float_mask_logic once wrote infinities by overflowing MUL; LiteRT's builtin float kernels
    clamp MUL/ADD results to +-FLT_MAX, so a -inf fill came out -3.4e38 without XNNPACK. An
    infinite constant or a run-time branch now keeps the SELECT_V2."""
    m = make_model(
        [
            node("Cast", ["m"], ["b"], to=TensorProto.BOOL),
            node("Where", ["b", "k", "s"], ["y"]),
            node("Where", ["b", "k", "zero"], ["y2"]),
        ],
        [("m", I64, [1, 4]), ("s", F, [1, 4])],
        [("y", F, [1, 4]), ("y2", F, [1, 4])],
        {"k": np.array(-np.inf, F), "zero": np.array(0.0, F)},
    )
    feeds = {"m": np.array([[1, 0, 1, 0]], I64), "s": np.array([[3, np.inf, 1, -np.inf]], F)}
    ref = ort.InferenceSession(m.SerializeToString()).run(None, feeds)
    res = convert(m)
    got = V.run_litert(res.tflite_bytes, feeds, res.report.get("io"), use_xnnpack=False)
    np.testing.assert_array_equal(got["y"], ref[0])
    np.testing.assert_array_equal(got["y2"], ref[1])


@pytest.mark.parametrize("index", [0, -1])
def test_gather_scalar_on_a_length_1_axis(index):
    x = np.random.default_rng(13).standard_normal((2, 1, 5)).astype(F)
    model = make_model(
        [node("Gather", ["x", "i"], ["y"], axis=1)],
        [("x", F, [2, 1, 5])],
        [("y", F, [2, 5])],
        {"i": np.array(index, I64)},
    )
    chk = _exact(model, {"x": x})
    assert "GATHER" not in chk.ops, chk.ops


@pytest.mark.parametrize("order", ["in_order", "reversed", "repeated"])
def test_gathernd_reads_every_element_only_when_in_order(order):
    """Full-depth constant GatherND indices: in order it is a Reshape; reversed or repeated
    element lists must keep their meaning."""
    x = np.random.default_rng(14).standard_normal((2, 3)).astype(F)
    idx = np.stack(np.meshgrid(np.arange(2), np.arange(3), indexing="ij"), -1).reshape(1, 6, 2)
    if order == "reversed":
        idx = idx[:, ::-1]
    elif order == "repeated":
        idx = np.concatenate([idx[:, :3], idx[:, :3]], 1)
    model = make_model(
        [node("GatherND", ["x", "i"], ["y"])],
        [("x", F, [2, 3])],
        [("y", F, [1, 6])],
        {"i": np.ascontiguousarray(idx).astype(I64)},
    )
    chk = _exact(model, {"x": x})
    if order == "in_order":
        assert "GATHER_ND" not in chk.ops, chk.ops


def test_gather_elements_folds_with_negative_indices():
    """GatherElements of constants (folded with numpy), indices shorter than the data and
    negative, added to a run-time input."""
    data = np.arange(12, dtype=F).reshape(3, 4)
    idx = np.array([[-1, 0, 2], [1, -3, 0]], I64)
    model = make_model(
        [node("GatherElements", ["d", "i"], ["g"], axis=1), node("Add", ["g", "x"], ["y"])],
        [("x", F, [2, 3])],
        [("y", F, [2, 3])],
        {"d": data, "i": idx},
    )
    _exact(model, {"x": np.random.default_rng(15).standard_normal((2, 3)).astype(F)})


def test_mirrored_array_comparisons_after_integer_movement():
    """Constant-first comparisons (c < x, c >= x) with a broadcast constant array, on an
    int32 input moved by Unsqueeze/Expand before the comparison (the movement runs on the
    float twin), uint8 Cast to bool, batch 2."""
    x = np.array([[-3, 0, 7, 2**24 + 5], [5, -(2**30), 1, 2]], np.int32)
    u = np.array([[0, 255, 1, 0], [2, 0, 0, 128]], np.uint8)
    model = make_model(
        [
            node("Unsqueeze", ["x", "ax"], ["xu"]),
            node("Expand", ["xu", "shp"], ["xe"]),
            node("Less", ["c", "xe"], ["gt"]),
            node("GreaterOrEqual", ["c", "xe"], ["le"]),
            node("Cast", ["u"], ["ub"], to=TensorProto.BOOL),
            node("Unsqueeze", ["ub", "ax"], ["ubu"]),
            node("And", ["gt", "ubu"], ["a"]),
            node("Or", ["a", "le"], ["o"]),
            node("Where", ["o", "one", "ninf"], ["y"]),
            node("Where", ["a", "one", "ninf"], ["y2"]),
        ],
        [("x", np.int32, [2, 4]), ("u", np.uint8, [2, 4])],
        [("y", F, [2, 3, 4]), ("y2", F, [2, 3, 4])],
        {
            "ax": np.array([1], I64),
            "shp": np.array([2, 3, 4], I64),
            "c": np.array([[[0]], [[2]], [[-3]]], np.int32).reshape(1, 3, 1),
            "one": np.array(1.0, F),
            "ninf": np.array(-1e30, F),
        },
    )
    chk = _exact(model, {"x": x, "u": u})
    assert "SELECT_V2" not in chk.ops, chk.ops
