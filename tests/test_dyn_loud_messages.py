"""User-facing messages of the dynamic-size front end and the sub-graph cut.

* A recurrent op whose batch operands disagree: the hint says what to change, from where the
  disagreeing size comes from. Before, it always said "the input shapes given with
  --input-shape must fit the model", also when the user gave none: the converter had sampled
  a dim left dynamic that the model's state input fixes (the model takes that size only), or
  the model declares the sizes apart (the model is invalid).
* ``--inputs`` naming an initializer: one typed line naming it (exit 2). Before, the
  initializer stayed constant and the file silently lacked the input the user named (or,
  for an initializer that is not a graph input, "the dtype cannot be inferred").
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_conversion, expect_refusal, make_model
from onnx import helper

from onnx2tflite_direct import cli

H, F = 8, 4


def _lstm(x_shape, h_shape):
    rng = np.random.default_rng(5)
    inits = {
        "W": (rng.standard_normal((1, 4 * H, F)) * 0.3).astype(np.float32),
        "R": (rng.standard_normal((1, 4 * H, H)) * 0.3).astype(np.float32),
    }
    nodes = [helper.make_node("LSTM", ["x", "W", "R", "", "", "h0"], ["y"], hidden_size=H)]
    return make_model(
        nodes,
        [("x", np.float32, x_shape), ("h0", np.float32, h_shape)],
        [("y", np.float32, (None, 1, None, H))],
        inits,
    )


def test_a_sampled_batch_the_state_fixes_names_the_pin_that_converts():
    model = _lstm((5, "N", F), (1, 3, H))
    err = expect_refusal(model, "dynamic_shape_unsupported")
    assert "converter sampled it" in err.message
    assert "must fit the model" not in err.message  # the user gave no shapes
    assert "input_shapes x:5,3,4" in err.message  # (the API's spelling of --input-shape)
    # the pin it names converts and matches onnxruntime
    check_conversion(model, input_shapes={"x": (5, 3, F)})


def test_pins_that_disagree_are_the_users_to_fix():
    model = _lstm((5, "N", F), (1, "M", H))
    err = expect_refusal(model, "invalid_model", input_shapes={"x": (5, 2, F), "h0": (1, 3, H)})
    assert "the input shapes given with input_shapes must fit the model" in err.message


def test_sizes_declared_apart_are_an_invalid_model_not_a_pin_to_change():
    err = expect_refusal(_lstm((5, 2, F), (1, 3, H)), "invalid_model")
    assert "the model is invalid" in err.message and "input_shapes" not in err.message


def _add(b_is_graph_input: bool):
    inputs = [("x", np.float32, (1, 4))] + ([("b", np.float32, (4,))] if b_is_graph_input else [])
    return make_model(
        [helper.make_node("Add", ["x", "b"], ["y"])],
        inputs,
        [("y", np.float32, (1, 4))],
        {"b": np.arange(4, dtype=np.float32)},
    )


@pytest.mark.parametrize("b_is_graph_input", [True, False])
def test_inputs_naming_an_initializer_is_a_typed_error(b_is_graph_input):
    err = expect_refusal(_add(b_is_graph_input), "invalid_option", inputs=["x", "b"])
    assert err.exit_code == 2
    assert "'b' is an initializer" in err.message and "leave it out of inputs" in err.message


def test_inputs_naming_an_initializer_on_the_command_line(tmp_path, capsys):
    import onnx

    path = tmp_path / "add.onnx"
    onnx.save(_add(True), path)
    code = cli.main([str(path), "-o", str(tmp_path), "--inputs", "x,b"])
    _, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert "--inputs" in line and "'b' is an initializer" in line
    assert not list(tmp_path.glob("*.tflite"))
