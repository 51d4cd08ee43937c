"""LLMRoute lifecycle against the real operator: create, Ready, update (rollout or not), a steady state that sends
no request (resyncs read the watch cache), delete, drift repair and readiness driven by the watch (not the resync),
restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import pytest

from llmroute.controller.metrics import REGISTRY
from tests.conftest import example_doc
from tests.figures import record
from tests.operator.conftest import (
    RESYNC_S,
    Cluster,
    StartOperator,
    eventually,
    secret_doc,
    settled,
    stop,
    verb,
    writes,
)
from tests.operator.helpers import (
    GV,
    NS,
    OWNED,
    ROUTE,
    cond,
    config_map,
    deploy_example,
    deployment,
    pod_hash,
    reasons,
    route_status,
    router_available,
)

pytestmark = pytest.mark.operator


async def test_create_owns_objects_then_ready_when_deployment_available(operator: Cluster) -> None:
    await deploy_example(operator)
    status = await eventually(lambda: route_status(operator), what="route status")
    route = await operator.get(GV, "llmroutes", NS, ROUTE)
    for api_version, plural, name in OWNED:
        obj = await eventually(lambda a=api_version, p=plural, n=name: operator.get(a, p, NS, n), what=name)
        assert obj["metadata"]["ownerReferences"] == [{
            "apiVersion": GV, "kind": "LLMRoute", "name": ROUTE, "uid": route["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}]
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "llmroute-operator"
    assert pod_hash(await deployment(operator)) == status["configHash"]
    assert await operator.get("autoscaling/v2", "horizontalpodautoscalers", NS, "deepseek-router") is None
    assert (await cond(operator, "Accepted"))["status"] == "True"
    assert (await cond(operator, "Ready"))["reason"] == "RouterUnavailable"
    assert status["modelNames"] == "deepseek-chat,deepseek-reasoner"
    assert status["activeProvider"] == "together"  # internal (the default class) may not go to deepseek (CN)

    await router_available(operator)
    ready = await eventually(lambda: _is(cond(operator, "Ready"), "True"), what="Ready=True")
    assert ready["reason"] == "RouterAvailable"
    expected = {("Normal", "Compiled"), ("Normal", "ConfigChanged"), ("Normal", "RouterAvailable")}
    await eventually(lambda: _has(reasons(operator), expected), what=f"Events {expected}")
    assert not [r for r in await reasons(operator) if r[0] == "Warning"]


async def _has(got: Awaitable[list[tuple[str, str]]], expected: set[tuple[str, str]]) -> bool:
    return expected <= set(await got)


async def _is(cond_: Awaitable[dict[str, Any]], status: str) -> dict[str, Any] | None:
    c = await cond_
    return c if c.get("status") == status else None


async def test_routing_change_rolls_the_router_replica_change_does_not(operator: Cluster) -> None:
    await deploy_example(operator)
    first = pod_hash(await eventually(lambda: deployment(operator), what="deployment"))
    await operator.patch(GV, "llmroutes", NS, ROUTE, {"spec": {"failover": {"maxAttempts": 2}}})
    second = await eventually(lambda: _changed(deployment(operator), first), what="new config hash")
    assert '"maxAttempts":2' in (await config_map(operator) or {})["data"]["config.json"]
    await eventually(lambda: _hash_is(route_status(operator), second), what="status.configHash")

    await operator.patch(GV, "llmroutes", NS, ROUTE, {"spec": {"router": {"replicas": 1}}})
    dep = await eventually(lambda: _replicas(deployment(operator), 1), what="replicas=1")
    assert pod_hash(dep) == second  # no rollout for a replica change
    await eventually(lambda: _absent(operator.get("policy/v1", "poddisruptionbudgets", NS, "deepseek-router")),
                     what="PDB removed below 2 replicas")


async def _changed(dep: Awaitable[dict[str, Any] | None], old: str | None) -> str | None:
    new = pod_hash(await dep)
    return new if new and new != old else None


async def _hash_is(status: Awaitable[dict[str, Any]], expected: str) -> bool:
    return (await status).get("configHash") == expected


async def _replicas(dep: Awaitable[dict[str, Any] | None], n: int) -> dict[str, Any] | None:
    d = await dep
    return d if d and d["spec"].get("replicas") == n else None


async def _absent(obj: Awaitable[Any]) -> bool:
    return await obj is None


async def test_autoscaling_adds_hpa_and_leaves_replicas_to_it(operator: Cluster) -> None:
    route = example_doc("route")
    route["spec"]["router"] = {"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}
    await deploy_example(operator, route)
    hpa = await eventually(lambda: operator.get("autoscaling/v2", "horizontalpodautoscalers", NS, "deepseek-router"),
                           what="HPA")
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 5
    assert "replicas" not in (await deployment(operator) or {})["spec"]


OWNED_PLURALS = {"configmaps", "deployments", "services", "poddisruptionbudgets", "secrets",
                 "horizontalpodautoscalers"}
NO_RESYNC = 3600.0  # resync far beyond the tests' waits: what happens is the watch's doing


def reconciles() -> float:
    return REGISTRY.get_sample_value("llmroute_operator_reconciles_total",
                                     {"kind": "LLMRoute", "result": "success"}) or 0.0


async def test_steady_state_sends_no_request(operator: Cluster) -> None:
    await deploy_example(operator)
    await eventually(lambda: deployment(operator), what="deployment")
    await settled(operator)
    sent, done = len(operator.operator_requests()), reconciles()
    await asyncio.sleep(5 * RESYNC_S)  # about five resyncs per route
    assert reconciles() > done  # the resync did run: against the watch cache
    assert [(str(r.method), r.url.path) for r in operator.operator_requests()[sent:]] == []

    watches = [r for r in operator.operator_requests() if r.resource is not None
               and r.resource.plural in OWNED_PLURALS and r.params.get("watch") == "true"]
    assert {r.resource.plural for r in watches} == OWNED_PLURALS
    assert {r.params.get("labelSelector") for r in watches} == {"app.kubernetes.io/managed-by=llmroute-operator"}
    gets = [r for r in operator.operator_requests() if r.resource is not None and r.resource.plural in OWNED_PLURALS
            and str(r.method).upper().endswith("GET") and r.name]
    source = secret_doc()["metadata"]
    assert [r.url.path for r in gets] == [f"/api/v1/namespaces/{source['namespace']}/secrets/{source['name']}"]


async def test_delete_removes_owned_objects(operator: Cluster) -> None:
    await deploy_example(operator)
    await eventually(lambda: deployment(operator), what="deployment")
    await operator.delete(GV, "llmroutes", NS, ROUTE)
    for api_version, plural, name in OWNED:
        await eventually(lambda a=api_version, p=plural, n=name: _absent(operator.get(a, p, NS, n)),
                         what=f"{name} deleted")
    await eventually(lambda: _absent(operator.get(GV, "llmroutes", NS, ROUTE)), what="route gone (finalizer off)")


async def test_drift_is_repaired_by_the_watch(start_operator: StartOperator, cluster: Cluster) -> None:
    await start_operator(resync_seconds=NO_RESYNC)
    await deploy_example(cluster)
    dep = await eventually(lambda: deployment(cluster), what="deployment")
    cm = await config_map(cluster)
    await settled(cluster)
    deleted = time.monotonic()
    await cluster.delete("v1", "configmaps", NS, "deepseek-router-config")
    restored = await eventually(lambda: config_map(cluster), within=2.0, what="ConfigMap restored")
    assert restored["data"] == cm["data"]
    assert time.monotonic() - deleted < 2.0 < NO_RESYNC

    container = dep["spec"]["template"]["spec"]["containers"][0]
    tampered = {**container, "image": "evil/image:latest", "env": [*container["env"], {"name": "X", "value": "1"}]}
    await cluster.patch("apps/v1", "deployments", NS, "deepseek-router",
                        {"spec": {"replicas": 7, "template": {"spec": {"containers": [tampered]}}}})
    repaired = await eventually(lambda: _replicas(deployment(cluster), 2), within=2.0, what="Deployment repaired")
    assert repaired["spec"]["template"]["spec"]["containers"][0] == container


async def test_ready_follows_the_deployment_without_resync(start_operator: StartOperator, cluster: Cluster) -> None:
    await start_operator(resync_seconds=NO_RESYNC)
    await deploy_example(cluster)
    await eventually(lambda: _is(cond(cluster, "Ready"), "False"), what="Ready=False")
    await settled(cluster)
    sent = len(cluster.operator_requests())
    await router_available(cluster)
    ready = await eventually(lambda: _is(cond(cluster, "Ready"), "True"), within=2.0, what="Ready=True")
    assert ready["reason"] == "RouterAvailable"
    await settled(cluster)
    owned = [r for r in cluster.operator_requests()[sent:] if r.resource is not None
             and r.resource.plural in OWNED_PLURALS]
    assert owned == []  # the status came from the watch: no GET, and nothing to write to the Deployment


OWNED_KINDS = (("v1", "configmaps"), ("apps/v1", "deployments"), ("v1", "services"),
               ("policy/v1", "poddisruptionbudgets"), ("v1", "secrets"), ("autoscaling/v2", "horizontalpodautoscalers"),
               ("networking.k8s.io/v1", "networkpolicies"))


async def owned_snapshot(cluster: Cluster) -> dict[tuple[str, str, str], tuple[str, str, int, Any]]:
    """(plural, namespace, name) -> (uid, resourceVersion, generation, pod template) of every object of an owned
    kind: a duplicate adds a key, a re-creation changes a uid, any write changes a resourceVersion."""
    out = {}
    for api_version, plural in OWNED_KINDS:
        for obj in await cluster.list(api_version, plural):
            meta = obj["metadata"]
            out[(plural, meta.get("namespace", ""), meta["name"])] = (
                meta["uid"], meta["resourceVersion"], meta.get("generation", 0),
                obj.get("spec", {}).get("template"))
    return out


async def test_restart_resumes_without_duplicates_or_patches(start_operator: StartOperator, cluster: Cluster) -> None:
    """Two routes in place (one autoscaled), NetworkPolicies on, routers Ready; the operator restarted twice: not one
    write to what it owns, the same objects (uids, resourceVersions, generations, pod templates), so no rollout."""
    first = await start_operator(network_policies=True)
    await deploy_example(cluster)
    second = example_doc("route")
    second["metadata"]["name"] = "chat"
    second["spec"]["router"] = {"autoscaling": {"minReplicas": 1, "maxReplicas": 3}}
    await cluster.create(second, "llmroutes")
    for name in (ROUTE, "chat"):
        await eventually(lambda name=name: deployment(cluster, route=name), what=f"{name} deployment")
        await router_available(cluster, route=name)
        await eventually(lambda name=name: _is(cond(cluster, "Ready", name=name), "True"), what=f"{name} Ready",
                         within=8)
    await settled(cluster)
    before = await owned_snapshot(cluster)
    kinds = {plural for plural, _, _ in before}
    assert {"deployments", "configmaps", "services", "networkpolicies", "horizontalpodautoscalers"} <= kinds
    sent = len(writes(cluster))
    await stop(first)
    for _ in range(2):
        restarted = await start_operator(network_policies=True)
        await settled(cluster)
        await stop(restarted)
    owned = {plural for _, plural in OWNED_KINDS}
    new_writes = [(verb(r), r.resource.plural) for r in writes(cluster)[sent:] if r.resource.plural in owned]
    assert new_writes == []
    after = await owned_snapshot(cluster)
    assert after == before
    for name in (ROUTE, "chat"):
        assert (await cond(cluster, "Ready", name=name)).get("status") == "True"
    record("operator-restart", {"restarts": 2, "routes": 2, "ownedObjects": len(before),
                                "ownedWritesAfterRestart": len(new_writes),
                                "objectsChanged": sum(before[k] != after.get(k) for k in before),
                                "objectsAdded": len(set(after) - set(before))})
