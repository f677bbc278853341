"""Entity-level precision / recall / F1 (and token accuracy) for NER, computed by ``seqeval`` (offline, unlike
``evaluate.load("seqeval")``, which fetches its script from the Hub).

Positions labelled -100 (special tokens, continuation sub-tokens) are dropped from labels and predictions alike
before the tags are compared. ``mode=None`` is seqeval's default, conlleval's rules (an ``I-X`` after ``O`` starts
an entity); ``mode="strict"`` reads the tags as IOB2 (:class:`seqeval.scheme.IOB2`), so only well-formed entities
count.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from ..errors import FastFormersError

IGNORE_INDEX = -100
MODES = (None, "strict")


def tag_sequences(predictions, labels, label_names: Sequence[str]) -> tuple[list[list[str]], list[list[str]]]:
    """Tag names of (predictions, labels) per sentence, -100 positions dropped. ``predictions``: ids ``(N, T)`` or
    logits ``(N, T, C)`` (argmax taken); ragged lists of ids work too."""
    if isinstance(predictions, np.ndarray) and predictions.ndim == 3:
        predictions = predictions.argmax(-1)  # (N, T)
    if len(predictions) != len(labels):
        raise FastFormersError(f"{len(predictions)} predicted sequences for {len(labels)} labelled ones.")
    names = list(label_names)
    pred_tags, true_tags = [], []
    for i, (pred, gold) in enumerate(zip(predictions, labels)):
        if len(pred) != len(gold):
            raise FastFormersError(f"sequence {i}: {len(pred)} predictions for {len(gold)} labels.")
        kept = [(int(p), int(g)) for p, g in zip(pred, gold) if g != IGNORE_INDEX]
        if any(not 0 <= x < len(names) for pair in kept for x in pair):
            raise FastFormersError(f"sequence {i} has label ids outside 0..{len(names) - 1} ({len(names)} names).")
        pred_tags.append([names[p] for p, _ in kept])
        true_tags.append([names[g] for _, g in kept])
    return pred_tags, true_tags


def entity_metrics(predictions, labels, label_names: Sequence[str], mode: str | None = None,
                   per_type: bool = False) -> dict[str, float]:
    """``precision``, ``recall``, ``f1`` over entities (micro-averaged) and token ``accuracy``; with ``per_type``
    also ``f1_<TYPE>`` for each entity type. An empty denominator scores 0 (no warning)."""
    if mode not in MODES:
        raise FastFormersError(f"mode must be None (conlleval) or 'strict' (IOB2), got {mode!r}.")
    pred, true = tag_sequences(predictions, labels, label_names)
    kwargs = dict(mode=mode, scheme=IOB2 if mode == "strict" else None, zero_division=0)
    out = {"precision": float(precision_score(true, pred, **kwargs)),
           "recall": float(recall_score(true, pred, **kwargs)),
           "f1": float(f1_score(true, pred, **kwargs)),
           "accuracy": float(accuracy_score(true, pred))}
    if per_type:
        report = classification_report(true, pred, output_dict=True, **kwargs)
        out.update({f"f1_{t}": float(r["f1-score"]) for t, r in report.items() if not t.endswith(" avg")})
    return out


def entity_compute_metrics(label_names: Sequence[str], mode: str | None = None):
    """A ``Trainer(compute_metrics=...)`` function: logits ``(N, T, C)`` and labels ``(N, T)`` -> :func:`entity_metrics`
    (with per-type F1)."""

    def compute(eval_pred) -> dict[str, float]:
        logits = eval_pred.predictions
        if isinstance(logits, tuple):  # (logits, hidden_states, ...) when the model returns extras
            logits = logits[0]
        return entity_metrics(np.asarray(logits), eval_pred.label_ids, label_names, mode=mode, per_type=True)

    return compute
