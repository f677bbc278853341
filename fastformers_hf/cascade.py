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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .cascade_config import CalibrationConfig, CascadeConfig
from .classifier import InferenceConfig, TextClassifier
from .errors import FastFormersError
from .io_utils import atomic_output_dir, read_json, write_json

CONFIG_FILE = "cascade_config.json"
CURVE_FILE = "cascade_curve.json"
REPORT_MD = "cascade.md"
PLOT_FILE = "cascade_curve.png"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------------------------------
# Confidence


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Softmax in float64 (so that confidences near 1 stay distinct), ``(N, C)``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def confidence_scores(probs: np.ndarray, kind: str = "max_prob") -> np.ndarray:
    """One confidence in [0, 1] per row of ``probs`` ``(N, C)``: the largest probability, or 1 - entropy / log C."""
    if kind == "max_prob":
        return probs.max(-1)
    if kind == "entropy":
        plogp = np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)
        return np.clip(1.0 + plogp.sum(-1) / np.log(probs.shape[-1]), 0.0, 1.0)
    raise FastFormersError(f"confidence {kind!r} is unknown; use max_prob or entropy.")


def fit_temperature(logits, labels) -> float:
    """The temperature T minimising the negative log-likelihood of ``softmax(logits / T)`` (Guo et al. 2017)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)

    def nll(log_t: float) -> float:
        zt = z / np.exp(log_t)
        return float(np.mean(logsumexp(zt, axis=-1) - zt[np.arange(len(y)), y]))

    return float(np.exp(minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded").x))


# ----------------------------------------------------------------------------------------------------------------
# The curve: every threshold from one pass of each tier


def _metric_fn(name: str):
    from .metrics import METRICS

    return METRICS[name]


def _values_at(order: np.ndarray, counts: Sequence[int], pred1, pred2, labels, metric: str) -> np.ndarray:
    """The metric when the first ``k`` inputs of ``order`` go to tier 2 and the rest stay with tier 1, per k."""
    counts = np.asarray(counts, dtype=np.int64)
    if metric == "accuracy":  # decomposable: cumulative sums, O(N)
        c1 = (pred1 == labels)[order].astype(np.float64)
        c2 = (pred2 == labels)[order].astype(np.float64)
        cum1, cum2 = np.concatenate([[0.0], np.cumsum(c1)]), np.concatenate([[0.0], np.cumsum(c2)])
        return (cum2[counts] + c1.sum() - cum1[counts]) / len(labels)
    fn, out = _metric_fn(metric), []
    for k in counts:  # F1 / MCC do not decompose per example: one evaluation per point
        pred = pred1.copy()
        pred[order[:k]] = pred2[order[:k]]
        out.append(fn(labels, pred))
    return np.asarray(out, dtype=np.float64)


def _costs_at(order: np.ndarray, counts, ms1: np.ndarray, ms2: np.ndarray) -> np.ndarray:
    """Expected ms per input: tier 1 on all, plus tier 2's own (measured) cost on the escalated ones."""
    cum2 = np.concatenate([[0.0], np.cumsum(ms2[order])])
    return ms1.mean() + cum2[np.asarray(counts, dtype=np.int64)] / len(ms1)


def _curve_dict(shares, values, costs, **extra) -> dict[str, list]:
    return {"share": [float(x) for x in shares], "value": [float(x) for x in values],
            "cost_ms": [float(x) for x in costs], **{k: [float(x) for x in v] for k, v in extra.items()}}


@dataclass
class CascadeCurve:
    """Metric and expected cost per input of the cascade at every distinct threshold, with the paper's baselines.

    ``tangobert`` routes by tier-1 confidence; ``random`` sends a random share of inputs to tier 2 (expected value);
    ``oracle`` sends first the inputs tier 1 gets wrong and tier 2 gets right (for accuracy: the best any router can
    do). Each is ``{"share": [...], "value": [...], "cost_ms": [...]}`` (tangobert also ``threshold``); speed-ups are
    relative to tier 2 alone on every input.
    """

    metric: str
    confidence: str
    temperature: float
    n: int
    tier1: dict[str, float]
    tier2: dict[str, float]
    tangobert: dict[str, list]
    random: dict[str, list]
    oracle: dict[str, list]
    confidence_level: Optional[float] = None
    chosen: Optional[dict[str, Any]] = None
    info: dict[str, Any] = field(default_factory=dict)

    # -- reading --------------------------------------------------------------------------------------------------

    def arrays(self, method: str = "tangobert") -> dict[str, np.ndarray]:
        if method not in ("tangobert", "random", "oracle"):
            raise FastFormersError(f"method {method!r} is unknown; use tangobert, random or oracle.")
        data = {k: np.asarray(v, dtype=np.float64) for k, v in getattr(self, method).items()}
        data["speedup"] = self.tier2["cost_ms"] / data["cost_ms"]
        return data

    def _point(self, method: str, i: int) -> dict[str, float]:
        a = self.arrays(method)
        point = {k: float(v[i]) for k, v in a.items()}
        point["relative"] = point["value"] / self.tier2["value"] if self.tier2["value"] else float("nan")
        return point

    def speedup_at(self, target: float, method: str = "tangobert", guarded: bool = False) -> Optional[dict[str, float]]:
        """The fastest point of ``method`` whose metric is at least ``target`` x tier 2's, or None. ``guarded``:
        judge TangoBERT points by their bootstrap lower bound (``relative_lower``) instead of the point estimate."""
        a = self.arrays(method)
        if guarded:
            if "relative_lower" not in a:
                raise FastFormersError("this curve has no bootstrap bounds; compute it with confidence_level=...")
            ok = np.flatnonzero(a["relative_lower"] >= target - 1e-12)
        else:
            ok = np.flatnonzero(a["value"] >= target * self.tier2["value"] - 1e-12)
        if ok.size == 0:
            return None
        return self._point(method, int(ok[np.lexsort((-a["value"][ok], a["cost_ms"][ok]))[0]]))

    def choose(self, target: float | None = 0.99, latency_budget_ms: float | None = None) -> dict[str, float]:
        """The threshold to use: best metric within ``latency_budget_ms`` if given, else the fastest reaching
        ``target`` x tier 2's metric. Raises FastFormersError naming the best reachable point when none qualifies."""
        a = self.arrays("tangobert")
        if latency_budget_ms is not None:
            ok = np.flatnonzero(a["cost_ms"] <= latency_budget_ms)
            if ok.size == 0:
                raise FastFormersError(
                    f"no threshold meets the latency budget of {latency_budget_ms:g} ms per input: tier 1 alone costs "
                    f"{self.tier1['cost_ms']:.3f} ms per input on the validation set; raise the budget or use a "
                    "faster tier 1 (or larger batches).")
            return self._point("tangobert", int(ok[np.lexsort((a["cost_ms"][ok], -a["value"][ok]))[0]]))
        guarded = "relative_lower" in a
        point = self.speedup_at(target, "tangobert", guarded=guarded)
        if point is None and guarded:
            i = int(np.lexsort((a["cost_ms"], -a["relative_lower"]))[0])
            best = self._point("tangobert", i)
            raise FastFormersError(
                f"the target of {100 * target:.2f}% of tier 2's {self.metric} is not reached with confidence "
                f"{self.confidence_level} on the validation set ({self.n} examples). Best guarded point: "
                f"{100 * a['relative_lower'][i]:.2f}% of tier 2 in {100 * self.confidence_level:g}% of resamples "
                f"(point estimate {100 * best['relative']:.2f}%) at threshold {best['threshold']:.4f}, "
                f"{100 * best['share']:.1f}% sent to tier 2. Lower the target or the confidence level, or calibrate "
                "on more examples.")
        if point is None:
            best = self._point("tangobert", int(np.lexsort((a["cost_ms"], -a["value"]))[0]))
            raise FastFormersError(
                f"the target of {100 * target:.2f}% of tier 2's {self.metric} ({self.tier2['value']:.4f}) is not reached "
                f"on the validation set ({self.n} examples). Best reachable point: {self.metric} {best['value']:.4f} "
                f"({100 * best['relative']:.2f}% of tier 2) at threshold {best['threshold']:.4f}, "
                f"{100 * best['share']:.1f}% sent to tier 2, {best['speedup']:.2f}x tier 2's speed. Lower the target "
                f"to at most {best['relative']:.4f}, or use a stronger tier 1 / tier 2.")
        return point

    def versus_random(self) -> dict[str, float]:
        """TangoBERT minus random routing at the same share sent to tier 2, over every TangoBERT point."""
        t, r = self.arrays("tangobert"), self.arrays("random")
        margin = t["value"] - np.interp(t["share"], r["share"], r["value"])
        inner = (t["share"] > 0) & (t["share"] < 1)  # the end points coincide by construction
        return {"min_margin": float(margin.min()), "min_margin_inside": float(margin[inner].min()) if inner.any() else 0.0,
                "share_of_points_at_or_above": float((margin >= -1e-12).mean()), "points": int(margin.size)}

    # -- saving ---------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CascadeCurve":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def table(self, targets: Sequence[float] = (0.99, 0.98)) -> str:
        """Markdown: speed-up relative to tier 2 at each target share of tier 2's metric, per routing method."""
        rows = [f"| routing | target | {self.metric} | % of tier 2 | sent to tier 2 | threshold | ms/input | speed-up |",
                "|---|---|---|---|---|---|---|---|"]
        guarded = "relative_lower" in self.tangobert
        for method, guard in [("tangobert", False)] + [("tangobert", True)] * guarded + [("random", False), ("oracle", False)]:
            name = f"tangobert ({100 * self.confidence_level:g}% bootstrap guard)" if guard else method
            for target in targets:
                p = self.speedup_at(target, method, guarded=guard)
                if p is None:
                    rows.append(f"| {name} | {100 * target:g}% | not reached | | | | | |")
                    continue
                thr = f"{p['threshold']:.4f}" if "threshold" in p else "-"
                rows.append(f"| {name} | {100 * target:g}% | {p['value']:.4f} | {100 * p['relative']:.2f}% | "
                            f"{100 * p['share']:.1f}% | {thr} | {p['cost_ms']:.3f} | {p['speedup']:.2f}x |")
        return "\n".join(rows)

    def report_md(self) -> str:
        lines = [f"# Cascade calibration ({self.metric}, confidence {self.confidence}, temperature {self.temperature:.3f})",
                 "", f"{self.n} validation examples{' (' + self.info['data'] + ')' if self.info.get('data') else ''}. "
                 f"Tier 1 alone: {self.tier1['value']:.4f} at {self.tier1['cost_ms']:.3f} ms/input; tier 2 alone: "
                 f"{self.tier2['value']:.4f} at {self.tier2['cost_ms']:.3f} ms/input.", ""]
        if self.chosen:
            c = self.chosen
            lines += [f"Chosen threshold **{c['threshold']:.4f}**: {self.metric} {c['value']:.4f} "
                      f"({100 * c['relative']:.2f}% of tier 2), {100 * c['share']:.1f}% sent to tier 2, "
                      f"{c['speedup']:.2f}x tier 2's speed.", ""]
        return "\n".join(lines + [self.table(), ""])

    def plot(self, path: str | os.PathLike, title: str | None = None, marks: dict[str, dict] | None = None) -> Path:
        """Metric versus speed-up over tier 2 for the three routings (PNG). ``marks``: extra labelled points."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method, style in (("tangobert", "-"), ("random", "--"), ("oracle", ":")):
            a = self.arrays(method)
            ax.plot(a["speedup"], a["value"], style, label=method if method != "tangobert" else "cascade (confidence)")
        ax.scatter([self.tier2["cost_ms"] / self.tier1["cost_ms"], 1.0], [self.tier1["value"], self.tier2["value"]],
                   c="k", zorder=5)
        ax.annotate("tier 1 alone", (self.tier2["cost_ms"] / self.tier1["cost_ms"], self.tier1["value"]))
        ax.annotate("tier 2 alone", (1.0, self.tier2["value"]))
        for share in (0.99, 0.98):
            ax.axhline(share * self.tier2["value"], color="grey", lw=0.6)
            ax.text(ax.get_xlim()[0], share * self.tier2["value"], f" {share:.0%} of tier 2", va="bottom", fontsize=7)
        for label, p in (marks or {}).items():
            ax.scatter([p["speedup"]], [p["value"]], marker="*", s=120, zorder=6)
            ax.annotate(label, (p["speedup"], p["value"]), fontsize=8)
        ax.set_xlabel("speed-up over tier 2 alone (expected cost per input)")
        ax.set_ylabel(self.metric)
        ax.set_title(title or f"cascade on {self.n} examples")
        ax.legend(loc="lower left")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return Path(path)


def _bootstrap_lower(ok1: np.ndarray, ok2: np.ndarray, counts, level: float, samples: int, seed: int) -> np.ndarray:
    """Per count k: the (1 - level) quantile over bootstrap resamples of accuracy(first k escalated) / accuracy(tier 2).

    ``ok1``/``ok2``: ``(N,)`` correctness of each tier, in escalation order. Resampling weights each example by how
    often it is drawn, so a resample's curve is again two cumulative sums: ``(B, N)`` work per chunk of resamples.
    """
    n, rng, counts, out = ok1.shape[0], np.random.default_rng(seed), np.asarray(counts), []
    for start in range(0, samples, 100):
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(100, samples - start)).astype(np.float64)  # (B, N)
        cum1 = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(w * ok1, axis=1)], axis=1)  # (B, N + 1)
        cum2 = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(w * ok2, axis=1)], axis=1)
        value = cum2[:, counts] + cum1[:, -1:] - cum1[:, counts]  # (B, points), correct answers
        out.append(value / np.maximum(cum2[:, -1:], 1e-12))
    return np.quantile(np.concatenate(out), 1.0 - level, axis=0)


def cascade_curve(tier1_logits, tier2_logits, labels, tier1_ms, tier2_ms, confidence: str = "max_prob",
                  temperature: float = 1.0, metric: str = "accuracy", random_trials: int = 20,
                  confidence_level: float | None = None, bootstrap_samples: int = 1000, seed: int = 0) -> CascadeCurve:
    """The whole speed/accuracy curve from one pass of each tier.

    ``tier*_logits``: ``(N, C)`` on the same N examples; ``labels``: ``(N,)`` label ids; ``tier*_ms``: cost per input
    in ms, a number or ``(N,)`` per-example costs (then the escalated inputs' own tier-2 costs are summed).
    Threshold ``t`` escalates exactly the inputs with confidence < ``t``; one point per distinct confidence.
    With ``confidence_level`` (accuracy only), each point also gets ``relative_lower``: the (1 - level) quantile of
    its accuracy / tier 2's accuracy over bootstrap resamples of the examples, which :meth:`CascadeCurve.choose` then
    holds against the target.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.shape[0]
    if n == 0:
        raise FastFormersError("the validation set is empty; calibrate on at least a few labelled examples.")
    l1, l2 = np.asarray(tier1_logits), np.asarray(tier2_logits)
    if l1.shape != l2.shape or l1.shape[0] != n:
        raise FastFormersError(f"tier logits {l1.shape} and {l2.shape} and {n} labels do not describe the same examples.")
    ms1 = np.broadcast_to(np.asarray(tier1_ms, dtype=np.float64), (n,))
    ms2 = np.broadcast_to(np.asarray(tier2_ms, dtype=np.float64), (n,))
    pred1, pred2 = l1.argmax(-1), l2.argmax(-1)
    fn = _metric_fn(metric)
    tier1 = {"value": float(fn(labels, pred1)), "cost_ms": float(ms1.mean())}
    tier2 = {"value": float(fn(labels, pred2)), "cost_ms": float(ms2.mean())}

    # TangoBERT: sort by confidence; a threshold between two distinct confidences escalates a prefix.
    conf = confidence_scores(softmax(l1, temperature), confidence)
    order = np.argsort(conf, kind="stable")
    s = conf[order]
    counts, thresholds = [0], [0.0]
    for k in np.flatnonzero(s[1:] > s[:-1]) + 1:  # k inputs (conf <= s[k-1]) go to tier 2
        mid = (s[k - 1] + s[k]) / 2
        counts.append(int(k))
        thresholds.append(float(mid if s[k - 1] < mid <= s[k] else s[k]))  # midpoint, unless rounding ate it
    if s[-1] < 1.0:
        counts.append(n)
        thresholds.append(1.0)
    tangobert = _curve_dict(np.asarray(counts) / n, _values_at(order, counts, pred1, pred2, labels, metric),
                            _costs_at(order, counts, ms1, ms2), threshold=thresholds)
    if confidence_level is not None:
        if metric != "accuracy":
            raise FastFormersError("confidence_level works with metric='accuracy' only.")
        tangobert["relative_lower"] = [float(x) for x in _bootstrap_lower(
            (pred1 == labels)[order], (pred2 == labels)[order], counts, confidence_level, bootstrap_samples, seed)]

    # Random routing (expected value over which inputs are picked) and the oracle.
    all_k = np.arange(n + 1) if metric == "accuracy" else np.unique(np.linspace(0, n, min(n + 1, 101)).round()).astype(int)
    rand_cost = ms1.mean() + all_k / n * ms2.mean()
    if metric == "accuracy":  # linear in expectation: exact
        rand_value = tier1["value"] + all_k / n * (tier2["value"] - tier1["value"])
    else:
        rng = np.random.default_rng(seed)
        rand_value = np.mean([_values_at(rng.permutation(n), all_k, pred1, pred2, labels, metric)
                              for _ in range(random_trials)], axis=0)
    ok1, ok2 = pred1 == labels, pred2 == labels
    priority = np.select([~ok1 & ok2, ~ok1 & ~ok2, ok1 & ok2], [0, 1, 2], default=3)  # gains first, losses last
    oracle_order = np.argsort(priority, kind="stable")
    return CascadeCurve(
        metric=metric, confidence=confidence, temperature=float(temperature), n=int(n), tier1=tier1, tier2=tier2,
        confidence_level=confidence_level,
        tangobert=tangobert, random=_curve_dict(all_k / n, rand_value, rand_cost),
        oracle=_curve_dict(all_k / n, _values_at(oracle_order, all_k, pred1, pred2, labels, metric),
                           _costs_at(oracle_order, all_k, ms1, ms2)))


# ----------------------------------------------------------------------------------------------------------------
# Tiers


def timed_logits(clf: TextClassifier, inputs, warmup: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``clf.predict_logits(inputs)`` and the seconds each input cost (tokenisation included), after ``warmup``
    untimed batches (first calls allocate)."""
    inputs = clf._validate(inputs)
    seconds = np.zeros(len(inputs), dtype=np.float64)
    if inputs and warmup:
        clf.predict_logits(inputs[:warmup * clf.config.batch_size])
    return clf.predict_logits(inputs, seconds=seconds), seconds


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
        for x in TextClassifier._validate(inputs):
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
    tokenizer. Keyword overrides set :class:`~fastformers_hf.cascade_config.CascadeConfig` fields
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
            from .onnx_variants import guess_text_fields

            label_col = next((c for c in ("label", "labels") if c in data.column_names), None)
            if label_col is None:
                raise FastFormersError(f"the validation Dataset has no label column (it has {data.column_names}).")
            if len(data) == 0:
                raise FastFormersError("the validation set is empty; calibrate on at least a few labelled examples.")
            fields = guess_text_fields(data)
            inputs = list(data[fields[0]]) if len(fields) == 1 else list(zip(data[fields[0]], data[fields[1]]))
            labels, what = list(data[label_col]), f"{data.info.dataset_name or 'dataset'}, {len(data)} examples"
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
        from .measurements import machine_description
        from .timing import LoadMonitor

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

    def save_pretrained(self, save_dir: str | os.PathLike, copy_tiers: bool = True, overwrite: bool = True) -> Path:
        """Write the cascade to ``save_dir`` so that ``CascadeClassifier.from_pretrained(save_dir)`` restores it.

        ``copy_tiers=True`` (default) copies both tier directories into ``tier1/`` and ``tier2/`` (self-contained,
        what a Hub push needs); ``False`` stores their absolute paths instead (small, local use only).
        """
        save_dir = Path(save_dir)
        target = save_dir.resolve()
        for name, source in (("tier 1", self._source1), ("tier 2", self._source2)):
            if source is None:
                raise FastFormersError(f"{name} was given as a TextClassifier of a loaded model, which cannot be saved; "
                                       "pass the model directory (or the model and its tokenizer) instead.")
            if isinstance(source, Path):
                src = source.resolve()
                if target == src or src in target.parents:
                    raise FastFormersError(f"save_dir {save_dir} is inside {name}'s directory {source}; choose another.")
                if not copy_tiers and target in src.parents:
                    raise FastFormersError(f"{name} lives inside save_dir {save_dir}, which is replaced on save; "
                                           "use copy_tiers=True or another save_dir.")
            elif not copy_tiers:
                raise FastFormersError(f"{name} is a loaded model, which has no path to store: use copy_tiers=True.")
        with atomic_output_dir(save_dir, overwrite=overwrite) as out:
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


# ----------------------------------------------------------------------------------------------------------------
# Measuring a cascade end to end


def measure_throughput(cascade: CascadeClassifier, inputs, labels=None, repeats: int = 3, warmup: int = 8,
                       metric: str = "accuracy") -> dict[str, dict[str, Any]]:
    """Tier 1 alone, tier 2 alone and the cascade on ``inputs``, each in its configured batch sizes: median wall
    time over ``repeats`` passes (the three interleaved, order rotated, so that load from elsewhere hits all alike),
    inputs per second, speed-up over tier 2, the metric when ``labels`` are given, and the share sent to tier 2."""
    from .timing import LoadMonitor

    inputs = TextClassifier._validate(inputs)
    if not inputs:
        raise FastFormersError("no inputs to measure; pass at least one text.")
    systems = {"tier1": cascade.tier1.predict, "tier2": cascade.tier2.predict, "cascade": cascade.predict}
    for run in systems.values():  # untimed warm-up
        run(inputs[:warmup])
    names, times, outputs = list(systems), {n: [] for n in systems}, {}
    monitor = LoadMonitor()
    with monitor.watch():
        for r in range(repeats):
            for name in names[r % 3:] + names[:r % 3]:
                t0 = time.perf_counter()
                outputs[name] = systems[name](inputs)
                times[name].append(time.perf_counter() - t0)
    score = _metric_fn(metric) if labels is not None else None
    out = {}
    for name in names:
        seconds = float(np.median(times[name]))
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
                       "tier2_batch_size": cascade.config.tier2_batch_size, **monitor.summary()}
    return out

