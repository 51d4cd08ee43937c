"""The router's real request path, in-process, on simulated time, against upstreams that only record and obey a script.

Assembled as :mod:`llmroute.router.app` assembles it - :class:`~llmroute.router.proxy.Proxy` over a
:class:`~llmroute.router.failover.Failover` with the process's :class:`~llmroute.router.health.Health`,
:class:`~llmroute.router.drills.Drills` and :class:`~llmroute.router.pools.Pools` - with three seams the router
already has, and no change to it:

* the :class:`~llmroute.router.upstream.Upstream` (the only module that makes outbound requests) is
  :class:`ScriptedUpstream`: it records every attempt (provider, upstream model, pod, key, body) and answers with
  the scenario's next fault for that provider; health probes and pool scrapes go through it too;
* pod discovery (:class:`~llmroute.router.pod_discovery.Discovery`) is :class:`ScriptedDiscovery`: a pool has a
  pod from its scripted time on;
* the clock is the event loop's, and the loop is :class:`SimulatedTimeLoop`: waits, backoffs, time-to-first-token
  deadlines, open circuits and cold-start holds take no real time.

Config loads are what :mod:`llmroute.router.app` does on a reload: a snapshot built from the compiled config by
:func:`~llmroute.router.config_source.build_snapshot`, handed to drills, health and pools, and made current.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import random
import selectors
from collections.abc import Mapping
from dataclasses import dataclass, field

from llmroute.core.compile import compile_route
from llmroute.core.drills import SimulatedFailure
from llmroute.core.retry import FailureKind
from llmroute.core.router_config import PoolTarget
from llmroute.router.client import EVENT_STREAM, JSON, Reply
from llmroute.router.config_source import ConfigWatcher, Endpoint, Snapshot, build_snapshot
from llmroute.router.drills import Drills
from llmroute.router.failover import Failover
from llmroute.router.health import Health
from llmroute.router.pools import Pools
from llmroute.router.proxy import Kind, Proxy
from llmroute.router.upstream import Exchange, Upstream, UpstreamFailure

from .world import EPOCH0, Config, Request, Scenario, request_text, secret_key

POD_PORT = 8000
_VLLM_IDLE = b"vllm:num_requests_waiting 0\nvllm:num_requests_running 0\n"
_ERROR = b'{"error":{"message":"scripted failure","type":"server_error"}}'
_STATUS_FAULTS = {
    "500": 500,
    "502": 502,
    "503": 503,
    "429": 429,
    "429-long": 429,
    "402": 402,
    "400": 400,
    "401": 401,
    "403": 403,
}
_RETRY_AFTER = {"429": "1", "429-long": "3600"}
_TRANSPORT_FAULTS = {"connect": FailureKind.CONNECT, "reset": FailureKind.RESET}


class SimulatedTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time: whenever nothing is ready to run, its clock jumps to the next timer.

    It jumps to the timer's own deadline, rather than adding a rounded remainder as ``looptime`` does: code that
    waits "the time left until a deadline" (:meth:`llmroute.router.holding.Holds._wait`) then reaches the deadline
    exactly, where a remainder below the clock's resolution would leave it a rounding error short, spinning for
    ever. Every task waiting with no timer set is a deadlock, and raises.
    """

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        selector: selectors.BaseSelector = self._selector  # type: ignore[attr-defined]
        real_select = selector.select

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            events = real_select(0)
            if events or timeout == 0:
                return events
            if timeout is None:
                raise RuntimeError("simulated time: every task is waiting and no timer is set (a deadlock)")
            next_timer: asyncio.TimerHandle = self._scheduled[0]  # type: ignore[attr-defined]
            self._now = max(self._now, next_timer.when())
            return events

        selector.select = select  # type: ignore[method-assign]

    def time(self) -> float:
        return self._now


def _chunk(model: str, delta: dict[str, str], finish: str | None) -> bytes:
    event = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def stream_body(model: str) -> list[bytes]:
    return [
        b": keep-alive\n\n",
        _chunk(model, {"role": "assistant", "content": "fine"}, None),
        _chunk(model, {}, "stop"),
        b"data: [DONE]\n\n",
    ]


def embedding_body(model: str) -> bytes:
    return json.dumps(
        {"object": "list", "model": model, "data": [{"object": "embedding", "index": 0, "embedding": [0.25, 0.5]}]}
    ).encode()


class ScriptedExchange(Exchange):
    """An upstream answer from the script: status, headers, body chunks, and optionally a break after them."""

    __slots__ = ("_break", "_chunks", "_headers")

    def __init__(
        self,
        status: int,
        content_type: str,
        chunks: list[bytes],
        headers: Mapping[str, str] | None = None,
        broken: FailureKind | None = None,
    ) -> None:  # no connection behind it: Exchange.__init__ not called
        self.status = status
        self.content_type = content_type
        self._chunks = chunks
        self._headers = {k.lower(): v for k, v in (headers or {}).items()}
        self._break = broken

    def header(self, name: str) -> str | None:
        return self._headers.get(name.lower())

    async def read(self, deadline: float, on_timeout: FailureKind) -> bytes:
        if self._chunks:
            return self._chunks.pop(0)
        if self._break is not None:
            raise UpstreamFailure(self._break, "scripted break")
        return b""

    def finish(self) -> None:
        pass

    def abandon(self) -> None:
        pass


@dataclass(frozen=True)
class Attempt:
    """One request that reached an upstream: which provider and model, on which pod, with which key and body."""

    provider: str
    model: str
    pod: str | None
    authorization: str | None
    after_reload: bool
    config_index: int  # the config current when the attempt was sent
    body: str  # the request body as the upstream received it (redacted or not)


@dataclass
class Trace:
    """What one client request caused; ``reload_after``: swap the config after this many of its upstream sends."""

    reload_after: int | None = None
    attempts: list[Attempt] = field(default_factory=list)
    drilled: list[str] = field(default_factory=list)  # providers a drill failed an attempt to (never sent)
    reloaded: bool = False


TRACE: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("trace", default=None)
"""The trace of the request whose task is running (requests may run concurrently)."""


class RecordingDrills(Drills):
    """The real drills, noting which provider each attempt's injection was asked about."""

    def __init__(self, router: InProcessRouter, rng: random.Random) -> None:
        super().__init__(clock=router.epoch, rng=rng)

    def inject(self, provider: str, *, probe: bool = False) -> SimulatedFailure | None:
        simulated = super().inject(provider, probe=probe)
        trace = TRACE.get()
        if simulated is not None and not probe and trace is not None:
            trace.drilled.append(provider)
        return simulated


class ScriptedDiscovery:
    """A pool has one pod from its scripted ready time on (never, when None)."""

    def __init__(self, router: InProcessRouter) -> None:
        self._router = router

    async def addresses(self, target: PoolTarget) -> frozenset[str] | None:
        return (
            frozenset({self._router.pod_of(f"{target.namespace}/{target.name}")})
            if self._router.pool_up(f"{target.namespace}/{target.name}")
            else frozenset()
        )


class ScriptedUpstream(Upstream):
    """Records every attempt and answers it from the scenario's script for that provider."""

    def __init__(self, router: InProcessRouter) -> None:
        super().__init__()
        self._router = router

    async def post(
        self,
        endpoint: Endpoint,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        connect_s: float,
        deadline: float,
        on_timeout: FailureKind,
        base_url: str | None = None,
    ) -> Exchange:
        router, provider = self._router, endpoint.provider.name
        sent = json.loads(body)
        trace = TRACE.get()
        assert trace is not None, "an attempt outside any request"
        trace.attempts.append(
            Attempt(
                provider,
                sent["model"],
                base_url,
                headers.get("Authorization"),
                trace.reloaded,
                router.config_index,
                body.decode(),
            )
        )
        fault = router.next_fault(provider)
        if trace.reload_after is not None and len(trace.attempts) == trace.reload_after:
            trace.reloaded = True
            router.reload()  # mid-flight: the new config is current before this attempt's answer arrives
        return await self._answer(fault, sent, deadline, on_timeout)

    async def _answer(self, fault: str, sent: dict[str, object], deadline: float, on_timeout: FailureKind) -> Exchange:
        loop = asyncio.get_running_loop()
        model = str(sent["model"])
        if fault in _STATUS_FAULTS:
            return ScriptedExchange(
                _STATUS_FAULTS[fault],
                JSON,
                [_ERROR],
                {"Retry-After": _RETRY_AFTER[fault]} if fault in _RETRY_AFTER else None,
            )
        if fault in _TRANSPORT_FAULTS:
            raise UpstreamFailure(_TRANSPORT_FAULTS[fault], "scripted")
        if fault == "timeout":
            await asyncio.sleep(max(deadline - loop.time(), 0.0))
            raise UpstreamFailure(on_timeout, "deadline passed")
        if fault == "slow":
            await asyncio.sleep(max(deadline - loop.time(), 0.0) * 0.9)
        if "input" in sent:
            return ScriptedExchange(200, JSON, [embedding_body(model)])
        chunks = stream_body(model)
        if fault == "cut":
            return ScriptedExchange(200, EVENT_STREAM, chunks[:2], broken=FailureKind.RESET)
        return ScriptedExchange(200, EVENT_STREAM, chunks)

    async def fetch(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        body: bytes | None = None,
        timeout_s: float,
        limit: int = 64 * 1024,
    ) -> tuple[int, bytes]:
        """Pool pod scrapes: a discovered pod answers vLLM's gauges."""
        if method == "GET" and url.endswith("/metrics") and self._router.pod_up(url.removesuffix("/metrics")):
            return 200, _VLLM_IDLE
        raise UpstreamFailure(FailureKind.CONNECT, "scripted: no such pod")

    async def probe(self, endpoint: Endpoint, timeout_s: float, base_url: str | None = None) -> tuple[bool, str]:
        ok = endpoint.provider.name not in self._router.scenario.probes_fail
        return ok, "HTTP 200" if ok else "HTTP 503"


class RecordingSink:
    """The client side of a streamed answer."""

    def __init__(self) -> None:
        self.started = False
        self.gone = False
        self.headers: dict[str, str] = {}
        self.data: list[bytes] = []
        self.ended = False

    async def start(self, headers: Mapping[str, str]) -> None:
        self.started = True
        self.headers = dict(headers)

    async def write(self, data: bytes) -> None:
        self.data.append(data)

    async def end(self) -> None:
        self.ended = True


@dataclass(frozen=True)
class Outcome:
    """How one request ended, as its client saw it."""

    status: int
    code: str | None
    provider: str | None  # x-llmroute-provider of the answer (or of the stream's headers)
    streamed: bool


def compiled(config: Config) -> Snapshot:
    """``config`` as the router loads it: manifests validated by the API, compiled, keyed."""
    policy, route = config.manifests()
    return build_snapshot(compile_route(route, policy), config.keys(), "property test")


class InProcessRouter:
    """One router process's request path for one scenario."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.config_index = 0
        self._faults = {p: list(f) for p, f in scenario.faults.items()}
        self.upstream = ScriptedUpstream(self)
        self.drills = RecordingDrills(self, random.Random(scenario.seed))
        self.pools = Pools(
            self.upstream, self.loop.time, discovery=ScriptedDiscovery(self), rng=random.Random(scenario.seed + 1)
        )
        self.health = Health(self.upstream, self.loop.time, self.drills, self.pools.probe_url)
        self.watcher = ConfigWatcher([], lambda _snapshot, _result: None)
        self.snapshots: list[Snapshot | None] = [None] * len(scenario.configs)  # compiled when first loaded
        self.proxy = Proxy(
            self.watcher,
            Failover(
                self.upstream,
                self.health,
                random.Random(scenario.seed + 2),
                self.drills,
                self.pools,
                current=lambda: self.watcher.current,
            ),
        )
        self._use(0)

    @property
    def config(self) -> Config:
        return self.scenario.configs[self.config_index]

    def epoch(self) -> float:
        """Wall-clock seconds, as drills read them: EPOCH0 at the start of the scenario."""
        return EPOCH0 + self.loop.time() - self.t0

    def _use(self, index: int) -> None:
        snapshot = self.snapshots[index]
        if snapshot is None:
            snapshot = self.snapshots[index] = compiled(self.scenario.configs[index])
        self.config_index = index
        self.drills.use(snapshot.config.drills)
        self.health.use(snapshot)
        self.pools.use(snapshot)
        self.watcher.current = snapshot

    def reload(self) -> None:
        self._use((self.config_index + 1) % len(self.snapshots))

    def next_fault(self, provider: str) -> str:
        queue = self._faults.get(provider)
        return queue.pop(0) if queue else self.scenario.then.get(provider, "ok")

    def pool_up(self, pool_key: str) -> bool:
        ready_at = self.scenario.pool_ready_at.get(pool_key)
        return ready_at is not None and self.loop.time() - self.t0 >= ready_at

    def pod_of(self, pool_key: str) -> str:
        return f"http://{pool_key.replace('/', '-')}-pod:{POD_PORT}"

    def pod_up(self, address: str) -> bool:
        return any(self.pod_of(k) == address and self.pool_up(k) for k in self.scenario.pool_ready_at)

    async def wait(self, seconds: float) -> None:
        """Time passes as it does in a router: circuits tick and probes run (every second here)."""
        end = self.loop.time() + seconds
        while (left := end - self.loop.time()) > 0:
            await asyncio.sleep(min(1.0, left))
            self.health.tick()

    async def send(self, request: Request) -> tuple[Outcome, Trace, Snapshot]:
        """One client request through the proxy; the config it started under comes back with what it did."""
        trace = Trace(request.reload_after)
        TRACE.set(trace)  # in this request's own task (or the scenario's, which then sends one at a time)
        snapshot = self.watcher.current
        assert snapshot is not None
        sink = RecordingSink()
        headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-client-never-upstream"}
        if request.declared is not None:
            headers["x-llmroute-data-class"] = request.declared
        text = request_text(request.pii)
        body: dict[str, object]
        if request.mode == "embeddings":
            kind, body = Kind.EMBEDDINGS, {"model": request.model, "input": text}
        else:
            kind = Kind.CHAT
            body = {
                "model": request.model,
                "messages": [{"role": "user", "content": text}],
                "stream": request.mode == "stream",
            }
        config = self.config
        bound = 2 * (config.max_wait_s + config.total_s) + 10.0
        try:
            async with asyncio.timeout(bound):
                reply = await self.proxy.handle(kind, json.dumps(body).encode(), headers, sink)
        except TimeoutError:
            raise AssertionError(f"the request did not end within {bound:g}s (its budgets allow far less)") from None
        finally:
            TRACE.set(None)
        return _outcome(reply, sink), trace, snapshot

    async def close(self) -> None:
        await self.pools.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _outcome(reply: Reply | None, sink: RecordingSink) -> Outcome:
    if reply is None:
        return Outcome(200 if sink.started else 499, None, sink.headers.get("x-llmroute-provider"), True)
    code = None
    if reply.status >= 400 and reply.body.startswith(b"{"):
        error = json.loads(reply.body).get("error")
        code = error.get("code") if isinstance(error, dict) else None
    return Outcome(reply.status, code, reply.headers.get("x-llmroute-provider"), False)


def secret_of(provider: str) -> str:
    return f"Bearer {secret_key(provider)}"
