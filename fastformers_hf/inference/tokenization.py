"""Tokenisation for prediction, shared by the classifier and the multi-instance workers: token ids of each input
truncated to the model's limit, which of them truncation cut (:func:`truncated`), untruncated lengths
(:func:`token_lengths`) and padding a batch to its own longest input (:func:`collate`).

Token ids come from one of two paths that give the same ids (``tests/test_classifier.py`` checks it, truncation
included): :func:`transformers_token_ids`, the ``transformers`` call, for every tokenizer; and, for fast tokenizers,
:func:`rust_encoder`, a private copy of their Rust ``Tokenizer`` called through ``encode_batch_fast``, which skips
the character offsets ``transformers`` asks for and the wrapper's per-call work. The second path is kept because it
is measurably faster where serving spends it: ``python benchmarks/bench_tokenization.py --model DIR`` times both
on the same SST-2 dev sentences, taking turns call by call, back to back at batch 1 and 32, and, as serving runs
them, right after a forward pass of the model in ``DIR`` (which evicts the tokenizer from the caches), with the
forward pass timed too; its report gives what the fast path saves per input beside the model's per-input latency.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from .inputs import TextInput

TokenIds = dict  # input name -> list of token ids, of one input


def _by_kind(inputs: Sequence[TextInput]) -> list[tuple[list[int], bool]]:
    """``(indices, is_pair)`` of the single texts and of the pairs: they are tokenised apart, since in one call a
    single text would get the pairs' extra [SEP]."""
    singles = [i for i, x in enumerate(inputs) if isinstance(x, str)]
    pairs = [i for i, x in enumerate(inputs) if not isinstance(x, str)]
    return [(idx, is_pair) for idx, is_pair in ((singles, False), (pairs, True)) if idx]


def _encode(tokenizer, inputs: Sequence[TextInput], idx: list[int], is_pair: bool, **kwargs):
    firsts = [inputs[i][0] if is_pair else inputs[i] for i in idx]
    return tokenizer(firsts, [inputs[i][1] for i in idx] if is_pair else None, **kwargs)


def transformers_token_ids(tokenizer, inputs: Sequence[TextInput], max_length: int) -> list[TokenIds]:
    """Token ids (and segment ids / attention mask, as the tokenizer gives them) of each input through the
    ``transformers`` call, truncated to ``max_length`` like ``tokenizer(..., truncation=True)``: longest first on
    pairs, on the tokenizer's truncation side. One call per kind of input (single texts, pairs)."""
    out: list = [None] * len(inputs)
    for idx, is_pair in _by_kind(inputs):
        enc = _encode(tokenizer, inputs, idx, is_pair, truncation=True, max_length=max_length)
        for j, i in enumerate(idx):
            out[i] = {k: enc[k][j] for k in enc.keys()}
    return out


def rust_encoder(tokenizer, max_length: int) -> Optional[Callable[[Sequence[TextInput]], list[TokenIds]]]:
    """``encode(inputs)``: the ids of :func:`transformers_token_ids` through a private copy of a fast tokenizer's
    Rust ``Tokenizer`` (``encode_batch_fast``: no character offsets), set to truncate the same way (longest first,
    on the tokenizer's truncation side); singles and pairs go in one call. None for slow tokenizers. A copy
    because the ``transformers`` wrapper re-configures its own one on every call."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    from tokenizers import Tokenizer

    rust = Tokenizer.from_str(backend.to_str())
    rust.no_padding()
    rust.enable_truncation(max_length, strategy="longest_first", direction=getattr(tokenizer, "truncation_side", "right"))
    names = getattr(tokenizer, "model_input_names", ["input_ids", "token_type_ids", "attention_mask"])
    fields = [(k, a) for k, a in (("input_ids", "ids"), ("token_type_ids", "type_ids"),
                                  ("attention_mask", "attention_mask")) if k in names]

    def encode(inputs: Sequence[TextInput]) -> list[TokenIds]:
        return [{k: getattr(e, a) for k, a in fields} for e in rust.encode_batch_fast(list(inputs))]

    return encode


def truncated(tokenizer, inputs: Sequence[TextInput], ids: Sequence[TokenIds], max_length: int) -> list[int]:
    """Indices of the inputs that truncation cut, given their token ids: only those that reached
    ``max_length`` are tokenised again, in full."""
    at_limit = [i for i, x in enumerate(ids) if len(x["input_ids"]) >= max_length]
    full = token_lengths(tokenizer, [inputs[i] for i in at_limit])
    return [i for i, n in zip(at_limit, full) if n > max_length]


def token_lengths(tokenizer, inputs: Sequence[TextInput]) -> np.ndarray:
    """Untruncated token count of each input (texts and ``(text, text)`` pairs, mixed or not), shape ``(N,)``."""
    out = np.zeros(len(inputs), dtype=np.int64)
    for idx, is_pair in _by_kind(inputs):
        enc = _encode(tokenizer, inputs, idx, is_pair, truncation=False)
        out[idx] = [len(x) for x in enc["input_ids"]]
    return out


def collate(tokenizer, ids: Sequence[TokenIds]) -> dict[str, np.ndarray]:
    """Pad a batch to its own longest input: input name -> int64 array ``(B, T)``, on the tokenizer's padding side.
    By hand, not ``tokenizer.pad``: that warns on fast tokenizers and costs more than this for the small batches
    of serving."""
    width = max(len(x["input_ids"]) for x in ids)
    pad = {"input_ids": tokenizer.pad_token_id or 0}
    left = getattr(tokenizer, "padding_side", "right") == "left"
    out = {k: np.full((len(ids), width), pad.get(k, 0), dtype=np.int64) for k in ids[0]}  # (B, T) each
    for b, x in enumerate(ids):
        n = len(x["input_ids"])
        for k, v in x.items():
            if left:
                out[k][b, width - n:] = v
            else:
                out[k][b, :n] = v
    return out


def with_special_tokens(tokenizer, ids: list[int]) -> list[int]:
    """``ids`` of one text wrapped in the tokenizer's special tokens ([CLS] ids [SEP], <s> ids </s>).
    transformers 5.x tokenizers no longer have ``build_inputs_with_special_tokens``; every tokenizer of the
    architecture table wraps a single text as its CLS token, the ids and its SEP token."""
    build = getattr(tokenizer, "build_inputs_with_special_tokens", None)
    if build is not None:
        return build(ids)
    return [tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]
