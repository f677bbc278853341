"""The multi-instance server: :class:`MultiInstanceClassifier` and its settings, :class:`RuntimeConfig`.

FastFormers §4.3 serves on CPU with several independent model instances, each pinned to its own cores with a
fixed, small intra-op thread count (measured here: two pinned 1-thread instances gave 1.89x one instance on 2
cores). :class:`MultiInstanceClassifier` starts ``num_instances`` worker processes once (``spawn`` context: torch
and ``fork`` do not mix), pins each to its own physical cores, builds a
:class:`~fastformers_hf.inference.classifier.TextClassifier` in each from a model directory (PyTorch or ONNX
Runtime), and spreads requests across them. A worker that dies is reported (``crashes``) and replaced; its
unanswered requests go to the other workers, so none is lost. A question-answering, token-classification or
multiple-choice folder (:func:`~fastformers_hf.tasks.kinds.kind_of` its config) is served the same way by a
:class:`~fastformers_hf.inference.question_answering.QuestionAnswerer`, an
:class:`~fastformers_hf.inference.token_classification.EntityTagger` or a
:class:`~fastformers_hf.inference.multiple_choice.ChoicePredictor` per worker: ``predict`` only.

The parts: :mod:`~fastformers_hf.serving.cores` (which cores each instance gets),
:mod:`~fastformers_hf.serving.batching` (length buckets), :mod:`~fastformers_hf.serving.worker` (the worker
process) and :mod:`~fastformers_hf.serving.layout_search` (:func:`~fastformers_hf.serving.layout_search.tune`:
which instances x threads x batch size is fastest on the user's data).
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..errors import FastFormersError
from ..inference.inputs import validate_inputs
from ..inference.predictor import Predictor
from ..inference.tokenization import token_lengths
from .batching import length_buckets
from .cores import OVERSUBSCRIBE_POLICIES, plan_instances
from .worker import OBJECT_KINDS, WorkerHandle, start_worker

logger = logging.getLogger(__name__)

EMPTY_INPUT_POLICIES = ("predict", "error")
START_METHODS = ("spawn", "forkserver")


@dataclass
class RuntimeConfig:
    """How a :class:`MultiInstanceClassifier` runs. Bad inputs are handled as documented per field."""

    num_instances: Optional[int] = field(default=None, metadata={"help": "Worker processes (default: physical "
                                         "cores // threads_per_instance)."})
    threads_per_instance: int = field(default=1, metadata={"help": "Intra-op threads of each worker's model."})
    batch_size: int = field(default=1, metadata={"help": "Inputs per forward pass (can be changed per call)."})
    sort_by_length: bool = field(default=True, metadata={"help": "Bucket similar lengths when batch_size > 1."})
    max_length: Optional[int] = field(default=None, metadata={"help": "Token limit (default: the model's maximum)."})
    long_inputs: str = field(default="truncate", metadata={"help": "Inputs over max_length: 'truncate' (and log "
                                                                     "how many) or 'error' (refuse the call)."})
    empty_inputs: str = field(default="predict", metadata={"help": "Empty/blank strings: 'predict' (the model sees "
                              "only its special tokens; the answer is its prior) or 'error' (refuse the call)."})
    oversubscribe: str = field(default="error", metadata={"help": "More threads than physical cores: 'error' or "
                               "'clamp' (reduce threads, then instances, with a warning)."})
    pin_cores: bool = field(default=True, metadata={"help": "Pin each worker to its own cores (sched_setaffinity)."})
    backend: str = field(default="auto", metadata={"help": "auto (ONNX Runtime if the directory holds *.onnx), "
                                                           "onnx or pytorch."})
    start_method: str = field(default="spawn", metadata={"help": "multiprocessing start method: spawn or forkserver."})
    batches_per_message: Optional[int] = field(default=None, metadata={"help": "Batches sent to a worker at once "
                                               "(fewer messages, less overhead); None = about 32 messages per worker."})
    prefetch: int = field(default=2, metadata={"help": "Messages queued per worker so it never waits for the next."})
    max_attempts: int = field(default=2, metadata={"help": "A request that was in flight on this many crashed "
                              "workers fails the call (it is probably what crashes them) instead of being retried."})
    startup_timeout_s: float = field(default=600.0, metadata={"help": "Seconds a worker may take to load the model."})

    def __post_init__(self):
        if self.batch_size < 1 or self.threads_per_instance < 1 or self.prefetch < 1 or self.max_attempts < 1:
            raise FastFormersError("batch_size, threads_per_instance, prefetch and max_attempts must be >= 1.")
        if self.long_inputs not in ("truncate", "error"):
            raise FastFormersError(f"long_inputs must be 'truncate' or 'error', got {self.long_inputs!r}.")
        if self.empty_inputs not in EMPTY_INPUT_POLICIES:
            raise FastFormersError(f"empty_inputs must be one of {EMPTY_INPUT_POLICIES}, got {self.empty_inputs!r}.")
        if self.oversubscribe not in OVERSUBSCRIBE_POLICIES:
            raise FastFormersError(f"oversubscribe must be one of {OVERSUBSCRIBE_POLICIES}, got {self.oversubscribe!r}.")
        if self.start_method not in START_METHODS:
            raise FastFormersError(f"start_method must be one of {START_METHODS} (fork is unsafe with torch), "
                                   f"got {self.start_method!r}.")
        if self.backend not in ("auto", "onnx", "pytorch"):
            raise FastFormersError(f"backend must be auto, onnx or pytorch, got {self.backend!r}.")


class MultiInstanceClassifier(Predictor):
    """``predict_logits(texts)`` spread over pinned worker processes, each running its own copy of the model;
    ``predict_proba`` / ``predict`` (same arguments) are :class:`~fastformers_hf.inference.predictor.Predictor`'s.

    ``model_dir`` is a directory a :class:`~fastformers_hf.inference.classifier.TextClassifier` loads (PyTorch weights or an
    ONNX graph with its tokenizer and config). Workers start once, here, and are reused by every call; use the
    object as a context manager or call :meth:`close`.

    Input handling (checked in this process before anything is sent to a worker):

    * non-text inputs (``None``, numbers, ...) raise :class:`FastFormersError`; ``(text, text)`` pairs are accepted;
    * empty or blank strings are predicted like any input (``empty_inputs="predict"``) or refused (``"error"``);
    * inputs longer than ``max_length`` tokens are truncated with one warning per call (``long_inputs="truncate"``)
      or refused (``"error"``);
    * more threads than physical cores is refused or clamped (``oversubscribe``), see :func:`~fastformers_hf.serving.cores.plan_instances`.

    A worker that dies (killed, out of memory, a crash in native code) is logged, recorded in ``crashes`` and
    replaced on the same cores; the requests it held are sent again. A request that was in flight on
    ``max_attempts`` crashed workers fails the call with :class:`FastFormersError` naming it.
    """

    def __init__(self, model_dir: str | os.PathLike, config: RuntimeConfig | None = None):
        from ..inference.classifier import model_token_limit
        from ..tasks.kinds import kind_of
        from ..utils.model_folder import load_tokenizer, model_config

        if not isinstance(model_dir, (str, os.PathLike)):
            raise FastFormersError("MultiInstanceClassifier loads the model in each worker from a directory: save "
                                   "it with save_pretrained (or export_onnx) and pass the directory.")
        self.config = config or RuntimeConfig()
        self.model_dir = Path(model_dir)
        folder_config = model_config(self.model_dir)
        self.kind = kind_of(folder_config).name  # question_answering / token_classification: predict() only
        self.tokenizer = load_tokenizer(self.model_dir)  # the workers load the same one from the directory
        if self.tokenizer is None:
            raise FastFormersError(f"{self.model_dir} has no tokenizer; save one beside the model "
                                   "(tokenizer.save_pretrained(model_dir)): every worker loads it from there.")
        self.id2label = {int(k): v for k, v in (folder_config.get("id2label") or {0: "LABEL_0", 1: "LABEL_1"}).items()}
        self.max_length = self.config.max_length or model_token_limit(folder_config, self.tokenizer)
        self.plan = plan_instances(self.config.num_instances, self.config.threads_per_instance,
                                   self.config.oversubscribe)
        import multiprocessing as mp

        self._ctx = mp.get_context(self.config.start_method)
        self.crashes: list[dict[str, Any]] = []
        self.stats: dict[str, Any] = {}
        self._next_chunk = 0
        self._closed = False
        self._workers: list[WorkerHandle] = []
        try:
            self._workers = [self._start_worker(i) for i in range(self.plan.num_instances)]
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        self.backend = self._backend

    # -- workers --------------------------------------------------------------------------------------------------

    def _start_worker(self, index: int) -> WorkerHandle:
        spec = {"model_dir": str(self.model_dir), "backend": self.config.backend, "threads": self.plan.threads_per_instance,
                "cpus": self.plan.cpus[index] if self.config.pin_cores else [], "max_length": self.max_length,
                "kind": self.kind, "sort_by_length": self.config.sort_by_length}
        if self.kind == "question_answering":
            spec["max_length"] = self.config.max_length  # None: the QuestionAnswerer's own window length
        return start_worker(self._ctx, index, spec)

    def wait_until_ready(self) -> None:
        """Block until every worker (including a replacement still loading the model) can take requests."""
        self._wait_ready()

    def _wait_ready(self) -> None:
        from multiprocessing.connection import wait

        deadline = time.monotonic() + self.config.startup_timeout_s
        while not all(w.ready for w in self._workers):
            left = deadline - time.monotonic()
            if left <= 0:
                raise FastFormersError(f"workers did not load the model within {self.config.startup_timeout_s:.0f} s; "
                                       "raise startup_timeout_s or check the model directory.")
            waiting = [w for w in self._workers if not w.ready]
            for obj in wait([w.conn for w in waiting] + [w.process.sentinel for w in waiting], timeout=left):
                worker = next(w for w in waiting if obj in (w.conn, w.process.sentinel))
                self._handle_startup(worker)

    def _handle_startup(self, worker: WorkerHandle) -> None:
        try:
            kind, pid, payload = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(timeout=5)
            raise FastFormersError(f"worker {worker.index} exited with code {worker.process.exitcode} while loading "
                                   f"{self.model_dir}.") from None
        if kind == "failed":
            raise FastFormersError(f"worker {worker.index} could not load {self.model_dir}:\n{payload}")
        worker.ready, worker.pid, self._backend = True, pid, payload

    def _replace(self, worker: WorkerHandle, pending: deque, chunks: dict, attempts: dict) -> None:
        """Record a dead worker, requeue what it held (front of the queue), start its replacement."""
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        requeued = [c for c in worker.inflight if c in chunks]
        crash = {"worker": worker.index, "pid": worker.pid, "exitcode": code, "requeued_requests":
                 int(sum(sum(len(b) for b in chunks[c][1]) for c in requeued)), "time": time.time()}
        self.crashes.append(crash)
        logger.error("worker %d (pid %s) died with exit code %s; %d request(s) it held are sent again, starting a "
                     "replacement.", worker.index, worker.pid, code, crash["requeued_requests"])
        for c in requeued:
            attempts[c] = attempts.get(c, 0) + 1
            if attempts[c] >= self.config.max_attempts:
                first = chunks[c][0][0]
                raise FastFormersError(f"inputs starting at index {first} were being processed by {attempts[c]} workers "
                                       "that crashed; they are probably the cause (e.g. too long for memory). Remove "
                                       "or shorten them.")
        if len(self.crashes) - self._crashes_at_call > 2 * len(self._workers) + 2:
            raise FastFormersError(f"{len(self.crashes) - self._crashes_at_call} workers died during this call (the last "
                                   f"with exit code {code}); giving up. Check memory and the model directory.")
        pending.extendleft(reversed(requeued))
        try:
            worker.conn.close()
        except OSError:
            pass
        new = self._start_worker(worker.index)
        self._workers[worker.index] = new

    # -- prediction -----------------------------------------------------------------------------------------------

    def _check_inputs(self, inputs, need_lengths: bool = True) -> tuple[list, Optional[list[int]], list[np.ndarray]]:
        """Validated inputs, their token lengths capped at max_length (only computed when ``need_lengths``: this
        process then tokenises every input once more) and the index groups of single texts and of pairs, which
        never share a batch (pairs are usually much longer than single texts)."""
        inputs = validate_inputs(inputs)
        if self.config.empty_inputs == "error":
            empty = [i for i, x in enumerate(inputs) if not any(p.strip() for p in ((x,) if isinstance(x, str) else x))]
            if empty:
                raise FastFormersError(f"{len(empty)} input(s) are empty or blank (first: index {empty[0]}); remove "
                                       "them or set empty_inputs='predict'.")
        is_pair = np.array([not isinstance(x, str) for x in inputs], dtype=bool)
        groups = [g for g in (np.flatnonzero(~is_pair), np.flatnonzero(is_pair)) if len(g)]
        if not need_lengths:
            return inputs, None, groups
        lengths = token_lengths(self.tokenizer, inputs)
        too_long = np.flatnonzero(lengths > self.max_length)
        if len(too_long) and self.config.long_inputs == "error":
            raise FastFormersError(f"{len(too_long)} input(s) exceed {self.max_length} tokens (first: index "
                                   f"{too_long[0]}, {lengths[too_long[0]]} tokens); shorten them or set "
                                   "long_inputs='truncate'.")
        return inputs, np.minimum(lengths, self.max_length).tolist(), groups

    def predict_logits(self, inputs, batch_size: int | None = None,
                       progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Logits ``(N, num_labels)`` in the caller's order. ``progress(done, total)`` is called as results arrive."""
        if self.kind in OBJECT_KINDS:
            raise FastFormersError(f"{self.model_dir} holds a {self.kind.replace('_', ' ')} model, which has no "
                                   "class logits or probabilities: use predict(inputs).")
        if self._closed:
            raise FastFormersError("this MultiInstanceClassifier is closed; create a new one.")
        bs = batch_size or self.config.batch_size
        # Lengths are needed to refuse long inputs up front, or to bucket batches; batch 1 needs neither, and
        # tokenising here would leave the workers idle meanwhile (the workers count truncations instead).
        bucket = bs > 1 and self.config.sort_by_length
        inputs, lengths, groups = self._check_inputs(inputs, need_lengths=bucket or self.config.long_inputs == "error")
        out = np.empty((len(inputs), len(self.id2label)), dtype=np.float32)
        if not inputs:
            return out
        batches = [g[b] for g in groups for b in
                   length_buckets([lengths[i] for i in g] if bucket else [0] * len(g), bs, bucket)]
        self._serve(inputs, batches, bs, progress, out)
        return out

    def predict(self, inputs, batch_size: int | None = None, progress: Callable[[int, int], None] | None = None):
        """Classifiers: :class:`~fastformers_hf.inference.predictor.Predictor`'s labels. Question answering, token
        classification and multiple choice: exactly what the folder's predictor's ``predict`` returns, in
        order (``batch_size`` inputs per batch, chunks of batches spread over the workers)."""
        if self.kind not in OBJECT_KINDS:
            return super().predict(inputs, batch_size=batch_size, progress=progress)
        from .worker import object_inputs

        if self._closed:
            raise FastFormersError("this MultiInstanceClassifier is closed; create a new one.")
        try:
            items = object_inputs(self.kind, inputs)
        except FastFormersError as e:
            raise FastFormersError(f"{self.model_dir} holds a {self.kind.replace('_', ' ')} model: {e}") from None
        if self.kind == "token_classification":  # the empty / long input policies, as for classifiers
            items = self._check_inputs(items, need_lengths=self.config.long_inputs == "error")[0]
        bs, out = batch_size or self.config.batch_size, [None] * len(items)
        if items:
            self._serve(items, length_buckets([0] * len(items), bs, False), bs, progress, out)
        return out

    def _serve(self, inputs: list, batches: list[np.ndarray], bs: int, progress, out) -> None:
        """Send ``batches`` (indices into ``inputs``) to the workers in chunks, resend what crashed workers held,
        and put each input's result in ``out`` at its index (logits in an array, or predict's objects in a list)."""
        from multiprocessing.connection import wait

        # ~32 messages per worker: few enough that messaging costs little, many enough that the last one to finish
        # (the others then idle) is a small part of the call.
        per_msg = self.config.batches_per_message or max(1, min(32, math.ceil(len(batches) / (32 * len(self._workers)))))
        chunks: dict[int, tuple[np.ndarray, list[list]]] = {}
        for i in range(0, len(batches), per_msg):
            group = batches[i:i + per_msg]
            chunks[self._next_chunk] = (np.concatenate(group), [[inputs[j] for j in b] for b in group])
            self._next_chunk += 1
        pending, attempts = deque(chunks), {}
        self._crashes_at_call = len(self.crashes)
        done, batch_seconds, padded, real, truncated = 0, [], 0, 0, 0
        start = time.perf_counter()
        while chunks:
            for w in self._workers:  # keep every ready worker fed
                while w.ready and pending and len(w.inflight) < self.config.prefetch:
                    cid = pending.popleft()
                    try:
                        w.conn.send((cid, chunks[cid][1]))
                    except (BrokenPipeError, OSError):
                        pending.appendleft(cid)
                        break
                    w.inflight[cid] = time.perf_counter()
            by_handle = {}
            for w in self._workers:
                by_handle[w.conn] = w
                by_handle[w.process.sentinel] = w
            for handle in wait(list(by_handle), timeout=60):
                w = by_handle[handle]
                if self._workers[w.index] is not w:
                    continue  # already replaced in this round
                message = None
                if handle is w.conn or w.conn.poll():
                    try:
                        message = w.conn.recv()
                    except (EOFError, OSError):
                        message = None
                if message is None:
                    if not w.process.is_alive() or handle is w.conn:
                        self._replace(w, pending, chunks, attempts)
                    continue
                kind = message[0]
                if kind == "ready":
                    w.ready, w.pid, self._backend = True, message[1], message[2]
                elif kind == "failed":
                    raise FastFormersError(f"replacement worker {w.index} could not load {self.model_dir}:\n{message[2]}")
                elif kind == "error":
                    w.inflight.pop(message[1], None)
                    if message[1] in chunks:
                        raise RuntimeError(f"worker {w.index} failed on inputs starting at index "
                                           f"{chunks[message[1]][0][0]}:\n{message[2]}")
                elif kind == "result":
                    _, cid, logits, seconds, shapes, real_tokens, cut = message
                    w.inflight.pop(cid, None)
                    if cid not in chunks:
                        continue  # a stale answer from an earlier call that was abandoned
                    if isinstance(out, np.ndarray):
                        out[chunks.pop(cid)[0]] = logits
                    else:  # predict()'s Python objects, one per input
                        for i, result in zip(chunks.pop(cid)[0].tolist(), logits):
                            out[i] = result
                    batch_seconds += seconds
                    padded += int(sum(b * t for b, t in shapes))
                    real += real_tokens
                    truncated += cut
                    done += len(logits)
                    if progress is not None:
                        progress(done, len(inputs))
        wall = time.perf_counter() - start
        if truncated:
            logger.warning("%d input(s) longer than %d tokens were truncated.", truncated, self.max_length)
        self.stats = {"queries": len(inputs), "batches": len(batches), "batch_size": bs, "wall_s": wall,
                      "queries_per_s": len(inputs) / wall if wall > 0 else float("inf"),
                      "batch_ms": [1e3 * s for s in batch_seconds], "real_tokens": real, "padded_tokens": padded, "truncated": truncated}

    # -- lifecycle ------------------------------------------------------------------------------------------------

    @property
    def pids(self) -> list[Optional[int]]:
        return [w.pid for w in self._workers]

    def close(self) -> None:
        """Stop the workers (politely, then by force after a few seconds)."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=5)
            try:
                w.conn.close()
            except OSError:
                pass

    def __enter__(self) -> "MultiInstanceClassifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


MultiInstancePredictor = MultiInstanceClassifier  # the same pool; a name for QA and NER folders too
