"""The FastFormers ablation (paper Table 3 and Figure 3), measured side by side on this machine.

Three chains, each step changing one thing, all at batch 1:

1. **Shapes of the paper, speed only** (random weights: the accuracy of these models means nothing and is not
   reported). BERT-base 12L/768 PyTorch fp32 padded to 512 -> dynamic length -> a 4L/312 student (FFN 1200,
   12 heads) -> int8 + graph optimisation on ONNX Runtime -> 2 pinned 1-thread instances -> half the heads and
   half the FFN pruned. Inputs: synthetic (question, passage) pairs with BoolQ-like token lengths.
2. **Real data, with accuracy** (:mod:`.ablation_real`): SST-2 dev and BoolQ dev through a fine-tuned MiniLM
   teacher padded to 128 (SST-2) or 512 (BoolQ) -> dynamic length -> a distilled student -> int8 ONNX Runtime
   (:func:`~fastformers_hf.optimize_for_inference`) -> multi-instance -> pruned and re-distilled.

Measurement on a shared, noisy machine: every step of a table is timed in each of ``rounds`` rounds (the order
rotated each round, so a burst of load from elsewhere hits every step alike); the median throughput is kept; the
CPU used by other processes during each pass is recorded and passes above
:data:`~fastformers_hf.utils.timing.DISTURBED_ABOVE_CORES` cores are flagged as disturbed.
Single-instance steps use all physical cores as intra-op threads (out of the box); the multi-instance steps split
the same cores into 1-thread instances. Models are cached under ``out``: a rerun trains and exports nothing again.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .ablation_config import BOOLQ_DEV_QUERIES, INT8_CANDIDATES, PAPER, AblationConfig  # noqa: F401
from .ablation_report import checks, markdown_table, multi_instance_ratio, plot, render_markdown  # noqa: F401
from .ablation_real import REAL_TABLES, real_steps
from .ablation_steps import (Step, boolq_like_pairs, chain_rows, encoder, in_process_step, int8_builds,  # noqa: F401
                             measure, rapl_available, save_model_dir, server_step, stratified, variant_dir)
from ..utils.io import claim_output_dir, write_json

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------------
# Table 1: the paper's shapes, random weights


def shapes_steps(config: AblationConfig, tokenizer, pool, threads: int, servers: list) -> tuple[dict, list[Step]]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, BertConfig

    from ..inference.classifier import InferenceConfig, TextClassifier
    from ..onnx.config import VariantChoiceConfig
    from ..pruning import prune
    from ..serving.multi_instance import MultiInstanceClassifier, RuntimeConfig

    out = Path(config.out) / "shapes"
    vocab = len(tokenizer)
    torch.manual_seed(config.seed)
    base = AutoModelForSequenceClassification.from_config(BertConfig(
        vocab_size=vocab, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=512, num_labels=2)).eval()
    student_dir = out / "student-4L-312"
    if not (student_dir / "config.json").exists():
        save_model_dir(AutoModelForSequenceClassification.from_config(BertConfig(
            vocab_size=vocab, hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200,
            max_position_embeddings=512, num_labels=2)), tokenizer, student_dir)
    student = AutoModelForSequenceClassification.from_pretrained(student_dir).eval()
    pruned_dir = out / "student-pruned-h6-f600"
    if not (pruned_dir / "config.json").exists():  # random weights: which units go does not matter; magnitude
        save_model_dir(prune(AutoModelForSequenceClassification.from_pretrained(student_dir), heads_per_layer=6,
                          ffn_width=600, method="magnitude"), tokenizer, pruned_dir)

    # Random weights: accuracy means nothing, so the tolerance is off; variants are timed on BoolQ-like pairs.
    timing_pairs = Dataset.from_dict({"question": [q for q, _ in pool[:200]], "passage": [p for _, p in pool[:200]]})
    variant_config = VariantChoiceConfig(candidates=INT8_CANDIDATES, tolerance=100.0, max_length=512,
                                         sample_size=100, latency_repeats=3)
    builds = int8_builds(student_dir, pruned_dir, out, variant_config, threads, latency_dataset=timing_pairs)
    int8_dir, chosen = builds["int8"], builds["int8_variant"]

    torch.set_num_threads(threads)
    pt = lambda m: TextClassifier.from_pretrained(m, tokenizer, InferenceConfig(threads=threads)).runner  # noqa: E731
    ort = TextClassifier.from_pretrained(int8_dir, config=InferenceConfig(threads=threads, max_length=512)).runner
    padded, dynamic = encoder(tokenizer, 512, True), encoder(tokenizer, 512, False)
    runtime = RuntimeConfig(num_instances=2, threads_per_instance=1, max_length=512)
    multi = MultiInstanceClassifier(builds["int8_1thread"], runtime)
    single = MultiInstanceClassifier(builds["int8_1thread"], dataclasses.replace(runtime, num_instances=1))
    multi_pruned = MultiInstanceClassifier(builds["pruned_int8"], runtime)
    servers += [multi, single, multi_pruned]
    one = builds["int8_1thread_variant"]
    variants = {"int8_variant": chosen, "int8_1thread_variant": one}
    return variants, [
        in_process_step("BERT-base 12L/768, PyTorch fp32, padded to 512", "baseline", pt(base), padded, threads,
                        fixed_queries=config.baseline_queries),
        in_process_step("+ dynamic sequence length", "pad to the input's own length", pt(base), dynamic, threads),
        in_process_step("+ 4L/312 student (FFN 1200, 12 heads)", "distilled student shape", pt(student), dynamic,
                        threads),
        in_process_step(f"+ int8 + graph optimisation (ONNX Runtime, {chosen})", "ONNX Runtime int8", ort, dynamic,
                        threads),
        server_step(f"+ multi-instance (2 pinned 1-thread instances, {one})", "2 x 1 thread instead of 1 x 2", multi),
        server_step("+ pruned: 6 of 12 heads, FFN 600 of 1200", "structured pruning", multi_pruned),
        server_step(f"(reference: one 1-thread instance of the int8 student, {one})", "for the multi-instance ratio",
                    single, in_chain=False),
    ]


def run_ablation(config: AblationConfig) -> dict[str, Any]:
    from ..measurements import machine_description
    from ..serving.cores import physical_cores

    out = claim_output_dir(config.out, "bench_ablation")  # never a user's folder; reruns reuse the cached stages
    cores = len(physical_cores())
    threads = config.threads or cores
    report: dict[str, Any] = {"settings": dataclasses.asdict(config), "machine": machine_description(),
                              "physical_cores_used": cores, "paper": PAPER, "tables": {},
                              "energy_source": ("RAPL counters were readable but this estimate does not use them"
                                                if rapl_available() else
                                                f"no RAPL counters under /sys/class/powercap: estimate = "
                                                f"{config.watts_per_core} W x CPU-seconds used per query")}
    servers: list = []
    try:
        if "shapes" in config.table_list:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(config.teacher)  # BERT uncased WordPiece (30,522 tokens)
            pool = boolq_like_pairs(tokenizer, config.pool_size, config.median_tokens, config.min_tokens,
                                    config.max_tokens, config.seed)
            lengths = [len(ids) for ids in tokenizer([q for q, _ in pool], [p for _, p in pool])["input_ids"]]
            variants, steps = shapes_steps(config, tokenizer, pool, threads, servers)
            timing = measure(steps, pool, lengths, config, "shapes")
            rows = chain_rows(steps, timing, config, cores)
            report["tables"]["shapes"] = {
                "rows": rows, "timing": timing, "multi_instance_vs_one_instance": multi_instance_ratio(rows),
                "inputs": {"pairs": len(pool), "median_tokens": float(np.median(lengths)),
                           "min_tokens": int(min(lengths)), "max_tokens": int(max(lengths)), **variants}}
            for s in servers:
                s.close()
            servers.clear()
        for name in (t for t in config.table_list if t in REAL_TABLES):
            steps, dev_inputs, dev_words, sources = real_steps(config, name, threads, servers)
            timing = measure(steps, dev_inputs, dev_words, config, name)
            rows = chain_rows(steps, timing, config, cores, reference_accuracy=steps[0].accuracy)
            for r in rows:
                r["dev_s"] = len(dev_inputs) / r["queries_per_s"]
            fastest = max((r for r in rows if r["in_chain"]), key=lambda r: r["queries_per_s"])
            within = [r for r in rows if -r["accuracy_delta_points"] <= 1.2]
            fastest_within = max(within, key=lambda r: r["queries_per_s"]) if within else None
            report["tables"][name] = {"rows": rows, "timing": timing, "sources": sources,
                                      "multi_instance_vs_one_instance": multi_instance_ratio(rows),
                                      "fastest_row": fastest["step"],
                                      "fastest_loss_points": -fastest["accuracy_delta_points"],
                                      "fastest_speedup": fastest["cumulative_speedup"],
                                      "fastest_within_1_2_points": fastest_within and {
                                          "step": fastest_within["step"],
                                          "loss_points": -fastest_within["accuracy_delta_points"],
                                          "speedup": fastest_within["cumulative_speedup"]}}
            for s in servers:
                s.close()
            servers.clear()
    finally:
        for s in servers:
            s.close()
    report["checks"] = checks(report)
    write_json(out / "ablation.json", report)
    (out / "ablation.md").write_text(render_markdown(report), encoding="utf-8")
    plot(report, out / "ablation.png")
    return report
