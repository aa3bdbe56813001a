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
