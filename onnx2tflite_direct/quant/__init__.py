"""Quantization of the lowered TFLite graph, before it is written.

``variants`` makes the requested variants of the float model: ``fp16`` (float16 weights),
``dynamic_range`` (int8 weights, hybrid kernels) and full-integer models (``integer``: planned
by ``integer_plan`` with the per-op rules of ``op_rules``, folded by ``integer_fold``, calibrated
by ``calibration``, bias-corrected by ``bias_correction``). Already-quantized ONNX models are
imported by ``qdq_import``: QOperator graphs rewritten into Q/DQ form (``qoperator_expand``),
Q/DQ pairs stripped into ranges on the ONNX proto (``qdq_strip``), then the same integer
rewrite as calibrated models. Every pass edits the graph through ``tfl_edit``.
"""
