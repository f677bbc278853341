"""Classification metrics that work offline.

``evaluate.load("accuracy")`` downloads its metric script from the Hub at run time and fails without a network,
so we compute the same numbers with scikit-learn (which ``evaluate``'s scripts call underneath anyway).
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

METRICS = {
    "accuracy": lambda y, p: float(accuracy_score(y, p)),
    "f1": lambda y, p: float(f1_score(y, p, average="binary" if len(set(y) | set(p)) <= 2 else "macro")),
    "matthews_correlation": lambda y, p: float(matthews_corrcoef(y, p)),
    # The mean of every class's F1 (SuperGLUE's CB score beside accuracy); a class never predicted counts 0.
    "macro_f1": lambda y, p: float(f1_score(y, p, average="macro", zero_division=0)),
}


def classification_metrics(labels, predictions, names=("accuracy", "f1", "matthews_correlation")) -> dict[str, float]:
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    return {name: METRICS[name](labels, predictions) for name in names}


def compute_metrics(eval_pred) -> dict[str, float]:
    """A ``Trainer(compute_metrics=...)`` function: logits -> argmax -> accuracy, F1, Matthews correlation."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):  # (logits, hidden_states, ...) when the model returns extras
        logits = logits[0]
    return classification_metrics(labels, np.argmax(logits, axis=-1))


def regression_metrics(labels, predictions) -> dict[str, float]:
    """Pearson and Spearman correlation of predicted and gold scores (STS-B's metrics); NaN where either side is
    constant (no correlation is defined)."""
    from scipy.stats import pearsonr, spearmanr

    y, p = np.asarray(labels, dtype=np.float64).reshape(-1), np.asarray(predictions, dtype=np.float64).reshape(-1)
    if len(y) < 2 or y.std() == 0 or p.std() == 0:
        return {"pearson": float("nan"), "spearman": float("nan")}
    return {"pearson": float(pearsonr(y, p)[0]), "spearman": float(spearmanr(y, p)[0])}


def regression_compute_metrics(eval_pred) -> dict[str, float]:
    """A ``Trainer(compute_metrics=...)`` function for a one-output regression head: Pearson and Spearman."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return regression_metrics(labels, np.asarray(logits).reshape(len(labels), -1)[:, 0])


def squad_evaluation(examples, features, predictions) -> dict[str, float]:
    """SQuAD v1.1 ``exact_match`` / ``f1`` of span logits over evaluation windows: ``predictions`` is
    ``(start_logits, end_logits)``, one row per window of ``features`` (those of
    :func:`~fastformers_hf.tasks.question_answering.eval_features` over ``examples``, e.g. ``Trainer.predict``'s
    ``predictions``, -100-padded rows accepted), decoded by
    :func:`~fastformers_hf.inference.question_answering.postprocess` and scored against ``examples``' answers."""
    from ..inference.question_answering import postprocess
    from .squad_metric import squad_metrics

    start_logits, end_logits = predictions[0], predictions[1]
    return squad_metrics(postprocess(examples, features, start_logits, end_logits), examples)
