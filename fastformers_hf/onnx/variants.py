"""Pick the fastest ONNX variant that stays accurate, by measuring on the user's data on this machine.

Which graph is fastest is not knowable in advance (here fused+int8 won at 2 threads and plain int8 at 1 thread),
so we build the candidates of :data:`~fastformers_hf.onnx.config.VARIANTS`, check each against the PyTorch model
(largest logit difference, label agreement, accuracy on the eval set), time them at batch 1 with the runs of all
candidates interleaved, and keep the fastest one within the tolerance. Every number goes into the output folder.
Token classification and question answering are checked output by output and position by position (the argmax
label of every token; the argmax start and end index) on random inputs; given a raw eval split (SQuAD / CoNLL
columns) the tolerance applies to their task's F1 on it instead (:mod:`~fastformers_hf.onnx.task_metric`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import FastFormersError
from ..utils.io import atomic_output_dir, check_output_dir, read_json, work_dir_beside, write_json
from .config import SESSION_DISABLED_OPTIMIZERS, SESSION_FILE, STEPS, VARIANTS, VariantChoiceConfig, is_quantized
from ..inference.runners import ort_runner, pytorch_runner  # noqa: F401 (re-exported for the benchmarks)
from ..utils.model_folder import load_pytorch_model, load_tokenizer
from .agreement import (PER_POSITION, as_tuple, check_eval_supported, compare_per_position, pearson_points,
                        run_all)
from .examples import choice_eval_set, eval_examples, eval_split, random_examples
from .export import export_onnx, optimize_onnx
from .graph import inference_session, model_size_bytes, record_step
from .ort_tools import ROUTE_TEXT, onnx_route
from .quantize import quantize_onnx
from .task_metric import scored_by_task_metric, task_scorer
from ..measurements import machine_text
from ..utils.timing import batch1_latency

REPORT_FILE = "onnx_variants.json"
REPORT_MD = "onnx_variants.md"

# ----------------------------------------------------------------------------------------------------------------
# Candidates


def build_candidates(export_dir: str | os.PathLike, work_dir: str | os.PathLike,
                     config: VariantChoiceConfig | None = None) -> dict[str, Path | str]:
    """Build the configured variants from a plain fp32 export; shared prefixes of the recipes are built once.

    Returns ``{name: directory}``, or ``{name: "could not be built: ..."}`` for a variant that failed to build.
    """
    config = config or VariantChoiceConfig()
    work_dir = Path(work_dir)
    built: dict[tuple[str, ...], Path] = {(): Path(export_dir)}
    out: dict[str, Path | str] = {}

    def build(steps: tuple[str, ...]) -> Path:
        if steps not in built:
            parent = build(steps[:-1])
            name = next((n for n, s in VARIANTS.items() if s == steps), "-".join(steps))
            target = work_dir / name
            op, changes = STEPS[steps[-1]]
            if op == "optimize":
                optimize_onnx(parent, target, level=config.optimization_level, changes=changes, route=config.route)
            else:
                quantize_onnx(parent, target, preset=config.quantization_preset,
                              per_channel=changes.get("per_channel", config.per_channel), route=config.route)
            built[steps] = target
        return built[steps]

    for name in config.candidates:
        try:
            out[name] = build(VARIANTS[name])
        except FastFormersError as e:
            out[name] = f"could not be built: {e}"
    return out


@dataclass
class VariantResult:
    name: str
    steps: list[str]
    passed: bool
    reasons: list[str] = field(default_factory=list)
    max_logit_diff: float | None = None
    label_agreement: float | None = None
    accuracy: float | None = None
    accuracy_drop_points: float | None = None
    loss_points: float | None = None  # the number held against the tolerance
    latency: dict[str, float] = field(default_factory=dict)
    size_bytes: int | None = None
    speedup_vs_pytorch: float | None = None
    # Kinds with several or per-position outputs: {output: {"max_abs_diff", "agreement", "compared"}}; None (and
    # left out of the report) for classification.
    per_output: dict[str, dict[str, float]] | None = None
    # Kinds scored by their task's metric on an eval split (task_metric.py): all its metrics, and the headline's
    # drop versus PyTorch in points; None (and left out of the report) otherwise.
    metrics: dict[str, float] | None = None
    metric_drop_points: float | None = None


@dataclass
class VariantChoice:
    chosen: str
    results: list[VariantResult]
    reference: dict[str, Any]
    data: str
    config: dict[str, Any]
    other_cpu_load: dict[str, float]
    machine: dict[str, Any]
    # Which tools built the graphs: "optimum" (Optimum's exporter, ORTOptimizer, ORTQuantizer) or "onnxruntime"
    # (torch.onnx.export and onnxruntime's own optimizer and quantizer, where optimum-onnx is not installed).
    route: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for r in out["results"]:
            for key in ("per_output", "metrics", "metric_drop_points"):
                if r.get(key) is None:
                    r.pop(key, None)  # classification reports keep their fields
        return out

    def result(self, name: str) -> VariantResult:
        return next(r for r in self.results if r.name == name)

    def table(self) -> str:
        """A Markdown table of all variants (the chosen one marked); kinds scored by a task metric get its column."""
        ref, metric = self.reference, self.reference.get("metric")
        head = f"{metric} | loss ({metric} points)" if metric else "loss (points)"
        rows = [f"| variant | kept | {head} | max logit diff | label agreement | mean ms | p99 ms | speed-up | MB |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if metric else "")]

        def f(x, fmt):
            return "-" if x is None else format(x, fmt)

        def score(metrics):  # the metric's cell, when there is a metric column
            return f"{f((metrics or {}).get(metric), '.2f')} | " if metric else ""

        if ref.get("latency") is not None:
            rows.append(f"| pytorch fp32 | reference | {score(ref.get('metrics'))}0 | 0 | 1.000 | "
                        f"{ref['latency']['mean_ms']:.2f} | {ref['latency']['p99_ms']:.2f} | 1.00x | "
                        f"{ref['size_bytes'] / 1e6:.1f} |")
        for r in self.results:
            mark = "**chosen**" if r.name == self.chosen else ("yes" if r.passed else "no: " + "; ".join(r.reasons))
            rows.append(f"| {r.name} | {mark} | {score(r.metrics)}{f(r.loss_points, '.2f')} | "
                        f"{f(r.max_logit_diff, '.2e')} | {f(r.label_agreement, '.3f')} | "
                        f"{f(r.latency.get('mean_ms'), '.2f')} | {f(r.latency.get('p99_ms'), '.2f')} | "
                        f"{f(r.speedup_vs_pytorch, '.2f')}x | "
                        f"{f(r.size_bytes and r.size_bytes / 1e6, '.1f')} |")
        return "\n".join(rows)


def pick_variant(kept: list[VariantResult], speed_margin: float) -> str:
    """The fastest kept variant, except that variants within ``speed_margin`` (a fraction) of its latency count as
    equally fast and the one that loses the fewest points among them wins (then the faster): timings on a shared
    machine move by a few percent, accuracy lost for a gain inside that noise is not worth it."""
    fastest = min(r.latency["mean_ms"] for r in kept)
    tied = [r for r in kept if r.latency["mean_ms"] <= fastest * (1 + speed_margin)]
    return min(tied, key=lambda r: (round(r.loss_points, 6), r.latency["mean_ms"])).name


def choose_variant(model, tokenizer, candidates: Mapping[str, Path | str], eval_dataset=None,
                   config: VariantChoiceConfig | None = None, latency_dataset=None) -> VariantChoice:
    """Check every candidate against ``model`` (PyTorch), time them, and pick the fastest within tolerance
    (:func:`pick_variant`: near-ties in speed go to the more accurate).

    ``candidates`` maps names to ONNX directories (as from :func:`build_candidates`). Accuracy is checked on
    ``eval_dataset``; for question answering / token classification it is a raw SQuAD / CoNLL split and the
    tolerance applies to the drop in its F1 (outputs are still compared on random inputs); timing uses
    ``config.sample_size`` inputs of ``latency_dataset`` when given (inputs shaped like the traffic to serve, no
    labels needed), else of the eval data (the random inputs for a raw split). Raises FastFormersError, showing every
    candidate's numbers, when none is within the tolerance.
    """
    import torch

    from ..measurements import machine_description
    from ..tasks.kinds import kind_of

    config = config or VariantChoiceConfig()
    model.eval()
    kind = kind_of(model)
    check_eval_supported(kind, eval_dataset)
    eval_dataset = choice_eval_set(kind, eval_dataset, tokenizer, config.max_length)
    positional = kind.name in PER_POSITION
    scorer = (task_scorer(kind, eval_dataset, tokenizer, config, getattr(model.config, "id2label", None))
              if eval_dataset is not None and scored_by_task_metric(kind) else None)  # QA / NER: their task's F1
    regression = kind.name == "regression"  # one score per input: judged by Pearson, not by an argmax
    unit = scorer.metric if scorer is not None else "Pearson" if regression else "accuracy"  # the tolerance's points
    if eval_dataset is not None and scorer is None:
        features, labels, data = eval_examples(eval_dataset, tokenizer, config, getattr(model.config, "label2id", None),
                                               name=config.data_name)
    else:
        features = random_examples(tokenizer, config.sample_size, config.max_length, config.seed,
                                   choices=2 if kind.name == "multiple_choice" else None)
        labels, data = None, f"random tokens ({len(features)} examples, lengths 8-{config.max_length})"
    timing_pool, timing_data = features, data
    compared_on, data = data, (scorer.describe() if scorer is not None else data)
    if latency_dataset is not None:
        timing_pool, _, timing_data = eval_examples(latency_dataset, tokenizer,
                                                    dataclasses.replace(config, max_eval_samples=None),
                                                    name=config.latency_data_name or "latency_dataset")
    rng = np.random.default_rng(config.seed)
    timed = [timing_pool[i] for i in sorted(rng.permutation(len(timing_pool))[:config.sample_size])]

    threads = config.session.intra_op_num_threads
    old_threads = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)  # PyTorch gets the same thread budget as the ORT sessions
    try:
        if positional:  # outputs of different lengths per input: compared input by input
            pt = pytorch_runner(model, kind.outputs)
            ref_outputs = [as_tuple(pt(f)) for f in features]
            reference: dict[str, Any] = {"accuracy": None, "kind": kind.name, "outputs": list(kind.outputs),
                                         "agreement_of": PER_POSITION[kind.name]}
            if scorer is not None:  # agreement stays measured on the random inputs, the tolerance is on the F1
                reference.update(metric=scorer.metric, metrics=scorer.score(model), compared_on=compared_on)
        else:
            pt = pytorch_runner(model)
            ref_logits = run_all(pt, features)  # (N, num_labels)
            ref_pred = ref_logits.argmax(-1)
            reference = {"accuracy": None if labels is None or regression else float((ref_pred == labels).mean())}
            if regression:  # Pearson points against the gold scores (random inputs: against PyTorch's, 100 for itself)
                reference.update(metric="pearson", metrics={
                    "pearson": 100.0 if labels is None else pearson_points(labels, ref_logits[:, 0])})
        results, runners = [], {}
        for name, path in candidates.items():
            steps = list(VARIANTS.get(name, ()))
            if not isinstance(path, Path):
                results.append(VariantResult(name, steps, passed=False, reasons=[str(path)]))
                continue
            session = inference_session(path, config.session.for_variant(name))
            run = ort_runner(session, kind.outputs) if positional else ort_runner(session)
            r = VariantResult(name, steps, passed=True, size_bytes=model_size_bytes(path))
            if positional:
                r.max_logit_diff, r.label_agreement, r.per_output = compare_per_position(
                    kind, features, ref_outputs, [as_tuple(run(f)) for f in features])
            else:
                logits = run_all(run, features)
                r.max_logit_diff = float(np.abs(logits - ref_logits).max())
                r.label_agreement = float((logits.argmax(-1) == ref_pred).mean())
            if scorer is not None:
                r.metrics = scorer.score(session)
                r.metric_drop_points = scorer.points(reference["metrics"]) - scorer.points(r.metrics)
                r.loss_points = r.metric_drop_points
            elif regression:  # against the gold scores, or (random inputs) against PyTorch's
                r.metrics = {"pearson": pearson_points(ref_logits[:, 0] if labels is None else labels, logits[:, 0])}
                r.loss_points = reference["metrics"]["pearson"] - r.metrics["pearson"]
                r.metric_drop_points = r.loss_points
            elif labels is not None:  # classification
                r.accuracy = float((logits.argmax(-1) == labels).mean())
                r.accuracy_drop_points = 100 * (reference["accuracy"] - r.accuracy)
                r.loss_points = r.accuracy_drop_points
            else:
                r.loss_points = 100 * (1 - r.label_agreement)
            if r.loss_points > config.tolerance + 1e-9:
                measured_as = (f"eval {unit}" if scorer is not None or labels is not None else
                               "correlation with PyTorch's scores" if regression else
                               f"{PER_POSITION[kind.name]} disagreeing with PyTorch" if positional else
                               "predictions that disagree with PyTorch")
                r.reasons.append(f"loses {r.loss_points:.2f} {unit} points ({measured_as}), "
                                 f"tolerance {config.tolerance}")
            if not is_quantized(name) and r.max_logit_diff > config.fp32_atol:
                r.reasons.append(
                    f"fp32 logits differ from PyTorch by {r.max_logit_diff:.2e} > fp32_atol {config.fp32_atol}")
            if config.max_logit_diff is not None and r.max_logit_diff > config.max_logit_diff:
                r.reasons.append(f"max logit diff {r.max_logit_diff:.2e} > max_logit_diff {config.max_logit_diff}")
            r.passed = not r.reasons
            results.append(r)
            runners[name] = run
        if config.measure_pytorch:
            runners = {"pytorch": pt, **runners}
        latency, load_seen = {}, {}
        if any(r.passed for r in results):  # nothing to choose from: no need to time anything
            latency, load_seen = batch1_latency(runners, timed, config.latency_repeats, config.warmup)
    finally:
        torch.set_num_threads(old_threads)

    reference["timed_on"] = f"{len(timed)} inputs of {timing_data}"
    reference["size_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    reference["latency"] = latency.get("pytorch")
    for r in results:
        r.latency = latency.get(r.name, {})
        if reference["latency"] and r.latency:
            r.speedup_vs_pytorch = reference["latency"]["mean_ms"] / r.latency["mean_ms"]
    kept = [r for r in results if r.passed]
    choice = VariantChoice(chosen=pick_variant(kept, config.speed_margin) if kept else "",
                           results=results, reference=reference, data=data, config=config.to_dict(),
                           other_cpu_load=load_seen, machine=machine_description())
    if not kept:
        raise FastFormersError(
            f"no ONNX variant is within the tolerance of {config.tolerance} {unit} points on {data}:\n"
            f"{choice.table()}\nRaise the tolerance, add fp32 candidates, or check the model.")
    return choice


def _record(save_dir: Path, choice: VariantChoice) -> None:
    from ..measurements import record_measurement

    common = dict(dataset=choice.data, batch_size=1, threads=choice.config["session"]["intra_op_num_threads"],
                  machine=choice.machine)
    timed = dict(common, dataset=choice.reference.get("timed_on"))
    if choice.reference.get("latency"):
        record_measurement(save_dir, "latency_ms", choice.reference["latency"]["mean_ms"], unit="ms",
                           variant="pytorch", **timed)
    if choice.reference.get("accuracy") is not None:
        record_measurement(save_dir, "accuracy", choice.reference["accuracy"], variant="pytorch", **common)
    for metric, value in (choice.reference.get("metrics") or {}).items():  # QA / NER: their task's metrics
        record_measurement(save_dir, metric, value, variant="pytorch", **common)
    # Every candidate as "onnx-<name>"; the chosen one (the graph in this folder) once more as plain "onnx".
    chosen = choice.result(choice.chosen)
    for r, variant in [*((r, f"onnx-{r.name}") for r in choice.results), (chosen, "onnx")]:
        if r.latency:
            record_measurement(save_dir, "latency_ms", r.latency["mean_ms"], unit="ms", variant=variant, **timed)
            record_measurement(save_dir, "latency_p99_ms", r.latency["p99_ms"], unit="ms", variant=variant, **timed)
        if r.accuracy is not None:
            record_measurement(save_dir, "accuracy", r.accuracy, variant=variant, **common)
        for metric, value in (r.metrics or {}).items():
            record_measurement(save_dir, metric, value, variant=variant, **common)
        if r.max_logit_diff is not None:
            record_measurement(save_dir, "max_logit_diff", r.max_logit_diff, variant=variant, **common)
            record_measurement(save_dir, "label_agreement", r.label_agreement, variant=variant, **common)


def chosen_with(save_dir: str | os.PathLike, config: VariantChoiceConfig) -> bool:
    """Whether ``save_dir`` holds a variant chosen with exactly these settings (candidates, tolerance, choice rule,
    threads, ...): callers that cache a choice rebuild it when the settings, or the recipes they name, changed."""
    done = read_json(Path(save_dir) / REPORT_FILE) or {}
    return done.get("config") == json.loads(json.dumps(config.to_dict()))  # JSON round trip: tuples become lists


def optimize_for_inference(model_or_dir, save_dir: str | os.PathLike, eval_dataset=None, tolerance: float | None = None,
                           tokenizer=None, config: VariantChoiceConfig | None = None, latency_dataset=None,
                           work_dir: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Export, build the candidate variants, and save the fastest one within ``tolerance`` to ``save_dir``.

    ``eval_dataset`` (a Dataset of raw text + labels, or tokenised) is the data the choice is measured on; without
    it a random-token sample stands in and the tolerance applies to disagreement with PyTorch. ``latency_dataset``
    (optional, no labels needed) is what the variants are timed on, e.g. inputs with production lengths. ``tolerance``
    (accuracy points; F1 points for question answering / token classification, whose ``eval_dataset`` is a raw
    SQuAD / CoNLL split, e.g. ``load_task_data(path, "squad")["validation"]``) overrides ``config.tolerance``.
    ``save_dir`` gets the chosen graph, tokenizer, config, ``onnx_variants.json``/``.md`` (every candidate's
    numbers and the choice) and the measurements file. Candidates are built in ``work_dir`` (kept) or a temporary
    folder (removed). Returns ``save_dir``.
    """
    config = config or VariantChoiceConfig()
    if tolerance is not None:
        config = dataclasses.replace(config, tolerance=tolerance)
    source_dir = model_or_dir if isinstance(model_or_dir, (str, os.PathLike)) else None
    inputs = [source_dir or getattr(getattr(model_or_dir, "config", None), "_name_or_path", None), work_dir]
    check_output_dir(save_dir, "onnx", inputs, overwrite, what="save_dir", overwrite_flag="overwrite=True")
    model = load_pytorch_model(source_dir) if source_dir is not None else model_or_dir
    tokenizer = tokenizer or load_tokenizer(source_dir or getattr(model.config, "_name_or_path", None))
    if tokenizer is None:
        raise FastFormersError("no tokenizer found beside the model; pass tokenizer=...")
    from ..tasks.kinds import kind_of

    check_eval_supported(kind_of(model), eval_dataset)  # before the slow part
    if eval_dataset is not None and scored_by_task_metric(kind_of(model)):  # fail on bad data before the slow part
        task_scorer(kind_of(model), eval_dataset, tokenizer, dataclasses.replace(config, max_eval_samples=1),
                    getattr(model.config, "id2label", None))
    elif eval_dataset is not None:
        split = eval_split(eval_dataset)  # its first example is enough to check the columns and labels
        first = split.select(range(1)) if hasattr(split, "select") and len(split) else split
        eval_examples(choice_eval_set(kind_of(model), first, tokenizer, config.max_length), tokenizer,
                      dataclasses.replace(config, max_eval_samples=1), getattr(model.config, "label2id", None))

    with work_dir_beside(save_dir) as tmp_work:  # candidates are large: beside the output, not in the system temp
        work = Path(work_dir) if work_dir is not None else tmp_work
        route = onnx_route(config.route)
        export_dir = export_onnx(model, work / "fp32", tokenizer=tokenizer, route=route)
        candidates = build_candidates(export_dir, work, dataclasses.replace(config, route=route))
        choice = choose_variant(model, tokenizer, candidates, eval_dataset, config, latency_dataset=latency_dataset)
        choice.route = route
        with atomic_output_dir(save_dir, "onnx", inputs, overwrite, overwrite_flag="overwrite=True") as out:
            for p in Path(candidates[choice.chosen]).iterdir():
                if p.is_file():
                    shutil.copy2(p, out / p.name)
            disabled = SESSION_DISABLED_OPTIMIZERS.get(choice.chosen)
            if disabled:  # loaders (inference_session) apply it; Optimum's ORTModel ignores it and runs unchanged
                write_json(out / SESSION_FILE, {"variant": choice.chosen, "disabled_optimizers": list(disabled)})
            write_json(out / REPORT_FILE, choice.to_dict())
            (out / REPORT_MD).write_text(
                f"# ONNX variant choice\n\nChosen: **{choice.chosen}** (fastest within {config.tolerance} "
                f"{choice.reference.get('metric', 'accuracy')} points of PyTorch fp32; variants within "
                f"{100 * config.speed_margin:g}% of the fastest latency count as equally fast and the most accurate "
                f"of them wins), checked on {choice.data}, timed on "
                f"{choice.reference['timed_on']}, batch 1, {config.session.intra_op_num_threads} thread(s), other processes using "
                f"{choice.other_cpu_load['other_load_cores']} cores. Machine: {machine_text(choice.machine)}. "
                f"Graphs built with {ROUTE_TEXT[route]}.\n\n"
                f"{choice.table()}\n", encoding="utf-8")
            _record(out, choice)
            record_step(out, {"step": "onnx_choose_variant", "variant": choice.chosen, "tolerance": config.tolerance,
                               "steps": list(VARIANTS[choice.chosen]), "route": route})
    return Path(save_dir)
