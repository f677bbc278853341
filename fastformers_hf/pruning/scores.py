"""Importance of every attention head and FFN intermediate neuron, and the data to measure it on.

``first_order`` (Michel et al., 2019): a gate of ones multiplies each head's output and each neuron's activation
(forward pre-hooks on the attention output and FFN output projections, so nothing depends on ``head_mask``, which
transformers 5 removed); the absolute gradient of the loss with respect to each gate, summed over the scoring batches,
is its importance. ``magnitude`` (L2 norm of the unit's weights) and ``random`` are baselines.

Score on a held-out slice of the *training* data (:func:`held_out_split`, :func:`scoring_dataloader`), never on the
evaluation set: head selection is model selection, and scoring on the evaluation set makes its accuracy optimistic.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch
import torch.nn.functional as F

from ..architectures import ArchitectureSpec, get_layers, get_spec
from ..errors import FastFormersError
from ..tasks.choice_mask import MASK_COLUMN, forward_masked
from ..tasks.kinds import kind_of
from .shape import current_shape

METHODS = ("first_order", "magnitude", "random")


@dataclass
class ImportanceScores:
    """One score per head and per FFN neuron of each layer (higher = more important)."""

    heads: list[torch.Tensor]  # per layer: (heads_l,)
    ffn: list[torch.Tensor]  # per layer: (ffn_width_l,)
    method: str
    num_examples: int = 0
    normalized: bool = False
    extra: dict = field(default_factory=dict)


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
    accepted.add(MASK_COLUMN)  # taken out again by forward_masked (multiple choice with padded choices)
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
            out, _ = forward_masked(model, inputs)  # padded choices (multiple choice): the loss on the real ones
            if out.loss is not None:  # the head's own loss: class, regression, token or span (start/end) labels
                loss = out.loss
            else:  # no labels: the model's own predictions as targets, for each output of its kind
                loss = sum(F.cross_entropy(x.flatten(0, -2), x.detach().flatten(0, -2).argmax(-1))  # (N, C)
                           for x in (out[name] for name in kind_of(model).outputs))
            loss.backward()
            for gates, scores in ((head_gates, head_scores), (ffn_gates, ffn_scores)):
                for g, s in zip(gates, scores):
                    if g.grad is not None:  # None only if a layer does not reach the loss
                        s += g.grad.detach().abs().cpu()
                        g.grad = None
            n_batches += 1
            n_examples += int(next(v for v in inputs.values() if torch.is_tensor(v)).shape[0])
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
    model's input columns and the labels. Given the ``model``, batches are padded as its kind of head needs (token
    labels with -100, choices nested)."""
    import transformers

    if collate_fn is None:
        if tokenizer is None:
            raise FastFormersError("scoring_dataloader needs the tokenizer (for padding) or a collate_fn.")
        from ..distillation.losses import make_collator

        collate_fn = (make_collator(kind_of(model), tokenizer) if model is not None
                      else transformers.DataCollatorWithPadding(tokenizer))
    labels = {"labels", "label", "start_positions", "end_positions"}  # classification / token labels; QA spans
    wanted = {"input_ids", "attention_mask", "token_type_ids"} | labels
    if model is not None:
        wanted = (wanted & labels) | set(inspect.signature(model.forward).parameters)
    keep = [c for c in dataset.column_names if c in wanted]
    return torch.utils.data.DataLoader(dataset.select_columns(keep), batch_size=batch_size, collate_fn=collate_fn)
