"""Latency measurement shared by the benchmarks: per-item timings, medians/percentiles, and the CPU load that
other processes put on the machine while we measured (these machines are shared and noisy)."""
from __future__ import annotations

import os
import threading
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
    """Samples, in a background thread, how busy the CPUs were because of *other* processes (in cores)."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._me = psutil.Process(os.getpid())

    def _run(self):
        psutil.cpu_percent(None)
        mine = self._me.cpu_times()
        last = time.perf_counter()
        while not self._stop.wait(self.interval):
            total = psutil.cpu_percent(None) / 100.0 * psutil.cpu_count()  # cores busy, machine-wide
            now, cur = time.perf_counter(), self._me.cpu_times()
            own = (cur.user + cur.system - mine.user - mine.system) / max(now - last, 1e-9)
            mine, last = cur, now
            self.samples.append(max(total - own, 0.0))

    @contextmanager
    def watch(self):
        self.samples, self._stop = [], threading.Event()
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    def summary(self) -> dict[str, float]:
        s = np.asarray(self.samples or [0.0])
        return {"other_load_cores_median": float(np.median(s)), "other_load_cores_max": float(s.max()),
                "disturbed": bool(np.median(s) > 0.25)}


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
