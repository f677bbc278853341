"""Cascade benchmark on SST-2 (TangoBERT, Mamou et al. 2022): int8 students as tier 1, the int8 MiniLM teacher as
tier 2, thresholds held out by a two-fold cross-fit over the dev set.

* int8 builds (``optimize_for_inference``, int8 variants only, checked on dev half 0) are cached in --out/int8/<name>;
* batch sizes per tier are tuned for speed on half 0; each tier makes one timed pass over all of dev per setting
  (batch 1, tuned batches), which gives the all-dev curve (the paper's way of reading speedup@99/@98) and each
  half's own curve;
* the threshold for 99% and 98% of tier 2's accuracy is fitted on one half, by two rules (the point estimate, and a
  bootstrap guard: reached in 90% of resamples of that half), and applied unchanged to the other half; both halves
  together give held-out accuracy and end-to-end throughput over all of dev, at batch 1 and at the tuned sizes;
* random routing (its share fitted the same way) and the oracle (an upper bound: it knows which inputs tier 1 gets
  wrong) use the same cost model; curves and measured points are plotted per tier 1 in curve_<name>.png.

    fastformers-hf compress --recipe examples/recipes/sst2-tier1.yaml      # tier-1 candidates (2 and 3 layers)
    fastformers-hf compress --recipe examples/recipes/sst2-tier1-3l.yaml
    flock /tmp/ff-cpu.lock .venv/bin/python benchmarks/bench_cascade.py --out runs/bench_cascade

Timings: one thread per tier, ONNX Runtime without spinning (the machine is shared); medians over --repeats passes,
systems interleaved. Delete --out/int8/<name> to rebuild a model.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import dataclasses  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from transformers import HfArgumentParser  # noqa: E402

from fastformers_hf import CascadeClassifier, VariantChoiceConfig, cascade_curve, optimize_for_inference  # noqa: E402
from fastformers_hf.cascade.model import confidence_scores, measure_throughput, softmax, timed_logits  # noqa: E402
from fastformers_hf.tasks.data import load_local_split  # noqa: E402
from fastformers_hf.utils.io import claim_output_dir, read_json, write_json  # noqa: E402
from fastformers_hf.measurements import machine_description, machine_text  # noqa: E402
from fastformers_hf.onnx.config import VARIANTS, is_quantized  # noqa: E402
from fastformers_hf.onnx.variants import chosen_with  # noqa: E402

INT8_VARIANTS = [v for v in VARIANTS if is_quantized(v)]  # every int8 recipe is a candidate; the fastest kept wins

TARGETS = (0.99, 0.98)


@dataclass
class BenchArgs:
    out: str = field(default="runs/bench_cascade", metadata={"help": "Report, plots and cached int8 builds go here."})
    dev: str = field(default="../shared/data/sst2/dev.tsv", metadata={"help": "Labelled data split in two halves."})
    teacher: str = field(default="../shared/models/sst2-minilm-teacher", metadata={"help": "Tier 2 (PyTorch dir)."})
    tier1: str = field(
        default="runs/sst2-tier1/3-redistill,runs/sst2-tier1-3l/3-redistill,runs/bench_distillation/distilled_student,"
                "runs/bench_pruning/models/first_order-h3-f384-redistilled",
        metadata={"help": "Tier-1 candidates (PyTorch dirs or glob patterns, comma-separated); missing ones are "
                          "skipped. The first two: `fastformers-hf compress --recipe examples/recipes/sst2-tier1.yaml` "
                          "and `... sst2-tier1-3l.yaml`."})
    max_examples: int = field(default=None, metadata={"help": "Use only this many dev examples (smoke runs)."})
    seed: int = field(default=0, metadata={"help": "Seed of the split of dev into two halves."})
    tolerance: float = field(default=1.0, metadata={"help": "Accuracy points an int8 build may lose vs PyTorch."})
    batch_sizes: str = field(default="1,2,4,8,16,32,64", metadata={"help": "Batch sizes tried for each tier."})
    repeats: int = field(default=5, metadata={"help": "Timed passes per measurement (median reported)."})
    guard: float = field(default=0.9, metadata={"help": "Confidence level of the bootstrap-guarded threshold rule."})
    retries: int = field(default=3, metadata={"help": "Re-measure a disturbed measurement up to this many times."})
    report_only: bool = field(default=False, metadata={"help": "Only rewrite report.md from an existing report.json."})


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def tier1_sources(spec: str) -> dict[str, Path]:
    """{name: dir} for each existing model dir among the comma-separated paths / glob patterns; a compress stage
    dir (runs/x/3-redistill) is named after its run (x)."""
    found = {}
    for pattern in filter(None, (x.strip() for x in spec.split(","))):
        for p in sorted(Path().glob(pattern)) if any(c in pattern for c in "*?[") else [Path(pattern)]:
            if (p / "config.json").exists():
                found[p.parent.name if p.name[:1].isdigit() else p.name] = p
    return found


def int8_build(src: Path, out: Path, calib_ds, tolerance: float) -> Path:
    """Cached: rebuilt only when the source weights changed after the last build, or the choice settings did."""
    done = out / "onnx_variants.json"
    weights = [p for p in src.iterdir() if p.suffix in (".safetensors", ".bin")]
    config = VariantChoiceConfig(candidates=INT8_VARIANTS, tolerance=tolerance)
    if done.exists() and all(p.stat().st_mtime <= done.stat().st_mtime for p in weights) and chosen_with(out, config):
        return out
    log(f"int8 build of {src} -> {out}")
    return optimize_for_inference(src, out, eval_dataset=calib_ds, config=config)


def tune_batch_sizes(clf, texts, sizes, repeats) -> dict[int, float]:
    """ms per input of ``clf`` over ``texts`` at each batch size (median of ``repeats`` passes)."""
    out = {}
    for bs in sizes:
        clf.config = dataclasses.replace(clf.config, batch_size=bs)
        out[bs] = float(np.median([timed_logits(clf, texts, warmup=1)[1].sum() for _ in range(repeats)])) * 1e3 / len(texts)
    return out


def plot(path: Path, title: str, panels: dict[str, tuple]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, (name, (curve, measured)) in zip(axes[0], panels.items()):
        for method, style, label in (("tangobert", "-", "cascade (confidence)"), ("random", "--", "random routing"),
                                     ("oracle", ":", "oracle")):
            a = curve.arrays(method)
            ax.plot(a["speedup"], a["value"], style, label=label)
        for target in TARGETS:  # each panel's own tier 2 (int8 results depend a little on the batch padding)
            ax.axhline(target * curve.tier2["value"], color="grey", lw=0.6)
            ax.text(0.02, target * curve.tier2["value"], f"{target:.0%} of tier 2", transform=ax.get_yaxis_transform(),
                    va="bottom", fontsize=7)
        ax.scatter([curve.tier2["cost_ms"] / curve.tier1["cost_ms"], 1.0], [curve.tier1["value"], curve.tier2["value"]],
                   c="k", s=20, zorder=5)
        ax.annotate(" tier 1 alone", (curve.tier2["cost_ms"] / curve.tier1["cost_ms"], curve.tier1["value"]), fontsize=7)
        ax.annotate(" tier 2 alone", (1.0, curve.tier2["value"]), fontsize=7)
        for label, (speedup, value) in measured.items():
            ax.scatter([speedup], [value], marker="*", s=140, zorder=6, label=label)
        ax.set_xlabel("speed-up over tier 2 alone")
        ax.set_ylabel("accuracy (all of dev)")
        ax.set_title(f"{title}: {name}", fontsize=9)
        ax.set_ylim(min(curve.tier1["value"], curve.tier2["value"]) - 0.03, max(curve.oracle["value"]) + 0.01)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rules(curve, guard) -> dict[str, dict[float, float | None]]:
    """Threshold per target for each choice rule: the point estimate and the bootstrap-guarded one."""
    out = {"point": {}, f"{guard:.0%} guard": {}}
    for t in TARGETS:
        for rule, guarded in (("point", False), (f"{guard:.0%} guard", True)):
            p = curve.speedup_at(t, "tangobert", guarded=guarded)
            out[rule][t] = None if p is None else p["threshold"]
    return out


def pooled(parts: list[dict]) -> dict:
    """End-to-end measurements of the two folds (each on its own half) as one over all of dev: accuracy weighted by
    inputs, speed from total seconds."""
    n = [p["settings"]["inputs"] for p in parts]
    out = {}
    for system in ("tier1", "tier2", "cascade"):
        seconds = sum(p[system]["seconds"] for p in parts)
        row = {"seconds": seconds, "inputs_per_s": sum(n) / seconds,
               "accuracy": float(np.average([p[system]["accuracy"] for p in parts], weights=n))}
        if system == "cascade":
            row["share_tier2"] = float(np.average([p[system]["share_tier2"] for p in parts], weights=n))
        out[system] = row
    for row in out.values():
        row["speedup_vs_tier2"] = out["tier2"]["seconds"] / row["seconds"]
    loads = [p["settings"]["other_load_cores"] for p in parts]
    out["settings"] = {"inputs": sum(n), "tier1_batch_size": parts[0]["settings"]["tier1_batch_size"],
                       "tier2_batch_size": parts[0]["settings"]["tier2_batch_size"], "other_load_cores": max(loads),
                       "disturbed": any(p["settings"]["disturbed"] for p in parts),
                       "thresholds": [p["settings"]["threshold"] for p in parts]}
    return out


def run_tier1(name, tier1_dir, tier2_dir, args, halves, sizes, out) -> dict:
    """Two-fold cross-fit over all of dev: each half's thresholds come from the other half's curve, at the batch
    sizes they are served with (int8 answers depend a little on the batch), so every dev example is judged by a
    threshold that never saw it; the paper-style curve (and its speed-up@target) uses all of dev at once."""
    texts = list(halves[0][0]) + list(halves[1][0])
    labels = np.asarray(list(halves[0][1]) + list(halves[1][1]))
    fold = np.repeat([0, 1], [len(halves[0][0]), len(halves[1][0])])
    cascade = CascadeClassifier(tier1_dir, tier2_dir, tier1_batch_size=1, tier2_batch_size=1)
    row: dict = {"tier1": str(tier1_dir), "tier2": str(tier2_dir)}

    # 1. A saved, reloadable cascade calibrated on half 0 at batch 1 (what `fastformers-hf cascade calibrate` does).
    log(f"[{name}] calibrating on {len(halves[0][0])} examples")
    cascade.calibrate(halves[0][0], halves[0][1], target=TARGETS[0], confidence_level=args.guard)
    cascade.save_pretrained(out / "cascades" / name, copy_tiers=False)

    # 2. Batch sizes per tier, tuned for speed on half 0 (labels unused).
    log(f"[{name}] tuning batch sizes {sizes}")
    tuned = {"tier1": tune_batch_sizes(cascade.tier1, halves[0][0], sizes, 3),
             "tier2": tune_batch_sizes(cascade.tier2, halves[0][0], sizes, 3)}
    best = {k: min(v, key=v.get) for k, v in tuned.items()}
    row["batch_size_ms_per_input"], row["tuned_batch_sizes"] = tuned, best
    settings = {"batch 1": (1, 1), "tuned batches": (best["tier1"], best["tier2"])}

    # 3. One timed pass of each tier over all of dev per setting: the full-dev curve and each fold's own curve.
    curves, thresholds, held, fold_vs_random = {}, {}, {}, {}
    for setting, (b1, b2) in settings.items():
        cascade.configure(tier1_batch_size=b1, tier2_batch_size=b2)
        l1, s1 = timed_logits(cascade.tier1, texts)
        l2, s2 = timed_logits(cascade.tier2, texts)
        m1, m2 = s1 * 1e3, s2 * 1e3
        curve_args = dict(confidence=cascade.config.confidence, temperature=cascade.config.temperature,
                          confidence_level=args.guard)
        curves[setting] = cascade_curve(l1, l2, labels, m1, m2, **curve_args)
        folds = [cascade_curve(l1[fold == f], l2[fold == f], labels[fold == f], m1[fold == f], m2[fold == f],
                               **curve_args) for f in (0, 1)]
        fold_vs_random[setting] = [c.versus_random() for c in folds]
        thresholds[setting] = [rules(c, args.guard) for c in folds]  # thresholds[setting][f]: fitted on fold f
        # Held out, cost model: fold f's threshold judges fold 1 - f; pooled over all of dev.
        held[setting] = {}
        conf = confidence_scores(softmax(l1, cascade.config.temperature), cascade.config.confidence)  # (N,)
        for t in TARGETS:
            for rule in thresholds[setting][0]:
                thr = [thresholds[setting][f][rule][t] for f in (0, 1)]
                if None in thr:
                    continue
                up = conf < np.where(fold == 0, thr[1], thr[0])
                pred = np.where(up, l2.argmax(-1), l1.argmax(-1))
                cost = m1.mean() + m2[up].sum() / len(labels)
                held[setting][f"tangobert ({rule}) @{t:.0%}"] = {
                    "value": float((pred == labels).mean()), "share": float(up.mean()), "cost_ms": float(cost),
                    "speedup": float(m2.mean() / cost), "thresholds": thr}
            shares = [(folds[f].speedup_at(t, "random") or {}).get("share") for f in (0, 1)]
            if None not in shares:  # random routing: each fold's share applied to the other, in expectation
                acc1, acc2 = curves[setting].tier1["value"], curves[setting].tier2["value"]
                share = float(np.average(shares[::-1], weights=[(fold == 0).sum(), (fold == 1).sum()]))
                cost = m1.mean() + share * m2.mean()
                held[setting][f"random @{t:.0%}"] = {"value": acc1 + share * (acc2 - acc1), "share": share,
                                                     "cost_ms": float(cost), "speedup": float(m2.mean() / cost)}
    row["thresholds"], row["held_out"], row["fold_versus_random"] = thresholds, held, fold_vs_random
    row["evaluation"] = {s: {"tier1_accuracy": c.tier1["value"], "tier2_accuracy": c.tier2["value"],
                             "versus_random": c.versus_random(),
                             "curve_speedup_at": {m: {t: c.speedup_at(t, m) for t in TARGETS}
                                                  for m in ("tangobert", "random", "oracle")}}
                         for s, c in curves.items()}

    # 4. Measured end to end: on each half with the other half's threshold, pooled.
    measured, marks = {}, {s: {} for s in curves}
    for setting, (b1, b2) in settings.items():
        for rule in thresholds[setting][0]:
            for t in TARGETS:
                thr = [thresholds[setting][f][rule][t] for f in (0, 1)]
                if None in thr:
                    continue
                log(f"[{name}] measuring {setting}, {rule} thresholds for {t:.0%}")
                parts = []
                for f in (0, 1):  # half f, judged by the threshold fitted on the other half
                    cascade.configure(threshold=thr[1 - f], tier1_batch_size=b1, tier2_batch_size=b2)
                    m = measure_throughput(cascade, halves[f][0], halves[f][1], repeats=args.repeats)
                    for _ in range(args.retries):  # another process was busy: measure again, keep the quietest
                        if not m["settings"]["disturbed"]:
                            break
                        time.sleep(10)
                        again = measure_throughput(cascade, halves[f][0], halves[f][1], repeats=args.repeats)
                        m = min(m, again, key=lambda x: x["settings"]["other_load_cores"])
                    parts.append(m)
                m = pooled(parts)
                measured[f"{setting} | {rule} @{t:.0%}"] = m
                marks[setting][f"{rule} @{t:.0%}"] = (m["cascade"]["speedup_vs_tier2"], m["cascade"]["accuracy"])
    row["measured"] = measured
    plot(out / f"curve_{name}.png", f"tier 1 = {name}", {s: (c, marks[s]) for s, c in curves.items()})
    row["curves"] = {s: c.to_dict() for s, c in curves.items()}
    return row


def load(m) -> str:
    """Other processes' CPU use during a measurement (the larger of its two halves), flagged when it disturbed it."""
    return f"{m['settings']['other_load_cores']:.2f}{' (disturbed)' if m['settings']['disturbed'] else ''}"


def fmt_x(p, key="speedup"):
    return "-" if not p else f"{p[key]:.2f}x"


def report_md(report: dict) -> str:
    s = report["settings"]
    n = s["calibration_examples"] + s["evaluation_examples"]
    lines = [f"# Cascade benchmark: SST-2 dev ({n} examples), two-fold cross-fit (seed-{s['seed']} random halves)", "",
             "Tier 2 = int8 MiniLM teacher; tier 2 alone is the 1.00x reference at the same batch setting. One thread per "
             "tier, ONNX Runtime int8, dynamic length. Held-out protocol: the dev set is split in two halves; each "
             "half's threshold is fitted on the other half's curve, computed at the batch sizes it is served with "
             "(int8 answers depend a little on the batch), so every example is judged by a threshold that never saw "
             "it, and results are pooled over all of dev. Speed-ups in Table 2 and the throughput table are measured "
             "end to end (tokenisation included, median of passes; each half with its own threshold, total time); "
             "Table 3 uses the cost model (one timed pass per tier). Threshold rules: 'point' = fastest threshold "
             f"whose accuracy on the fitting half reaches the target; '{s['guard']:.0%} guard' = fastest one reaching "
             f"it in {s['guard']:.0%} of bootstrap resamples of that half. Batch sizes were tuned for speed on one "
             "half.", "", f"Machine: {machine_text(report.get('machine'))}.", ""]
    lines += ["## Checks", "",
              "The issue's expectations: speed-up at 99% of tier 2's accuracy with tuned batch sizes (held out, "
              "measured end to end; the cascade's pooled accuracy must reach 99% of tier 2 alone's at the same batch "
              "setting) and TangoBERT above random routing at every point of the curve (0 < share sent < 1; all of "
              "dev, and each half alone).", "",
              "| tier 1 | rule | speed-up @99%, tuned batches | accuracy: cascade vs 99% of tier 2 | >= 2x and "
              "reached | TangoBERT - random, min over the curve (all dev / half 0 / half 1, points) | above random "
              "everywhere (all dev) |", "|---|---|---|---|---|---|---|"]
    for name, row in report["tier1"].items():
        vr = row["evaluation"]["tuned batches"]["versus_random"]
        halves = row["fold_versus_random"]["tuned batches"]
        margins = " / ".join(f"{100 * v['min_margin_inside']:+.2f}" for v in [vr, *halves])
        for rule in row["thresholds"]["tuned batches"][0]:
            m = row["measured"].get(f"tuned batches | {rule} @99%")
            if m is None:
                lines.append(f"| {name} | {rule} | not reached | | **no** | {margins} | |")
                continue
            c = m["cascade"]
            ok = c["accuracy"] >= 0.99 * m["tier2"]["accuracy"] - 1e-12 and c["speedup_vs_tier2"] >= 2
            lines.append(f"| {name} | {rule} | {c['speedup_vs_tier2']:.2f}x | {c['accuracy']:.4f} vs "
                         f"{0.99 * m['tier2']['accuracy']:.4f} | {'yes' if ok else '**no**'} | {margins} | "
                         f"{'yes' if vr['min_margin_inside'] > 0 else '**no**'} |")
    lines += ["", "Read the paper's way (speedup@99 off the all-dev curve, cost model) and where TangoBERT falls below "
              "random routing:", "",
              "| tier 1 | setting | speedup@99 (all-dev curve) | >= 2x | points below random: count, largest share "
              "sent, deepest (points) |", "|---|---|---|---|---|"]
    for name, row in report["tier1"].items():
        for setting in ("batch 1", "tuned batches"):
            p = row["evaluation"][setting]["curve_speedup_at"]["tangobert"][0.99]
            vr = row["evaluation"][setting]["versus_random"]
            where = (f"{vr['points_below']}, {100 * vr['max_share_below']:.1f}%, {100 * vr['min_margin']:+.2f}"
                     if vr["points_below"] else "none")
            lines.append(f"| {name} | {setting} | {fmt_x(p)} | {'yes' if p and p['speedup'] >= 2 else '**no**'} | "
                         f"{where} |")
    lines += ["", "## Table 2: TangoBERT, thresholds held out (cross-fit), measured end to end on all of dev", "",
              "| tier 1 | setting (batch sizes) | target | rule | thresholds (fitted on half 0 / half 1) | acc tier 1 / "
              "tier 2 | cascade acc | % of tier 2 | sent to tier 2 | speed-up | other load, cores |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in report["tier1"].items():
        for setting in ("batch 1", "tuned batches"):
            for t in TARGETS:
                for rule in row["thresholds"][setting][0]:
                    m = row["measured"].get(f"{setting} | {rule} @{t:.0%}")
                    if m is None:
                        lines.append(f"| {name} | {setting} | {t:.0%} | {rule} | not reached | | | | | | |")
                        continue
                    c, thr = m["cascade"], m["settings"]["thresholds"]
                    lines.append(f"| {name} | {setting} ({m['settings']['tier1_batch_size']} / "
                                 f"{m['settings']['tier2_batch_size']}) | {t:.0%} | {rule} | {thr[1]:.4f} / {thr[0]:.4f} | "
                                 f"{m['tier1']['accuracy']:.4f} / {m['tier2']['accuracy']:.4f} | {c['accuracy']:.4f} | "
                                 f"{100 * c['accuracy'] / m['tier2']['accuracy']:.2f}% | {100 * c['share_tier2']:.1f}% | "
                                 f"{c['speedup_vs_tier2']:.2f}x | {load(m)} |")
    lines += ["", "## Table 3: routing compared (cost model)", "",
              "Held out: TangoBERT's thresholds and random routing's share come from the other half (cross-fit, pooled "
              "over all of dev). Curve: the fastest point reaching the target on the all-dev curve (chosen with "
              "hindsight, as the paper's speedup@99/@98 are read off its curves); the oracle knows tier 1's mistakes "
              "(an upper bound).", "",
              "| tier 1 | setting | target | TangoBERT held out (point / guard) | random held out | TangoBERT curve | "
              "random curve | oracle curve |", "|---|---|---|---|---|---|---|---|"]
    for name, row in report["tier1"].items():
        for setting in ("batch 1", "tuned batches"):
            h, cb = row["held_out"][setting], row["evaluation"][setting]["curve_speedup_at"]
            guard = next((r for r in row["thresholds"][setting][0] if r != "point"), None)
            for t in TARGETS:
                def ho(key):
                    p = h.get(key)
                    return "not reached" if not p else f"{p['speedup']:.2f}x ({100 * p['share']:.0f}% sent, {100 * p['value']:.2f}%)"
                lines.append(f"| {name} | {setting} | {t:.0%} | {ho(f'tangobert (point) @{t:.0%}')} / "
                             f"{ho(f'tangobert ({guard}) @{t:.0%}')} | {ho(f'random @{t:.0%}')} | "
                             f"{fmt_x(cb['tangobert'][t])} | {fmt_x(cb['random'][t])} | {fmt_x(cb['oracle'][t])} |")
    lines += ["", "## Throughput (measured, inputs/s, all of dev)", "",
              "| tier 1 | setting | batch sizes (tier 1 / tier 2) | tier 1 alone | tier 2 alone | tier 2 alone acc | "
              "cascade (rule @target): inputs/s, acc, speed-up |", "|---|---|---|---|---|---|---|"]
    for name, row in report["tier1"].items():
        for setting in ("batch 1", "tuned batches"):
            ms = {k.split(" | ")[1]: m for k, m in row["measured"].items() if k.startswith(setting)}
            if not ms:
                continue
            first = next(iter(ms.values()))
            cells = "; ".join(f"{k}: {m['cascade']['inputs_per_s']:.0f}, {m['cascade']['accuracy']:.4f}, "
                              f"{m['cascade']['speedup_vs_tier2']:.2f}x" for k, m in ms.items())
            lines.append(f"| {name} | {setting} | {first['settings']['tier1_batch_size']} / "
                         f"{first['settings']['tier2_batch_size']} | "
                         f"{np.median([m['tier1']['inputs_per_s'] for m in ms.values()]):.0f} | "
                         f"{np.median([m['tier2']['inputs_per_s'] for m in ms.values()]):.0f} | "
                         f"{first['tier2']['accuracy']:.4f} | {cells} |")
    lines += ["", "Curves per tier 1: `curve_<tier 1>.png` (all of dev, both settings, measured points starred).", ""]
    return "\n".join(lines) + "\n"


def _target_keys(obj):
    """JSON turned the float target keys into strings; turn them back."""
    if isinstance(obj, dict):
        return {(float(k) if k in {str(t) for t in TARGETS} else k): _target_keys(v) for k, v in obj.items()}
    return [_target_keys(v) for v in obj] if isinstance(obj, list) else obj


def main(argv=None) -> dict:
    (args,) = HfArgumentParser(BenchArgs).parse_args_into_dataclasses(args=argv)
    out = Path(args.out)
    if args.report_only:
        report = _target_keys(read_json(out / "report.json"))
        (out / "report.md").write_text(report_md(report), encoding="utf-8")
        print(report_md(report))
        return report
    claim_output_dir(out, "bench_cascade", [args.dev])  # never a user's folder; reruns reuse the cached builds
    ds = load_local_split(args.dev)
    if args.max_examples:
        ds = ds.select(range(min(args.max_examples, len(ds))))
    perm = np.random.default_rng(args.seed).permutation(len(ds))
    half0_ds, half1_ds = ds.select(sorted(perm[: len(ds) // 2])), ds.select(sorted(perm[len(ds) // 2:]))
    halves = [(list(h["sentence"]), list(h["label"])) for h in (half0_ds, half1_ds)]
    sources = tier1_sources(args.tier1)
    if not sources:
        raise SystemExit(f"no tier-1 model found in {args.tier1!r}: run `fastformers-hf compress --recipe "
                         "examples/recipes/sst2-tier1.yaml` first (or pass --tier1 DIR).")
    # The int8 variant (fastest within the tolerance) is checked on half 0.
    tier2 = int8_build(Path(args.teacher), out / "int8" / "teacher", half0_ds, args.tolerance)
    tier1s = {name: int8_build(src, out / "int8" / name, half0_ds, args.tolerance) for name, src in sources.items()}
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    report = {"settings": dataclasses.asdict(args) | {"calibration_examples": len(halves[0][0]),
                                                      "evaluation_examples": len(halves[1][0])},
              "machine": machine_description(),
              "int8_variants": {name: read_json(p / "onnx_variants.json", {}).get("chosen")
                                for name, p in {"teacher": tier2, **tier1s}.items()},
              "tier1": {}}
    for name, tier1 in tier1s.items():
        report["tier1"][name] = run_tier1(name, tier1, tier2, args, halves, sizes, out)
        write_json(out / "report.json", report)
    md = report_md(report)
    (out / "report.md").write_text(md, encoding="utf-8")
    print(md)
    return report


if __name__ == "__main__":
    main()
