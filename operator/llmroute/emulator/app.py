"""The emulated provider as an aiohttp application: routes, authentication, request validation and the
admin API; :func:`build_app` is the factory.

Provider endpoints, each with and without the ``/v1`` prefix: ``POST /chat/completions``,
``POST /completions``, ``POST /embeddings``, ``GET /models``. Admin endpoints (no prefix, no auth, no
faults, not counted): ``GET|PUT /_emulator/faults``, ``GET /_emulator/stats``, ``POST /_emulator/reset``.
Every response carries ``x-emulator-provider: <name>``. With DeepSeek's ``reasoning_content`` (the default
``reasoning_field``), chat requests also get DeepSeek's 400s for reasoning in the history
(:func:`~llmroute.emulator.wire.history_error`); with vLLM's ``reasoning`` they do not.

Two switches for tests of what a router sends and restores, both off by default: ``record_bodies`` keeps the raw
request bodies in memory (``EmulatorState.bodies``, bounded; never in stats, logs or the admin API), and ``echo``
answers chat and completions with the last user message (or prompt) itself, in pieces of ``echo_chunk`` characters -
as content, as reasoning too for reasoner models, or as the arguments of a call to the request's first tool.

Used by :mod:`llmroute.emulator.runner` (loopback servers for tests, ``llmroute local`` and benchmarks)
and directly by tests through pytest-aiohttp. Self-contained: imports nothing else from llmroute.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from .delivery import reset_connection, respond, stream
from .faults import Draw, FaultPlan, draw
from .stats import MAX_RECORDS, Auth, Outcome, Record, Stats
from .wire import embeddings_body, error_payload, history_error, models_body, plan_generation

DEFAULT_MODELS = ("deepseek-chat", "deepseek-reasoner")
_DESERIALIZE = "Failed to deserialize the JSON body into the target type"


@dataclass
class EmulatorState:
    """Everything one emulator instance knows; live-editable through the admin API."""

    name: str
    api_key: str | None
    faults: FaultPlan
    models: list[str]
    strict_models: bool
    reasoning_field: str
    seed: int
    record_bodies: bool = False
    echo: bool = False
    echo_chunk: int = 3
    stats: Stats = field(default_factory=Stats)
    bodies: deque[bytes] = field(default_factory=lambda: deque(maxlen=MAX_RECORDS))
    """Raw request bodies, newest last, while ``record_bodies`` is on (tests only: prompts are kept here)."""
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def reset(self) -> None:
        """Forget all stats and recorded bodies and restart the fault RNG from the seed (faults stay as they are)."""
        self.stats.reset()
        self.bodies.clear()
        self.rng.seed(self.seed)


STATE = web.AppKey("llmroute_emulator_state", EmulatorState)
_Serve = Callable[[web.Request, EmulatorState, Record, dict[str, Any], FaultPlan, Draw],
                  Awaitable[web.StreamResponse]]


class _Reject(Exception):
    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(status, message)
        self.status, self.message = status, message


def error_response(status: int, message: str | None = None, retry_after: int | None = None) -> web.Response:
    """DeepSeek's answer with ``status`` (JSON error body; nginx HTML for 502/504)."""
    body, content_type = error_payload(status, message)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None and status in (429, 503) else None
    return web.Response(status=status, body=body, content_type=content_type, headers=headers)


def _authenticate(request: web.Request, state: EmulatorState, record: Record) -> None:
    header = request.headers.get("Authorization")
    if header is None:
        state.stats.authenticated(record, Auth.MISSING)
        if state.api_key is not None:
            raise _Reject(401)
        return
    if state.api_key is None:
        state.stats.authenticated(record, Auth.UNCHECKED)
        return
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        state.stats.authenticated(record, Auth.BAD, header)
        raise _Reject(401)
    if not hmac.compare_digest(token.encode(), state.api_key.encode()):
        state.stats.authenticated(record, Auth.BAD, token)
        raise _Reject(401, f"Authentication Fails, Your api key: ****{token[-4:]} is invalid")
    state.stats.authenticated(record, Auth.OK)


async def _parse(request: web.Request, state: EmulatorState, record: Record,
                 required: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    raw = await request.read()
    if state.record_bodies:
        state.bodies.append(raw)
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _Reject(400, f"Failed to parse the request body as JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _Reject(422, f"{_DESERIALIZE}: invalid type: expected a JSON object")
    if isinstance(body.get("model"), str):
        record.model = body["model"][:100]
    record.stream = body.get("stream") is True
    if isinstance(body.get("user"), str):
        record.user = body["user"][:100]
    for name, types in required.items():
        if name not in body:
            raise _Reject(422, f"{_DESERIALIZE}: missing field `{name}`")
        if not isinstance(body[name], types):
            raise _Reject(422, f"{_DESERIALIZE}: {name}: invalid type")
    if state.strict_models and body["model"] not in state.models:
        raise _Reject(400, "Model Not Exist")
    return body


def _endpoint(path: str, serve: _Serve, required: dict[str, tuple[type, ...]] | None) -> Handler:
    """A provider endpoint: latency, refuse, auth, validation and error faults, then ``serve``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        record = state.stats.arrived(path)
        try:
            plan = state.faults
            if plan.latency:
                await asyncio.sleep(plan.latency)
            if plan.refuse:
                record.outcome = Outcome.REFUSED
                reset_connection(request)
                return web.Response()  # never reaches the peer
            try:
                _authenticate(request, state, record)
                body = await _parse(request, state, record, required) if required is not None else {}
                decided = draw(plan, state.rng)
                if decided.fail_status is not None:
                    raise _Reject(decided.fail_status)
            except _Reject as exc:
                record.outcome, record.status = Outcome.ERROR, exc.status
                return error_response(exc.status, exc.message, plan.retry_after)
            return await serve(request, state, record, body, plan, decided)
        except asyncio.CancelledError:
            if record.outcome is Outcome.OK:
                record.outcome = Outcome.DISCONNECTED
            raise
        finally:
            state.stats.finished(record)

    return handler


async def _chat(request: web.Request, state: EmulatorState, record: Record, body: dict[str, Any],
                plan: FaultPlan, decided: Draw) -> web.StreamResponse:
    problem = history_error(body) if state.reasoning_field == "reasoning_content" else None  # DeepSeek's rules
    if problem is not None:
        record.outcome, record.status = Outcome.ERROR, 400
        return error_response(400, problem)
    gen = plan_generation(body, chat=True, reasoning_field=state.reasoning_field,
                          echo=state.echo_chunk if state.echo else None)
    deliver = stream if record.stream else respond
    return await deliver(request, gen, plan, decided.first_token_delay, record)


async def _text(request: web.Request, state: EmulatorState, record: Record, body: dict[str, Any],
                plan: FaultPlan, decided: Draw) -> web.StreamResponse:
    gen = plan_generation(body, chat=False, reasoning_field=state.reasoning_field,
                          echo=state.echo_chunk if state.echo else None)
    deliver = stream if record.stream else respond
    return await deliver(request, gen, plan, decided.first_token_delay, record)


async def _embeddings(request: web.Request, state: EmulatorState, record: Record, body: dict[str, Any],
                      plan: FaultPlan, decided: Draw) -> web.StreamResponse:
    inputs = body["input"]
    if isinstance(inputs, str) or (inputs and all(isinstance(i, int) for i in inputs)):
        inputs = [inputs]
    size = body.get("dimensions")
    dimensions = size if isinstance(size, int) and 1 <= size <= 4096 else 8
    encoding = "base64" if body.get("encoding_format") == "base64" else "float"
    record.status = 200
    return web.json_response(embeddings_body(body["model"], inputs, dimensions, encoding))


async def _models(request: web.Request, state: EmulatorState, record: Record, body: dict[str, Any],
                  plan: FaultPlan, decided: Draw) -> web.StreamResponse:
    record.status = 200
    return web.json_response(models_body(state.models, state.name))


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].faults.model_dump(mode="json"))


async def _put_faults(request: web.Request) -> web.Response:
    try:
        plan = FaultPlan.model_validate_json(await request.read())
    except ValidationError as exc:
        return error_response(400, f"invalid fault plan: {exc}")
    request.app[STATE].faults = plan
    return web.json_response(plan.model_dump(mode="json"))


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats.to_json())


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response(request.app[STATE].stats.to_json())


async def _tag(request: web.BaseRequest, response: web.StreamResponse) -> None:
    if isinstance(request, web.Request):
        response.headers["x-emulator-provider"] = request.app[STATE].name


@web.middleware
async def _json_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return error_response(404)


def build_app(name: str, *, api_key: str | None = None, faults: FaultPlan | None = None,
              reasoning_field: str = "reasoning_content", seed: int = 0,
              models: Sequence[str] = DEFAULT_MODELS, strict_models: bool = False,
              record_bodies: bool = False, echo: bool = False) -> web.Application:
    """An emulated provider called ``name``.

    ``api_key``: if set, requests need ``Authorization: Bearer <api_key>`` (else 401).
    ``models``: what ``GET /models`` lists; with ``strict_models`` other model names get 400
    "Model Not Exist", otherwise any model name is served. ``seed`` seeds the fault RNG. ``record_bodies`` and
    ``echo``: see the module docstring (tests only).
    """
    app = web.Application(middlewares=[_json_not_found], client_max_size=64 * 1024**2)
    app[STATE] = EmulatorState(name=name, api_key=api_key, faults=faults or FaultPlan(), models=list(models),
                               strict_models=strict_models, reasoning_field=reasoning_field, seed=seed,
                               record_bodies=record_bodies, echo=echo)
    app.on_response_prepare.append(_tag)
    routes: list[tuple[str, str, _Serve, dict[str, tuple[type, ...]] | None]] = [
        ("POST", "/chat/completions", _chat, {"model": (str,), "messages": (list,)}),
        ("POST", "/completions", _text, {"model": (str,), "prompt": (str, list)}),
        ("POST", "/embeddings", _embeddings, {"model": (str,), "input": (str, list)}),
        ("GET", "/models", _models, None),
    ]
    for method, path, serve, required in routes:
        handler = _endpoint(path, serve, required)
        for prefix in ("", "/v1"):
            app.router.add_route(method, prefix + path, handler)
    app.router.add_get("/_emulator/faults", _get_faults)
    app.router.add_put("/_emulator/faults", _put_faults)
    app.router.add_get("/_emulator/stats", _get_stats)
    app.router.add_post("/_emulator/reset", _reset)
    return app
