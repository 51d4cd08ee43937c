"""``run_operator()``: the entry point behind ``llmroute operator``. Argument parsing stays in :mod:`llmroute.cli`.

Runs the operator in the foreground until SIGINT/SIGTERM (kopf installs the signal handlers), standalone (no
peering: run one replica), cluster-wide unless namespaces are given. ProviderPolicy is cluster-scoped and is watched
cluster-wide either way.
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
                 log_level: str | None = None, liveness_endpoint: str | None = "http://0.0.0.0:8081/healthz",
                 settings: Settings | None = None) -> int:
    """Run the operator until it is stopped; returns the process exit code.

    Arguments override the environment (:class:`Settings.from_env`); ``namespaces=None`` keeps LLMROUTE_NAMESPACES
    (empty: the whole cluster). ``liveness_endpoint`` serves kopf's probes (None: off).
    """
    base = settings or Settings.from_env()
    overrides = {k: v for k, v in (("namespaces", tuple(namespaces) if namespaces is not None else None),
                                   ("router_image", router_image),
                                   ("log_level", log_level.upper() if log_level else None)) if v is not None}
    config = dataclasses.replace(base, **overrides)  # type: ignore[arg-type]
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kopf.run(registry=build_registry(config), standalone=True, clusterwide=not config.namespaces,
             namespaces=config.namespaces, liveness_endpoint=liveness_endpoint, memo=kopf.Memo(settings=config))
    return EXIT_OK
