"""One emulated vLLM OpenAI server pod as an aiohttp application; :func:`build_vllm_app` is the factory.

Endpoints, as vLLM serves them: ``GET /health`` (and ``/ping``: empty 200, or 503 when the engine is dead
or the pod drains), ``GET /version``, ``GET /metrics`` (:mod:`llmroute.emulator.vllm_metrics`),
``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``
(:mod:`llmroute.emulator.vllm_serve`). With an API key only ``/v1/*`` is guarded (401
``{"error": "Unauthorized"}``). Unknown paths get FastAPI's ``{"detail": "Not Found"}``. Until the weights
have loaded (``startup_delay_s`` after startup) every pod endpoint hangs: that is the "hang" health mode;
in "refuse" mode :class:`~llmroute.emulator.vllm_pod.VllmPod` does not even bind the port until then.

Admin endpoints (loopback peers only, no auth, never hang, not counted): ``GET /_emulator/stats``,
``GET|PUT /_emulator/params`` (:class:`~llmroute.emulator.vllm_engine.EngineParams`; PUT merges the given
fields), ``POST /_emulator/drain`` and ``POST /_emulator/reset``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from .vllm_engine import EngineParams
from .vllm_metrics import CONTENT_TYPE
from .vllm_serve import chat_completions, completions
from .vllm_state import VLLM_STATE, VllmConfig, VllmState
from .vllm_wire import VLLM_VERSION, models_body

_ADMIN = "/_emulator/"
_UNINSTRUMENTED = ("/metrics", "/health", "/ping", "/version")  # vLLM's instrumentator skips these


def _loopback(request: web.Request) -> bool:
    try:
        return request.remote is not None and ipaddress.ip_address(request.remote).is_loopback
    except ValueError:
        return False


def _authorized(request: web.Request, api_key: str | None) -> bool:
    if api_key is None or not request.path.startswith("/v1"):
        return True
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), api_key.encode())


@web.middleware
async def _not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        return web.json_response({"detail": exc.reason}, status=exc.status)


@web.middleware
async def _gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admin requests pass straight through (loopback only); pod requests wait for the weights, are
    authenticated, then counted in the stats and the instrumentator's metric."""
    state = request.app[VLLM_STATE]
    if request.path.startswith(_ADMIN):
        return await handler(request) if _loopback(request) else web.json_response({"detail": "Forbidden"},
                                                                                   status=403)
    await state.loaded.wait()
    if not _authorized(request, state.config.api_key):
        response: web.StreamResponse = web.json_response({"error": "Unauthorized"}, status=401)
    else:
        response = await handler(request)
    state.requests[request.path] += 1
    state.statuses[response.status] += 1
    if request.path not in _UNINSTRUMENTED:
        state.metrics.http(request.method, response.status, request.path)
    return response


async def _health(request: web.Request) -> web.Response:
    return web.Response(status=200 if request.app[VLLM_STATE].healthy else 503)


async def _version(request: web.Request) -> web.Response:
    return web.json_response({"version": VLLM_VERSION})


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[VLLM_STATE]
    engine = state.engine
    text = state.metrics.render(running=engine.running, waiting=engine.waiting, kv_usage=engine.kv_usage())
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE})


async def _models(request: web.Request) -> web.Response:
    state = request.app[VLLM_STATE]
    config = state.config
    return web.json_response(models_body(config.names, config.model, config.max_model_len, state.created))


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[VLLM_STATE].to_json())


async def _get_params(request: web.Request) -> web.Response:
    return web.json_response(request.app[VLLM_STATE].engine.params.model_dump(mode="json"))


async def _put_params(request: web.Request) -> web.Response:
    engine = request.app[VLLM_STATE].engine
    try:
        patch = json.loads(await request.read() or b"{}")
        if not isinstance(patch, dict):
            raise ValueError("expected a JSON object")
        params = EngineParams.model_validate({**engine.params.model_dump(), **patch})
    except (ValueError, ValidationError) as exc:
        return web.json_response({"detail": f"invalid engine params: {exc}"}, status=400)
    engine.set_params(params)
    return web.json_response(params.model_dump(mode="json"))


async def _drain(request: web.Request) -> web.Response:
    state = request.app[VLLM_STATE]
    state.draining = True
    return web.json_response(state.to_json())


async def _reset(request: web.Request) -> web.Response:
    state = request.app[VLLM_STATE]
    state.reset()
    return web.json_response(state.to_json())


async def _load_weights(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the weights finish loading ``startup_delay_s`` after startup."""
    state = app[VLLM_STATE]

    async def load() -> None:
        await asyncio.sleep(state.config.startup_delay_s)
        state.loaded.set()

    task = asyncio.create_task(load())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def build_vllm_app(config: VllmConfig | None = None, params: EngineParams | None = None) -> web.Application:
    """An emulated vLLM pod started with ``config`` (its flags) and ``params`` (its engine's load model).
    Its :class:`~llmroute.emulator.vllm_state.VllmState` is ``app[VLLM_STATE]``."""
    app = web.Application(middlewares=[_not_found, _gate], client_max_size=64 * 1024**2)
    app[VLLM_STATE] = VllmState.create(config or VllmConfig(), params or EngineParams())
    app.cleanup_ctx.append(_load_weights)
    app.router.add_get("/health", _health)
    app.router.add_route("*", "/ping", _health)
    app.router.add_get("/version", _version)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get(_ADMIN + "stats", _get_stats)
    app.router.add_get(_ADMIN + "params", _get_params)
    app.router.add_put(_ADMIN + "params", _put_params)
    app.router.add_post(_ADMIN + "drain", _drain)
    app.router.add_post(_ADMIN + "reset", _reset)
    return app
