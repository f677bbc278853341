"""Make a pruned model folder load with plain transformers 4.x and 5.x: ``from_pretrained(..., trust_remote_code=True)``.

A model whose recorded shape (``config.fastformers``: heads kept per layer, FFN width per layer) a transformers config
cannot describe (any pruned head under transformers 5, per-layer FFN widths under any version) gets
:data:`MODELING_FILE` (``modeling_fastformers.py``, which depends on torch and transformers only) copied into its folder
and an ``auto_map`` entry in its ``config.json`` pointing its kind's Auto class (``AutoModelForQuestionAnswering``, ...)
to the class of the same name as its architecture in that file. Folders of native shape are left untouched.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

from ..architectures import ARCHITECTURES, get_spec
from ..errors import FastFormersError
from ..shape_record import shape_of
from ..utils.io import read_json, write_json

MODELING_FILE = "modeling_fastformers.py"
TEMPLATE = Path(__file__).with_name(MODELING_FILE)
_MODULE = MODELING_FILE[: -len(".py")]


def needs_remote_code(config_dict: Mapping[str, Any]) -> bool:
    """True when the recorded shape cannot be described by the config alone: a layer with fewer heads than
    ``num_attention_heads`` (transformers 5 has no ``pruned_heads``) or an FFN width other than ``intermediate_size``."""
    spec = ARCHITECTURES.get(config_dict.get("model_type"))
    if spec is None:
        return False
    shape = shape_of(dict(config_dict))
    n_heads, width = config_dict[spec.num_heads_attr], config_dict[spec.intermediate_size_attr]
    return (any(h != n_heads for h in shape.get("heads_per_layer") or [])
            or any(w != width for w in shape.get("ffn_width_per_layer") or []))


def remote_class_name(config_dict: Mapping[str, Any]) -> str:
    """The class in :data:`MODELING_FILE` for this config: its transformers architecture name, e.g.
    ``"BertForQuestionAnswering"``."""
    from ..tasks.kinds import kind_of
    from .modeling_fastformers import LAYOUTS  # imports transformers

    get_spec(SimpleNamespace(model_type=config_dict.get("model_type")))  # unsupported: fails here, with its name
    return LAYOUTS[config_dict["model_type"]]["prefix"] + kind_of(dict(config_dict)).architecture_suffix


def add_remote_code(folder: str | os.PathLike) -> bool:
    """Copy :data:`MODELING_FILE` into ``folder`` and register it in ``config.json``'s ``auto_map`` when the recorded
    shape needs it; returns whether it did. A folder of native shape is left untouched (returns False)."""
    from ..tasks.kinds import kind_of

    folder = Path(folder)
    config = read_json(folder / "config.json")
    if config is None:
        raise FastFormersError(f"{folder} holds no config.json; pass a folder written by save_pretrained.")
    if not needs_remote_code(config):
        return False
    name = remote_class_name(config)
    auto_class = kind_of(config).auto_model
    shutil.copyfile(TEMPLATE, folder / MODELING_FILE)
    config["auto_map"] = {**(config.get("auto_map") or {}), auto_class: f"{_MODULE}.{name}"}
    write_json(folder / "config.json", config)
    return True


def save_model_folder(model, folder: str | os.PathLike, tokenizer=None) -> Path:
    """``model.save_pretrained(folder)`` (and the tokenizer's), then :func:`add_remote_code`: the one way this
    package writes a model folder, so every pruned model it saves loads with plain transformers 4.x and 5.x."""
    folder = Path(folder)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    add_remote_code(folder)
    return folder


__all__ = ["MODELING_FILE", "TEMPLATE", "add_remote_code", "needs_remote_code", "remote_class_name",
           "save_model_folder"]
