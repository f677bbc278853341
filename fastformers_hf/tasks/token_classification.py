"""Tokenising word-labelled sentences for token classification: word tags onto sub-tokens (``word_ids()``).

By default the first sub-token of a word carries its tag and the rest get -100 (ignored by the loss and the
metric); ``label_all_tokens=True`` labels every sub-token, continuation sub-tokens of a ``B-`` word getting the
``I-`` tag, as transformers' ``run_ner.py`` does. Sentences longer than ``max_length`` tokens are cut: the count of
cut sentences and of the words they lose is logged (or ``long_inputs="error"`` refuses them).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from datasets import Dataset, DatasetDict

from ..errors import FastFormersError
from .conll import label_names as dataset_label_names

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # what torch's cross entropy and our metric skip


@dataclass
class TruncationReport:
    """How much of a split ``max_length`` cut: sentences cut, and words left with no token (so no label)."""

    sentences: int = 0
    truncated: int = 0
    words_lost: int = 0

    def __str__(self):
        return (f"{self.truncated} of {self.sentences} sentences were longer than the token limit and were cut; "
                f"{self.words_lost} labelled words lost")


def b_to_i(names: Sequence[str]) -> list[int]:
    """Label id -> the id continuation sub-tokens get: ``I-X`` for ``B-X`` (when the list has it), else itself."""
    index = {n: i for i, n in enumerate(names)}
    return [index.get("I-" + n[2:], i) if n.startswith("B-") else i for i, n in enumerate(names)]


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int], label_all_tokens: bool = False,
                 continuation: Sequence[int] | None = None) -> list[int]:
    """Token labels from word labels: special tokens (word id None) -100; a word's first sub-token its label; the
    others -100, or with ``label_all_tokens`` ``continuation[label]`` (see :func:`b_to_i`; default the label)."""
    out, previous = [], None
    for word in word_ids:
        if word is None:
            out.append(IGNORE_INDEX)
        elif word != previous:
            out.append(word_labels[word])
        elif label_all_tokens:
            label = word_labels[word]
            out.append(continuation[label] if continuation is not None else label)
        else:
            out.append(IGNORE_INDEX)
        previous = word
    return out


def _check_fast(tokenizer):
    if not getattr(tokenizer, "is_fast", False):
        raise FastFormersError(f"{type(tokenizer).__name__} is a slow tokenizer: aligning word labels needs "
                               "word_ids(), which only fast tokenizers give; load it with use_fast=True.")


def tokenize_and_align(dataset, tokenizer, max_length: int = 128, label_all_tokens: bool = False,
                       label_field: str = "ner_tags", label_names: Sequence[str] | None = None,
                       long_inputs: str = "truncate", return_report: bool = False):
    """Tokenise ``tokens`` (pre-split words, ``is_split_into_words=True``) without padding and align the word tags
    in ``label_field`` into ``labels``; the raw columns are dropped (the collator,
    ``DataCollatorForTokenClassification``, pads each batch to its own longest input).

    ``label_names``: the tag names (default: the ``ClassLabel`` of ``label_field``), needed for
    ``label_all_tokens``. ``long_inputs``: ``"truncate"`` (log how many were cut) or ``"error"``. A ``Dataset`` or
    a ``DatasetDict``; with ``return_report`` also the :class:`TruncationReport` (a dict of them per split).
    """
    _check_fast(tokenizer)
    if long_inputs not in ("truncate", "error"):
        raise FastFormersError(f"long_inputs must be 'truncate' or 'error', got {long_inputs!r}.")

    def encode(batch, names):
        continuation = b_to_i(names) if label_all_tokens else None
        enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
        labels, lost = [], []
        for i, words in enumerate(batch["tokens"]):
            word_ids = enc.word_ids(i)
            labels.append(align_labels(word_ids, batch[label_field][i], label_all_tokens, continuation))
            lost.append(len(words) - len({w for w in word_ids if w is not None}))
        # Only sentences at the limit may have been cut; tokenise those again in full to know.
        at_limit = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) >= max_length]
        full = (tokenizer([batch["tokens"][i] for i in at_limit], is_split_into_words=True)["input_ids"]
                if at_limit else [])
        cut = {i for i, ids in zip(at_limit, full) if len(ids) > max_length}
        return {**enc, "labels": labels, "_words_lost": lost, "_cut": [i in cut for i in range(len(labels))]}

    def one(ds: Dataset, split: str) -> tuple[Dataset, TruncationReport]:
        for column in ("tokens", label_field):
            if column not in ds.column_names:
                raise FastFormersError(f"the {split} split has no {column!r} column (it has {ds.column_names}); "
                                       "load it with load_conll or rename the columns.")
        names = list(label_names) if label_names is not None else (
            dataset_label_names(ds) if label_all_tokens else [])
        ds = ds.map(encode, batched=True, fn_kwargs={"names": names}, remove_columns=ds.column_names)
        report = TruncationReport(len(ds), sum(ds["_cut"]), sum(ds["_words_lost"]))
        if report.truncated or report.words_lost:
            if long_inputs == "error" and report.truncated:
                first = ds["_cut"].index(True)
                raise FastFormersError(f"{split}: {report} (first: row {first}); raise max_length (now {max_length}) "
                                       "or set long_inputs='truncate'.")
            logger.warning("%s: %s (max_length=%d).", split, report, max_length)
        return ds.remove_columns(["_words_lost", "_cut"]), report

    if isinstance(dataset, DatasetDict):
        done = {split: one(ds, split) for split, ds in dataset.items()}
        out = DatasetDict({split: ds for split, (ds, _) in done.items()})
        return (out, {split: r for split, (_, r) in done.items()}) if return_report else out
    out, report = one(dataset, "dataset")
    return (out, report) if return_report else out
