"""Extractive question answering at inference: decoding span logits into answers (:func:`postprocess`) and
:class:`QuestionAnswerer`, one ``predict([{"question", "context"}, ...])`` over a PyTorch model or an ONNX Runtime
session.

Spans are scored the way transformers' ``QuestionAnsweringPipeline`` scores them (``select_starts_ends`` and
``decode_spans`` in ``transformers/pipelines/question_answering.py``), so answers and scores match it: in each
window, start and end logits are softmaxed over the context tokens and CLS, CLS is then dropped, a span scores
``p_start * p_end`` (end not before start, at most ``max_answer_length`` tokens), the ``n_best`` best spans of each
window are widened to whole words (``align_to_words``), and spans of the same text (case-insensitive) are merged
over all windows of the question, their scores added; the best answer wins, the first one seen on a tie. The
pipeline's own ``top_k=1`` considers 12 spans per window (``n_best=12``) and allows 15 tokens
(``max_answer_length=15``). It is written here because the pipeline does this per example inside its private
postprocess, not as a function over a batch of windows.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import FastFormersError
from ..serving.batching import length_buckets
from ..tasks.question_answering import DEFAULT_DOC_STRIDE, DEFAULT_MAX_LENGTH, context_index, encode_windows, \
    window_fields
from .inputs import check_items
from .tokenization import collate

SpanLogits = tuple[np.ndarray, np.ndarray]  # start, end logits, each (B, T)
NO_ANSWER = {"answer": "", "score": 0.0, "start": 0, "end": 0}


# ----------------------------------------------------------------------------------------------------------------
# Decoding


def _softmax_over(logits: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Softmax of ``logits`` (T,) over the tokens in ``keep`` (T,), 0 elsewhere."""
    z = np.where(keep, logits - logits[keep].max(), -np.inf)
    p = np.exp(z)
    return p / p.sum()  # (T,)


def _word_spans(offsets: Sequence, word_ids: Sequence | None) -> tuple[np.ndarray, np.ndarray]:
    """Character start and end, per token, of the word holding it within the window (the token's own span where
    it has no word id): what ``Encoding.word_to_chars`` gives the pipeline."""
    starts = np.asarray([o[0] if o is not None else 0 for o in offsets])  # (T,)
    ends = np.asarray([o[1] if o is not None else 0 for o in offsets])  # (T,)
    if word_ids is None:
        return starts, ends
    out_s, out_e = starts.copy(), ends.copy()
    t = 0
    while t < len(offsets):  # runs of consecutive tokens with one word id: a word's tokens are contiguous
        u = t + 1
        if word_ids[t] is not None:
            while u < len(offsets) and word_ids[u] == word_ids[t] and offsets[u] is not None:
                u += 1
            out_s[t:u], out_e[t:u] = starts[t], ends[u - 1]
        t = u
    return out_s, out_e


def window_spans(start_logits, end_logits, fields: Mapping, n_best: int = 20, max_answer_length: int = 30,
                 align_to_words: bool = True) -> list[tuple[int, int, float]]:
    """The ``n_best`` best spans of one window as ``(start char, end char, score)``, best first. ``fields``:
    ``offset_mapping`` (None off the context), optional ``word_ids`` and ``cls_index``. Logits may run past the
    window (padding): only its own tokens are read."""
    offsets = fields["offset_mapping"]
    length = len(offsets)
    context = np.asarray([o is not None for o in offsets])  # (T,)
    if not context.any():
        return []
    keep = context.copy()
    keep[fields.get("cls_index") or 0] = True  # CLS takes part in the softmax (the pipeline keeps it), then drops
    p_start = _softmax_over(np.asarray(start_logits, dtype=np.float64)[:length], keep)  # (T,)
    p_end = _softmax_over(np.asarray(end_logits, dtype=np.float64)[:length], keep)  # (T,)
    valid = np.tril(np.triu(context[:, None] & context[None, :]), max_answer_length - 1)  # (T, T): start <= end
    scores = np.where(valid, np.outer(p_start, p_end), -1.0).ravel()  # (T*T,) start-major
    k = min(n_best, int(valid.sum()))
    best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    best = best[np.argsort(-scores[best], kind="stable")]
    char_start, char_end = (_word_spans(offsets, fields.get("word_ids")) if align_to_words
                            else _word_spans(offsets, None))
    s, e = np.unravel_index(best, (length, length))
    return [(int(char_start[i]), int(char_end[j]), float(scores[b])) for i, j, b in zip(s, e, best)]


def best_answer(context: str, windows: Sequence[tuple[Mapping, Any, Any]], n_best: int = 20,
                max_answer_length: int = 30, align_to_words: bool = True) -> dict:
    """``{"answer", "score", "start", "end"}`` of one question over its windows ``(fields, start_logits,
    end_logits)``: spans of the same text (case-insensitive) add their scores; the first seen keeps its offsets."""
    merged: dict[str, dict] = {}
    for fields, start, end in windows:
        for s, e, score in window_spans(start, end, fields, n_best, max_answer_length, align_to_words):
            text = context[s:e]
            if text.lower() in merged:
                merged[text.lower()]["score"] += score
            else:
                merged[text.lower()] = {"answer": text, "score": score, "start": s, "end": e}
    return max(merged.values(), key=lambda a: a["score"]) if merged else dict(NO_ANSWER)


def _column(rows, name: str, default=None) -> list:
    if hasattr(rows, "column_names"):  # a datasets.Dataset: read the column at once
        return list(rows[name]) if name in rows.column_names else [default] * len(rows)
    return [r.get(name, default) for r in rows]


def postprocess(examples, features, start_logits, end_logits, n_best: int = 20, max_answer_length: int = 30,
                align_to_words: bool = True) -> list[dict]:
    """The best answer of each example over all its windows: ``[{"id", "answer", "score", "start", "end"}]`` in
    the examples' order (``start``/``end``: character offsets in the context). ``examples``: rows with ``id`` and
    ``context``; ``features``: the windows of
    :func:`~fastformers_hf.tasks.question_answering.eval_features`; ``start_logits``/``end_logits``: one row per
    window, ``(num_windows, T)`` (longer rows, e.g. the Trainer's -100 padding on the right, are cut to each
    window)."""
    if len(start_logits) != len(features) or len(end_logits) != len(features):
        raise FastFormersError(f"{len(features)} windows but {len(start_logits)} start / {len(end_logits)} end logit "
                               "rows; pass the model's logits over exactly these features, in order.")
    ids, contexts = [str(x) for x in _column(examples, "id")], _column(examples, "context")
    index = {example_id: i for i, example_id in enumerate(ids)}
    windows: list[list] = [[] for _ in ids]
    columns = zip(_column(features, "example_id"), _column(features, "offset_mapping"),
                  _column(features, "word_ids"), _column(features, "cls_index", 0))
    for w, (example_id, offsets, word_ids, cls) in enumerate(columns):
        if str(example_id) not in index:
            raise FastFormersError(f"window {w} belongs to example {example_id!r}, which is not among the examples.")
        fields = dict(offset_mapping=offsets, word_ids=word_ids, cls_index=cls)
        windows[index[str(example_id)]].append((fields, start_logits[w], end_logits[w]))
    return [{"id": example_id, **best_answer(context, wins, n_best, max_answer_length, align_to_words)}
            for example_id, context, wins in zip(ids, contexts, windows)]


# ----------------------------------------------------------------------------------------------------------------
# Inputs and runners


def _one(x: Any) -> tuple[str, str] | None:
    if isinstance(x, Mapping):
        pair = (x.get("question"), x.get("context"))
    elif isinstance(x, (tuple, list)) and len(x) == 2:
        pair = (x[0], x[1])
    else:
        return None
    return pair if all(isinstance(p, str) for p in pair) else None


_EXPECTED = "pass {'question': str, 'context': str}, a (question, context) pair of strings, or a list of them"


def validate_qa_inputs(inputs: Any) -> list[tuple[str, str]]:
    """``inputs`` as ``(question, context)`` pairs; anything else is refused with the index and type of the first
    bad item (a ``dict`` with other keys besides ``question`` and ``context`` is fine: a SQuAD row is one)."""
    items = check_items(inputs, _one, "questions with contexts", _EXPECTED, single_types=(Mapping, tuple))
    for i, (question, context) in enumerate(items):
        for name, text in (("question", question), ("context", context)):
            if not text.strip():
                raise FastFormersError(f"input {i} has an empty {name}; a question needs a context to answer from.")
    return items


SPAN_OUTPUTS = ("start_logits", "end_logits")  # the question_answering row of tasks.kinds


def qa_pytorch_runner(model) -> Callable[[dict], SpanLogits]:
    """A padded batch (name -> int64 ``(B, T)``) -> ``(start_logits, end_logits)``, each ``(B, T)``: the shared
    :func:`~fastformers_hf.inference.runners.pytorch_runner` with both outputs."""
    from .runners import pytorch_runner

    return pytorch_runner(model, SPAN_OUTPUTS)


def qa_ort_runner(session) -> Callable[[dict], SpanLogits]:
    """The same over an ``onnxruntime.InferenceSession`` of a question-answering export (the shared
    :func:`~fastformers_hf.inference.runners.ort_runner`)."""
    from .runners import ort_runner

    outputs = [o.name for o in session.get_outputs()]
    if not set(SPAN_OUTPUTS) <= set(outputs):
        raise FastFormersError(f"the ONNX graph has outputs {outputs}, not start_logits/end_logits: export it with "
                               "task='question-answering'.")
    return ort_runner(session, SPAN_OUTPUTS)


# ----------------------------------------------------------------------------------------------------------------
# The predictor


@dataclass
class QuestionAnsweringConfig:
    """How a ``QuestionAnswerer`` windows, batches and decodes."""

    max_length: Optional[int] = field(default=None, metadata={"help": "Tokens per window (default: the model's "
                                                                       f"limit, at most {DEFAULT_MAX_LENGTH})."})
    doc_stride: Optional[int] = field(default=None, metadata={"help": "Tokens of overlap between windows of a "
                                                                       "long context (default: min(max_length // 2, "
                                                                       f"{DEFAULT_DOC_STRIDE}), as the pipeline)."})
    batch_size: int = field(default=8, metadata={"help": "Windows per forward pass (each padded to its longest)."})
    n_best: int = field(default=20, metadata={"help": "Best spans of each window merged into the answers."})
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer, in tokens."})
    align_to_words: bool = field(default=True, metadata={"help": "Widen answers to whole words."})
    threads: int = field(default=1, metadata={"help": "Intra-op threads of the model (torch or ONNX Runtime)."})

    def __post_init__(self):
        for name in ("batch_size", "n_best", "max_answer_length", "threads"):
            if getattr(self, name) < 1:
                raise FastFormersError(f"{name} must be >= 1, got {getattr(self, name)}.")


def _session_of(model) -> Any:
    """The ``onnxruntime.InferenceSession`` of a session or of an Optimum ``ORTModel``; None for anything else."""
    if hasattr(model, "run") and hasattr(model, "get_outputs"):
        return model
    session = getattr(model, "session", None)
    return session if session is not None and hasattr(session, "get_outputs") else None


def _check_kind(config, where: str) -> None:
    """Refuse a model of another head; a config without ``architectures`` (an ONNX export of a model built from a
    config) says nothing, and its graph's outputs are checked instead."""
    from ..tasks.kinds import kind_of

    if isinstance(config, dict) and not config.get("architectures"):
        return
    kind = kind_of(config)
    if kind.name != "question_answering":
        raise FastFormersError(f"{where} is a {kind.name} model, not question answering (an "
                               "...ForQuestionAnswering head); use TextClassifier for classifiers.")


class QuestionAnswerer:
    """Answer questions from their contexts with a PyTorch or ONNX Runtime span model: every context is split into
    windows (:func:`~fastformers_hf.tasks.question_answering.encode_windows`), windows are run in batches padded to
    their own longest (dynamic length), and :func:`best_answer` decodes each question over its windows."""

    def __init__(self, runner: Callable[[dict], SpanLogits], tokenizer, config: QuestionAnsweringConfig | None = None,
                 backend: str = "pytorch", source: str | None = None, model_config: dict | None = None):
        from .classifier import model_token_limit

        self.runner, self.tokenizer = runner, tokenizer
        self.config = config or QuestionAnsweringConfig()
        self.backend, self.source = backend, source
        limit = model_token_limit(model_config, tokenizer)
        self.max_length = self.config.max_length or min(limit, DEFAULT_MAX_LENGTH)
        if self.max_length > limit:
            raise FastFormersError(f"max_length {self.max_length} is over the model's limit of {limit} tokens.")
        self.doc_stride = (self.config.doc_stride if self.config.doc_stride is not None
                           else min(self.max_length // 2, DEFAULT_DOC_STRIDE))
        if not 0 <= self.doc_stride < self.max_length:
            raise FastFormersError(f"doc_stride ({self.doc_stride}) must be at least 0 and below max_length "
                                   f"({self.max_length}).")

    @classmethod
    def from_pretrained(cls, model_or_dir, tokenizer=None, config: QuestionAnsweringConfig | None = None,
                        backend: str = "auto") -> "QuestionAnswerer":
        """From a loaded model (PyTorch, an ``onnxruntime.InferenceSession`` or an ``ORTModelForQuestionAnswering``)
        or a directory: one holding ``*.onnx`` runs on ONNX Runtime, else PyTorch."""
        from ..utils.model_folder import model_config
        from .runners import open_model_folder

        config = config or QuestionAnsweringConfig()
        if not isinstance(model_or_dir, (str, os.PathLike)):
            if tokenizer is None:
                raise FastFormersError("pass tokenizer=... with a loaded model.")
            session = _session_of(model_or_dir)
            folder_config = getattr(model_or_dir, "config", None)
            folder_config = folder_config.to_dict() if hasattr(folder_config, "to_dict") else None
            if session is not None:
                return cls(qa_ort_runner(session), tokenizer, config, "onnxruntime", model_config=folder_config)
            _check_kind(model_or_dir, type(model_or_dir).__name__)
            import torch

            torch.set_num_threads(config.threads)
            return cls(qa_pytorch_runner(model_or_dir.eval()), tokenizer, config, "pytorch",
                       model_config=folder_config)
        path = Path(model_or_dir)
        folder_config = model_config(path)
        _check_kind(folder_config, str(path))
        tokenizer, name, loaded = open_model_folder(path, tokenizer, backend, config.threads)
        runner = qa_ort_runner(loaded) if name == "onnxruntime" else qa_pytorch_runner(loaded)
        return cls(runner, tokenizer, config, name, str(path), folder_config)

    validate_inputs = staticmethod(validate_qa_inputs)

    def span_logits(self, pairs: Sequence[tuple[str, str]]) -> tuple[list, list, np.ndarray]:
        """The windows of validated ``(question, context)`` pairs: their decoding fields
        (:func:`~fastformers_hf.tasks.question_answering.window_fields`), their ``(start, end)`` logits, each cut
        to the window's own tokens, and the index of each window's pair, ``(num_windows,)``."""
        tok = self.tokenizer
        enc = encode_windows(tok, [q for q, _ in pairs], [c for _, c in pairs], self.max_length, self.doc_stride)
        ctx, count = context_index(tok), len(enc["input_ids"])
        fields = [window_fields(enc, w, ctx, tok.cls_token_id) for w in range(count)]
        names = [k for k in tok.model_input_names if k in enc]
        ids = [{k: enc[k][w] for k in names} for w in range(count)]
        starts, ends = [None] * count, [None] * count
        left = getattr(tok, "padding_side", "right") == "left"
        for idx in length_buckets([len(x["input_ids"]) for x in ids], self.config.batch_size):
            start, end = self.runner(collate(tok, [ids[i] for i in idx]))  # (B, T) each
            width = start.shape[1]
            for row, i in enumerate(idx):
                n = len(ids[i]["input_ids"])
                cut = slice(width - n, width) if left else slice(0, n)  # the window's own tokens, not padding
                starts[i], ends[i] = start[row, cut], end[row, cut]
        return fields, list(zip(starts, ends)), np.asarray(enc["overflow_to_sample_mapping"])

    def predict(self, inputs) -> list[dict]:
        """``[{"answer", "score", "start", "end"}]`` per input, in order (``start``/``end``: character offsets of
        the answer in its context)."""
        pairs = self.validate_inputs(inputs)
        if not pairs:
            return []
        fields, logits, example_of = self.span_logits(pairs)
        c = self.config
        return [best_answer(context, [(fields[w], *logits[w]) for w in np.flatnonzero(example_of == i)], c.n_best,
                            c.max_answer_length, c.align_to_words) for i, (_, context) in enumerate(pairs)]
