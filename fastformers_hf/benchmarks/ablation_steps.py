"""The steps of the ablation chains and how they are measured: BoolQ-like inputs, one ``Step`` per change, the
interleaved rounds (:func:`~fastformers_hf.utils.timing.time_interleaved`) and the rows of the table."""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .ablation_config import BOOLQ_DEV_QUERIES, AblationConfig
from ..hub_code import save_model_folder
from ..utils.io import atomic_output_dir, read_json

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


def encoder(tokenizer, max_length: int, pad_to_max: bool):
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
                # Rounded: 0.614 - 0.602 is 0.0120000000000000018, which must count as 1.2 points, not more.
                row["accuracy_delta_points"] = round(100 * (step.accuracy - reference_accuracy), 9)
        if step.in_chain:
            first = first or qps
            row["step_speedup"] = qps / prev if prev else 1.0
            prev = qps
        row["cumulative_speedup"] = qps / first  # off-chain rows: speed-up over the baseline
        rows.append(row)
    return rows


def save_model_dir(model, tokenizer, path: Path) -> Path:
    """``model`` and ``tokenizer`` saved as one folder at ``path``, all at once (never half-written)."""
    with atomic_output_dir(path) as tmp:
        save_model_folder(model, tmp, tokenizer)
    return path


def variant_dir(source: Path, target: Path, config, **kwargs) -> Path:
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
        path = variant_dir(source, target, c, **kwargs)
        return path, read_json(path / "onnx_variants.json")["chosen"]

    single, single_variant = build(student, out / "student-int8", threads)
    one, one_variant = (single, single_variant) if threads == 1 else build(student, out / "student-int8-1thread", 1)
    pruned_one, _ = build(pruned, out / "student-pruned-int8", 1, [one_variant])
    return {"int8": single, "int8_variant": single_variant, "int8_1thread": one, "int8_1thread_variant": one_variant,
            "pruned_int8": pruned_one}
