"""The ``5-final`` stage of ``compress``: the deliverable (PyTorch student + its chosen ONNX variant in ``onnx/``),
measured against the teacher in one serving setting, and the model card; and the summary table printed after it."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..utils.io import OUTPUT_RECORD

STAGE_FILE = "stage.json"
# The final table's serving setting: one request at a time. The metric is measured in it too, because dynamic int8
# answers move with batch padding: a score from another batch size would not be the timed model's.
SERVING_BATCH_SIZE = 1
# How the summary names each kind's headline metric (the served evaluation's ``headline``).
METRIC_LABELS = {"sequence_classification": "accuracy", "question_answering": "F1 (SQuAD)",
                 "token_classification": "entity F1", "multiple_choice": "accuracy", "regression": "Pearson"}


def measure_final(pipeline, tmp: Path, student_dir: Path, onnx_dir: Path) -> dict:
    """Copy the student and its ONNX variant into ``tmp``, score the teacher (PyTorch fp32, dynamic length), the
    student and its ONNX variant with the task's metric, time them on the same requests interleaved, record both
    in each folder's measurements and write the card."""
    from ..measurements import record_measurement
    from ..utils.timing import DEFAULT_WARMUP, time_interleaved

    c, ev, split = pipeline.config, pipeline.evaluation, pipeline.raw["validation"]
    for p in student_dir.iterdir():
        if p.is_file() and p.name != STAGE_FILE:
            shutil.copy2(p, tmp / p.name)
    shutil.copytree(onnx_dir, tmp / "onnx", ignore=shutil.ignore_patterns(STAGE_FILE, OUTPUT_RECORD))
    serving = dict(threads=c.threads, batch_size=SERVING_BATCH_SIZE, max_length=c.max_length, doc_stride=c.doc_stride)
    models = {"teacher": ev.load(pipeline.teacher, pipeline.tokenizer, **serving),
              "pytorch": ev.load(tmp, backend="pytorch", **serving),
              "onnx": ev.load(tmp / "onnx", **serving)}
    metrics = {name: ev.score(m, split, pipeline.task) for name, m in models.items()}
    requests = ev.requests(split, pipeline.task)[: c.latency_samples]
    requests = [requests[i:i + SERVING_BATCH_SIZE] for i in range(0, len(requests), SERVING_BATCH_SIZE)]
    # Item by item, every model in turn: a burst of load elsewhere hits every model alike.
    timing = time_interleaved({name: ev.serve(m) for name, m in models.items()}, requests,
                              warmup=DEFAULT_WARMUP, interleave="item")
    latency = {name: timing.latency(name) for name in models}
    load = timing.load()
    latency_metric = f"latency_batch{SERVING_BATCH_SIZE}_median_ms"
    command = "fastformers-hf compress " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "fastformers-hf compress"
    common = dict(dataset=pipeline.data_name, split="validation", command=command, batch_size=SERVING_BATCH_SIZE)
    folders = {"teacher": [tmp, tmp / "onnx"], "pytorch": [tmp], "onnx": [tmp / "onnx"]}  # the teacher beside both
    for name, where in folders.items():
        for folder in where:
            for metric, value in metrics[name].items():
                record_measurement(folder, metric, value, variant=name, **common)
            record_measurement(folder, latency_metric, latency[name]["median_ms"], unit="ms", variant=name,
                               threads=c.threads, **common, other_load_cores=load["other_load_cores"])
    points = {name: ev.points(m) for name, m in metrics.items()}
    results = {"metric": ev.headline, "kind": ev.kind, "metrics": metrics, "points": points,
               "latency": latency, "load": load, "serving": {"batch_size": SERVING_BATCH_SIZE, "threads": c.threads},
               "speedup_onnx_vs_teacher": latency["teacher"]["median_ms"] / latency["onnx"]["median_ms"],
               "speedup_pytorch_vs_teacher": latency["teacher"]["median_ms"] / latency["pytorch"]["median_ms"],
               "metric_drop_points": points["teacher"] - points["onnx"],
               "parameters": {"teacher": sum(p.numel() for p in pipeline.teacher.parameters())}}
    if ev.headline == "accuracy":
        results["accuracy"] = {name: m["accuracy"] for name, m in metrics.items()}
        results["accuracy_drop_points"] = results["metric_drop_points"]
    try:
        from hub_cards import write_card

        name = c.hub_model_id or f"{Path(c.output_dir).name}-compressed"
        write_card(tmp, model_id=name, model_name=name.split("/")[-1])  # tmp's own name is a temporary one
        results["card"] = "README.md"
    except Exception as e:  # a card problem must not lose the measured model; say so instead
        results["card_error"] = str(e)
        pipeline.log(f"[5-final] model card not written: {e}")
    return results


def format_summary(summary: dict) -> str:
    f = summary["final"]
    points, lat = f["points"], f["latency"]
    rows = [("teacher (PyTorch fp32, dynamic length)", "teacher"), ("student (PyTorch fp32)", "pytorch"),
            ("student (ONNX Runtime, chosen variant)", "onnx")]
    base = lat["teacher"]["median_ms"]
    batch = f["serving"]["batch_size"]  # both numbers of a row come from this one serving setting
    label = METRIC_LABELS.get(f.get("kind"), f["metric"])
    unit = "%" if f["metric"] == "accuracy" else ""
    lines = [f"| model | {label} (batch {batch}) | latency median (batch {batch}, ms) | p99 (ms) | speed-up |",
             "|---|---|---|---|---|"]
    for text, key in rows:
        lines.append(f"| {text} | {points[key]:.2f}{unit} | {lat[key]['median_ms']:.2f} | {lat[key]['p99_ms']:.2f} | "
                     f"{base / lat[key]['median_ms']:.1f}x |")
    load = f["load"]
    lines.append(f"\nOther processes used {load['other_load_cores']:.2f} cores while timing"
                 f"{' (disturbed: rerun on a quiet machine for clean numbers)' if load['disturbed'] else ''}. "
                 f"Result: {summary['final_dir']}")
    return "\n".join(lines)
