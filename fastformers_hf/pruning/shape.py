"""What a model's shape is now (heads and FFN width per layer, read from its modules) and how a pruning target
(count, ratio or per-layer list) resolves to the number of units each layer keeps."""
from __future__ import annotations

import numbers
from typing import Sequence, Union

from ..architectures import get_layers, get_spec
from ..errors import FastFormersError

Target = Union[None, int, float, Sequence[Union[int, float]]]


def current_shape(model) -> dict:
    """Heads and FFN width of each layer, read from the modules themselves (the truth, whatever the config says)."""
    spec = get_spec(model)
    layers = get_layers(model)
    heads = [int(getattr(layer.get_submodule(spec.self_attention), spec.module_num_heads_attr)) for layer in layers]
    ffn = [int(layer.get_submodule(spec.intermediate).out_features) for layer in layers]
    return {"num_layers": len(layers), "heads_per_layer": heads, "ffn_width_per_layer": ffn}


def resolve_target(target: Target, current: list[int], what: str) -> list[int]:
    """Units to keep in each layer. ``None``: all; an int: that count everywhere; a float in (0, 1]: that fraction of
    what each layer has now (rounded, at least 1); a list: one int or float per layer."""
    n_layers = len(current)
    if target is None:
        return list(current)
    if isinstance(target, (list, tuple)):
        if len(target) != n_layers:
            raise FastFormersError(
                f"{what} plan has {len(target)} entries but the model has {n_layers} layers; give one value per "
                f"layer, or a single int/float for every layer."
            )
        items = list(target)
    else:
        items = [target] * n_layers
    out = []
    for i, (t, have) in enumerate(zip(items, current)):
        if isinstance(t, bool) or not isinstance(t, numbers.Real):
            raise FastFormersError(f"{what} for layer {i} must be an int (count) or a float ratio in (0, 1], got {t!r}.")
        if not isinstance(t, numbers.Integral):
            if not 0.0 < t <= 1.0:
                raise FastFormersError(
                    f"{what} ratio for layer {i} must be in (0, 1], got {t}; pass an int to give a count instead."
                )
            keep = max(1, round(t * have))
        else:
            keep = int(t)
        if keep < 1:
            raise FastFormersError(
                f"{what} for layer {i} is {keep}: a layer must keep at least 1; to drop whole layers use "
                "make_student(num_layers=...)."
            )
        if keep > have:
            raise FastFormersError(f"{what} for layer {i} is {keep} but the layer only has {have}; keep at most {have}.")
        out.append(int(keep))
    return out
