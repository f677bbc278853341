"""``Predictor``: the one ``predict_proba`` / ``predict`` pair of every classifier that has ``predict_logits``.

:class:`~fastformers_hf.inference.classifier.TextClassifier` (one process) and
:class:`~fastformers_hf.serving.multi_instance.MultiInstanceClassifier` (pinned worker processes) differ only in
how they compute logits; probabilities and labels are derived from them here, the same way for both.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` logits, computed stably (max subtracted first)."""
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)  # (N, C)


class Predictor:
    """Mixin: a subclass provides ``predict_logits(inputs, ...)`` and ``id2label`` (label id -> name); it gets
    :meth:`predict_proba` and :meth:`predict`. Extra arguments are passed on to ``predict_logits`` unchanged (e.g.
    ``batch_size=`` and ``progress=`` of the multi-instance server)."""

    id2label: dict[int, str]

    def predict_logits(self, inputs, *args, **kwargs) -> np.ndarray:
        """Logits ``(N, num_labels)`` in the caller's order."""
        raise NotImplementedError

    def predict_proba(self, inputs, *args, **kwargs) -> np.ndarray:
        """Probabilities ``(N, num_labels)``: the softmax of :meth:`predict_logits`, in the caller's order."""
        return softmax(self.predict_logits(inputs, *args, **kwargs))

    def predict(self, inputs, *args, **kwargs) -> list[dict[str, Any]]:
        """``[{"label": str, "label_id": int, "score": float}]`` per input, in order; ``score`` is the
        probability of the predicted label."""
        probs = self.predict_proba(inputs, *args, **kwargs)
        ids = probs.argmax(-1)
        return [{"label": self.id2label[int(i)], "label_id": int(i), "score": float(p[i])} for i, p in zip(ids, probs)]
