"""A two-tier cascade (TangoBERT): the fast model answers what it is sure of, the accurate one the rest.

    python examples/cascade.py --tier1 runs/sst2-onnx/best --tier2 ../shared/models/sst2-minilm-teacher \
        --data ../shared/data/sst2 --task sst2 --target 0.99 --output_dir runs/sst2-cascade

The dev set is split in two: ``calibrate`` runs both tiers once on the first part and picks the fastest confidence
threshold that keeps ``--target`` (e.g. 99%) of tier 2's accuracy there; the saved cascade is then reloaded and
measured on the second part, which the threshold never saw (so the reported accuracy is not tuned to its own data).
Tiers are any model folders, PyTorch or ONNX (e.g. ``best/`` from examples/export_onnx.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from transformers import HfArgumentParser

from fastformers_hf import CascadeClassifier, load_task_data
from fastformers_hf.tasks.data import get_task


@dataclass
class CascadeArguments:
    tier1: str = field(metadata={"help": "Fast model folder (e.g. a distilled, pruned, int8 ONNX student)."})
    tier2: str = field(metadata={"help": "Accurate model folder (e.g. the teacher); same labels as tier 1."})
    data: str = field(metadata={"help": "Labelled data (folder, dev file or Hub id); its dev split calibrates and "
                                "checks."})
    task: str = field(default="sst2", metadata={"help": "Which text columns and labels: sst2, rte, boolq, mrpc, cola."})
    output_dir: str = field(default="runs/cascade", metadata={"help": "The calibrated cascade (with both tiers) goes here."})
    target: float = field(default=0.99, metadata={"help": "Share of tier 2's accuracy to keep, e.g. 0.99."})
    fit_temperature: bool = field(default=False, metadata={"help": "Fit tier 1's softmax temperature while calibrating."})
    check_share: float = field(default=0.5, metadata={"help": "Share of the dev set kept apart to check the cascade."})
    tier1_batch_size: int = field(default=8, metadata={"help": "Inputs per tier-1 forward pass."})
    tier2_batch_size: int = field(default=8, metadata={"help": "Escalated inputs per tier-2 forward pass."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N dev examples."})
    seed: int = field(default=0, metadata={"help": "Seed of the calibration / check split."})


def main(argv=None) -> dict:
    (args,) = HfArgumentParser(CascadeArguments).parse_args_into_dataclasses(args=argv)
    fields = get_task(args.task).text_fields
    data = load_task_data(args.data, args.task)
    dev = data["validation"] if "validation" in data else data["train"]  # a single file (dev.tsv) is the dev set
    dev = dev.select(range(min(len(dev), args.max_eval_samples or len(dev))))
    split = dev.train_test_split(test_size=args.check_share, seed=args.seed)
    calibration, check = split["train"], split["test"]

    cascade = CascadeClassifier(args.tier1, args.tier2, tier1_batch_size=args.tier1_batch_size,
                                tier2_batch_size=args.tier2_batch_size)
    curve = cascade.calibrate(calibration, target=args.target, fit_temperature=args.fit_temperature)
    print(curve.report_md())  # the chosen threshold and the speed-up at 99% / 98% against random routing
    cascade.save_pretrained(args.output_dir)  # cascade_config.json, curve, plot, tier1/ and tier2/

    reloaded = CascadeClassifier.from_pretrained(args.output_dir)
    inputs = list(check[fields[0]]) if len(fields) == 1 else list(zip(check[fields[0]], check[fields[1]]))
    results = reloaded.predict(inputs)  # [{"label", "label_id", "score", "confidence", "tier"}, ...]
    labels = np.asarray(check["label"], dtype=np.int64)
    accuracy = float(np.mean(np.asarray([r["label_id"] for r in results]) == labels))
    share_tier2 = float(np.mean([r["tier"] == 2 for r in results]))
    tier2_alone = float(np.mean(np.asarray([r["label_id"] for r in reloaded.tier2.predict(inputs)]) == labels))
    print(f"held-out check ({len(inputs)} examples): cascade accuracy {accuracy:.4f} vs tier 2 alone "
          f"{tier2_alone:.4f}, {100 * share_tier2:.1f}% sent to tier 2, threshold {reloaded.threshold:.4f}")
    return {"threshold": reloaded.threshold, "chosen": curve.chosen, "accuracy": accuracy,
            "tier2_accuracy": tier2_alone, "share_tier2": share_tier2, "num_checked": len(inputs)}


if __name__ == "__main__":
    main()
