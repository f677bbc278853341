"""Structured pruning: remove whole attention heads and FFN neurons so the model really computes less.

FastFormers §3, after Michel et al. (2019, "Are Sixteen Heads Really Better than One?") and DynaBERT:

1. **Score** every head and every FFN intermediate neuron. ``first_order``: a gate of ones multiplies each head's
   output and each neuron's activation (forward pre-hooks on the attention output and FFN output projections, so
   nothing depends on ``head_mask``, which transformers 5 removed); the absolute gradient of the loss with respect to
   each gate, summed over the scoring batches, is its importance. ``magnitude`` (L2 norm of the unit's weights) and
   ``random`` are baselines.
2. **Keep** the top heads / neurons of each layer and physically slice Q/K/V/output and the FFN matrices (biases
   with them; LayerNorms act on the hidden size, which does not change). Nothing is zeroed: the model is smaller.
3. **Record** the shape: transformers' own ``config.pruned_heads`` + ``intermediate_size`` (so plain
   ``from_pretrained`` rebuilds a uniformly pruned model in transformers 4.x) and our ``config.fastformers`` record
   (heads and FFN width per layer, source model), which :func:`load_pruned` uses for any shape.
4. **Recover** accuracy by distilling from the unpruned model (``DistillationTrainer``).

Which data to score on: a held-out slice of the *training* data (:func:`held_out_split`), never the evaluation
set. Head selection is a form of model selection: scoring on the evaluation set tunes the architecture to those
examples and the reported accuracy is then optimistic. A slice not used for re-distillation also keeps the scores
free of what the recovery training will fit.
"""
from __future__ import annotations

import copy
import inspect
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..architectures import ArchitectureSpec, get_layers, get_spec
from ..errors import FastFormersError
from ..shape_record import CONFIG_KEY, update_record

METHODS = ("first_order", "magnitude", "random")

Target = Union[None, int, float, Sequence[Union[int, float]]]


@dataclass
class ImportanceScores:
    """One score per head and per FFN neuron of each layer (higher = more important)."""

    heads: list[torch.Tensor]  # per layer: (heads_l,)
    ffn: list[torch.Tensor]  # per layer: (ffn_width_l,)
    method: str
    num_examples: int = 0
    normalized: bool = False
    extra: dict = field(default_factory=dict)


# -- shape ---------------------------------------------------------------------------------------------------------


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


# -- scoring -------------------------------------------------------------------------------------------------------


def _gate_hook(mask: torch.Tensor, groups: int):
    """A forward pre-hook multiplying the last dim of the input, viewed as (groups, -1), by ``mask`` (groups,)."""

    def hook(module, args):
        x = args[0]  # (B, T, groups * size)
        gated = (x.unflatten(-1, (groups, -1)) * mask.to(x.dtype)[:, None]).flatten(-2)  # (B, T, groups, size) -> back
        return (gated,) + tuple(args[1:])

    return hook


def _model_inputs(model, batch: dict, device) -> dict:
    accepted = set(inspect.signature(model.forward).parameters)
    batch = dict(batch)
    if "labels" not in batch and "label" in batch:
        batch["labels"] = batch.pop("label")
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items() if k in accepted}


def _first_order_scores(model, spec: ArchitectureSpec, dataloader, max_batches: Optional[int]) -> ImportanceScores:
    if dataloader is None:
        raise FastFormersError(
            "method='first_order' needs dataloader=... (batches of a held-out slice of the training data, see "
            "held_out_split/scoring_dataloader); or use method='magnitude' or 'random', which need no data."
        )
    layers = get_layers(model)
    shape = current_shape(model)
    device = next(model.parameters()).device
    head_gates = [torch.ones(h, device=device, requires_grad=True) for h in shape["heads_per_layer"]]
    ffn_gates = [torch.ones(w, device=device, requires_grad=True) for w in shape["ffn_width_per_layer"]]
    head_scores = [torch.zeros(h) for h in shape["heads_per_layer"]]
    ffn_scores = [torch.zeros(w) for w in shape["ffn_width_per_layer"]]
    hooks = []
    was_training = model.training
    grad_flags = [(p, p.requires_grad) for p in model.parameters()]
    problem_type = getattr(model.config, "problem_type", None)  # a forward with labels may set it
    n_examples = n_batches = 0
    try:
        for layer, hg, fg in zip(layers, head_gates, ffn_gates):
            # The attention output projection's input is the concatenated head contexts: (B, T, heads * head_size).
            hooks.append(layer.get_submodule(spec.attention_output).register_forward_pre_hook(_gate_hook(hg, len(hg))))
            # The FFN output projection's input is the activated intermediate layer: (B, T, width).
            hooks.append(layer.get_submodule(spec.output).register_forward_pre_hook(_gate_hook(fg, len(fg))))
        model.eval()  # no dropout: the scores should not depend on the dropout draw
        for p, _ in grad_flags:
            p.requires_grad_(False)  # only the gates need gradients: skips the weight gradients entirely
        for i, batch in enumerate(dataloader):
            if max_batches is not None and i >= max_batches:
                break
            inputs = _model_inputs(model, batch, device)
            out = model(**inputs)
            if out.loss is not None:
                loss = out.loss
            else:  # no labels: the model's own predictions as targets
                loss = F.cross_entropy(out.logits, out.logits.detach().argmax(-1))
            loss.backward()
            for gates, scores in ((head_gates, head_scores), (ffn_gates, ffn_scores)):
                for g, s in zip(gates, scores):
                    if g.grad is not None:  # None only if a layer does not reach the loss
                        s += g.grad.detach().abs().cpu()
                        g.grad = None
            n_batches += 1
            n_examples += int(out.logits.shape[0])
    finally:
        for h in hooks:
            h.remove()
        for p, flag in grad_flags:
            p.requires_grad_(flag)
        model.train(was_training)
        model.config.problem_type = problem_type
    if n_batches == 0:
        raise FastFormersError("the scoring dataloader yielded no batches; give it at least one batch of examples.")
    return ImportanceScores(head_scores, ffn_scores, "first_order", num_examples=n_examples)


def _magnitude_scores(model, spec: ArchitectureSpec) -> ImportanceScores:
    heads, ffn = [], []
    for layer, n_heads in zip(get_layers(model), current_shape(model)["heads_per_layer"]):
        sq = torch.zeros(n_heads)
        for name in (spec.query, spec.key, spec.value):
            w = layer.get_submodule(name).weight.detach().float().cpu()  # (heads * size, hidden)
            sq += w.unflatten(0, (n_heads, -1)).pow(2).sum((1, 2))
        w_o = layer.get_submodule(spec.attention_output).weight.detach().float().cpu()  # (hidden, heads * size)
        sq += w_o.unflatten(1, (n_heads, -1)).pow(2).sum((0, 2))
        heads.append(sq.sqrt())
        w_in = layer.get_submodule(spec.intermediate).weight.detach().float().cpu()  # (width, hidden)
        w_out = layer.get_submodule(spec.output).weight.detach().float().cpu()  # (hidden, width)
        ffn.append((w_in.pow(2).sum(1) + w_out.pow(2).sum(0)).sqrt())
    return ImportanceScores(heads, ffn, "magnitude")


def _random_scores(model, seed: int) -> ImportanceScores:
    g = torch.Generator().manual_seed(seed)
    shape = current_shape(model)
    return ImportanceScores([torch.rand(h, generator=g) for h in shape["heads_per_layer"]],
                            [torch.rand(w, generator=g) for w in shape["ffn_width_per_layer"]], "random")


def importance_scores(model, method: str = "first_order", dataloader: Optional[Iterable[dict]] = None,
                      normalize: bool = True, max_batches: Optional[int] = None, seed: int = 0) -> ImportanceScores:
    """Score every head and FFN neuron of ``model`` (which is not changed).

    ``normalize`` divides each layer's scores by their L2 norm (Michel et al.), so layers are comparable; it does
    not change which units a per-layer target keeps.
    """
    spec = get_spec(model)
    if method not in METHODS:
        raise FastFormersError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}.")
    if method == "first_order":
        scores = _first_order_scores(model, spec, dataloader, max_batches)
    elif method == "magnitude":
        scores = _magnitude_scores(model, spec)
    else:
        scores = _random_scores(model, seed)
    if normalize:
        scores.heads = [s / (s.norm() + 1e-20) for s in scores.heads]
        scores.ffn = [s / (s.norm() + 1e-20) for s in scores.ffn]
        scores.normalized = True
    return scores


# -- slicing -------------------------------------------------------------------------------------------------------


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


def _apply_keep(model, keep_heads: list[list[int]], keep_ffn: list[list[int]]) -> dict:
    """Slice every layer to the kept head / neuron indices (sorted, current positions).

    All new modules are built first and swapped in afterwards, so an error while building changes nothing.
    Returns {new parameter: (old parameter, dim, index or None)} for moving optimizer state.
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
        return_mapping: also return {new parameter: (old parameter, dim, index)} (see :func:`remap_optimizer_state`).

    Every input is checked before anything changes; on any error the model is left as it was.
    """
    spec = get_spec(model)
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
    mapping = _apply_keep(model, keep_heads, keep_ffn)

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


# -- optimizer state -------------------------------------------------------------------------------------------------


def remap_optimizer_state(old_optimizer: torch.optim.Optimizer, new_optimizer: torch.optim.Optimizer,
                          mapping: dict) -> int:
    """Carry per-parameter optimizer state (e.g. Adam moments) over to a new optimizer after :func:`prune`.

    Unchanged parameters keep their state; sliced ones get their state sliced the same way. Returns how many
    parameters got state.
    """
    moved = 0
    for group in new_optimizer.param_groups:
        for p in group["params"]:
            old_p, dim, index = mapping.get(p, (p, None, None))
            state = old_optimizer.state.get(old_p)
            if not state:
                continue
            new_state = {}
            for k, v in state.items():
                if torch.is_tensor(v) and index is not None and v.shape == old_p.shape:
                    v = v.index_select(dim, index.to(v.device))
                new_state[k] = v.clone() if torch.is_tensor(v) else copy.deepcopy(v)
            new_optimizer.state[p] = new_state
            moved += 1
    return moved


# -- data for scoring ------------------------------------------------------------------------------------------------


def held_out_split(dataset, num_examples: int = 1000, seed: int = 0):
    """``(rest, held_out)``: ``num_examples`` random rows set aside for scoring, the rest for (re-)training."""
    if not 0 < num_examples < len(dataset):
        raise FastFormersError(
            f"num_examples must be between 1 and {len(dataset) - 1} (the dataset has {len(dataset)} rows), "
            f"got {num_examples}."
        )
    split = dataset.train_test_split(test_size=num_examples, seed=seed, shuffle=True)
    return split["train"], split["test"]


def scoring_dataloader(dataset, tokenizer=None, batch_size: int = 32, collate_fn=None, model=None):
    """A DataLoader over a tokenised dataset for :func:`prune`: pads each batch (dynamic length) and keeps only the
    model's input columns and the labels."""
    from transformers import DataCollatorWithPadding

    if collate_fn is None:
        if tokenizer is None:
            raise FastFormersError("scoring_dataloader needs the tokenizer (for padding) or a collate_fn.")
        collate_fn = DataCollatorWithPadding(tokenizer)
    wanted = {"input_ids", "attention_mask", "token_type_ids", "labels", "label"}
    if model is not None:
        wanted = (wanted & {"labels", "label"}) | set(inspect.signature(model.forward).parameters)
    keep = [c for c in dataset.column_names if c in wanted]
    return torch.utils.data.DataLoader(dataset.select_columns(keep), batch_size=batch_size, collate_fn=collate_fn)


# -- loading ---------------------------------------------------------------------------------------------------------


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
    _apply_keep(model, [list(range(h)) for h in heads], [list(range(w)) for w in ffn])
    for k, v in saved.items():  # _apply_keep wrote them for the first-heads skeleton; the saved config is the truth
        setattr(model.config, k, v)
    if hasattr(model.config, "pruned_heads"):  # per-module bookkeeping, so a later prune() stays consistent
        for i, layer in enumerate(get_layers(model)):
            layer.get_submodule(spec.heads_holder).pruned_heads = set(model.config.pruned_heads.get(i, []))
    state = _read_state_dict(path)
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
