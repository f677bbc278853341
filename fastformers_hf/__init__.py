"""fastformers-hf: distil, prune, quantize and serve fine-tuned Transformer encoders inside the Hugging Face stack.

The public API is re-exported here lazily, so ``import fastformers_hf`` is fast and pulls in torch, Optimum or the
callbacks only when a name that needs them is used.
"""
from __future__ import annotations

import importlib

from .compat import check_transformers_version

__version__ = "0.1.0"
check_transformers_version()

# public name -> module that defines it (fastformers_hf.* unless the module path is absolute)
_EXPORTS = {
    "FastFormersError": ".errors",
    "DistillationConfig": ".distillation.config",
    "DistillationTrainer": ".distillation.trainer",
    "cache_teacher_logits": ".distillation.teacher_cache",
    "soft_cross_entropy": ".distillation.trainer",
    "make_student": ".distillation.student",
    "compression_record": ".shape_record",
    "record_measurement": ".measurements",
    "load_measurements": ".measurements",
    "compute_metrics": ".tasks.metrics",
    "classification_metrics": ".tasks.metrics",
    "load_task_data": ".tasks.data",
    "tokenize": ".tasks.data",
    "TASKS": ".tasks.data",
    "ARCHITECTURES": ".architectures",
    "TextClassifier": ".inference.classifier",
    "InferenceConfig": ".inference.classifier",
    "QuestionAnswerer": ".inference.question_answering",
    "QuestionAnsweringConfig": ".inference.question_answering",
    "load_squad": ".tasks.squad",
    "squad_metrics": ".tasks.squad_metric",
    "push_to_hub": ".hub",
    "compression_record_from_hub": ".hub",
    "verify_model_dir": ".hub",
    "ModelCardCallback": "trainer_callbacks.model_card",  # lazy: trainer_callbacks imports us
    "export_onnx": ".onnx.export",
    "optimize_onnx": ".onnx.export",
    "quantize_onnx": ".onnx.quantize",
    "to_fp16": ".onnx.export",
    "load_ort_model": ".onnx.graph",
    "SessionConfig": ".onnx.config",
    "VariantChoiceConfig": ".onnx.config",
    "build_candidates": ".onnx.variants",
    "choose_variant": ".onnx.variants",
    "optimize_for_inference": ".onnx.variants",
    "prune": ".pruning.slicing",
    "load_pruned": ".pruning.loading",
    "importance_scores": ".pruning.scores",
    "held_out_split": ".pruning.scores",
    "MultiInstanceClassifier": ".serving.multi_instance",
    "MultiInstancePredictor": ".serving.multi_instance",
    "RuntimeConfig": ".serving.multi_instance",
    "TuningConfig": ".serving.layout_search",
    "tune": ".serving.layout_search",
    "length_buckets": ".serving.batching",
    "StructuredPruningCallback": "trainer_callbacks.structured_pruning",  # lazy: trainer_callbacks imports us
    "CascadeClassifier": ".cascade.model",
    "CascadeConfig": ".cascade.config",
    "CalibrationConfig": ".cascade.config",
    "CascadeCurve": ".cascade.calibration",
    "cascade_curve": ".cascade.calibration",
    "load_conll": ".tasks.conll",
    "tokenize_and_align": ".tasks.token_classification",
    "entity_metrics": ".tasks.entity_metric",
    "entity_compute_metrics": ".tasks.entity_metric",
    "EntityTagger": ".inference.token_classification",
    "evaluation_for": ".inference.evaluation",
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
