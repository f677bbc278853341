"""The FastFormers ablation (paper Table 3 and Figure 3), measured side by side on this machine.

Two chains, each step changing one thing, all at batch 1:

1. **Shapes of the paper, speed only** (random weights: the accuracy of these models means nothing and is not
   reported). BERT-base 12L/768 PyTorch fp32 padded to 512 -> dynamic length -> a 4L/312 student (FFN 1200,
   12 heads) -> int8 + graph optimisation on ONNX Runtime -> 2 pinned 1-thread instances -> half the heads and
   half the FFN pruned. Inputs: synthetic (question, passage) pairs with BoolQ-like token lengths.
2. **Real data, with accuracy**: SST-2 dev through the fine-tuned MiniLM teacher padded to 128 -> dynamic length
   -> a distilled student -> int8 ONNX Runtime (:func:`~fastformers_hf.optimize_for_inference`) -> multi-instance
   -> pruned and re-distilled.

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
import time
from pathlib import Path
from typing import Any

import numpy as np

from .ablation_config import BOOLQ_DEV_QUERIES, INT8_CANDIDATES, PAPER, AblationConfig  # noqa: F401
from .ablation_report import checks, markdown_table, multi_instance_ratio, plot, render_markdown  # noqa: F401
from .ablation_steps import (Step, boolq_like_pairs, chain_rows, encoder, in_process_step, measure,  # noqa: F401
                             rapl_available, server_step, stratified)
from ..compat import warmup
from ..hub_code import save_model_folder
from ..utils.io import atomic_output_dir, claim_output_dir, read_json, write_json
from ..shape_record import shape_of

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------------
# Table 1: the paper's shapes, random weights


def _save_model(model, tokenizer, path: Path) -> Path:
    with atomic_output_dir(path) as tmp:
        save_model_folder(model, tmp, tokenizer)
    return path


def _variant_dir(source: Path, target: Path, config, **kwargs) -> Path:
    """``optimize_for_inference(source, target)`` unless ``target`` already holds its result for the same settings
    (candidates, choice rule, thread count: the fastest int8 graph depends on the threads it runs with)."""
    from ..onnx.variants import chosen_with, optimize_for_inference

    if not chosen_with(target, config):
        optimize_for_inference(source, target, config=config, **kwargs)
    return target


def int8_builds(student: Path, pruned: Path, out: Path, config, threads: int, **kwargs) -> dict[str, Any]:
    """int8 graphs of the student for in-process steps (``threads`` intra-op threads) and of the student and its
    pruned version for the 1-thread instances of the multi-instance steps, each variant chosen at the threads it
    runs with. Returns the folders and the variant names."""
    from ..onnx.config import SessionConfig

    def build(source, target, threads, candidates=None):
        c = dataclasses.replace(config, candidates=candidates or config.candidates,
                                session=SessionConfig(intra_op_num_threads=threads))
        path = _variant_dir(source, target, c, **kwargs)
        return path, read_json(path / "onnx_variants.json")["chosen"]

    single, single_variant = build(student, out / "student-int8", threads)
    one, one_variant = (single, single_variant) if threads == 1 else build(student, out / "student-int8-1thread", 1)
    pruned_one, _ = build(pruned, out / "student-pruned-int8", 1, [one_variant])
    return {"int8": single, "int8_variant": single_variant, "int8_1thread": one, "int8_1thread_variant": one_variant,
            "pruned_int8": pruned_one}


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
        _save_model(AutoModelForSequenceClassification.from_config(BertConfig(
            vocab_size=vocab, hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200,
            max_position_embeddings=512, num_labels=2)), tokenizer, student_dir)
    student = AutoModelForSequenceClassification.from_pretrained(student_dir).eval()
    pruned_dir = out / "student-pruned-h6-f600"
    if not (pruned_dir / "config.json").exists():  # random weights: which units go does not matter; magnitude
        _save_model(prune(AutoModelForSequenceClassification.from_pretrained(student_dir), heads_per_layer=6,
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


# ----------------------------------------------------------------------------------------------------------------
# Table 2: SST-2 with the real chain


def _train_args(out: Path, steps: int, **kw):
    from ..distillation.config import DistillationConfig

    return DistillationConfig(output_dir=str(out), overwrite_output_dir=True, max_steps=steps,
                              per_device_train_batch_size=32, learning_rate=1e-4, weight_decay=0.01, **warmup(0.06),
                              logging_steps=100, save_strategy="no", report_to=[], dataloader_pin_memory=False, seed=0,
                              **kw)


def _teacher_logits(teacher, dataset, tokenizer, reuse: list[Path], cache: Path):
    """The dataset with a ``teacher_logits`` column: from a reusable cache if its first rows match this teacher on
    this data (so a cache of another subset or teacher is never used), else computed into ``cache``."""
    from ..distillation.trainer import cache_teacher_logits

    for path in reuse:
        if path.exists() and len(np.load(path, mmap_mode="r")) == len(dataset):
            probe = cache_teacher_logits(teacher, dataset.select(range(16)), tokenizer, batch_size=16, desc="check cache")
            if np.allclose(np.asarray(probe["teacher_logits"]), np.load(path)[:16], atol=1e-3):
                logger.info("reusing teacher logits from %s", path)
                return cache_teacher_logits(teacher, dataset, tokenizer, cache_file=path)
    return cache_teacher_logits(teacher, dataset, tokenizer, batch_size=256, cache_file=cache)


def _distilled_student(config: AblationConfig, out: Path, teacher, tokenizer) -> Path:
    reuse = Path(config.distilled_student)
    if (reuse / "config.json").exists() and (reuse / "stage.json").exists():  # stage.json: bench_distillation finished it
        return reuse
    path = out / "distilled_student"
    if (path / "stage.json").exists():
        return path
    from ..tasks.data import load_task_data, tokenize
    from ..distillation.trainer import DistillationTrainer
    from ..distillation.student import make_student

    logger.info("no distilled student at %s: distilling one into %s", reuse, path)
    n_train = config.distil_steps * 32  # bench_distillation's recipe: one pass over a seed-0 subset
    train = tokenize(load_task_data(config.sst2_dir, max_train_samples=n_train, seed=0)["train"], tokenizer,
                     max_length=64)
    train = _teacher_logits(teacher, train, tokenizer, [Path(config.distillation_logits)], out / "teacher_logits.npy")
    start = time.perf_counter()
    trainer = DistillationTrainer(model=make_student(teacher, num_layers=config.student_layers),
                                  args=_train_args(out / "work" / "distil", config.distil_steps),
                                  train_dataset=train, processing_class=tokenizer)
    trainer.train()
    with atomic_output_dir(path) as tmp:
        save_model_folder(trainer.model, tmp, tokenizer)
        write_json(tmp / "stage.json", {"wall_s": time.perf_counter() - start, "steps": config.distil_steps})
    return path


def _pruned_student(config: AblationConfig, out: Path, student_dir: Path, teacher, tokenizer) -> Path:
    """The distilled student with ``prune_heads``/``prune_ffn`` kept (first-order scores on held-out train
    sentences), re-distilled from the teacher; on bench_pruning's data split, reusing its cached teacher logits."""
    reuse = Path(config.pruned_student)
    if (reuse / "stage.json").exists() and student_dir == Path(config.distilled_student):
        return reuse  # pruned from that student by the run that made it (compress stage 3)
    h, f = config.prune_heads, config.prune_ffn
    path = out / f"student-pruned-h{h}-f{f}-redistilled"
    if (path / "stage.json").exists():
        return path
    from ..tasks.data import load_task_data, tokenize
    from ..distillation.trainer import DistillationTrainer
    from ..utils.model_folder import load_pytorch_model
    from ..pruning import held_out_split, importance_scores, load_pruned, prune, scoring_dataloader

    start = time.perf_counter()
    raw = load_task_data(config.sst2_dir)
    rest, scoring = held_out_split(raw["train"], num_examples=config.scoring_examples, seed=0)
    n_train = min(config.redistil_sentences, len(rest))
    tok = lambda ds: tokenize(ds, tokenizer, max_length=64)  # noqa: E731
    student = load_pytorch_model(student_dir)
    scores = importance_scores(student, "first_order", scoring_dataloader(tok(scoring), tokenizer, batch_size=32))
    pruned = prune(student, heads_per_layer=h, ffn_width=f, scores=scores)
    train = _teacher_logits(teacher, tok(rest.shuffle(seed=0).select(range(n_train))), tokenizer,
                            [Path(config.pruning_dir) / f"teacher_logits_{n_train}.npy"],
                            out / f"teacher_logits_{n_train}.npy")
    trainer = DistillationTrainer(model=pruned, args=_train_args(out / "work" / path.name, config.redistil_steps,
                                                                 temperature=2.0, distillation_weight=1.0),
                                  train_dataset=train, processing_class=tokenizer)
    trainer.train()
    with atomic_output_dir(path) as tmp:
        save_model_folder(trainer.model, tmp, tokenizer)
        write_json(tmp / "stage.json", {"wall_s": time.perf_counter() - start, "steps": config.redistil_steps,
                                        "train_sentences": n_train, "scoring_examples": config.scoring_examples})
    load_pruned(path)  # fail here, not in the timing, if it does not load back
    return path


def sst2_steps(config: AblationConfig, threads: int, servers: list):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..inference.classifier import InferenceConfig, TextClassifier
    from ..tasks.data import load_task_data
    from ..onnx.config import SessionConfig, VariantChoiceConfig
    from ..utils.model_folder import load_pytorch_model
    from ..pruning import held_out_split
    from ..serving.multi_instance import MultiInstanceClassifier, RuntimeConfig

    out = Path(config.out) / "sst2"
    torch.set_num_threads(threads)  # training here holds the machine (run under the CPU lock)
    teacher = AutoModelForSequenceClassification.from_pretrained(config.teacher).eval()
    tokenizer = AutoTokenizer.from_pretrained(config.teacher)
    raw = load_task_data(config.sst2_dir)
    dev_texts, dev_labels = list(raw["validation"]["sentence"]), np.asarray(raw["validation"]["label"])
    student_dir = _distilled_student(config, out, teacher, tokenizer)
    pruned_dir = _pruned_student(config, out, student_dir, teacher, tokenizer)

    # The int8 variant is chosen on held-out *train* sentences (never dev), timed on dev-like inputs.
    _, choice_set = held_out_split(raw["train"], num_examples=config.scoring_examples, seed=0)
    variant_config = VariantChoiceConfig(candidates=INT8_CANDIDATES, max_length=config.max_length,
                                         sample_size=200, latency_repeats=3)
    timing_set = raw["validation"].select(range(200))
    builds = int8_builds(student_dir, pruned_dir, out, variant_config, threads, eval_dataset=choice_set,
                          latency_dataset=timing_set)
    int8_dir, chosen, one = builds["int8"], builds["int8_variant"], builds["int8_1thread_variant"]

    torch.set_num_threads(threads)
    student = load_pytorch_model(student_dir)
    pt = lambda m: TextClassifier.from_pretrained(m, tokenizer, InferenceConfig(threads=threads)).runner  # noqa: E731
    ort = TextClassifier.from_pretrained(int8_dir, config=InferenceConfig(threads=threads)).runner
    padded, dynamic = encoder(tokenizer, config.max_length, True), encoder(tokenizer, config.max_length, False)
    runtime = RuntimeConfig(num_instances=2, threads_per_instance=1, max_length=config.max_length)
    multi = MultiInstanceClassifier(builds["int8_1thread"], runtime)
    single = MultiInstanceClassifier(builds["int8_1thread"], dataclasses.replace(runtime, num_instances=1))
    multi_pruned = MultiInstanceClassifier(builds["pruned_int8"], runtime)
    servers += [multi, single, multi_pruned]
    alternative = Path(config.alternative_pruned)
    alt_server = None
    if (alternative / "stage.json").exists() and (alternative / "config.json").exists():
        alt_int8 = _variant_dir(alternative, out / "alternative-pruned-int8", dataclasses.replace(
            variant_config, candidates=[one], session=SessionConfig(intra_op_num_threads=1)),
            eval_dataset=choice_set, latency_dataset=timing_set)
        alt_server = MultiInstanceClassifier(alt_int8, runtime)
        servers.append(alt_server)
    n_layers = student.config.num_hidden_layers
    shape = shape_of(read_json(pruned_dir / "config.json"))
    heads, ffn = sorted(set(shape["heads_per_layer"])), sorted(set(shape["ffn_width_per_layer"]))
    pruned_shape = f"{'/'.join(map(str, heads))} heads / FFN {'/'.join(map(str, ffn))} per layer"
    steps = [
        in_process_step(f"MiniLM-L6 teacher, PyTorch fp32, padded to {config.max_length}", "baseline", pt(teacher),
                        padded, threads),
        in_process_step("+ dynamic sequence length", "pad to the input's own length", pt(teacher), dynamic, threads),
        in_process_step(f"+ distilled {n_layers}-layer student", "knowledge distillation", pt(student), dynamic,
                        threads),
        in_process_step(f"+ int8 ONNX Runtime ({chosen})", "optimize_for_inference", ort, dynamic, threads),
        server_step(f"+ multi-instance (2 pinned 1-thread instances, {one})", "2 x 1 thread instead of 1 x 2", multi),
        server_step(f"+ pruned to {pruned_shape}, re-distilled", "structured pruning + re-distillation", multi_pruned),
        server_step(f"(reference: one 1-thread instance of the int8 student, {one})", "for the multi-instance ratio",
                    single, in_chain=False),
    ]
    if alt_server is not None:
        steps.append(server_step(f"(alternative: {alternative.name}, i.e. the teacher pruned and re-distilled by "
                                 "bench_pruning, int8, multi-instance)", "pruning the teacher instead of distilling",
                                 alt_server, in_chain=False))
    from tqdm.auto import tqdm

    for step in tqdm(steps, desc="sst2: dev accuracy"):
        step.accuracy = float((step.predict(dev_texts).argmax(-1) == dev_labels).mean())
    sources = {"teacher": config.teacher, "distilled_student": str(student_dir), "pruned_student": str(pruned_dir),
               **{k: str(v) for k, v in builds.items()},
               "student_stage": read_json(Path(student_dir) / "stage.json"),
               "pruned_stage": read_json(pruned_dir / "stage.json"),
               "alternative": str(alternative) if alt_server is not None else None}
    return steps, dev_texts, [len(t.split()) for t in dev_texts], sources


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
        if "sst2" in config.table_list:
            steps, dev_texts, dev_words, sources = sst2_steps(config, threads, servers)
            timing = measure(steps, dev_texts, dev_words, config, "sst2")
            rows = chain_rows(steps, timing, config, cores, reference_accuracy=steps[0].accuracy)
            for r in rows:
                r["dev_s"] = len(dev_texts) / r["queries_per_s"]
            fastest = max((r for r in rows if r["in_chain"]), key=lambda r: r["queries_per_s"])
            within = [r for r in rows if -r["accuracy_delta_points"] <= 1.2]
            fastest_within = max(within, key=lambda r: r["queries_per_s"]) if within else None
            report["tables"]["sst2"] = {"rows": rows, "timing": timing, "sources": sources,
                                        "multi_instance_vs_one_instance": multi_instance_ratio(rows),
                                        "fastest_row": fastest["step"],
                                        "fastest_loss_points": -fastest["accuracy_delta_points"],
                                        "fastest_within_1_2_points": fastest_within and {
                                            "step": fastest_within["step"],
                                            "loss_points": -fastest_within["accuracy_delta_points"],
                                            "speedup": fastest_within["cumulative_speedup"]}}
    finally:
        for s in servers:
            s.close()
    report["checks"] = checks(report)
    write_json(out / "ablation.json", report)
    (out / "ablation.md").write_text(render_markdown(report), encoding="utf-8")
    plot(report, out / "ablation.png")
    return report
