"""Shared fixtures: the light models (and their real-weight versions) cached per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))


@pytest.fixture(scope="session")
def real_weight_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real_weight_light_models")


@pytest.fixture(autouse=True, scope="session")
def every_built_model_has_cpu_registered_versions():
    """Wrap the builder for the whole session: every .tflite any test produces in this process
    must have operator-code versions inside the CPU resolver's registered ranges."""
    from harness import assert_versions_in_cpu_range

    from onnx2tflite_direct import builder

    original = builder.serialize  # build_flatbuffer goes through it too
    count = {"models": 0}

    def checked(model, **kwargs):
        out = original(model, **kwargs)
        if any(op.opcode != "CUSTOM" for sub in model.subgraphs for op in sub.operators):
            assert_versions_in_cpu_range(out.tobytes())
        count["models"] += 1
        return out

    builder.serialize = checked
    yield count
    builder.serialize = original
