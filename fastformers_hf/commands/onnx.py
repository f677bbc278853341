"""``fastformers-hf onnx``: export a model, build the ONNX Runtime candidates (fp32, fused, int8, fused int8,
int8-then-fused), check each against PyTorch, time them on your data and keep the fastest within the tolerance.

    fastformers-hf onnx --model_dir runs/sst2-pruned --output_dir runs/sst2-onnx --data ../shared/data/sst2
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..onnx.config import SessionConfig, VariantChoiceConfig
from ..utils.argparsing import HfArgumentParser  # not transformers': that imports torch (slow --help)


@dataclass
class OnnxArguments:
    model_dir: str = field(metadata={"help": "A save_pretrained model folder (with its tokenizer)."})
    output_dir: str = field(metadata={"help": "Where the chosen variant and onnx_variants.{json,md} go."})
    data: Optional[str] = field(default=None, metadata={"help": "Labelled data (folder or Hub id) whose validation "
                                                                "split checks accuracy and sets timing lengths."})
    task: str = field(default="sst2", metadata={"help": "Task name, for --data."})
    tolerance: float = field(default=0.5, metadata={"help": "Accuracy points a variant may lose against PyTorch."})
    threads: int = field(default=1, metadata={"help": "ONNX Runtime intra-op threads while timing."})
    quantization_preset: str = field(default="auto", metadata={"help": "auto, avx512_vnni, avx512, avx2 or arm64."})
    route: str = field(default="auto", metadata={"help": "optimum, onnxruntime (torch.onnx.export + onnxruntime's "
                                                         "own tools) or auto (optimum where installed)."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an --output_dir that holds our "
                                                                        "own output of another command (never "
                                                                        "someone else's files)."})


def main(argv=None) -> int:
    (args,) = HfArgumentParser(OnnxArguments).parse_args_into_dataclasses(args=argv)
    from ..onnx.variants import optimize_for_inference  # heavy (torch, optimum, datasets): after parsing
    from ..tasks.data import load_task_data
    from ..utils.io import check_output_dir

    check_output_dir(args.output_dir, "onnx", [args.model_dir, args.data], args.overwrite_output_dir)
    eval_dataset = load_task_data(args.data, args.task)["validation"] if args.data else None
    config = VariantChoiceConfig(tolerance=args.tolerance, quantization_preset=args.quantization_preset,
                                 route=args.route, session=SessionConfig(intra_op_num_threads=args.threads))
    out = optimize_for_inference(args.model_dir, args.output_dir, eval_dataset=eval_dataset, config=config,
                                 overwrite=args.overwrite_output_dir)
    print((out / "onnx_variants.md").read_text())
    return 0
