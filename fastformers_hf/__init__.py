"""fastformers-hf: distil, prune, quantize and serve fine-tuned Transformer encoders inside the Hugging Face stack.

The public API is re-exported here lazily, so ``import fastformers_hf`` is fast and pulls in torch, Optimum or the
callbacks only when a name that needs them is used.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (fastformers_hf.* unless the module path is absolute)
_EXPORTS = {
    "FastFormersError": ".errors",
    "DistillationConfig": ".distillation_config",
    "DistillationTrainer": ".distillation_trainer",
    "cache_teacher_logits": ".distillation_trainer",
    "soft_cross_entropy": ".distillation_trainer",
    "make_student": ".student",
    "compression_record": ".shape_record",
    "record_measurement": ".measurements",
    "load_measurements": ".measurements",
    "compute_metrics": ".metrics",
    "classification_metrics": ".metrics",
    "load_task_data": ".data",
    "tokenize": ".data",
    "TASKS": ".data",
    "ARCHITECTURES": ".architectures",
    "TextClassifier": ".classifier",
    "InferenceConfig": ".classifier",
    "push_to_hub": ".hub",
    "compression_record_from_hub": ".hub",
    "verify_model_dir": ".hub",
    "ModelCardCallback": "trainer_callbacks.model_card",  # lazy: trainer_callbacks imports us
    "export_onnx": ".onnx_runtime",
    "optimize_onnx": ".onnx_runtime",
    "quantize_onnx": ".onnx_runtime",
    "to_fp16": ".onnx_runtime",
    "load_ort_model": ".onnx_runtime",
    "SessionConfig": ".onnx_config",
    "VariantChoiceConfig": ".onnx_config",
    "build_candidates": ".onnx_variants",
    "choose_variant": ".onnx_variants",
    "optimize_for_inference": ".onnx_variants",
    "prune": ".pruning",
    "load_pruned": ".pruning",
    "importance_scores": ".pruning",
    "held_out_split": ".pruning",
    "MultiInstanceClassifier": ".runtime",
    "RuntimeConfig": ".runtime",
    "TuningConfig": ".tuning",
    "tune": ".tuning",
    "length_buckets": ".runtime",
    "StructuredPruningCallback": "trainer_callbacks.structured_pruning",  # lazy: trainer_callbacks imports us
    "CascadeClassifier": ".cascade",
    "CascadeConfig": ".cascade_config",
    "CalibrationConfig": ".cascade_config",
    "CascadeCurve": ".cascade_calibration",
    "cascade_curve": ".cascade_calibration",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fastformers_hf' has no attribute {name!r}")
    target = _EXPORTS[name]
    module = importlib.import_module(target, __name__) if target.startswith(".") else importlib.import_module(target)
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
