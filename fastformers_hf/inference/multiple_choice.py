"""``ChoicePredictor``: which of a question's choices is right, with a PyTorch ``...ForMultipleChoice`` model or an
ONNX Runtime session of its export.

An input is ``{"context": str, "choices": [str, ...]}`` or ``(context, [choices])``; each choice is encoded as the
pair ``(context, choice)``, as :func:`~fastformers_hf.tasks.multiple_choice.tokenize_choices` trains it (COPA's
connectives and such are part of the choice text). Inputs with the same number of choices are batched together,
``batch_size`` inputs a forward pass, each batch padded to its own longest choice (dynamic length).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import FastFormersError
from ..serving.batching import length_buckets
from . import tokenization
from .classifier import InferenceConfig, model_token_limit
from .inputs import check_items
from .predictor import softmax

logger = logging.getLogger(__name__)

Choices = tuple[str, tuple[str, ...]]  # (context, choices)
_EXPECTED = "pass {'context': str, 'choices': [str, ...]}, a (context, [choices]) pair, or a list of them"


def _one(x: Any) -> Choices | None:
    if isinstance(x, Mapping):
        context, choices = x.get("context"), x.get("choices")
    elif isinstance(x, (tuple, list)) and len(x) == 2:
        context, choices = x
    else:
        return None
    if not isinstance(context, str) or isinstance(choices, (str, bytes)) or not isinstance(choices, (list, tuple)):
        return None
    return (context, tuple(choices)) if all(isinstance(c, str) for c in choices) else None


def validate_choice_inputs(inputs: Any) -> list[Choices]:
    """``inputs`` as ``(context, choices)`` items; anything else is refused with the index of the first bad item."""
    items = check_items(inputs, _one, "a context with choices", _EXPECTED, single_types=(Mapping, tuple))
    for i, (_, choices) in enumerate(items):
        if not choices:
            raise FastFormersError(f"input {i} has no choices; give each context at least one choice to score.")
    return items


def _check_kind(model_or_config, where: str) -> None:
    from ..tasks.kinds import kind_of

    if isinstance(model_or_config, dict) and not model_or_config.get("architectures"):
        return  # a config that names no head says nothing
    kind = kind_of(model_or_config)
    if kind.name != "multiple_choice":
        raise FastFormersError(f"{where} is a {kind.name.replace('_', ' ')} model, not multiple choice (a "
                               "...ForMultipleChoice head); use the predictor of its kind (TextClassifier, ...).")


def _session_of(model) -> Any:
    """The ``onnxruntime.InferenceSession`` of a session or of an Optimum ``ORTModel``; None for anything else."""
    if hasattr(model, "get_inputs") and hasattr(model, "run"):
        return model
    for name in ("session", "model"):
        session = getattr(model, name, None)
        if hasattr(session, "get_inputs") and hasattr(session, "run"):
            return session
    return None


class ChoicePredictor:
    """Scores the choices of each input: ``runner`` maps a padded batch (input name -> int64 ``(B, C, T)``) to
    logits ``(B, C)`` (:mod:`~fastformers_hf.inference.runners`)."""

    def __init__(self, runner: Callable[[dict], np.ndarray], tokenizer, config: InferenceConfig | None = None,
                 backend: str = "pytorch", source: str | None = None, model_config: dict | None = None):
        self.runner, self.tokenizer = runner, tokenizer
        self.config = config or InferenceConfig()
        self.backend, self.source = backend, source
        self.max_length = self.config.max_length or model_token_limit(model_config, tokenizer)

    @classmethod
    def from_pretrained(cls, model_or_dir, tokenizer=None, config: InferenceConfig | None = None,
                        backend: str = "auto") -> "ChoicePredictor":
        """From a folder (one holding ``*.onnx`` runs on ONNX Runtime, else the PyTorch weights), a loaded
        ``...ForMultipleChoice`` model, an ``onnxruntime.InferenceSession`` or an ``ORTModelForMultipleChoice``
        (with ``tokenizer=``)."""
        from ..utils.model_folder import model_config
        from .runners import open_model_folder, ort_runner, pytorch_runner

        config = config or InferenceConfig()
        if not isinstance(model_or_dir, (str, os.PathLike)):
            if tokenizer is None:
                raise FastFormersError("pass tokenizer=... with a loaded model or session.")
            conf = getattr(model_or_dir, "config", None)
            conf = conf.to_dict() if hasattr(conf, "to_dict") else None
            session = _session_of(model_or_dir)
            if session is not None:
                rank = len(session.get_inputs()[0].shape)
                if rank != 3:
                    raise FastFormersError(f"the ONNX graph's inputs have {rank} axes, not (batch, choices, "
                                           "tokens): it is not a multiple-choice export.")
                return cls(ort_runner(session), tokenizer, config, "onnxruntime", model_config=conf)
            _check_kind(model_or_dir, type(model_or_dir).__name__)
            import torch

            torch.set_num_threads(config.threads)
            return cls(pytorch_runner(model_or_dir.eval()), tokenizer, config, "pytorch", model_config=conf)
        path = Path(model_or_dir)
        folder_config = model_config(path)
        _check_kind(folder_config, str(path))
        tokenizer, name, loaded = open_model_folder(path, tokenizer, backend, config.threads)
        runner = ort_runner(loaded) if name == "onnxruntime" else pytorch_runner(loaded)
        return cls(runner, tokenizer, config, name, str(path), folder_config)

    validate_inputs = staticmethod(validate_choice_inputs)

    def choice_logits(self, inputs) -> list[np.ndarray]:
        """The logits of each input's choices, ``(choices,)`` per input, in order."""
        items = self.validate_inputs(inputs)
        pairs = [(context, choice) for context, choices in items for choice in choices]
        if not pairs:
            return []
        ids = tokenization.transformers_token_ids(self.tokenizer, pairs, self.max_length)  # one per (context, choice)
        self._check_length(items, pairs, ids)
        starts = np.cumsum([0] + [len(c) for _, c in items])  # the first pair of each input
        longest = [max(len(ids[j]["input_ids"]) for j in range(starts[i], starts[i + 1])) for i in range(len(items))]
        out: list = [None] * len(items)
        for count in sorted({len(c) for _, c in items}):  # a batch is one (B, C, T) tensor: one C per batch
            group = np.array([i for i, (_, c) in enumerate(items) if len(c) == count])
            for idx in length_buckets([longest[i] for i in group], self.config.batch_size, self.config.sort_by_length):
                rows = [ids[j] for i in group[idx] for j in range(starts[i], starts[i + 1])]
                flat = tokenization.collate(self.tokenizer, rows)  # name -> (B * C, T)
                batch = {k: v.reshape(len(idx), count, -1) for k, v in flat.items()}  # name -> (B, C, T)
                logits = self.runner(batch)  # (B, C)
                for row, i in enumerate(group[idx]):
                    out[i] = logits[row]
        return out

    def _check_length(self, items: Sequence[Choices], pairs: list, ids: list) -> None:
        cut = tokenization.truncated(self.tokenizer, pairs, ids, self.max_length)
        if not cut:
            return
        owner = np.repeat(np.arange(len(items)), [len(c) for _, c in items])  # input of each pair
        if self.config.long_inputs == "error":
            raise FastFormersError(f"{len(cut)} (context, choice) pair(s) exceed {self.max_length} tokens (first: "
                                   f"input {owner[cut[0]]}); shorten them or set long_inputs='truncate'.")
        logger.warning("%d (context, choice) pair(s) longer than %d tokens were truncated.", len(cut), self.max_length)

    def predict(self, inputs) -> list[dict]:
        """``[{"choice": index of the best choice, "probabilities": [one per choice]}]`` per input, in order."""
        out = []
        for logits in self.choice_logits(inputs):
            p = softmax(logits[None].astype(np.float64))[0]  # (C,)
            out.append({"choice": int(p.argmax()), "probabilities": [float(x) for x in p]})
        return out
