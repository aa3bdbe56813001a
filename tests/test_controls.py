"""User controls: per-input/output layout and sub-graph extraction."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from harness import check_conversion, make_model
from onnx import helper

from onnx2tflite_direct import BadInputError, convert, errors
from onnx2tflite_direct import validate as V

RNG = np.random.default_rng(0)


def _two_input_model():
    """image -> Conv -> Relu -> (+ state) -> Conv -> out; state [1,4,6,6] merely looks like an image."""
    inits = {
        "w1": RNG.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3,
        "w2": RNG.standard_normal((2, 4, 1, 1)).astype(np.float32) * 0.3,
    }
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Add", ["r1", "state"], ["s"]),
        helper.make_node("Conv", ["s", "w2"], ["out"]),
    ]
    return make_model(
        nodes,
        inputs=[("image", np.float32, (1, 3, 6, 6)), ("state", np.float32, (1, 4, 6, 6))],
        outputs=[("out", np.float32, (1, 2, 6, 6))],
        initializers=inits,
    )


def _io(chk):
    return {r["name"]: r["tflite_shape"] for r in chk.report["io"]}


def test_default_exposes_image_like_inputs_channel_last():
    chk = check_conversion(_two_input_model())
    assert _io(chk) == {"image": [1, 6, 6, 3], "state": [1, 6, 6, 4], "out": [1, 6, 6, 2]}
    assert chk.ops.get("TRANSPOSE", 0) == 0


def test_keep_input_layout_for_one_input():
    chk = check_conversion(_two_input_model(), keep_layout=("state",))
    assert _io(chk) == {"image": [1, 6, 6, 3], "state": [1, 4, 6, 6], "out": [1, 6, 6, 2]}
    assert chk.ops["TRANSPOSE"] == 1  # the kept input meets channel-last data once


def test_channel_last_and_keep_output_override_keep_io_layout():
    chk = check_conversion(
        _two_input_model(), keep_io_layout=True, channel_last=("image",), keep_layout=("out",)
    )
    assert _io(chk) == {"image": [1, 6, 6, 3], "state": [1, 4, 6, 6], "out": [1, 2, 6, 6]}


@pytest.mark.parametrize("names", [("nope",), ()])
def test_layout_option_errors(names):
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        inputs=[("x", np.float32, (2, 3))],
        outputs=[("y", np.float32, (2, 3))],
    )
    with pytest.raises(BadInputError) as info:
        convert(model, keep_layout=names, channel_last=("x",) if not names else ())
    assert info.value.reason_code == errors.INVALID_OPTION


@pytest.mark.parametrize(
    "inputs, outputs",
    [(["r1", "state"], ["out"]), (None, ["r1"]), (["s"], None)],
)
def test_subgraph_extraction_matches_onnx_extract_model(tmp_path, inputs, outputs):
    model = _two_input_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    res = convert(str(path), inputs=inputs, outputs=outputs, keep_io_layout=True)
    ref_path = tmp_path / "ref.onnx"
    onnx.utils.extract_model(
        str(path),
        str(ref_path),
        inputs or [n for n in ("image", "state") if outputs != ["r1"] or n == "image"],
        outputs or ["out"],
    )
    ref = onnx.load(str(ref_path))
    feeds = V.seeded_inputs(ref, seed=2)
    expected = V.run_onnxruntime(ref, feeds)
    actual = V.run_litert(res.tflite_bytes, feeds, res.report["io"])
    assert list(actual) == list(expected)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "inputs, outputs, message",
    [
        (["nope"], None, "no tensor named"),
        (["r1"], ["out"], "not closed"),
        (["c1", "state"], ["r1"], "do not depend"),
    ],
)
def test_bad_cuts_are_clear_errors(inputs, outputs, message):
    with pytest.raises(BadInputError) as info:
        convert(_two_input_model(), inputs=inputs, outputs=outputs)
    assert message in info.value.message


def test_fp16_accumulation_writes_litert_reduced_precision_metadata():
    from onnx2tflite_direct.inspect_tflite import inspect

    plain = check_conversion(_two_input_model())
    # Loose tolerance: on ARM with float16 arithmetic XNNPACK may now accumulate in float16.
    chk = check_conversion(_two_input_model(), atol=1e-2, rtol=1e-2, fp16_accumulation=True)
    assert inspect(chk.tflite_bytes)["metadata"]["reduced_precision_support"] == "fp16accfp16"
    assert "reduced_precision_support" not in inspect(plain.tflite_bytes)["metadata"]
    assert chk.ops == plain.ops
