"""ONNX tensor name -> the TFLite tensor holding it, and how to read it back in ONNX order.

Used by per-tensor diagnostics and by calibration (ONNX ranges onto TFLite tensors).
"""

from __future__ import annotations

from .context import Driver


def tensor_map(driver: Driver) -> dict[str, dict]:
    """ONNX tensor name -> the TFLite tensor holding it in the final graph, and its layout.

    Only tensors that survive the rewrites are listed (a conv output fused with its Relu is
    gone); ``perm`` and ``inner`` say how to turn the stored array back into ONNX order.
    """
    alive = {id(t) for t in driver.sub.tensors()}
    out: dict[str, dict] = {}
    for name, tensor in driver.tensor_of.items():
        if id(tensor) not in alive:
            continue
        lay = driver.layout_of[name]
        out[name] = {
            "tensor": tensor.name,
            "perm": list(lay.perm),
            "inner": None
            if lay.inner is None
            else {"shape": list(lay.inner.shape), "perm": list(lay.inner.perm)},
        }
    return out
