"""Operator settings, read once from the environment (flags in ``llmroute operator`` map onto the same fields).

Owned here so handlers never read ``os.environ`` themselves: :func:`llmroute.controller.register` receives a
:class:`Settings`, tests build one by hand (e.g. a resync interval of a fraction of a second), and
:func:`llmroute.controller.run.run_operator` builds one from its arguments.

=========================  ==========================================  ==============================
Variable                   Meaning                                     Default
=========================  ==========================================  ==============================
LLMROUTE_ROUTER_IMAGE      router image for routes that name none      ``ghcr.io/llmroute/llmroute:<version>``
LLMROUTE_NAMESPACES        comma-separated namespaces to watch         empty: the whole cluster
LLMROUTE_LOG_LEVEL         DEBUG, INFO, WARNING or ERROR               INFO
LLMROUTE_RESYNC_SECONDS    how often each route is re-checked          60
                           (drift repair, router readiness)
=========================  ==========================================  ==============================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from llmroute import __version__
from llmroute.core.manifests import RouterSettings

DEFAULT_ROUTER_IMAGE = f"ghcr.io/llmroute/llmroute:{__version__}"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    """Everything the operator is configured with; immutable once the operator starts."""

    router_image: str = DEFAULT_ROUTER_IMAGE
    namespaces: tuple[str, ...] = ()
    log_level: str = "INFO"
    resync_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f'log level "{self.log_level}" is not one of {", ".join(LOG_LEVELS)}')
        if self.resync_seconds <= 0:
            raise ValueError(f"resync interval must be positive, got {self.resync_seconds}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        namespaces = tuple(n.strip() for n in env.get("LLMROUTE_NAMESPACES", "").split(",") if n.strip())
        return cls(
            router_image=env.get("LLMROUTE_ROUTER_IMAGE") or DEFAULT_ROUTER_IMAGE,
            namespaces=namespaces,
            log_level=(env.get("LLMROUTE_LOG_LEVEL") or "INFO").upper(),
            resync_seconds=float(env.get("LLMROUTE_RESYNC_SECONDS") or 60.0),
        )

    @property
    def router(self) -> RouterSettings:
        return RouterSettings(image=self.router_image)
