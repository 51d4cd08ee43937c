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
===========================  ==========================================  ==============================

Settings built by hand (tests) serve neither port unless asked: a fixed port cannot be bound twice in one process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from llmroute import __version__
from llmroute.core.manifests import RouterSettings

DEFAULT_ROUTER_IMAGE = f"ghcr.io/llmroute/llmroute:{__version__}"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_METRICS_PORT = 8081
DEFAULT_HEALTH_PORT = 8080
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

    def __post_init__(self) -> None:
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f'log level "{self.log_level}" is not one of {", ".join(LOG_LEVELS)}')
        if self.resync_seconds <= 0:
            raise ValueError(f"resync interval must be positive, got {self.resync_seconds}")
        if self.secret_ttl_seconds < 0:
            raise ValueError(f"secret TTL must not be negative, got {self.secret_ttl_seconds}")

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
            probe_providers=(env.get("LLMROUTE_PROBE_PROVIDERS") or "true").strip().lower() not in FALSE_WORDS,
            metrics_port=_port(env.get("LLMROUTE_METRICS_PORT"), DEFAULT_METRICS_PORT),
            health_port=_port(env.get("LLMROUTE_HEALTH_PORT"), DEFAULT_HEALTH_PORT),
        )

    @property
    def router(self) -> RouterSettings:
        return RouterSettings(image=self.router_image)


def _port(value: str | None, default: int) -> int | None:
    port = int(value) if value not in (None, "") else default
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535, got {port}")
    return port or None
