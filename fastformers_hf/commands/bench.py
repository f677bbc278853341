"""``fastformers-hf bench``: measure serving settings and the FastFormers ablation on this machine.

    fastformers-hf bench throughput --model runs/sst2/student-int8 --data ../shared/data/sst2/dev.tsv \\
        --batch_sizes 1,8,32 --latency_bound_ms 20
    flock /tmp/ff-cpu.lock fastformers-hf bench ablation --out runs/bench_ablation

``throughput`` tries every way to split the machine's cores into pinned instances with every batch size on a
sample of your data and prints the best setting (under a latency bound if given). ``ablation`` writes
ablation.json/.md/.png: the paper's Table 3 chain with random weights of its shapes, and SST-2 and BoolQ
(``--tables boolq``) with real models.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Optional

from ..utils.argparsing import HfArgumentParser  # not transformers': that imports torch (slow --help)

from ..errors import FastFormersError

ACTIONS = ("throughput", "ablation")


@dataclass
class ThroughputArguments:
    model: str = field(default=None, metadata={"help": "Model directory (PyTorch or ONNX) with its tokenizer."})
    data: str = field(default=None, metadata={"help": "A .tsv/.csv/.jsonl file or a folder of GLUE files."})
    split: str = field(default="validation", metadata={"help": "Split of a folder (train or validation)."})
    task: str = field(default="sst2", metadata={"help": "Task name: which columns hold the text."})
    sample_size: int = field(default=256, metadata={"help": "Inputs measured per setting."})
    batch_sizes: str = field(default="1,8,32", metadata={"help": "Comma-separated batch sizes to try."})
    layouts: str = field(default="auto", metadata={"help": "instances x threads to try, e.g. '2x1,1x2'; auto = every "
                                                           "way to fill the physical cores."})
    latency_bound_ms: Optional[float] = field(default=None, metadata={"help": "Best throughput whose p90 batch "
                                                                             "latency stays within this bound."})
    repeats: int = field(default=3, metadata={"help": "Passes per setting (median kept)."})
    output: Optional[str] = field(default=None, metadata={"help": "Also write every measurement to this JSON file."})


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise FastFormersError(f"--{what} must be comma-separated integers, got {text!r}.") from None


def _layouts(text: str) -> Optional[list[tuple[int, int]]]:
    if text == "auto":
        return None
    try:
        return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item.strip()]
    except ValueError:
        raise FastFormersError(f"--layouts must look like '2x1,1x2' (instances x threads), got {text!r}.") from None


def sample_texts(args: ThroughputArguments) -> list:
    """The first ``args.sample_size`` inputs of ``args.data`` (texts or text pairs), in the task's columns."""
    from ..tasks.data import get_task, load_task_data

    data = load_task_data(args.data, args.task)
    split = args.split if args.split in data else next(iter(data))
    ds = data[split]
    fields = get_task(args.task).text_fields
    missing = [f for f in fields if f not in ds.column_names]
    if missing:
        raise FastFormersError(f"{args.data} has no column {missing} for task {args.task} (it has {ds.column_names}).")
    ds = ds.select(range(min(args.sample_size, len(ds))))
    columns = [ds[f] for f in fields]
    return list(columns[0]) if len(columns) == 1 else list(zip(*columns))


def throughput(argv) -> int:
    (args,) = HfArgumentParser(ThroughputArguments).parse_args_into_dataclasses(args=argv)
    from ..serving.layout_search import TuningConfig, tune  # heavy: only after the flags are parsed

    if not args.model or not args.data:
        raise FastFormersError("pass --model (a model directory) and --data (a file or folder of your inputs).")
    config = TuningConfig(layouts=_layouts(args.layouts), batch_sizes=_ints(args.batch_sizes, "batch_sizes"),
                          latency_bound_ms=args.latency_bound_ms, sample_size=args.sample_size, repeats=args.repeats)
    result = tune(args.model, sample_texts(args), config, progress=True)
    print(result.table())
    b = result.best
    print(f"\nbest: {b['instances']} instance(s) x {b['threads']} thread(s), batch {b['batch_size']}: "
          f"{b['queries_per_s']:.1f} queries/s, p90 batch latency {b['p90_batch_ms']:.2f} ms")
    if args.output:
        from ..utils.io import write_json
        from ..measurements import machine_description

        write_json(args.output, {"best": b, "rows": result.rows, "latency_bound_ms": result.latency_bound_ms,
                                 "machine": machine_description()})
    return 0


def ablation(argv) -> int:
    from ..benchmarks.ablation_config import AblationConfig

    (config,) = HfArgumentParser(AblationConfig).parse_args_into_dataclasses(args=argv)
    from ..benchmarks.ablation import run_ablation  # heavy: only after the flags are parsed

    report = run_ablation(config)
    from pathlib import Path

    print((Path(config.out) / "ablation.md").read_text(encoding="utf-8"))
    print(json.dumps(report["checks"], indent=1))
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv[0] not in ACTIONS:
        raise FastFormersError(f"unknown bench action {argv[0]!r}; use one of {', '.join(ACTIONS)}.")
    return {"throughput": throughput, "ablation": ablation}[argv[0]](argv[1:])
