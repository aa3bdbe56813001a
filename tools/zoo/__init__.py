"""Real-model corpus (issue 17): rebuild with ``python -m tools.zoo.build``, run with
``python -m tools.zoo.run``. Model files live in a cache folder outside the repository
(``$ONNX2TFLITE_ZOO_CACHE`` or ``~/.cache/onnx2tflite_direct_zoo``); only the manifest, the
generators and the results (coverage_reports/zoo.{json,md}) are committed."""
