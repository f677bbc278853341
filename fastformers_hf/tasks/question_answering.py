"""Extractive question answering features: question + context windows, span labels for training, and the context
offsets that decoding needs for evaluation.

What ``run_qa.py`` in transformers' examples does, written here because no library ships it as a function (the
pipeline's own preprocessing is a private generator over one example). A context longer than one window is split
into overlapping windows (``return_overflowing_tokens`` with ``stride=doc_stride`` tokens of overlap), never cut:
every context token lies in some window. The question is never truncated; one that leaves the context too little
room is refused. Tokenizers that pad on the left (XLNet-style) take the context first, as in ``run_qa.py``.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import numpy as np

from ..errors import FastFormersError

DEFAULT_MAX_LENGTH = 384
DEFAULT_DOC_STRIDE = 128


def question_first(tokenizer) -> bool:
    """Whether windows are ``question, context`` (right-padding tokenizers) or ``context, question``."""
    return getattr(tokenizer, "padding_side", "right") == "right"


def context_index(tokenizer) -> int:
    """The sequence id (``encoding.sequence_ids(w)``) of the context in each window."""
    return 1 if question_first(tokenizer) else 0


def encode_windows(tokenizer, questions: Sequence[str], contexts: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH,
                   doc_stride: int = DEFAULT_DOC_STRIDE, padding: bool = False, names: Sequence | None = None):
    """The tokenizer's ``BatchEncoding`` of every window of every (question, context), flat: window ``w`` belongs to
    example ``encoding["overflow_to_sample_mapping"][w]`` and has ``offset_mapping`` (character spans) and
    ``encoding.sequence_ids(w)``. ``padding``: pad windows to ``max_length`` (else unpadded, for dynamic length).
    ``names`` (e.g. question ids) name a refused question instead of its index."""
    if not getattr(tokenizer, "is_fast", False):
        raise FastFormersError(f"question answering needs a fast tokenizer (for character offsets); "
                               f"{type(tokenizer).__name__} is a slow one: load it with use_fast=True.")
    if not 0 <= doc_stride < max_length:
        raise FastFormersError(f"doc_stride ({doc_stride}) must be at least 0 and below max_length ({max_length}).")
    # Leading whitespace only wastes window room on tokenizers that encode spaces (run_qa.py strips it too).
    questions = [q.lstrip() for q in questions]
    contexts = list(contexts)
    _check_room(tokenizer, questions, contexts, max_length, doc_stride, names)
    first, second = (questions, contexts) if question_first(tokenizer) else (contexts, questions)
    return tokenizer(first, second, truncation="only_second" if question_first(tokenizer) else "only_first",
                     max_length=max_length, stride=doc_stride, return_overflowing_tokens=True,
                     return_offsets_mapping=True, padding="max_length" if padding else False)


def _check_room(tokenizer, questions, contexts, max_length, doc_stride, names) -> None:
    """Refuse a question that leaves the context ``doc_stride`` tokens or fewer of a window it must be split over:
    the Rust tokenizer would panic (a ``BaseException``, not a catchable error) or refuse the whole batch."""
    if not questions:
        return
    lengths = [len(x) for x in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    room = np.asarray([max_length - tokenizer.num_special_tokens_to_add(pair=True) - n for n in lengths])  # (N,)
    for i in np.flatnonzero(room <= doc_stride):  # only these can fail, and only if their context needs windows
        if len(tokenizer(questions[i], contexts[i])["input_ids"]) > max_length:
            who = f"question {names[i]!r}" if names is not None else f"input {i}"
            raise FastFormersError(
                f"{who} takes {lengths[i]} tokens, which leaves its context {room[i]} of the {max_length}-token "
                f"window; striding over a long context needs more than doc_stride={doc_stride}: shorten the "
                "question, raise max_length or lower doc_stride.")


def window_fields(encoding, w: int, ctx: int, cls_token_id: int | None) -> dict:
    """What decoding needs of window ``w``: the character offsets and word ids of its context tokens (None on the
    question, special tokens and padding) and the index of its CLS token (0 when it has none)."""
    seq = encoding.sequence_ids(w)
    ids = encoding["input_ids"][w]
    return dict(offset_mapping=[tuple(o) if s == ctx else None for o, s in zip(encoding["offset_mapping"][w], seq)],
                word_ids=[x if s == ctx else None for x, s in zip(encoding.word_ids(w), seq)],
                cls_index=ids.index(cls_token_id) if cls_token_id in ids else 0)


def answer_positions(offsets: Sequence, answer_start: int, answer_end: int, cls_index: int = 0) -> tuple[int, int]:
    """Token span ``(start, end)`` of the characters ``[answer_start, answer_end)`` in a window whose context
    tokens have ``offsets`` (None elsewhere); ``(cls_index, cls_index)`` when the window does not hold the whole
    answer. A binary search over the context tokens only (run_qa.py's scan of all tokens can walk on into [SEP]
    and padding, whose offsets are (0, 0), when the answer starts at the window's last context token)."""
    tokens = np.asarray([t for t, o in enumerate(offsets) if o is not None])  # (C,)
    if not len(tokens):
        return cls_index, cls_index
    spans = np.asarray([offsets[t] for t in tokens])  # (C, 2) character start, end; increasing
    if spans[0, 0] > answer_start or spans[-1, 1] < answer_end:
        return cls_index, cls_index
    start = tokens[np.searchsorted(spans[:, 0], answer_start, side="right") - 1]  # last token starting at or before
    end = tokens[np.searchsorted(spans[:, 1], answer_end, side="left")]  # first token ending at or after
    return int(start), int(end)


def prepare_train_features(batch: dict, tokenizer, max_length: int = DEFAULT_MAX_LENGTH,
                           doc_stride: int = DEFAULT_DOC_STRIDE, padding: bool = False) -> dict:
    """A batched ``Dataset.map`` function over the Hub ``squad`` columns: one row per window with the model inputs
    and ``start_positions``/``end_positions`` of the first answer (CLS where the window does not hold it)."""
    enc = encode_windows(tokenizer, batch["question"], batch["context"], max_length, doc_stride, padding,
                         names=batch.get("id"))
    ctx = context_index(tokenizer)
    starts, ends = [], []
    for w, example in enumerate(enc["overflow_to_sample_mapping"]):
        fields = window_fields(enc, w, ctx, tokenizer.cls_token_id)
        answers = batch["answers"][example]
        if not answers["answer_start"]:  # no answer: point at CLS, as for windows without it
            start = end = fields["cls_index"]
        else:
            first = answers["answer_start"][0]
            start, end = answer_positions(fields["offset_mapping"], first, first + len(answers["text"][0]),
                                          fields["cls_index"])
        starts.append(start)
        ends.append(end)
    out = {k: v for k, v in enc.items() if k not in ("offset_mapping", "overflow_to_sample_mapping")}
    return {**out, "start_positions": starts, "end_positions": ends}


def prepare_eval_features(batch: dict, tokenizer, max_length: int = DEFAULT_MAX_LENGTH,
                          doc_stride: int = DEFAULT_DOC_STRIDE, padding: bool = False) -> dict:
    """A batched ``Dataset.map`` function: one row per window with the model inputs, ``example_id`` (the question's
    ``id``) and, for decoding, ``offset_mapping``/``word_ids`` (None off the context) and ``cls_index``."""
    enc = encode_windows(tokenizer, batch["question"], batch["context"], max_length, doc_stride, padding,
                         names=batch["id"])
    ctx = context_index(tokenizer)
    rows = [window_fields(enc, w, ctx, tokenizer.cls_token_id) for w in range(len(enc["input_ids"]))]
    out = {k: v for k, v in enc.items() if k not in ("offset_mapping", "overflow_to_sample_mapping")}
    out["example_id"] = [batch["id"][example] for example in enc["overflow_to_sample_mapping"]]
    for name in ("offset_mapping", "word_ids", "cls_index"):
        out[name] = [r[name] for r in rows]
    return out


def _features(prepare, dataset, tokenizer, max_length, doc_stride, padding, needed):
    from .data import check_columns  # here: the predictor imports this module and needs no `datasets`

    check_columns(dataset, needed, "SQuAD dataset")
    return dataset.map(partial(prepare, tokenizer=tokenizer, max_length=max_length, doc_stride=doc_stride,
                               padding=padding), batched=True, remove_columns=dataset.column_names)


def train_features(dataset, tokenizer, max_length: int = DEFAULT_MAX_LENGTH, doc_stride: int = DEFAULT_DOC_STRIDE,
                   padding: bool = False):
    """A Dataset of training windows (:func:`prepare_train_features`) from one with the Hub ``squad`` columns.
    Unpadded by default (pad each batch with ``DataCollatorWithPadding``; positions index the unpadded window, so
    a tokenizer that pads on the left needs ``padding=True``)."""
    return _features(prepare_train_features, dataset, tokenizer, max_length, doc_stride, padding,
                     ("question", "context", "answers"))


def eval_features(dataset, tokenizer, max_length: int = DEFAULT_MAX_LENGTH, doc_stride: int = DEFAULT_DOC_STRIDE,
                  padding: bool = False):
    """A Dataset of evaluation windows (:func:`prepare_eval_features`); decode the model's logits over it with
    :func:`fastformers_hf.inference.question_answering.postprocess`."""
    return _features(prepare_eval_features, dataset, tokenizer, max_length, doc_stride, padding,
                     ("id", "question", "context"))
