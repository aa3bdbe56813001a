"""ddddocr_common_old (onnxruntime quantize_dynamic: DynamicQuantizeLinear, ConvInteger with
its bias quantized by Div/Floor, SiLU, DynamicQuantizeLSTM, MatMulInteger) at image widths
where the converted file and onnxruntime disagree (96, 224, 250: 0.02-0.9 on the logits, the
top class the same). Why that is onnxruntime's Sigmoid and not our arithmetic:

* with every Sigmoid written out as float32 arithmetic (MLAS's rational approximation with
  each multiply and add rounded: what onnxruntime's SSE2 kernel computes), onnxruntime and the
  converted file's backbone (up to the LSTM) agree bit for bit at every width, pinned and with
  the width left dynamic: the
  quantization (scale, zero point, round half to even), the exact ConvInteger accumulator, the
  Floor of the bias quantization and every float32 rescale are onnxruntime's;
* onnxruntime's Sigmoid is MLAS's approximation, computed with fused multiply-adds by its FMA3
  kernel (x86 CPUs with FMA3; NEON on ARM) and with separate roundings by its SSE2 kernel:
  its result depends on the CPU it runs on. The ulps by which it, LiteRT's LOGISTIC and the
  correctly rounded logistic differ move a tensor's max by an ulp, hence a DynamicQuantizeLinear
  scale, hence a ``floor(bias / scale)`` by one, and a code one quantum
  (``x / scale`` within 2e-3 of a .5 boundary). At those widths onnxruntime's two kernels
  disagree with each other by as much as the converted file disagrees with either (e.g. 0.21
  at width 160, 0.72 at 250), so the corpus' onnxruntime mismatch there is no defect of ours.

onnxruntime's own kernels are not tested here: which form it computes depends on the CPU.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx2tflite_direct import convert
from onnx2tflite_direct import validate as V

F = np.float32
NAME = "ddddocr_common_old"
WIDTHS = (40, 96, 224, 250)  # 96, 224 and 250 differ from onnxruntime's own Sigmoid
# MLAS's logistic: x clamped to [-18, 18], p(x^2) * x / q(x^2) + 0.5 clamped to [0, 1]
LIMIT = 18.0
ALPHA = (4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05, 8.51377133304701e-03,
         2.48287947061529e-01)  # fmt: skip
BETA = (6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06, 1.70198817374094e-03,
        1.16817656904453e-01, 9.93151921023180e-01)  # fmt: skip


def _zoo_model() -> onnx.ModelProto:
    from tools.zoo import paths

    found = sorted((paths.models_dir() / NAME).glob("*.onnx"))
    if not found:
        pytest.skip(f"{NAME} is not in the corpus cache (tools/zoo)")
    return onnx.load(found[0])


def _image(width: int, seed: int) -> np.ndarray:
    """The corpus' feed for this model (a text line, [1, 1, 64, width] in [0, 1])."""
    from tools.zoo import feeds

    spec = {"shape": [1, 1, 64, width], "mean": [0.0], "std": [1.0], "scale": 1 / 255}
    return feeds.image({**spec, "kind": "document"}, np.random.default_rng(seed)).astype(F)


def _horner(nodes, consts, x2, coeffs, out):
    """``(((c0 x2 + c1) x2 + c2) ...)`` with each multiply and add its own float32 op."""
    acc = consts(coeffs[0])
    for i, c in enumerate(coeffs[1:]):
        nodes.append(helper.make_node("Mul", [acc, x2], [f"{out}_m{i}"]))
        nodes.append(helper.make_node("Add", [f"{out}_m{i}", consts(c)], [f"{out}_a{i}"]))
        acc = f"{out}_a{i}"
    return acc


def arithmetic_sigmoid(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with each Sigmoid replaced by MLAS's approximation as float32 ONNX ops."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    values: dict[float, str] = {}

    def consts(v: float) -> str:
        if v not in values:
            values[v] = f"mlas_c{len(values)}"
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(v, F), values[v]))
        return values[v]

    nodes = []
    for node in model.graph.node:
        if node.op_type != "Sigmoid":
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        nodes.append(helper.make_node("Clip", [x, consts(-LIMIT), consts(LIMIT)], [f"{y}_v"]))
        nodes.append(helper.make_node("Mul", [f"{y}_v", f"{y}_v"], [f"{y}_v2"]))
        p = _horner(nodes, consts, f"{y}_v2", ALPHA, f"{y}_p")
        q = _horner(nodes, consts, f"{y}_v2", BETA, f"{y}_q")
        nodes.append(helper.make_node("Mul", [p, f"{y}_v"], [f"{y}_px"]))
        nodes.append(helper.make_node("Div", [f"{y}_px", q], [f"{y}_r"]))
        nodes.append(helper.make_node("Add", [f"{y}_r", consts(0.5)], [f"{y}_h"]))
        nodes.append(helper.make_node("Clip", [f"{y}_h", consts(0.0), consts(1.0)], [y]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input1": x})[0]


def _backbone(model: onnx.ModelProto) -> onnx.ModelProto:
    """The conv backbone: ``model`` up to the DynamicQuantizeLSTM's input X."""
    lstm = next(n for n in model.graph.node if n.op_type == "DynamicQuantizeLSTM")
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(lstm.input[0], TensorProto.FLOAT, None))
    return model


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "dynamic_width"])
def test_ddddocr_backbone_with_arithmetic_sigmoid_is_onnxruntime_bit_for_bit(pinned):
    """The 21 quantized convs, the SiLUs and the residual adds up to the LSTM (the LSTM's own
    gate activations are onnxruntime's MLAS logistic and tanh inside its kernel: LiteRT's
    differ from them by ulps there too). With onnxruntime's own Sigmoid instead the backbones
    differ by up to 0.18 at widths 224 and 250."""
    model = _backbone(arithmetic_sigmoid(_zoo_model()))
    dynamic = None if pinned else convert(model)
    for i, width in enumerate(WIDTHS):
        x = _image(width, i)
        expected = _onnxruntime(model, x)
        assert np.std(expected) > 0.1
        res = dynamic or convert(model, input_shapes={"input1": (1, 1, 64, width)})
        for xnnpack in (True, False):
            run = V.run_litert(
                res.tflite_bytes, {"input1": x}, res.report["io"], use_xnnpack=xnnpack
            )
            got = list(run.values())[0]
            np.testing.assert_array_equal(got, expected, err_msg=f"width {width} {xnnpack}")
