"""Checks across a ModelPool and the ProviderPolicies and LLMRoutes that use it: what no single CRD schema can see.

Pure; called by ``llmroute validate`` (and so by local mode's start-up check) over the objects of a set of files.
A problem is a :class:`~llmroute.errors.FieldError` on the object it is about, with the field path there:

* a route backend served by a pool provider must ask for the pool's served model name (vLLM answers 404 to any other);
* a pool's ``prewarm.whenDown`` must name a provider the named policy has, and not a pool (a pool cannot back itself up:
  its "outage" is being at zero replicas);
* a pool's own objects must be buildable (:func:`llmroute.core.pool_manifests.pool_errors`: a name its Services can
  carry, ``engineArgs``/``env`` that do not set what the operator manages, such as ``--port`` or ``HF_TOKEN``).

Objects the files do not hold (a pool in another repository, a policy applied by the platform team) are not errors:
:func:`notes` says what could not be checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llmroute.api.llm_route import LLMRoute
from llmroute.api.model_pool import ModelPool
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core import pool_manifests
from llmroute.errors import FieldError

PoolKey = tuple[str, str]
RouteKey = tuple[str, str]


@dataclass(frozen=True)
class Problem:
    """A FieldError on one object (``subject``)."""

    subject: LLMRoute | ModelPool
    error: FieldError


def problems(policies: Mapping[str, ProviderPolicy], routes: Mapping[RouteKey, LLMRoute],
             pools: Mapping[PoolKey, ModelPool]) -> list[Problem]:
    """Every cross-object problem of the given objects."""
    own = [Problem(pool, e) for _, pool in sorted(pools.items()) for e in pool_manifests.pool_errors(pool)]
    return [*own, *_backend_models(policies, routes, pools), *_prewarm_targets(policies, pools)]


def _backend_models(policies: Mapping[str, ProviderPolicy], routes: Mapping[RouteKey, LLMRoute],
                    pools: Mapping[PoolKey, ModelPool]) -> list[Problem]:
    out = []
    for _, route in sorted(routes.items()):
        policy = policies.get(route.spec.policy_ref.name)
        if policy is None:
            continue
        for i, model in enumerate(route.spec.models):
            for j, backend in enumerate(model.backends):
                provider = policy.spec.provider(backend.provider)
                if provider is None or provider.pool is None:
                    continue
                pool = pools.get((provider.pool.namespace, provider.pool.name))
                if pool is not None and backend.model != pool.spec.served_name:
                    out.append(Problem(route, FieldError(
                        f"spec.models[{i}].backends[{j}].model",
                        f'provider "{backend.provider}" is ModelPool {provider.pool.namespace}/{provider.pool.name}, '
                        f'which serves "{pool.spec.served_name}", not "{backend.model}"',
                    )))
    return out


def _prewarm_targets(policies: Mapping[str, ProviderPolicy], pools: Mapping[PoolKey, ModelPool]) -> list[Problem]:
    out = []
    for _, pool in sorted(pools.items()):
        if pool.spec.prewarm is None:
            continue
        for k, watched in enumerate(pool.spec.prewarm.when_down):
            policy = policies.get(watched.policy)
            if policy is None:
                continue
            provider = policy.spec.provider(watched.provider)
            path = f"spec.prewarm.whenDown[{k}].provider"
            if provider is None:
                known = ", ".join(p.name for p in policy.spec.providers)
                message = f'no provider "{watched.provider}" in ProviderPolicy "{watched.policy}" (known: {known})'
                out.append(Problem(pool, FieldError(path, message)))
            elif provider.pool is not None:
                out.append(Problem(pool, FieldError(
                    path, f'"{watched.provider}" is itself a ModelPool; prewarm watches hosted providers')))
    return out


def notes(policies: Mapping[str, ProviderPolicy], pools: Mapping[PoolKey, ModelPool]) -> list[str]:
    """What could not be checked because an object is not among the files."""
    out = []
    for name, policy in sorted(policies.items()):
        for provider in policy.spec.providers:
            ref = provider.pool
            if ref is not None and (ref.namespace, ref.name) not in pools:
                out.append(f'ProviderPolicy {name}: provider "{provider.name}" names ModelPool '
                           f"{ref.namespace}/{ref.name}, which is not among the files")
    for (ns, name), pool in sorted(pools.items()):
        for watched in pool.spec.prewarm.when_down if pool.spec.prewarm else ():
            if watched.policy not in policies:
                out.append(f'ModelPool {ns}/{name}: prewarm watches ProviderPolicy "{watched.policy}", which is not '
                           "among the files")
    return out
