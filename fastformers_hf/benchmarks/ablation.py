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
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .ablation_config import BOOLQ_DEV_QUERIES, INT8_CANDIDATES, PAPER, AblationConfig  # noqa: F401
from .ablation_report import checks, markdown_table, multi_instance_ratio, plot, render_markdown  # noqa: F401
from ..utils.io import atomic_output_dir, claim_output_dir, read_json, write_json
from ..shape_record import shape_of

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------------
# Inputs


def boolq_like_pairs(tokenizer, n: int, median: int = 140, low: int = 32, high: int = 512, seed: int = 0):
    """``n`` (question, passage) pairs of random whole-word vocabulary tokens whose encoded lengths (with [CLS] and
    two [SEP]) follow a log-normal around ``median``, clipped to [low, high] (BoolQ's dev set looks like this)."""
    rng = np.random.default_rng(seed)
    words = sorted(w for w in tokenizer.get_vocab() if w.isascii() and w.isalpha() and len(w) > 2)
    lengths = np.clip(np.round(rng.lognormal(math.log(median), 0.5, size=n)), low, high).astype(int)
    lengths[:2] = low, high  # make sure both ends of the range are there
    pairs = []
    for length in lengths:
        body = int(length) - 3
        q = int(min(rng.integers(6, 15), body // 3))
        chosen = rng.choice(words, size=body)
        pairs.append((" ".join(chosen[:q]), " ".join(chosen[q:])))
    return pairs


def stratified(items: list, lengths, n: int, seed: int = 0) -> list:
    """``n`` items spread evenly over the length distribution (so a short pass has representative lengths);
    more than there are cycles through all of them."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    whole, part = divmod(n, len(items))
    picked = list(np.tile(order, whole)) + list(order[((np.arange(part) + 0.5) * len(items) / max(part, 1)).astype(int)])
    np.random.default_rng(seed).shuffle(picked)
    return [items[i] for i in picked]


def _encoder(tokenizer, max_length: int, pad_to_max: bool):
    """Batch-1 features of one text or pair, padded to ``max_length`` or to its own length (dynamic)."""
    padding = "max_length" if pad_to_max else False

    def encode(x):
        parts = (x,) if isinstance(x, str) else tuple(x)
        enc = tokenizer(*parts, truncation=True, max_length=max_length, padding=padding, return_tensors="np")
        return {k: v.astype(np.int64) for k, v in enc.items()}

    return encode


# ----------------------------------------------------------------------------------------------------------------
# Steps and their measurement


@dataclass
class Step:
    """One row: ``predict(items) -> logits (N, C)`` at batch 1, and what it changes from the row before."""

    name: str
    change: str
    layout: str  # e.g. "1 x 2 threads"
    predict: Callable[[list], np.ndarray]
    pids: Callable[[], list[int]] = lambda: []
    in_chain: bool = True  # False: a reference row (not part of the cumulative chain)
    fixed_queries: Optional[int] = None  # queries per pass; None = enough for pass_seconds
    accuracy: Optional[float] = None


def in_process_step(name, change, runner, encode, threads, **kw) -> Step:
    def predict(items):
        return np.concatenate([runner(encode(x)) for x in items])  # (N, C)

    return Step(name, change, f"1 x {threads} thread{'s' * (threads > 1)}", predict, **kw)


def server_step(name, change, server, **kw) -> Step:
    plan = server.plan
    return Step(name, change, f"{plan.num_instances} x {plan.threads_per_instance} thread, pinned",
                lambda items: server.predict_logits(items, batch_size=1), lambda: [p for p in server.pids if p], **kw)


def _queries_per_pass(step: Step, pool, lengths, seconds: float) -> int:
    if step.fixed_queries:
        return step.fixed_queries
    k, took = 2, 0.0
    while k <= 4 * len(pool):
        items = stratified(pool, lengths, k, seed=k)
        start = time.perf_counter()
        step.predict(items)
        took = time.perf_counter() - start
        if took >= 0.3:
            break
        k *= 4
    return int(min(max(3, seconds * k / max(took, 1e-6)), 50 * len(pool)))


def measure(steps: list[Step], pool: list, lengths, config: AblationConfig, desc: str) -> dict[str, dict[str, Any]]:
    """Time every step in ``config.rounds`` interleaved passes; per step the median queries/s and CPU per query."""
    from tqdm.auto import tqdm

    from ..utils.timing import LoadMonitor, time_interleaved

    items = {}
    for step in tqdm(steps, desc=f"{desc}: warm-up", leave=False):
        step.predict(stratified(pool, lengths, 3, seed=1))
        items[step.name] = stratified(pool, lengths, _queries_per_pass(step, pool, lengths, config.pass_seconds))
    by_name = {s.name: s for s in steps}
    runners = {s.name: (lambda s=s: s.predict(items[s.name])) for s in steps}
    with tqdm(total=config.rounds * len(steps), desc=f"{desc}: timing") as bar:
        timing = time_interleaved(runners, repeats=config.rounds, on_pass=lambda p: bar.update(1),
                                  monitor=lambda names: LoadMonitor([p for n in names for p in by_name[n].pids()]))
    return {step.name: _step_timing(timing, step.name, len(items[step.name])) for step in steps}


def _step_timing(timing, name: str, queries: int) -> dict[str, Any]:
    """Median queries/s and CPU per query (ours: parent and workers) over the passes of one step, and the load."""
    passes = [{"queries_per_s": queries / p.wall_s, "wall_s": p.wall_s, "cpu_s_per_query": p.own_cpu_s / queries,
               "other_load_cores": p.other_load_cores} for p in timing.of(name)]
    load = timing.load([name])
    return {"queries_per_s": float(np.median([x["queries_per_s"] for x in passes])),
            "cpu_s_per_query": float(np.median([x["cpu_s_per_query"] for x in passes])),
            "queries_per_pass": queries, "other_load_median": load["other_load_median"],
            "other_load_max": load["other_load_max"], "disturbed_passes": load["disturbed_passes"], "passes": passes}


def rapl_available() -> bool:
    return any(Path("/sys/class/powercap").glob("intel-rapl:*/energy_uj"))


def chain_rows(steps: list[Step], timing: dict, config: AblationConfig, measured_cores: int,
               reference_accuracy: Optional[float] = None) -> list[dict[str, Any]]:
    """Table rows: time, step and cumulative speed-up, USD per 100M queries, energy estimate."""
    scale = config.instance_physical_cores / measured_cores
    rows, first, prev = [], None, None
    for step in steps:
        t = timing[step.name]
        qps = t["queries_per_s"]
        row = {"step": step.name, "change": step.change, "layout": step.layout, "in_chain": step.in_chain,
               "ms_per_query": 1e3 / qps, "queries_per_s": qps,
               "boolq_dev_s": BOOLQ_DEV_QUERIES / qps,
               "usd_per_100m": config.instance_usd_per_hour * 1e8 / (qps * scale) / 3600,
               "joules_per_query": config.watts_per_core * t["cpu_s_per_query"],
               "kwh_per_100m": config.watts_per_core * t["cpu_s_per_query"] * 1e8 / 3.6e6,
               **{k: t[k] for k in ("other_load_median", "other_load_max", "disturbed_passes", "queries_per_pass")},
               "passes": len(t["passes"])}
        if step.accuracy is not None:
            row["accuracy"] = step.accuracy
            if reference_accuracy is not None:
                row["accuracy_delta_points"] = 100 * (step.accuracy - reference_accuracy)
        if step.in_chain:
            first = first or qps
            row["step_speedup"] = qps / prev if prev else 1.0
            prev = qps
        row["cumulative_speedup"] = qps / first  # off-chain rows: speed-up over the baseline
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Table 1: the paper's shapes, random weights


def _save_model(model, tokenizer, path: Path) -> Path:
    with atomic_output_dir(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return path


def _variant_dir(source: Path, target: Path, config, **kwargs) -> Path:
    """``optimize_for_inference(source, target)`` unless ``target`` already holds its result for the same settings
    (candidates, choice rule, thread count: the fastest int8 graph depends on the threads it runs with)."""
    from ..onnx.variants import chosen_with, optimize_for_inference

    if not chosen_with(target, config):
        optimize_for_inference(source, target, config=config, **kwargs)
    return target


def _int8_builds(student: Path, pruned: Path, out: Path, config, threads: int, **kwargs) -> dict[str, Any]:
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
    from ..pruning.structured import prune
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
    builds = _int8_builds(student_dir, pruned_dir, out, variant_config, threads, latency_dataset=timing_pairs)
    int8_dir, chosen = builds["int8"], builds["int8_variant"]

    torch.set_num_threads(threads)
    pt = lambda m: TextClassifier.from_pretrained(m, tokenizer, InferenceConfig(threads=threads)).runner  # noqa: E731
    ort = TextClassifier.from_pretrained(int8_dir, config=InferenceConfig(threads=threads, max_length=512)).runner
    padded, dynamic = _encoder(tokenizer, 512, True), _encoder(tokenizer, 512, False)
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
                              per_device_train_batch_size=32, learning_rate=1e-4, weight_decay=0.01, warmup_ratio=0.06,
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
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
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
    from ..pruning.structured import held_out_split, importance_scores, load_pruned, prune, scoring_dataloader

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
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
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
    from ..pruning.structured import held_out_split
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
    builds = _int8_builds(student_dir, pruned_dir, out, variant_config, threads, eval_dataset=choice_set,
                          latency_dataset=timing_set)
    int8_dir, chosen, one = builds["int8"], builds["int8_variant"], builds["int8_1thread_variant"]

    torch.set_num_threads(threads)
    student = load_pytorch_model(student_dir)
    pt = lambda m: TextClassifier.from_pretrained(m, tokenizer, InferenceConfig(threads=threads)).runner  # noqa: E731
    ort = TextClassifier.from_pretrained(int8_dir, config=InferenceConfig(threads=threads)).runner
    padded, dynamic = _encoder(tokenizer, config.max_length, True), _encoder(tokenizer, config.max_length, False)
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
    from ..serving.multi_instance import physical_cores

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
