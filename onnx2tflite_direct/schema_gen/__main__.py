"""``python -m onnx2tflite_direct.schema_gen``: regenerate or check schema_generated.py."""

import sys

from onnx2tflite_direct.schema_gen.generator import main

sys.exit(main())
