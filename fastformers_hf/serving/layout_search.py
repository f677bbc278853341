"""Batch size and instance count tuning: measure candidate settings of
:class:`~fastformers_hf.serving.multi_instance.MultiInstanceClassifier` on a sample of the user's inputs and keep the best throughput
(or the best under a latency bound).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import FastFormersError
from .cores import physical_cores, plan_instances
from .multi_instance import MultiInstanceClassifier, RuntimeConfig
from ..utils.timing import DISTURBED_ABOVE_CORES, LoadMonitor, time_interleaved


@dataclass
class TuningConfig:
    """Which settings :func:`tune` measures, and how."""

    layouts: Optional[list[tuple[int, int]]] = field(default=None, metadata={"help": "(instances, threads) pairs; "
                                                     "None = every way to fill the machine: cores//t x t for t = 1, 2, 4..."})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32], metadata={"help": "Batch sizes to try."})
    latency_bound_ms: Optional[float] = field(default=None, metadata={"help": "Keep only settings whose p90 batch "
                                              "latency (tokenise + forward in a worker) is within this bound."})
    sample_size: int = field(default=256, metadata={"help": "Inputs of the user's data used per measurement."})
    repeats: int = field(default=3, metadata={"help": "Passes per setting (batch sizes interleaved); medians kept."})

    def __post_init__(self):
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise FastFormersError(f"batch_sizes must be >= 1, got {self.batch_sizes}.")
        if self.sample_size < 1 or self.repeats < 1:
            raise FastFormersError("sample_size and repeats must be >= 1.")
        if self.latency_bound_ms is not None and self.latency_bound_ms <= 0:
            raise FastFormersError(f"latency_bound_ms must be > 0, got {self.latency_bound_ms}.")


@dataclass
class TuningResult:
    best: dict[str, Any]
    rows: list[dict[str, Any]]
    latency_bound_ms: Optional[float]

    def runtime_config(self, base: RuntimeConfig | None = None) -> RuntimeConfig:
        """``base`` with the chosen instances, threads and batch size."""
        return dataclasses.replace(base or RuntimeConfig(), num_instances=self.best["instances"],
                                   threads_per_instance=self.best["threads"], batch_size=self.best["batch_size"])

    def table(self) -> str:
        rows = ["| instances x threads | batch | queries/s | p90 batch ms | other load (cores) | kept |",
                "| --- | --- | --- | --- | --- | --- |"]
        for r in self.rows:
            mark = "**chosen**" if r is self.best else ("yes" if r["within_bound"] else "no: over latency bound")
            rows.append(f"| {r['instances']} x {r['threads']} | {r['batch_size']} | {r['queries_per_s']:.1f} | "
                        f"{r['p90_batch_ms']:.2f} | {r['other_load_cores']:.2f}{' (disturbed)' if r['disturbed'] else ''}"
                        f" | {mark} |")
        return "\n".join(rows)


def default_layouts(n_cores: int) -> list[tuple[int, int]]:
    """Every way to fill ``n_cores`` with equal instances: (cores // t, t) for t = 1, 2, 4, ..."""
    out, t = [], 1
    while t <= n_cores:
        out.append((n_cores // t, t))
        t *= 2
    return out


def tune(model_dir: str | os.PathLike, texts: Sequence, config: TuningConfig | None = None,
         runtime: RuntimeConfig | None = None, progress: bool = False) -> TuningResult:
    """Measure throughput of every (instances, threads, batch size) candidate on ``texts`` and pick the best.

    Each layout starts its workers once; its batch sizes are measured in interleaved passes (``repeats``) and the
    median throughput kept. With ``latency_bound_ms`` only settings whose p90 batch latency is within it qualify.
    Raises :class:`FastFormersError` (with every measurement) when none does.
    """
    config = config or TuningConfig()
    runtime = runtime or RuntimeConfig()
    texts = list(texts)[:config.sample_size]
    if not texts:
        raise FastFormersError("tune needs a sample of inputs to measure on; pass a few hundred texts of your data.")
    layouts = config.layouts or default_layouts(len(physical_cores()))
    for instances, threads in layouts:  # refuse impossible layouts before starting anything
        plan_instances(instances, threads, "error")
    total = len(layouts) * len(config.batch_sizes) * config.repeats
    bar = _progress_bar(total, "tuning", progress)
    rows = []
    try:
        for instances, threads in layouts:
            rc = dataclasses.replace(runtime, num_instances=instances, threads_per_instance=threads,
                                     oversubscribe="error")
            with MultiInstanceClassifier(model_dir, rc) as server:
                server.predict_logits(texts[:max(2 * instances, 8)])  # warm-up: first calls allocate
                # The workers' CPU is ours: only other processes' load counts as a disturbance.
                timing = time_interleaved({bs: partial(_served_pass, server, texts, bs) for bs in config.batch_sizes},
                                          repeats=config.repeats, keep_outputs=True,
                                          monitor=lambda names: LoadMonitor(server.pids),
                                          on_pass=lambda p: bar.update(1))
                rows += [_layout_row(timing, instances, threads, bs) for bs in config.batch_sizes]
    finally:
        bar.close()
    return choose_setting(rows, config.latency_bound_ms)


def _served_pass(server: MultiInstanceClassifier, texts: list, batch_size: int) -> dict[str, float]:
    """One timed pass of ``texts`` through the workers; the server's own throughput and p90 batch latency."""
    server.predict_logits(texts, batch_size=batch_size)
    stats = server.stats
    return {"queries_per_s": stats["queries_per_s"], "p90_batch_ms": float(np.percentile(stats["batch_ms"], 90))}


def _layout_row(timing, instances: int, threads: int, batch_size: int) -> dict[str, Any]:
    """Medians over the passes of one setting; disturbed when the median other load is over the threshold."""
    passes = timing.of(batch_size)
    qps, p90 = (float(np.median([p.outputs[k] for p in passes])) for k in ("queries_per_s", "p90_batch_ms"))
    load = float(np.median([p.other_load_cores for p in passes]))
    return {"instances": instances, "threads": threads, "batch_size": batch_size, "queries_per_s": qps,
            "p90_batch_ms": p90, "other_load_cores": round(load, 3), "disturbed": load > DISTURBED_ABOVE_CORES}


def choose_setting(rows: list[dict[str, Any]], latency_bound_ms: Optional[float] = None) -> TuningResult:
    """The highest-throughput row whose p90 batch latency is within ``latency_bound_ms`` (any, without a bound)."""
    for r in rows:
        r["within_bound"] = latency_bound_ms is None or r["p90_batch_ms"] <= latency_bound_ms
    kept = [r for r in rows if r["within_bound"]]
    result = TuningResult(best={}, rows=rows, latency_bound_ms=latency_bound_ms)
    if not kept:
        raise FastFormersError(f"no setting keeps p90 batch latency within {latency_bound_ms} ms:\n"
                               f"{result.table()}\nRaise the bound or try smaller batch sizes / more threads.")
    result.best = max(kept, key=lambda r: r["queries_per_s"])
    return result


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled)
