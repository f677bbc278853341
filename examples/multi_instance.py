"""Serve a model with pinned single-thread instances, after measuring which setting is fastest on your data.

    python examples/multi_instance.py --model runs/bench_ablation/sst2/student-int8 --data ../shared/data/sst2/dev.tsv
"""
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from fastformers_hf import MultiInstanceClassifier, TuningConfig, load_task_data, tune


@dataclass
class Args:
    model: str = field(metadata={"help": "Model directory (PyTorch or ONNX) with its tokenizer."})
    data: str = field(metadata={"help": "A GLUE-style .tsv with a 'sentence' column."})
    latency_bound_ms: float = field(default=None, metadata={"help": "Optional p90 batch latency bound."})


def main():
    (args,) = HfArgumentParser(Args).parse_args_into_dataclasses()
    texts = list(load_task_data(args.data)["train"]["sentence"])
    result = tune(args.model, texts, TuningConfig(batch_sizes=[1, 8], latency_bound_ms=args.latency_bound_ms))
    print(result.table())
    with MultiInstanceClassifier(args.model, result.runtime_config()) as server:
        for text, pred in zip(texts[:5], server.predict(texts[:5])):
            print(f"{pred['label']:>10} {pred['score']:.3f}  {text}")
        server.predict(texts)
        print(f"{len(texts)} sentences at {server.stats['queries_per_s']:.0f} queries/s")


if __name__ == "__main__":
    main()
