"""Output noise of the float model with some weights replaced: what the int4 file's precision
chooser measures (``int4_budget.py``: the size budget left after the embedding tables buys
int8 for the weights whose 4-bit rounding costs the most output SQNR per byte).

Why measured and not read off the weights: a weight's rounding error is about the same share
of itself everywhere (4-bit blocks: ~20 dB of weight SQNR), but how much of it reaches the
outputs depends on the path. On BERT-tiny a 4-bit query or key projection alone costs nothing
visible (100 dB: the scores go through a softmax of near-uniform attention), a value or output
projection 57 dB; no rule on the weights tells them apart. So the lowered float model runs in
LiteRT (built-in kernels, one thread) on the calibration samples once as is, and once per
candidate with that weight's values replaced by their 4-bit rounding; the figure is the
outputs' noise power relative to their power, summed over the float outputs. Noises of
different weights are assumed to add (BERT-tiny, GPT-2: the sum of the single-weight figures
predicts the all-int4 file within 0.3 dB).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import numpy as np

from .. import tfl
from .. import validate as V
from ..validation_inputs import iter_feed_batches
from . import calibration as cal


class OutputNoise:
    """``noise({id(weight): values})``: relative output noise power of the float model with
    those weights' values replaced (the replacement is undone afterwards)."""

    def __init__(
        self,
        model_ir: tfl.Model,
        build: Callable[[tfl.Model], bytes],
        data: Mapping[str, np.ndarray],
        batches: Mapping[str, int],
        tensor_map: Mapping[str, Mapping],
    ):
        self.model_ir, self.build = model_ir, build
        self.data, self.batches, self.tensor_map = data, batches, tensor_map
        self.weights = {
            id(t): t
            for sub in model_ir.subgraphs
            for op in sub.operators
            for t in op.inputs
            if t is not None and t.data is not None
        }
        self.float_bytes = 0  # (the float file's size, from the reference run's build)
        self.reference = self._outputs()

    @property
    def usable(self) -> bool:
        return bool(self.reference)

    def __call__(self, replaced: Mapping[int, np.ndarray]) -> float:
        saved = {}
        try:
            for key, values in replaced.items():
                t = self.weights[key]
                saved[key] = t.data
                t.data = np.asarray(values, np.float32).reshape(t.data.shape)
            got = self._outputs()
        finally:
            for key, data in saved.items():
                self.weights[key].data = data
        if len(got) != len(self.reference):
            return float("inf")
        total = 0.0
        for runs, refs in zip(
            zip(*got, strict=True), zip(*self.reference, strict=True), strict=True
        ):
            noise = sum(
                float(np.sum((a.astype(np.float64) - b) ** 2))
                for a, b in zip(runs, refs, strict=True)
            )
            power = sum(float(np.sum(b.astype(np.float64) ** 2)) for b in refs)
            total += noise / max(power, 1e-30)
        return total

    def _outputs(self) -> list[list[np.ndarray]]:
        """Per sample batch, the float outputs; [] when the file does not run on them."""
        interp_mod = V._import_litert_interpreter()
        blob = bytes(self.build(self.model_ir))
        self.float_bytes = self.float_bytes or len(blob)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            interp = interp_mod.Interpreter(
                model_content=blob,
                num_threads=1,
                experimental_op_resolver_type=interp_mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )
        by_tensor = {  # (an input's own name first: a Reshape of it may map to it too)
            e["tensor"]: (name, e)
            for name, e in sorted(self.tensor_map.items(), key=lambda kv: kv[0] in self.data)
        }
        inputs = []
        for detail in interp.get_input_details():
            name, entry = by_tensor.get(detail["name"], (None, None))
            if name not in self.data:
                return []
            inputs.append((detail, name, entry.get("perm")))
        outputs = [d["index"] for d in interp.get_output_details() if d["dtype"] == np.float32]
        interp.allocate_tensors()
        results = []
        for feeds in iter_feed_batches(self.data, self.batches):
            try:
                for detail, name, perm in inputs:
                    arr = np.asarray(feeds[name])
                    if perm is not None and arr.ndim == len(perm):
                        arr = np.transpose(arr, perm)
                    if arr.size == int(np.prod(detail["shape"])):
                        arr = arr.reshape(detail["shape"])
                    if tuple(interp.get_tensor(detail["index"]).shape) != arr.shape:
                        interp.resize_tensor_input(detail["index"], list(arr.shape))
                        interp.allocate_tensors()
                    interp.set_tensor(detail["index"], np.ascontiguousarray(arr, detail["dtype"]))
                interp.invoke()
            except (RuntimeError, ValueError):
                return []
            results.append([np.array(interp.get_tensor(i)) for i in outputs])
        return results


# Seeded random samples measured when no calibration data is given.
RANDOM_SAMPLES = 4


def for_model(model_ir: tfl.Model, build, options, onnx_model, tensor_map) -> OutputNoise | None:
    """An :class:`OutputNoise` for ``model_ir`` on the calibration samples (``options``'
    ``--calibration-data``), or on seeded random inputs (``validate.seeded_inputs``) without
    them; None when there are no usable samples (the chooser then measures nothing)."""
    model = onnx_model()
    try:
        if options.calibration_data is not None:
            data = cal.load_calibration_data(
                options.calibration_data, mean=options.calibration_mean, std=options.calibration_std
            )
        else:
            feeds = [V.seeded_inputs(model, seed) for seed in range(RANDOM_SAMPLES)]
            data = {
                name: np.concatenate([f[name] if f[name].ndim else f[name][None] for f in feeds])
                for name in feeds[0]
            }
        data, batches = cal._fit_inputs(model, data)
    except Exception:  # noqa: BLE001  (bad samples are reported by the jobs that need them)
        return None
    noise = OutputNoise(model_ir, build, data, batches, tensor_map)
    return noise if noise.usable else None
