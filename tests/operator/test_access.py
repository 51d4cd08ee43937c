"""The real operator against the emulated API server for routes with ``spec.access``: the bearer-token Secret is
mounted (never copied into the config or the pod template, and rotating it rolls nothing), the cluster's service
account issuer keys (served by the emulator like an API server does) reach the router config as public keys, and
the router's NetworkPolicy admits only the route's callers and the scrapers, egress only to DNS and provider ports."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from llmroute.controller.issuer import JWKS_PATH
from llmroute.core.router_config import TOKENS_DIR
from tests.conftest import example_doc
from tests.operator.conftest import Cluster, StartOperator, eventually, settled
from tests.operator.helpers import NS, ROUTE, config_map, deploy_example, deployment, pod_hash
from tests.tokens import ClusterIssuer

pytestmark = pytest.mark.operator

TOKEN = "llmr-operator-test-token-5c1e"
ACCESS = {
    "bearerTokens": [{"secretRef": {"name": "chat-token"}}],
    "serviceAccounts": {},
    "allowedNamespaces": ["team-a"],
    "allowedServiceAccounts": ["team-b/ingest"],
}


def token_secret(value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "chat-token", "namespace": NS},
        "type": "Opaque",
        "data": {"token": base64.b64encode(value.encode()).decode()},
    }


def route_with_access(access: dict[str, Any] | None = ACCESS) -> dict[str, Any]:
    route = example_doc("route")
    if access is not None:
        route["spec"]["access"] = access
    return route


async def network_policy(cluster: Cluster, name: str = f"{ROUTE}-router") -> dict[str, Any] | None:
    result: dict[str, Any] | None = await cluster.get("networking.k8s.io/v1", "networkpolicies", NS, name)
    return result


def issuer_reads(cluster: Cluster) -> list[Any]:
    return [r for r in cluster.operator_requests() if "openid" in str(r.url)]


async def router_config(cluster: Cluster) -> dict[str, Any]:
    cm = await eventually(lambda: config_map(cluster), what="router ConfigMap")
    config: dict[str, Any] = json.loads(cm["data"]["config.json"])
    return config


@pytest.fixture()
def issuer(cluster: Cluster) -> ClusterIssuer:
    issuer = ClusterIssuer()
    cluster.emulator["get /.well-known/openid-configuration"] << {
        "issuer": issuer.url,
        "jwks_uri": issuer.url + JWKS_PATH,
    }
    cluster.emulator[f"get {JWKS_PATH}"] << issuer.jwks()
    return issuer


async def test_access_route_gets_issuer_keys_token_volume_and_network_policy(
    start_operator: StartOperator, cluster: Cluster, issuer: ClusterIssuer
) -> None:
    await start_operator(network_policies=True, metrics_namespaces=("monitoring",))
    await cluster.create(token_secret(TOKEN), "secrets")
    await deploy_example(cluster, route_with_access())

    config = await router_config(cluster)
    access = config["access"]
    assert access["serviceAccounts"] == {
        "audience": f"llmroute.io/{NS}/{ROUTE}",
        "issuer": issuer.url,
        "keys": issuer.jwks()["keys"],
    }
    assert access["bearerTokens"] == [
        {"secretName": "chat-token", "secretKey": "token", "file": f"{TOKENS_DIR}/chat-token/token"}
    ]
    assert access["allowedNamespaces"] == ["team-a"] and access["allowedServiceAccounts"] == ["team-b/ingest"]

    dep = await eventually(lambda: deployment(cluster), what="router Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False  # the router needs no API access
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"] == {
        "secretName": "chat-token",
        "optional": True,
        "defaultMode": 0o440,
        "items": [{"key": "token", "path": "token"}],
    }
    (container,) = pod["containers"]
    assert {"name": volume["name"], "mountPath": f"{TOKENS_DIR}/chat-token", "readOnly": True} in container[
        "volumeMounts"
    ]

    policy = await eventually(lambda: network_policy(cluster), what="NetworkPolicy")
    spec = policy["spec"]
    assert policy["metadata"]["ownerReferences"][0]["kind"] == "LLMRoute"
    assert spec["podSelector"] == dep["spec"]["selector"] and spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert ingress["from"] == [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "In",
                        "values": ["monitoring", "team-a", "team-b"],
                    }
                ]
            }
        }
    ]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in spec["egress"]] == [
        [(53, "TCP"), (53, "UDP")],
        [(443, "TCP"), (8000, "TCP")],
    ]  # hosted providers' https, the vLLM pool

    assert 0 < len(issuer_reads(cluster)) <= 4  # discovery + keys, cached (not once per reconcile)
    everything = json.dumps(
        [
            await cluster.list("v1", "configmaps"),
            await cluster.list("apps/v1", "deployments"),
            await cluster.list("networking.k8s.io/v1", "networkpolicies"),
        ]
    )
    assert TOKEN not in everything and base64.b64encode(TOKEN.encode()).decode() not in everything


async def test_rotating_the_token_secret_rolls_nothing(
    start_operator: StartOperator, cluster: Cluster, issuer: ClusterIssuer
) -> None:
    await start_operator(network_policies=True)
    await cluster.create(token_secret(TOKEN), "secrets")
    await deploy_example(cluster, route_with_access())
    dep = await eventually(lambda: deployment(cluster), what="router Deployment")
    await settled(cluster)
    before = pod_hash(dep), dep["spec"]["template"]
    await cluster.patch("v1", "secrets", NS, "chat-token", {"data": token_secret("rotated-token")["data"]})
    await settled(cluster)
    after = await deployment(cluster)
    assert after is not None and (pod_hash(after), after["spec"]["template"]) == before


async def test_route_without_access_is_open_to_every_namespace(start_operator: StartOperator, cluster: Cluster) -> None:
    await start_operator(network_policies=True, metrics_namespaces=("monitoring",))
    await deploy_example(cluster, route_with_access(None))
    policy = await eventually(lambda: network_policy(cluster), what="NetworkPolicy")
    assert policy["spec"]["ingress"] == [
        {"from": [{"namespaceSelector": {}}], "ports": [{"port": "http", "protocol": "TCP"}]}
    ]
    assert "access" not in await router_config(cluster)
    # no request for the issuer's keys: nothing needs them
    assert not issuer_reads(cluster)


async def test_network_policies_are_opt_in_and_removed_when_turned_off(
    start_operator: StartOperator, cluster: Cluster
) -> None:
    from tests.operator.conftest import stop

    task = await start_operator(network_policies=True)
    await deploy_example(cluster, route_with_access(None))
    await eventually(lambda: network_policy(cluster), what="NetworkPolicy")
    await stop(task)
    await start_operator(network_policies=False)

    async def gone() -> bool:
        return await network_policy(cluster) is None

    await eventually(gone, what="NetworkPolicy removed")
