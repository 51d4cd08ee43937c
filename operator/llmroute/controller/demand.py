"""The operator's demand endpoint: ``POST /v1/demand``, where routers report the requests they hold for ModelPools.

Why a push to the operator: a router holding requests for a pool at zero must get a replica started within a couple
of seconds, and routers have no write access to the Kubernetes API (and should not need any). A watch of some
object written by routers would need that access; scraping every router's metrics would cost the operator a request
per router and interval whether or not anything is held. So routers push, and only while they hold requests: one
small POST when a pool's held count goes 0 -> 1, one a second while holding, one with 0 when done
(:mod:`llmroute.core.demand` has the contract and the aggregation). The operator's cost follows the routers holding
requests right now, not the number of routes.

Contract (the router side is written against exactly this): body
``{"router": "<route-namespace>/<route-name>/<hostname>", "pools": {"<namespace>/<pool>": <held count>}}`` of at
most 64 KiB; ``204`` when taken, ``400`` with ``{"error": {"message": ..., "type": "invalid_request"}}`` when the
body is not such a report, ``413`` when it is larger. Pools the operator does not know are ignored (the router
repeats the report a second later, by which time a just-created pool's scaler is there). A pool whose demand goes
from 0 to more is woken at once (:meth:`llmroute.controller.pools.PoolRegistry.report`).

Served on ``LLMROUTE_DEMAND_PORT`` (8082; the Helm chart puts a headless Service, ``<operator>-demand``, in front of
it and hands its URL to routers as ``LLMROUTE_DEMAND_URL``) from the operator's event loop, started and stopped by the
operator's startup and cleanup (:func:`register`). The endpoint is unauthenticated, like the metrics port: anyone who
can reach it can make a pool start replicas (up to ``replicas.max``), never stop them, and the counts last three
seconds unless repeated; restrict it with a NetworkPolicy to the routers' namespaces where that matters.

A standby replica (:mod:`llmroute.controller.leader`) serves the port too but answers ``503`` with ``Retry-After: 1``
and ``Connection: close``. Routers resolve the headless Service's name to every operator pod and POST each report to
all of them (:class:`llmroute.router.holding.Demand`): the active replica takes it at once, the standby's 503 is
expected. (``Connection: close`` still serves a client that reaches the replicas through one balanced address.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf
from aiohttp import web

from llmroute.controller import metrics
from llmroute.controller.pools import PoolRegistry
from llmroute.controller.settings import Settings
from llmroute.core.demand import MAX_BODY_BYTES, DemandError, parse_report

logger = logging.getLogger(__name__)

PATH = "/v1/demand"
POOLS_KEY = web.AppKey("pools", PoolRegistry)
ACTIVE_KEY: web.AppKey[Callable[[], bool]] = web.AppKey("active")
STANDBY_HEADERS = {"Retry-After": "1", "Connection": "close"}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request"}}, status=status)


async def handle(request: web.Request) -> web.Response:
    if not request.app[ACTIVE_KEY]():
        return web.json_response({"error": {"message": "this operator replica is on standby, retry",
                                            "type": "unavailable"}}, status=503, headers=STANDBY_HEADERS)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.demand_report(False)
        return _error(413, f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        report = parse_report(body)
    except DemandError as exc:
        metrics.demand_report(False)
        return _error(400, str(exc))
    metrics.demand_report(True)
    for pool in request.app[POOLS_KEY].report(report):
        logger.info("pool %s: router %s holds requests, scaler woken", pool, report.router)
    return web.Response(status=204)


def app(pools: PoolRegistry, active: Callable[[], bool] = lambda: True) -> web.Application:
    application = web.Application(client_max_size=MAX_BODY_BYTES)
    application[POOLS_KEY] = pools
    application[ACTIVE_KEY] = active
    application.router.add_post(PATH, handle)
    return application


async def serve(pools: PoolRegistry, port: int, host: str = "0.0.0.0",
                active: Callable[[], bool] = lambda: True) -> web.AppRunner:
    """Start serving on ``host:port`` (503 while ``active()`` is false); stop with ``await runner.cleanup()``."""
    runner = web.AppRunner(app(pools, active), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    @kopf.on.startup(registry=registry, id="demand")
    async def start(memo: kopf.Memo, **_: Any) -> None:
        if settings.demand_port is not None and "demand_server" not in memo:
            memo.demand_server = await serve(memo.pools, settings.demand_port)

    @kopf.on.cleanup(registry=registry, id="demand-stop")
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        runner: web.AppRunner | None = memo.get("demand_server")
        if runner is not None:
            await runner.cleanup()
