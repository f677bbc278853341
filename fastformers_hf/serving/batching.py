"""Length bucketing: which inputs share a batch, so that each batch, padded only to its own longest input, wastes
little on padding. Used by :class:`~fastformers_hf.serving.multi_instance.MultiInstanceClassifier` and
:class:`~fastformers_hf.inference.classifier.TextClassifier`; results always go back in the caller's order."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import FastFormersError


def length_buckets(lengths: Sequence[int], batch_size: int, sort_by_length: bool = True) -> list[np.ndarray]:
    """Indices of each batch. With ``sort_by_length`` (and ``batch_size > 1``) inputs of similar length share a
    batch, so padding each batch to its own longest input wastes little; otherwise batches follow input order."""
    if batch_size < 1:
        raise FastFormersError(f"batch_size must be >= 1, got {batch_size}.")
    order = (np.argsort(np.asarray(lengths), kind="stable") if sort_by_length and batch_size > 1
             else np.arange(len(lengths)))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
