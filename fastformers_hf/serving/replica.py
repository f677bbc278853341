"""What runs in each replica of the Ray Serve server's ``model`` deployment (:mod:`~fastformers_hf.serving.ray_server`).

* :class:`ModelReplica`: the folder's predictor, answering ``predict`` calls in dynamic batches.
* :class:`FloorReplica`: the same methods without a model (every output ``None``): the load test serves it to
  measure what a request costs apart from the model.
* :class:`ModelReplicaWithRoutes`, :class:`FloorReplicaWithRoutes`: the same, answering HTTP themselves
  (``ServeConfig.ingress="replica"``: Ray's proxy sends each request straight to a replica).

Ray is imported only inside the replicas' methods: importing this module needs no Ray.
"""
from __future__ import annotations

import inspect
import logging
import os
from typing import Any

from ..errors import FastFormersError
from .http_api import HttpRoutes, error_reply
from .ray_config import jsonable, versions

# Ray Serve's logger: in a replica its records go to that replica's Serve log, with the request id.
logger = logging.getLogger("ray.serve")


class ModelReplica:
    """One replica of the ``model`` deployment: the folder's predictor on ``spec["threads"]`` threads, answering
    :meth:`predict` calls in dynamic batches. Results are returned, never raised: ``{"outputs": [...]}`` or
    ``{"error": str, "status": int}``."""

    def __init__(self, spec: dict, max_batch_size: int, batch_wait_s: float, long_inputs: str):
        threads = spec["threads"]
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before torch / ONNX Runtime start their pools
            os.environ[var] = str(threads)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from ray import serve

        from .worker import load_predictor

        torch.set_num_threads(threads)
        self.kind, self.long_inputs, self.spec = spec["kind"], long_inputs, spec
        self.predictor = load_predictor(spec)
        self.predictor.config.batch_size = max_batch_size  # inputs per forward pass
        if hasattr(self.predictor.config, "sort_by_length"):
            self.predictor.config.sort_by_length = True  # a merged batch mixes lengths: bucket them
        self._batched = serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_s)(self._run_batch)

    def pid(self) -> int:
        """This replica's process id (tests kill it to check recovery)."""
        return os.getpid()

    def describe(self) -> dict[str, Any]:
        """The backend this replica runs, its threads and library versions."""
        import torch

        return {"backend": self.predictor.backend, "threads": self.spec["threads"],
                "torch_threads": torch.get_num_threads(), "max_length": getattr(self.predictor, "max_length", None),
                "versions": versions()}

    def _validate(self, inputs: list) -> list:
        """The inputs in canonical form, as the in-process predictor accepts them; FastFormersError otherwise."""
        from ..inference.inputs import validate_inputs
        from ..inference.multiple_choice import validate_choice_inputs
        from ..inference.question_answering import validate_qa_inputs
        from ..inference.token_classification import validate_texts
        from ..inference.tokenization import token_lengths

        check = {"question_answering": validate_qa_inputs, "token_classification": validate_texts,
                 "multiple_choice": validate_choice_inputs}.get(self.kind, validate_inputs)
        try:
            items = check(inputs)
        except FastFormersError as err:
            raise FastFormersError(f"this server holds a {self.kind.replace('_', ' ')} model: {err}") from None
        # Question answering splits long contexts into windows; the other kinds have one token limit, which
        # multiple choice applies to each (context, choice) pair.
        if self.long_inputs == "error" and self.kind != "question_answering":
            owner = list(range(len(items)))
            encoded = items
            if self.kind == "multiple_choice":
                owner = [i for i, (_, choices) in enumerate(items) for _ in choices]
                encoded = [(context, choice) for context, choices in items for choice in choices]
            lengths = token_lengths(self.predictor.tokenizer, encoded)
            limit = self.predictor.max_length
            over = [i for i, n in enumerate(lengths) if n > limit]
            if over:
                raise FastFormersError(f"{len(over)} input(s) exceed the model's {limit} tokens (first: input "
                                       f"{owner[over[0]]}, {int(lengths[over[0]])} tokens); shorten them (this "
                                       "server refuses long inputs: long_inputs='error').")
        return items

    async def predict(self, inputs: list) -> dict[str, Any]:
        """Answers of one request (validated here, then batched with concurrent requests)."""
        try:
            items = self._validate(inputs)
        except FastFormersError as err:
            return error_reply(400, str(err))
        result = await self._batched(items)
        return result if isinstance(result, dict) else {"outputs": result}

    async def _run_batch(self, requests: list[list]) -> list:
        # Called on the loop Ray Serve runs user code on, apart from the replica's own control loop; requests that
        # arrive meanwhile wait and form the next batch. Handing the work to a thread instead was slower.
        return self._answer_requests(requests)

    def _answer_requests(self, requests: list[list]) -> list:
        """Per request, its outputs (a list) or an error dict; one ``predict`` for all when possible."""
        flat = [x for r in requests for x in r]
        try:
            outputs, pos = self._answer(flat), 0
            split = []
            for r in requests:
                split.append(outputs[pos:pos + len(r)])
                pos += len(r)
            return split
        except FastFormersError:  # one request refused inside the predictor: answer each on its own
            pass
        except Exception as err:  # a bug or a broken model folder: every request of the batch is told
            logger.exception("prediction failed")
            return [error_reply(500, f"prediction failed: {type(err).__name__}: {err}")] * len(requests)
        out = []
        for r in requests:
            try:
                out.append(self._answer(r))
            except FastFormersError as err:
                out.append(error_reply(400, str(err)))
            except Exception as err:
                out.append(error_reply(500, f"prediction failed: {type(err).__name__}: {err}"))
        return out

    def _answer(self, items: list) -> list:
        """What the in-process ``predict`` returns for ``items``, as JSON values. Classifiers: ``label``,
        ``label_id``, ``score`` plus every label's ``probabilities`` (and the raw ``value`` for regression)."""
        if self.kind in ("question_answering", "token_classification", "multiple_choice"):
            return jsonable(self.predictor.predict(items))
        from ..inference.predictor import softmax

        logits = self.predictor.predict_logits(items)
        probs = softmax(logits)
        names = self.predictor.id2label
        out = []
        for row, p in zip(logits, probs):
            i = int(p.argmax())
            answer = {"label": names[i], "label_id": i, "score": float(p[i]),
                      "probabilities": {names[j]: float(p[j]) for j in range(len(p))}}
            if self.kind == "regression":
                answer["value"] = float(row[0])
            out.append(answer)
        return out



class FloorReplica:
    """A replica without a model: answers ``predict`` with ``None`` per input at once. Served by the load test,
    it shows what HTTP, Ray's proxy, the JSON and the calls between deployments cost one request."""

    def __init__(self, spec: dict, max_batch_size: int, batch_wait_s: float, long_inputs: str):
        self.spec = spec

    def pid(self) -> int:
        return os.getpid()

    def describe(self) -> dict[str, Any]:
        return {"backend": "none", "threads": 0, "torch_threads": 0, "max_length": None, "versions": versions()}

    async def predict(self, inputs: list) -> dict[str, Any]:
        return {"outputs": [None] * len(inputs)}


class OwnRoutes(HttpRoutes):
    """The HTTP routes inside a replica (``ingress="replica"``): a model call is the replica's own method. A
    request running on a replica that dies is answered by Ray's HTTP proxy (a 5xx), not sent again."""

    def __init__(self, spec: dict, max_batch_size: int, batch_wait_s: float, long_inputs: str,
                 info: dict[str, Any], max_inputs_per_request: int):
        super().__init__(spec, max_batch_size, batch_wait_s, long_inputs)  # the replica class after this one
        self.info, self.max_inputs = info, max_inputs_per_request

    async def call_model(self, method: str, *args) -> dict[str, Any]:
        answer = getattr(self, method)(*args)
        return (await answer) if inspect.isawaitable(answer) else answer


class ModelReplicaWithRoutes(OwnRoutes, ModelReplica):
    """:class:`ModelReplica` answering HTTP itself."""


class FloorReplicaWithRoutes(OwnRoutes, FloorReplica):
    """:class:`FloorReplica` answering HTTP itself."""
