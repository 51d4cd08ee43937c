"""Operator settings, read once from the environment (flags in ``llmroute operator`` map onto the same fields).

Owned here so handlers never read ``os.environ`` themselves: :func:`llmroute.controller.register` receives a
:class:`Settings`, tests build one by hand (e.g. a resync interval of a fraction of a second), and
:func:`llmroute.controller.run.run_operator` builds one from its arguments.

===========================  ==========================================  ==============================
Variable                     Meaning                                     Default
===========================  ==========================================  ==============================
LLMROUTE_ROUTER_IMAGE        router image for routes that name none      ``ghcr.io/llmroute/llmroute:<version>``
LLMROUTE_NAMESPACES          comma-separated namespaces to watch         empty: the whole cluster
LLMROUTE_LOG_LEVEL           DEBUG, INFO, WARNING or ERROR               INFO
LLMROUTE_RESYNC_SECONDS      safety-net resync of each route against     60
                             the watch cache (±25 % jitter; drift and
                             readiness are event-driven)
LLMROUTE_SECRET_TTL_SECONDS  how long a provider key Secret read is      30
                             reused; a rotated key is copied and rolls
                             the routers within this plus one resync
LLMROUTE_PROBE_PROVIDERS     run the shared provider prober (0/false:    true
                             off; routes then see every provider as
                             Unknown, i.e. usable)
LLMROUTE_METRICS_PORT        Prometheus ``/metrics`` port (0: off)       8081
LLMROUTE_HEALTH_PORT         kopf's liveness ``/healthz`` port (0: off)  8080
LLMROUTE_DEMAND_PORT         ``POST /v1/demand`` port: requests routers  8082
                             hold for ModelPools (0: off)
LLMROUTE_DEMAND_URL          that endpoint as routers reach it (the      unset: routers report no demand
                             operator's Service), given to every router
                             as ``LLMROUTE_DEMAND_URL``
LLMROUTE_NETWORK_POLICIES    give every router a NetworkPolicy (ingress  false (the Helm chart: true)
                             from the route's callers, egress to DNS
                             and provider ports)
LLMROUTE_METRICS_NAMESPACES  comma-separated namespaces whose pods may   empty
                             scrape routers under those policies
LLMROUTE_LEADER_ELECTION     one active replica, elected through a       false (the Helm chart: true)
                             Lease (:mod:`.leader`)
LLMROUTE_LEASE_NAME          that Lease's name                           ``llmroute-operator``
LLMROUTE_LEASE_NAMESPACE     that Lease's namespace                      ``$POD_NAMESPACE``
POD_NAME                     this replica's identity in the Lease        the host name
LLMROUTE_ROUTER_<LIMIT>      every router's ``LLMROUTE_<LIMIT>``, for    unset: the router's defaults
                             each client limit of ``ROUTER_LIMIT_ENV``
                             (``LLMROUTE_ROUTER_HEAD_TIMEOUT``...; Helm:
                             ``router.limits``)
===========================  ==========================================  ==============================

Settings built by hand (tests) serve no port unless asked: a fixed port cannot be bound twice in one process.
``pool_metrics_port`` (not in the environment) is where pool pods serve vLLM's ``/metrics``: always
:data:`~llmroute.api.model_pool.VLLM_PORT` in a cluster; tests point it at fake pods on loopback addresses.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from llmroute import __version__
from llmroute.api.model_pool import VLLM_PORT
from llmroute.core.manifests import ROUTER_LIMIT_ENV, RouterSettings

DEFAULT_ROUTER_IMAGE = f"ghcr.io/llmroute/llmroute:{__version__}"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_METRICS_PORT = 8081
DEFAULT_HEALTH_PORT = 8080
DEFAULT_DEMAND_PORT = 8082
DEFAULT_LEASE_NAME = "llmroute-operator"
FALSE_WORDS = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    """Everything the operator is configured with; immutable once the operator starts."""

    router_image: str = DEFAULT_ROUTER_IMAGE
    namespaces: tuple[str, ...] = ()
    log_level: str = "INFO"
    resync_seconds: float = 60.0
    secret_ttl_seconds: float = 30.0
    probe_providers: bool = True
    metrics_port: int | None = None
    health_port: int | None = None
    demand_port: int | None = None
    demand_url: str | None = None
    pool_metrics_port: int = VLLM_PORT
    network_policies: bool = False
    metrics_namespaces: tuple[str, ...] = ()
    leader_election: bool = False
    lease_name: str = DEFAULT_LEASE_NAME
    lease_namespace: str | None = None
    identity: str = field(default_factory=socket.gethostname)
    router_limits: tuple[tuple[str, str], ...] = ()
    """(router env var, value) of each client limit set for every router (:func:`router_limits`)."""

    def __post_init__(self) -> None:
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f'log level "{self.log_level}" is not one of {", ".join(LOG_LEVELS)}')
        if self.resync_seconds <= 0:
            raise ValueError(f"resync interval must be positive, got {self.resync_seconds}")
        if self.secret_ttl_seconds < 0:
            raise ValueError(f"secret TTL must not be negative, got {self.secret_ttl_seconds}")
        if self.demand_url is not None and not self.demand_url.startswith(("http://", "https://")):
            raise ValueError(f'demand URL must be an http(s) URL, got "{self.demand_url}"')
        if self.leader_election and not (self.lease_namespace and self.lease_name and self.identity):
            raise ValueError("leader election needs a Lease name, its namespace (LLMROUTE_LEASE_NAMESPACE or "
                             "POD_NAMESPACE) and an identity (POD_NAME)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        namespaces = tuple(n.strip() for n in env.get("LLMROUTE_NAMESPACES", "").split(",") if n.strip())
        return cls(
            router_image=env.get("LLMROUTE_ROUTER_IMAGE") or DEFAULT_ROUTER_IMAGE,
            namespaces=namespaces,
            log_level=(env.get("LLMROUTE_LOG_LEVEL") or "INFO").upper(),
            resync_seconds=float(env.get("LLMROUTE_RESYNC_SECONDS") or 60.0),
            secret_ttl_seconds=float(env.get("LLMROUTE_SECRET_TTL_SECONDS") or 30.0),
            probe_providers=_flag(env.get("LLMROUTE_PROBE_PROVIDERS"), default=True),
            metrics_port=_port(env.get("LLMROUTE_METRICS_PORT"), DEFAULT_METRICS_PORT),
            health_port=_port(env.get("LLMROUTE_HEALTH_PORT"), DEFAULT_HEALTH_PORT),
            demand_port=_port(env.get("LLMROUTE_DEMAND_PORT"), DEFAULT_DEMAND_PORT),
            demand_url=env.get("LLMROUTE_DEMAND_URL") or None,
            network_policies=_flag(env.get("LLMROUTE_NETWORK_POLICIES"), default=False),
            metrics_namespaces=tuple(n.strip() for n in env.get("LLMROUTE_METRICS_NAMESPACES", "").split(",")
                                     if n.strip()),
            leader_election=_flag(env.get("LLMROUTE_LEADER_ELECTION"), default=False),
            lease_name=env.get("LLMROUTE_LEASE_NAME") or DEFAULT_LEASE_NAME,
            lease_namespace=env.get("LLMROUTE_LEASE_NAMESPACE") or env.get("POD_NAMESPACE") or None,
            identity=env.get("POD_NAME") or socket.gethostname(),
            router_limits=router_limits(env),
        )

    @property
    def router(self) -> RouterSettings:
        return RouterSettings(image=self.router_image, demand_url=self.demand_url,
                              network_policies=self.network_policies, metrics_namespaces=self.metrics_namespaces,
                              limits=self.router_limits)


def router_limits(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The client limits set for every router: ``LLMROUTE_ROUTER_<X>`` becomes the router's ``LLMROUTE_<X>`` (for
    each of :data:`ROUTER_LIMIT_ENV`). A value a router would refuse stops the operator here, before any router
    gets it."""
    out = []
    for name, kind in ROUTER_LIMIT_ENV.items():
        source = "LLMROUTE_ROUTER_" + name.removeprefix("LLMROUTE_")
        raw = env.get(source, "").strip()
        if not raw:
            continue
        try:
            value = kind(raw)
        except ValueError:
            value = 0
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f'{source} must be a positive {"integer" if kind is int else "number"}, got "{raw}"')
        out.append((name, raw))
    return tuple(out)


def _flag(value: str | None, *, default: bool) -> bool:
    text = (value or "").strip().lower()
    return default if not text else text not in FALSE_WORDS


def _port(value: str | None, default: int) -> int | None:
    port = int(value) if value not in (None, "") else default
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535, got {port}")
    return port or None
