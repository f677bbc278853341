"""Training facts recorded while a Trainer runs (the sentence-transformers pattern): datasets, the hyperparameters
that differ from the defaults, and evaluation metrics by step. Stored as ``fastformers_training.json`` beside the
model, so the card of a Trainer-made model states them without anyone typing them in.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .card_data import TRAINING_FILE, read_json

# Arguments that say where things go, who you are or how the hardware is driven, not how the model was trained (and
# never secrets). fsdp_config and accelerator_config are also filled in by __post_init__, so never look "default".
_NOT_HYPERPARAMETERS = ("output_dir", "logging_dir", "run_name", "overwrite_output_dir", "report_to", "push_to_hub",
                        "resume_from_checkpoint", "local_rank", "disable_tqdm", "logging_first_step", "fsdp",
                        "fsdp_config", "accelerator_config", "deepspeed")


def load_training_facts(model_dir: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(model_dir) / TRAINING_FILE, default={}) or {}


def save_training_facts(model_dir: str | os.PathLike, facts: dict[str, Any]) -> Path:
    """Write the facts atomically (temporary file + rename)."""
    path = Path(model_dir) / TRAINING_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({**facts, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)
    return path


def _plain(value):
    value = getattr(value, "value", value)  # enums (schedulers, strategies) -> their string
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def _defaults(args) -> dict[str, Any]:
    """The declared field defaults of a TrainingArguments-like dataclass. (A fresh instance, as sentence-transformers
    builds, would be closer, but building TrainingArguments resets accelerate's state under a running Trainer.)"""
    out = {}
    for f in dataclasses.fields(args):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def non_default_hyperparameters(args) -> dict[str, Any]:
    """The arguments of ``args`` (TrainingArguments or any dataclass) that differ from their defaults."""
    values = args.to_dict() if hasattr(args, "to_dict") else dataclasses.asdict(args)
    defaults = _defaults(args)
    out = {}
    for name, value in values.items():
        if name in _NOT_HYPERPARAMETERS or "token" in name or name.startswith(("hub_", "push_to_hub")):
            continue
        default = defaults.get(name)
        if not value and not default:  # None, "", [] and {} alike (__post_init__ fills some in)
            continue
        if name not in defaults or _plain(default) != _plain(value):
            out[name] = _plain(value)
    return out


def describe_dataset(dataset, name: str | None = None) -> dict[str, Any]:
    """What can be said about a (Hugging Face) dataset without importing ``datasets``: name, size, columns."""
    info = getattr(dataset, "info", None)
    builder = getattr(info, "dataset_name", None)
    if builder in ("csv", "json", "parquet", "text", "generator", "arrow", "pandas"):
        builder = None  # a file loader, not a name
    config = getattr(info, "config_name", None)
    out = {"name": name or builder, "config": config if config not in (None, "default") else None,
           "split": str(getattr(dataset, "split", None) or "") or None,
           "num_rows": getattr(dataset, "num_rows", None) if hasattr(dataset, "num_rows") else None,
           "columns": list(getattr(dataset, "column_names", None) or []),
           "fingerprint": getattr(dataset, "_fingerprint", None)}
    try:
        out["num_rows"] = out["num_rows"] if out["num_rows"] is not None else len(dataset)
    except TypeError:  # iterable datasets have no length
        pass
    return out
