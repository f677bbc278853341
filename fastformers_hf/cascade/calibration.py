"""The cascade's speed/accuracy curve (TangoBERT): every threshold from one timed pass of each tier.

The escalated set of a threshold is a prefix of the inputs sorted by tier 1's confidence, so the metric and the
expected cost per input at every threshold come from cumulative sums; the paper's random-routing and oracle baselines
come from the same pass, and a bootstrap over the examples gives a guarded threshold choice.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import FastFormersError

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


def metric_fn(name: str):
    from ..tasks.metrics import METRICS

    return METRICS[name]


def _values_at(order: np.ndarray, counts: Sequence[int], pred1, pred2, labels, metric: str) -> np.ndarray:
    """The metric when the first ``k`` inputs of ``order`` go to tier 2 and the rest stay with tier 1, per k."""
    counts = np.asarray(counts, dtype=np.int64)
    if metric == "accuracy":  # decomposable: cumulative sums, O(N)
        c1 = (pred1 == labels)[order].astype(np.float64)
        c2 = (pred2 == labels)[order].astype(np.float64)
        cum1, cum2 = np.concatenate([[0.0], np.cumsum(c1)]), np.concatenate([[0.0], np.cumsum(c2)])
        return (cum2[counts] + c1.sum() - cum1[counts]) / len(labels)
    fn, out = metric_fn(metric), []
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
        below = margin < -1e-9
        return {"min_margin": float(margin.min()), "min_margin_inside": float(margin[inner].min()) if inner.any() else 0.0,
                "share_of_points_at_or_above": float((margin >= -1e-12).mean()), "points": int(margin.size),
                "points_below": int(below.sum()),  # and the largest share sent to tier 2 among them
                "max_share_below": float(t["share"][below].max()) if below.any() else 0.0}

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
    fn = metric_fn(metric)
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
