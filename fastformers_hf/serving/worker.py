"""One worker process of :class:`~fastformers_hf.serving.multi_instance.MultiInstanceClassifier`: its body
(:func:`worker_main`), how it is started (:func:`start_worker`) and the parent's handle on it (:class:`WorkerHandle`).

A worker pins itself to its cores, sets its thread count, loads a
:class:`~fastformers_hf.inference.classifier.TextClassifier` from the model directory and then answers messages
over a pipe. The protocol, parent -> worker: ``(chunk_id, batches)`` (a list of batches, each a list of validated
inputs) or ``None`` (stop). Worker -> parent: ``("ready", pid, backend)`` or ``("failed", pid, traceback)`` once,
then per message ``("result", chunk_id, logits, seconds, shapes, real_tokens, truncated)`` or
``("error", chunk_id, traceback)``. A question-answering, token-classification or multiple-choice folder
(``spec["kind"]`` in :data:`OBJECT_KINDS`) loads a
:class:`~fastformers_hf.inference.question_answering.QuestionAnswerer`, an
:class:`~fastformers_hf.inference.token_classification.EntityTagger` or a
:class:`~fastformers_hf.inference.multiple_choice.ChoicePredictor` instead; its ``logits`` are then the
predictor's ``predict`` results (a list of Python objects, one per input; no shapes or token counts).
"""
from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

# Kinds answered with predict()'s Python objects.
OBJECT_KINDS = ("question_answering", "token_classification", "multiple_choice")


def worker_main(conn, spec: dict) -> None:
    """Body of one worker: pin, load the predictor (:func:`load_predictor`), then answer ``(chunk_id, batches)``
    messages until told to stop (``None``) or the parent goes away. ``spec``: ``model_dir``, ``backend``,
    ``threads``, ``cpus`` (empty: not pinned), ``max_length``, and optionally ``kind`` and ``sort_by_length``."""
    threads = spec["threads"]
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spinning threads stealing a neighbour's core
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if spec["cpus"]:
            os.sched_setaffinity(0, spec["cpus"])
        clf = load_predictor(spec)
        conn.send(("ready", os.getpid(), clf.backend))
    except Exception:  # report why, so the parent can say it instead of waiting
        conn.send(("failed", os.getpid(), traceback.format_exc()))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        chunk_id, batches = msg
        try:
            result = answer_objects(clf, batches) if spec.get("kind") in OBJECT_KINDS else answer(clf, batches)
            conn.send(("result", chunk_id, *result))
        except Exception:
            conn.send(("error", chunk_id, traceback.format_exc()))


def load_predictor(spec: dict):
    """The predictor of the folder's kind (``spec["kind"]``): a TextClassifier, a QuestionAnswerer, an
    EntityTagger or a ChoicePredictor, on ``spec["threads"]`` threads."""
    from ..inference.classifier import InferenceConfig, TextClassifier

    kind, threads, path, backend = spec.get("kind"), spec["threads"], spec["model_dir"], spec["backend"]
    if kind == "question_answering":
        from ..inference.question_answering import QuestionAnswerer, QuestionAnsweringConfig

        return QuestionAnswerer.from_pretrained(path, backend=backend, config=QuestionAnsweringConfig(
            threads=threads, max_length=spec["max_length"]))
    if kind == "token_classification":
        from ..inference.token_classification import EntityTagger

        return EntityTagger.from_pretrained(path, backend=backend, config=InferenceConfig(
            threads=threads, max_length=spec["max_length"], sort_by_length=spec.get("sort_by_length", True)))
    if kind == "multiple_choice":
        from ..inference.multiple_choice import ChoicePredictor

        return ChoicePredictor.from_pretrained(path, backend=backend, config=InferenceConfig(
            threads=threads, max_length=spec["max_length"], sort_by_length=spec.get("sort_by_length", True)))
    # The parent already checked lengths and applied the long-input policy; workers truncate silently.
    logging.getLogger("fastformers_hf.inference.classifier").setLevel(logging.ERROR)
    return TextClassifier.from_pretrained(path, backend=backend, config=InferenceConfig(
        threads=threads, max_length=spec["max_length"], long_inputs="truncate", sort_by_length=False))


def object_inputs(kind: str, inputs) -> list:
    """``inputs`` validated as the predictor of an :data:`OBJECT_KINDS` kind takes them (in the parent, before
    anything is sent): ``(question, context)`` pairs, texts, or ``(context, choices)`` items."""
    if kind == "question_answering":
        from ..inference.question_answering import validate_qa_inputs as validate
    elif kind == "multiple_choice":
        from ..inference.multiple_choice import validate_choice_inputs as validate
    else:
        from ..inference.token_classification import validate_texts as validate
    return validate(inputs)


def answer_objects(predictor, batches: list[list]) -> tuple[list, list[float], list, int, int]:
    """``(results, seconds per batch, [], 0, 0)`` of one message for a QA, NER or choice predictor: one
    ``predict`` over the message's inputs, the message's batch size as the predictor's (it buckets by length
    itself)."""
    start = time.perf_counter()
    flat = [x for batch in batches for x in batch]
    predictor.config.batch_size = max(len(batch) for batch in batches)
    results = predictor.predict(flat)
    per_input = (time.perf_counter() - start) / len(flat)
    return results, [per_input * len(batch) for batch in batches], [], 0, 0


def answer(clf, batches: list[list]) -> tuple[np.ndarray, list[float], list[tuple[int, int]], int, int]:
    """``(logits (N, C), seconds per batch, (B, T) shape per batch, real tokens, truncated inputs)`` of one
    message. A batch's seconds include its inputs' share of the one tokenisation pass."""
    start = time.perf_counter()
    flat = [x for batch in batches for x in batch]
    ids = clf.token_ids(flat)  # one tokenizer call per message: less per-call overhead than one per batch
    truncated = len(clf.truncated(flat, ids))  # for the parent's warning; re-tokenises only inputs at the limit
    tokenise_s = (time.perf_counter() - start) / len(flat)
    out, seconds, shapes, real, pos = [], [], [], 0, 0
    for batch in batches:
        start = time.perf_counter()
        features = clf.collate(ids[pos:pos + len(batch)])  # padded to the batch's own longest input
        out.append(clf.runner(features))  # (B, C)
        seconds.append(time.perf_counter() - start + tokenise_s * len(batch))
        shapes.append(tuple(features["input_ids"].shape))
        real += int(features["attention_mask"].sum())
        pos += len(batch)
    return np.concatenate(out).astype(np.float32), seconds, shapes, real, truncated


@dataclass
class WorkerHandle:
    """The parent's view of one worker: its process and pipe, whether it loaded the model, and what it holds."""

    index: int
    cpus: list[int]
    process: Any
    conn: Any
    ready: bool = False
    pid: Optional[int] = None
    inflight: dict[int, float] = field(default_factory=dict)  # chunk id -> time sent


def start_worker(ctx, index: int, spec: dict) -> WorkerHandle:
    """Start worker ``index`` in the multiprocessing context ``ctx`` (``spawn`` or ``forkserver``: torch and
    ``fork`` do not mix) as a daemon; it reports ``ready`` once it has loaded the model."""
    parent_conn, child_conn = ctx.Pipe(duplex=True)
    process = ctx.Process(target=worker_main, args=(child_conn, spec), daemon=True, name=f"fastformers-worker-{index}")
    process.start()
    child_conn.close()
    return WorkerHandle(index, spec["cpus"], process, parent_conn)
