"""Optimizer state across a prune step: :func:`prune` replaces every sliced weight and bias by a new, smaller
``nn.Parameter``, so an optimizer built before it holds parameters the model no longer has.

:func:`remap_optimizer_in_place` (what ``StructuredPruningCallback`` uses) keeps the optimizer *object*: its param
groups are pointed at the new parameters and their state (e.g. Adam moments) is sliced with the weights. So whatever
holds that object goes on working with nothing to re-register: the ``Trainer`` (``trainer.optimizer``), accelerate
(the ``AcceleratedOptimizer`` it wrapped and the list of prepared optimizers it unscales and checks for skipped steps
every step), the LR scheduler (its position and per-group learning rates), the fp16 ``GradScaler``, and an optimizer
passed through ``Trainer(optimizers=...)``. Nothing stale is left for accelerate to step, and only public attributes
are touched: torch's ``Optimizer.param_groups`` and ``Optimizer.state`` (which ``AcceleratedOptimizer`` forwards).

:func:`remap_optimizer_state` copies state into a second, newly built optimizer, for a training loop that builds
one itself after pruning (then that loop has to drop the old optimizer wherever it registered it).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch


def _sliced_state(state: dict, old_param: torch.Tensor, dim: Optional[int], index: Optional[torch.Tensor],
                  clone: bool) -> Optional[dict]:
    """``old_param``'s state for its pruned successor: tensors shaped like the parameter are sliced like it, others
    (e.g. Adam's ``step``) copied. ``None`` when a tensor of another, non-scalar shape can't be sliced by the same
    index (e.g. Adafactor's factored moments, an 8-bit optimizer's block scales): the parameter then starts afresh,
    which every ``torch.optim`` optimizer does for a parameter without state."""
    out = {}
    for k, v in state.items():
        if torch.is_tensor(v) and index is not None:
            if v.shape == old_param.shape:
                v = v.index_select(dim, index.to(v.device))
            elif v.dim() > 0:
                return None
        out[k] = (v.clone() if torch.is_tensor(v) else copy.deepcopy(v)) if clone else v
    return out


def remap_optimizer_in_place(optimizer: torch.optim.Optimizer, mapping: dict) -> int:
    """Point ``optimizer`` at the parameters :func:`~fastformers_hf.pruning.prune` created and slice their state.

    ``mapping`` is what ``prune(..., return_mapping=True)`` returns: {new parameter: (old parameter, dim, index)}.
    Each old parameter in the param groups is replaced by its new one at the same position of the same list (so
    weight decay, learning rates and anything else per group stay as they are); unchanged parameters and their
    state are not touched. Works on a plain ``torch.optim.Optimizer`` and on accelerate's ``AcceleratedOptimizer``
    (pass ``trainer.optimizer``). Returns how many replaced parameters carried state over.

    Optimizers that keep per-parameter data outside ``param_groups`` and ``state`` (e.g. ZeRO / DeepSpeed, FSDP
    flat parameters) are not supported: pruning during training refuses them.
    """
    by_old = {old: (new, dim, index) for new, (old, dim, index) in mapping.items()}
    moved = 0
    for group in optimizer.param_groups:
        params = group["params"]
        for i, p in enumerate(params):
            if p not in by_old:
                continue
            new, dim, index = by_old[p]
            params[i] = new  # in place: anything holding this list sees the new parameter
            state = optimizer.state.pop(p, None)
            if state:
                new_state = _sliced_state(state, p, dim, index, clone=False)
                if new_state is not None:
                    optimizer.state[new] = new_state
                    moved += 1
    return moved


def remap_optimizer_state(old_optimizer: torch.optim.Optimizer, new_optimizer: torch.optim.Optimizer,
                          mapping: dict) -> int:
    """Carry per-parameter optimizer state (e.g. Adam moments) over to a new optimizer after :func:`prune`.

    Unchanged parameters keep their state; sliced ones get their state sliced the same way. ``old_optimizer`` is
    left as it was. Returns how many parameters got state.
    """
    moved = 0
    for group in new_optimizer.param_groups:
        for p in group["params"]:
            old_p, dim, index = mapping.get(p, (p, None, None))
            state = old_optimizer.state.get(old_p)
            if not state:
                continue
            new_state = _sliced_state(state, old_p, dim, index, clone=True)
            if new_state is not None:
                new_optimizer.state[p] = new_state
                moved += 1
    return moved
