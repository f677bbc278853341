"""Timing a cascade: each tier's logits with per-input seconds (what calibration's latency axis is made of), and
tier 1, tier 2 and the cascade measured end to end side by side."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import FastFormersError
from ..inference.inputs import validate_inputs
from .calibration import metric_fn

if TYPE_CHECKING:
    from ..inference.classifier import TextClassifier
    from .model import CascadeClassifier


def timed_logits(clf: "TextClassifier", inputs, warmup: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``clf.predict_logits(inputs)`` and the seconds each input cost (tokenisation included), after ``warmup``
    untimed batches (first calls allocate)."""
    inputs = validate_inputs(inputs)
    seconds = np.zeros(len(inputs), dtype=np.float64)
    if inputs and warmup:
        clf.predict_logits(inputs[:warmup * clf.config.batch_size])
    return clf.predict_logits(inputs, seconds=seconds), seconds


def measure_throughput(cascade: "CascadeClassifier", inputs, labels=None, repeats: int = 3, warmup: int = 8,
                       metric: str = "accuracy") -> dict[str, dict[str, Any]]:
    """Tier 1 alone, tier 2 alone and the cascade on ``inputs``, each in its configured batch sizes: median wall
    time over ``repeats`` passes (the three interleaved, order rotated, so that load from elsewhere hits all alike),
    inputs per second, speed-up over tier 2, the metric when ``labels`` are given, and the share sent to tier 2."""
    from ..utils.timing import time_interleaved

    inputs = validate_inputs(inputs)
    if not inputs:
        raise FastFormersError("no inputs to measure; pass at least one text.")
    systems = {"tier1": cascade.tier1.predict, "tier2": cascade.tier2.predict, "cascade": cascade.predict}
    for run in systems.values():  # untimed warm-up
        run(inputs[:warmup])
    timing = time_interleaved({n: (lambda run=run: run(inputs)) for n, run in systems.items()}, repeats=repeats,
                              keep_outputs=True)
    outputs = {n: timing.of(n)[-1].outputs for n in systems}
    score = metric_fn(metric) if labels is not None else None
    out = {}
    for name in systems:
        seconds = timing.wall_s(name)
        row = {"seconds": seconds, "inputs_per_s": len(inputs) / seconds, "ms_per_input": 1e3 * seconds / len(inputs)}
        if score is not None:
            row[metric] = float(score(np.asarray(labels), np.asarray([o["label_id"] for o in outputs[name]])))
        if name == "cascade":
            row["share_tier2"] = float(np.mean([o["tier"] == 2 for o in outputs[name]]))
        out[name] = row
    for row in out.values():
        row["speedup_vs_tier2"] = out["tier2"]["seconds"] / row["seconds"]
    out["settings"] = {"inputs": len(inputs), "repeats": repeats, "threshold": cascade.threshold,
                       "tier1_batch_size": cascade.config.tier1_batch_size,
                       "tier2_batch_size": cascade.config.tier2_batch_size, **timing.load()}
    return out
