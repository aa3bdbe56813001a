"""Quantized output variants, applied to the lowered TFLite graph before it is written."""
