"""``EntityTagger``: named entities in texts, with a PyTorch token classifier or an ONNX Runtime session.

``predict(texts)`` gives, per text, the entities of transformers'
``pipeline("token-classification", aggregation_strategy="simple")``: adjacent tokens of one entity type grouped
(a ``B-`` token starts a new group), ``score`` the mean of their top probabilities, ``word`` the decoded tokens,
``start``/``end`` character offsets in the text. The pipeline runs one text per forward pass; this tagger batches
texts and pads each batch only to its own longest input (dynamic length).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import FastFormersError
from ..serving.batching import length_buckets
from . import tokenization
from .classifier import InferenceConfig, model_token_limit
from .predictor import softmax

logger = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def validate_texts(inputs: Any) -> list[str]:
    """``inputs`` as a list of strings: a string, or a list (any iterable but a set, dict or bytes) of strings."""
    if isinstance(inputs, str):
        return [inputs]
    expected = "pass a string or a list of strings"
    # A dict would give its keys and a set no order; bytes are not text.
    if isinstance(inputs, (bytes, bytearray, dict, set, frozenset)) or not hasattr(inputs, "__iter__"):
        raise FastFormersError(f"the input is a {type(inputs).__name__}, not text: {expected}.")
    texts = list(inputs)
    for i, x in enumerate(texts):
        if not isinstance(x, str):
            raise FastFormersError(f"input {i} is a {type(x).__name__}, not a string: {expected}.")
    return texts


def _tag(label: str) -> tuple[str, str]:
    """(B or I, entity type) of a label; a label without a prefix continues (the pipeline's ``get_tag``)."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def group_entities(tokens: list[dict], tokenizer) -> list[dict]:
    """Group per-token predictions (``entity``, ``score``, ``word``, ``start``, ``end``) as the pipeline's
    ``aggregation_strategy="simple"`` does, dropping ``O`` groups."""
    groups: list[list[dict]] = []
    for token in tokens:
        bi, tag = _tag(token["entity"])
        if groups and bi != "B" and tag == _tag(groups[-1][-1]["entity"])[1]:
            groups[-1].append(token)
        else:
            groups.append([token])
    out = []
    for group in groups:
        entity = group[0]["entity"].split("-", 1)[-1]
        if entity == "O":
            continue
        out.append({"entity_group": entity, "score": float(np.mean([t["score"] for t in group])),
                    "word": tokenizer.convert_tokens_to_string([t["word"] for t in group]),
                    "start": group[0]["start"], "end": group[-1]["end"]})
    return out


class EntityTagger:
    """Entities of texts: ``runner`` maps a padded batch (input name -> int64 ``(B, T)``) to logits ``(B, T, C)``
    (:mod:`~fastformers_hf.inference.runners`); ``id2label`` names the ``C`` labels. Needs a fast tokenizer
    (character offsets)."""

    def __init__(self, runner: Callable[[dict], np.ndarray], tokenizer, id2label: dict, config: InferenceConfig | None
                 = None, backend: str = "pytorch", source: str | None = None, model_config: dict | None = None):
        if not getattr(tokenizer, "is_fast", False):
            raise FastFormersError(f"{type(tokenizer).__name__} is a slow tokenizer; entity offsets need a fast one "
                                   "(AutoTokenizer.from_pretrained(..., use_fast=True)).")
        self.runner, self.tokenizer = runner, tokenizer
        self.id2label = {int(k): v for k, v in id2label.items()}
        self.config = config or InferenceConfig()
        self.backend, self.source = backend, source
        self.max_length = self.config.max_length or model_token_limit(model_config, tokenizer)

    @classmethod
    def from_pretrained(cls, model_or_dir, tokenizer=None, config: InferenceConfig | None = None,
                        backend: str = "auto", id2label: dict | None = None) -> "EntityTagger":
        """From a folder (one holding ``*.onnx`` runs on ONNX Runtime, else the PyTorch weights), a loaded
        ``...ForTokenClassification`` model, an ``ORTModelForTokenClassification`` or an
        ``onnxruntime.InferenceSession`` (with ``id2label=`` and ``tokenizer=``)."""
        from .runners import ort_runner, pytorch_runner

        config = config or InferenceConfig()
        if not isinstance(model_or_dir, (str, os.PathLike)):
            if tokenizer is None:
                raise FastFormersError("pass tokenizer=... with a loaded model or session.")
            model_config = getattr(model_or_dir, "config", None)
            labels = id2label or getattr(model_config, "id2label", None)
            if labels is None:
                raise FastFormersError("an onnxruntime.InferenceSession has no labels; pass id2label={0: 'O', ...}.")
            if model_config is not None:  # a PyTorch model or an ORTModel: its class names its head
                _check_kind(model_or_dir)
            session = model_or_dir if hasattr(model_or_dir, "get_inputs") else getattr(model_or_dir, "model", None)
            config_dict = model_config.to_dict() if model_config is not None else None
            if hasattr(session, "get_inputs"):  # an InferenceSession, bare or inside an ORTModel
                shape = session.get_outputs()[0].shape
                if len(shape) != 3:
                    raise FastFormersError(f"the ONNX graph's first output has shape {shape}, not (batch, tokens, "
                                           "labels): it is not a token classifier.")
                return cls(ort_runner(session), tokenizer, labels, config, "onnxruntime", model_config=config_dict)
            import torch

            torch.set_num_threads(config.threads)
            return cls(pytorch_runner(model_or_dir.eval()), tokenizer, labels, config, "pytorch",
                       model_config=config_dict)
        from ..utils.model_folder import model_config
        from .runners import open_model_folder

        path = Path(model_or_dir)
        folder_config = model_config(path)
        _check_kind(folder_config, path)
        labels = id2label or folder_config.get("id2label")
        tokenizer, name, loaded = open_model_folder(path, tokenizer, backend, config.threads)
        runner = ort_runner(loaded) if name == "onnxruntime" else pytorch_runner(loaded)
        return cls(runner, tokenizer, labels, config, name, str(path), folder_config)

    def token_predictions(self, inputs) -> list[list[dict]]:
        """Per text, each non-special token's ``entity`` (top label), ``score`` (its probability), ``word``
        (the token; the text's characters for unknown tokens), ``start``/``end`` (character offsets)."""
        texts = validate_texts(inputs)
        if not texts:
            return []
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_offsets_mapping=True,
                             return_special_tokens_mask=True)
        ids = [{k: enc[k][i] for k in MODEL_INPUTS if k in enc} for i in range(len(texts))]
        cut = tokenization.truncated(self.tokenizer, texts, ids, self.max_length)
        if cut:
            if self.config.long_inputs == "error":
                raise FastFormersError(f"{len(cut)} text(s) exceed {self.max_length} tokens (first: index {cut[0]}); "
                                       "shorten them or set long_inputs='truncate'.")
            logger.warning("%d text(s) longer than %d tokens were cut; no entities are found past the cut.",
                           len(cut), self.max_length)
        probs: list = [None] * len(texts)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        for idx in length_buckets([len(x["input_ids"]) for x in ids], self.config.batch_size,
                                  self.config.sort_by_length):
            logits = self.runner(tokenization.collate(self.tokenizer, [ids[i] for i in idx]))  # (B, T, C)
            for row, i in enumerate(idx):
                n = len(ids[i]["input_ids"])
                # The softmax in float32, as the pipeline does on the model's float32 logits.
                probs[i] = softmax(logits[row, -n:] if left else logits[row, :n])  # (n, C)
        unk = self.tokenizer.unk_token_id
        out = []
        for i, text in enumerate(texts):
            top = probs[i].argmax(-1)  # (n,)
            tokens = []
            rows = zip(enc["input_ids"][i], enc["special_tokens_mask"][i], enc["offset_mapping"][i])
            for t, (token_id, special, (start, end)) in enumerate(rows):
                if special:
                    continue
                word = text[start:end] if token_id == unk else self.tokenizer.convert_ids_to_tokens(token_id)
                tokens.append({"entity": self.id2label[int(top[t])], "score": float(probs[i][t, top[t]]),
                               "word": word, "start": start, "end": end})
            out.append(tokens)
        return out

    def predict(self, inputs) -> list[list[dict]]:
        """Per text, its entities: ``entity_group``, ``score``, ``word``, ``start``, ``end`` (as the pipeline's
        ``aggregation_strategy="simple"``)."""
        return [group_entities(tokens, self.tokenizer) for tokens in self.token_predictions(inputs)]


def _check_kind(model_or_config, path=None) -> None:
    from ..tasks.kinds import kind_of

    kind = kind_of(model_or_config)
    if kind.name != "token_classification":
        where = f"{path} holds" if path else "the model is"
        raise FastFormersError(f"{where} a {kind.name.replace('_', ' ')} model, not a token classifier; use "
                               "TextClassifier for sequence classifiers, or pass a ...ForTokenClassification model.")
