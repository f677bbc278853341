"""Loading a pruned model back, whatever its shape: :func:`load_pruned` builds the unpruned skeleton from the config,
slices it to the heads and FFN widths recorded in ``config.fastformers`` (per-layer widths included, which no
transformers config can describe) and loads the saved weights into it."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Union

import torch

from ..architectures import get_layers, get_spec
from ..errors import FastFormersError
from ..shape_record import CONFIG_KEY
from .slicing import apply_keep


def _read_state_dict(path: Path) -> dict:
    from safetensors.torch import load_file

    if (path / "model.safetensors").exists():
        return load_file(str(path / "model.safetensors"))
    index = path / "model.safetensors.index.json"
    if index.exists():
        from ..utils.io import read_json

        state = {}
        for shard in sorted(set(read_json(index)["weight_map"].values())):
            state.update(load_file(str(path / shard)))
        return state
    if (path / "pytorch_model.bin").exists():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FastFormersError(f"{path} holds no model.safetensors or pytorch_model.bin; save the model with save_pretrained.")


def load_pruned(path: Union[str, os.PathLike], model_class=None, **config_overrides):
    """Load a model saved after :func:`prune`, whatever its shape (per-layer FFN widths included).

    Plain ``AutoModelForSequenceClassification.from_pretrained`` works for uniform FFN widths in transformers 4.x;
    this builds the model from the ``config.fastformers`` record (unpruned skeleton, then sliced to the recorded
    heads and widths) and loads the weights, so it also covers per-layer widths. Local directories only.
    """
    import transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from ..utils.model_folder import check_model_folder

    path = check_model_folder(path)
    config = AutoConfig.from_pretrained(path, **config_overrides)
    spec = get_spec(config)
    record = getattr(config, CONFIG_KEY, None) or {}
    n_layers = getattr(config, spec.num_layers_attr)
    if record.get("heads_per_layer"):
        heads, ffn = record["heads_per_layer"], record["ffn_width_per_layer"]
    else:  # no record: the config alone describes the shape
        pruned = getattr(config, "pruned_heads", {}) or {}
        heads = [getattr(config, spec.num_heads_attr) - len(pruned.get(i, [])) for i in range(n_layers)]
        ffn = [getattr(config, spec.intermediate_size_attr)] * n_layers
    if len(heads) != n_layers or len(ffn) != n_layers:
        raise FastFormersError(
            f"{path}/config.json records {len(heads)} head counts and {len(ffn)} FFN widths for {n_layers} layers; "
            "the record does not match the model; re-save the model with save_pretrained after prune()."
        )
    # Build the unpruned skeleton (every head, widest FFN), then slice it to the recorded counts. Its weights are
    # overwritten below, so which heads are kept does not matter: the first ones.
    saved = {spec.intermediate_size_attr: getattr(config, spec.intermediate_size_attr)}
    skeleton = copy.deepcopy(config)
    if hasattr(config, "pruned_heads"):
        saved["pruned_heads"] = copy.deepcopy(config.pruned_heads)
        skeleton.pruned_heads = {}
    setattr(skeleton, spec.intermediate_size_attr, max(ffn))
    if model_class is None:
        name = (getattr(config, "architectures", None) or [None])[0]
        model_class = (getattr(transformers, name, None) if name else None) or AutoModelForSequenceClassification
    model = model_class.from_config(skeleton) if hasattr(model_class, "from_config") else model_class(skeleton)
    apply_keep(model, [list(range(h)) for h in heads], [list(range(w)) for w in ffn])
    for k, v in saved.items():  # apply_keep wrote them for the first-heads skeleton; the saved config is the truth
        setattr(model.config, k, v)
    if hasattr(model.config, "pruned_heads"):  # per-module bookkeeping, so a later prune() stays consistent
        for i, layer in enumerate(get_layers(model)):
            layer.get_submodule(spec.heads_holder).pruned_heads = set(model.config.pruned_heads.get(i, []))
    state = _read_state_dict(path)
    built = model.state_dict()
    wrong = [(k, tuple(v.shape), tuple(built[k].shape)) for k, v in state.items()
             if k in built and tuple(v.shape) != tuple(built[k].shape)]
    if wrong:
        key, saved_shape, recorded_shape = wrong[0]
        more = f" (and {len(wrong) - 1} more tensors)" if len(wrong) > 1 else ""
        raise FastFormersError(
            f"the weights in {path} do not match the shape recorded in its config.json (heads per layer {heads}, "
            f"FFN widths {ffn}): {key} has shape {saved_shape} in the weights but {recorded_shape} by the record"
            f"{more}. The config.json and the weights come from different models: save the model again with "
            "save_pretrained.")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # size mismatches
        raise FastFormersError(
            f"the weights in {path} do not fit the shape recorded in its config.json ({e}); the config and the "
            "weights come from different models."
        ) from None
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise FastFormersError(
            f"the weights in {path} do not fit the recorded shape (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}); the config.json and weights come from different models."
        )
    return model.eval()
