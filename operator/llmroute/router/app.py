"""The router's aiohttp application: routes, the client-facing HTTP, and the process-wide runtime.

Owns, through one ``cleanup_ctx`` (the lifespan), everything that lives as long as the process: the ONE shared
upstream client (:class:`llmroute.router.upstream.Upstream`), the circuits (:class:`llmroute.router.health.Health`)
and their tick/probe task, the drills (:class:`llmroute.router.drills.Drills`), the ModelPools' pods and held
requests (:class:`llmroute.router.pools.Pools`) and their demand task, and the config watcher
(:class:`llmroute.router.config_source.ConfigWatcher`) and its poll task. Every config load result is counted here
(``llmroute_config_reloads_total``) and a new config is handed to the drills, the circuits, the pools and the
metrics.

Routes, each also without the ``/v1`` prefix: ``POST /v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings`` (:class:`llmroute.router.proxy.Proxy`), ``GET /v1/models`` (the published names); plus
``GET /healthz`` (the process is alive), ``GET /readyz`` (a valid config is loaded and the process is not draining,
else 503) and ``GET /metrics``.
Anything else gets an OpenAI-shaped 404.

Built by :func:`build_app`, run by :mod:`llmroute.router.server` (and by tests through pytest-aiohttp).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.web_urldispatcher import _default_expect_handler

from llmroute.router import auth, metrics, openai_errors, transport
from llmroute.router.client import EVENT_STREAM, ClientGone, Reply
from llmroute.router.config_source import POLL_INTERVAL_S, ConfigWatcher, Snapshot
from llmroute.router.drills import Drills
from llmroute.router.failover import Failover
from llmroute.router.health import Health
from llmroute.router.limits import undecodable_body
from llmroute.router.pools import Pools
from llmroute.router.protocol import SERVER_NAME, BodyTimeout
from llmroute.router.proxy import Kind, Proxy
from llmroute.router.upstream import Upstream

MAX_CLIENT_BODY = 256 * 1024 * 1024 + 1
"""aiohttp's own cap on request bodies (the largest ``maxRequestBytes`` an LLMRoute may set); the config's limit is
checked by the proxy."""
_SSE_HEADERS = {"Server": SERVER_NAME, "Content-Type": f"{EVENT_STREAM}; charset=utf-8", "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no"}


@dataclass
class Runtime:
    """The process-wide objects, filled in by the lifespan (``None`` before startup)."""

    config_paths: Sequence[str]
    poll_interval_s: float
    watcher: ConfigWatcher | None = None
    proxy: Proxy | None = None
    draining: bool = False  # set on SIGTERM by llmroute.router.server: /readyz says 503 from then on

    def snapshot(self) -> Snapshot | None:
        return self.watcher.current if self.watcher is not None else None


RUNTIME = web.AppKey("llmroute_router_runtime", Runtime)


def build_app(config_paths: Sequence[str], *, poll_interval_s: float = POLL_INTERVAL_S) -> web.Application:
    """The router application for ``config_paths``; the config is loaded at startup."""
    app = web.Application(client_max_size=MAX_CLIENT_BODY)
    app[RUNTIME] = Runtime(list(config_paths), poll_interval_s)
    checked = auth.guarded(app[RUNTIME].snapshot)  # spec.access: 401/403 before any body (not the probes)
    app.cleanup_ctx.append(_lifespan)
    for prefix in ("/v1", ""):
        for kind in Kind:
            app.router.add_post(prefix + kind.value, checked(_proxy_handler(kind)), expect_handler=_expect_body)
        app.router.add_get(prefix + "/models", checked(_models))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("*", "/{tail:.*}", checked(_not_found))
    return app


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    loop = asyncio.get_running_loop()
    upstream = Upstream()
    await upstream.open()
    drills = Drills()
    pools = Pools(upstream, loop.time)
    health = Health(upstream, loop.time, drills, pools.probe_url)
    info: list[tuple[str, str]] = []

    def on_result(snapshot: Snapshot | None, result: str) -> None:
        metrics.config_reload(result)
        if snapshot is not None:
            drills.use(snapshot.config.drills)
            health.use(snapshot)
            pools.use(snapshot)
            info[:] = [metrics.prepare(snapshot.config, info[0] if info else None)]
            transport.report(snapshot.config)  # plaintext or re-rooted TLS upstreams: warned, counted

    watcher = ConfigWatcher(runtime.config_paths, on_result, runtime.poll_interval_s)
    runtime.watcher = watcher
    watcher.load_now()
    runtime.proxy = Proxy(watcher, Failover(upstream, health, drills=drills, pools=pools,
                                            current=lambda: watcher.current))
    tasks = [asyncio.create_task(watcher.run(), name="config-watcher"),
             asyncio.create_task(health.run(), name="health"),
             asyncio.create_task(pools.run(), name="pool-demand")]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await pools.close()
        await upstream.close()


class _RelayResponse(web.StreamResponse):
    """A streamed answer whose headers leave with its first bytes (one send, not two), as ``web.Response`` does.

    The sink only starts a response when it has bytes to relay, so nothing waits on the buffered headers.
    """

    _send_headers_immediately = False


class _Sink:
    """:class:`llmroute.router.client.ClientSink` on an aiohttp streaming response."""

    __slots__ = ("request", "response")

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None

    @property
    def started(self) -> bool:
        return self.response is not None

    @property
    def gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def start(self, headers: Mapping[str, str]) -> None:
        response = _RelayResponse(status=200, headers={**_SSE_HEADERS, **headers})
        self.response = response
        try:
            await response.prepare(self.request)
        except (ConnectionError, RuntimeError) as exc:
            raise ClientGone from exc

    async def write(self, data: bytes) -> None:
        assert self.response is not None
        try:
            await self.response.write(data)
        except (ConnectionError, RuntimeError) as exc:
            raise ClientGone from exc

    async def end(self) -> None:
        assert self.response is not None
        try:
            await self.response.write_eof()
        except (ConnectionError, RuntimeError) as exc:
            raise ClientGone from exc


def _render(reply: Reply) -> web.Response:
    return web.Response(status=reply.status, body=reply.body,
                        headers={**reply.headers, "Content-Type": reply.content_type})


def _proxy_handler(kind: Kind) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        proxy = request.app[RUNTIME].proxy
        if proxy is None:
            return _render(Reply.error(openai_errors.not_ready()))
        refused = proxy.refuse_oversized(request.content_length)
        if refused is not None:
            return _render(refused)
        try:
            body = await _read_body(request)
        except web.HTTPRequestEntityTooLarge:
            return _render(Reply.error(openai_errors.too_large(request.content_length or 0, MAX_CLIENT_BODY - 1)))
        except _BodyTooLarge as exc:
            return _closing(_render(Reply.error(openai_errors.too_large(exc.size, exc.limit))))
        except BodyTimeout as exc:
            return _closing(_render(Reply.error(exc.error)))
        except RequestPayloadError:
            metrics.client_rejected(metrics.Rejection.BAD_REQUEST)
            return _closing(_render(Reply.error(undecodable_body())))
        sink = _Sink(request)
        reply = await proxy.handle(kind, body, request.headers, sink, request.get("llmroute.identity"))
        if reply is not None:
            return _render(reply)
        if sink.response is not None:
            return sink.response
        return web.Response(status=499)  # the client left before anything was sent; nobody reads this

    return handler


class _BodyTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(size, limit)
        self.size, self.limit = size, limit


async def _read_body(request: web.Request) -> bytes:
    """The request body. One that declares no length (chunked), or whose length is that of its compressed form
    (``Content-Encoding``: a small gzip bomb inflates a thousandfold) is read only up to the route's
    ``maxRequestBytes`` (:class:`_BodyTooLarge` past it), not to aiohttp's process-wide cap: a body with a
    ``Content-Length`` over the limit was refused before reading (``Proxy.refuse_oversized``). Bad framing or
    encoding raises ``RequestPayloadError``."""
    if request.content_length is not None and hdrs.CONTENT_ENCODING not in request.headers:
        return await request.read()
    snapshot = request.app[RUNTIME].snapshot()
    limit = snapshot.config.max_request_bytes if snapshot is not None else MAX_CLIENT_BODY - 1
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > limit:
            raise _BodyTooLarge(len(body), limit)
    return bytes(body)


async def _expect_body(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` (curl sends it for bodies over 1 MB): a body whose declared length the route refuses
    gets its 413 instead of the invitation, before it is sent; any other is invited as aiohttp does."""
    proxy = request.app[RUNTIME].proxy
    refused = proxy.refuse_oversized(request.content_length) if proxy is not None else None
    if refused is not None:
        return _closing(_render(refused))
    await _default_expect_handler(request)
    return None


def _closing(response: web.Response) -> web.Response:
    """A refusal sent before the body was read to its end: the connection cannot carry another request."""
    response.force_close()
    return response


async def _models(request: web.Request) -> web.Response:
    snapshot = request.app[RUNTIME].snapshot()
    if snapshot is None:
        return _render(Reply.error(openai_errors.not_ready()))
    return web.Response(body=snapshot.models_body, content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    snapshot = request.app[RUNTIME].snapshot()
    if snapshot is None:
        return _render(Reply.error(openai_errors.not_ready()))
    if request.app[RUNTIME].draining:
        return web.json_response({"status": "draining"}, status=503)
    body = {"status": "ready", "route": snapshot.route_name, "configHash": snapshot.hash}
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _not_found(request: web.Request) -> web.Response:
    return _render(Reply.error(openai_errors.not_found(request.path)))
