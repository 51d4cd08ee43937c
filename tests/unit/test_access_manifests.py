"""core.manifests for ``spec.access`` and NetworkPolicies: token Secrets mounted (names and keys only), the router's
NetworkPolicy (callers' namespaces, scrapers, DNS and provider ports) valid for Kubernetes 1.30 and 1.35 strict;
the operator's settings that switch them on."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from llmroute.api.llm_route import LLMRoute
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.controller.settings import Settings
from llmroute.core.compile import compile_route
from llmroute.core.manifests import Desired, RouterSettings, desired_objects, egress_ports
from llmroute.core.router_config import TOKENS_DIR
from tests.conftest import example_doc

pytestmark = pytest.mark.unit

SETTINGS = RouterSettings(
    image="registry.example/llmroute:1",
    network_policies=True,
    metrics_namespaces=("monitoring",),
    demand_url="http://llmroute-operator.llmroute:8082",
)
ACCESS = {
    "bearerTokens": [
        {"secretRef": {"name": "chat-token"}},
        {"secretRef": {"name": "batch", "key": "a"}},
        {"secretRef": {"name": "batch", "key": "b"}},
    ],
    "serviceAccounts": {},
    "allowedNamespaces": ["team-a"],
    "allowedServiceAccounts": ["team-b/*"],
}


def build(
    access: dict[str, Any] | None, settings: RouterSettings = SETTINGS, endpoints: dict[str, str] | None = None
) -> Desired:
    route_doc, policy_doc = example_doc("route"), example_doc("policy")
    route_doc["metadata"]["uid"] = "uid-1"
    if access is not None:
        route_doc["spec"]["access"] = access
    for p in policy_doc["spec"]["providers"]:
        if p["name"] in (endpoints or {}):
            p["endpoint"] = (endpoints or {})[p["name"]]
    route, policy = LLMRoute.model_validate(route_doc), ProviderPolicy.model_validate(policy_doc)
    return desired_objects(route, compile_route(route, policy), settings)


def kind(d: Desired, k: str) -> dict[str, Any]:
    return next(o for o in d.objects if o["kind"] == k)


@pytest.mark.parametrize("version", ["1.30", "1.35"])
@pytest.mark.parametrize("access", [ACCESS, None], ids=["access", "open"])
def test_objects_are_valid(version: str, access: dict[str, Any] | None) -> None:
    for obj in build(access).objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_token_secrets_are_mounted_by_name_and_key() -> None:
    pod = kind(build(ACCESS), "Deployment")["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"]: v for v in pod["volumes"] if "secret" in v}
    assert {n: [i["key"] for i in v["secret"]["items"]] for n, v in secrets.items()} == {
        "chat-token": ["token"],
        "batch": ["a", "b"],
    }
    assert all(v["secret"]["optional"] is True for v in secrets.values())
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {mounts[v["name"]] for v in secrets.values()} == {f"{TOKENS_DIR}/chat-token", f"{TOKENS_DIR}/batch"}
    assert pod["automountServiceAccountToken"] is False
    open_pod = kind(build(None), "Deployment")["spec"]["template"]["spec"]
    assert not [v for v in open_pod["volumes"] if "secret" in v]


def test_network_policy_admits_callers_and_scrapers_only() -> None:
    (rule,) = kind(build(ACCESS), "NetworkPolicy")["spec"]["ingress"]
    (selector,) = rule["from"]
    assert selector["namespaceSelector"]["matchExpressions"][0]["values"] == ["monitoring", "team-a", "team-b"]
    own = {**ACCESS, "allowedNamespaces": [], "allowedServiceAccounts": []}
    (rule,) = kind(build(own), "NetworkPolicy")["spec"]["ingress"]
    assert rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["apps", "monitoring"]
    tokens_only = {"bearerTokens": ACCESS["bearerTokens"]}
    for open_route in (None, tokens_only):
        (rule,) = kind(build(open_route), "NetworkPolicy")["spec"]["ingress"]
        assert rule["from"] == [{"namespaceSelector": {}}]


def test_egress_is_dns_and_provider_ports() -> None:
    d = build(None, endpoints={"together": "http://together.internal:8081/v1", "fireworks": "http://fw.internal/v1"})
    dns, providers = kind(d, "NetworkPolicy")["spec"]["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    # deepseek/bedrock https, fireworks plain http, together's explicit port, the vLLM pool, the demand endpoint
    assert [p["port"] for p in providers["ports"]] == [80, 443, 8000, 8081, 8082]
    assert "to" not in providers  # provider hosts resolve at run time: by port, not by address


def test_network_policy_only_when_enabled() -> None:
    d = build(ACCESS, RouterSettings(image="registry.example/llmroute:1"))
    assert "NetworkPolicy" not in {o["kind"] for o in d.objects}
    assert "NetworkPolicy" in {k.kind for k in d.absent}


def test_egress_ports_of_the_example() -> None:
    assert egress_ports(
        compile_route(
            LLMRoute.model_validate(example_doc("route")), ProviderPolicy.model_validate(example_doc("policy"))
        ),
        RouterSettings(image="x"),
    ) == [443, 8000]


def test_settings_from_env() -> None:
    s = Settings.from_env({"LLMROUTE_NETWORK_POLICIES": "true", "LLMROUTE_METRICS_NAMESPACES": " monitoring, ops ,"})
    assert s.router.network_policies is True and s.router.metrics_namespaces == ("monitoring", "ops")
    assert Settings.from_env({}).router.network_policies is False
