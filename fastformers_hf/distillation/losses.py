"""Distillation losses, one row per task kind (:data:`~fastformers_hf.tasks.kinds.KINDS`).

Each row says how the student learns from the teacher's distilled outputs (the kind's ``outputs``), which positions
count, which columns the hard loss needs, whether the two models' label lists must agree, and which collator pads a
batch of this kind. The trainer, the teacher cache and the compatibility checks read this table; nothing else
branches on the kind of head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against the teacher's softened distribution over the last dim, times T² so gradients keep
    their scale; the mean over rows, or over the rows where ``mask`` is true."""
    t = temperature
    targets = F.softmax(teacher_logits / t, dim=-1)  # (..., C)
    ce = -(targets * F.log_softmax(student_logits / t, dim=-1)).sum(-1)  # (...)
    if mask is None:
        return ce.mean() * t * t
    mask = mask.bool()
    # masked_fill, not a product: whatever the logits are at ignored rows, they cannot leak in (not even as NaN).
    return ce.masked_fill(~mask, 0).sum() / mask.sum().clamp(min=1) * t * t


def span_soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                            mask: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy over positions (a QA start or end distribution), times T²: positions where ``mask`` is
    false (padding) are no candidates for either model."""
    t = temperature
    keep = mask.bool()  # (B, T)
    # Filled after dividing by T: the lowest float divided by T < 1 would overflow to -inf (and 0 * -inf is NaN).
    lowest = torch.finfo(student_logits.dtype).min
    s = (student_logits / t).masked_fill(~keep, lowest)  # (B, T)
    q = (teacher_logits.to(student_logits.dtype) / t).masked_fill(~keep, lowest)  # (B, T)
    return soft_cross_entropy(s, q, 1.0) * t * t


def token_mask(batch: dict, logits: torch.Tensor) -> torch.Tensor:
    """Positions that count for a token-level loss: not padding and, when labels are given, not labelled -100
    (special tokens, sub-word continuations)."""
    mask = batch.get("attention_mask")
    mask = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device) if mask is None else mask.bool()
    labels = batch.get("labels")
    if labels is not None:
        mask = mask & (labels != -100)
    return mask  # (B, T)


def _classification(student: dict, teacher: dict, batch: dict, temperature: float) -> torch.Tensor:
    return soft_cross_entropy(student["logits"], teacher["logits"], temperature)  # (B, C) or (B, num_choices)


def _regression(student: dict, teacher: dict, batch: dict, temperature: float) -> torch.Tensor:
    # A score has no distribution to soften: match the teacher's value.
    return F.mse_loss(student["logits"], teacher["logits"])  # (B, 1)


def _tokens(student: dict, teacher: dict, batch: dict, temperature: float) -> torch.Tensor:
    logits = student["logits"]  # (B, T, C)
    return soft_cross_entropy(logits, teacher["logits"], temperature, mask=token_mask(batch, logits))


def _spans(student: dict, teacher: dict, batch: dict, temperature: float) -> torch.Tensor:
    start = student["start_logits"]  # (B, T)
    mask = batch.get("attention_mask")
    mask = torch.ones_like(start, dtype=torch.bool) if mask is None else mask
    return (span_soft_cross_entropy(start, teacher["start_logits"], temperature, mask)
            + span_soft_cross_entropy(student["end_logits"], teacher["end_logits"], temperature, mask)) / 2


@dataclass(frozen=True)
class KindLoss:
    """How one kind of head is distilled."""

    soft_loss: Callable[[dict, dict, dict, float], torch.Tensor]  # (student outputs, teacher outputs, batch, T)
    label_columns: tuple[str, ...] = ("labels",)  # what the hard loss needs ("label" is accepted for "labels")
    per_position: bool = False  # outputs have a row per token: cached as float16 rows of the input's own length
    compare_labels: bool = True  # teacher and student must predict the same label list
    # The collator for batches of this kind: a transformers class, or "module:Class" of this package.
    collator: str = "DataCollatorWithPadding"


LOSSES: dict[str, KindLoss] = {
    "sequence_classification": KindLoss(_classification),
    "regression": KindLoss(_regression),
    "token_classification": KindLoss(_tokens, per_position=True, collator="DataCollatorForTokenClassification"),
    "question_answering": KindLoss(_spans, label_columns=("start_positions", "end_positions"), per_position=True,
                                   compare_labels=False),
    # num_labels means nothing to a multiple-choice head (one score per choice).
    # Rows with different numbers of choices are padded with a choice mask (tasks/choice_mask.py).
    "multiple_choice": KindLoss(_classification, compare_labels=False,
                                collator="fastformers_hf.tasks.choice_mask:ChoiceCollator"),
}


def loss_for(kind) -> KindLoss:
    """The row of :data:`LOSSES` for a :class:`~fastformers_hf.tasks.kinds.TaskKind` (or its name)."""
    return LOSSES[getattr(kind, "name", kind)]


def make_collator(kind, tokenizer):
    """The padding collator of ``kind``'s batches (token labels padded with -100, choices nested) for ``tokenizer``."""
    import importlib

    import transformers

    name = loss_for(kind).collator
    module, _, cls = name.rpartition(":")
    return getattr(importlib.import_module(module) if module else transformers, cls)(tokenizer)
