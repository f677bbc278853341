"""Settings of knowledge distillation, as a ``TrainingArguments`` subclass (the TRL way)."""
from __future__ import annotations

from dataclasses import dataclass

from transformers import TrainingArguments

from .options import LAYER_MAPPINGS, DistillationOptions  # noqa: F401  (LAYER_MAPPINGS: public)


@dataclass
class DistillationConfig(DistillationOptions, TrainingArguments):
    """``TrainingArguments`` plus the knobs of task-specific distillation (FastFormers, TinyBERT, DistilBERT).

    The knobs' fields are defined in :class:`~fastformers_hf.distillation.options.DistillationOptions` (a module that
    imports nothing heavy, for a fast ``fastformers-hf distill --help``); as a base listed first, its fields come after
    ``TrainingArguments``' own, as when they were declared here.

    Loss = ``distillation_weight * T² * CE(softmax(teacher/T), student/T) + (1 - distillation_weight) * CE(labels)
    + hidden_state_loss_weight * MSE(hidden) + attention_loss_weight * MSE(attention maps)``, the soft and hard
    terms taken per kind of head (QA start/end, per token, per choice; MSE for regression):
    :data:`~fastformers_hf.distillation.losses.LOSSES`.
    """

    def __post_init__(self):
        TrainingArguments.__post_init__(self)
        DistillationOptions.__post_init__(self)  # the distillation knobs' checks
