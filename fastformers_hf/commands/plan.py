"""``fastformers-hf plan``: before training, time candidate student shapes on this machine for your sequence lengths.

    fastformers-hf plan --model_name_or_path ../shared/models/sst2-minilm-teacher --data ../shared/data/sst2
    fastformers-hf plan --model_name_or_path MODEL --seq_lengths 32 64 128 --latency_budget_ms 5
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import FastFormersError
from ..utils.argparsing import HfArgumentParser  # not transformers': that imports torch (slow --help)


@dataclass
class PlanArguments:
    model_name_or_path: str = field(default=None, metadata={"help": "The model to compress (its config sets the "
                                                                     "width and vocabulary)."})
    data: Optional[str] = field(default=None, metadata={"help": "Your data (folder or Hub id): lengths are sampled "
                                                                  "from its validation/train split."})
    task: str = field(default="sst2", metadata={"help": "Task name, for the text columns of --data."})
    seq_lengths: Optional[list[int]] = field(default=None, metadata={"help": "Token lengths to time, instead of "
                                                                             "--data."})
    num_samples: int = field(default=40, metadata={"help": "Lengths sampled from --data."})
    layers: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 6], metadata={"help": "Candidate depths."})
    ratios: list[float] = field(default_factory=lambda: [1.0, 0.75, 0.5, 0.25],
                                metadata={"help": "Share of heads and FFN width kept, per candidate."})
    threads: int = field(default=1, metadata={"help": "torch threads while timing."})
    latency_budget_ms: Optional[float] = field(default=None, metadata={"help": "Print the largest shape meeting "
                                                                               "this median latency."})
    output_dir: str = field(default="runs/plan", metadata={"help": "plan.json, plan.md and plan.png go here."})


def sample_lengths(args: PlanArguments, tokenizer) -> list[int]:
    from ..tasks.data import get_task, load_task_data

    if args.seq_lengths:
        return list(args.seq_lengths)
    if not args.data:
        raise FastFormersError("pass --data (to sample your sequence lengths) or --seq_lengths.")
    task = get_task(args.task)
    data = load_task_data(args.data, args.task)
    split = data["validation"] if "validation" in data else data["train"]
    split = split.shuffle(seed=0).select(range(min(args.num_samples, len(split))))
    if task.kind == "question_answering":  # what the model runs on: the strided windows of each context
        from ..tasks.question_answering import DEFAULT_DOC_STRIDE, DEFAULT_MAX_LENGTH, encode_windows

        windows = encode_windows(tokenizer, split["question"], split["context"], DEFAULT_MAX_LENGTH,
                                 DEFAULT_DOC_STRIDE)
        return [len(ids) for ids in windows["input_ids"]]
    if task.kind == "token_classification":  # sentences given as words
        return [len(ids) for ids in tokenizer(split["tokens"], is_split_into_words=True, truncation=True,
                                               max_length=512)["input_ids"]]
    texts = [list(split[f]) for f in task.text_fields]
    return [len(ids) for ids in tokenizer(*texts, truncation=True, max_length=512)["input_ids"]]


def main(argv=None) -> int:
    (args,) = HfArgumentParser(PlanArguments).parse_args_into_dataclasses(args=argv)
    if not args.model_name_or_path:
        raise FastFormersError("pass --model_name_or_path (the model you plan to compress).")
    import numpy as np  # heavy imports only once the flags are parsed and checked
    from transformers import AutoConfig, AutoTokenizer

    from ..measurements import machine_description
    from ..utils.io import claim_output_dir
    from ..pipeline.planning import as_dicts, candidate_shapes, largest_within, plot, table, time_shapes
    from ..utils.io import write_json

    config = AutoConfig.from_pretrained(args.model_name_or_path)
    lengths = sample_lengths(args, AutoTokenizer.from_pretrained(args.model_name_or_path) if not args.seq_lengths
                             else None)
    shapes = candidate_shapes(config, args.layers, args.ratios)
    rows, load = time_shapes(config, shapes, lengths, threads=args.threads)
    out = claim_output_dir(args.output_dir, "plan", [args.model_name_or_path])
    text = table(rows)
    choice = largest_within(rows, args.latency_budget_ms) if args.latency_budget_ms else None
    write_json(out / "plan.json", {"model": args.model_name_or_path, "seq_lengths": lengths,
                                   "median_seq_length": float(np.median(lengths)), "threads": args.threads,
                                   "rows": as_dicts(rows), "load": load, "machine": machine_description(),
                                   "latency_budget_ms": args.latency_budget_ms,
                                   "choice": as_dicts([choice])[0] if choice else None})
    (out / "plan.md").write_text(text + "\n")
    plot(rows, out / "plan.png")
    print(text)
    print(f"\n{len(lengths)} inputs, median {np.median(lengths):.0f} tokens, batch 1, {args.threads} thread(s); "
          f"other load {load['other_load_cores']:.2f} cores{' (disturbed)' if load['disturbed'] else ''}. "
          f"Report: {out}/plan.md, plot: {out}/plan.png")
    if args.latency_budget_ms:
        if choice is None:
            fastest = min(rows, key=lambda r: r.median_ms)
            raise FastFormersError(f"no candidate meets {args.latency_budget_ms} ms; the fastest is "
                                   f"{fastest.num_layers}L/{fastest.heads_per_layer}h/{fastest.ffn_width} at "
                                   f"{fastest.median_ms:.2f} ms (try fewer layers or smaller ratios).")
        print(f"Largest shape within {args.latency_budget_ms} ms: {choice.num_layers} layers, "
              f"{choice.heads_per_layer} heads, FFN {choice.ffn_width} ({choice.median_ms:.2f} ms, "
              f"{choice.speedup:.1f}x faster than the full model).")
    return 0
