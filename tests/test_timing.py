"""The one interleaved-timing helper: order of the calls, summaries from a fake clock, load flags from a fake
monitor."""
import time

import pytest

from fastformers_hf.utils.timing import DISTURBED_ABOVE_CORES, LoadMonitor, time_interleaved


class FakeClock:
    """A clock that moves only when a runner says how long its call took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeMonitor:
    """Reports the next of ``loads`` (cores used by others) for each window; records the windows' runners."""

    def __init__(self, loads):
        self.loads, self.windows = list(loads), []

    def __call__(self, names):
        self.windows.append(list(names))
        self.other_cores, self.own_cpu_s = self.loads.pop(0), 0.0
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def logging_runners(names, log, per_item=True):
    if per_item:
        return {n: (lambda item, n=n: log.append(f"{n}{item}")) for n in names}
    return {n: (lambda n=n: log.append(n)) for n in names}


@pytest.mark.parametrize("items,repeats,warmup,interleave,expected", [
    ([1, 2], 3, 0, "pass", "A1 A2 B1 B2 C1 C2 | B1 B2 C1 C2 A1 A2 | C1 C2 A1 A2 B1 B2"),  # rotated every round
    ([1, 2], 1, 0, "item", "A1 B1 C1 A2 B2 C2"),  # every runner in turn on the same item
    ([1, 2], 2, 0, "item", "A1 B1 C1 A2 B2 C2 | B1 C1 A1 B2 C2 A2"),
    ([1, 2], 1, 1, "pass", "A1 B1 C1 | A1 A2 B1 B2 C1 C2"),  # warm-up: the first items, untimed
    (None, 2, 0, "pass", "A B C | B C A"),  # whole-pass runners: one call per pass
])
def test_runners_take_turns(items, repeats, warmup, interleave, expected):
    log = []
    time_interleaved(logging_runners("ABC", log, per_item=items is not None), items, repeats=repeats, warmup=warmup,
                     interleave=interleave)
    assert " ".join(log) == expected.replace(" | ", " ")


# seconds per call of each runner on each item
COSTS = {"fast": {0: 1.0, 1: 2.0, 2: 9.0}, "slow": {0: 4.0, 1: 4.0, 2: 5.0}}


@pytest.mark.parametrize("name,median_ms,pass_mean_ms,wall_s", [("fast", 2000.0, 4000.0, 12.0),
                                                                ("slow", 4000.0, 13000.0 / 3, 13.0)])
@pytest.mark.parametrize("interleave", ["pass", "item"])
def test_summaries_from_a_fake_clock(name, median_ms, pass_mean_ms, wall_s, interleave):
    clock = FakeClock()

    def runner(n):
        def run(item):
            clock.now += COSTS[n][item]
        return run

    timing = time_interleaved({n: runner(n) for n in COSTS}, [0, 1, 2], repeats=2, interleave=interleave,
                              clock=clock, monitor=FakeMonitor([0.0] * 4))
    assert timing.seconds(name) == [COSTS[name][i] for i in (0, 1, 2)] * 2
    assert timing.latency(name)["median_ms"] == pytest.approx(median_ms)
    assert timing.latency(name)["n"] == 6
    assert timing.pass_mean_ms(name) == pytest.approx(pass_mean_ms)
    assert timing.wall_s(name) == pytest.approx(wall_s)


@pytest.mark.parametrize("loads,flags,disturbed_passes,load_max", [
    ([0.0, 0.0, 0.1, 0.2], [False] * 4, 0, 0.2),
    ([0.0, DISTURBED_ABOVE_CORES + 0.5, 0.0, 0.0], [False, True, False, False], 1, DISTURBED_ABOVE_CORES + 0.5),
    ([1.0] * 4, [True] * 4, 4, 1.0),
])
def test_disturbed_passes_are_flagged(loads, flags, disturbed_passes, load_max):
    clock = FakeClock()

    def run():
        clock.now += 1.0  # every pass takes 1 s: the mean load is the plain mean

    timing = time_interleaved({"a": run, "b": run}, repeats=2, clock=clock, monitor=FakeMonitor(loads))
    assert [p.disturbed for p in timing.runs] == flags
    load = timing.load()
    assert load["disturbed_passes"] == disturbed_passes and load["other_load_max"] == pytest.approx(load_max)
    assert load["other_load_cores"] == pytest.approx(sum(loads) / len(loads), abs=1e-3)
    assert load["disturbed"] == (sum(loads) / len(loads) > DISTURBED_ABOVE_CORES)
    assert timing.load(["a"])["disturbed_passes"] == sum(f for p, f in zip(timing.runs, flags) if p.name == "a")


@pytest.mark.parametrize("interleave,windows", [("pass", [["a"], ["b"]]), ("item", [["a", "b"]])])
def test_the_monitor_knows_which_runners_share_its_window(interleave, windows):
    monitor = FakeMonitor([0.0] * 2)
    time_interleaved({"a": lambda x: x, "b": lambda x: x}, [1], interleave=interleave, monitor=monitor)
    assert monitor.windows == windows


def test_outputs_are_kept_per_pass_when_asked():
    timing = time_interleaved({"double": lambda x: 2 * x}, [1, 2], repeats=2, keep_outputs=True)
    assert [p.outputs for p in timing.runs] == [[2, 4], [2, 4]]
    assert time_interleaved({"double": lambda x: 2 * x}, [1]).runs[0].outputs is None


def test_bad_interleaving_is_refused():
    with pytest.raises(ValueError, match="interleave must be one of"):
        time_interleaved({"a": lambda: None}, interleave="random")
    with pytest.raises(ValueError, match="needs items"):
        time_interleaved({"a": lambda: None}, interleave="item")


def test_load_monitor_counts_this_process_as_ours():
    with LoadMonitor() as monitor:
        # Busy until this process has used 0.1 s of CPU: psutil reads CPU time in clock ticks (10 ms), so a fixed,
        # short loop can finish inside one tick on a fast CPU and read as zero.
        start = time.process_time()
        while time.process_time() - start < 0.1:
            sum(i * i for i in range(10_000))
    assert monitor.own_cpu_s >= 0.05 and monitor.wall_s > 0 and monitor.other_cores >= 0
    assert set(monitor.summary()) == {"other_load_cores", "disturbed"}
