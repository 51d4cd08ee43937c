"""``run_operator()``: the entry point behind ``llmroute operator``. Argument parsing stays in :mod:`llmroute.cli`.

Runs the operator in the foreground until SIGINT/SIGTERM (kopf installs the signal handlers), standalone (no
peering: run one replica), cluster-wide unless namespaces are given. ProviderPolicy is cluster-scoped and is watched
cluster-wide either way.

Ports (the Helm chart matches them): kopf's liveness probe on ``:8080/healthz`` (LLMROUTE_HEALTH_PORT), the
Prometheus endpoint on ``:8081/metrics`` (LLMROUTE_METRICS_PORT, started by the operator's startup handler) and the
routers' demand reports on ``:8082/v1/demand`` (LLMROUTE_DEMAND_PORT, :mod:`llmroute.controller.demand`).
The API server is found the standard way, by kopf and by :class:`~llmroute.controller.kube.Kube` alike: in-cluster
service account, else the current kubeconfig context (``KUBECONFIG``; the end-to-end smoke test points it at the
API emulator).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import kopf

from llmroute.controller import build_registry
from llmroute.controller.settings import Settings

EXIT_OK = 0


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
    kopf.run(registry=registry, standalone=True, clusterwide=not config.namespaces,
             namespaces=config.namespaces, liveness_endpoint=liveness_endpoint, memo=kopf.Memo(settings=config))
    return EXIT_OK
