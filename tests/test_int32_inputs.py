"""``--int32-inputs``: int64 inputs declared int32. The file takes int32 feeds (the int64 feeds
onnxruntime reads, cast by the harness to the file's input type) and computes what onnxruntime
computes on them, including int64 arithmetic on derived values at the ends of int32's range;
without the flag nothing changes; bad names are typed errors. With ``--gpu-friendly`` the
lookups the ids feed become delegable (``gpu_rewrites_int``), each rule proven exact here."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, convert, make_model
from onnx import TensorProto, helper

from onnx2tflite_direct import cli, errors, gpu_friendly
from onnx2tflite_direct import convert as o2t_convert

I32_MIN, I32_MAX = np.iinfo(np.int32).min, np.iinfo(np.int32).max
V, D, S = 50, 8, 6


def _input_dtypes(tflite_bytes) -> dict[str, np.dtype]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=bytes(tflite_bytes)).get_signature_runner()
    return {k: np.dtype(v["dtype"]) for k, v in runner.get_input_details().items()}


def _text_model() -> tuple:
    """Embedding lookup by (possibly negative) ids, token types, a float mask, position ids from
    CumSum of the mask, and the mask's int64 sum as an output."""
    rng = np.random.default_rng(0)
    inits = {
        "table": rng.standard_normal((V, D)).astype(np.float32),
        "types": rng.standard_normal((2, D)).astype(np.float32),
        "pos": rng.standard_normal((S, D)).astype(np.float32),
        "ax2": np.array([2], np.int64),
        "ax1": np.array(1, np.int64),
        "axv": np.array([1], np.int64),
        "one": np.array(1, np.int64),
    }
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"]),
        helper.make_node("Gather", ["types", "tt"], ["temb"]),
        helper.make_node("Add", ["emb", "temb"], ["e1"]),
        helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "ax2"], ["mask3"]),
        helper.make_node("Mul", ["e1", "mask3"], ["e2"]),
        helper.make_node("CumSum", ["mask", "ax1"], ["cs"]),
        helper.make_node("Sub", ["cs", "one"], ["pid0"]),
        helper.make_node("Mul", ["pid0", "mask"], ["pid"]),
        helper.make_node("Gather", ["pos", "pid"], ["pe"]),
        helper.make_node("Add", ["e2", "pe"], ["y"]),
        helper.make_node("ReduceSum", ["mask", "axv"], ["msum"], keepdims=0),
    ]
    model = make_model(
        nodes,
        [("ids", np.int64, [2, S]), ("tt", np.int64, [2, S]), ("mask", np.int64, [2, S])],
        [("y", np.float32, [2, S, D]), ("msum", np.int64, [2])],
        inits,
    )
    feeds = {
        "ids": rng.integers(-V, V, (2, S)).astype(np.int64),
        "tt": rng.integers(0, 2, (2, S)).astype(np.int64),
        "mask": np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.int64),
    }
    return model, feeds


def test_text_model_int32_inputs_matches_onnxruntime():
    model, feeds = _text_model()
    chk = check_conversion(model, feeds, int32_inputs=True)
    assert _input_dtypes(chk.tflite_bytes) == {k: np.dtype(np.int32) for k in feeds}
    section = chk.report["int32_inputs"]
    assert section["inputs"] == ["ids", "tt", "mask"]
    assert "fit in int32" in section["note"]
    # the mask's CumSum and int64 sum (an output) keep int64: a mask may hold any int32
    kept = {k["onnx_node"].split(":")[0] for k in section["kept_int64"]}
    assert {"CumSum", "ReduceSum"} <= kept, section["kept_int64"]
    assert {r["name"]: r["dtype"] for r in chk.report["io"] if r["kind"] == "input"} == {
        "ids": "int32",
        "tt": "int32",
        "mask": "int32",
    }


def test_text_model_gpu_friendly_lookups_delegable_and_exact():
    model, feeds = _text_model()
    chk = check_conversion(model, feeds, int32_inputs=True, gpu_friendly=True)
    rules = {r["rule"] for r in chk.report["gpu_friendly"]["rewrites"]}
    assert "gather_int32_indices" in rules
    left = {f["onnx_node"] for f in chk.report["gpu"]["fall_back"]}
    # the token and token-type lookups and the float mask run on the GPU; the int64 mask
    # arithmetic (CumSum position ids, the mask's sum) does not
    assert not left & {"Gather:emb", "Gather:temb", "Cast:maskf"}, left
    assert {"CumSum:cs", "ReduceSum:msum"} <= left, left


def test_mask_arithmetic_at_int32_extremes_stays_exact():
    """Mask values at the ends of int32: products, sums and CumSum computed as before in int64
    (they leave int32), FloorMod and comparisons on the int32 values themselves."""
    nodes = [
        helper.make_node("Mul", ["m", "m"], ["sq"]),
        helper.make_node("Add", ["m", "big"], ["shifted"]),
        helper.make_node("CumSum", ["m", "ax"], ["cs"]),
        helper.make_node("Mod", ["m", "seven"], ["md"]),  # fmod=0: floor mod, [0, 6]
        helper.make_node("Add", ["md", "three"], ["md3"]),
        helper.make_node("Greater", ["m", "zero"], ["pos"]),
        helper.make_node("Cast", ["pos"], ["posf0"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["posf0", "half"], ["posf"]),
        helper.make_node("Cast", ["m"], ["m32"], to=TensorProto.INT32),
    ]
    model = make_model(
        nodes,
        [("m", np.int64, [1, 6])],
        [
            ("sq", np.int64, [1, 6]),
            ("shifted", np.int64, [1, 6]),
            ("cs", np.int64, [1, 6]),
            ("md3", np.int64, [1, 6]),
            ("posf", np.float32, [1, 6]),
            ("m32", np.int32, [1, 6]),
        ],
        {
            "big": np.array(1 << 30, np.int64),
            "ax": np.array(1, np.int64),
            "seven": np.array(7, np.int64),
            "three": np.array(3, np.int64),
            "zero": np.array(0, np.int64),
            "half": np.array(0.5, np.float32),
        },
    )
    feeds = {"m": np.array([[I32_MAX, I32_MIN, -1, 0, I32_MAX - 5, 12345]], np.int64)}
    chk = check_conversion(model, feeds, int32_inputs=["m"])
    kept = {k["onnx_node"].split(":")[-1] for k in chk.report["int32_inputs"]["kept_int64"]}
    assert {"sq", "shifted", "cs"} <= kept


def test_narrowed_input_flows_without_extra_ops():
    """ids -> Cast(int32) disappears; FloorMod by a constant and + 3 are proven to fit int32, so
    no int64 tensor is left and no CAST is added."""
    nodes = [
        helper.make_node("Cast", ["ids"], ["i32"], to=TensorProto.INT32),
        helper.make_node("Gather", ["table", "i32"], ["looked"]),
        helper.make_node("Mod", ["ids", "seven"], ["md"]),
        helper.make_node("Add", ["md", "three"], ["md3"]),
        helper.make_node("Cast", ["md3"], ["out"], to=TensorProto.FLOAT),
    ]
    model = make_model(
        nodes,
        [("ids", np.int64, [2, 5])],
        [("looked", np.float32, [2, 5, 3]), ("out", np.float32, [2, 5])],
        {
            "seven": np.array(7, np.int64),
            "three": np.array(3, np.int64),
            "table": np.arange(60, dtype=np.float32).reshape(20, 3),
        },
    )
    feeds = {"ids": np.array([[-20, -8, -1, 0, 1], [6, 7, 9, 12, 19]], np.int64)}
    plain = check_conversion(model, feeds)
    chk = check_conversion(model, feeds, int32_inputs=True)
    assert chk.report["int32_inputs"]["kept_int64"] == []
    assert sum(chk.ops.values()) < sum(plain.ops.values())
    from onnx2tflite_direct.tflite_reader import tensor_table

    assert all(r["dtype"] != "int64" for r in tensor_table(chk.tflite_bytes))


def test_without_the_flag_the_file_is_unchanged():
    model, _ = _text_model()
    base = bytes(convert(model).tflite_bytes)
    assert bytes(convert(model, int32_inputs=False).tflite_bytes) == base
    assert _input_dtypes(base)["ids"] == np.dtype(np.int64)
    # a model without int64 inputs: the flag changes nothing either
    float_model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", np.float32, [2, 3])],
        [("y", np.float32, [2, 3])],
    )
    assert bytes(convert(float_model, int32_inputs=True).tflite_bytes) == bytes(
        convert(float_model).tflite_bytes
    )


def test_named_inputs_only():
    model, feeds = _text_model()
    chk = check_conversion(model, feeds, int32_inputs=["ids"])
    dtypes = _input_dtypes(chk.tflite_bytes)
    assert dtypes == {"ids": np.int32, "tt": np.int64, "mask": np.int64}


@pytest.mark.parametrize(
    ("names", "needle"), [(["nope"], "not a model input"), (["x"], "float32 input")]
)
def test_bad_names_are_typed_errors(names, needle):
    model = make_model(
        [helper.make_node("Gather", ["x", "ids"], ["y"])],
        [("x", np.float32, [4, 2]), ("ids", np.int64, [3])],
        [("y", np.float32, [3, 2])],
    )
    with pytest.raises(errors.BadInputError) as info:
        o2t_convert(model, int32_inputs=names)
    assert info.value.reason_code == errors.INVALID_OPTION
    assert needle in info.value.message and "int32_inputs" in info.value.message
    with pytest.raises(errors.OptionError):
        o2t_convert(model, int32_inputs=[3])


def test_cli_flag_bare_and_named(tmp_path, capsys):
    model, _ = _text_model()
    path = tmp_path / "text.onnx"
    path.write_bytes(model.SerializeToString())
    out = tmp_path / "out"
    # bare flag before the model path: every int64 input; the model path stays the model
    assert cli.main(["--int32-inputs", str(path), "-o", str(out), "--check-gpu"]) == 0
    (written,) = out.glob("*.tflite")
    assert set(_input_dtypes(written.read_bytes()).values()) == {np.dtype(np.int32)}
    assert "int32 inputs: ids, tt, mask: declared int32" in capsys.readouterr().err
    assert cli.main([str(path), "-o", str(out), "--int32-inputs", "nope"]) == (
        errors.EXIT_BAD_INPUT
    )
    err = capsys.readouterr().err
    assert "--int32-inputs" in err and "nope" in err
    assert cli.main([str(path), "-o", str(out), "--int32-inputs", "ids,tt"]) == 0
    dtypes = _input_dtypes(written.read_bytes())
    assert dtypes == {"ids": np.int32, "tt": np.int32, "mask": np.int64}


def test_check_gpu_names_the_flag_for_int64_inputs(tmp_path, capsys):
    model, _ = _text_model()
    path = tmp_path / "text.onnx"
    path.write_bytes(model.SerializeToString())
    assert cli.main([str(path), "-o", str(tmp_path / "o"), "--check-gpu"]) == 0
    out = capsys.readouterr().out
    assert "--int32-inputs" in out and "ids" in out


def test_gpu_friendly_declares_int64_inputs_int32():
    """--gpu-friendly promises a file the GPU delegate takes where an equivalent exists, and no
    GPU rule takes an int64 tensor: it declares the int64 inputs int32 as --int32-inputs does
    (the report says which flag did it); --keep-int64-inputs keeps the model's dtypes."""
    model, feeds = _text_model()
    chk = check_conversion(model, feeds, gpu_friendly=True)
    assert _input_dtypes(chk.tflite_bytes) == {k: np.dtype(np.int32) for k in feeds}
    section = chk.report["int32_inputs"]
    assert section["inputs"] == ["ids", "tt", "mask"] and section["flag"] == "--gpu-friendly"
    same = convert(model, gpu_friendly=True, int32_inputs=True)
    assert bytes(same.tflite_bytes) == bytes(chk.tflite_bytes)
    kept = check_conversion(model, feeds, gpu_friendly=True, keep_int64_inputs=True)
    assert set(_input_dtypes(kept.tflite_bytes).values()) == {np.dtype(np.int64)}
    assert "int32_inputs" not in kept.report
    assert {f["onnx_node"] for f in kept.report["gpu"]["fall_back"]} >= {"Gather:emb"}
    with pytest.raises(errors.OptionError) as info:
        o2t_convert(model, int32_inputs=True, keep_int64_inputs=True)
    assert "contradict" in str(info.value)


def test_cli_gpu_friendly_says_the_inputs_changed(tmp_path, capsys):
    model, _ = _text_model()
    path = tmp_path / "text.onnx"
    path.write_bytes(model.SerializeToString())
    out = tmp_path / "out"
    assert cli.main([str(path), "-o", str(out), "--gpu-friendly"]) == 0
    err = capsys.readouterr().err
    assert "int32 inputs: ids, tt, mask: declared int32" in err
    assert "--keep-int64-inputs keeps them" in err
    assert cli.main([str(path), "-o", str(out), "--gpu-friendly", "--keep-int64-inputs"]) == 0
    (written,) = out.glob("*.tflite")
    assert set(_input_dtypes(written.read_bytes()).values()) == {np.dtype(np.int64)}
    assert "int32 inputs" not in capsys.readouterr().err
    args = [str(path), "-o", str(tmp_path / "o2"), "--int32-inputs", "--keep-int64-inputs"]
    assert cli.main(args) == errors.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "--int32-inputs" in err and "--keep-int64-inputs" in err
    assert not (tmp_path / "o2").exists() or not any((tmp_path / "o2").iterdir())


# ---- gpu_rewrites_int / not_into_select: each rule exact against onnxruntime -----------------


def _rules(chk) -> set[str]:
    return {r["rule"] for r in chk.report["gpu_friendly"]["rewrites"]}


def test_index_wrap_in_float_1d_ids():
    """1-D ids: the GATHER takes them; only the FLOOR_MOD wrap moves to float32."""
    table = np.random.default_rng(1).standard_normal((V, D)).astype(np.float32)
    model = make_model(
        [helper.make_node("Gather", ["table", "ids"], ["y"])],
        [("ids", np.int64, [7])],
        [("y", np.float32, [7, D])],
        {"table": table},
    )
    feeds = {"ids": np.array([-V, -1, 0, 1, V - 1, -17, 23], np.int64)}
    chk = check_conversion(model, feeds, int32_inputs=True, gpu_friendly=True)
    assert "index_wrap_in_float" in _rules(chk)
    assert chk.report["gpu"]["fully_delegable"]


@pytest.mark.parametrize(
    "move",
    [
        helper.make_node("Transpose", ["ids"], ["a"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["ids", "shape"], ["a"]),
    ],
)
def test_int32_moves_in_float_and_gather_int32_indices(move):
    """int32 data movement of the ids (which the GPU refuses), then a lookup by 3-D ids: the
    move, the wrap and the flattening all in float32, two CASTs in all."""
    rng = np.random.default_rng(2)
    shape = {"Transpose": [1, 9, 2], "Reshape": [2, 9]}[move.op_type]
    model = make_model(
        [move, helper.make_node("Gather", ["table", "a"], ["y"])],
        [("ids", np.int64, [1, 2, 9])],
        [("y", np.float32, [*shape, D])],
        {
            "table": rng.standard_normal((300, D)).astype(np.float32),
            "shape": np.array([2, 9], np.int64),
        },
    )
    ids = rng.integers(-300, 300, (1, 2, 9)).astype(np.int64)
    ids[0, 0, :2] = [-300, 299]
    chk = check_conversion(model, {"ids": ids}, int32_inputs=True, gpu_friendly=True)
    assert {"int32_moves_in_float", "gather_int32_indices"} <= _rules(chk)
    assert chk.report["gpu"]["fully_delegable"], chk.report["gpu"]["fall_back"]
    assert chk.ops["CAST"] == 2


def test_fold_constant_gather():
    rng = np.random.default_rng(3)
    model = make_model(
        [
            helper.make_node("Gather", ["types", "tt"], ["te"]),
            helper.make_node("Add", ["x", "te"], ["y"]),
        ],
        [("x", np.float32, [1, 4, D])],
        [("y", np.float32, [1, 4, D])],
        {
            "types": rng.standard_normal((2, D)).astype(np.float32),
            "tt": np.array([[0, 1, 1, 0]], np.int64),
        },
    )
    chk = check_conversion(model, gpu_friendly=True)
    if "fold_constant_gather" in _rules(chk):  # (the lowering may fold it itself)
        assert chk.report["gpu"]["fully_delegable"]
    assert chk.ops.get("GATHER", 0) == 0


def test_not_into_select():
    x = np.random.default_rng(4).standard_normal((1, 8)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("Not", ["mask"], ["nm"]),
            helper.make_node("Where", ["nm", "fill", "x"], ["y"]),
        ],
        [("mask", np.bool_, [1, 8]), ("x", np.float32, [1, 8])],
        [("y", np.float32, [1, 8])],
        {"fill": np.array(-1e4, np.float32)},
    )
    feeds = {"mask": np.array([[1, 0, 1, 1, 0, 0, 1, 0]], bool), "x": x}
    chk = check_conversion(model, feeds, gpu_friendly=True, disable_rewrites=["float_mask_logic"])
    assert "not_into_select" in _rules(chk)
    assert "LOGICAL_NOT" not in chk.ops
    assert chk.report["gpu"]["fully_delegable"], chk.report["gpu"]["fall_back"]


def test_every_rule_is_ordered():
    new = {
        "gather_int32_indices",
        "index_wrap_in_float",
        "int32_moves_in_float",
        "fold_constant_gather",
        "not_into_select",
        "bool_moves_in_float",
        "nonzero_test_in_float",
        "log_softmax_decomposed",
    }
    assert new <= set(gpu_friendly.ORDER)


def test_bool_moves_in_float():
    """A bool mask unsqueezed for a select (the GPU takes no bool RESHAPE): moved as 0/1 floats
    between CASTs, exact."""
    rng = np.random.default_rng(5)
    model = make_model(
        [
            helper.make_node("Unsqueeze", ["mask", "ax"], ["m3"]),
            helper.make_node("Where", ["m3", "fill", "x"], ["y"]),
        ],
        [("mask", np.bool_, [1, 12]), ("x", np.float32, [1, 1, 12])],
        [("y", np.float32, [1, 1, 12])],
        {"ax": np.array([1], np.int64), "fill": np.array(-1e9, np.float32)},
    )
    feeds = {"mask": rng.integers(0, 2, (1, 12)).astype(bool), "x": rng.standard_normal((1, 1, 12))}
    feeds["x"] = feeds["x"].astype(np.float32)
    plain = check_conversion(model, feeds, disable_rewrites=["float_mask_logic"])
    chk = check_conversion(model, feeds, gpu_friendly=True, disable_rewrites=["float_mask_logic"])
    if "RESHAPE" in {f["op"] for f in plain.report["gpu"]["fall_back"]}:
        assert "bool_moves_in_float" in _rules(chk)
    assert chk.report["gpu"]["fully_delegable"], chk.report["gpu"]["fall_back"]
    assert np.array_equal(chk.actual["y"], plain.actual["y"])


def test_log_softmax_decomposed():
    """LOG_SOFTMAX (no GPU parser): the kernel's formula in delegable ops; within float32
    rounding of onnxruntime (the exp sum is added in another order)."""
    x = (np.random.default_rng(6).standard_normal((2, 160)) * 4).astype(np.float32)
    model = make_model(
        [helper.make_node("LogSoftmax", ["x"], ["y"], axis=-1)],
        [("x", np.float32, [2, 160])],
        [("y", np.float32, [2, 160])],
    )
    chk = check_conversion(model, {"x": x}, gpu_friendly=True)
    assert "log_softmax_decomposed" in _rules(chk)
    assert "LOG_SOFTMAX" not in chk.ops
    assert chk.report["gpu"]["fully_delegable"], chk.report["gpu"]["fall_back"]


def _lookup_model(seq):
    rng = np.random.default_rng(7)
    return make_model(
        [
            helper.make_node("Gather", ["t", "ids"], ["e"]),
            helper.make_node("Cast", ["mask"], ["mf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mf", "ax"], ["m3"]),
            helper.make_node("Mul", ["e", "m3"], ["y"]),
        ],
        [("ids", np.int64, [1, seq]), ("mask", np.int64, [1, seq])],
        [("y", np.float32, [1, seq, D])],
        {"t": rng.standard_normal((30, D)).astype(np.float32), "ax": np.array([2], np.int64)},
    )


def _feeds(n, seed):
    rng = np.random.default_rng(seed)
    return {
        "ids": rng.integers(-30, 30, (1, n)).astype(np.int64),
        "mask": rng.integers(0, 2, (1, n)).astype(np.int64),
    }


def test_every_signature_takes_int32_and_matches():
    from ai_edge_litert.interpreter import Interpreter

    from onnx2tflite_direct import validate as V

    model = _lookup_model("S")
    dims = {"prefill": 8, "decode": 1}
    res = o2t_convert(
        model,
        int32_inputs=True,
        gpu_friendly=True,
        signatures={k: {"ids": (1, n), "mask": (1, n)} for k, n in dims.items()},
    )
    assert res.report["gpu"]["fully_delegable"]
    for sig in res.report["signatures"]:
        assert {r["name"]: r["dtype"] for r in sig["inputs"]} == {"ids": "int32", "mask": "int32"}
    interp = Interpreter(model_content=bytes(res.tflite_bytes))
    for key, n in dims.items():
        feeds = _feeds(n, n)
        runner = interp.get_signature_runner(key)
        got = runner(**{k: v.astype(np.int32) for k, v in feeds.items()})["y"]
        assert np.array_equal(got, V.run_onnxruntime(model, feeds)["y"])


def test_dynamic_length_int32_inputs():
    from onnx2tflite_direct import validate as V

    model = _lookup_model("S")
    res = o2t_convert(model, int32_inputs=True)
    rows = {r["name"]: r for r in res.report["io"] if r["kind"] == "input"}
    assert rows["ids"]["dtype"] == "int32" and rows["ids"]["shape_signature"] == [1, -1]
    for n in (3, 11):
        feeds = _feeds(n, n)
        got = V.run_litert(res.tflite_bytes, feeds, res.report["io"])["y"]
        assert np.array_equal(got, V.run_onnxruntime(model, feeds)["y"])


def test_nonzero_test_of_mask_product_in_float():
    """DeBERTa's ``bool(mask[:, None, None, :] * mask[:, None, :, None])``: the int64 product
    of the int32 mask stays exact on the CPU and becomes 0/1 float products on the GPU, exact
    for every int32 value (65536 * 65536 is 2**32, zero in int32 but not in int64)."""
    s = 8
    x = np.random.default_rng(8).standard_normal((1, 1, s, s)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("Unsqueeze", ["mask", "a12"], ["row"]),
            helper.make_node("Unsqueeze", ["mask", "a13"], ["col"]),
            helper.make_node("Mul", ["row", "col"], ["prod"]),
            helper.make_node("Cast", ["prod"], ["keep"], to=TensorProto.BOOL),
            helper.make_node("Where", ["keep", "x", "fill"], ["y"]),
        ],
        [("mask", np.int64, [1, s]), ("x", np.float32, [1, 1, s, s])],
        [("y", np.float32, [1, 1, s, s])],
        {
            "a12": np.array([1, 2], np.int64),
            "a13": np.array([1, 3], np.int64),
            "fill": np.array(-1e4, np.float32),
        },
    )
    mask = np.array([[1, 0, 65536, I32_MAX, I32_MIN, -1, 0, 7]], np.int64)
    feeds = {"mask": mask, "x": x}
    for masks_in_float in (True, False):  # with and without the float mask-logic rewrite
        off = [] if masks_in_float else ["float_mask_logic"]
        chk = check_conversion(
            model, feeds, int32_inputs=True, gpu_friendly=True, disable_rewrites=off
        )
        assert chk.report["gpu"]["fully_delegable"], chk.report["gpu"]["fall_back"]
        if not masks_in_float:  # either rule: a product of nonzero values is nonzero in float
            assert {"nonzero_test_in_float", "int_region_in_float"} & set(_rules(chk))
    # without --gpu-friendly the product stays an exact int64 MUL
    chk = check_conversion(model, feeds, int32_inputs=True, disable_rewrites=["float_mask_logic"])
    assert any(k["op"] == "MUL" for k in chk.report["int32_inputs"]["kept_int64"])
