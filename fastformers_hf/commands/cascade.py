"""``fastformers-hf cascade``: a fast tier 1, a large tier 2 for the inputs tier 1 is unsure of (TangoBERT).

    fastformers-hf cascade calibrate --tier1 runs/student-int8 --tier2 runs/teacher-int8 \\
        --data ../shared/data/sst2/dev.tsv --target 0.99 --output_dir runs/sst2-cascade
    fastformers-hf cascade predict --cascade runs/sst2-cascade --input sentences.txt
    fastformers-hf cascade bench --cascade runs/sst2-cascade --data ../shared/data/sst2/dev.tsv
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..utils.argparsing import HfArgumentParser  # not transformers': that imports torch (slow --help)

from ..cascade.config import CalibrationConfig, CascadeConfig
from ..errors import FastFormersError

ACTIONS = ("calibrate", "predict", "bench")


@dataclass
class DataArguments:
    data: str = field(default=None, metadata={"help": "A .tsv/.csv/.jsonl file, a folder of GLUE files, or a Hub id."})
    split: str = field(default="validation", metadata={"help": "Split of a folder / Hub dataset (train or validation)."})
    task: str = field(default="sst2", metadata={"help": "Task name: which columns hold the text and the label."})
    max_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N examples."})


@dataclass
class CalibrateArguments(DataArguments):
    tier1: str = field(default=None, metadata={"help": "Tier-1 (fast) model directory, PyTorch or ONNX."})
    tier2: str = field(default=None, metadata={"help": "Tier-2 (accurate) model directory, PyTorch or ONNX."})
    output_dir: str = field(default=None, metadata={"help": "Where the calibrated cascade is saved."})
    copy_tiers: bool = field(default=True, metadata={"help": "Copy both tiers into output_dir (self-contained, "
                                                             "pushable); false stores their absolute paths."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an --output_dir that holds our "
                                                                        "own output of another command (never "
                                                                        "someone else's files)."})


@dataclass
class PredictArguments:
    cascade: str = field(default=None, metadata={"help": "A saved cascade folder (or Hub repo id)."})
    input: str = field(default="-", metadata={"help": "Text file with one input per line ('-' = stdin), or a "
                                                      ".tsv/.csv/.jsonl with the task's text columns."})
    task: str = field(default="sst2", metadata={"help": "Task name (text columns of a .tsv/.csv/.jsonl input)."})
    output: Optional[str] = field(default=None, metadata={"help": "JSON-lines output file (default: stdout)."})
    threshold: Optional[float] = field(default=None, metadata={"help": "Override the calibrated threshold."})


@dataclass
class BenchArguments(DataArguments):
    cascade: str = field(default=None, metadata={"help": "A saved cascade folder (or Hub repo id)."})
    repeats: int = field(default=3, metadata={"help": "Timed passes over the data per system (median reported)."})
    threshold: Optional[float] = field(default=None, metadata={"help": "Override the calibrated threshold."})
    tier1_batch_size: Optional[int] = field(default=None, metadata={"help": "Override tier 1's batch size."})
    tier2_batch_size: Optional[int] = field(default=None, metadata={"help": "Override tier 2's batch size."})
    output: Optional[str] = field(default=None, metadata={"help": "Also write the numbers to this JSON file."})


def load_examples(args: DataArguments, need_labels: bool = True):
    """``(inputs, labels or None)``: texts (or text pairs) and label ids/names of the task's columns."""
    from ..tasks.data import get_task, load_local_split, load_task_data

    if not args.data:
        raise FastFormersError("pass --data (a .tsv/.csv/.jsonl file, a folder of GLUE files, or a Hub id).")
    task = get_task(args.task)
    path = Path(args.data)
    if path.is_file():
        ds = load_local_split(path)
    else:
        dsd = load_task_data(args.data, args.task)
        if args.split not in dsd:
            raise FastFormersError(f"{args.data} has no {args.split!r} split (it has {list(dsd)}).")
        ds = dsd[args.split]
    if args.max_samples is not None:
        ds = ds.select(range(min(args.max_samples, len(ds))))
    return _inputs_of(ds, task), (list(ds[task.label_field]) if task.label_field in ds.column_names else None)


def _inputs_of(ds, task):
    from ..tasks.data import check_columns

    check_columns(ds, task.text_fields, "data")
    return task.inputs(ds)


def calibrate(argv) -> int:
    args, cascade_config, calibration = HfArgumentParser(
        (CalibrateArguments, CascadeConfig, CalibrationConfig)).parse_args_into_dataclasses(args=argv)
    if not (args.tier1 and args.tier2 and args.output_dir):
        raise FastFormersError("pass --tier1, --tier2 and --output_dir (and --data for the validation set).")
    from ..cascade.model import CascadeClassifier  # heavy: only after the flags are checked

    from ..utils.io import check_output_dir

    check_output_dir(args.output_dir, "cascade", [args.tier1, args.tier2, args.data], args.overwrite_output_dir)
    inputs, labels = load_examples(args)
    if labels is None:
        raise FastFormersError(f"{args.data} has no label column; calibration needs labelled examples.")
    cascade = CascadeClassifier(args.tier1, args.tier2, config=cascade_config)
    curve = cascade.calibrate(inputs, labels, calibration)
    cascade.save_pretrained(args.output_dir, copy_tiers=args.copy_tiers, overwrite=args.overwrite_output_dir)
    print(curve.report_md())
    print(f"saved to {args.output_dir}")
    return 0


def predict(argv) -> int:
    (args,) = HfArgumentParser(PredictArguments).parse_args_into_dataclasses(args=argv)
    if not args.cascade:
        raise FastFormersError("pass --cascade (a folder saved by `fastformers-hf cascade calibrate`).")
    from ..cascade.model import CascadeClassifier  # heavy: only after the flags are checked
    from ..tasks.data import get_task, load_local_split

    if args.input == "-":
        inputs = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    elif Path(args.input).suffix in (".tsv", ".csv", ".jsonl", ".json"):
        inputs = _inputs_of(load_local_split(args.input), get_task(args.task))
    elif Path(args.input).is_file():
        inputs = [line.rstrip("\n") for line in Path(args.input).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        raise FastFormersError(f"input file not found: {args.input}")
    overrides = {} if args.threshold is None else {"threshold": args.threshold}
    results = CascadeClassifier.from_pretrained(args.cascade, **overrides).predict(inputs)
    lines = "".join(json.dumps(r) + "\n" for r in results)
    if args.output:
        Path(args.output).write_text(lines, encoding="utf-8")
    else:
        sys.stdout.write(lines)
    return 0


def bench(argv) -> int:
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses(args=argv)
    if not args.cascade:
        raise FastFormersError("pass --cascade (a folder saved by `fastformers-hf cascade calibrate`).")
    from ..cascade.model import CascadeClassifier, measure_throughput  # heavy: only after the flags are checked
    from ..utils.io import write_json

    overrides = {k: getattr(args, k) for k in ("threshold", "tier1_batch_size", "tier2_batch_size")
                 if getattr(args, k) is not None}
    cascade = CascadeClassifier.from_pretrained(args.cascade, **overrides)
    inputs, labels = load_examples(args)
    if labels is not None and isinstance(labels[0], str):
        label2id = {v: k for k, v in cascade.id2label.items()}
        labels = [label2id[y] for y in labels]
    metric = cascade.curve.metric if cascade.curve else "accuracy"
    result = measure_throughput(cascade, inputs, labels, repeats=args.repeats, metric=metric)
    s = result["settings"]
    rows = [f"| system | batch size | {metric} | sent to tier 2 | inputs/s | ms/input | speed-up vs tier 2 |",
            "|---|---|---|---|---|---|---|"]
    batch = {"tier1": s["tier1_batch_size"], "tier2": s["tier2_batch_size"],
             "cascade": f"{s['tier1_batch_size']} / {s['tier2_batch_size']}"}
    for name in ("tier1", "tier2", "cascade"):
        r = result[name]
        value = f"{r[metric]:.4f}" if metric in r else "-"
        share = f"{100 * r['share_tier2']:.1f}%" if "share_tier2" in r else ("100%" if name == "tier2" else "0%")
        rows.append(f"| {name} | {batch[name]} | {value} | {share} | {r['inputs_per_s']:.1f} | {r['ms_per_input']:.3f} | "
                    f"{r['speedup_vs_tier2']:.2f}x |")
    print("\n".join(rows))
    print(f"\n{s['inputs']} inputs, threshold {s['threshold']:.4f}, median of {s['repeats']} passes, other processes "
          f"using {s['other_load_cores']} cores{' (disturbed)' if s['disturbed'] else ''}.")
    if args.output:
        write_json(args.output, result)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: fastformers-hf cascade {{{','.join(ACTIONS)}}} [--help] [options]\n\n{__doc__}")
        return 0
    if argv[0] not in ACTIONS:
        raise FastFormersError(f"unknown cascade action {argv[0]!r}; use one of {', '.join(ACTIONS)}.")
    return {"calibrate": calibrate, "predict": predict, "bench": bench}[argv[0]](argv[1:])
