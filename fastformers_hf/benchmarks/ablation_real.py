"""The ablation's real-data chains, with accuracy: SST-2 and BoolQ dev through a fine-tuned MiniLM teacher padded to
its longest input -> dynamic length -> a distilled student -> int8 ONNX Runtime -> multi-instance -> pruned and
re-distilled.

SST-2 (``sst2``) reuses ``compress --recipe examples/recipes/sst2.yaml``'s students when they exist and distils its
own otherwise. BoolQ (``boolq``, the paper's Table 3 task) reads every model from the stages of ``compress --recipe
examples/recipes/superglue/boolq.yaml`` (its teacher is fine-tuned there from the reference SQuAD MiniLM-L6
teacher), padded to 512 as in the paper.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .ablation_config import INT8_CANDIDATES, AblationConfig
from .ablation_steps import encoder, in_process_step, server_step
from ..compat import warmup
from ..errors import FastFormersError
from ..hub_code import save_model_folder
from ..shape_record import shape_of
from ..utils.io import atomic_output_dir, read_json, write_json

logger = logging.getLogger(__name__)
REAL_TABLES = ("sst2", "boolq")


@dataclass
class RealChain:
    """What one real-data chain runs on: the task, its data, the teacher and its two students."""

    name: str  # table name: sst2 | boolq
    title: str  # e.g. "SST-2 dev (872 sentences)"
    task: str  # named task: its text columns
    raw: Any  # DatasetDict with train / validation
    teacher: Path
    student: Path  # distilled
    pruned: Path  # pruned and re-distilled
    max_length: int  # the teacher's padded length; every step truncates there
    choice_examples: int  # held-out train rows the int8 variant is chosen on
    alternative: Path | None = None  # an extra off-chain pruned model


# -- SST-2 ---------------------------------------------------------------------------------------------------------


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


def sst2_chain(config: AblationConfig, teacher, tokenizer) -> RealChain:
    """SST-2: compress's students when they exist, else distilled (and pruned) here under ``out/sst2``."""
    from ..tasks.data import load_task_data

    out = Path(config.out) / "sst2"
    student = _distilled_student(config, out, teacher, tokenizer)
    alternative = Path(config.alternative_pruned)
    return RealChain("sst2", "SST-2 dev (872 sentences)", "sst2", load_task_data(config.sst2_dir),
                     Path(config.teacher), student, _pruned_student(config, out, student, teacher, tokenizer),
                     config.max_length, config.scoring_examples,
                     alternative if (alternative / "stage.json").exists() and (alternative / "config.json").exists()
                     else None)


def boolq_chain(config: AblationConfig) -> RealChain:
    """BoolQ: the teacher, distilled student and pruned, re-distilled student of a ``compress`` run of
    ``examples/recipes/superglue/boolq.yaml`` (``--boolq_compress``), which has to exist: nothing is trained here."""
    from ..tasks.data import load_task_data

    run = Path(config.boolq_compress)
    stages = {s: run / s for s in ("0-teacher", "1-distill", "3-redistill")}
    missing = [s for s, d in stages.items() if not (d / "stage.json").is_file()]
    if missing:
        raise FastFormersError(
            f"{run} lacks the compress stage(s) {', '.join(missing)} the BoolQ chain reads its models from: run "
            "`python benchmarks/bench_superglue.py --tasks boolq` (compress --recipe "
            "examples/recipes/superglue/boolq.yaml) first, or point --boolq_compress at that run's output_dir.")
    raw = load_task_data(config.boolq_dir, "boolq")
    return RealChain("boolq", f"BoolQ dev ({len(raw['validation'])} pairs)", "boolq", raw, stages["0-teacher"],
                     stages["1-distill"], stages["3-redistill"], config.boolq_max_length,
                     config.boolq_choice_examples)


# -- one chain -----------------------------------------------------------------------------------------------------


def real_steps(config: AblationConfig, chain_name: str, threads: int, servers: list):
    """The steps of one real-data chain (its servers appended to ``servers``), each with its dev accuracy; returns
    ``(steps, dev inputs, their word counts, sources)``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..inference.classifier import InferenceConfig, TextClassifier
    from ..onnx.config import SessionConfig, VariantChoiceConfig
    from ..pruning import held_out_split
    from ..serving.multi_instance import MultiInstanceClassifier, RuntimeConfig
    from ..tasks.names import get_task
    from ..utils.model_folder import load_pytorch_model
    from .ablation_steps import int8_builds, variant_dir

    torch.set_num_threads(threads)  # training here holds the machine (run under the CPU lock)
    if chain_name == "sst2":
        teacher = AutoModelForSequenceClassification.from_pretrained(config.teacher).eval()
        tokenizer = AutoTokenizer.from_pretrained(config.teacher)
        chain = sst2_chain(config, teacher, tokenizer)
    else:
        chain = boolq_chain(config)
        teacher = AutoModelForSequenceClassification.from_pretrained(chain.teacher).eval()
        tokenizer = AutoTokenizer.from_pretrained(chain.teacher)
    out, task, raw = Path(config.out) / chain.name, get_task(chain.task), chain.raw
    dev_inputs, dev_labels = task.inputs(raw["validation"]), np.asarray(raw["validation"]["label"])

    # The int8 variant is chosen on held-out *train* rows (never dev), timed on dev-like inputs.
    _, choice_set = held_out_split(raw["train"], num_examples=chain.choice_examples, seed=0)
    variant_config = VariantChoiceConfig(candidates=INT8_CANDIDATES, max_length=chain.max_length,
                                         sample_size=200, latency_repeats=3)
    timing_set = raw["validation"].select(range(min(200, len(raw["validation"]))))
    builds = int8_builds(chain.student, chain.pruned, out, variant_config, threads, eval_dataset=choice_set,
                         latency_dataset=timing_set)
    int8_dir, chosen, one = builds["int8"], builds["int8_variant"], builds["int8_1thread_variant"]

    torch.set_num_threads(threads)
    student = load_pytorch_model(chain.student)
    inference = InferenceConfig(threads=threads, max_length=chain.max_length)
    pt = lambda m: TextClassifier.from_pretrained(m, tokenizer, inference).runner  # noqa: E731
    ort = TextClassifier.from_pretrained(int8_dir, config=inference).runner
    padded, dynamic = encoder(tokenizer, chain.max_length, True), encoder(tokenizer, chain.max_length, False)
    runtime = RuntimeConfig(num_instances=2, threads_per_instance=1, max_length=chain.max_length)
    multi = MultiInstanceClassifier(builds["int8_1thread"], runtime)
    single = MultiInstanceClassifier(builds["int8_1thread"], dataclasses.replace(runtime, num_instances=1))
    multi_pruned = MultiInstanceClassifier(builds["pruned_int8"], runtime)
    servers += [multi, single, multi_pruned]
    alt_server = None
    if chain.alternative is not None:
        alt_int8 = variant_dir(chain.alternative, out / "alternative-pruned-int8", dataclasses.replace(
            variant_config, candidates=[one], session=SessionConfig(intra_op_num_threads=1)),
            eval_dataset=choice_set, latency_dataset=timing_set)
        alt_server = MultiInstanceClassifier(alt_int8, runtime)
        servers.append(alt_server)
    n_layers = student.config.num_hidden_layers
    shape = shape_of(read_json(chain.pruned / "config.json"))
    heads, ffn = sorted(set(shape["heads_per_layer"])), sorted(set(shape["ffn_width_per_layer"]))
    pruned_shape = f"{'/'.join(map(str, heads))} heads / FFN {'/'.join(map(str, ffn))} per layer"
    steps = [
        in_process_step(f"MiniLM-L6 teacher, PyTorch fp32, padded to {chain.max_length}", "baseline", pt(teacher),
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
        steps.append(server_step(f"(alternative: {chain.alternative.name}, i.e. the teacher pruned and re-distilled "
                                 "by bench_pruning, int8, multi-instance)", "pruning the teacher instead of "
                                 "distilling", alt_server, in_chain=False))
    from tqdm.auto import tqdm

    for step in tqdm(steps, desc=f"{chain.name}: dev accuracy"):
        step.accuracy = float((step.predict(dev_inputs).argmax(-1) == dev_labels).mean())
    sources = {"title": chain.title, "teacher": str(chain.teacher), "distilled_student": str(chain.student),
               "pruned_student": str(chain.pruned), **{k: str(v) for k, v in builds.items()},
               "student_stage": read_json(chain.student / "stage.json"),
               "pruned_stage": read_json(chain.pruned / "stage.json"),
               "choice_examples": chain.choice_examples, "max_length": chain.max_length,
               "chance": float(np.bincount(dev_labels).max() / len(dev_labels)),  # always the majority label
               "alternative": str(chain.alternative) if alt_server is not None else None}
    words = [sum(len(t.split()) for t in ((x,) if isinstance(x, str) else x)) for x in dev_inputs]
    return steps, dev_inputs, words, sources
