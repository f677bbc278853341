"""An HTTP server on Ray Serve for any model folder the package writes: :func:`deploy`, :func:`shutdown` and their
settings, :class:`ServeConfig`.

With ``ServeConfig.ingress="separate"`` (the default) two deployments make one application (``ServeConfig.name``):

* ``model``: ``replicas`` copies of the folder's predictor (:class:`~fastformers_hf.serving.replica.ModelReplica`),
  loaded as in process by :func:`~fastformers_hf.serving.worker.load_predictor`, each with a fixed intra-op thread
  count and ``num_cpus = threads_per_replica`` for Ray's scheduler. Concurrent requests are merged by
  ``@serve.batch`` (up to ``max_batch_size`` requests, waiting at most ``batch_wait_ms``) into one ``predict`` call
  whose forward passes hold up to ``max_batch_size`` inputs.
* ``http``: the ingress (no CPU reserved: it only parses JSON and waits), the routes of
  :class:`~fastformers_hf.serving.http_api.HttpRoutes` (``POST /predict``, ``GET /health``, ``GET /info``, bad
  requests answered 4xx with ``{"error": ...}``). It sends a request again when the replica running it dies (see
  :meth:`HttpIngress.call_model`).

With ``ingress="replica"`` the ``model`` replicas hold the routes themselves and Ray's proxy calls them directly.
With ``proxy="haproxy"`` HAProxy, not Ray's proxy actor, listens on host:port and forwards each request to an
ingress replica's own HTTP server (Ray Serve's direct ingress).

Ray is imported only inside these functions and the replicas: ``import fastformers_hf.serving`` works without it.
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import FastFormersError
from .cores import physical_cores
from .http_api import HttpRoutes, error_reply
from .ray_config import (INSTALL_HINT, MAX_ATTEMPTS, RETRY_PAUSE_S, SERVED_KINDS, ServeConfig, builder_args,
                         check_haproxy, check_port_free, folder_info, jsonable, local_ray_env)

# Ray Serve's logger: in a replica its records go to that replica's Serve log, with the request id.
logger = logging.getLogger("ray.serve")

class HttpIngress(HttpRoutes):
    """The ``http`` deployment (``ingress="separate"``): the routes in front of the ``model`` replicas, which it
    calls through a deployment handle, sending a request again when the replica running it dies."""

    def __init__(self, model, info: dict[str, Any], max_inputs_per_request: int):
        self.model = model  # DeploymentHandle of the model deployment
        self.info = info
        self.max_inputs = max_inputs_per_request

    async def call_model(self, method: str, *args) -> dict[str, Any]:
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
                    return error_reply(503, f"the model replica answering this request was lost {MAX_ATTEMPTS} times "
                                       f"({type(err).__name__}); Ray Serve is restarting replicas: retry shortly.")
                await asyncio.sleep(RETRY_PAUSE_S * attempt)
            except busy as err:
                return error_reply(503, f"the server is at capacity ({err}); retry shortly or add replicas.")
            except Exception as err:  # anything else: say what, never a bare 500
                logger.exception("model call failed")
                return error_reply(500, f"the model call failed: {type(err).__name__}: {err}")
        raise AssertionError("unreachable")


# -- deploy / shutdown -------------------------------------------------------------------------------------------

_STARTED_RAY = False  # whether deploy() started the local Ray instance (then shutdown() stops it)
_ENV_BEFORE: dict[str, str | None] = {}  # what deploy() changed in os.environ for it: restored by shutdown()


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


def _application(model_cls, routed_cls, spec: dict, info: dict[str, Any], config: ServeConfig, replicas: int,
                 num_cpus: float):
    """The deployments of ``config.ingress`` around ``model_cls`` (``routed_cls``: the same answering HTTP)."""
    from ray import serve

    model_args = (spec, config.max_batch_size, config.batch_wait_ms / 1000.0, config.long_inputs)
    options = {"name": "model", "num_replicas": replicas, "ray_actor_options": {"num_cpus": num_cpus}}
    if config.ingress == "replica":  # Ray's proxy sends each request straight to a replica: it takes them all
        return serve.deployment(routed_cls, max_ongoing_requests=max(64, 4 * config.max_batch_size),
                                **options).bind(*model_args, info, config.max_inputs_per_request)
    # at least one batch running and the next one filling
    model = serve.deployment(model_cls, max_ongoing_requests=2 * config.max_batch_size, **options)
    ingress = serve.deployment(HttpIngress, name="http", num_replicas=1, ray_actor_options={"num_cpus": 0},
                               max_ongoing_requests=max(256, 4 * replicas * config.max_batch_size))
    return ingress.bind(model.bind(*model_args), info, config.max_inputs_per_request)


def build_app(model_dir: str | os.PathLike, config: ServeConfig, replicas: int):
    """The Ray Serve application of a model folder (not started)."""
    from .replica import ModelReplica, ModelReplicaWithRoutes

    info = folder_info(model_dir)
    kind = info["kind"]
    if kind not in SERVED_KINDS:
        raise FastFormersError(f"{model_dir} holds a {kind.replace('_', ' ')} model; the server answers "
                               f"{', '.join(k.replace('_', ' ') for k in SERVED_KINDS)} models.")
    spec = {"model_dir": str(Path(model_dir).resolve()), "backend": config.backend,
            "threads": config.threads_per_replica, "cpus": [], "max_length": None, "kind": kind,
            "sort_by_length": True}
    info.update(replicas=replicas, max_batch_size=config.max_batch_size, batch_wait_ms=config.batch_wait_ms,
                max_inputs_per_request=config.max_inputs_per_request, long_inputs=config.long_inputs,
                ingress=config.ingress, proxy=config.proxy)
    return _application(ModelReplica, ModelReplicaWithRoutes, spec, info, config, replicas,
                        config.threads_per_replica)


def build_floor_app(config: ServeConfig, replicas: int):
    """The same deployments with :class:`~fastformers_hf.serving.replica.FloorReplica` for the model: every output
    ``None``, at once (the load test's measure of what a request costs apart from the model). Its replicas reserve
    no CPU, so they fit beside a model's."""
    from .replica import FloorReplica, FloorReplicaWithRoutes

    info = {"model_dir": None, "kind": None, "onnx_variant": None, "replicas": replicas, "ingress": config.ingress,
            "proxy": config.proxy}
    return _application(FloorReplica, FloorReplicaWithRoutes, {}, info, config, replicas, 0)


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
    replicas = _start_serve(config)
    _run(build_app(model_dir, config, replicas), config, f"the replicas of {model_dir}")
    return _url(config)


def deploy_floor(config: ServeConfig | None = None) -> str:
    """Serve :func:`build_floor_app` as :func:`deploy` serves a folder, as application ``<name>-floor`` under
    ``<route_prefix>/floor`` (beside a model's application, if one runs); returns its base URL."""
    import dataclasses

    config = config or ServeConfig()
    replicas = _start_serve(config)
    floor = dataclasses.replace(config, name=f"{config.name}-floor",
                                route_prefix=config.route_prefix.rstrip("/") + "/floor")
    _run(build_floor_app(floor, replicas), floor, "the floor application")
    return _url(floor)


def _start_serve(config: ServeConfig) -> int:
    """Start (or join) Ray and Ray Serve's HTTP proxy as ``config`` says; the number of model replicas."""
    global _STARTED_RAY
    ray, serve = _import_ray()
    if config.address is None and not ray.is_initialized():
        check_port_free(config.host, config.port)
    if not ray.is_initialized():
        if config.address is None:
            if config.proxy == "haproxy":
                check_haproxy()
            for name, value in local_ray_env(config).items():  # read by Serve's controller, a raylet child
                _ENV_BEFORE.setdefault(name, os.environ.get(name))
                os.environ[name] = value
            cores = len(physical_cores())
            try:
                ray.init(address="local", num_cpus=max(os.cpu_count() or 1, config.num_replicas(cores) *
                                                       config.threads_per_replica),
                         include_dashboard=False, object_store_memory=256 * 1024 ** 2, log_to_driver=False)
            except BaseException:
                _restore_env()
                raise
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
    return replicas


def _run(app, config: ServeConfig, what: str) -> None:
    from ray import serve

    try:
        serve.run(app, name=config.name, route_prefix=config.route_prefix, blocking=False)
    except RuntimeError as err:  # Ray Serve gave up starting the replicas; its message holds their traceback
        raise FastFormersError(f"Ray Serve could not start {what}: {err}") from None


def _url(config: ServeConfig) -> str:
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
            _restore_env()


def _restore_env() -> None:
    """Put back what deploy() changed in os.environ: the next local instance starts as the user's environment says."""
    for name, value in _ENV_BEFORE.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _ENV_BEFORE.clear()


__all__ = ["ServeConfig", "deploy", "deploy_floor", "shutdown", "build_app", "build_floor_app", "app_builder",
           "jsonable", "INSTALL_HINT"]
