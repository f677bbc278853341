"""The table of task kinds: what each kind of head means to every stage (the PEFT way: knowledge as data).

Each row names the transformers ``AutoModelFor...`` class, the Optimum export task and ``ORTModelFor...`` class, the
model-card ``pipeline_tag``, which model outputs are distilled, and the metric the ONNX variant choice and the card
report. Stages ask this table (``kind_of(model)``) instead of branching on heads; adding a kind means adding a row
here and its functions in the modules the row names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import FastFormersError


@dataclass(frozen=True)
class TaskKind:
    name: str
    auto_model: str  # transformers class, e.g. "AutoModelForQuestionAnswering"
    export_task: str  # Optimum's task name for ONNX export
    ort_model: str  # optimum.onnxruntime class
    pipeline_tag: str  # Hub card / transformers pipeline task
    outputs: tuple[str, ...]  # model outputs that are distilled, e.g. ("start_logits", "end_logits")
    metric: str  # headline metric: accuracy | pearson | squad_f1 | entity_f1
    architecture_suffix: str  # how `config.architectures[0]` ends for this kind
    # Dynamic axes of the ONNX graph's inputs and of each output (the names Optimum's exporter gives them).
    onnx_input_axes: tuple[str, ...] = ("batch_size", "sequence_length")
    onnx_output_axes: tuple[str, ...] = ("batch_size",)

    def model_class(self):
        import transformers

        return getattr(transformers, self.auto_model)

    def ort_class(self):
        from optimum import onnxruntime

        return getattr(onnxruntime, self.ort_model)


KINDS: dict[str, TaskKind] = {
    "sequence_classification": TaskKind("sequence_classification", "AutoModelForSequenceClassification",
                                        "text-classification", "ORTModelForSequenceClassification",
                                        "text-classification", ("logits",), "accuracy", "ForSequenceClassification"),
    # One output unit, MSE loss: transformers picks regression from num_labels=1 (problem_type "regression").
    "regression": TaskKind("regression", "AutoModelForSequenceClassification", "text-classification",
                           "ORTModelForSequenceClassification", "text-classification", ("logits",), "pearson",
                           "ForSequenceClassification"),
    "token_classification": TaskKind("token_classification", "AutoModelForTokenClassification",
                                     "token-classification", "ORTModelForTokenClassification",
                                     "token-classification", ("logits",), "entity_f1", "ForTokenClassification",
                                     onnx_output_axes=("batch_size", "sequence_length")),
    "question_answering": TaskKind("question_answering", "AutoModelForQuestionAnswering", "question-answering",
                                   "ORTModelForQuestionAnswering", "question-answering",
                                   ("start_logits", "end_logits"), "squad_f1", "ForQuestionAnswering",
                                   onnx_output_axes=("batch_size", "sequence_length")),
    "multiple_choice": TaskKind("multiple_choice", "AutoModelForMultipleChoice", "multiple-choice",
                                "ORTModelForMultipleChoice", "multiple-choice", ("logits",), "accuracy",
                                "ForMultipleChoice", onnx_input_axes=("batch_size", "num_choices", "sequence_length"),
                                onnx_output_axes=("batch_size", "num_choices")),
}


def get_kind(name: str) -> TaskKind:
    if name not in KINDS:
        raise FastFormersError(f"unknown task kind {name!r}; known kinds: {', '.join(KINDS)}.")
    return KINDS[name]


def kind_of(model_or_config: Any) -> TaskKind:
    """The kind of a model, a config or a ``config.json`` dict, read from its architecture's name (and
    ``num_labels == 1`` / ``problem_type == "regression"`` for regression)."""
    config = getattr(model_or_config, "config", model_or_config)
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    # A model object knows its class; a config built with from_config has no `architectures` until saved.
    arch = type(model_or_config).__name__ if hasattr(model_or_config, "config") else (get("architectures") or [""])[0] or ""
    for kind in KINDS.values():
        if kind.name != "regression" and arch.endswith(kind.architecture_suffix):
            if kind.name == "sequence_classification" and (
                    get("problem_type") == "regression" or len(get("id2label") or {}) == 1 or get("num_labels") == 1):
                return KINDS["regression"]
            return kind
    if not arch:  # a model built from a config by AutoModelForSequenceClassification.from_config has no name yet
        return KINDS["sequence_classification"]
    raise FastFormersError(f"{arch} is not a head this package compresses; supported: "
                           f"{', '.join(k.architecture_suffix for k in KINDS.values() if k.name != 'regression')}.")
