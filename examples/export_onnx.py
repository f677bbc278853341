"""From a PyTorch model folder to a fast ONNX Runtime model: export, fuse, quantize, and a measured choice.

    python examples/export_onnx.py --model_dir runs/sst2-pruned --data ../shared/data/sst2 --task sst2 \
        --output_dir runs/sst2-onnx --tolerance 1.0

1. By hand: ``export_onnx`` (fp32 graph) -> ``optimize_onnx`` (Attention / LayerNorm / GELU fusion) ->
   ``quantize_onnx`` (dynamic int8). Each step reads one folder and writes a new one, never over its input.
2. Measured: ``optimize_for_inference`` builds the candidate variants, checks each against PyTorch on the dev set,
   times them at batch 1 and keeps the fastest within ``--tolerance`` accuracy points (which one wins depends on the
   CPU and thread count, so it is measured, not assumed). ``best/onnx_variants.md`` has every candidate's numbers.
3. The chosen folder loads with Optimum's ``ORTModelForSequenceClassification`` like any transformers model (or,
   where Optimum is not installed, e.g. with transformers 5.x, as a plain onnxruntime session).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from transformers import AutoConfig, AutoTokenizer, HfArgumentParser

from fastformers_hf import (VariantChoiceConfig, export_onnx, load_task_data, optimize_for_inference, optimize_onnx,
                            quantize_onnx)
from fastformers_hf.tasks.data import get_task
from fastformers_hf.utils.io import read_json
from fastformers_hf.onnx.config import VARIANTS, default_quantization_preset


@dataclass
class ExportArguments:
    model_dir: str = field(metadata={"help": "A save_pretrained folder with its tokenizer (fine-tuned, distilled or pruned)."})
    output_dir: str = field(default="runs/onnx", metadata={"help": "fp32/, fused/, fused-int8/ and best/ go here."})
    data: Optional[str] = field(default=None, metadata={"help": "Labelled data (folder or Hub id) whose dev split checks "
                                "the variants; without it, agreement with PyTorch on random tokens is checked."})
    task: str = field(default="sst2", metadata={"help": "Which text columns and labels: sst2, rte, boolq, mrpc, cola."})
    tolerance: float = field(default=1.0, metadata={"help": "Accuracy points a variant may lose against PyTorch fp32."})
    candidates: str = field(default=",".join(VARIANTS), metadata={"help": f"Variants to compare: {', '.join(VARIANTS)}."})
    quantization_preset: str = field(default="auto", metadata={"help": "auto (from the CPU flags), avx512_vnni, "
                                     "avx512, avx2 or arm64."})
    max_eval_samples: Optional[int] = field(default=500, metadata={"help": "Dev examples checked per variant."})
    sample_size: int = field(default=200, metadata={"help": "Inputs timed per variant at batch 1."})
    latency_repeats: int = field(default=5, metadata={"help": "Timed passes, interleaved across variants."})
    max_length: int = field(default=128, metadata={"help": "Tokenizer truncation length of the checked inputs."})


def main(argv=None) -> dict:
    (args,) = HfArgumentParser(ExportArguments).parse_args_into_dataclasses(args=argv)
    out = Path(args.output_dir)
    preset = default_quantization_preset() if args.quantization_preset == "auto" else args.quantization_preset

    # 1. The steps by hand.
    fp32 = export_onnx(args.model_dir, out / "fp32")
    fused = optimize_onnx(fp32, out / "fused", level="O2")
    fused_int8 = quantize_onnx(fused, out / "fused-int8", preset=preset)  # int8 keeps the fused Attention
    print(f"wrote {fp32}, {fused} and {fused_int8}")

    # 2. Let measurement choose among the variants.
    text_fields = get_task(args.task).text_fields
    dev = load_task_data(args.data, args.task)["validation"] if args.data else None
    config = VariantChoiceConfig(candidates=args.candidates.split(","), tolerance=args.tolerance,
                                 quantization_preset=preset, max_eval_samples=args.max_eval_samples,
                                 sample_size=args.sample_size, latency_repeats=args.latency_repeats,
                                 max_length=args.max_length, text_fields=text_fields)
    best = optimize_for_inference(args.model_dir, out / "best", eval_dataset=dev, config=config)
    print((best / "onnx_variants.md").read_text(encoding="utf-8"))

    # 3. Load the chosen variant with Optimum (a plain onnxruntime session without it) and predict.
    logits_of = _loader(best)
    tokenizer = AutoTokenizer.from_pretrained(best)
    if dev is None:
        examples = {f: ["a gripping , clever film", "a dull and tedious mess"] for f in text_fields}
    else:
        examples = dev.select(range(min(len(dev), args.max_eval_samples or len(dev)))).to_dict()
    predictions = []
    for i in range(0, len(examples[text_fields[0]]), 32):
        batch = tokenizer(*[examples[f][i:i + 32] for f in text_fields], padding=True, truncation=True,
                          max_length=args.max_length, return_tensors="np")
        predictions += np.argmax(logits_of(batch), axis=-1).tolist()
    result = {"chosen": read_json(best / "onnx_variants.json")["chosen"], "predictions": predictions}
    if dev is not None:
        result["accuracy"] = float(np.mean(np.asarray(predictions) == np.asarray(examples["label"])))
        print(f"{result['chosen']} from {best}: dev accuracy {result['accuracy']:.4f} on {len(predictions)} examples")
    else:
        id2label = AutoConfig.from_pretrained(best).id2label
        print({t: id2label[p] for t, p in zip(examples[text_fields[0]], predictions)})
    return result


def _loader(folder):
    """``logits_of(numpy batch)`` through Optimum's ORTModelForSequenceClassification, or a bare session."""
    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification
    except ImportError:
        from fastformers_hf.onnx.graph import inference_session

        session = inference_session(folder)
        names = [i.name for i in session.get_inputs()]
        return lambda batch: session.run(["logits"], {n: batch[n] for n in names})[0]
    model = ORTModelForSequenceClassification.from_pretrained(folder)
    return lambda batch: model(**batch).logits


if __name__ == "__main__":
    main()
