"""Schema bindings for the TFLite FlatBuffer format, generated from the pinned schema.fbs.

``schema_generated`` (committed) holds enums, unions and table layouts as plain data; the
builder reads field ids and types from it instead of hand-written per-table code.
Regenerate with ``python -m onnx2tflite_direct.schema_gen --schema PATH``.
"""
