"""Distil a fine-tuned teacher into a smaller student with ``DistillationTrainer`` (FastFormers, task-specific recipe).

    python examples/distil.py --teacher_model_name_or_path ../shared/models/sst2-minilm-teacher \
        --data ../shared/data/sst2 --task sst2 --student_layers 3 --student_hidden_act relu \
        --output_dir runs/sst2-student --max_steps 1500 --per_device_train_batch_size 32 --learning_rate 1e-4

The student copies every other teacher layer (``make_student``). The teacher runs once over the training data and
its logits become a dataset column (``cache_teacher_logits``; ``--teacher_logits_file`` keeps them for reruns), so
training runs no teacher forward pass. Any ``TrainingArguments`` / ``DistillationConfig`` flag works
(``--temperature``, ``--distillation_weight``, ``--eval_strategy steps``, ...). ``--output_dir`` gets the student,
its tokenizer and the measured dev accuracy of student and teacher (which the model card states).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Optional

from transformers import AutoModelForSequenceClassification, AutoTokenizer, HfArgumentParser, Trainer

from fastformers_hf import (DistillationConfig, DistillationTrainer, FastFormersError, cache_teacher_logits,
                            compute_metrics, load_task_data, make_student, record_measurement, tokenize)
from fastformers_hf.tasks.data import get_task


@dataclass
class DistilArguments:
    data: str = field(metadata={"help": "Folder of GLUE-style train/dev files (.tsv, .csv, .jsonl) or a Hub dataset id."})
    task: str = field(default="sst2", metadata={"help": "Which text columns and labels: sst2, rte, boolq, mrpc, cola."})
    student_layers: int = field(default=3, metadata={"help": "Student depth; its layers are copied from the teacher."})
    student_hidden_act: Optional[str] = field(default=None, metadata={"help": "e.g. relu (FastFormers: as accurate as "
                                              "GELU, faster); default: the teacher's activation."})
    max_length: int = field(default=128, metadata={"help": "Truncation length; batches are padded to their longest."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Train on a shuffled subset."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Evaluate on the first N dev examples."})
    teacher_logits_file: Optional[str] = field(default=None, metadata={"help": ".npy file for the teacher logits: "
                                               "written once, reused by reruns on the same training data."})


def main(argv=None) -> dict:
    args, config = HfArgumentParser((DistilArguments, DistillationConfig)).parse_args_into_dataclasses(args=argv)
    if not config.teacher_model_name_or_path or not config.output_dir:
        raise FastFormersError("pass --teacher_model_name_or_path (the fine-tuned teacher) and --output_dir.")
    task = get_task(args.task)

    teacher = AutoModelForSequenceClassification.from_pretrained(config.teacher_model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(config.teacher_model_name_or_path)
    raw = load_task_data(args.data, args.task, args.max_train_samples, args.max_eval_samples, seed=config.seed)
    data = tokenize(raw, tokenizer, task.text_fields, task.label_field, args.max_length)  # no padding yet

    # One teacher pass over the training set; training then reads the logits from the column.
    train = cache_teacher_logits(teacher, data["train"], tokenizer, cache_file=args.teacher_logits_file)
    student = make_student(teacher, num_layers=args.student_layers, hidden_act=args.student_hidden_act)

    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=config, train_dataset=train,
                                  eval_dataset=data["validation"], processing_class=tokenizer,
                                  compute_metrics=compute_metrics)
    trainer.train()
    trainer.save_model()  # student + tokenizer, written atomically

    # Dev accuracy of both, recorded beside the student for its model card (the teacher is the baseline).
    student_metrics = trainer.evaluate()
    teacher_metrics = Trainer(model=teacher, args=config, processing_class=tokenizer,
                              compute_metrics=compute_metrics).evaluate(data["validation"])
    command = "python examples/distil.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for variant, metrics in (("pytorch", student_metrics), ("teacher", teacher_metrics)):
        record_measurement(config.output_dir, "accuracy", metrics["eval_accuracy"], dataset=args.task,
                           split="validation", variant=variant, command=command)
    print(f"dev accuracy: student {student_metrics['eval_accuracy']:.4f} ({args.student_layers} layers), "
          f"teacher {teacher_metrics['eval_accuracy']:.4f}; student saved to {config.output_dir}")
    return {"student": student_metrics, "teacher": teacher_metrics, "output_dir": config.output_dir}


if __name__ == "__main__":
    main()
