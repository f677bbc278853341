"""Latency measurement shared by the benchmarks: per-item timings, medians/percentiles, and the CPU load that
other processes put on the machine while we measured (these machines are shared and noisy)."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Callable, Iterable

import numpy as np
import psutil


def summarize_ms(seconds: Iterable[float]) -> dict[str, float]:
    ms = np.asarray(list(seconds), dtype=float) * 1000.0
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "n": int(ms.size)}


def time_each(fn: Callable, items, warmup: int = 5) -> list[float]:
    """Wall-clock seconds of ``fn(item)`` for every item, after ``warmup`` untimed calls."""
    items = list(items)
    for item in items[:warmup]:
        fn(item)
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - start)
    return out


class LoadMonitor:
    """How busy the CPUs were because of *other* processes while we measured, in cores on average.

    Machine-wide busy CPU time (from ``/proc/stat`` via psutil) minus this process's own CPU time, over the
    wall time of each ``watch()`` window; the last window's numbers are in ``summary()``.
    """

    def __init__(self, disturbed_above: float = 0.25):
        self.disturbed_above = disturbed_above
        self.other_cores = 0.0

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)

    @contextmanager
    def watch(self):
        me = psutil.Process(os.getpid())
        busy0, own0, wall0 = self._busy(), sum(me.cpu_times()[:2]), time.perf_counter()
        try:
            yield self
        finally:
            wall = max(time.perf_counter() - wall0, 1e-9)
            other = (self._busy() - busy0) - (sum(me.cpu_times()[:2]) - own0)
            self.other_cores = max(other / wall, 0.0)

    def summary(self) -> dict[str, float]:
        return {"other_load_cores": round(self.other_cores, 3), "disturbed": self.other_cores > self.disturbed_above}


def torch_threads(n: int):
    """Set torch's intra-op threads and return the previous value."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    return previous


def pytorch_classify_fn(model, tokenizer, text_fields=("sentence",), max_length: int = 128, pad_to_max: bool = False):
    """A batch-1 ``fn(example) -> label`` for timing a PyTorch classifier, padded to ``max_length`` or dynamic."""
    import torch

    model.eval()
    padding = "max_length" if pad_to_max else False

    def fn(example):
        enc = tokenizer(*[example[f] for f in text_fields], truncation=True, max_length=max_length,
                        padding=padding, return_tensors="pt")
        with torch.inference_mode():
            return int(model(**enc).logits.argmax(-1))

    return fn
