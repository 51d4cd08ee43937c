"""The operator's demand endpoint is published on a headless Service, so routers reach every replica: the name
routers are given resolves to one address per ready operator pod (no ClusterIP balancing between the leader and the
standby), on the container's named ``demand`` port, and it is a name no ClusterIP Service of an earlier chart used
(``clusterIP`` cannot change to ``None`` in place, so an upgrade would fail)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.chart.conftest import NAMESPACE, VALUES_CASES, by_kind, one

pytestmark = pytest.mark.chart
Rendered = dict[tuple[str, str], list[dict[str, Any]]]


def _demand_url(docs: list[dict[str, Any]]) -> str:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    (url,) = [e["value"] for e in container["env"] if e["name"] == "LLMROUTE_DEMAND_URL"]
    return str(url)


@pytest.mark.parametrize("case", list(VALUES_CASES))
def test_routers_are_given_a_headless_service_of_the_operator_pods(rendered: Rendered, case: str) -> None:
    docs = rendered[case, "1.35"]
    url = urlsplit(_demand_url(docs))
    name, namespace, suffix = str(url.hostname).split(".")
    (svc,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == name]
    operator = one(docs, "Deployment")
    pod = operator["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert (namespace, suffix, svc["metadata"]["namespace"]) == (NAMESPACE, "svc", NAMESPACE)
    assert svc["spec"]["clusterIP"] == "None"
    assert not svc["spec"].get("publishNotReadyAddresses")  # only Ready pods: a starting one would refuse
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = svc["spec"]["ports"]
    demand_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "demand")
    # headless: no port mapping, clients connect to the pod's own port, so the URL's port must be the container's
    assert port["targetPort"] == "demand" and url.port == port["port"] == demand_port
    assert operator["spec"]["replicas"] >= 2 or case != "defaults"


def test_the_headless_service_does_not_reuse_the_earlier_clusterip_services_name(rendered: Rendered) -> None:
    docs = rendered["defaults", "1.35"]
    earlier = one(docs, "Deployment")["metadata"]["name"]  # charts up to the HA follow-ups named it so
    assert earlier not in {s["metadata"]["name"] for s in by_kind(docs, "Service")}
    assert urlsplit(_demand_url(docs)).hostname == f"{earlier}-demand.{NAMESPACE}.svc"
