"""The kopf operator: thin handlers around pure builders, with all Kubernetes I/O in :mod:`.kube`.

``kopf run -m llmroute.controller`` imports this package, which registers every handler in kopf's default registry
with settings from the environment. ``llmroute operator`` (:func:`llmroute.controller.run.run_operator`) and the tests
build a fresh registry with :func:`build_registry` instead, so each gets its own settings (e.g. a short resync).

Handlers are registered by functions rather than decorators at import time because some of them depend on settings
(the prober is optional).
"""

from __future__ import annotations

import kopf

from llmroute.controller import cache, demand, indexes, policies, pools, prober, routes, setup
from llmroute.controller.settings import Settings


def register(registry: kopf.OperatorRegistry, settings: Settings) -> kopf.OperatorRegistry:
    setup.register(registry, settings)
    indexes.register(registry)
    cache.register(registry)
    routes.register(registry)
    policies.register(registry)
    pools.register(registry)
    demand.register(registry, settings)
    if settings.probe_providers:
        prober.register(registry)
    return registry


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    return register(kopf.OperatorRegistry(), settings)


register(kopf.get_default_registry(), Settings.from_env())
