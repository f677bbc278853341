"""``fastformers-hf distill``: distil a fine-tuned teacher into a smaller student on a task of any kind the task
table names: GLUE-style classification (sst2, ...), extractive question answering (squad) or NER (conll2003).

    fastformers-hf distill --teacher_model_name_or_path ../shared/models/sst2-minilm-teacher \
        --data ../shared/data/sst2 --task sst2 --student_layers 3 --output_dir runs/sst2-student --max_steps 1000

The teacher is loaded with the head its config names, and the student keeps it. Evaluation uses the kind's metric:
accuracy / F1 / Matthews correlation, entity precision / recall / F1 (seqeval), or SQuAD exact match / F1.
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
    task: str = field(default="sst2", metadata={"help": "Task name (sst2, rte, boolq, mrpc, cola; squad: question "
                                                 "answering; conll2003: NER): its columns, format and metric."})
    student_layers: int = field(default=3, metadata={"help": "Student depth, initialised from teacher layers."})
    student_hidden_act: Optional[str] = field(default=None, metadata={"help": "e.g. 'relu' to switch from GELU."})
    general_checkpoint: Optional[str] = field(default=None, metadata={"help": "Task-agnostic recipe: start from "
                                              "this generally distilled model instead of teacher layers."})
    max_length: Optional[int] = field(default=None, metadata={"help": "Truncation length (question answering: "
                                      "window length); batches are padded dynamically. Default 128; for question "
                                      "answering 384 (at most the teacher's position limit)."})
    doc_stride: Optional[int] = field(default=None, metadata={"help": "Question answering: tokens of overlap "
                                      "between windows of a long context (default min(max_length // 2, 128))."})
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
    from transformers import AutoTokenizer  # heavy: after the quick check

    from ..distillation.config import DistillationConfig
    from ..distillation.student import load_model, make_student
    from ..distillation.trainer import DistillationTrainer, cache_teacher_logits
    from ..tasks.data import get_task, load_task_data, tokenize_task
    from ..tasks.kinds import kind_of

    data_args, config = HfArgumentParser((DistillDataArguments, DistillationConfig)).parse_args_into_dataclasses(
        args=argv)
    if not data_args.data or not config.teacher_model_name_or_path:
        raise FastFormersError(MISSING_INPUTS)
    from ..utils.io import check_output_dir

    check_output_dir(config.output_dir, "distill", [config.teacher_model_name_or_path, data_args.data,
                                                    data_args.general_checkpoint], config.overwrite_output_dir)
    task = get_task(data_args.task)
    teacher = load_model(config.teacher_model_name_or_path)  # the head its config names (any kind)
    kind = kind_of(teacher).name
    if kind != task.kind and {kind, task.kind} != {"regression", "sequence_classification"}:
        raise FastFormersError(f"the teacher is a {kind} model but task {data_args.task!r} is {task.kind}; pass a "
                               f"teacher fine-tuned for {data_args.task}.")
    if task.kind == "question_answering" and str(getattr(config.eval_strategy, "value", config.eval_strategy)) != "no":
        raise FastFormersError("question answering is scored once, after training (SQuAD exact match / F1 need "
                               "decoding over the raw examples): drop --eval_strategy (and --load_best_model_at_end).")
    tokenizer = AutoTokenizer.from_pretrained(config.teacher_model_name_or_path)
    max_length, doc_stride = _lengths(data_args, task.kind, teacher.config)
    raw = load_task_data(data_args.data, data_args.task, max_train_samples=data_args.max_train_samples,
                         seed=config.seed)
    label_names = teacher.config.id2label if task.kind == "token_classification" else None
    data = tokenize_task(raw, tokenizer, task, max_length, doc_stride, label_names=label_names)
    train = data["train"]
    if data_args.cache_teacher and not config.uses_intermediate_losses:
        train = cache_teacher_logits(teacher, train, tokenizer)
    student = make_student(teacher, num_layers=data_args.student_layers, hidden_act=data_args.student_hidden_act,
                           general_checkpoint=data_args.general_checkpoint,
                           allow_different_tokenizers=config.allow_different_tokenizers)
    validation = data.get("validation")
    # Question answering is scored after training, not inside Trainer.evaluate: its metric needs the raw examples
    # and every window's context offsets (columns the Trainer drops), and its eval windows carry no span labels.
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=config, train_dataset=train,
                                  eval_dataset=None if task.kind == "question_answering" else validation,
                                  processing_class=tokenizer, compute_metrics=_metric(task.kind, label_names))
    trainer.train()
    trainer.save_model()
    if validation is not None:
        if task.kind == "question_answering":
            print(_evaluate_squad(trainer, raw["validation"], validation))
        else:
            print(trainer.evaluate())
    return 0


def _lengths(data_args: DistillDataArguments, kind: str, teacher_config) -> tuple[int, int]:
    """``max_length`` and ``doc_stride``: the flags, else 128 (question answering: 384, at most the teacher's
    position limit) and min(max_length // 2, 128), as the question-answering pipeline strides."""
    max_length = data_args.max_length
    if max_length is None:
        if kind == "question_answering":
            from ..tasks.question_answering import DEFAULT_MAX_LENGTH

            limit = getattr(teacher_config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
            max_length = min(DEFAULT_MAX_LENGTH, limit)
        else:
            max_length = 128
    doc_stride = data_args.doc_stride if data_args.doc_stride is not None else min(max_length // 2, 128)
    return max_length, doc_stride


def _metric(kind: str, label_names):
    """The ``Trainer(compute_metrics=...)`` function of a kind (None for question answering: see main)."""
    if kind == "token_classification":
        from ..tasks.conll import label_list
        from ..tasks.entity_metric import entity_compute_metrics

        return entity_compute_metrics(label_list(label_names))
    if kind == "question_answering":
        return None
    from ..tasks.metrics import compute_metrics, regression_compute_metrics

    return regression_compute_metrics if kind == "regression" else compute_metrics


def _evaluate_squad(trainer, examples, windows) -> dict[str, float]:
    """``eval_exact_match`` / ``eval_f1`` of the trained student: its span logits over the evaluation windows
    (``Trainer.predict``, on the trainer's device and batch size), decoded by ``postprocess``."""
    from ..tasks.metrics import squad_evaluation

    inputs = windows.select_columns([c for c in ("input_ids", "attention_mask", "token_type_ids")
                                     if c in windows.column_names])
    output = trainer.predict(inputs, metric_key_prefix="eval")
    metrics = {f"eval_{k}": v for k, v in squad_evaluation(examples, windows, output.predictions).items()}
    trainer.log(dict(metrics))  # Trainer.log adds "epoch" to the dict it is given
    return metrics
