"""``fastformers-hf distill``: distil a fine-tuned teacher into a smaller student on a GLUE-style task.

    fastformers-hf distill --teacher_model_name_or_path ../shared/models/sst2-minilm-teacher \
        --data ../shared/data/sst2 --task sst2 --student_layers 3 --output_dir runs/sst2-student --max_steps 1000
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Optional

from ..distillation.options import DistillationOptions
from ..errors import FastFormersError
from ..utils.argparsing import HfArgumentParser  # not transformers': that imports torch (slow --help)

MISSING_INPUTS = "pass --data (folder or Hub id) and --teacher_model_name_or_path."
TRAINING_ARGUMENTS_HELP = (
    "Every transformers TrainingArguments flag is accepted as well (--output_dir, --max_steps, --learning_rate, "
    "--per_device_train_batch_size, --seed, --eval_strategy, ...). They are not listed here because reading them "
    "imports transformers and torch (seconds); `fastformers-hf distill --help-all` lists every flag.")


@dataclass
class DistillDataArguments:
    data: str = field(default=None, metadata={"help": "Folder of GLUE train/dev files, or a Hub dataset id."})
    task: str = field(default="sst2", metadata={"help": "Task name (sst2, rte, boolq, mrpc, cola): text columns."})
    student_layers: int = field(default=3, metadata={"help": "Student depth, initialised from teacher layers."})
    student_hidden_act: Optional[str] = field(default=None, metadata={"help": "e.g. 'relu' to switch from GELU."})
    general_checkpoint: Optional[str] = field(default=None, metadata={"help": "Task-agnostic recipe: start from "
                                              "this generally distilled model instead of teacher layers."})
    max_length: int = field(default=128, metadata={"help": "Truncation length; batches are padded dynamically."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Use a shuffled subset of train."})
    cache_teacher: bool = field(default=True, metadata={"help": "Precompute teacher logits once (no teacher "
                                "forward during training) when no hidden/attention loss is used."})


def quick_check(argv: list[str]) -> None:
    """``--help`` and a missing --data/--teacher in well under a second: the distill flags are parsed without
    ``TrainingArguments``, whose import costs seconds (torch). Exits for ``--help``; the full parse follows."""
    light = (DistillDataArguments, DistillationOptions)
    if "--help-all" in argv:
        return  # the full parser lists every flag
    if "-h" in argv or "--help" in argv:
        HfArgumentParser(light, epilog=TRAINING_ARGUMENTS_HELP).parse_args(["--help"])  # prints, exits 0
    try:
        data_args, options, _ = HfArgumentParser(light, exit_on_error=False).parse_args_into_dataclasses(
            args=argv, return_remaining_strings=True)  # the remaining strings are TrainingArguments flags
    except argparse.ArgumentError:
        return  # a malformed flag: the full parser reports it, with its usage line
    if not data_args.data or not options.teacher_model_name_or_path:
        raise FastFormersError(MISSING_INPUTS)


def main(argv=None) -> int:
    argv = list(sys.argv[2:] if argv is None else argv)
    quick_check(argv)
    argv = ["--help" if a == "--help-all" else a for a in argv]
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # heavy: after the quick check

    from ..distillation.config import DistillationConfig
    from ..distillation.student import make_student
    from ..distillation.trainer import DistillationTrainer, cache_teacher_logits
    from ..tasks.data import get_task, load_task_data, tokenize
    from ..tasks.metrics import compute_metrics

    data_args, config = HfArgumentParser((DistillDataArguments, DistillationConfig)).parse_args_into_dataclasses(
        args=argv)
    if not data_args.data or not config.teacher_model_name_or_path:
        raise FastFormersError(MISSING_INPUTS)
    from ..utils.io import check_output_dir

    check_output_dir(config.output_dir, "distill", [config.teacher_model_name_or_path, data_args.data,
                                                    data_args.general_checkpoint], config.overwrite_output_dir)
    task = get_task(data_args.task)
    teacher = AutoModelForSequenceClassification.from_pretrained(config.teacher_model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(config.teacher_model_name_or_path)
    raw = load_task_data(data_args.data, data_args.task, max_train_samples=data_args.max_train_samples,
                         seed=config.seed)
    data = tokenize(raw, tokenizer, task.text_fields, task.label_field, data_args.max_length)
    train = data["train"]
    if data_args.cache_teacher and not config.uses_intermediate_losses:
        train = cache_teacher_logits(teacher, train, tokenizer)
    student = make_student(teacher, num_layers=data_args.student_layers, hidden_act=data_args.student_hidden_act,
                           general_checkpoint=data_args.general_checkpoint,
                           allow_different_tokenizers=config.allow_different_tokenizers)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=config, train_dataset=train,
                                  eval_dataset=data.get("validation"), processing_class=tokenizer,
                                  compute_metrics=compute_metrics)
    trainer.train()
    trainer.save_model()
    if "validation" in data:
        print(trainer.evaluate())
    return 0
