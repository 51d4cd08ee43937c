"""Operator-wide setup: kopf settings at startup, shared state in the memo, the liveness probe.

Progress and the last-handled configuration are stored in **annotations** with the prefix ``operator.llmroute.io``,
not in ``status.kopf``: the CRDs' status schemas are strict (a real API server would prune ``status.kopf`` and kopf
would lose track of its handlers). The prefix is deliberately not ``llmroute.io`` itself: kopf drops every
annotation under its own prefix from the objects' "essence", and ``llmroute.io/policy-hash`` must stay in it so that
a policy fan-out triggers the routes' update handler.

kopf peering is off (standalone): when several replicas run (the Helm chart runs two), they elect the active one
through a Lease *before* kopf starts (:mod:`llmroute.controller.leader`, :func:`llmroute.controller.run.run_elected`),
so kopf only ever runs in the one active process and ``llmroute_operator_leader`` is set to 1 here. Only warnings are
posted as Events from log lines; meaningful Events are posted on purpose by the handlers.

The memo holds the settings, the per-route locks, the reconcile gate, the :class:`Kube` client, ``health``
(policy → provider → health, kept by the prober), ``owned`` (the watch cache's pending writes, fingerprints and route
wake-ups, :mod:`llmroute.controller.cache`), ``secrets`` (the TTL cache of provider key Secrets), ``statuses``
(the status last written per route) and ``pools`` (each ModelPool's scaler and the routers' demand,
:class:`~llmroute.controller.pools.PoolRegistry`). kopf hands each object a shallow copy of it, so everything shared
is created here, once. The Prometheus endpoint (:mod:`llmroute.controller.metrics`) is started here when
``Settings.metrics_port`` is set, so ``llmroute operator`` and ``kopf run -m llmroute.controller`` both serve it; it
is started once per process (a thread that lives as long as the process).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from llmroute import __version__
from llmroute.controller import cache, metrics
from llmroute.controller.issuer import IssuerKeys
from llmroute.controller.kube import Kube
from llmroute.controller.pools import PoolRegistry
from llmroute.controller.settings import Settings

FINALIZER = "llmroute.io/finalizer"
STORAGE_PREFIX = "operator.llmroute.io"
RECONCILE_CONCURRENCY = 32
"""LLMRoute reconciles in flight at once (``memo.gate``): API calls go through a small thread pool anyway, and a
thousand reconciles holding their compiled configs and desired objects at once only cost memory."""
_serving: set[int] = set()


def configure(kopf_settings: kopf.OperatorSettings) -> None:
    kopf_settings.persistence.finalizer = FINALIZER
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=STORAGE_PREFIX)
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.peering.standalone = True
    kopf_settings.watching.server_timeout = 300
    cache.configure(kopf_settings)


def serve_metrics(port: int | None, host: str = "0.0.0.0") -> None:
    """Start the metrics endpoint on ``port`` unless it is None or already served by this process."""
    if port is not None and port not in _serving:
        metrics.start_metrics_server(host, port)
        _serving.add(port)


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings)
        memo.setdefault("settings", operator_settings)
        memo.setdefault("locks", {})
        memo.setdefault("health", {})
        memo.setdefault("gate", asyncio.Semaphore(RECONCILE_CONCURRENCY))
        memo.setdefault("owned", cache.Owned())
        memo.setdefault("statuses", {})
        memo.setdefault("pools", PoolRegistry())
        if "kube" not in memo:
            memo.kube = Kube.from_environment()
        memo.setdefault("secrets", cache.SourceSecrets(memo.kube, ttl=memo.settings.secret_ttl_seconds))
        memo.setdefault("issuer", IssuerKeys(memo.kube))  # service account issuer keys, read when a route needs them
        serve_metrics(operator_settings.metrics_port)
        metrics.set_leader(True)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        memo.kube.close()

    @kopf.on.probe(registry=registry, id="version")
    def version(**_: Any) -> str:
        return __version__

    operator_settings = settings
