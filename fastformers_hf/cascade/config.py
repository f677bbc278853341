"""Configs of the cascade (TangoBERT, Mamou et al. 2022): how it routes and batches, and how it is calibrated.

Kept apart from :mod:`fastformers_hf.cascade.model` so that reading or validating a config needs neither torch nor ONNX
Runtime.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Optional

from ..errors import FastFormersError

# How tier 1's softmax output becomes one confidence in [0, 1] (higher = more sure); below the threshold -> tier 2.
CONFIDENCE_SCORES = ("max_prob", "entropy")
CASCADE_METRICS = ("accuracy", "f1", "matthews_correlation")


@dataclass
class CascadeConfig:
    """How a :class:`~fastformers_hf.CascadeClassifier` routes inputs and batches each tier."""

    threshold: float = field(default=0.9, metadata={"help": "Inputs whose tier-1 confidence is below this go to tier 2 "
                                                            "(0 = tier 1 answers everything, 1 = tier 2 nearly all)."})
    confidence: str = field(default="max_prob", metadata={"help": "Tier-1 confidence: 'max_prob' (the largest softmax "
                            "probability, as in the paper) or 'entropy' (1 - entropy / log(num_labels))."})
    temperature: float = field(default=1.0, metadata={"help": "Tier-1 logits are divided by this before the softmax "
                               "(temperature scaling; fitted on the validation set by calibrate(fit_temperature=True))."})
    tier1_batch_size: int = field(default=8, metadata={"help": "Inputs per tier-1 forward pass."})
    tier2_batch_size: int = field(default=8, metadata={"help": "Escalated inputs gathered per tier-2 forward pass."})
    max_wait_s: Optional[float] = field(default=None, metadata={"help": "Streaming: run a partly filled batch once its "
                                        "oldest input has waited this long (checked on submit()/poll()); None = wait "
                                        "for a full batch or flush()."})
    max_length: Optional[int] = field(default=None, metadata={"help": "Token limit of both tiers (default: each model's)."})
    threads: int = field(default=1, metadata={"help": "Intra-op threads of each tier."})

    def __post_init__(self):
        if self.threshold is None or not 0.0 <= float(self.threshold) <= 1.0:
            raise FastFormersError(f"threshold must be in [0, 1], got {self.threshold}: it is compared with a "
                                   "confidence in [0, 1] (0 = tier 1 answers everything, 1 = nearly all go to tier 2).")
        if self.confidence not in CONFIDENCE_SCORES:
            raise FastFormersError(f"confidence {self.confidence!r} is unknown; use one of {', '.join(CONFIDENCE_SCORES)}.")
        if not self.temperature > 0:
            raise FastFormersError(f"temperature must be > 0, got {self.temperature}.")
        if self.tier1_batch_size < 1 or self.tier2_batch_size < 1:
            raise FastFormersError(f"batch sizes must be >= 1, got tier 1: {self.tier1_batch_size}, "
                                   f"tier 2: {self.tier2_batch_size}.")
        if self.max_wait_s is not None and self.max_wait_s < 0:
            raise FastFormersError(f"max_wait_s must be >= 0 seconds or None, got {self.max_wait_s}.")
        if self.threads < 1:
            raise FastFormersError(f"threads must be >= 1, got {self.threads}.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CascadeConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class CalibrationConfig:
    """How :meth:`~fastformers_hf.CascadeClassifier.calibrate` picks the threshold from the speed/accuracy curve.

    Both tiers run once on every validation example (timed); every threshold is then evaluated analytically.
    With ``latency_budget_ms`` set, the threshold with the best metric within the budget is chosen; otherwise the
    fastest one that reaches ``target`` times tier 2's metric. The confidence score calibrated is the cascade's
    (``CascadeConfig.confidence``).
    """

    target: float = field(default=0.99, metadata={"help": "Share of tier 2's metric (on the validation set) the cascade "
                                                          "must reach, e.g. 0.99 or 0.98; the fastest such threshold wins."})
    latency_budget_ms: Optional[float] = field(default=None, metadata={"help": "Instead of a target: the best metric "
                                               "whose expected cost per input is at most this many ms."})
    metric: str = field(default="accuracy", metadata={"help": f"Metric of the curve: {', '.join(CASCADE_METRICS)}."})
    fit_temperature: bool = field(default=False, metadata={"help": "Fit tier 1's softmax temperature on the validation "
                                  "set (minimum negative log-likelihood) before computing the curve."})
    warmup: int = field(default=2, metadata={"help": "Untimed batches per tier before the timed pass."})
    confidence_level: Optional[float] = field(default=None, metadata={"help": "Guard against a small validation "
                                              "set: take the fastest threshold that reaches the target in this share of "
                                              "bootstrap resamples of the validation set (e.g. 0.9; accuracy only). "
                                              "None = on the point estimate."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Bootstrap resamples for confidence_level."})
    random_trials: int = field(default=20, metadata={"help": "Random orders averaged for the random-routing baseline "
                               "of metrics other than accuracy (accuracy's expectation is exact)."})

    def __post_init__(self):
        if self.latency_budget_ms is None and (self.target is None or not 0 < self.target <= 1.5):
            raise FastFormersError(f"target must be a share of tier 2's metric in (0, 1.5], e.g. 0.99, got {self.target}.")
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise FastFormersError(f"latency_budget_ms must be > 0, got {self.latency_budget_ms}.")
        if self.metric not in CASCADE_METRICS:
            raise FastFormersError(f"metric {self.metric!r} is unknown; use one of {', '.join(CASCADE_METRICS)}.")
        if self.confidence_level is not None:
            if not 0 < self.confidence_level < 1:
                raise FastFormersError(f"confidence_level must be in (0, 1), e.g. 0.9, got {self.confidence_level}.")
            if self.metric != "accuracy":
                raise FastFormersError(f"confidence_level works with metric='accuracy' only (got {self.metric!r}); "
                                       "set confidence_level=None for other metrics.")
        if self.bootstrap_samples < 10:
            raise FastFormersError(f"bootstrap_samples must be >= 10, got {self.bootstrap_samples}.")
        if self.warmup < 0 or self.random_trials < 1:
            raise FastFormersError("warmup must be >= 0 and random_trials >= 1.")

    def to_dict(self) -> dict:
        return asdict(self)
