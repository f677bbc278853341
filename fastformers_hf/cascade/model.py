"""Cascade inference (TangoBERT, Mamou et al. 2022): a fast tier 1 answers the inputs it is sure of, a larger
tier 2 answers the rest.

    cascade = CascadeClassifier("student-int8", "teacher-int8", threshold=0.9)
    cascade.predict(["a gorgeous film", "not bad, not good"])
    # [{"label": "positive", "label_id": 1, "score": 0.98, "confidence": 0.98, "tier": 1}, {..., "tier": 2}]

Routing: tier 1's confidence (largest softmax probability, or 1 - normalised entropy; optionally after temperature
scaling) below ``threshold`` sends the input to tier 2. Each tier runs in its own batch size; escalated inputs are
gathered until tier 2's batch is full (or ``flush()``, or ``max_wait_s``), as in the paper.

Calibration (:meth:`CascadeClassifier.calibrate`) runs each tier ONCE on every validation example, timed, and then
evaluates every threshold analytically: the escalated set of a threshold is a prefix of the examples sorted by
confidence, so metric(threshold) and cost(threshold) = cost1 + cost2 of the escalated inputs / N come from cumulative
sums (:func:`cascade_curve`). The random-routing and oracle baselines of the paper come from the same pass.

Saved layout (``save_pretrained``; a plain folder that ``push_to_hub(..., extra_dirs={"cascade": dir})`` uploads)::

    cascade_config.json   routing config (threshold, confidence, temperature, batch sizes) + tier paths + labels
    cascade_curve.json    the calibration curve and baselines (when calibrated)
    cascade.md / .png     the curve as a table and a plot
    tier1/ tier2/         copies of both tier directories (default), or absolute paths in the JSON (copy_tiers=False)
"""
from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .config import CalibrationConfig, CascadeConfig
from .calibration import (CascadeCurve, cascade_curve, confidence_scores,  # noqa: F401
                                  fit_temperature, softmax)
from ..inference.classifier import InferenceConfig, TextClassifier
from ..inference.inputs import validate_inputs
from .throughput import measure_throughput, timed_logits  # noqa: F401 (measure_throughput re-exported)
from ..errors import FastFormersError
from ..utils.io import atomic_output_dir, read_json, write_json

CONFIG_FILE = "cascade_config.json"
CURVE_FILE = "cascade_curve.json"
REPORT_MD = "cascade.md"
PLOT_FILE = "cascade_curve.png"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------------------------------
# Tiers


def _as_tier(tier, tokenizer, batch_size: int, config: CascadeConfig, name: str):
    """``(TextClassifier, source)``; the source (a directory, or a loaded model + tokenizer) is what gets saved."""
    if isinstance(tier, TextClassifier):
        clf = copy.copy(tier)  # shares the loaded model; only the batch size differs
        clf.config = dataclasses.replace(tier.config, batch_size=batch_size)
        return clf, (Path(tier.source) if tier.source else None)
    inference = InferenceConfig(batch_size=batch_size, max_length=config.max_length, threads=config.threads)
    if isinstance(tier, (str, os.PathLike)):
        return TextClassifier.from_pretrained(tier, tokenizer=tokenizer, config=inference), Path(tier)
    if hasattr(tier, "forward") and hasattr(tier, "config"):
        if tokenizer is None:
            raise FastFormersError(f"{name} is a loaded model: pass its tokenizer too ({name.replace(' ', '')}_tokenizer=...).")
        return TextClassifier.from_pretrained(tier, tokenizer=tokenizer, config=inference), (tier, tokenizer)
    raise FastFormersError(f"{name} must be a model directory, a loaded model or a TextClassifier, got {type(tier).__name__}.")


def _check_same_labels(id2label1: dict, id2label2: dict) -> None:
    if id2label1 == id2label2:
        return
    if sorted(id2label1.values()) == sorted(id2label2.values()):
        problem = "the same labels in a different order"
    else:
        problem = "different label sets"
    raise FastFormersError(
        f"the tiers have {problem}: tier 1 id2label {id2label1}, tier 2 id2label {id2label2}. Both tiers must be "
        "fine-tuned on the same task with the same label ids; fix id2label/label2id in one config.json (and the "
        "order of its classifier rows) or use matching models.")


class _Stream:
    """Two queues: inputs waiting for tier 1, escalated inputs waiting for tier 2. Not thread-safe."""

    def __init__(self, cascade: "CascadeClassifier"):
        self.cascade = cascade
        self.tier1_queue: list[tuple] = []  # (index, input, submitted_at)
        self.tier2_queue: list[tuple] = []  # (index, input, submitted_at, tier-1 confidence)
        self.next_index = 0

    def add(self, inputs) -> None:
        now = time.monotonic()
        for x in validate_inputs(inputs):
            self.tier1_queue.append((self.next_index, x, now))
            self.next_index += 1

    def _ready(self, queue: list, batch_size: int, force: bool) -> int:
        """How many queued inputs to run now: all on force or timeout, else whole batches only."""
        if not queue:
            return 0
        wait = self.cascade.config.max_wait_s
        if force or (wait is not None and time.monotonic() - queue[0][2] >= wait):
            return len(queue)
        return len(queue) // batch_size * batch_size

    def step(self, force: bool) -> list[dict[str, Any]]:
        c, done = self.cascade, []
        n1 = self._ready(self.tier1_queue, c.config.tier1_batch_size, force)
        if n1:
            batch, self.tier1_queue = self.tier1_queue[:n1], self.tier1_queue[n1:]
            answered, escalated = c._run_tier1(batch)
            done += answered
            self.tier2_queue += escalated
        n2 = self._ready(self.tier2_queue, c.config.tier2_batch_size, force)
        if n2:
            batch, self.tier2_queue = self.tier2_queue[:n2], self.tier2_queue[n2:]
            done += c._run_tier2(batch)
        return sorted(done, key=lambda r: r["index"])


# ----------------------------------------------------------------------------------------------------------------
# The cascade


class CascadeClassifier:
    """Two :class:`~fastformers_hf.TextClassifier` tiers with confidence routing.

    ``tier1`` / ``tier2``: model directories (PyTorch or ONNX, e.g. from ``optimize_for_inference``), loaded
    PyTorch models (pass ``tier1_tokenizer`` / ``tier2_tokenizer``) or TextClassifier objects; each keeps its own
    tokenizer. Keyword overrides set :class:`~fastformers_hf.cascade.config.CascadeConfig` fields
    (``threshold``, ``confidence``, ``temperature``, ``tier1_batch_size``, ``tier2_batch_size``, ``max_wait_s``...).
    """

    def __init__(self, tier1, tier2, threshold: float | None = None, *, config: CascadeConfig | None = None,
                 tier1_tokenizer=None, tier2_tokenizer=None, curve: CascadeCurve | None = None, **overrides):
        if threshold is not None:
            overrides["threshold"] = threshold
        self.config = self._replaced(config or CascadeConfig(), overrides)
        self.tier1, self._source1 = _as_tier(tier1, tier1_tokenizer, self.config.tier1_batch_size, self.config, "tier 1")
        self.tier2, self._source2 = _as_tier(tier2, tier2_tokenizer, self.config.tier2_batch_size, self.config, "tier 2")
        _check_same_labels(self.tier1.id2label, self.tier2.id2label)
        self.id2label = self.tier1.id2label
        self.curve = curve
        self._stream = _Stream(self)

    @staticmethod
    def _replaced(config: CascadeConfig, changes: dict) -> CascadeConfig:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(CascadeConfig)})
        if unknown:
            raise FastFormersError(f"unknown cascade setting(s) {unknown}; known: "
                                   f"{', '.join(f.name for f in dataclasses.fields(CascadeConfig))}.")
        return dataclasses.replace(config, **changes) if changes else config

    def configure(self, **changes) -> "CascadeClassifier":
        """Change routing/batching settings (validated first); batch sizes apply to the loaded tiers at once."""
        self.config = self._replaced(self.config, changes)
        for clf, bs in ((self.tier1, self.config.tier1_batch_size), (self.tier2, self.config.tier2_batch_size)):
            clf.config = dataclasses.replace(clf.config, batch_size=bs)
        return self

    @property
    def threshold(self) -> float:
        return self.config.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.configure(threshold=value)

    # -- prediction -----------------------------------------------------------------------------------------------

    def _result(self, index: int, probs: np.ndarray, confidence: float, tier: int) -> dict[str, Any]:
        label_id = int(probs.argmax())
        return {"index": index, "label": self.id2label[label_id], "label_id": label_id, "score": float(probs[label_id]),
                "confidence": float(confidence), "tier": tier}

    def _run_tier1(self, batch: list[tuple]) -> tuple[list[dict], list[tuple]]:
        probs = softmax(self.tier1.predict_logits([x for _, x, _ in batch]), self.config.temperature)  # (B, C)
        conf = confidence_scores(probs, self.config.confidence)  # (B,)
        answered, escalated = [], []
        for (index, x, submitted), p, c in zip(batch, probs, conf):
            if c < self.config.threshold:
                escalated.append((index, x, submitted, float(c)))
            else:
                answered.append(self._result(index, p, c, tier=1))
        return answered, escalated

    def _run_tier2(self, batch: list[tuple]) -> list[dict]:
        probs = softmax(self.tier2.predict_logits([x for _, x, _, _ in batch]))  # (B, C)
        return [self._result(index, p, c, tier=2) for (index, _, _, c), p in zip(batch, probs)]

    def predict(self, inputs) -> list[dict[str, Any]]:
        """Per input, in the caller's order: ``{"label", "label_id", "score", "confidence", "tier"}``.

        ``score`` is the answering tier's probability of the label; ``confidence`` is tier 1's routing confidence;
        ``tier`` is 1 or 2. Tier 1 runs on all inputs in ``tier1_batch_size`` batches, tier 2 on the escalated ones
        in ``tier2_batch_size`` batches.
        """
        stream = _Stream(self)
        stream.add(inputs)
        results = stream.step(force=True)
        for r in results:
            del r["index"]
        return results

    def submit(self, inputs) -> list[dict[str, Any]]:
        """Streaming: queue inputs; run every full tier-1 batch, then every full tier-2 batch of escalated inputs
        (and partial batches older than ``max_wait_s``). Returns the results finished now, each with ``index``: its
        position among all inputs submitted to this stream, in index order."""
        self._stream.add(inputs)
        return self._stream.step(force=False)

    def poll(self) -> list[dict[str, Any]]:
        """Streaming: run batches that are full or older than ``max_wait_s``; returns the results finished now."""
        return self._stream.step(force=False)

    def flush(self) -> list[dict[str, Any]]:
        """Streaming: run everything still queued (partial batches too); returns the results finished now."""
        return self._stream.step(force=True)

    @property
    def pending(self) -> int:
        """Streamed inputs not answered yet."""
        return len(self._stream.tier1_queue) + len(self._stream.tier2_queue)

    # -- calibration ----------------------------------------------------------------------------------------------

    def _examples(self, data, labels) -> tuple[list, np.ndarray, str]:
        """``(inputs, label ids, description)`` from texts + labels or a labelled ``datasets.Dataset``."""
        label2id = {v: k for k, v in self.id2label.items()}
        if labels is None:
            from datasets import Dataset

            if not isinstance(data, Dataset):
                raise FastFormersError("pass labels=... with a list of texts, or a datasets.Dataset with a label column.")
            from ..tasks.data import guess_text_fields
            from ..tasks.data import dataset_name

            label_col = next((c for c in ("label", "labels") if c in data.column_names), None)
            if label_col is None:
                raise FastFormersError(f"the validation Dataset has no label column (it has {data.column_names}).")
            if len(data) == 0:
                raise FastFormersError("the validation set is empty; calibrate on at least a few labelled examples.")
            fields = guess_text_fields(data)
            inputs = list(data[fields[0]]) if len(fields) == 1 else list(zip(data[fields[0]], data[fields[1]]))
            labels, what = list(data[label_col]), f"{dataset_name(data, 'dataset')}, {len(data)} examples"
        else:
            inputs, labels, what = list(data), list(labels), f"{len(labels)} examples"
        if not inputs:
            raise FastFormersError("the validation set is empty; calibrate on at least a few labelled examples.")
        if len(inputs) != len(labels):
            raise FastFormersError(f"{len(inputs)} inputs but {len(labels)} labels; pass one label per input.")
        try:
            ids = np.asarray([label2id[y] if isinstance(y, str) else int(y) for y in labels], dtype=np.int64)
        except KeyError as e:
            raise FastFormersError(f"label {e.args[0]!r} is not one of the tiers' labels {list(label2id)}.") from None
        bad = [int(y) for y in ids if int(y) not in self.id2label]
        if bad:
            raise FastFormersError(f"label id {bad[0]} is not one of the tiers' label ids {sorted(self.id2label)}.")
        return inputs, ids, what

    def calibrate(self, data, labels=None, config: CalibrationConfig | None = None, **overrides) -> CascadeCurve:
        """Run both tiers once on the validation data (timed, each in its batch size), compute the whole curve, and
        set the threshold (and the fitted temperature) chosen by ``config``; returns the curve (also ``.curve``).

        ``data``: texts (or text pairs) with ``labels`` (ids or label names), or a Dataset with text + label columns.
        Nothing changes when the target or budget cannot be met (FastFormersError says what can be reached).
        """
        from ..measurements import machine_description
        from ..utils.timing import LoadMonitor

        config = dataclasses.replace(config or CalibrationConfig(), **overrides) if overrides else (config or CalibrationConfig())
        inputs, ids, what = self._examples(data, labels)
        monitor = LoadMonitor()
        with monitor.watch():
            logits1, sec1 = timed_logits(self.tier1, inputs, config.warmup)
            logits2, sec2 = timed_logits(self.tier2, inputs, config.warmup)
        temperature = fit_temperature(logits1, ids) if config.fit_temperature else self.config.temperature
        curve = cascade_curve(logits1, logits2, ids, sec1 * 1e3, sec2 * 1e3, self.config.confidence, temperature,
                              config.metric, config.random_trials, config.confidence_level, config.bootstrap_samples)
        chosen = curve.choose(config.target, config.latency_budget_ms)  # raises before anything changes
        curve.chosen = dict(chosen, target=config.target if config.latency_budget_ms is None else None,
                            latency_budget_ms=config.latency_budget_ms)
        curve.info = {"data": what, "tier1_batch_size": self.config.tier1_batch_size,
                      "tier2_batch_size": self.config.tier2_batch_size, "threads": self.config.threads,
                      "calibration": config.to_dict(), "other_cpu_load": monitor.summary(),
                      "machine": machine_description()}
        self.configure(threshold=chosen["threshold"], temperature=temperature)
        self.curve = curve
        return curve

    # -- saving and loading ---------------------------------------------------------------------------------------

    def save_pretrained(self, save_dir: str | os.PathLike, copy_tiers: bool = True, overwrite: bool = False) -> Path:
        """Write the cascade to ``save_dir`` so that ``CascadeClassifier.from_pretrained(save_dir)`` restores it.

        ``copy_tiers=True`` (default) copies both tier directories into ``tier1/`` and ``tier2/`` (self-contained,
        what a Hub push needs); ``False`` stores their absolute paths instead (small, local use only). ``save_dir``
        follows the output policy of ``fastformers_hf.utils.io`` (never a tier's folder, never someone else's files).
        """
        save_dir = Path(save_dir)
        for name, source in (("tier 1", self._source1), ("tier 2", self._source2)):
            if source is None:
                raise FastFormersError(f"{name} was given as a TextClassifier of a loaded model, which cannot be saved; "
                                       "pass the model directory (or the model and its tokenizer) instead.")
            if not isinstance(source, Path) and not copy_tiers:
                raise FastFormersError(f"{name} is a loaded model, which has no path to store: use copy_tiers=True.")
        tiers = [s for s in (self._source1, self._source2) if isinstance(s, Path)]
        with atomic_output_dir(save_dir, "cascade", tiers, overwrite, overwrite_flag="overwrite=True") as out:
            refs = {}
            for key, source in (("tier1", self._source1), ("tier2", self._source2)):
                if not copy_tiers:
                    refs[key] = str(source.resolve())
                    continue
                if isinstance(source, Path):
                    shutil.copytree(source, out / key)
                else:
                    model, tokenizer = source
                    model.save_pretrained(out / key)
                    tokenizer.save_pretrained(out / key)
                refs[key] = key
            write_json(out / CONFIG_FILE, {"fastformers_cascade_version": FORMAT_VERSION, **refs,
                                           "config": self.config.to_dict(),
                                           "id2label": {str(k): v for k, v in self.id2label.items()},
                                           "calibrated": self.curve.chosen if self.curve else None})
            if self.curve is not None:
                write_json(out / CURVE_FILE, self.curve.to_dict())
                (out / REPORT_MD).write_text(self.curve.report_md(), encoding="utf-8")
                try:
                    self.curve.plot(out / PLOT_FILE)
                except ImportError:  # matplotlib is optional
                    pass
        return save_dir

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, subfolder: str | None = None, revision: str | None = None,
                        token: str | None = None, **overrides) -> "CascadeClassifier":
        """Load a saved cascade from a local folder, or from a Hub repo id (``subfolder`` = where it was pushed,
        e.g. ``"cascade"`` for ``push_to_hub(..., extra_dirs={"cascade": dir})``; only that folder is downloaded).
        Keyword overrides change CascadeConfig fields (e.g. ``threshold=0.8``)."""
        path = Path(path)
        if not path.exists() and len(str(path).split("/")) == 2 and not str(path).startswith((".", "/")):
            from huggingface_hub import snapshot_download

            try:
                path = Path(snapshot_download(str(path), revision=revision, token=token,
                                              allow_patterns=[f"{subfolder}/*"] if subfolder else None))
            except Exception as e:  # offline, not found, no access: many exception types
                raise FastFormersError(f"{path} is neither a local folder nor a Hub repo that can be downloaded "
                                       f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}).") from e
        if subfolder:
            path = path / subfolder
        data = read_json(path / CONFIG_FILE)
        if data is None:
            raise FastFormersError(f"{path} holds no {CONFIG_FILE}; pass a folder written by "
                                   "CascadeClassifier.save_pretrained (or `fastformers-hf cascade calibrate`).")
        tiers = []
        for key in ("tier1", "tier2"):
            tier = Path(data[key]) if Path(data[key]).is_absolute() else path / data[key]
            if not tier.is_dir():
                raise FastFormersError(f"{path}/{CONFIG_FILE} points {key} to {tier}, which does not exist; "
                                       "save the cascade again (with copy_tiers=True to make it self-contained).")
            tiers.append(tier)
        curve = read_json(path / CURVE_FILE)
        return cls(*tiers, config=CascadeConfig.from_dict(data.get("config", {})),
                   curve=CascadeCurve.from_dict(curve) if curve else None, **overrides)
