"""``run_operator()``: the entry point behind ``llmroute operator``. Argument parsing stays in :mod:`llmroute.cli`.

Runs the operator in the foreground until SIGINT/SIGTERM, cluster-wide unless namespaces are given (ProviderPolicy
is cluster-scoped and is watched cluster-wide either way). kopf always runs standalone (no kopf peering):

* without leader election (``LLMROUTE_LEADER_ELECTION`` unset: one replica, local runs) kopf runs at once;
* with it (the Helm chart, two replicas) the process first serves ``/healthz``, ``/metrics``
  (``llmroute_operator_leader 0``) and a demand endpoint that answers 503, waits until it holds the Lease
  (:mod:`llmroute.controller.leader`), then starts kopf in the same event loop while a thread renews the Lease.
  Losing the Lease ends the process at once with :data:`EXIT_LOST_LEASE` (crash-only: nothing of the operator
  outlives its leadership, not even an API call in a worker thread); SIGTERM stops kopf (its own signal handler)
  and then releases the Lease for an immediate handover; kopf ending by itself (a crash) releases it too and exits
  with :data:`EXIT_CRASHED`. The health endpoint then is this module's own (both roles pass liveness and readiness, so a
  rollout never waits for a pod that cannot become leader); its body says ``{"identity", "leader", "holder"}``.

Ports (the Helm chart matches them): kopf's liveness probe on ``:8080/healthz`` (LLMROUTE_HEALTH_PORT), the
Prometheus endpoint on ``:8081/metrics`` (LLMROUTE_METRICS_PORT, started by the operator's startup handler) and the
routers' demand reports on ``:8082/v1/demand`` (LLMROUTE_DEMAND_PORT, :mod:`llmroute.controller.demand`).
The API server is found the standard way, by kopf and by :class:`~llmroute.controller.kube.Kube` alike: in-cluster
service account, else the current kubeconfig context (``KUBECONFIG``; the end-to-end smoke test points it at the
API emulator).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Sequence
from typing import Any

import kopf
from aiohttp import web

from llmroute import __version__
from llmroute.controller import build_registry, demand, leader, metrics, setup
from llmroute.controller.kube import USER_AGENT, Kube
from llmroute.controller.pools import PoolRegistry
from llmroute.controller.settings import Settings

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CRASHED = 1
EXIT_LOST_LEASE = 3


def run_operator(namespaces: Sequence[str] | None = None, *, router_image: str | None = None,
                 log_level: str | None = None, liveness_endpoint: str | None = None,
                 settings: Settings | None = None, demand_port: int | None = None,
                 demand_url: str | None = None) -> int:
    """Run the operator until it is stopped; returns the process exit code.

    Arguments override the environment (:class:`Settings.from_env`); ``namespaces=None`` keeps LLMROUTE_NAMESPACES
    (empty: the whole cluster); ``demand_port`` 0 turns the demand endpoint off. ``liveness_endpoint`` serves kopf's
    probes (default: ``http://0.0.0.0:<health port>/healthz``, none when the health port is off).
    """
    base = settings or Settings.from_env()
    overrides = {k: v for k, v in (("namespaces", tuple(namespaces) if namespaces is not None else None),
                                   ("router_image", router_image),
                                   ("log_level", log_level.upper() if log_level else None),
                                   ("demand_url", demand_url)) if v is not None}
    config = dataclasses.replace(base, **overrides)  # type: ignore[arg-type]
    if demand_port is not None:
        config = dataclasses.replace(config, demand_port=demand_port or None)
    if liveness_endpoint is None and config.health_port is not None:
        liveness_endpoint = f"http://0.0.0.0:{config.health_port}/healthz"
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    registry = build_registry(config)
    # A fresh registry has none of kopf's fallback logins (only kopf's default registry does, which serves
    # ``kopf run -m``): log in as the Kubernetes client library and :meth:`Kube.from_environment` do.
    kopf.on.login(registry=registry, id="login")(kopf.login_via_client)
    if config.leader_election:
        return asyncio.run(run_elected(config, registry))
    kopf.run(registry=registry, standalone=True, clusterwide=not config.namespaces,
             namespaces=config.namespaces, liveness_endpoint=liveness_endpoint, memo=kopf.Memo(settings=config))
    return EXIT_OK


async def run_elected(config: Settings, registry: kopf.OperatorRegistry) -> int:
    """Standby until this replica holds the Lease, then the operator; returns the exit code, or ends the process at
    once with :data:`EXIT_LOST_LEASE` when the Lease is lost."""
    assert config.lease_namespace is not None
    agent = f"{USER_AGENT} ({config.identity})"  # audit logs (and the tests) tell the replicas' requests apart
    elector = leader.Elector(Kube.from_environment(agent), config.lease_namespace, config.lease_name,
                             config.identity)  # its own client: a busy reconcile pool must not delay a renewal
    memo = kopf.Memo(settings=config, pools=PoolRegistry(), kube=Kube.from_environment(agent))
    setup.serve_metrics(config.metrics_port)
    metrics.set_leader(False)
    runners = [await _serve_health(elector, config.health_port)] if config.health_port is not None else []
    if config.demand_port is not None:
        memo.demand_server = await demand.serve(memo.pools, config.demand_port, active=lambda: elector.leading)
        runners.append(memo.demand_server)
    try:
        return await _elected(config, registry, elector, memo)
    finally:
        for runner in runners:
            await runner.cleanup()


async def _elected(config: Settings, registry: kopf.OperatorRegistry, elector: leader.Elector,
                   memo: kopf.Memo) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    logger.info("%s: standby until it holds lease %s/%s", config.identity, config.lease_namespace, config.lease_name)
    acquiring = asyncio.create_task(elector.acquire(), name="lease acquisition")
    stop_wait = asyncio.create_task(stopping.wait(), name="stop signal")
    await asyncio.wait({acquiring, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    if not acquiring.done():
        await _cancel(acquiring)
        return EXIT_OK  # stopped while on standby
    metrics.set_leader(True)
    # kopf installs its own SIGINT/SIGTERM handlers: a signal then stops kopf gracefully, and the Lease is released
    # after it. A signal that reaches ours before kopf's are in place cancels kopf instead. (kopf's stop_flag is not
    # used: its waiter task would cost five seconds of kopf's wait for hung tasks at every stop.)
    operator = asyncio.create_task(kopf.operator(registry=registry, standalone=True, clusterwide=not config.namespaces,
                                                 namespaces=config.namespaces, memo=memo), name="kopf")
    renewal = leader.Renewal(elector, lambda: _lost(config))
    renewal.start()
    await asyncio.wait({operator, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    if not operator.done():
        await _cancel(operator)
    await _cancel(stop_wait)
    await renewal.stop()
    await elector.release()
    metrics.set_leader(False)
    crashed = not operator.cancelled() and operator.exception() is not None
    if crashed:
        logger.error("the operator stopped unexpectedly: %r", operator.exception())
    return EXIT_CRASHED if crashed else EXIT_OK


def _lost(config: Settings) -> None:
    """The Lease is lost (called from the renewal thread): another replica may be active any moment now."""
    logger.error("%s lost lease %s/%s; exiting", config.identity, config.lease_namespace, config.lease_name)
    metrics.set_leader(False)
    logging.shutdown()
    os._exit(EXIT_LOST_LEASE)  # crash-only: no cleanup, no API call finishing in a worker thread


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _serve_health(elector: leader.Elector, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"version": __version__, **leader.status(elector)})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
