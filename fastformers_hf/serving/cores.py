"""Physical cores and how instances are laid out on them.

FastFormers §4.3 serves on CPU with several independent model instances, each pinned to its own cores with a
fixed, small intra-op thread count: one instance with all cores spends much of its time synchronising threads
inside each operator, while instances of one thread each never wait on one another. :func:`physical_cores` says
which logical CPUs this process may use, grouped by physical core; :func:`plan_instances` gives each instance
cores of its own and refuses (or clamps) more threads than there are cores.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import FastFormersError

logger = logging.getLogger(__name__)

OVERSUBSCRIBE_POLICIES = ("error", "clamp")


def physical_cores() -> list[list[int]]:
    """Logical CPUs this process may run on, grouped by physical core (hyper-thread siblings together).

    Reads ``/sys/devices/system/cpu/cpuN/topology``; where it is missing each logical CPU counts as a core.
    """
    groups: dict[Any, list[int]] = {}
    for cpu in sorted(os.sched_getaffinity(0)):
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            key = ((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip())
        except OSError:
            key = ("cpu", cpu)
        groups.setdefault(key, []).append(cpu)
    return list(groups.values())


@dataclass
class InstancePlan:
    """How many workers run, with how many threads each, on which logical CPUs."""

    num_instances: int
    threads_per_instance: int
    cpus: list[list[int]]  # per worker: the logical CPUs it is pinned to (one per physical core it owns)
    physical_cores: int
    note: str = ""


def plan_instances(num_instances: Optional[int], threads_per_instance: int = 1, oversubscribe: str = "error",
                   cores: Optional[list[list[int]]] = None) -> InstancePlan:
    """Give each instance ``threads_per_instance`` physical cores of its own.

    ``num_instances=None`` fills the machine (cores // threads). More threads in total than physical cores is
    refused (``oversubscribe="error"``, the default) or reduced (``"clamp"``: fewer threads per instance first,
    then fewer instances), with a warning that says what was changed.
    """
    cores = physical_cores() if cores is None else cores
    n_cores = len(cores)
    if threads_per_instance < 1:
        raise FastFormersError(f"threads_per_instance must be >= 1, got {threads_per_instance}.")
    if num_instances is not None and num_instances < 1:
        raise FastFormersError(f"num_instances must be >= 1, got {num_instances}.")
    if oversubscribe not in OVERSUBSCRIBE_POLICIES:
        raise FastFormersError(f"oversubscribe must be one of {OVERSUBSCRIBE_POLICIES}, got {oversubscribe!r}.")
    threads = threads_per_instance
    instances = num_instances if num_instances is not None else max(1, n_cores // threads)
    note = ""
    if instances * threads > n_cores:
        msg = (f"{instances} instance(s) x {threads} thread(s) = {instances * threads} threads, but this process "
               f"may use {n_cores} physical core(s)")
        if oversubscribe == "error":
            raise FastFormersError(f"{msg}; threads would compete for cores and every instance would slow down. Use "
                                   f"at most {n_cores} instance(s) x threads in total (e.g. num_instances="
                                   f"{max(1, n_cores // threads)}), or oversubscribe='clamp' to reduce it.")
        threads = max(1, min(threads, n_cores // instances))
        instances = min(instances, max(1, n_cores // threads))
        note = f"{msg}; clamped to {instances} instance(s) x {threads} thread(s)."
        logger.warning(note)
    cpus = [[cores[i * threads + j][0] for j in range(threads)] for i in range(instances)]
    return InstancePlan(instances, threads, cpus, n_cores, note)
