"""BoolQ (SuperGLUE): yes/no questions about a passage, a sentence-pair task (question, passage) -> False / True.

Fine-tune a model, or distil a fine-tuned teacher into a smaller student, with pair inputs:

    # the real BoolQ files (train.jsonl, dev.jsonl: question, passage, label true/false)
    python examples/boolq.py --data_dir ../shared/data/superglue/boolq --model_name_or_path MODEL \
        --output_dir runs/boolq-teacher --max_steps 450
    python examples/boolq.py --data_dir ../shared/data/superglue/boolq --teacher_model_name_or_path \
        runs/boolq-teacher --student_layers 3 --output_dir runs/boolq-student --max_steps 450
    # online: SuperGLUE's BoolQ through `datasets` (train.jsonl + val.jsonl, as in BoolQ.zip, also work offline)
    python examples/boolq.py --model_name_or_path MODEL --output_dir runs/boolq-teacher --max_steps 3000
    # offline smoke test only: generated BoolQ-shaped pairs (learnable, but not BoolQ)
    python examples/boolq.py --make_fake_data runs/fake-boolq
    python examples/boolq.py --data_dir runs/fake-boolq --model_name_or_path MODEL --output_dir runs/boolq-smoke

The whole recipe (teacher, student, pruning, int8) is ``fastformers-hf compress --recipe
examples/recipes/superglue/boolq.yaml``.

Without ``--teacher_model_name_or_path`` the model is fine-tuned on the labels (plain ``Trainer``); with it, a
``--student_layers`` student copied from the teacher learns from the teacher's cached logits (``DistillationTrainer``).
BoolQ passages are long (median ~135 tokens), hence ``--max_length 256``.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from datasets import Value
from transformers import AutoModelForSequenceClassification, AutoTokenizer, HfArgumentParser, Trainer

from fastformers_hf import (DistillationConfig, DistillationTrainer, FastFormersError, cache_teacher_logits,
                            compute_metrics, load_task_data, make_student, tokenize)
from fastformers_hf.tasks.data import TASKS
from fastformers_hf.tasks.synthetic import NEGATIVE, POSITIVE, SUBJECTS

TEXT_FIELDS = TASKS["boolq"].text_fields  # ("question", "passage"): encoded as one pair, [SEP] between
LABELS = {0: "False", 1: "True"}
HUB_MOVED = {"super_glue": "aps/super_glue"}  # the Hub moved SuperGLUE; the old id no longer resolves


@dataclass
class BoolQArguments:
    model_name_or_path: Optional[str] = field(default=None, metadata={"help": "Model to fine-tune (a pretrained "
                                              "encoder or a classifier); not needed when distilling."})
    dataset: str = field(default="super_glue", metadata={"help": "Hub dataset id, loaded with datasets.load_dataset."})
    dataset_config: str = field(default="boolq", metadata={"help": "Its configuration name (google/boolq: default)."})
    data_dir: Optional[str] = field(default=None, metadata={"help": "Local folder used instead of --dataset: "
                                    "train.jsonl + val.jsonl (SuperGLUE's layout) or train/dev .tsv/.csv/.jsonl."})
    make_fake_data: Optional[str] = field(default=None, metadata={"help": "Write a generated BoolQ-like folder here "
                                          "(train.jsonl, val.jsonl) and exit."})
    student_layers: int = field(default=3, metadata={"help": "Student depth when distilling."})
    max_length: int = field(default=256, metadata={"help": "Truncation length of question + passage."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Train on a shuffled subset."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Evaluate on the first N val examples."})


def make_fake_boolq(folder, num_train: int = 400, num_val: int = 100, seed: int = 0) -> Path:
    """A BoolQ-shaped folder: the passage says how some things were, the question asks about one of them
    ("was the plot dull" after "the plot was not boring ." is True), so the answer needs both texts."""
    rng, folder = random.Random(seed), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def example(idx):
        subjects = rng.sample(SUBJECTS, 3)
        facts = {s: (rng.random() < 0.5, rng.random() < 0.3) for s in subjects}  # subject -> (positive word, negated)
        passage = " ".join(f"{s} was {'not ' * neg}{rng.choice(POSITIVE if pos else NEGATIVE)} ."
                           for s, (pos, neg) in facts.items())
        asked = rng.choice(subjects)
        pos, neg = facts[asked]
        asks_positive = rng.random() < 0.5
        question = f"was {asked} {rng.choice(POSITIVE if asks_positive else NEGATIVE)}"
        return {"question": question, "passage": passage, "idx": idx, "label": (pos != neg) == asks_positive}

    for name, n in (("train", num_train), ("val", num_val)):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(example(i)) + "\n" for i in range(n))
    return folder


def load_boolq(args: BoolQArguments, seed: int):
    """train / validation with int labels, from a local folder or the Hub."""
    source = args.data_dir or HUB_MOVED.get(args.dataset, args.dataset)
    try:
        raw = load_task_data(source, None if args.data_dir else args.dataset_config, args.max_train_samples,
                             args.max_eval_samples, seed=seed)
    except ConnectionError as e:
        raise FastFormersError(f"{e}. Offline? Pass --data_dir with train.jsonl + val.jsonl (BoolQ.zip unpacked), "
                               "or write a stand-in with --make_fake_data DIR.") from e
    for split in [s for s in raw if s not in ("train", "validation")]:
        del raw[split]  # SuperGLUE's test split has no labels
    for split, ds in raw.items():
        if "label" not in ds.column_names and "answer" in ds.column_names:  # google/boolq calls it "answer"
            ds = ds.rename_column("answer", "label")
        if ds.features["label"].dtype == "bool":  # SuperGLUE's jsonl files hold true / false
            ds = ds.cast_column("label", Value("int64"))
        raw[split] = ds
    return raw


def main(argv=None) -> dict:
    args, config = HfArgumentParser((BoolQArguments, DistillationConfig)).parse_args_into_dataclasses(args=argv)
    if args.make_fake_data:
        folder = make_fake_boolq(args.make_fake_data, seed=config.seed)
        print(f"wrote {folder}/train.jsonl and {folder}/val.jsonl; train with --data_dir {folder}")
        return {"data_dir": str(folder)}
    distil = config.teacher_model_name_or_path is not None
    if not (distil or args.model_name_or_path) or not config.output_dir:
        raise FastFormersError("pass --output_dir and either --model_name_or_path (fine-tune) or "
                               "--teacher_model_name_or_path (distil a student).")

    tokenizer = AutoTokenizer.from_pretrained(config.teacher_model_name_or_path if distil else args.model_name_or_path)
    data = tokenize(load_boolq(args, config.seed), tokenizer, TEXT_FIELDS, "label", args.max_length)
    if distil:
        teacher = AutoModelForSequenceClassification.from_pretrained(config.teacher_model_name_or_path)
        train = cache_teacher_logits(teacher, data["train"], tokenizer)  # one teacher pass over the pairs
        model = make_student(teacher, num_layers=args.student_layers)
        trainer = DistillationTrainer(model=model, teacher_model=teacher, args=config, train_dataset=train,
                                      eval_dataset=data["validation"], processing_class=tokenizer,
                                      compute_metrics=compute_metrics)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            args.model_name_or_path, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
            ignore_mismatched_sizes=True)  # a fresh 2-way head if the checkpoint had another
        trainer = Trainer(model=model, args=config, train_dataset=data["train"], eval_dataset=data["validation"],
                          processing_class=tokenizer, compute_metrics=compute_metrics)
    trainer.train()
    trainer.save_model()
    metrics = trainer.evaluate()
    print(f"{'distilled' if distil else 'fine-tuned'} BoolQ model in {config.output_dir}: "
          f"val accuracy {metrics['eval_accuracy']:.4f} on {len(data['validation'])} examples")
    return {"metrics": metrics, "output_dir": config.output_dir}


if __name__ == "__main__":
    main()
