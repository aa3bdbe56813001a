"""Hostile inputs: every malformed model gives a typed error with a precise reason code.

Each case is checked twice: through ``convert()`` (error class and reason code) and through
the CLI entry point (exit code, no .tflite written). One case runs the real CLI in a
subprocess to prove no traceback reaches the user. Determinism across processes is here too.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from onnx2tflite_direct import cli, convert, errors
from onnx2tflite_direct import validate as V
from onnx2tflite_direct.errors import BadInputError, ConversionError, UnsupportedError

ROOT = Path(__file__).resolve().parents[1]
BAD, UNSUPPORTED = BadInputError, UnsupportedError


def _vi(name, shape, dtype=TP.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def _model(nodes, inputs, outputs, inits=(), opset=17, ir=8):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


def _relu(x_shape=(2,), y_shape=(2,), y_type=TP.FLOAT, **kw):
    return _model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [_vi("x", x_shape)],
        [_vi("y", y_shape, y_type)],
        **kw,
    )


def _valid_bytes() -> bytes:
    return _relu().SerializeToString()


def _with_domain(model, domain, import_it):
    model.graph.node[0].domain = domain
    if import_it:
        model.opset_import.append(helper.make_opsetid(domain, 1))
    return model


def _huge_shape_op(op):
    """``op`` (ConstantOfShape / Expand / Reshape) asked for 2**40 elements."""
    big = _init("s", np.array([2**20, 2**20], np.int64))
    if op == "Reshape":
        nodes = [helper.make_node("Reshape", ["x", "s"], ["y"])]
        return _model(nodes, [_vi("x", [2])], [_vi("y", None)], [big])
    args = ["s"] if op == "ConstantOfShape" else ["one", "s"]
    nodes = [helper.make_node(op, args, ["c"]), helper.make_node("Add", ["x", "c"], ["y"])]
    return _model(nodes, [_vi("x", [1])], [_vi("y", None)], [big, _init("one", np.ones(1, "f4"))])


def _huge_range():
    inits = [_init("a", np.float32(0)), _init("b", np.float32(2.0**40)), _init("d", np.float32(1))]
    nodes = [
        helper.make_node("Range", ["a", "b", "d"], ["c"]),
        helper.make_node("Add", ["x", "c"], ["y"]),
    ]
    return _model(nodes, [_vi("x", [1])], [_vi("y", None)], inits)


def _two_producers():
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Sigmoid", ["x"], ["y"])]
    return _model(nodes, [_vi("x", [2])], [_vi("y", [2])])


def _cycle():
    nodes = [helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])]
    return _model(nodes, [_vi("x", [1])], [_vi("b", [1])])


def _add(a_shape, b_shape):
    nodes = [helper.make_node("Add", ["x", "z"], ["y"])]
    return _model(nodes, [_vi("x", a_shape), _vi("z", b_shape)], [_vi("y", None)])


# (id, model or raw bytes, error class, reason code)
CASES = [
    (
        "not_a_protobuf",
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01garbage",
        BAD,
        errors.INVALID_MODEL,
    ),
    ("truncated_file", _valid_bytes()[: len(_valid_bytes()) // 2], BAD, errors.INVALID_MODEL),
    ("empty_file", b"", BAD, errors.INVALID_MODEL),
    (
        "no_outputs",
        _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], []),
        BAD,
        errors.INVALID_MODEL,
    ),
    (
        "no_nodes_output_unproduced",
        _model([], [_vi("x", [2])], [_vi("y", [2])]),
        BAD,
        errors.INVALID_MODEL,
    ),
    ("cycle", _cycle(), BAD, errors.INVALID_MODEL),
    (
        "dangling_input",
        _model([helper.make_node("Relu", ["nowhere"], ["y"])], [_vi("x", [1])], [_vi("y", [1])]),
        BAD,
        errors.INVALID_MODEL,
    ),
    ("two_nodes_same_output", _two_producers(), BAD, errors.INVALID_MODEL),
    (
        "initializer_and_node_output_same_name",
        _model(
            [helper.make_node("Relu", ["x"], ["w"]), helper.make_node("Add", ["w", "x"], ["y"])],
            [_vi("x", [2])],
            [_vi("y", [2])],
            [_init("w", np.ones(2, "f4"))],
        ),
        BAD,
        errors.INVALID_MODEL,
    ),
    (
        "node_overwrites_graph_input",
        _model([helper.make_node("Relu", ["x"], ["x"])], [_vi("x", [2])], [_vi("x", [2])]),
        BAD,
        errors.INVALID_MODEL,
    ),
    (
        "duplicate_graph_inputs",
        _model(
            [helper.make_node("Relu", ["x"], ["y"])],
            [_vi("x", [2]), _vi("x", [2])],
            [_vi("y", [2])],
        ),
        BAD,
        errors.INVALID_MODEL,
    ),
    (
        "duplicate_initializers",
        _model(
            [helper.make_node("Add", ["x", "w"], ["y"])],
            [_vi("x", [2])],
            [_vi("y", [2])],
            [_init("w", np.ones(2, "f4")), _init("w", np.ones(3, "f4"))],
        ),
        BAD,
        errors.INVALID_MODEL,
    ),
    (
        "unknown_domain_not_imported",
        _with_domain(_relu(), "com.acme", False),
        BAD,
        errors.INVALID_MODEL,
    ),
    (
        "unknown_domain",
        _with_domain(_relu(), "com.acme", True),
        UNSUPPORTED,
        errors.CUSTOM_OP_CANDIDATE_DISABLED,
    ),
    ("opset_too_old", _relu(opset=6), UNSUPPORTED, errors.UNSUPPORTED_OPSET),
    (
        "opset_newer_than_onnx",
        _relu(opset=onnx.defs.onnx_opset_version() + 5),
        UNSUPPORTED,
        errors.UNSUPPORTED_OPSET,
    ),
    ("dim_overflows_int32", _relu((2**31, 2), (2**31, 2)), BAD, errors.INVALID_MODEL),
    ("declared_output_dtype_differs", _relu(y_type=TP.INT64), BAD, errors.SHAPE_INFERENCE_FAILED),
    ("broadcast_impossible", _add([2, 3], [4, 5]), BAD, errors.SHAPE_INFERENCE_FAILED),
    ("reshape_to_2pow40", _huge_shape_op("Reshape"), BAD, errors.INVALID_MODEL),
    ("constant_of_shape_2pow40", _huge_shape_op("ConstantOfShape"), BAD, errors.INVALID_MODEL),
    ("expand_to_2pow40", _huge_shape_op("Expand"), BAD, errors.INVALID_MODEL),
    ("range_of_2pow40", _huge_range(), UNSUPPORTED, errors.DYNAMIC_SHAPE_UNSUPPORTED),
    (
        "reshape_changes_element_count",
        _model(
            [helper.make_node("Reshape", ["x", "s"], ["y"])],
            [_vi("x", [2, 3])],
            [_vi("y", None)],
            [_init("s", np.array([4, 4], np.int64))],
        ),
        BAD,
        errors.INVALID_MODEL,
    ),
    (
        "axis_far_out_of_range",
        _model(
            [helper.make_node("Concat", ["x", "x"], ["y"], axis=2**40)],
            [_vi("x", [2, 3])],
            [_vi("y", None)],
        ),
        BAD,
        errors.INVALID_MODEL,
    ),
    (
        "missing_required_input",
        _model([helper.make_node("Add", ["x"], ["y"])], [_vi("x", [2])], [_vi("y", [2])]),
        BAD,
        errors.INVALID_MODEL,
    ),
    (
        "constant_without_output",
        _model(
            [
                helper.make_node("Constant", [], [], value_float=1.0),
                helper.make_node("Relu", ["x"], ["y"]),
            ],
            [_vi("x", [2])],
            [_vi("y", [2])],
        ),
        BAD,
        errors.INVALID_MODEL,
    ),
    (
        "sequence_input",
        _model(
            [helper.make_node("Relu", ["x"], ["y"])],
            [helper.make_tensor_sequence_value_info("x", TP.FLOAT, [2])],
            [_vi("y", [2])],
        ),
        UNSUPPORTED,
        errors.UNSUPPORTED_DTYPE,
    ),
    (
        "old_ir_initializer_type_differs_from_input",
        _model(
            [helper.make_node("Add", ["x", "w"], ["y"])],
            [_vi("x", [2]), _vi("w", [2], TP.INT64)],
            [_vi("y", [2])],
            [_init("w", np.ones(2, "f4"))],
            opset=9,
            ir=3,
        ),
        BAD,
        errors.INVALID_MODEL,
    ),
]


def _write(tmp_path: Path, content) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(content if isinstance(content, bytes) else content.SerializeToString())
    return path


@pytest.mark.parametrize(
    "content, error_type, reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_model_gives_typed_error_and_exit_code(tmp_path, content, error_type, reason):
    path = _write(tmp_path, content)
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as info:
        convert(str(path), out)
    assert type(info.value) is error_type, info.value
    assert info.value.reason_code == reason, info.value
    assert cli.main([str(path), "-o", str(out), "-q"]) == error_type.exit_code
    assert not list(out.glob("*.tflite"))


def test_old_ir_initializers_shadowing_inputs_convert():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = _model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        [_vi("x", [2, 3]), _vi("w", [2, 3])],
        [_vi("y", [2, 3])],
        [_init("w", w)],
        opset=9,
        ir=3,
    )
    res = convert(model)  # w is a constant, not an input: the numbers prove it was used
    assert [r["name"] for r in res.report["io"] if r["kind"] == "input"] == ["x"]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(
        V.run_litert(res.tflite_bytes, {"x": x}, res.report["io"])["y"], x + w
    )


def test_model_path_is_a_directory(tmp_path):
    with pytest.raises(BadInputError) as info:
        convert(str(tmp_path))
    assert info.value.reason_code == errors.FILE_NOT_FOUND
    assert cli.main([str(tmp_path), "-o", str(tmp_path / "o"), "-q"]) == errors.EXIT_BAD_INPUT


def test_output_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"x")
    path = _write(tmp_path, _relu())
    with pytest.raises(BadInputError) as info:
        convert(str(path), blocker / "out")
    assert info.value.reason_code == errors.INVALID_OPTION


# ---- external data ---------------------------------------------------------------------------


def _external_model(tmp_path: Path, **entries) -> Path:
    """A MatMul whose weight lives in ``weights.bin``; ``entries`` override the data fields."""
    (tmp_path / "weights.bin").write_bytes(np.ones(12, np.float32).tobytes())
    w = onnx.TensorProto(name="w", data_type=TP.FLOAT, dims=[3, 4])
    w.data_location = TP.EXTERNAL
    fields = {"location": "weights.bin", "offset": "0", "length": "48", **entries}
    for key, value in fields.items():
        w.external_data.add(key=key, value=value)
    model = _model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [2, 3])], [_vi("y", [2, 4])], [w]
    )
    sub = tmp_path / "m"
    sub.mkdir(exist_ok=True)
    (sub / "weights.bin").write_bytes((tmp_path / "weights.bin").read_bytes())
    path = sub / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize(
    "entries, reason",
    [
        ({}, None),
        ({"location": "../weights.bin"}, errors.UNSAFE_EXTERNAL_DATA),
        ({"location": "/etc/hostname"}, errors.UNSAFE_EXTERNAL_DATA),
        ({"location": "nope.bin"}, errors.MISSING_EXTERNAL_DATA),
        ({"location": "."}, errors.UNSAFE_EXTERNAL_DATA),
        ({"offset": "40"}, errors.MISSING_EXTERNAL_DATA),
        ({"length": "4096"}, errors.MISSING_EXTERNAL_DATA),
        ({"offset": "-4"}, errors.MISSING_EXTERNAL_DATA),
        ({"length": "-1"}, errors.MISSING_EXTERNAL_DATA),
        ({"offset": "zero"}, errors.MISSING_EXTERNAL_DATA),
    ],
)
def test_external_data_is_checked_before_reading(tmp_path, entries, reason):
    path = _external_model(tmp_path, **entries)
    if reason is None:  # safe external data: loaded, and its values reach the output
        res = convert(str(path), validate=True)
        assert res.validation.ok
        return
    with pytest.raises(BadInputError) as info:
        convert(str(path))
    assert info.value.reason_code == reason


def test_external_data_inside_a_subgraph_is_checked(tmp_path):
    """onnx's loader descends into If branches: the safety check must too."""
    secret = onnx.TensorProto(name="w", data_type=TP.FLOAT, dims=[1])
    secret.data_location = TP.EXTERNAL
    secret.external_data.add(key="location", value="../../secret.bin")
    branch = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["o"])], "b", [], [_vi("o", [1])], [secret]
    )
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    model = _model([node], [_vi("c", [], TP.BOOL)], [_vi("y", [1])])
    path = _write(tmp_path, model)
    with pytest.raises(BadInputError) as info:
        convert(str(path))
    assert info.value.reason_code == errors.UNSAFE_EXTERNAL_DATA


# ---- the real CLI and determinism ------------------------------------------------------------


def test_cli_subprocess_prints_no_traceback(tmp_path):
    path = _write(tmp_path, b"")
    proc = subprocess.run(
        [sys.executable, "-m", "onnx2tflite_direct", str(path), "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == errors.EXIT_BAD_INPUT
    assert "Traceback" not in proc.stderr and errors.INVALID_MODEL in proc.stderr


def test_conversion_is_byte_identical_across_processes(tmp_path):
    example = ROOT / "examples" / "small_cnn.onnx"
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        subprocess.run(
            [sys.executable, "-m", "onnx2tflite_direct", str(example), "-o", str(out), "-q"],
            check=True,
            cwd=ROOT,
        )
        (tflite,) = out.glob("*.tflite")
        digests.append(hashlib.sha256(tflite.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_attribute_beyond_tflite_field_range_is_a_typed_refusal():
    """A Conv stride of 2**31 converts in ONNX terms but no Conv2DOptions field holds it
    (found by the long fuzz run: it surfaced as an internal error)."""
    import numpy as np
    from harness import expect_refusal, make_model
    from onnx import helper

    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], strides=[2**31, 1])],
        inputs=[("x", np.float32, (1, 1, 4, 4))],
        outputs=[("y", np.float32, (1, 1, 1, 2))],
        initializers={"w": np.ones((1, 1, 3, 3), np.float32)},
    )
    expect_refusal(model, "unsupported_attribute_value")
