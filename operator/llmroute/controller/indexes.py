"""kopf indexes: the in-memory lookups the handlers use instead of listing the API on every event.

* ``policies_by_name``: ProviderPolicy name → its spec and status (a route's compile input and provider health).
* ``routes_by_policy``: ProviderPolicy name → the LLMRoutes that reference it, with the policy hash and provider
  health key each route last saw (so a policy change or a provider going Down/up fans out to exactly its routes,
  and only the stale ones get patched).

kopf fills every index before the first handler runs, so at startup a route never sees its policy as missing just
because the policy watch has not caught up yet. Registered by :func:`llmroute.controller.register`.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from llmroute.api.base import GROUP, VERSION

POLICY_HASH_ANNOTATION = "llmroute.io/policy-hash"
HEALTH_ANNOTATION = "llmroute.io/provider-health"
"""Set by the prober on dependent routes when the set of Down/Misconfigured providers changes (a fingerprint)."""
POLICIES = (GROUP, VERSION, "providerpolicies")
ROUTES = (GROUP, VERSION, "llmroutes")


@dataclass(frozen=True)
class RouteRef:
    """A route as the fan-outs need it: where it is, and which policy hash and health key it was last told."""

    namespace: str
    name: str
    policy_hash: str | None
    health_key: str | None = None


def policies_by_name(name: str, spec: Mapping[str, Any], status: Mapping[str, Any],
                     **_: Any) -> dict[str, dict[str, Any]]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ProviderPolicy", "metadata": {"name": name},
            "spec": copy.deepcopy(dict(spec))}
    return {name: {**body, "status": copy.deepcopy(dict(status))}}


def routes_by_policy(namespace: str | None, name: str, spec: Mapping[str, Any], annotations: Mapping[str, str],
                     **_: Any) -> dict[str, RouteRef]:
    policy = (spec.get("policyRef") or {}).get("name")
    if not isinstance(policy, str):
        return {}
    return {policy: RouteRef(namespace or "default", name, annotations.get(POLICY_HASH_ANNOTATION),
                             annotations.get(HEALTH_ANNOTATION))}


def first(index: kopf.Index[Any, Any], key: Hashable) -> Any:
    """The single value stored under ``key``, or None."""
    return next(iter(index.get(key, [])), None)


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.index(*POLICIES, registry=registry, id="policies_by_name")(policies_by_name)
    kopf.index(*ROUTES, registry=registry, id="routes_by_policy")(routes_by_policy)
