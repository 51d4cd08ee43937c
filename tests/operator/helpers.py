"""Small readers shared by the operator tests: objects, conditions and Events as the user would see them."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from tests.conftest import example_doc
from tests.operator.conftest import Cluster, available, secret_doc

NS = "apps"
ROUTE = "deepseek"
GV = "llmroute.io/v1alpha1"
OWNED = [("v1", "configmaps", "deepseek-router-config"), ("apps/v1", "deployments", "deepseek-router"),
         ("v1", "services", "deepseek-router"), ("policy/v1", "poddisruptionbudgets", "deepseek-router"),
         ("v1", "secrets", "deepseek-provider-keys")]
HASH = "llmroute.io/config-hash"
KEYS_HASH = "llmroute.io/keys-hash"


async def route_status(cluster: Cluster, ns: str = NS, name: str = ROUTE) -> dict[str, Any]:
    route = await cluster.get(GV, "llmroutes", ns, name)
    return (route or {}).get("status") or {}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


async def cond(cluster: Cluster, type_: str, ns: str = NS, name: str = ROUTE) -> dict[str, Any]:
    return condition(await route_status(cluster, ns, name), type_)


async def deploy_example(cluster: Cluster, route: dict[str, Any] | None = None) -> None:
    await cluster.create(secret_doc(), "secrets")
    await cluster.create(example_doc("policy"), "providerpolicies")
    await cluster.create(route or example_doc("route"), "llmroutes")


async def router_available(cluster: Cluster, ns: str = NS, route: str = ROUTE) -> None:
    """Do what the Deployment controller would (kmock has none): report the router's replicas available."""
    await cluster.patch("apps/v1", "deployments", ns, f"{route}-router", available(), sub="status")


async def config_map(cluster: Cluster, ns: str = NS, route: str = ROUTE) -> dict[str, Any] | None:
    result: dict[str, Any] | None = await cluster.get("v1", "configmaps", ns, f"{route}-router-config")
    return result


async def deployment(cluster: Cluster, ns: str = NS, route: str = ROUTE) -> dict[str, Any] | None:
    result: dict[str, Any] | None = await cluster.get("apps/v1", "deployments", ns, f"{route}-router")
    return result


def pod_hash(dep: dict[str, Any] | None) -> str | None:
    return ((((dep or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "annotations", {}).get(HASH)


def pod_annotations(dep: dict[str, Any] | None) -> dict[str, str]:
    annotations: dict[str, str] = ((((dep or {}).get("spec") or {}).get("template") or {}).get("metadata")
                                   or {}).get("annotations", {})
    return annotations


def key_needles(values: Iterable[str]) -> list[str]:
    """What a leaked provider key could look like: the plain value and its base64 form."""
    values = list(values)
    return values + [base64.b64encode(v.encode()).decode() for v in values]


def leaked(objs: Any, needles: Iterable[str]) -> list[str]:
    """The needles found anywhere in ``objs`` (serialised as JSON)."""
    text = json.dumps(objs)
    return [n for n in needles if n in text]


async def events(cluster: Cluster, name: str = ROUTE) -> list[dict[str, Any]]:
    return [e for e in await cluster.list("v1", "events") if e.get("involvedObject", {}).get("name") == name]


async def reasons(cluster: Cluster, name: str = ROUTE) -> list[tuple[str, str]]:
    return [(e.get("type", ""), e.get("reason", "")) for e in await events(cluster, name)]
