"""An HTTP server on Ray Serve for any model folder the package writes: :func:`deploy`, :func:`shutdown` and their
settings, :class:`ServeConfig`.

Two deployments make one application (``ServeConfig.name``):

* ``model``: ``replicas`` copies of the folder's predictor, loaded as in process by
  :func:`~fastformers_hf.serving.worker.load_predictor` (a TextClassifier, QuestionAnswerer or EntityTagger), each
  with a fixed intra-op thread count and ``num_cpus = threads_per_replica`` for Ray's scheduler. Concurrent requests
  are merged by ``@serve.batch`` (up to ``max_batch_size`` requests, waiting at most ``batch_wait_ms``) into one
  ``predict`` call whose forward passes hold up to ``max_batch_size`` inputs.
* ``http``: the ingress (no CPU reserved: it only parses JSON and waits), a raw Starlette handler for
  ``POST /predict``, ``GET /health`` and ``GET /info``. It answers bad requests with 4xx and ``{"error": ...}``, and
  sends a request again when the replica running it dies (see :meth:`HttpIngress._call`).

Ray is imported only inside these functions and the replicas: ``import fastformers_hf.serving`` works without it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import FastFormersError
from .cores import physical_cores
from .ray_config import (INSTALL_HINT, LOCAL_RAY_ENV, MAX_ATTEMPTS, RETRY_PAUSE_S, ROUTES, SERVED_KINDS, ServeConfig,
                         builder_args, check_port_free, folder_info, jsonable, versions)

# Ray Serve's logger: in a replica its records go to that replica's Serve log, with the request id.
logger = logging.getLogger("ray.serve")

def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": message, "status": status}





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
            return _error(400, str(err))
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
            return [_error(500, f"prediction failed: {type(err).__name__}: {err}")] * len(requests)
        out = []
        for r in requests:
            try:
                out.append(self._answer(r))
            except FastFormersError as err:
                out.append(_error(400, str(err)))
            except Exception as err:
                out.append(_error(500, f"prediction failed: {type(err).__name__}: {err}"))
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


class HttpIngress:
    """The ``http`` deployment: routes, request checks and JSON answers in front of the ``model`` replicas."""

    def __init__(self, model, info: dict[str, Any], max_inputs_per_request: int):
        self.model = model  # DeploymentHandle of the model deployment
        self.info = info
        self.max_inputs = max_inputs_per_request

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        path = request.scope.get("path", "/")
        root = request.scope.get("root_path", "")
        if root and root != "/" and path.startswith(root):
            path = path[len(root):]
        path = "/" + path.strip("/")
        routes = {"/predict": "POST", "/health": "GET", "/info": "GET"}
        if path not in routes:
            status, body = 404, {"error": f"no route {path}; this server answers {ROUTES}."}
        elif request.method != routes[path]:
            status, body = 405, {"error": f"{path} takes {routes[path]}, not {request.method}."}
        elif path == "/health":
            status, body = 200, {"status": "ok"}
        elif path == "/info":
            status, body = await self._info()
        else:
            status, body = await self._handle_predict(request)
        return JSONResponse(body, status_code=status)

    async def _info(self) -> tuple[int, dict[str, Any]]:
        reply = await self._call("describe")
        if "error" in reply:
            return reply["status"], {"error": reply["error"]}
        info = dict(self.info)
        info["variant"] = {"backend": reply["backend"], "onnx_variant": info.pop("onnx_variant")
                           if reply["backend"] == "onnxruntime" else None}
        info.pop("onnx_files", None)
        info["versions"] = reply["versions"]
        info["threads_per_replica"], info["max_length"] = reply["threads"], reply["max_length"]
        return 200, info

    async def _handle_predict(self, request) -> tuple[int, dict[str, Any]]:
        body = await request.body()
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            return 400, {"error": f"the request body is not JSON ({err}); send {{\"inputs\": [...]}}."}
        if not isinstance(payload, dict) or "inputs" not in payload:
            found = f"an object with keys {sorted(payload)[:5]}" if isinstance(payload, dict) else \
                f"a JSON {type(payload).__name__}"
            return 400, {"error": f"the body is {found}, with no 'inputs'; send {{\"inputs\": [...]}}, a list of "
                                  "inputs."}
        inputs = payload["inputs"]
        if not isinstance(inputs, list):
            return 400, {"error": f"'inputs' must be a list of inputs, got a JSON {type(inputs).__name__}; wrap a "
                                  "single input in a list."}
        if not inputs:
            return 400, {"error": "'inputs' is an empty list; send at least one input."}
        if len(inputs) > self.max_inputs:
            return 413, {"error": f"{len(inputs)} inputs in one request; this server takes at most "
                                  f"{self.max_inputs} (max_inputs_per_request): split them over several requests."}
        reply = await self._call("predict", inputs)
        if "error" in reply:
            return reply["status"], {"error": reply["error"]}
        return 200, {"outputs": reply["outputs"]}

    async def _call(self, method: str, *args) -> dict[str, Any]:
        """``method`` of a model replica, sent again on another replica if the one running it dies.

        Written here because Ray Serve retries only the choice of a replica (a request sent to a replica already
        known dead goes elsewhere); a request running on a replica when it dies fails with ``RayActorError``, and
        the HTTP proxy would answer it 500 without a JSON message. Predictions have no side effects, so sending
        one again is safe; after :data:`MAX_ATTEMPTS` lost replicas the answer is 503 with a message.
        """
        from ray.exceptions import RayActorError
        from ray.serve import exceptions as serve_errors

        lost = (RayActorError, *(e for e in [getattr(serve_errors, "DeploymentUnavailableError", None)] if e))
        busy = getattr(serve_errors, "BackPressureError", ())
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await getattr(self.model, method).remote(*args)
            except lost as err:
                logger.warning("a model replica was lost during a request (%s); attempt %d of %d.",
                               type(err).__name__, attempt, MAX_ATTEMPTS)
                if attempt == MAX_ATTEMPTS:
                    return _error(503, f"the model replica answering this request was lost {MAX_ATTEMPTS} times "
                                       f"({type(err).__name__}); Ray Serve is restarting replicas: retry shortly.")
                await asyncio.sleep(RETRY_PAUSE_S * attempt)
            except busy as err:
                return _error(503, f"the server is at capacity ({err}); retry shortly or add replicas.")
            except Exception as err:  # anything else: say what, never a bare 500
                logger.exception("model call failed")
                return _error(500, f"the model call failed: {type(err).__name__}: {err}")
        raise AssertionError("unreachable")


# -- deploy / shutdown -------------------------------------------------------------------------------------------

_STARTED_RAY = False  # whether deploy() started the local Ray instance (then shutdown() stops it)


def _import_ray():
    """``(ray, serve)``, or the install hint if Ray Serve is missing."""
    try:
        import ray
        from ray import serve
    except ImportError as err:
        raise FastFormersError(f"serving over HTTP needs Ray Serve, which is not installed ({err}): "
                               f"{INSTALL_HINT}") from None
    return ray, serve


def _check_http_options(serve, config: ServeConfig) -> None:
    """Refuse a host/port other than the one Ray Serve already listens on: they are set once per Ray instance,
    and ``serve.start`` only warns that new ones are not applied."""
    try:
        http = serve.context._get_global_client().http_config  # not public API: skipped if it moves
        host, port = http.host, http.port
    except Exception:
        return
    if (host, port) != (config.host, config.port):
        raise FastFormersError(f"Ray Serve already listens on {host}:{port} in this Ray instance (its HTTP address "
                               f"is set once); deploy with host={host!r} and port={port}, or call shutdown() first.")


def build_app(model_dir: str | os.PathLike, config: ServeConfig, replicas: int):
    """The Ray Serve application of a model folder (not started)."""
    from ray import serve

    info = folder_info(model_dir)
    kind = info["kind"]
    if kind not in SERVED_KINDS:
        raise FastFormersError(f"{model_dir} holds a {kind.replace('_', ' ')} model; the server answers "
                               f"{', '.join(k.replace('_', ' ') for k in SERVED_KINDS)} models.")
    spec = {"model_dir": str(Path(model_dir).resolve()), "backend": config.backend,
            "threads": config.threads_per_replica, "cpus": [], "max_length": None, "kind": kind,
            "sort_by_length": True}
    model = serve.deployment(ModelReplica, name="model", num_replicas=replicas,
                             ray_actor_options={"num_cpus": config.threads_per_replica},
                             # at least one batch running and the next one filling
                             max_ongoing_requests=2 * config.max_batch_size)
    ingress = serve.deployment(HttpIngress, name="http", num_replicas=1, ray_actor_options={"num_cpus": 0},
                               max_ongoing_requests=max(256, 4 * replicas * config.max_batch_size))
    info.update(replicas=replicas, max_batch_size=config.max_batch_size, batch_wait_ms=config.batch_wait_ms,
                max_inputs_per_request=config.max_inputs_per_request, long_inputs=config.long_inputs)
    return ingress.bind(model.bind(spec, config.max_batch_size, config.batch_wait_ms / 1000.0, config.long_inputs),
                        info, config.max_inputs_per_request)


def app_builder(args: dict[str, str]):
    """Ray Serve application builder, for ``serve run``, ``serve deploy`` config files and KubeRay's RayService:
    ``fastformers_hf.serving.ray_server:app_builder`` with args ``model_dir`` and any :class:`ServeConfig` field
    (as strings). Threads are checked against the CPUs of the Ray cluster it runs on; host, port, route prefix
    and name come from the Serve config there, not from ``args``."""
    import ray

    model_dir, typed = builder_args(args)
    config = ServeConfig(**{**typed, "address": typed.get("address") or "auto"})  # core check: the cluster's below
    cpus = int(ray.cluster_resources().get("CPU", 0)) if ray.is_initialized() else len(physical_cores())
    config.check_cores(cpus, "CPU(s) in the Ray cluster")
    return build_app(model_dir, config, config.num_replicas(cpus))


def deploy(model_dir: str | os.PathLike, config: ServeConfig | None = None) -> str:
    """Serve ``model_dir`` over HTTP on Ray Serve (starting a local Ray instance unless ``config.address`` names a
    cluster, or Ray is already initialised); returns the base URL once every replica has loaded the model."""
    global _STARTED_RAY
    config = config or ServeConfig()
    from ..utils.model_folder import check_model_folder, load_tokenizer, onnx_files

    # Clear errors for a folder the replicas could not load, before Ray starts.
    check_model_folder(model_dir, need_weights=config.backend == "pytorch" or not onnx_files(model_dir))
    if config.backend == "onnx" and not onnx_files(model_dir):
        raise FastFormersError(f"{model_dir} holds no *.onnx graph; export one (fastformers-hf onnx) or use "
                               "backend='auto' or 'pytorch'.")
    if load_tokenizer(model_dir) is None:
        raise FastFormersError(f"{model_dir} has no tokenizer; save one beside the model "
                               "(tokenizer.save_pretrained(model_dir)): every replica loads it from there.")
    ray, serve = _import_ray()
    if config.address is None and not ray.is_initialized():
        check_port_free(config.host, config.port)
    if not ray.is_initialized():
        if config.address is None:
            for name, value in LOCAL_RAY_ENV.items():  # read by Serve's controller, a child of the raylet
                os.environ.setdefault(name, value)
            if config.throughput_optimized:
                os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
            cores = len(physical_cores())
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, config.num_replicas(cores) *
                                                   config.threads_per_replica),
                     include_dashboard=False, object_store_memory=256 * 1024 ** 2, log_to_driver=False)
            _STARTED_RAY = True
        else:
            ray.init(address=config.address, log_to_driver=False)
    if config.address is None:
        replicas = config.num_replicas(len(physical_cores()))
    else:
        cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
        config.check_cores(cluster_cpus, "CPU(s) in the Ray cluster")
        replicas = config.num_replicas(cluster_cpus)
    serve.start(http_options={"host": config.host, "port": config.port}, proxy_location=config.proxy_location)
    _check_http_options(serve, config)
    app = build_app(model_dir, config, replicas)
    try:
        serve.run(app, name=config.name, route_prefix=config.route_prefix, blocking=False)
    except RuntimeError as err:  # Ray Serve gave up starting the replicas; its message holds their traceback
        raise FastFormersError(f"Ray Serve could not start the replicas of {model_dir}: {err}") from None
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    return f"http://{host}:{config.port}{config.route_prefix.rstrip('/')}"


def shutdown() -> None:
    """Stop Ray Serve, and the local Ray instance if :func:`deploy` started it (nothing to do without Ray)."""
    global _STARTED_RAY
    try:
        ray, serve = _import_ray()
    except FastFormersError:
        return
    if ray.is_initialized():
        serve.shutdown()
        if _STARTED_RAY:
            ray.shutdown()
            _STARTED_RAY = False


__all__ = ["ServeConfig", "deploy", "shutdown", "build_app", "app_builder", "jsonable", "INSTALL_HINT"]
