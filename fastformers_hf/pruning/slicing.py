"""Physical structured pruning: keep the top heads / FFN neurons of each layer and slice the matrices to them.

Q/K/V rows and the attention output columns of removed heads go, and so do the FFN intermediate rows and output
columns of removed neurons (biases with them; LayerNorms act on the hidden size, which does not change). Nothing is
zeroed: the model is smaller and computes less. The new shape is recorded both in transformers' own
``config.pruned_heads`` + ``intermediate_size`` (so plain ``from_pretrained`` rebuilds a uniformly pruned model in
transformers 4.x) and in the ``config.fastformers`` record (heads and FFN width per layer, source model), which
:func:`fastformers_hf.pruning.load_pruned` uses for any shape.
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn

from ..architectures import get_layers, get_spec
from ..errors import FastFormersError
from ..shape_record import update_record
from .scores import METHODS, ImportanceScores, importance_scores
from .shape import Target, current_shape, resolve_target


def _sliced_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping output rows (dim=0) or input columns (dim=1) ``index``; weights copied, not zeroed."""
    w = linear.weight.detach().index_select(dim, index.to(linear.weight.device)).clone()
    out_f, in_f = w.shape
    new = nn.Linear(in_f, out_f, bias=linear.bias is not None, device=w.device, dtype=w.dtype)
    new.weight = nn.Parameter(w, requires_grad=linear.weight.requires_grad)
    if linear.bias is not None:
        b = linear.bias.detach()
        b = b.index_select(0, index.to(b.device)).clone() if dim == 0 else b.clone()
        new.bias = nn.Parameter(b, requires_grad=linear.bias.requires_grad)
    return new


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def apply_keep(model, keep_heads: list[list[int]], keep_ffn: list[list[int]]) -> dict:
    """Slice every layer to the kept head / neuron indices (sorted, current positions); the low-level step of
    :func:`prune` (which chooses the indices from scores) and of ``load_pruned`` (which rebuilds a recorded shape).

    All new modules are built first and swapped in afterwards, so an error while building changes nothing. Does not
    touch the ``config.fastformers`` record. Returns {new parameter: (old parameter, dim, index or None)} for moving
    optimizer state (see :mod:`fastformers_hf.pruning.optimizer_state`).
    """
    spec = get_spec(model)
    config = model.config
    layers = get_layers(model)
    n_orig = getattr(config, spec.num_heads_attr)
    track_pruned = hasattr(config, "pruned_heads")  # transformers 4.x bookkeeping (gone in 5.x)
    plans = []
    for i, (layer, heads, neurons) in enumerate(zip(layers, keep_heads, keep_ffn)):
        attn = layer.get_submodule(spec.self_attention)
        n_heads = getattr(attn, spec.module_num_heads_attr)
        size = getattr(attn, spec.module_head_size_attr)
        rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in heads])  # kept rows of Q/K/V
        ffn_idx = torch.tensor(neurons, dtype=torch.long)
        new = {}
        if len(heads) != n_heads:
            for name in (spec.query, spec.key, spec.value):
                new[name] = (_sliced_linear(layer.get_submodule(name), rows, 0), 0, rows)
            new[spec.attention_output] = (_sliced_linear(layer.get_submodule(spec.attention_output), rows, 1), 1, rows)
        if len(neurons) != layer.get_submodule(spec.intermediate).out_features:
            new[spec.intermediate] = (_sliced_linear(layer.get_submodule(spec.intermediate), ffn_idx, 0), 0, ffn_idx)
            new[spec.output] = (_sliced_linear(layer.get_submodule(spec.output), ffn_idx, 1), 1, ffn_idx)
        removed = None
        if track_pruned:
            holder = layer.get_submodule(spec.heads_holder)
            already = set(getattr(holder, "pruned_heads", set()))
            remaining = [h for h in range(n_orig) if h not in already]  # original index of each current head
            if len(remaining) != n_heads:
                raise FastFormersError(
                    f"layer {i} has {n_heads} heads but its pruned_heads bookkeeping says {len(remaining)}; the model "
                    "was changed outside fastformers_hf. Reload it with fastformers_hf.load_pruned(path)."
                )
            removed = already | {remaining[h] for h in range(n_heads) if h not in set(heads)}
        plans.append((layer, attn, size, len(heads), new, removed))

    mapping = {}
    for i, (layer, attn, size, n_keep, new, removed) in enumerate(plans):
        for path, (module, dim, index) in new.items():
            old = layer.get_submodule(path)
            mapping[module.weight] = (old.weight, dim, index)
            if module.bias is not None:
                mapping[module.bias] = (old.bias, 0, index if dim == 0 else None)
            _set_submodule(layer, path, module)
        setattr(attn, spec.module_num_heads_attr, n_keep)
        setattr(attn, spec.module_all_head_size_attr, n_keep * size)
        if removed is not None:
            layer.get_submodule(spec.heads_holder).pruned_heads = set(removed)
            if removed:
                config.pruned_heads[i] = sorted(removed)
            else:
                config.pruned_heads.pop(i, None)
    widths = [len(k) for k in keep_ffn]
    setattr(config, spec.intermediate_size_attr, widths[0] if len(set(widths)) == 1 else max(widths))
    return mapping


def prune(
    model,
    heads_per_layer: Target = None,
    ffn_width: Target = None,
    method: str = "first_order",
    dataloader: Optional[Iterable[dict]] = None,
    *,
    scores: Optional[ImportanceScores] = None,
    normalize: bool = True,
    max_batches: Optional[int] = None,
    seed: int = 0,
    return_mapping: bool = False,
):
    """Prune attention heads and FFN neurons of ``model`` in place and return it.

    Args:
        heads_per_layer: heads to keep in each layer: an int (same count everywhere), a float ratio in (0, 1] of the
            heads each layer has now, or a list with one value per layer. ``None`` keeps all heads.
        ffn_width: FFN intermediate neurons to keep per layer, same forms.
        method: ``"first_order"`` (needs ``dataloader``), ``"magnitude"`` or ``"random"``.
        dataloader: batches (dicts of tensors, with ``labels``) of a held-out slice of the *training* data.
        scores: precomputed :func:`importance_scores` (e.g. to prune one scoring to several sizes).
        return_mapping: also return {new parameter: (old parameter, dim, index)}, for
            :func:`~fastformers_hf.pruning.remap_optimizer_in_place` (keep training with the same optimizer) or
            :func:`~fastformers_hf.pruning.remap_optimizer_state` (carry state over to a new optimizer).

    Every input is checked before anything changes; on any error the model is left as it was.
    """
    get_spec(model)  # an unsupported architecture fails here, with its name, before anything else
    before = current_shape(model)
    heads = resolve_target(heads_per_layer, before["heads_per_layer"], "heads_per_layer")
    ffn = resolve_target(ffn_width, before["ffn_width_per_layer"], "ffn_width")
    if scores is None:
        if method not in METHODS:
            raise FastFormersError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}.")
        if heads == before["heads_per_layer"] and ffn == before["ffn_width_per_layer"]:
            scores = None  # nothing to remove: no need to score
        else:
            scores = importance_scores(model, method, dataloader, normalize=normalize, max_batches=max_batches,
                                       seed=seed)
    else:
        got = ([len(s) for s in scores.heads], [len(s) for s in scores.ffn])
        if got != (before["heads_per_layer"], before["ffn_width_per_layer"]):
            raise FastFormersError(
                f"the given scores are for heads {got[0]} / FFN {got[1]} but the model has heads "
                f"{before['heads_per_layer']} / FFN {before['ffn_width_per_layer']}; score the model as it is now."
            )
    if scores is None:
        keep_heads = [list(range(h)) for h in heads]
        keep_ffn = [list(range(w)) for w in ffn]
    else:
        # top-k per layer, then back to ascending order so the kept units stay in their original order
        keep_heads = [sorted(s.topk(k).indices.tolist()) for s, k in zip(scores.heads, heads)]
        keep_ffn = [sorted(s.topk(k).indices.tolist()) for s, k in zip(scores.ffn, ffn)]
    mapping = apply_keep(model, keep_heads, keep_ffn)

    after = current_shape(model)
    source = getattr(model.config, "_name_or_path", None) or None
    update_record(model.config, {
        "step": "structured_pruning",
        "method": scores.method if scores is not None else method,
        "pruned_from": {"model": source, "heads_per_layer": before["heads_per_layer"],
                        "ffn_width_per_layer": before["ffn_width_per_layer"]},
        "heads_per_layer": after["heads_per_layer"],
        "ffn_width_per_layer": after["ffn_width_per_layer"],
        "scoring_examples": scores.num_examples if scores is not None else 0,
        "normalized_scores": scores.normalized if scores is not None else False,
    }, source_model=source, shape=after)
    return (model, mapping) if return_mapping else model
