"""Batch size and instance count tuning: measure candidate settings of
:class:`~fastformers_hf.serving.multi_instance.MultiInstanceClassifier` on a sample of the user's inputs and keep the best throughput
(or the best under a latency bound).
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import FastFormersError
from .multi_instance import MultiInstanceClassifier, RuntimeConfig, physical_cores, plan_instances


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


class ProcessTreeLoadMonitor:
    """CPU load of *other* processes while we measured: machine busy time minus this process and its workers.

    Like :class:`fastformers_hf.utils.timing.LoadMonitor`, but our worker processes count as ours, not as others'.
    """

    def __init__(self, pids: Sequence[int] = (), disturbed_above: float = 0.25):
        self.pids, self.disturbed_above = list(pids), disturbed_above
        self.other_cores, self.own_cpu_s, self.wall_s = 0.0, 0.0, 0.0

    def _own(self) -> float:
        import psutil

        total = 0.0
        for pid in [os.getpid(), *self.pids]:
            try:
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def __enter__(self):
        from ..utils.timing import LoadMonitor

        self._busy0, self._own0, self._wall0 = LoadMonitor._busy(), self._own(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        from ..utils.timing import LoadMonitor

        self.wall_s = max(time.perf_counter() - self._wall0, 1e-9)
        self.own_cpu_s = self._own() - self._own0
        self.other_cores = max(((LoadMonitor._busy() - self._busy0) - self.own_cpu_s) / self.wall_s, 0.0)

    def summary(self) -> dict[str, Any]:
        return {"other_load_cores": round(self.other_cores, 3), "disturbed": self.other_cores > self.disturbed_above}


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
                samples: dict[int, list] = {b: [] for b in config.batch_sizes}
                for r in range(config.repeats):
                    order = config.batch_sizes[r % len(config.batch_sizes):] + config.batch_sizes[:r % len(config.batch_sizes)]
                    for bs in order:
                        monitor = ProcessTreeLoadMonitor([p for p in server.pids if p])
                        with monitor:
                            server.predict_logits(texts, batch_size=bs)
                        samples[bs].append((server.stats["queries_per_s"], float(np.percentile(server.stats["batch_ms"], 90)),
                                            monitor.other_cores))
                        bar.update(1)
                for bs, runs in samples.items():
                    qps, p90, load = (float(np.median([x[k] for x in runs])) for k in range(3))
                    rows.append({"instances": instances, "threads": threads, "batch_size": bs, "queries_per_s": qps,
                                 "p90_batch_ms": p90, "other_load_cores": round(load, 3), "disturbed": load > 0.25})
    finally:
        bar.close()
    return choose_setting(rows, config.latency_bound_ms)


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
