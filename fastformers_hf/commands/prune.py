"""``fastformers-hf prune``: remove attention heads and FFN neurons from a fine-tuned model (same count in every
layer), scored on a held-out slice of the training data, and save a model that reloads with ``from_pretrained``.

    fastformers-hf prune --model_name_or_path runs/sst2-compress/1-distill --data ../shared/data/sst2 \
        --heads_per_layer 6 --ffn_width 768 --output_dir runs/sst2-pruned

Pruning alone costs accuracy; re-distil from the unpruned model afterwards (``fastformers-hf compress`` does both).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from ..utils.argparsing import HfArgumentParser  # not transformers': that imports torch (slow --help)

from ..pipeline.config import parse_target
from ..errors import FastFormersError


@dataclass
class PruneArguments:
    model_name_or_path: str = field(default=None, metadata={"help": "The fine-tuned model to prune (a local dir)."})
    output_dir: str = field(default=None, metadata={"help": "Where the pruned model is saved (written atomically)."})
    data: Optional[str] = field(default=None, metadata={"help": "Folder of GLUE train/dev files (needed by "
                                                                 "first_order scoring and for the accuracy check)."})
    task: str = field(default="sst2", metadata={"help": "Task name (sst2, rte, boolq, mrpc, cola): text columns."})
    heads_per_layer: Optional[str] = field(default=None, metadata={"help": "Heads kept per layer: a count (6) or "
                                                                           "a ratio (0.5); unset keeps all."})
    ffn_width: Optional[str] = field(default=None, metadata={"help": "FFN neurons kept per layer: a count (768) "
                                                                     "or a ratio (0.5); unset keeps all."})
    method: str = field(default="first_order", metadata={"help": "first_order (Michel et al.), magnitude or random."})
    scoring_examples: int = field(default=1000, metadata={"help": "Held-out train rows that score heads/neurons."})
    max_length: int = field(default=128, metadata={"help": "Truncation length of the scoring/eval inputs."})
    evaluate: bool = field(default=True, metadata={"help": "Dev accuracy before and after (if there is a dev file)."})
    seed: int = field(default=0, metadata={"help": "Seed of the held-out split (and of random scoring)."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an --output_dir that holds our "
                                                                        "own output of another command (never "
                                                                        "someone else's files)."})

    def __post_init__(self):
        if not self.model_name_or_path or not self.output_dir:
            raise FastFormersError("pass --model_name_or_path (the fine-tuned model) and --output_dir.")
        if self.heads_per_layer is None and self.ffn_width is None:
            raise FastFormersError("nothing to prune: pass --heads_per_layer and/or --ffn_width (a count or a ratio).")
        if self.method == "first_order" and not self.data:
            raise FastFormersError("first_order scoring needs labelled data: pass --data, or --method magnitude.")


def _accuracy(model, tokenizer, split, task, max_length: int) -> float:
    from ..inference.classifier import InferenceConfig, TextClassifier

    texts = task.inputs(split)
    clf = TextClassifier.from_pretrained(model, tokenizer=tokenizer, config=InferenceConfig(batch_size=64,
                                                                                             max_length=max_length))
    return float(np.mean(clf.predict_logits(texts).argmax(-1) == np.asarray(split[task.label_field])))


def main(argv=None) -> int:
    (args,) = HfArgumentParser(PruneArguments).parse_args_into_dataclasses(args=argv)
    from ..tasks.data import get_task, load_task_data, tokenize
    from ..utils.io import atomic_output_dir, check_output_dir

    inputs = [args.model_name_or_path, args.data]
    check_output_dir(args.output_dir, "prune", inputs, args.overwrite_output_dir)  # before any slow work
    from ..utils.model_folder import load_pytorch_model, load_tokenizer
    from ..pruning import held_out_split, prune, scoring_dataloader
    from ..shape_record import compression_record

    model, tokenizer = load_pytorch_model(args.model_name_or_path), load_tokenizer(args.model_name_or_path)
    if tokenizer is None:
        raise FastFormersError(f"{args.model_name_or_path} has no tokenizer; save one beside the model.")
    task = get_task(args.task)
    raw = load_task_data(args.data, args.task, seed=args.seed) if args.data else None
    heads, ffn = parse_target(args.heads_per_layer), parse_target(args.ffn_width)
    loader = None
    if args.method == "first_order":
        if not 1 <= args.scoring_examples < len(raw["train"]):
            raise FastFormersError(f"--scoring_examples {args.scoring_examples} must be between 1 and "
                                   f"{len(raw['train']) - 1}: the train split of {args.data} has {len(raw['train'])} "
                                   "rows; pass a smaller --scoring_examples.")
        _, held_out = held_out_split(raw["train"], args.scoring_examples, seed=args.seed)
        scoring = tokenize(held_out, tokenizer, task.text_fields, task.label_field, args.max_length)
        loader = scoring_dataloader(scoring, tokenizer, model=model)
    dev = raw.get("validation") if raw is not None and args.evaluate else None
    report = {"source": args.model_name_or_path, "method": args.method}
    if dev is not None:
        report["accuracy_before"] = _accuracy(model, tokenizer, dev, task, args.max_length)
    before = sum(p.numel() for p in model.parameters())
    prune(model, heads_per_layer=heads, ffn_width=ffn, method=args.method, dataloader=loader, seed=args.seed)
    record = compression_record(model)
    report.update(heads_per_layer=record["heads_per_layer"], ffn_width_per_layer=record["ffn_width_per_layer"],
                  parameters_before=before, parameters_after=sum(p.numel() for p in model.parameters()))
    if dev is not None:
        report["accuracy_after"] = _accuracy(model, tokenizer, dev, task, args.max_length)
    from ..hub_code import save_model_folder

    with atomic_output_dir(args.output_dir, "prune", inputs, args.overwrite_output_dir) as tmp:
        save_model_folder(model, tmp, tokenizer)  # with the modeling file transformers 5 needs for pruned heads
        (tmp / "pruning_report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"saved to {args.output_dir}; re-distil it from {args.model_name_or_path} to win back accuracy "
          "(fastformers-hf compress does prune + re-distil in one run).")
    return 0
