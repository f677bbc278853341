"""Prune attention heads and FFN neurons inside a ``DistillationTrainer`` run, then re-distil (FastFormers §3).

    python examples/prune.py --teacher_model_name_or_path ../shared/models/sst2-minilm-teacher \
        --data ../shared/data/sst2 --heads_per_layer 6 --ffn_width 768 --output_dir runs/sst2-pruned \
        --max_steps 600 --per_device_train_batch_size 32 --learning_rate 1e-4

At step 0 ``StructuredPruningCallback`` scores every head and neuron by first-order importance on a held-out slice
of the *training* data (never the dev set: choosing heads on it would make the dev accuracy optimistic), slices the
model, and training goes on: distillation from the unpruned teacher recovers the accuracy. ``--model_name_or_path``
prunes another model (e.g. a distilled student) with the same teacher. The saved folder records its shape in
``config.json`` (``compression_record``) and loads with ``load_pruned`` (any shape) or ``from_pretrained``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Optional

from transformers import AutoModelForSequenceClassification, AutoTokenizer, HfArgumentParser

from fastformers_hf import (DistillationConfig, DistillationTrainer, FastFormersError, StructuredPruningCallback,
                            cache_teacher_logits, compression_record, compute_metrics, held_out_split, load_pruned,
                            load_task_data, record_measurement, tokenize)
from fastformers_hf.tasks.data import get_task


@dataclass
class PruneArguments:
    data: str = field(metadata={"help": "Folder of GLUE-style train/dev files (.tsv, .csv, .jsonl) or a Hub dataset id."})
    task: str = field(default="sst2", metadata={"help": "Which text columns and labels: sst2, rte, boolq, mrpc, cola."})
    model_name_or_path: Optional[str] = field(default=None, metadata={"help": "Model to prune (default: a copy of the "
                                              "teacher); it must share the teacher's tokenizer and labels."})
    heads_per_layer: str = field(default="0.5", metadata={"help": "Heads to keep in each layer: a count (6), a ratio "
                                 "of what the layer has (0.5), or one value per layer (6,6,4,4,2,2)."})
    ffn_width: str = field(default="0.5", metadata={"help": "FFN neurons to keep in each layer, same forms."})
    method: str = field(default="first_order", metadata={"help": "Importance: first_order, magnitude or random."})
    scoring_examples: int = field(default=1000, metadata={"help": "Training examples held out for scoring."})
    max_length: int = field(default=128, metadata={"help": "Truncation length; batches are padded to their longest."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Train on a shuffled subset."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Evaluate on the first N dev examples."})


def parse_target(text: str):
    """'6' -> 6 (a count), '0.5' -> 0.5 (a ratio), '6,6,4' -> [6, 6, 4] (one per layer)."""
    try:
        values = [float(v) if "." in v else int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise FastFormersError(f"{text!r} is not a pruning target; give a count (6), a ratio (0.5) or one per layer.")
    return values if len(values) > 1 else values[0]


def main(argv=None) -> dict:
    args, config = HfArgumentParser((PruneArguments, DistillationConfig)).parse_args_into_dataclasses(args=argv)
    if not config.teacher_model_name_or_path or not config.output_dir:
        raise FastFormersError("pass --teacher_model_name_or_path (the unpruned model) and --output_dir.")
    task = get_task(args.task)

    teacher = AutoModelForSequenceClassification.from_pretrained(config.teacher_model_name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(args.model_name_or_path or config.teacher_model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(config.teacher_model_name_or_path)
    raw = load_task_data(args.data, args.task, args.max_train_samples, args.max_eval_samples, seed=config.seed)
    data = tokenize(raw, tokenizer, task.text_fields, task.label_field, args.max_length)
    train, scoring = held_out_split(data["train"], args.scoring_examples, seed=config.seed)  # scoring: not trained on
    train = cache_teacher_logits(teacher, train, tokenizer)  # re-distillation needs no teacher forward pass
    params_before = sum(p.numel() for p in model.parameters())

    trainer = DistillationTrainer(model=model, teacher_model=teacher, args=config, train_dataset=train,
                                  eval_dataset=data["validation"], processing_class=tokenizer,
                                  compute_metrics=compute_metrics)
    StructuredPruningCallback(heads_per_layer=parse_target(args.heads_per_layer), ffn_width=parse_target(args.ffn_width),
                              method=args.method, scoring_dataset=scoring, prune_at_step=0).attach(trainer)
    trainer.train()  # prunes before the first step, then re-distils the smaller model
    trainer.save_model()
    metrics = trainer.evaluate()
    record_measurement(config.output_dir, "accuracy", metrics["eval_accuracy"], dataset=args.task, split="validation",
                       command="python examples/prune.py " + " ".join(sys.argv[1:] if argv is None else argv))

    record = compression_record(config.output_dir)  # read back from the saved config.json
    print(json.dumps({k: record[k] for k in ("num_layers", "heads_per_layer", "ffn_width_per_layer")}))
    print("recipe:", " -> ".join(step["step"] for step in record["steps"]))
    reloaded = load_pruned(config.output_dir)  # rebuilds any recorded shape, per-layer widths included
    params_after = sum(p.numel() for p in reloaded.parameters())
    print(f"dev accuracy {metrics['eval_accuracy']:.4f}; parameters {params_before / 1e6:.2f}M -> "
          f"{params_after / 1e6:.2f}M; saved to {config.output_dir}")
    return {"metrics": metrics, "record": record, "params_before": params_before, "params_after": params_after}


if __name__ == "__main__":
    main()
