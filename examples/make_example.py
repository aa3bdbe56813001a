"""Generate ``examples/small_cnn.onnx``: a tiny image classifier built with ``onnx.helper``.

Why hand-built: the project must not depend on torch, and a deterministic file (seeded weights,
fixed node names) keeps the example, README commands and tests reproducible. It exercises the
common CNN lowerings: Conv+BatchNorm+Relu, MaxPool, strided Conv, depthwise Conv + Clip(0,6),
residual Add, GlobalAveragePool, Flatten, Gemm and Softmax.

Run: ``python examples/make_example.py [--out PATH] [--check]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
DEFAULT_OUT = Path(__file__).with_name("small_cnn.onnx")


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def build_model() -> onnx.ModelProto:
    """The example model; identical bytes on every call."""
    rng = np.random.default_rng(0)
    inits = {
        "conv1_w": _he(rng, (8, 3, 3, 3), 3 * 9),
        "conv1_b": (rng.standard_normal(8) * 0.05).astype(np.float32),
        "bn1_scale": rng.uniform(0.5, 1.5, 8).astype(np.float32),
        "bn1_bias": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "bn1_mean": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "bn1_var": rng.uniform(0.5, 1.5, 8).astype(np.float32),
        "conv2_w": _he(rng, (16, 8, 3, 3), 8 * 9),
        "conv2_b": (rng.standard_normal(16) * 0.05).astype(np.float32),
        "dw_w": _he(rng, (16, 1, 3, 3), 9),
        "dw_b": (rng.standard_normal(16) * 0.05).astype(np.float32),
        "clip_min": np.array(0.0, np.float32),
        "clip_max": np.array(6.0, np.float32),
        "fc_w": _he(rng, (10, 16), 16),
        "fc_b": (rng.standard_normal(10) * 0.05).astype(np.float32),
    }
    n = helper.make_node
    nodes = [
        n(
            "Conv",
            ["image", "conv1_w", "conv1_b"],
            ["c1"],
            "conv1",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        n(
            "BatchNormalization",
            ["c1", "bn1_scale", "bn1_bias", "bn1_mean", "bn1_var"],
            ["b1"],
            "bn1",
            epsilon=1e-5,
        ),
        n("Relu", ["b1"], ["r1"], "relu1"),
        n("MaxPool", ["r1"], ["p1"], "pool1", kernel_shape=[2, 2], strides=[2, 2]),  # 8x16x16
        n(
            "Conv",
            ["p1", "conv2_w", "conv2_b"],
            ["c2"],
            "conv2",
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        ),
        n("Relu", ["c2"], ["r2"], "relu2"),  # 16x8x8
        n(
            "Conv",
            ["r2", "dw_w", "dw_b"],
            ["c3"],
            "dwconv",
            kernel_shape=[3, 3],
            group=16,
            pads=[1, 1, 1, 1],
        ),
        n("Clip", ["c3", "clip_min", "clip_max"], ["r3"], "relu6"),
        n("Add", ["r2", "r3"], ["res"], "residual"),
        n("GlobalAveragePool", ["res"], ["gap"], "gap"),
        n("Flatten", ["gap"], ["flat"], "flatten", axis=1),
        n("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], "fc", transB=1),
        n("Softmax", ["logits"], ["probs"], "softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=7,  # lowest IR for opset 13: loads in any recent runtime
        producer_name="onnx2tflite_direct.examples",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def check_with_onnxruntime(model: onnx.ModelProto) -> np.ndarray:
    """Run on a seeded image; the softmax output must be a finite probability vector."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    (probs,) = sess.run(["probs"], {"image": image})
    assert probs.shape == (1, 10) and np.isfinite(probs).all(), probs
    assert abs(float(probs.sum()) - 1.0) < 1e-5, probs.sum()
    return probs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="run the model in onnxruntime")
    args = ap.parse_args(argv)
    model = build_model()
    onnx.save(model, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    if args.check:
        print("onnxruntime probs:", np.array2string(check_with_onnxruntime(model), precision=4))


if __name__ == "__main__":
    main()
