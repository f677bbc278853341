"""Latency measurement shared by the benchmarks: candidates timed in turns (:func:`time_interleaved`), per-item
timings, medians/percentiles, and the CPU load that other processes put on the machine while we measured (these
machines are shared and noisy: :class:`LoadMonitor`, :data:`DISTURBED_ABOVE_CORES`)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np
import psutil

# Other processes' average load, in cores, above which a timed pass counts as disturbed: on these small shared
# machines a quarter of a core used elsewhere already moves batch-1 latencies by more than the gaps we measure.
DISTURBED_ABOVE_CORES = 0.25

# Untimed calls per runner before timing when a caller has no setting of its own: first calls allocate.
DEFAULT_WARMUP = 5


def summarize_ms(seconds: Iterable[float]) -> dict[str, float]:
    ms = np.asarray(list(seconds), dtype=float) * 1000.0
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "n": int(ms.size)}


def time_each(fn: Callable, items, warmup: int = DEFAULT_WARMUP) -> list[float]:
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

    Machine-wide busy CPU time (from ``/proc/stat`` via psutil) minus the CPU time of this process and of ``pids``
    (our worker processes: their work is ours, not a disturbance), over the wall time of each window
    (``with monitor:`` or ``with monitor.watch():``); the last window's numbers are ``other_cores``, ``own_cpu_s``,
    ``wall_s`` and ``summary()``.
    """

    def __init__(self, pids: Sequence[int] = (), disturbed_above: float = DISTURBED_ABOVE_CORES):
        self.pids = [p for p in pids if p]  # workers still starting have no pid yet
        self.disturbed_above = disturbed_above
        self.other_cores, self.own_cpu_s, self.wall_s = 0.0, 0.0, 0.0

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)

    def _own(self) -> float:
        total = 0.0
        for pid in [os.getpid(), *self.pids]:
            try:
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:  # a worker that exited meanwhile
                pass
        return total

    def __enter__(self) -> "LoadMonitor":
        self._start = self._busy(), self._own(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        busy0, own0, wall0 = self._start
        self.wall_s = max(time.perf_counter() - wall0, 1e-9)
        self.own_cpu_s = self._own() - own0
        self.other_cores = max((self._busy() - busy0 - self.own_cpu_s) / self.wall_s, 0.0)

    def watch(self) -> "LoadMonitor":
        """The monitor itself, as a context manager: ``with monitor.watch():`` reads well where it wraps a block."""
        return self

    def summary(self) -> dict[str, float]:
        return {"other_load_cores": round(self.other_cores, 3), "disturbed": self.other_cores > self.disturbed_above}


@dataclass
class TimedPass:
    """One runner's pass (all items, or one whole call) in one round, and the load while it ran."""

    name: Hashable
    round: int
    wall_s: float
    item_s: list[float]  # seconds of each item's call; empty for whole-pass runners
    other_load_cores: float
    own_cpu_s: float  # CPU seconds of this process (and the window's workers) during the pass
    disturbed: bool
    outputs: Any = None  # what the runner returned (per-item runners: a list, one per item), when kept


@dataclass
class InterleavedTiming:
    """The passes of :func:`time_interleaved` in the order they ran, with per-candidate summaries."""

    runs: list[TimedPass]
    disturbed_above: float = DISTURBED_ABOVE_CORES

    def of(self, name: Hashable) -> list[TimedPass]:
        return [p for p in self.runs if p.name == name]

    def seconds(self, name: Hashable) -> list[float]:
        """Every per-item time of ``name``, over all its passes."""
        return [s for p in self.of(name) for s in p.item_s]

    def latency(self, name: Hashable) -> dict[str, float]:
        """:func:`summarize_ms` of all per-item times of ``name``."""
        return summarize_ms(self.seconds(name))

    def pass_mean_ms(self, name: Hashable) -> float:
        """Median over passes of each pass's mean per-item latency: one disturbed pass moves it little."""
        return 1e3 * float(np.median([np.mean(p.item_s) for p in self.of(name)]))

    def wall_s(self, name: Hashable) -> float:
        """Median wall time of a pass of ``name``."""
        return float(np.median([p.wall_s for p in self.of(name)]))

    def load(self, names: Iterable[Hashable] | None = None) -> dict[str, Any]:
        """Other processes' load during the passes of ``names`` (all by default): the wall-time weighted mean
        (``other_load_cores``; ``disturbed`` when above the threshold), median, maximum and disturbed passes."""
        wanted = None if names is None else set(names)
        passes = [p for p in self.runs if wanted is None or p.name in wanted]
        wall = sum(p.wall_s for p in passes)
        loads = [p.other_load_cores for p in passes] or [0.0]
        mean = sum(p.other_load_cores * p.wall_s for p in passes) / wall if wall > 0 else 0.0
        return {"other_load_cores": round(mean, 3), "disturbed": mean > self.disturbed_above,
                "other_load_median": float(np.median(loads)), "other_load_max": float(max(loads)),
                "disturbed_passes": sum(p.disturbed for p in passes)}


INTERLEAVINGS = ("pass", "item")


def time_interleaved(runners: Mapping[Hashable, Callable], items: Sequence | None = None, *, repeats: int = 1,
                     warmup: int = 0, interleave: str = "pass", keep_outputs: bool = False,
                     monitor: Callable[[list], Any] = lambda names: LoadMonitor(),
                     disturbed_above: float = DISTURBED_ABOVE_CORES,
                     on_pass: Callable[[TimedPass], None] | None = None,
                     clock: Callable[[], float] = time.perf_counter) -> InterleavedTiming:
    """Time every runner in ``repeats`` rounds, candidates taking turns, so that drift of the machine and bursts
    of load from elsewhere hit all of them alike (these machines are shared).

    ``items=None``: each runner is ``fn()`` and one call is one pass, timed whole (throughput). Otherwise each
    runner is ``fn(item)``, every call is timed (latency, e.g. at batch 1) and a pass is one runner over all items.
    ``interleave="pass"``: a round runs each runner's pass in turn, the order rotated by one every round;
    ``"item"``: a round goes item by item, every runner in turn on the same item (finest interleaving, even in a
    single round), and its runners share the round's load window. ``warmup``: untimed calls of each runner first
    (on the first ``warmup`` items). ``monitor(names)``: a fresh :class:`LoadMonitor` (or alike) for a window in
    which the runners ``names`` run, e.g. counting their worker processes as ours. A pass whose other load exceeds
    ``disturbed_above`` cores is flagged ``disturbed``. ``on_pass`` sees every pass as it finishes.
    """
    if interleave not in INTERLEAVINGS:
        raise ValueError(f"interleave must be one of {INTERLEAVINGS}, got {interleave!r}.")
    if interleave == "item" and items is None:
        raise ValueError("interleave='item' needs items to take turns on.")
    names = list(runners)
    for name in names:
        for item in ([None] * warmup if items is None else items[:warmup]):
            _call(runners[name], items, item)
    timing = InterleavedTiming([], disturbed_above)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)] if names else []
        windows = [order] if interleave == "item" else [[name] for name in order]
        for window in windows:
            with monitor(window) as m:
                timed = _timed_window(runners, window, items, keep_outputs, clock)
            for name in window:
                wall, item_s, outputs = timed[name]
                p = TimedPass(name, r, wall, item_s, m.other_cores, m.own_cpu_s, m.other_cores > disturbed_above,
                              outputs)
                timing.runs.append(p)
                if on_pass is not None:
                    on_pass(p)
    return timing


def _call(fn: Callable, items, item):
    return fn() if items is None else fn(item)


def _timed_window(runners, window: list, items, keep: bool, clock) -> dict:
    """``{name: (wall_s, item seconds, outputs)}`` of the runners of one window; with several runners (item
    interleaving) they take turns on each item and a runner's wall time is the sum of its own calls."""
    if items is None:
        (name,) = window
        start = clock()
        out = runners[name]()
        return {name: (clock() - start, [], out if keep else None)}
    item_s = {n: [] for n in window}
    outputs = {n: [] if keep else None for n in window}
    start = clock()
    for item in items:
        for name in window:
            t0 = clock()
            y = runners[name](item)
            item_s[name].append(clock() - t0)
            if keep:
                outputs[name].append(y)
    wall = clock() - start
    return {n: (wall if len(window) == 1 else sum(item_s[n]), item_s[n], outputs[n]) for n in window}


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


def batch1_latency(runners: Mapping[str, Callable], features: Sequence, repeats: int,
                   warmup: int) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Per-query latency of each runner over ``features`` (one query each; passes of all runners interleaved, see
    :func:`time_interleaved`) and the other processes' load meanwhile."""
    timing = time_interleaved(runners, features, repeats=repeats, warmup=warmup)
    latency = {}
    for name in runners:
        s = timing.latency(name)
        latency[name] = {"mean_ms": timing.pass_mean_ms(name),  # median over passes of the per-pass mean
                         "median_ms": s["median_ms"], "p99_ms": s["p99_ms"], "queries": s["n"]}
    return latency, timing.load()
