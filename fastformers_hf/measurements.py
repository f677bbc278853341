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

import psutil

from .utils.io import read_json, write_json

MEASUREMENTS_FILE = "fastformers_measurements.json"


# Instruction sets that decide which int8/bf16 kernels ONNX Runtime and PyTorch run; two CPUs with the same model
# name but different flags give different speed-ups. Only those present are recorded.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
                "asimddp", "i8mm", "sve")
LIBRARIES = ("torch", "transformers", "onnxruntime", "optimum")


def cpu_info() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (``model name``, ``cpu family``, ``flags``...); {} where
    there is no such file."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    if info:
                        break  # the first processor is enough: they are alike
                    continue
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_flags(info: dict[str, str] | None = None) -> list[str]:
    """Every instruction-set flag of the CPU (``flags`` on x86, ``Features`` on ARM)."""
    info = cpu_info() if info is None else info
    return (info.get("flags") or info.get("Features") or "").split()


def _number(text: str | None) -> int | str | None:
    return int(text) if text and text.isdigit() else text


def machine_description() -> dict[str, Any]:
    """Where a measurement was taken: CPU model name, vendor, family and model numbers (the name alone, e.g.
    "AMD EPYC", does not say which generation), the vector flags present, logical and physical cores, versions."""
    info = cpu_info()
    flags = set(cpu_flags(info))
    logical = os.cpu_count()
    machine: dict[str, Any] = {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "vendor": info.get("vendor_id") or info.get("CPU implementer"),
        "cpu_family": _number(info.get("cpu family")), "cpu_model": _number(info.get("model") or info.get("CPU part")),
        "vector_flags": [f for f in VECTOR_FLAGS if f in flags],
        "cores": logical,  # logical CPUs; the name older records and model cards read
        "logical_cores": logical, "physical_cores": psutil.cpu_count(logical=False),
        "python": sys.version.split()[0]}
    for mod in LIBRARIES:
        try:
            machine[mod] = __import__(mod).__version__
        except Exception:  # not installed, or no __version__
            pass
    return machine


def machine_text(machine: dict[str, Any] | None) -> str:
    """One line for Markdown reports: CPU with vendor, family and model, vector flags, cores, library versions.
    Records from before some of these fields existed show the fields they have."""
    if not machine:
        return "not recorded"
    m = machine
    ids = [m.get("vendor"), *(f"{label} {m[key]}" for key, label in (("cpu_family", "family"), ("cpu_model", "model"))
                              if m.get(key) is not None)]
    cpu = m.get("cpu") or "unknown CPU"
    parts = [f"{cpu} ({', '.join(x for x in ids if x)})" if any(ids) else cpu]
    if "vector_flags" in m:
        parts.append("vector flags: " + (" ".join(m["vector_flags"]) or "none"))
    if m.get("physical_cores"):
        parts.append(f"{m.get('logical_cores') or m.get('cores')} logical / {m['physical_cores']} physical cores")
    elif m.get("cores"):
        parts.append(f"{m['cores']} cores")
    parts += [f"{k} {m[k]}" for k in ("python", *LIBRARIES) if m.get(k)]
    return ", ".join(parts)


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
