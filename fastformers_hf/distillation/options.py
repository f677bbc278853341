"""The distillation knobs of :class:`~fastformers_hf.distillation.config.DistillationConfig`, without ``TrainingArguments``.

``DistillationConfig`` is ``TrainingArguments`` plus these fields (it inherits them from here, after
``TrainingArguments``' own, so its field order and flags are unchanged). They live in a module that imports nothing
heavy so that ``fastformers-hf distill --help`` and its missing-argument errors need neither transformers nor torch
(importing ``TrainingArguments`` imports torch: about 3 s). Their checks are here too (``DistillationConfig`` runs
them after ``TrainingArguments``' own), so the quick parse reports a bad value as the full one does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import FastFormersError

LAYER_MAPPINGS = ("uniform", "last")


@dataclass
class DistillationOptions:
    """Task-specific distillation settings (FastFormers, TinyBERT, DistilBERT); see ``DistillationConfig``."""

    # TrainingArguments had this flag until transformers 5 removed it; our output-folder policy still reads it.
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace an output_dir that holds a previous distillation of ours (never another folder)."},
    )
    teacher_model_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "Teacher model (local directory or Hub id); used when no teacher_model object is passed."},
    )
    temperature: float = field(
        default=2.0, metadata={"help": "Softmax temperature T of the soft cross-entropy; must be > 0."}
    )
    distillation_weight: float = field(
        default=1.0,
        metadata={"help": "Weight of the soft (teacher) loss in [0, 1]; the hard-label loss gets 1 minus this."},
    )
    hidden_state_loss_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the MSE between mapped hidden states (a learned projection when widths differ)."},
    )
    attention_loss_weight: float = field(
        default=0.0, metadata={"help": "Weight of the MSE between mapped attention maps."}
    )
    layer_mapping: str = field(
        default="uniform",
        metadata={
            "help": "Which teacher layer each student layer learns from: 'uniform' (every k-th), 'last' (the last "
            "k layers), or comma-separated 1-based teacher layer indices, one per student layer (e.g. '2,4,6')."
        },
    )
    teacher_logits_column: str = field(
        default="teacher_logits",
        metadata={"help": "Dataset column holding precomputed teacher logits; when present, no teacher forward runs."},
    )
    allow_different_tokenizers: bool = field(
        default=False,
        metadata={"help": "Distil even though the teacher's and the student's tokenizers differ in content (the "
                          "same ids would mean different words to the two models); off by default."},
    )

    def __post_init__(self):
        if not self.temperature > 0:
            raise FastFormersError(f"temperature must be > 0, got {self.temperature}; 1-4 are usual values.")
        if not 0.0 <= self.distillation_weight <= 1.0:
            raise FastFormersError(f"distillation_weight must be in [0, 1], got {self.distillation_weight}.")
        for name in ("hidden_state_loss_weight", "attention_loss_weight"):
            if getattr(self, name) < 0:
                raise FastFormersError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.layer_mapping not in LAYER_MAPPINGS:
            try:
                self.explicit_layer_map()
            except ValueError:
                raise FastFormersError(
                    f"layer_mapping must be 'uniform', 'last' or comma-separated integers like '2,4,6'; "
                    f"got {self.layer_mapping!r}."
                ) from None

    @property
    def uses_intermediate_losses(self) -> bool:
        return self.hidden_state_loss_weight > 0 or self.attention_loss_weight > 0

    def explicit_layer_map(self) -> Optional[list[int]]:
        if self.layer_mapping in LAYER_MAPPINGS:
            return None
        return [int(x) for x in str(self.layer_mapping).split(",") if x.strip()]
