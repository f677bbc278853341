"""What we know about each supported encoder architecture, as data (the PEFT way), not as branches in code.

Every module path is relative to the *base model* (``model.base_model``), so it holds for
``BertModel`` and ``BertForSequenceClassification`` alike. ``{i}`` stands for a layer index.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import FastFormersError


@dataclass(frozen=True)
class ArchitectureSpec:
    layers: str  # ModuleList of transformer blocks
    query: str
    key: str
    value: str
    attention_output: str  # Linear that mixes the heads back into the hidden size
    intermediate: str  # Linear hidden -> FFN width
    output: str  # Linear FFN width -> hidden
    num_layers_attr: str = "num_hidden_layers"
    num_heads_attr: str = "num_attention_heads"
    hidden_size_attr: str = "hidden_size"
    intermediate_size_attr: str = "intermediate_size"
    activation_attr: str = "hidden_act"
    # Where the head counts live at run time (read and rewritten by structured pruning):
    self_attention: str = "attention.self"  # module whose attributes below drive the head reshapes
    heads_holder: str = "attention"  # module with the ``pruned_heads`` set (transformers 4.x bookkeeping)
    module_num_heads_attr: str = "num_attention_heads"
    module_head_size_attr: str = "attention_head_size"
    module_all_head_size_attr: str = "all_head_size"  # heads x head size
    position_offset: int = 0  # position embeddings reserved before the first token (RoBERTa: padding_idx + 1)
    # The ONNX route without Optimum (onnx/ort_tools.py) needs what Optimum's OnnxConfig and ORTConfigManager know:
    # whether the exported graph takes token_type_ids, and the model type onnxruntime's optimizer fuses it as.
    onnx_token_type_ids: bool = True
    ort_optimizer_type: str = "bert"


_BERT_LIKE = ArchitectureSpec(
    layers="encoder.layer",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attention_output="attention.output.dense",
    intermediate="intermediate.dense",
    output="output.dense",
)

ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "bert": _BERT_LIKE,  # also MiniLM, which ships as BERT
    "roberta": replace(_BERT_LIKE, position_offset=2, onnx_token_type_ids=False),
    "xlm-roberta": replace(_BERT_LIKE, position_offset=2, onnx_token_type_ids=False),
    "electra": _BERT_LIKE,
    "distilbert": ArchitectureSpec(
        layers="transformer.layer",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
        attention_output="attention.out_lin",
        intermediate="ffn.lin1",
        output="ffn.lin2",
        num_layers_attr="n_layers",
        num_heads_attr="n_heads",
        hidden_size_attr="dim",
        intermediate_size_attr="hidden_dim",
        activation_attr="activation",
        self_attention="attention",
        heads_holder="attention",
        module_num_heads_attr="n_heads",
        module_all_head_size_attr="dim",
        onnx_token_type_ids=False,
    ),
}


def get_spec(model_or_config) -> ArchitectureSpec:
    """The architecture spec for a model or config; a clear error for anything else."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise FastFormersError(
            f"not supported: {model_type}; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[model_type]


def get_layers(model):
    """The ModuleList of transformer blocks of ``model`` (any head on top)."""
    spec = get_spec(model)
    return model.base_model.get_submodule(spec.layers)


def config_value(config, attr: str):
    return getattr(config, attr)
