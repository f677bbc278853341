"""The HTTP routes of the Ray Serve server, free of Ray: :class:`HttpRoutes` answers ``POST /predict``,
``GET /health`` and ``GET /info`` with JSON, and bad requests with a 4xx and ``{"error": ...}``.

Whatever holds the routes says how a model call is made (:meth:`HttpRoutes.call_model`): the separate ingress
deployment calls a model replica through a deployment handle, a replica that answers HTTP itself calls its own
methods, and the load test's floor application answers without a model.
"""
from __future__ import annotations

import json
from typing import Any

ROUTES = "POST /predict {\"inputs\": [...]}, GET /health, GET /info"
_METHODS = {"/predict": "POST", "/health": "GET", "/info": "GET"}


def error_reply(status: int, message: str) -> dict[str, Any]:
    """A model call's answer for a request it refuses or cannot answer."""
    return {"error": message, "status": status}


def route_path(scope: dict) -> str:
    """The request's path below the application's route prefix, e.g. ``/predict``."""
    path = scope.get("path", "/")
    root = scope.get("root_path", "")
    if root and root != "/" and path.startswith(root):
        path = path[len(root):]
    return "/" + path.strip("/")


def check_payload(body: bytes, max_inputs: int) -> tuple[int, Any]:
    """``(200, inputs)`` of a ``/predict`` body, or ``(status, error message)``."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        return 400, f"the request body is not JSON ({err}); send {{\"inputs\": [...]}}."
    if not isinstance(payload, dict) or "inputs" not in payload:
        found = f"an object with keys {sorted(payload)[:5]}" if isinstance(payload, dict) else \
            f"a JSON {type(payload).__name__}"
        return 400, f"the body is {found}, with no 'inputs'; send {{\"inputs\": [...]}}, a list of inputs."
    inputs = payload["inputs"]
    if not isinstance(inputs, list):
        return 400, (f"'inputs' must be a list of inputs, got a JSON {type(inputs).__name__}; wrap a single input "
                     "in a list.")
    if not inputs:
        return 400, "'inputs' is an empty list; send at least one input."
    if len(inputs) > max_inputs:
        return 413, (f"{len(inputs)} inputs in one request; this server takes at most {max_inputs} "
                     "(max_inputs_per_request): split them over several requests.")
    return 200, inputs


class HttpRoutes:
    """The routes, for a Ray Serve deployment class to inherit (its ``__call__`` takes a Starlette request).

    Subclasses set ``self.info`` (what ``/info`` says of the folder, from
    :func:`~fastformers_hf.serving.ray_config.folder_info`) and ``self.max_inputs``, and define
    :meth:`call_model`."""

    info: dict[str, Any]
    max_inputs: int

    async def call_model(self, method: str, *args) -> dict[str, Any]:
        """``describe()`` or ``predict(inputs)`` of a model replica: its answer, or :func:`error_reply`."""
        raise NotImplementedError

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        path = route_path(request.scope)
        if path not in _METHODS:
            status, body = 404, {"error": f"no route {path}; this server answers {ROUTES}."}
        elif request.method != _METHODS[path]:
            status, body = 405, {"error": f"{path} takes {_METHODS[path]}, not {request.method}."}
        elif path == "/health":
            status, body = 200, {"status": "ok"}
        elif path == "/info":
            status, body = await self._info()
        else:
            status, body = await self._predict(request)
        return JSONResponse(body, status_code=status)

    async def _info(self) -> tuple[int, dict[str, Any]]:
        reply = await self.call_model("describe")
        if "error" in reply:
            return reply["status"], {"error": reply["error"]}
        info = dict(self.info)
        info["variant"] = {"backend": reply["backend"], "onnx_variant": info.pop("onnx_variant")
                           if reply["backend"] == "onnxruntime" else None}
        info.pop("onnx_files", None)
        info["versions"] = reply["versions"]
        info["threads_per_replica"], info["max_length"] = reply["threads"], reply["max_length"]
        return 200, info

    async def _predict(self, request) -> tuple[int, dict[str, Any]]:
        status, inputs = check_payload(await request.body(), self.max_inputs)
        if status != 200:
            return status, {"error": inputs}
        reply = await self.call_model("predict", inputs)
        if "error" in reply:
            return reply["status"], {"error": reply["error"]}
        return 200, {"outputs": reply["outputs"]}
