"""Provider keys never leave Secrets: not in ConfigMaps, status, Events or the Deployment; copies stay Secrets. A
rotated key rolls the router through the ``llmroute.io/keys-hash`` pod-template annotation, nothing else."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from llmroute.core.manifests import value_digest
from tests.conftest import example_doc
from tests.operator.conftest import (
    RESYNC_S,
    Cluster,
    StartOperator,
    eventually,
    secret_doc,
    secret_values,
    settled,
)
from tests.operator.helpers import (
    GV,
    HASH,
    KEYS_HASH,
    NS,
    deploy_example,
    deployment,
    key_needles,
    leaked,
    pod_annotations,
    router_available,
)

pytestmark = pytest.mark.operator


async def test_no_secret_value_outside_secrets(operator: Cluster) -> None:
    await deploy_example(operator)
    await eventually(lambda: deployment(operator), what="deployment")
    await router_available(operator)
    await settled(operator)
    needles = key_needles(secret_values().values())

    places = {
        "configmaps": await operator.list("v1", "configmaps"),
        "events": await operator.list("v1", "events"),
        "deployments": await operator.list("apps/v1", "deployments"),
        "services": await operator.list("v1", "services"),
        "status": [o.get("status", {}) for o in await operator.list(GV, "llmroutes")
                   + await operator.list(GV, "providerpolicies")],
        "annotations": [o["metadata"].get("annotations", {}) for o in await operator.list(GV, "llmroutes")],
    }
    assert places["configmaps"] and places["events"] and places["status"]
    for where, objs in places.items():
        assert not leaked(objs, needles), f"a provider key leaked into {where}"

    copy = await operator.get("v1", "secrets", NS, "deepseek-provider-keys")
    assert set(copy["data"]) == {"LLMROUTE_KEY_DEEPSEEK", "LLMROUTE_KEY_TOGETHER", "LLMROUTE_KEY_FIREWORKS",
                                 "LLMROUTE_KEY_BEDROCK"}
    assert base64.b64decode(copy["data"]["LLMROUTE_KEY_DEEPSEEK"]).decode() == secret_values()["deepseek"]
    env = (await deployment(operator) or {})["spec"]["template"]["spec"]["containers"][0]["env"]
    assert all(set(e) == {"name", "valueFrom"} for e in env)


SECRET_TTL_S = 2 * RESYNC_S  # the operator re-reads key Secrets this often (30 s by default)


def _keys_in_route_namespace(policy: dict[str, Any]) -> None:
    for p in policy["spec"]["providers"]:
        if "credentials" in p:
            p["credentials"]["secretRef"].pop("namespace")


@pytest.mark.parametrize("local", [False, True], ids=["copied-key", "key-in-route-namespace"])
async def test_a_rotated_key_rolls_the_router_through_keys_hash(start_operator: StartOperator, cluster: Cluster,
                                                                local: bool) -> None:
    await start_operator(secret_ttl_seconds=SECRET_TTL_S)
    source, policy = secret_doc(), example_doc("policy")
    if local:
        source["metadata"]["namespace"] = NS
        _keys_in_route_namespace(policy)
    await cluster.create(source, "secrets")
    await cluster.create(policy, "providerpolicies")
    await cluster.create(example_doc("route"), "llmroutes")
    await eventually(lambda: deployment(cluster), what="deployment")
    await settled(cluster)
    before = pod_annotations(await deployment(cluster))
    assert set(before) == {HASH, KEYS_HASH}

    await settled(cluster)  # re-reads of an unchanged Secret roll nothing
    assert pod_annotations(await deployment(cluster)) == before

    rotated = "rotated-demo-key-deepseek-0123456789"
    await cluster.patch("v1", "secrets", source["metadata"]["namespace"], source["metadata"]["name"],
                        {"data": {"deepseek": base64.b64encode(rotated.encode()).decode()}})
    after = await eventually(lambda: _keys_hash_changed(deployment(cluster), before[KEYS_HASH]), within=5.0,
                             what="keys-hash changed")
    assert after[HASH] == before[HASH]  # the routing config did not change
    await settled(cluster)  # one rollout, then quiet
    dep = await deployment(cluster)
    assert pod_annotations(dep) == after
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    if local:
        assert env["LLMROUTE_KEY_DEEPSEEK"]["name"] == source["metadata"]["name"]
        assert await cluster.get("v1", "secrets", NS, "deepseek-provider-keys") is None
    else:
        copy = await cluster.get("v1", "secrets", NS, "deepseek-provider-keys")
        assert base64.b64decode(copy["data"]["LLMROUTE_KEY_DEEPSEEK"]).decode() == rotated
    needles = key_needles([*secret_values().values(), rotated])
    needles += [value_digest(n).removeprefix("sha256:") for n in needles]  # nor the key's unsalted digest
    assert not leaked(dep, needles), "a provider key leaked into the Deployment"
    assert not leaked(await cluster.list("apps/v1", "deployments"), needles)


async def _keys_hash_changed(dep: Any, old: str) -> dict[str, str] | None:
    annotations = pod_annotations(await dep)
    return annotations if annotations.get(KEYS_HASH) not in (None, old) else None
