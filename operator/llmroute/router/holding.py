"""Requests held while their pools start from zero, and the demand signal that tells the operator about them.

Owns the per-process hold state: how many requests are held, per pool (the first cold pool of the request's plan,
see :mod:`llmroute.core.cold_start`) and in all (bounded by ``coldStart.maxRequests``), the wait itself, and the
metrics ``llmroute_pool_held_requests{pool}`` and ``llmroute_pool_hold_total{pool,outcome}``.

A hold waits for a pod of any of the request's pools to become ready (:mod:`llmroute.router.pools` wakes it), at most
``coldStart.maxWait``; it also ends when the client leaves (checked every :data:`GONE_CHECK_S`: the server does not
cancel a handler whose client disconnected), which frees its slot. Nothing is sent to the client while it is held,
not even keep-alive comments on a stream: the headers would commit the response to 200, and a hold that times out
must be able to answer 503 with ``Retry-After`` (which the openai SDK honours by retrying).

The demand signal (:class:`Demand`, a contract with the operator, :mod:`llmroute.core.demand`): with
``$LLMROUTE_DEMAND_URL`` set, while this router holds any request it POSTs ``application/json``::

    {"router": "<route-namespace>/<route-name>/<hostname>", "pools": {"<namespace>/<pool>": <held count>}}

at once when a pool's count goes 0 -> 1, then every :data:`DEMAND_INTERVAL_S` while any is held, and once more with
0 for a pool whose count returned to 0. Reports are sent one at a time by one task of their own, each within
:data:`DEMAND_TIMEOUT_S`, so they never block or fail a request. Unset: nothing is sent (logged once when a config
with pools is loaded). POSTs go through :meth:`llmroute.router.upstream.Upstream.fetch`.

**Every operator replica gets each report.** The operator runs two replicas and only the Lease holder takes reports;
the standby answers 503 (:mod:`llmroute.controller.demand`). The chart's demand Service is headless, so its name
resolves to one address per operator pod (:func:`llmroute.router.pod_discovery.resolve`, as for pool pods, at each
report: a takeover or a rescheduled pod is seen at the next one), and a report is POSTed to all of them at once. The
leader's 2xx is what counts; a standby's 503 is expected. Only a report that no address took (no leader right now,
during a takeover; a wrong URL) is logged, at most once a minute. Through a ClusterIP Service a report would reach the
leader half of the time and a cold start could wait seconds more. An ``https`` URL (its certificate names the host,
not an address) and a name that does not resolve right now are posted as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from llmroute.core.cold_start import HoldOutcome, demand_body, may_hold
from llmroute.core.router_config import ColdStartSettings
from llmroute.router import metrics
from llmroute.router.client import ClientSink
from llmroute.router.config_source import Snapshot
from llmroute.router.pod_discovery import resolve
from llmroute.router.upstream import Upstream, UpstreamFailure

if TYPE_CHECKING:
    from llmroute.router.pools import Pool

log = logging.getLogger("llmroute.router.pools")

DEMAND_URL_ENV = "LLMROUTE_DEMAND_URL"
DEMAND_INTERVAL_S = 1.0
DEMAND_TIMEOUT_S = 1.0
FAILURE_LOG_EVERY_S = 60.0
GONE_CHECK_S = 0.25


class Holds:
    """The requests this process holds, per pool."""

    def __init__(self, upstream: Upstream, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.held: dict[str, int] = {}
        self.total = 0
        self.demand = Demand(upstream, os.environ.get(DEMAND_URL_ENV) or None, clock, self.held)

    def use(self, snapshot: Snapshot, pools: Sequence[str]) -> None:
        """Adopt a config's pools (metrics series, demand identity)."""
        for key in pools:
            self.held.setdefault(key, 0)
        self.demand.use(f"{snapshot.route_name}/{socket.gethostname()}", has_pools=bool(pools))

    async def hold(self, pools: Sequence[Pool], settings: ColdStartSettings,
                   sink: ClientSink) -> tuple[HoldOutcome, float]:
        """Hold one request until a pod of ``pools`` is ready; (how it ended, seconds held)."""
        key = pools[0].key
        if not may_hold(self.total, settings.max_requests):
            metrics.pool_hold_ended(key, HoldOutcome.OVERFLOW)
            return HoldOutcome.OVERFLOW, 0.0
        started = self._clock()
        self._count(key, 1)
        outcome = HoldOutcome.CLIENT_CLOSED  # also if the handler is cancelled
        try:
            outcome = await self._wait(pools, started + settings.max_wait_s, sink)
        finally:
            self._count(key, -1)
            metrics.pool_hold_ended(key, outcome)
        return outcome, self._clock() - started

    async def _wait(self, pools: Sequence[Pool], end: float, sink: ClientSink) -> HoldOutcome:
        loop = asyncio.get_running_loop()
        while not any(p.ready_count for p in pools):
            left = end - self._clock()
            if left <= 0:
                return HoldOutcome.TIMEOUT
            if sink.gone:
                return HoldOutcome.CLIENT_CLOSED
            woken: asyncio.Future[None] = loop.create_future()
            for p in pools:
                p.waiters.add(woken)
            try:
                await asyncio.wait((woken,), timeout=min(left, GONE_CHECK_S))
            finally:
                for p in pools:
                    p.waiters.discard(woken)
        return HoldOutcome.SERVED

    def _count(self, key: str, delta: int) -> None:
        count = self.held[key] = self.held.get(key, 0) + delta
        self.total += delta
        metrics.set_pool_held(key, count)
        if (delta > 0 and count == 1) or count == 0:
            self.demand.changed(key, count)


Resolver = Callable[[str, int], Awaitable[frozenset[str]]]
"""``(host, port) -> origins`` (:func:`llmroute.router.pod_discovery.resolve`)."""


class Demand:
    """The demand signal's sender: one task per process, one report at a time (to every operator replica)."""

    def __init__(self, upstream: Upstream, url: str | None, clock: Callable[[], float],
                 held: dict[str, int], resolver: Resolver = resolve) -> None:
        self.url = url
        self._upstream, self._clock, self._held, self._resolve = upstream, clock, held, resolver
        self._router = ""
        self._ended: set[str] = set()
        self._wake = asyncio.Event()
        self._told_unset = False
        self._last_failure_log = -FAILURE_LOG_EVERY_S
        self._headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}

    def use(self, router: str, *, has_pools: bool) -> None:
        self._router = router
        if has_pools and self.url is None and not self._told_unset:
            self._told_unset = True
            log.info("%s is not set: held requests for pools are not reported to the operator (no scale-up from "
                     "zero on demand)", DEMAND_URL_ENV)

    def changed(self, key: str, count: int) -> None:
        """A pool's held count went 0 -> 1 or back to 0: report now."""
        if self.url is None:
            return
        if count == 0:
            self._ended.add(key)
        else:
            self._ended.discard(key)
        self._wake.set()

    async def run(self) -> None:
        """Report while anything is held (cancel to stop). The period runs from one report's start to the next: a
        replica that lets its POST time out (a pod gone but still in DNS) does not stretch it."""
        if self.url is None:
            return
        next_at = self._clock()
        while True:
            if any(self._held.values()):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_at - self._clock()))
            else:
                await self._wake.wait()
            self._wake.clear()
            next_at = self._clock() + DEMAND_INTERVAL_S
            body = demand_body(self._router, self._held, self._ended)
            self._ended.clear()
            if body["pools"]:
                await self.report(json.dumps(body).encode())

    async def report(self, body: bytes) -> bool:
        """POST ``body`` to every operator replica at once; whether one took it (the others are logged if none)."""
        assert self.url is not None
        answers = await asyncio.gather(*(self._post(url, body) for url in await self.destinations(self.url)))
        if None in answers:
            return True
        now = self._clock()
        if now - self._last_failure_log >= FAILURE_LOG_EVERY_S:
            self._last_failure_log = now
            log.warning("demand signal: no operator replica took the report (%s; logged at most once a minute)",
                        ", ".join(a for a in answers if a))
        return False

    async def destinations(self, url: str) -> list[str]:
        """``url`` once per address of its host (a headless Service: one per operator pod), else ``url`` itself."""
        parts = urlsplit(url)
        try:
            port = parts.port or 80  # ValueError: not a port (fetch then says the URL is bad)
            if parts.scheme != "http" or not parts.hostname:
                return [url]
            async with asyncio.timeout(DEMAND_TIMEOUT_S):
                found = await self._resolve(parts.hostname, port)
        except (OSError, TimeoutError, ValueError):
            found = frozenset()
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        return sorted(origin + tail for origin in found) or [url]

    async def _post(self, url: str, body: bytes) -> str | None:
        """None when the replica at ``url`` took the report, else why not (for the log)."""
        try:
            status, _ = await self._upstream.fetch("POST", url, self._headers, body=body, timeout_s=DEMAND_TIMEOUT_S)
        except (UpstreamFailure, ValueError) as exc:  # ValueError: not an http(s) URL
            return f"{url}: {exc}"
        return None if 200 <= status < 300 else f"{url}: HTTP {status}"
