"""The router application: routes, the client-facing handlers, and the process-wide runtime.

Owns, between :meth:`Runtime.open` and :meth:`Runtime.close`, everything that lives as long as the process: the ONE
shared upstream client (:class:`llmroute.router.upstream.Upstream`), the circuits
(:class:`llmroute.router.health.Health`) and their tick/probe task, the drills (:class:`llmroute.router.drills.Drills`),
the ModelPools' pods and held requests (:class:`llmroute.router.pools.Pools`) and their demand task, and the config
watcher (:class:`llmroute.router.config_source.ConfigWatcher`) and its poll task. Every config load result is counted
here (``llmroute_config_reloads_total``) and a new config is handed to the drills, the circuits, the pools and the
metrics.

Routes, each also without the ``/v1`` prefix: ``POST /v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings`` (:class:`llmroute.router.proxy.Proxy`), ``GET /v1/models`` (the published names); plus
``GET /healthz`` (the process is alive), ``GET /readyz`` (a valid config is loaded and the process is not draining,
else 503) and ``GET /metrics``; ``HEAD`` wherever ``GET`` is. Anything else gets an OpenAI-shaped 404.

:class:`RouterApp` is the handler :class:`llmroute.router.http_server.HttpServer` calls; both are built by
:mod:`llmroute.router.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field

from llmroute.router import auth, metrics, openai_errors, transport
from llmroute.router.client import EVENT_STREAM, ClientGone, Reply
from llmroute.router.config_source import POLL_INTERVAL_S, ConfigWatcher, Snapshot
from llmroute.router.drills import Drills
from llmroute.router.failover import Failover
from llmroute.router.health import Health
from llmroute.router.http_server import (
    MAX_BODY,
    BadBody,
    BodyTimeout,
    BodyTooLarge,
    ClientClosed,
    Handler,
    Request,
    Response,
)
from llmroute.router.limits import undecodable_body
from llmroute.router.pools import Pools
from llmroute.router.proxy import Kind, Proxy
from llmroute.router.upstream import Upstream

_SSE_TYPE = f"{EVENT_STREAM}; charset=utf-8"
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_ALIVE = Response(200, b'{"status": "alive"}')


@dataclass
class Runtime:
    """The process-wide objects, filled in by :meth:`open` (``None`` before)."""

    config_paths: Sequence[str]
    poll_interval_s: float
    watcher: ConfigWatcher | None = None
    proxy: Proxy | None = None
    draining: bool = False  # set on SIGTERM by llmroute.router.server: /readyz says 503 from then on
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _pools: Pools | None = None
    _upstream: Upstream | None = None

    def snapshot(self) -> Snapshot | None:
        return self.watcher.current if self.watcher is not None else None

    async def open(self) -> None:
        """Load the config (a bad one is logged; the router then answers 503 until a good one comes) and start the
        upstream client, circuits, pools and the watcher."""
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

        watcher = ConfigWatcher(self.config_paths, on_result, self.poll_interval_s)
        self.watcher = watcher
        watcher.load_now()
        self.proxy = Proxy(watcher, Failover(upstream, health, drills=drills, pools=pools,
                                             current=lambda: watcher.current))
        self._tasks = [asyncio.create_task(watcher.run(), name="config-watcher"),
                       asyncio.create_task(health.run(), name="health"),
                       asyncio.create_task(pools.run(), name="pool-demand")]
        self._pools, self._upstream = pools, upstream

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pools is not None:
            await self._pools.close()
        if self._upstream is not None:
            await self._upstream.close()


class RouterApp:
    """The router's handler: routes a request by method and path (see the module docstring)."""

    def __init__(self, config_paths: Sequence[str], *, poll_interval_s: float = POLL_INTERVAL_S) -> None:
        self.runtime = Runtime(list(config_paths), poll_interval_s)
        checked = auth.guarded(self.runtime.snapshot)  # spec.access: 401/403 before any body (not the probes)
        routes: dict[tuple[str, str], Handler] = {}
        for prefix in ("/v1", ""):
            for kind in Kind:
                routes["POST", prefix + kind.value] = checked(self._proxy_handler(kind))
            routes["GET", prefix + "/models"] = checked(self._models)
        routes["GET", "/healthz"] = self._healthz
        routes["GET", "/readyz"] = self._readyz
        routes["GET", "/metrics"] = self._metrics
        self._routes = routes
        self._not_found = checked(self._unknown)

    def __call__(self, request: Request) -> Awaitable[Response | None]:
        method = "GET" if request.head else request.method
        return self._routes.get((method, request.path), self._not_found)(request)

    def body_limit(self) -> int:
        """The most a request body may hold now: the loaded route's ``maxRequestBytes``."""
        snapshot = self.runtime.snapshot()
        return snapshot.config.max_request_bytes if snapshot is not None else MAX_BODY

    def _proxy_handler(self, kind: Kind) -> Handler:
        async def handler(request: Request) -> Response | None:
            proxy = self.runtime.proxy
            if proxy is None:
                return _response(Reply.error(openai_errors.not_ready()))
            refused = proxy.refuse_oversized(request.content_length)
            if refused is not None:  # before a byte of the body is read (or invited: Expect: 100-continue)
                return _response(refused, close=request.body_exists)
            try:
                body = await request.read(self.body_limit())
            except BodyTooLarge as exc:
                return Response.error(openai_errors.too_large(exc.size, exc.limit), close=True)
            except BodyTimeout as exc:
                return Response.error(exc.error, close=True)
            except BadBody:
                return Response.error(undecodable_body(), close=True)
            except ClientClosed:
                return None  # nobody is left to answer
            reply = await proxy.handle(kind, body, request.headers, _Sink(request), request.identity)
            return None if reply is None else _response(reply)

        return handler

    async def _models(self, request: Request) -> Response:
        snapshot = self.runtime.snapshot()
        if snapshot is None:
            return _response(Reply.error(openai_errors.not_ready()))
        return Response(200, snapshot.models_body)

    async def _healthz(self, request: Request) -> Response:
        return _ALIVE

    async def _readyz(self, request: Request) -> Response:
        snapshot = self.runtime.snapshot()
        if snapshot is None:
            return _response(Reply.error(openai_errors.not_ready()))
        if self.runtime.draining:
            return Response(503, b'{"status": "draining"}')
        body = {"status": "ready", "route": snapshot.route_name, "configHash": snapshot.hash}
        return Response(200, json.dumps(body).encode())

    async def _metrics(self, request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(200, body, content_type)

    async def _unknown(self, request: Request) -> Response:
        return _response(Reply.error(openai_errors.not_found(request.path)))


def _response(reply: Reply, *, close: bool = False) -> Response:
    return Response(reply.status, reply.body, reply.content_type, reply.headers, close)


class _Sink:
    """:class:`llmroute.router.client.ClientSink` on the request's streamed response: the head leaves with the
    first bytes (one send, not two); the sink only starts a response when it has bytes to relay."""

    __slots__ = ("_headers", "request", "started")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.started = False
        self._headers: Mapping[str, str] | None = None

    @property
    def gone(self) -> bool:
        return self.request.gone

    async def start(self, headers: Mapping[str, str]) -> None:
        if self.request.gone:
            raise ClientGone
        self.started = True
        self._headers = {**_SSE_HEADERS, **headers}

    async def write(self, data: bytes) -> None:
        try:
            if self._headers is not None:
                headers, self._headers = self._headers, None
                self.request.start_stream(200, _SSE_TYPE, headers, data)
                await self.request.flush()
            else:
                await self.request.write(data)
        except ClientClosed as exc:
            raise ClientGone from exc

    async def end(self) -> None:
        try:
            if self._headers is not None:
                headers, self._headers = self._headers, None
                self.request.start_stream(200, _SSE_TYPE, headers)
            self.request.end_stream()
        except ClientClosed as exc:
            raise ClientGone from exc
