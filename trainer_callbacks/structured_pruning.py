"""``StructuredPruningCallback``: prune heads and FFN neurons at chosen steps of a ``Trainer`` run, then train on.

Thin: scoring and slicing are :func:`fastformers_hf.pruning.prune`; this only decides *when*, then points the
trainer's optimizer at the new parameters with :func:`fastformers_hf.pruning.remap_optimizer_in_place` (the same
optimizer object, Adam moments sliced with the weights, so the LR scheduler, accelerate and the fp16 scaler carry on
unchanged). It needs the trainer (data, collator, optimizer), so it keeps a reference to it:
``StructuredPruningCallback(...).attach(trainer)``.

With ``DistillationTrainer`` and the unpruned model as teacher, training after the prune step is re-distillation.
"""
from __future__ import annotations

import logging
from typing import Optional

from transformers import TrainerCallback

from fastformers_hf.errors import FastFormersError
from fastformers_hf.pruning import (
    METHODS,
    current_shape,
    prune,
    remap_optimizer_in_place,
    resolve_target,
    scoring_dataloader,
)

logger = logging.getLogger(__name__)


class StructuredPruningCallback(TrainerCallback):
    """Prune to ``heads_per_layer`` / ``ffn_width`` (counts, ratios of the *starting* model, or per-layer lists) in
    ``num_prune_steps`` equal steps, the first at step ``prune_at_step`` (0: before the first training step), the
    next every ``prune_every`` steps.

    ``scoring_dataset``: a tokenised held-out slice of the training data for ``method="first_order"`` (see
    ``fastformers_hf.pruning.held_out_split``). When omitted, ``num_scoring_examples`` rows of the train dataset are
    used, which the model also trains on.
    """

    def __init__(self, heads_per_layer=None, ffn_width=None, method: str = "first_order", scoring_dataset=None,
                 num_scoring_examples: int = 1000, scoring_batch_size: int = 32, prune_at_step: int = 0,
                 num_prune_steps: int = 1, prune_every: Optional[int] = None, normalize: bool = True, seed: int = 0):
        if method not in METHODS:
            raise FastFormersError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}.")
        if prune_at_step < 0 or num_prune_steps < 1:
            raise FastFormersError(
                f"prune_at_step must be >= 0 and num_prune_steps >= 1, got {prune_at_step} and {num_prune_steps}."
            )
        if num_prune_steps > 1 and not (prune_every and prune_every > 0):
            raise FastFormersError("an iterative schedule (num_prune_steps > 1) needs prune_every=<steps between prunes>.")
        self.heads_per_layer, self.ffn_width, self.method = heads_per_layer, ffn_width, method
        self.scoring_dataset, self.num_scoring_examples = scoring_dataset, num_scoring_examples
        self.scoring_batch_size, self.normalize, self.seed = scoring_batch_size, normalize, seed
        self.schedule = [prune_at_step + k * (prune_every or 0) for k in range(num_prune_steps)]
        self.trainer = None
        self._start = None  # shape and final targets, fixed at the first prune step
        self.done = 0  # prune steps applied so far

    def attach(self, trainer) -> "StructuredPruningCallback":
        """Register with ``trainer`` and keep a reference to it (its data, collator and optimizer)."""
        self.trainer = trainer
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    # -- hooks ---------------------------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.schedule[0] == 0 and self.done == 0:
            self._prune_step(model, state)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.done < len(self.schedule) and state.global_step == self.schedule[self.done]:
            self._prune_step(model, state)

    # -- work ------------------------------------------------------------------------------------------------------

    def _targets(self, model, k: int):
        """Heads and FFN widths after prune step k (1-based): linear from the starting shape to the final targets."""
        if self._start is None:
            shape = current_shape(model)
            self._start = (shape["heads_per_layer"], shape["ffn_width_per_layer"],
                           resolve_target(self.heads_per_layer, shape["heads_per_layer"], "heads_per_layer"),
                           resolve_target(self.ffn_width, shape["ffn_width_per_layer"], "ffn_width"))
        h0, f0, h1, f1 = self._start
        n = len(self.schedule)
        return ([round(a - (a - b) * k / n) for a, b in zip(h0, h1)],
                [round(a - (a - b) * k / n) for a, b in zip(f0, f1)])

    def _prune_step(self, model, state) -> None:
        trainer = self.trainer
        if trainer is None:
            raise FastFormersError(
                "StructuredPruningCallback needs the trainer to score on its data and update its optimizer: use "
                "StructuredPruningCallback(...).attach(trainer) instead of callbacks=[...]."
            )
        if trainer.model_wrapped is not trainer.model or trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
            raise FastFormersError(
                "pruning during training needs an unwrapped model (no DDP, FSDP or DeepSpeed): their wrappers fix the "
                "parameter shapes. Prune before building the Trainer with fastformers_hf.prune(...) instead."
            )
        heads, ffn = self._targets(model, self.done + 1)
        loader = None
        if self.method == "first_order":
            loader = scoring_dataloader(self._scoring_dataset(trainer), collate_fn=trainer.data_collator,
                                        batch_size=self.scoring_batch_size, model=model)
        _, mapping = prune(model, heads_per_layer=heads, ffn_width=ffn, method=self.method, dataloader=loader,
                           normalize=self.normalize, seed=self.seed + self.done, return_mapping=True)
        self.done += 1
        model.config.fastformers["steps"][-1]["trainer_step"] = state.global_step
        if trainer.optimizer is not None:  # None: not built yet, it will be built over the pruned model
            remap_optimizer_in_place(trainer.optimizer, mapping)
        logger.info("structured pruning %d/%d at step %d: heads %s, FFN %s", self.done, len(self.schedule),
                    state.global_step, heads, ffn)

    def _scoring_dataset(self, trainer):
        if self.scoring_dataset is not None:
            return self.scoring_dataset
        data = trainer.train_dataset
        n = min(self.num_scoring_examples, len(data))
        logger.warning("scoring on %d training rows that are also trained on; pass scoring_dataset= (a held-out "
                       "slice, see fastformers_hf.pruning.held_out_split) for independent scores.", n)
        return data.shuffle(seed=self.seed).select(range(n))
