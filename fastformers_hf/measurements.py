"""Measured facts about a model directory (accuracy, latency, size), recorded where the model lives.

Model cards and reports read numbers only from here, never from typed-in values. Each entry says what was
measured, on what data, on which machine and by which command, so that anyone can rerun it.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from .utils.io import read_json, write_json

MEASUREMENTS_FILE = "fastformers_measurements.json"


def machine_description() -> dict[str, Any]:
    """Where a measurement was taken: CPU model, core count, library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0]}
    for mod in ("torch", "transformers", "onnxruntime", "optimum"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # not installed, or no __version__
            pass
    return info


def load_measurements(model_dir: str | os.PathLike) -> list[dict[str, Any]]:
    return read_json(Path(model_dir) / MEASUREMENTS_FILE, default=[])


def record_measurement(
    model_dir: str | os.PathLike,
    metric: str,
    value: float,
    *,
    dataset: str | None = None,
    split: str | None = None,
    unit: str | None = None,
    variant: str = "pytorch",
    command: str | None = None,
    machine: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Append one measurement to ``model_dir/fastformers_measurements.json``; a later entry with the same
    (metric, dataset, split, variant, extra settings) replaces an earlier one."""
    entry = {
        "metric": metric,
        "value": value,
        "unit": unit,
        "dataset": dataset,
        "split": split,
        "variant": variant,
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine or machine_description(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
    key_fields = ("metric", "dataset", "split", "variant", *sorted(extra))

    def key(e):
        return tuple(str(e.get(k)) for k in key_fields)

    entries = [e for e in load_measurements(model_dir) if key(e) != key(entry)]
    entries.append(entry)
    write_json(Path(model_dir) / MEASUREMENTS_FILE, entries)
    return entry
