"""Load a model pruned by fastformers-hf with plain transformers (4.x or 5.x): ``trust_remote_code=True``.

The model's ``config.json`` records its shape under ``"fastformers"``: the attention heads kept in each layer
(``heads_per_layer``) and the FFN width of each layer (``ffn_width_per_layer``). A transformers config cannot say
this (transformers 5 derives the head size from hidden_size / num_attention_heads and has no ``pruned_heads``;
neither version has per-layer FFN widths), so each class here is the standard transformers class of the same name
(``BertForSequenceClassification``, ...), built as usual and then shrunk, layer by layer, to the recorded shape:
Q/K/V and attention-output Linears to ``heads x head size``, the FFN Linears to the recorded width. The forward
is transformers' own; the weights load by name as usual. Without a record it falls back to ``pruned_heads`` and
``intermediate_size``, and a model of native shape is left exactly as transformers builds it.

This file depends on nothing but torch and transformers.

    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained("path/or/repo", trust_remote_code=True)
"""
import os
import shutil

import transformers
from torch import nn

RECORD_KEY = "fastformers"  # the key of the shape record in config.json

_BERT_LIKE = {
    "layers": "encoder.layer", "attention": "attention.self", "holder": "attention",
    "linears": ("attention.self.query", "attention.self.key", "attention.self.value"),
    "attention_output": "attention.output.dense", "ffn_in": "intermediate.dense", "ffn_out": "output.dense",
    "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads", "ffn_width": "intermediate_size",
    # attributes of the attention module that its forward reads (4.x: heads and all; 5.x: the head size only)
    "heads_attr": "num_attention_heads", "width_attr": "all_head_size",
}
LAYOUTS = {
    "bert": dict(_BERT_LIKE, prefix="Bert"),  # MiniLM ships as BERT
    "roberta": dict(_BERT_LIKE, prefix="Roberta"),
    "xlm-roberta": dict(_BERT_LIKE, prefix="XLMRoberta"),
    "electra": dict(_BERT_LIKE, prefix="Electra"),
    "distilbert": {
        "prefix": "DistilBert", "layers": "transformer.layer", "attention": "attention", "holder": "attention",
        "linears": ("attention.q_lin", "attention.k_lin", "attention.v_lin"),
        "attention_output": "attention.out_lin", "ffn_in": "ffn.lin1", "ffn_out": "ffn.lin2",
        "num_layers": "n_layers", "num_heads": "n_heads", "ffn_width": "hidden_dim",
        "heads_attr": "n_heads", "width_attr": "dim",
    },
}
HEADS = ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering", "ForMultipleChoice")


def _pruned_heads(config, layer):
    pruned = getattr(config, "pruned_heads", None) or {}
    return list(pruned.get(layer, pruned.get(str(layer), [])))


def recorded_shape(config):
    """``(heads per layer, FFN width per layer)`` of the saved model: the fastformers record, else what
    ``pruned_heads`` and ``intermediate_size`` say."""
    layout = LAYOUTS[config.model_type]
    n_layers = getattr(config, layout["num_layers"])
    record = getattr(config, RECORD_KEY, None) or {}
    if record.get("heads_per_layer"):
        heads, widths = list(record["heads_per_layer"]), list(record["ffn_width_per_layer"])
    else:
        n_heads = getattr(config, layout["num_heads"])
        heads = [n_heads - len(_pruned_heads(config, i)) for i in range(n_layers)]
        widths = [getattr(config, layout["ffn_width"])] * n_layers
    if len(heads) != n_layers or len(widths) != n_layers:
        raise ValueError(
            f"config.json records {len(heads)} head counts and {len(widths)} FFN widths for {n_layers} layers; "
            "the record does not belong to this model.")
    if min(heads) < 1 or min(widths) < 1:
        raise ValueError(f"config.json records an empty layer (heads {heads}, FFN widths {widths}).")
    return heads, widths


def _resized(linear, in_features, out_features):
    """``linear`` itself if it has this shape already, else a new Linear of this shape (weights loaded later)."""
    if (linear.in_features, linear.out_features) == (in_features, out_features):
        return linear
    return nn.Linear(in_features, out_features, bias=linear.bias is not None, device=linear.weight.device,
                     dtype=linear.weight.dtype)


def _replace(root, path, module):
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def shrink_to_record(model):
    """Resize every layer of ``model`` (any head) to the shape recorded in its config; returns the shape."""
    config = model.config
    layout = LAYOUTS[config.model_type]
    heads, widths = recorded_shape(config)
    layers = model.base_model.get_submodule(layout["layers"])
    if len(layers) != len(heads):
        raise ValueError(f"the model has {len(layers)} layers but config.json records {len(heads)}.")
    for layer, n_heads, width in zip(layers, heads, widths):
        attn = layer.get_submodule(layout["attention"])
        inner = n_heads * attn.attention_head_size  # the head size never changes when heads are pruned
        for path in layout["linears"]:
            old = layer.get_submodule(path)
            _replace(layer, path, _resized(old, old.in_features, inner))
        old = layer.get_submodule(layout["attention_output"])
        _replace(layer, layout["attention_output"], _resized(old, inner, old.out_features))
        setattr(attn, layout["heads_attr"], n_heads)
        setattr(attn, layout["width_attr"], inner)
        old = layer.get_submodule(layout["ffn_in"])
        _replace(layer, layout["ffn_in"], _resized(old, old.in_features, width))
        old = layer.get_submodule(layout["ffn_out"])
        _replace(layer, layout["ffn_out"], _resized(old, width, old.out_features))
    return heads, widths


class FastFormersShapeMixin:
    """Shrinks the model to its recorded shape before transformers initialises and loads the weights."""

    def post_init(self):
        shrink_to_record(self)
        # transformers 4.x prunes ``config.pruned_heads`` in post_init; the modules have that shape already.
        saved = getattr(self.config, "pruned_heads", None)
        if saved:
            self.config.pruned_heads = {}
        try:
            super().post_init()
        finally:
            if saved:
                self.config.pruned_heads = saved
        layout = LAYOUTS[self.config.model_type]
        for i, layer in enumerate(self.base_model.get_submodule(layout["layers"])):
            holder = layer.get_submodule(layout["holder"])
            if hasattr(holder, "pruned_heads"):  # transformers 4.x bookkeeping, so a later prune_heads agrees
                holder.pruned_heads = set(_pruned_heads(self.config, i))

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as usual, plus this file when config.json points to it, so the copy loads the same way."""
        result = super().save_pretrained(save_directory, *args, **kwargs)
        target = os.path.join(save_directory, os.path.basename(__file__))
        if getattr(self.config, "auto_map", None) and os.path.isdir(save_directory) and not (
                os.path.exists(target) and os.path.samefile(target, __file__)):
            shutil.copyfile(__file__, target)
        return result


def _define(name):
    base = getattr(transformers, name)
    doc = f"``transformers.{name}`` shrunk to the shape recorded in config.json (see the module docstring)."
    return type(name, (FastFormersShapeMixin, base), {"__module__": __name__, "__doc__": doc})


# BertForSequenceClassification, ..., DistilBertForMultipleChoice: the names config.json's auto_map points to.
for _layout in LAYOUTS.values():
    for _head in HEADS:
        globals()[_layout["prefix"] + _head] = _define(_layout["prefix"] + _head)
__all__ = [layout["prefix"] + head for layout in LAYOUTS.values() for head in HEADS]
