"""The self-describing record of how a model was compressed, stored in its ``config.json``.

transformers 4.57 can rebuild a head-pruned model from ``config.pruned_heads`` + ``intermediate_size``, but
transformers 5 removed ``pruned_heads`` and neither supports per-layer FFN widths. So every model we change also
carries our own record under ``config.fastformers``: the shape (heads kept per layer, FFN width per layer,
layers) and the recipe steps that produced it. It is plain JSON, versioned, and readable without torch.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from .utils.io import read_json

CONFIG_KEY = "fastformers"
RECORD_VERSION = 1


def _config_dict(model_or_dir) -> dict[str, Any]:
    if isinstance(model_or_dir, (str, os.PathLike)):
        path = Path(model_or_dir)
        cfg = read_json(path / "config.json" if path.is_dir() else path)
        if cfg is None:
            from .errors import FastFormersError

            raise FastFormersError(f"{model_or_dir} holds no config.json; pass a model directory saved with save_pretrained.")
        return cfg
    config = getattr(model_or_dir, "config", model_or_dir)
    return config.to_dict()


def shape_of(config_dict: dict[str, Any]) -> dict[str, Any]:
    """Heads kept per layer, FFN width per layer and layer count, from a config dict (any supported type)."""
    from .architectures import ARCHITECTURES

    spec = ARCHITECTURES.get(config_dict.get("model_type"))
    record = config_dict.get(CONFIG_KEY) or {}
    if "heads_per_layer" in record:
        return {k: copy.deepcopy(record[k]) for k in ("num_layers", "heads_per_layer", "ffn_width_per_layer")}
    if spec is None:
        return {}
    n_layers = config_dict[spec.num_layers_attr]
    n_heads = config_dict[spec.num_heads_attr]
    pruned = config_dict.get("pruned_heads") or {}
    heads = [n_heads - len(pruned.get(str(i), pruned.get(i, []))) for i in range(n_layers)]
    ffn = [config_dict[spec.intermediate_size_attr]] * n_layers
    return {"num_layers": n_layers, "heads_per_layer": heads, "ffn_width_per_layer": ffn}


def compression_record(model_or_dir) -> dict[str, Any]:
    """The recorded shape and recipe of a model (a loaded model, a config, or a directory).

    Returns ``{"version", "source_model", "steps", "num_layers", "heads_per_layer", "ffn_width_per_layer",
    "model_type"}``; a model we never touched gets its plain shape and no steps.
    """
    cfg = _config_dict(model_or_dir)
    record = copy.deepcopy(cfg.get(CONFIG_KEY) or {})
    record.setdefault("version", RECORD_VERSION)
    record.setdefault("source_model", None)
    record.setdefault("steps", [])
    record.update(shape_of(cfg))
    record["model_type"] = cfg.get("model_type")
    return record


def update_record(
    config, step: dict[str, Any], source_model: str | None = None, shape: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Append a recipe step to ``config.fastformers`` and refresh the recorded shape.

    The shape is read from ``config`` unless given (per-layer FFN widths cannot be read from a plain config).
    """
    record = copy.deepcopy(getattr(config, CONFIG_KEY, None) or {})
    record["version"] = RECORD_VERSION
    if source_model is not None and not record.get("source_model"):
        record["source_model"] = source_model
    record.setdefault("steps", []).append(step)
    # Drop the stored shape first so shape_of reads the config itself, then store the fresh one.
    cfg = config.to_dict()
    cfg.pop(CONFIG_KEY, None)
    if shape is None:
        shape = shape_of(cfg)
        # A recorded shape with the same layer count is kept: it may hold what the config cannot express
        # (per-layer FFN widths, head counts under transformers 5); steps that change it pass ``shape``.
        if record.get("heads_per_layer") and record.get("num_layers") == shape.get("num_layers"):
            shape = {k: record[k] for k in ("num_layers", "heads_per_layer", "ffn_width_per_layer")}
    record.update(shape)
    setattr(config, CONFIG_KEY, record)
    return record
