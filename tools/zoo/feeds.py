"""Realistic inputs, built as each package builds them (see the ``feeds`` of a manifest entry).

Random noise is a poor test input: normalisation layers, ReLUs and softmaxes see values no real
input produces, and outputs can come out near-constant. So images are smooth shapes, strokes
and text-like marks on a background, normalised with the package's mean/std; audio is a
voiced signal (harmonics under a moving formant, syllable-rate envelope, a little noise) at the
model's sample rate; token ids lie inside the vocabulary (read off the embedding table that the
ids index when the manifest says ``"vocab": "auto"``).
"""

from __future__ import annotations

import numpy as np
import onnx

_NP = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.BOOL: np.bool_,
}


def _elem_dtype(vi: onnx.ValueInfoProto):
    return _NP.get(vi.type.tensor_type.elem_type, np.float32)


def _picture(rng, h: int, w: int, channels: int, document: bool) -> np.ndarray:
    """An 8-bit picture [h, w, c]: gradient background, filled shapes and dark strokes."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if document:
        return _text_page(rng, h, w, channels)
    c0, c1 = rng.uniform(40, 220, size=(2, channels))
    t = (xx / max(w - 1, 1) * 0.6 + yy / max(h - 1, 1) * 0.4)[..., None]
    img = c0 * (1 - t) + c1 * t
    for _ in range(int(rng.integers(3, 7))):  # ellipses and rectangles
        color = rng.uniform(0, 255, size=channels)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(h / 10, h / 3), rng.uniform(w / 10, w / 3)
        if rng.random() < 0.5:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            mask = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        img[mask] = 0.35 * img[mask] + 0.65 * color
    img += rng.normal(0, 6, size=img.shape)  # sensor noise
    return np.clip(img, 0, 255)


def _text_page(rng, h: int, w: int, channels: int) -> np.ndarray:
    """Light paper with lines of dark glyphs: each glyph a few 2-pixel strokes in a square
    cell, with word gaps (OCR detectors fire on this; blobs of random dots they ignore)."""
    img = np.full((h, w, channels), 240.0, np.float32)
    img += rng.normal(0, 3, size=img.shape)
    cell_px = max(10, h // 8) if h > 64 else max(8, int(h * 0.6))
    tops = range(cell_px // 2, h - cell_px, int(cell_px * 1.8)) if h > 64 else [(h - cell_px) // 2]
    t = np.linspace(0, 1, 3 * cell_px)
    for top in tops:
        x = int(rng.integers(2, max(3, w // 8)))
        end = int(w - rng.integers(2, max(3, w // 4)))
        ink = rng.uniform(0, 60, size=channels)
        while x < end - cell_px:
            cell = np.zeros((cell_px, cell_px), bool)
            for _ in range(int(rng.integers(2, 5))):
                y0, x0, y1, x1 = rng.uniform(0.1, 0.9, 4) * (cell_px - 1)
                py = np.round(y0 + (y1 - y0) * t).astype(int)
                px = np.round(x0 + (x1 - x0) * t).astype(int)
                for d in (0, 1):
                    cell[np.clip(py + d, 0, cell_px - 1), px] = True
            img[top : top + cell_px, x : x + cell_px][cell] = ink
            x += int(cell_px * rng.uniform(0.8, 1.1))
            if rng.random() < 0.15:
                x += cell_px
    return np.clip(img, 0, 255)


def image(spec: dict, rng) -> np.ndarray:
    shape = list(spec["shape"])
    nhwc = spec.get("layout", "nchw") == "nhwc"
    n, c, h, w = (shape[0], shape[3], shape[1], shape[2]) if nhwc else shape
    document = spec.get("kind") == "document"
    pics = np.stack([_picture(rng, h, w, c, document) for _ in range(n)])  # [n, h, w, c]
    mean = np.asarray(spec.get("mean", [0.0]), np.float32)
    std = np.asarray(spec.get("std", [1.0]), np.float32)
    x = (pics.astype(np.float32) * np.float32(spec.get("scale", 1 / 255)) - mean) / std
    return x if nhwc else np.transpose(x, (0, 3, 1, 2))


def speech(rng, n: int, sample_rate: int) -> np.ndarray:
    """A voiced, speech-like waveform in [-1, 1]: f0 glides, formant-weighted harmonics,
    a 4 Hz syllable envelope and background noise."""
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    formant = rng.uniform(500, 900) * (1 + 0.3 * np.sin(2 * np.pi * 1.3 * t))
    sig = np.zeros(n)
    for k in range(1, 16):
        weight = np.exp(-(((k * f0) - formant) ** 2) / (2 * 300.0**2)) + 0.05 / k
        sig += weight * np.sin(k * phase)
    env = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)))
    sig = sig / (np.abs(sig).max() + 1e-9) * env * rng.uniform(0.2, 0.5)
    sig += rng.normal(0, 0.005, size=n)
    return sig.astype(np.float32)


def audio(spec: dict, rng) -> np.ndarray:
    shape = spec["shape"]
    rows = int(np.prod(shape[:-1]))
    wave = np.stack([speech(rng, shape[-1], spec.get("sample_rate", 16000)) for _ in range(rows)])
    return wave.reshape(shape).astype(np.float32)


def audio_frames(spec: dict, rng) -> np.ndarray:
    """Consecutive frames of one waveform with the previous frame's tail as left context
    (silero's streaming layout: 64 context samples + 512 new ones at 16 kHz)."""
    n, width = spec["shape"]
    step = spec.get("step", 512)
    wave = speech(rng, step * n + width, spec.get("sample_rate", 16000))
    return np.stack([wave[i * step : i * step + width] for i in range(n)]).astype(np.float32)


def vocab_size(model: onnx.ModelProto, input_name: str) -> int | None:
    """Rows of the smallest embedding table that ``input_name``'s ids index (following
    Cast/Squeeze/Unsqueeze/Reshape/Slice/Split/Gather-by-constant on the way)."""
    inits = {i.name: i for i in model.graph.initializer}
    consts = {}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute:
            consts[node.output[0]] = node.attribute[0].t
    tables = {**inits, **consts}
    passthrough = {
        "Cast",
        "Squeeze",
        "Unsqueeze",
        "Reshape",
        "Slice",
        "Split",
        "Identity",
        "Flatten",
        "Transpose",
        "Clip",
        "Where",
        "Add",
        "Mul",
        "Max",
        "Min",
    }
    frontier, seen, sizes = {input_name}, set(), []
    while frontier:
        name = frontier.pop()
        seen.add(name)
        for node in model.graph.node:
            if name not in node.input:
                continue
            if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == name:
                table = tables.get(node.input[0])
                if table is not None:
                    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                    sizes.append(int(table.dims[axis]))
                    continue
            if node.op_type in passthrough or (node.op_type == "Gather" and node.input[0] == name):
                frontier.update(o for o in node.output if o and o not in seen)
    return min(sizes) if sizes else None


def make_feeds(model: onnx.ModelProto, entry: dict, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    init_names = {i.name for i in model.graph.initializer}
    specs = entry.get("feeds", {})
    feeds = {}
    for vi in model.graph.input:
        if vi.name in init_names:
            continue
        spec = specs.get(vi.name)
        if spec is None:
            raise KeyError(f"{entry['name']}: no feed recipe for input {vi.name!r}")
        feeds[vi.name] = _one(model, vi, spec, rng)
    return feeds


def _one(model, vi, spec: dict, rng) -> np.ndarray:
    dtype = _elem_dtype(vi)
    kind = spec["kind"]
    shape = tuple(spec.get("shape", ()))
    if kind in ("image", "document", "face"):
        x = image(spec, rng)
    elif kind == "audio":
        x = audio(spec, rng)
    elif kind == "audio_frames":
        x = audio_frames(spec, rng)
    elif kind == "eeg":  # microvolt-scale EEG: 1/f background plus 12-14 Hz spindle bursts
        n = shape[-1]
        t = np.arange(n) / spec.get("sample_rate", 250)
        base = np.cumsum(rng.normal(0, 1, size=shape), axis=-1)
        base -= base.mean(axis=-1, keepdims=True)
        burst = np.sin(2 * np.pi * 13 * t) * np.exp(-(((t - t.mean()) / 0.5) ** 2))
        x = (base / (base.std() + 1e-9) + 2 * burst) * 20.0
    elif kind == "log_spectrum":  # log power: smooth over frequency, varying over time
        f = np.linspace(0, 1, shape[-2])[:, None]
        x = -2.0 - 3.0 * f + rng.normal(0, 0.7, size=shape)
    elif kind == "tokens":
        vocab = spec.get("vocab", 1000)
        if vocab == "auto":
            vocab = vocab_size(model, vi.name) or 100
        x = rng.integers(spec.get("low", 0), vocab, size=shape)
        if spec.get("cls") is not None:
            x[..., 0] = spec["cls"]
        if spec.get("sep") is not None:
            x[..., -1] = spec["sep"]
    elif kind == "file_bytes":  # magika: mostly printable ASCII, padding token 256 at the end
        x = rng.integers(32, 127, size=shape)
        x[..., shape[-1] * 3 // 4 :] = 256
    elif kind == "mask":
        x = np.ones(shape)
    elif kind == "zeros":
        x = np.zeros(shape)
    elif kind == "const":
        x = np.full(shape, spec["value"])
    elif kind == "tanh":
        x = np.tanh(rng.normal(0, 1, size=shape))
    elif kind == "normal":
        x = rng.normal(spec.get("mean", 0.0), spec.get("std", 1.0), size=shape)
    elif kind == "uniform":
        x = rng.uniform(spec.get("low", 0.0), spec.get("high", 1.0), size=shape)
    else:
        raise ValueError(f"unknown feed kind {kind!r}")
    return np.asarray(x).astype(dtype)
