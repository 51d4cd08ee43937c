"""The two signals the operator feeds a pool's scaler besides the pods' own metrics, run locally.

* :class:`LocalProber` - the health of the providers a pool backs up (``prewarm.whenDown``), as the operator's shared
  prober (:mod:`llmroute.controller.prober`) sees it: ``GET {endpoint}{healthCheck.path}`` with the provider key,
  every (compressed) ``healthCheck.interval``, each result put through the same pure hysteresis
  (:func:`llmroute.core.probing.next_health`). Nothing here decides what a probe means.
* :class:`DemandEndpoint` - ``POST /v1/demand`` on loopback, where the router reports the requests it holds for a
  pool with no ready pod (``$LLMROUTE_DEMAND_URL``); parsed and summed by the pure :mod:`llmroute.core.demand`, as
  the operator's endpoint does. A pool whose demand goes from 0 to more wakes its scaler at once.

Local mode's own clock is the event loop's (monotonic seconds); the prober's timestamps are wall-clock UTC, as in
status. Used by :mod:`llmroute.local.stack` and :mod:`llmroute.local.pools`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from llmroute.api.base import parse_duration
from llmroute.api.provider_policy import HealthCheck, ProviderHealth, ProviderState
from llmroute.core import demand, probing


@dataclass(frozen=True)
class ProbeTarget:
    """One watched provider: ``key`` is ``"<policy>/<provider>"`` (how ``prewarm.whenDown`` names it)."""

    key: str
    url: str  # the provider's base URL plus healthCheck.path
    api_key: str | None
    check: HealthCheck
    interval_s: float  # healthCheck.interval, compressed for the drill


class LocalProber:
    """Probes each target forever; :meth:`state` is its current prober state (Unknown until probed)."""

    def __init__(self, targets: tuple[ProbeTarget, ...]) -> None:
        self.targets = targets
        self.health = {t.key: ProviderHealth(name=t.key.rpartition("/")[2]) for t in targets}

    def state(self, key: str) -> ProviderState:
        found = self.health.get(key)
        return ProviderState.UNKNOWN if found is None else found.state

    async def run(self) -> None:
        if not self.targets:
            return
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(self._loop(http, t) for t in self.targets))

    async def _loop(self, http: aiohttp.ClientSession, target: ProbeTarget) -> None:
        while True:
            result = await probe(http, target)
            self.health[target.key] = probing.next_health(self.health[target.key], result,
                                                          datetime.datetime.now(datetime.UTC), target.check)
            await asyncio.sleep(target.interval_s)


async def probe(http: aiohttp.ClientSession, target: ProbeTarget) -> probing.ProbeResult:
    """One unbilled health probe; transport errors become a few words, as the operator's prober reports them."""
    timeout_s = parse_duration(target.check.timeout)
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s), http.get(target.url, headers=headers) as resp:
            await resp.read()
            status = resp.status
    except TimeoutError:
        return probing.ProbeResult(latency_s=time.perf_counter() - started, error=f"timed out after {timeout_s:g}s")
    except aiohttp.ClientConnectorError:
        return probing.ProbeResult(latency_s=time.perf_counter() - started, error="connection refused")
    except aiohttp.ClientError:
        return probing.ProbeResult(latency_s=time.perf_counter() - started, error="connection reset or closed")
    return probing.ProbeResult(status=status, latency_s=time.perf_counter() - started)


class DemandEndpoint:
    """``POST /v1/demand`` on loopback; :meth:`held` is what routers hold for a pool now."""

    PATH = "/v1/demand"

    def __init__(self, pools: frozenset[str], wake: Callable[[str], None]) -> None:
        self.pools, self.wake = pools, wake
        self.book = demand.DemandBook()
        self.reports = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    def held(self, pool: str) -> int:
        return self.book.held(pool, asyncio.get_running_loop().time())

    async def _post(self, request: web.Request) -> web.Response:
        try:
            report = demand.parse_report(await request.read())
        except demand.DemandError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.reports += 1
        for pool in self.book.record(report, asyncio.get_running_loop().time(), known=lambda k: k in self.pools):
            self.wake(pool)
        return web.Response(status=204)

    async def start(self) -> DemandEndpoint:
        app = web.Application(client_max_size=demand.MAX_BODY_BYTES)
        app.router.add_post(self.PATH, self._post)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}{self.PATH}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None
