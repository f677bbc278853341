"""SQuAD v1.1 exact match and F1, as the official ``evaluate-v1.1.py`` computes them.

Written here because ``evaluate.load("squad")`` downloads its script from the Hub at run time (it fails offline),
and the copy in ``transformers.data.metrics.squad_metrics`` is the v2.0 script, whose F1 of an empty prediction
against an empty gold answer is 1 where v1.1 gives 0. Answers are normalised the official way (lowercase, ASCII
punctuation removed, then the articles a/an/the, then extra whitespace); each question scores its best gold answer;
both numbers are averaged over all questions of the references and multiplied by 100. A question without a
prediction scores 0, as in the official script.
"""
from __future__ import annotations

import logging
import re
import string
from collections import Counter
from typing import Any, Iterable, Mapping

from ..errors import FastFormersError

logger = logging.getLogger(__name__)

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """The official normalisation: lowercase, drop ASCII punctuation, drop articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised answers (0 when they share no token, also when both are empty)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def _predictions(predictions: Any) -> dict[str, str]:
    """id -> text from ``{id: text}`` or a list of ``{"id", "prediction_text"}`` (``evaluate``'s form) or of
    ``{"id", "answer"}`` (what :func:`~fastformers_hf.inference.question_answering.postprocess` returns)."""
    if isinstance(predictions, Mapping):
        return {str(k): v for k, v in predictions.items()}
    out = {}
    for i, p in enumerate(predictions):
        key = "prediction_text" if isinstance(p, Mapping) and "prediction_text" in p else "answer"
        if not isinstance(p, Mapping) or "id" not in p or not isinstance(p.get(key), str):
            raise FastFormersError(f"prediction {i} is not {{'id': ..., 'prediction_text': str}} "
                                   f"(or {{'id', 'answer'}}): got {p!r:.120}.")
        out[str(p["id"])] = p[key]
    return out


def _gold_texts(reference: Mapping) -> list[str]:
    answers = reference["answers"]
    return list(answers["text"] if isinstance(answers, Mapping) else answers)


def squad_metrics(predictions: Any, references: Iterable[Mapping]) -> dict[str, float]:
    """``{"exact_match", "f1"}`` (×100) of ``predictions`` (``{id: text}``, or a list of ``{"id",
    "prediction_text"}`` / ``{"id", "answer"}``) against ``references``: rows with ``id`` and ``answers`` (the
    Hub form ``{"text": [...], ...}`` or a list of strings), e.g. a ``validation`` split of :func:`load_squad`."""
    predicted = _predictions(predictions)
    exact = f1 = 0.0
    total = missing = 0
    for ref in references:
        total += 1
        golds = _gold_texts(ref)
        if not golds:
            raise FastFormersError(f"reference {ref['id']!r} has no gold answers; SQuAD v1.1 needs at least one.")
        if str(ref["id"]) not in predicted:
            missing += 1
            continue
        prediction = predicted[str(ref["id"])]
        exact += max(exact_match_score(prediction, g) for g in golds)
        f1 += max(f1_score(prediction, g) for g in golds)
    if total == 0:
        raise FastFormersError("no references to score against.")
    if missing:
        logger.warning("%d of %d questions have no prediction and score 0.", missing, total)
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}
