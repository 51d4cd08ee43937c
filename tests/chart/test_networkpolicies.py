"""The chart's NetworkPolicies (issue #12): the operator pod's egress (DNS, the API server, providers, vLLM pool pods)
and the switches that make the operator give every router its own NetworkPolicy - all opt-out with values, valid for
Kubernetes 1.30 and 1.35 strict, and read by the operator's settings exactly as rendered."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from llmroute.controller.settings import Settings
from llmroute.core import pool_manifests
from tests.chart.conftest import KUBE_VERSIONS, by_kind, helm_template, one

pytestmark = pytest.mark.chart
Rendered = dict[tuple[str, str], list[dict[str, Any]]]


def _operator_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    downward = {"POD_NAMESPACE": "llmroute-system", "POD_NAME": "operator-0"}  # what the kubelet fills in
    return {**downward, **{e["name"]: e["value"] for e in container["env"] if "value" in e}}


def _egress(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = one(docs, "NetworkPolicy")["spec"]["egress"]
    return rules


def _ports(rule: dict[str, Any]) -> list[tuple[int, str]]:
    return [(p["port"], p["protocol"]) for p in rule["ports"]]


def test_operator_egress_by_default(rendered: Rendered) -> None:
    netpol = one(rendered["defaults", "1.35"], "NetworkPolicy")["spec"]
    assert netpol["policyTypes"] == ["Ingress", "Egress"]
    dns, api, providers, pools = netpol["egress"]
    assert _ports(dns) == [(53, "UDP"), (53, "TCP")] and "to" not in dns
    assert _ports(api) == [(443, "TCP"), (6443, "TCP")] and "to" not in api
    assert _ports(providers) == [(443, "TCP")]
    assert _ports(pools) == [(8000, "TCP")]
    selector = pools["to"][0]["podSelector"]["matchLabels"]
    assert selector.items() <= pool_manifests.labels("pool-a").items()  # the vLLM pods the operator creates
    assert pools["to"][0]["namespaceSelector"] == {}  # pools live in their owners' namespaces


def test_api_server_cidrs_narrow_its_rule() -> None:
    for version in KUBE_VERSIONS:
        docs = helm_template(
            None,
            version,
            "--set",
            "networkPolicy.egress.apiServerCIDRs={10.96.0.1/32}",
            "--set",
            "networkPolicy.egress.providerPorts=null",
        )
        netpol = one(docs, "NetworkPolicy")
        kubernetes_validate.validate(netpol, version, strict=True)
        _dns, api, pools = netpol["spec"]["egress"]
        assert api["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}] and _ports(pools) == [(8000, "TCP")]


def test_everything_is_opt_out() -> None:
    docs = helm_template(
        None, "1.35", "--set", "networkPolicy.egress.enabled=false", "--set", "networkPolicy.routers.enabled=false"
    )
    netpol = one(docs, "NetworkPolicy")["spec"]
    assert netpol["policyTypes"] == ["Ingress"] and "egress" not in netpol
    assert Settings.from_env(_operator_env(docs)).router.network_policies is False
    assert not by_kind(helm_template(None, "1.35", "--set", "networkPolicy.enabled=false"), "NetworkPolicy")


def test_operator_reads_the_router_switches_as_rendered(rendered: Rendered) -> None:
    defaults = Settings.from_env(_operator_env(rendered["defaults", "1.35"])).router
    assert defaults.network_policies is True and defaults.metrics_namespaces == ()
    docs = helm_template(None, "1.35", "--set", "networkPolicy.routers.metricsNamespaces={monitoring,ops}")
    assert Settings.from_env(_operator_env(docs)).router.metrics_namespaces == ("monitoring", "ops")
