"""Structured pruning: remove whole attention heads and FFN neurons so the model really computes less.

FastFormers §3, after Michel et al. (2019, "Are Sixteen Heads Really Better than One?") and DynaBERT:

1. **Score** every head and FFN intermediate neuron (:func:`importance_scores`; ``first_order``, ``magnitude``,
   ``random``) on a held-out slice of the *training* data (:func:`held_out_split`, :func:`scoring_dataloader`),
   never the evaluation set: head selection is model selection. A slice not used for re-distillation also keeps
   the scores free of what the recovery training will fit.
2. **Keep** the top heads / neurons of each layer and physically slice the matrices (:func:`prune`): nothing is
   zeroed, the model is smaller.
3. **Record** the shape in ``config.json`` (transformers' ``pruned_heads`` + ``intermediate_size``, and the
   ``config.fastformers`` record that :func:`load_pruned` rebuilds any shape from).
4. **Recover** accuracy by distilling from the unpruned model (``DistillationTrainer``); when pruning mid-training,
   :func:`remap_optimizer_in_place` keeps the optimizer going over the new parameters.

Modules: :mod:`.shape` (``current_shape``, ``resolve_target``), :mod:`.scores` (importance scores, scoring data),
:mod:`.slicing` (``prune``), :mod:`.optimizer_state` (moving optimizer state), :mod:`.loading` (``load_pruned``).
"""
from .loading import load_pruned
from .optimizer_state import remap_optimizer_in_place, remap_optimizer_state
from .scores import METHODS, ImportanceScores, held_out_split, importance_scores, scoring_dataloader
from .shape import current_shape, resolve_target
from .slicing import prune

__all__ = [
    "METHODS",
    "ImportanceScores",
    "current_shape",
    "held_out_split",
    "importance_scores",
    "load_pruned",
    "prune",
    "remap_optimizer_in_place",
    "remap_optimizer_state",
    "resolve_target",
    "scoring_dataloader",
]
