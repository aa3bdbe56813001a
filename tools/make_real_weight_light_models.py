"""Turn the ONNX wheel's ``light_*.onnx`` models into models with realistic random weights.

Why: the nine "light" model-zoo models (AlexNet, DenseNet-121, Inception v1/v2, ResNet-50,
ShuffleNet, SqueezeNet, VGG-19, ZFNet-512) ship without their weights: each weight is a
``ConstantOfShape`` filled with 0.02. Converting them exercises real architectures, but constant
weights make every channel identical, so a wrong transpose or channel order would go unnoticed.
Here each such weight becomes a seeded random initializer with a sensible scale (He-normal by
fan-in for Conv/Gemm weights, small biases, BatchNormalization scale ~U(0.5, 1.5), bias and
mean ~N(0, 0.1), var ~U(0.5, 1.5); the Mul/Add "scale layer" after BatchNormalization in
DenseNet/Inception-v2 gets ~U(0.8, 1.2) / ~N(0, 0.1)).

The light files also keep a few small *real* pretrained tensors (e.g. Inception-v2's first
BatchNorm variance ~4000, DenseNet's first scale ~0.02). Mixed with random weights they shrink
activations ~50x at the first layer, after which the random BatchNorm offsets dominate and the
output barely depends on the input. By default (``reinit_kept=True``) those parameter tensors are
re-drawn with the same rules; shape tensors (``Reshape`` targets) are left alone.

Nothing else changes: the graph stays IR-3 style (every initializer also listed as a graph
input), which onnxruntime accepts as-is; the now-unused ``*__SHAPE`` tensors are dropped.

API: :func:`light_model_paths`, :func:`make_real_weight_model`, :func:`cached_model_path`.
CLI: ``python tools/make_real_weight_light_models.py --out DIR [--seed 0] [--check]``
"""

from __future__ import annotations

import argparse
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Ops through which a constant flows unchanged in meaning (its consumer decides its role).
_PASS_THROUGH = {"Unsqueeze", "Reshape", "Identity", "Squeeze"}


def light_model_paths() -> dict[str, Path]:
    """``{"resnet50": .../light_resnet50.onnx, ...}`` from the installed onnx wheel."""
    root = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    return {p.stem.removeprefix("light_"): p for p in sorted(root.glob("light_*.onnx"))}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    cons: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in graph.node:
        for i, name in enumerate(node.input):
            cons[name].append((node, i))
    return cons


def _role(name: str, cons, consts: dict[str, np.ndarray]) -> tuple[str, int, onnx.NodeProto, tuple]:
    """(op type, input index, node, shape seen by that node) of the first real consumer.

    Follows pass-through ops (e.g. DenseNet's ``Unsqueeze`` before the scale ``Mul``); the shape
    seen is needed for Gemm weights that are reshaped first (Inception v1).
    """
    shape_seen: tuple | None = None
    for _ in range(8):
        uses = cons.get(name, [])
        if not uses:
            return "", -1, None, shape_seen
        node, idx = uses[0]
        if node.op_type in _PASS_THROUGH and idx == 0:
            if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in consts:
                shape_seen = ("reshape", tuple(int(d) for d in consts[node.input[1]]))
            name = node.output[0]
            continue
        return node.op_type, idx, node, shape_seen
    return "", -1, None, shape_seen


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _normal(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    out = rng.standard_normal(shape, dtype=np.float32)
    out *= np.float32(std)
    return out


def _uniform(rng: np.random.Generator, shape, low: float, high: float) -> np.ndarray:
    out = rng.random(shape, dtype=np.float32)
    out *= np.float32(high - low)
    out += np.float32(low)
    return out


def _draw(rng, shape: tuple[int, ...], op: str, idx: int, node, shape_seen) -> np.ndarray | None:
    """Random values for a parameter of ``op`` input ``idx``; ``None`` if not a parameter."""
    size = int(np.prod(shape)) if shape else 1
    if op == "Conv" and idx == 1:
        fan_in = max(1, size // max(1, shape[0]))
        return _normal(rng, shape, np.sqrt(2.0 / fan_in))
    if op == "Gemm" and idx == 1:
        w_shape = shape
        if shape_seen and shape_seen[0] == "reshape":
            w_shape = np.zeros(shape, np.int8).reshape(shape_seen[1]).shape
        fan_in = w_shape[-1] if _attr(node, "transB", 0) else w_shape[0]
        return _normal(rng, shape, np.sqrt(2.0 / max(1, fan_in)))
    if op in ("Conv", "Gemm") and idx == 2:
        return _normal(rng, shape, 0.01)
    if op == "BatchNormalization" and idx in (1, 4):  # scale, var
        return _uniform(rng, shape, 0.5, 1.5)
    if op == "BatchNormalization" and idx in (2, 3):  # bias, mean
        return _normal(rng, shape, 0.1)
    if op == "Mul":
        return _uniform(rng, shape, 0.8, 1.2)
    if op in ("Add", "Sum"):
        return _normal(rng, shape, 0.1)
    return None


def _rng(seed: int, name: str) -> np.random.Generator:
    # Per-tensor stream: values do not depend on node order or on which other tensors exist.
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def make_real_weight_model(
    light_path: str | Path,
    seed: int = 0,
    reinit_kept: bool = True,
    calibrate: bool = True,
    check: bool = False,
) -> onnx.ModelProto:
    """Load a light model and replace its ``ConstantOfShape`` weights by random initializers.

    ``light_path`` may also be a short name from :func:`light_model_paths` (``"resnet50"``).
    """
    paths = light_model_paths()
    path = paths.get(str(light_path), Path(light_path))
    model = onnx.load(str(path))
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    cons = _consumers(g)

    new_inits: dict[str, np.ndarray] = {}
    keep_nodes = []
    for node in g.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in consts:
            keep_nodes.append(node)
            continue
        name = node.output[0]
        shape = tuple(int(d) for d in consts[node.input[0]])
        value = _attr(node, "value", None)
        dtype = numpy_helper.to_array(value).dtype if value is not None else np.dtype(np.float32)
        op, idx, user, seen = _role(name, cons, consts)
        arr = _draw(_rng(seed, name), shape, op, idx, user, seen)
        if arr is None:  # unknown use: keep the fill value but break channel symmetry a little
            fill = float(numpy_helper.to_array(value).ravel()[0]) if value is not None else 0.0
            arr = fill * _rng(seed, name).uniform(0.5, 1.5, shape)
        new_inits[name] = np.asarray(arr).astype(dtype, copy=False)

    replaced = dict.fromkeys(new_inits)
    if reinit_kept:
        for t in g.initializer:
            arr = consts[t.name]
            if arr.dtype.kind != "f" or t.name in replaced:
                continue
            op, idx, user, seen = _role(t.name, cons, consts)
            new = _draw(_rng(seed, t.name), arr.shape, op, idx, user, seen)
            if new is not None:
                new_inits[t.name] = np.asarray(new).astype(arr.dtype, copy=False)

    del g.node[:]
    g.node.extend(keep_nodes)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    drop = [t for t in g.initializer if t.name not in used or t.name in new_inits]
    for t in drop:
        g.initializer.remove(t)
    for n, a in new_inits.items():  # filled in place: one copy of the bytes, not three
        t = g.initializer.add()
        t.name, t.data_type = n, helper.np_dtype_to_tensor_dtype(a.dtype)
        t.dims.extend(a.shape)
        t.raw_data = np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()

    inputs = [vi for vi in g.input if vi.name in used]
    if model.ir_version < 4:  # IR < 4 lists every initializer as a graph input too
        for n in replaced:
            elem = helper.np_dtype_to_tensor_dtype(new_inits[n].dtype)
            inputs.append(helper.make_tensor_value_info(n, elem, new_inits[n].shape))
    del g.input[:]
    g.input.extend(inputs)
    if calibrate:
        calibrate_batchnorm(model, seed)
    if check:
        onnx.checker.check_model(model)
    return model


def cached_model_path(name: str, cache_dir: str | Path, seed: int = 0) -> Path:
    """Path of ``name``'s real-weight model under ``cache_dir``, generated on first use.

    For test sessions: generate once per session dir, then load the file (or hand the path to
    the converter) as often as needed.
    """
    dest = Path(cache_dir) / f"{name}_seed{seed}.onnx"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".onnx.tmp")
        onnx.save(make_real_weight_model(name, seed), tmp)
        tmp.replace(dest)  # atomic: parallel test workers never see a half-written file
    return dest


def _image_feeds(model: onnx.ModelProto, seed: int) -> dict[str, np.ndarray]:
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    return {
        vi.name: rng.standard_normal(
            [d.dim_value for d in vi.type.tensor_type.shape.dim], dtype=np.float32
        )
        for vi in model.graph.input
        if vi.name not in inits
    }


def calibrate_batchnorm(model: onnx.ModelProto, seed: int = 0) -> int:
    """Set each BatchNormalization mean/var to the statistics of its input (in place).

    Why: with fixed random statistics a BatchNorm does not normalize, so residual sums double the
    activation scale at every ResNet/ShuffleNet block (~1e5 at the end). Statistics are taken on
    a seeded N(0, 1) input in ONE onnxruntime run of a probe copy in which every BatchNorm is an
    InstanceNormalization with the same scale/bias: with batch 1 that computes exactly the
    statistics the calibrated BatchNorm will see, so no layer-by-layer passes are needed.
    Returns the number of BatchNorms calibrated.
    """
    import onnxruntime as ort

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    bns = [
        n
        for n in g.node
        if n.op_type == "BatchNormalization"
        and len(n.input) == 5
        and n.input[3] in inits
        and n.input[4] in inits
    ]
    if not bns:
        return 0
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    pg = probe.graph
    for node in pg.node:
        if node.op_type == "BatchNormalization" and node.output[0] in {b.output[0] for b in bns}:
            eps = _attr(node, "epsilon", 1e-5)
            node.op_type = "InstanceNormalization"
            del node.input[3:]
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("epsilon", eps))
    del pg.output[:]
    bn_inputs = list(dict.fromkeys(n.input[0] for n in bns))
    pg.output.extend(helper.ValueInfoProto(name=x) for x in bn_inputs)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    outs = dict(zip(bn_inputs, sess.run(bn_inputs, _image_feeds(model, seed)), strict=True))
    done = 0
    for n in bns:
        x = outs[n.input[0]]
        if x.ndim < 3 or x.shape[0] != 1:
            continue
        axes = tuple(i for i in range(x.ndim) if i != 1)
        mean, var = x.mean(axes), x.var(axes)
        # Floor dead channels so another input cannot be amplified by 1/sqrt(eps).
        var = np.maximum(var, 1e-2 * max(float(var.mean()), 1e-6))
        inits[n.input[3]].CopyFrom(numpy_helper.from_array(mean.astype(np.float32), n.input[3]))
        inits[n.input[4]].CopyFrom(numpy_helper.from_array(var.astype(np.float32), n.input[4]))
        done += 1
    return done


def _ort_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray], all_tensors: bool):
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    if all_tensors:
        names = {o.name for o in m.graph.output}
        for node in m.graph.node:
            for out in node.output:
                if out and out not in names:
                    m.graph.output.append(helper.ValueInfoProto(name=out))
                    names.add(out)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def check_model(model: onnx.ModelProto, seed: int = 0) -> dict[str, float]:
    """Sanity numbers from onnxruntime on two seeded inputs.

    ``max_act``: largest |activation| anywhere; ``out_change``: relative change of the output
    (pre-softmax where available) between the two inputs, which shows it depends on the input.
    Raises ``AssertionError`` if the output has NaN/inf or is all-equal.
    """
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = [
        {
            vi.name: rng.standard_normal(
                [d.dim_value for d in vi.type.tensor_type.shape.dim]
            ).astype(np.float32)
            for vi in model.graph.input
            if vi.name not in inits
        }
        for _ in range(2)
    ]
    acts = [_ort_outputs(model, f, all_tensors=True) for f in feeds]
    out_name = model.graph.output[0].name
    out = acts[0][out_name]
    assert np.isfinite(out).all(), "output has NaN/inf"
    assert np.ptp(out) > 0, "output is all-equal"
    softmax_in = [n.input[0] for n in model.graph.node if n.op_type == "Softmax"]
    probe = softmax_in[-1] if softmax_in else out_name
    a, b = acts[0][probe], acts[1][probe]
    finite = [np.abs(v).max() for v in acts[0].values() if v.dtype.kind == "f" and v.size]
    return {
        "max_act": float(max(finite)),
        "out_std": float(np.std(a)),
        "out_change": float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30)),
        "out_max_prob": float(out.max()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the .onnx files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="short names, e.g. resnet50 vgg19")
    ap.add_argument("--keep-real", action="store_true", help="do not re-draw kept real tensors")
    ap.add_argument("--check", action="store_true", help="run onnxruntime and print sanity numbers")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, path in light_model_paths().items():
        if args.only and name not in args.only:
            continue
        model = make_real_weight_model(path, args.seed, reinit_kept=not args.keep_real, check=True)
        dest = args.out / f"{name}.onnx"
        onnx.save(model, dest)
        line = f"{dest} ({dest.stat().st_size / 1e6:.1f} MB)"
        if args.check:
            stats = check_model(model, args.seed)
            line += "  " + "  ".join(f"{k}={v:.3g}" for k, v in stats.items())
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
