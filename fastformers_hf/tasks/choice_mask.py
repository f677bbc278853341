"""Multiple-choice training batches whose examples have different numbers of choices: padded to the batch's most
choices, with a mask, so that a padded slot is never chosen, never counted in a loss and never learned from.

Written here because transformers has neither half: ``DataCollatorForMultipleChoice`` reshapes a flat batch to
``(B, C, T)`` and so needs one number of choices per batch, and ``...ForMultipleChoice`` models take no choice mask.
Only training needs this: prediction (``ChoicePredictor``) groups inputs by their number of choices.

A padded slot repeats the example's first choice (real tokens: a row of padding alone would leave attention nothing
to attend to); ``choice_mask`` (B, C) marks the real choices, and :func:`forward_masked` sets the others' logits to
:data:`MASKED_CHOICE_LOGIT` before the loss or any softmax.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DataCollatorForMultipleChoice, Trainer

# exp(-1e4 / T) is 0 in float32 at any usable temperature, and unlike finfo.min it cannot overflow to -inf when
# divided by T < 1 (the soft loss would then compute 0 * -inf = NaN).
MASKED_CHOICE_LOGIT = -1e4
MASK_COLUMN = "choice_mask"


def pad_choices(tokenizer, features: list[dict], **pad_kwargs) -> dict:
    """``(B, C, T)`` model inputs from examples of ``C_i`` choices each (``C = max C_i``), each a dict of per-choice
    token lists; with ``choice_mask`` (B, C), true at real choices, when the counts differ."""
    counts = [len(f["input_ids"]) for f in features]
    n = max(counts)
    flat = []
    for f, count in zip(features, counts):
        rows = [{k: v[i] for k, v in f.items()} for i in range(count)]
        flat += rows + [rows[0]] * (n - count)  # padded slots: copies of the first choice
    batch = tokenizer.pad(flat, return_tensors="pt", **pad_kwargs)
    batch = {k: v.view(len(features), n, -1) for k, v in batch.items()}  # (B, C, T)
    if min(counts) < n:
        batch[MASK_COLUMN] = torch.arange(n)[None, :] < torch.tensor(counts)[:, None]  # (B, C)
    return batch


@dataclass
class ChoiceCollator(DataCollatorForMultipleChoice):
    """``DataCollatorForMultipleChoice`` that also takes examples with different numbers of choices (padded, with a
    ``choice_mask``); batches of one number of choices come out exactly as transformers' collator makes them."""

    def torch_call(self, examples: list[dict]):
        label = "label" if "label" in examples[0] else "labels"
        features = [{k: v for k, v in e.items() if k != label} for e in examples]
        batch = pad_choices(self.tokenizer, features, padding=self.padding, max_length=self.max_length,
                            pad_to_multiple_of=self.pad_to_multiple_of)
        if label in examples[0]:
            batch["labels"] = torch.tensor([e[label] for e in examples], dtype=torch.int64)
        return batch


def mask_choice_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``logits`` (B, C) with the padded choices (``mask`` false) set to :data:`MASKED_CHOICE_LOGIT`."""
    if mask is None:
        return logits
    return logits.masked_fill(~mask.to(logits.device).bool(), MASKED_CHOICE_LOGIT)


def forward_masked(model, inputs: dict, **kwargs):
    """``(model(**inputs), mask)`` for a batch that may carry a ``choice_mask``: the mask is kept out of the model's
    inputs (models take none), padded choices' logits are masked and the loss is taken on the masked logits.
    Without a mask: the model's own outputs and ``None``. ``inputs`` is not changed."""
    inputs = dict(inputs)
    mask = inputs.pop(MASK_COLUMN, None)
    if mask is None:
        return model(**inputs, **kwargs), None
    labels = inputs.pop("labels", None)
    outputs = model(**inputs, **kwargs)
    outputs["logits"] = mask_choice_logits(outputs["logits"], mask)  # (B, C)
    if labels is not None:
        outputs["loss"] = F.cross_entropy(outputs["logits"], labels.to(outputs["logits"].device))
    return outputs, mask


class ChoiceMaskTrainer(Trainer):
    """``Trainer`` whose loss honours a batch's ``choice_mask`` (fine-tuning on multiple-choice rows with different
    numbers of choices); batches without one are trained exactly as by ``Trainer``."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if MASK_COLUMN not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs, _ = forward_masked(model, inputs)
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]
