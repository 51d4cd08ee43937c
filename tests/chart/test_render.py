"""``helm template`` output: every manifest valid for Kubernetes 1.30 and 1.35 (kubernetes-validate, strict), the
Prometheus Operator objects valid against :mod:`tests.chart.monitoring_schemas`, and the objects wired together:
probes and Services find their ports, monitors select what they should (the PodMonitors are checked against the router
and vLLM pool Deployments the operator really builds), and the generated files land in the chart unchanged."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from llmroute import __version__
from llmroute.api.llm_route import LLMRoute
from llmroute.api.model_pool import ModelPool
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.controller.rbac import cluster_role
from llmroute.core import pool_manifests
from llmroute.core.compile import compile_route
from llmroute.core.manifests import RouterSettings, desired_objects
from llmroute.core.pools import POOL_LABEL
from llmroute.observability import alerts
from tests.chart.conftest import CHART, KUBE_VERSIONS, NAMESPACE, VALUES_CASES, by_kind, helm_template, one
from tests.chart.monitoring_schemas import SCHEMAS
from tests.chart.toolchain import run, tool
from tests.conftest import example_doc

pytestmark = pytest.mark.chart
Rendered = dict[tuple[str, str], list[dict[str, Any]]]
CASES = [(case, v) for case in VALUES_CASES for v in KUBE_VERSIONS]
BASE_KINDS = {"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service",
              "Deployment", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget", "Role", "RoleBinding"}
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


@pytest.mark.parametrize(("case", "version"), CASES, ids=[f"{c}-k8s{v}" for c, v in CASES])
def test_every_manifest_is_valid(rendered: Rendered, case: str, version: str) -> None:
    docs = rendered[case, version]
    for doc in docs:
        name = f'{doc["kind"]} {doc["metadata"]["name"]}'
        if doc["kind"] in SCHEMAS:
            jsonschema.validate(doc, SCHEMAS[doc["kind"]])
        else:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name} is invalid for Kubernetes {version}: {exc.message} at {list(exc.path)}")


def test_defaults_render_the_base_objects_and_no_monitoring(rendered: Rendered) -> None:
    kinds = {d["kind"] for d in rendered["defaults", "1.35"]}
    assert kinds == BASE_KINDS
    assert len(by_kind(rendered["defaults", "1.35"], "CustomResourceDefinition")) == 3  # routes, policies, pools


def test_all_on_renders_the_prometheus_operator_objects(rendered: Rendered) -> None:
    assert {d["kind"] for d in rendered["all-on", "1.35"]} == BASE_KINDS | MONITORING_KINDS
    assert sorted(m["metadata"]["name"] for m in by_kind(rendered["all-on", "1.35"], "PodMonitor")) == [
        "llmroute-pools", "llmroute-routers"]


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_operator_deployment_is_hardened(rendered: Rendered) -> None:
    pod = one(rendered["defaults", "1.35"], "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"].items() >= {"runAsNonRoot": True, "runAsUser": 65532,
                                              "seccompProfile": {"type": "RuntimeDefault"}}.items()
    c = _container(rendered["defaults", "1.35"])
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]  # writable scratch on a read-only root
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_operator_runs_the_operator_with_env_from_values(rendered: Rendered) -> None:
    c = _container(rendered["defaults", "1.35"])
    assert c["image"] == f"ghcr.io/llmroute/llmroute:{__version__}"  # the chart's appVersion
    assert c["args"] == ["operator"]  # the image's ENTRYPOINT is `llmroute`
    env = _env(c)
    assert env["LLMROUTE_ROUTER_IMAGE"] == c["image"]  # routers default to the operator's own image
    assert env["LLMROUTE_NAMESPACES"] == ""
    assert (env["LLMROUTE_LOG_LEVEL"], env["LLMROUTE_RESYNC_SECONDS"]) == ("INFO", "60")
    assert (env["LLMROUTE_METRICS_PORT"], env["LLMROUTE_HEALTH_PORT"]) == ("8081", "8080")
    assert env["LLMROUTE_PROBE_PROVIDERS"] == "true"

    c = _container(rendered["all-on", "1.35"])
    env = _env(c)
    assert c["image"] == "registry.example.com/platform/llmroute:0.1.0-rc1"
    assert env["LLMROUTE_ROUTER_IMAGE"] == "registry.example.com/platform/llmroute-router:0.1.0"
    assert env["LLMROUTE_NAMESPACES"] == "apps,batch-jobs"
    assert (env["LLMROUTE_LOG_LEVEL"], env["LLMROUTE_RESYNC_SECONDS"]) == ("DEBUG", "30")
    assert env["LLMROUTE_METRICS_PORT"] == "9102"
    assert env["LLMROUTE_PROBE_PROVIDERS"] == "false"
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"


def test_scheduling_values_reach_the_pod(rendered: Rendered) -> None:
    pod = one(rendered["all-on", "1.35"], "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0] == {"key": "dedicated", "operator": "Equal", "value": "platform",
                                     "effect": "NoSchedule"}
    assert "podAntiAffinity" in pod["affinity"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["serviceAccountName"] == "llmroute-operator-sa"


def _service(docs: list[dict[str, Any]], port_name: str) -> dict[str, Any]:
    (svc,) = [s for s in by_kind(docs, "Service") if [p["name"] for p in s["spec"]["ports"]] == [port_name]]
    return svc


def test_probes_and_services_find_named_container_ports(rendered: Rendered) -> None:
    for case in VALUES_CASES:
        docs = rendered[case, "1.35"]
        c = _container(docs)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert c["livenessProbe"]["httpGet"]["port"] in ports and c["readinessProbe"]["httpGet"]["port"] in ports
        pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        for name in ("metrics", "demand"):
            svc = _service(docs, name)
            assert svc["spec"]["selector"].items() <= pod_labels.items()
            assert [p["targetPort"] for p in svc["spec"]["ports"]] == [name]
            assert svc["spec"]["ports"][0]["port"] == ports[name]


def test_routers_learn_the_demand_service_url(rendered: Rendered) -> None:
    docs = rendered["defaults", "1.35"]
    svc, env = _service(docs, "demand"), _env(_container(docs))
    port = svc["spec"]["ports"][0]["port"]
    assert env["LLMROUTE_DEMAND_PORT"] == str(port) == "8082"
    assert env["LLMROUTE_DEMAND_URL"] == f"http://{svc['metadata']['name']}.{NAMESPACE}.svc:{port}/v1/demand"


def test_only_routers_may_reach_the_demand_endpoint(rendered: Rendered, route: LLMRoute,
                                                    policy: ProviderPolicy) -> None:
    docs = rendered["defaults", "1.35"]
    netpol = one(docs, "NetworkPolicy")["spec"]
    operator_pod = one(docs, "Deployment")["spec"]["template"]
    assert netpol["podSelector"]["matchLabels"].items() <= operator_pod["metadata"]["labels"].items()
    assert netpol["policyTypes"] == ["Ingress", "Egress"]  # egress: tests/chart/test_networkpolicies.py
    named = {p["name"] for p in _container(docs)["ports"]}
    rules = {tuple(p["port"] for p in rule["ports"]): rule.get("from") for rule in netpol["ingress"]}
    assert {port for ports in rules for port in ports} == named  # every container port is named by a rule
    (sources,) = rules[("demand",)]
    desired = desired_objects(route, compile_route(route, policy), RouterSettings(image="llmroute:test"))
    router_pod = next(o for o in desired.objects if o["kind"] == "Deployment")["spec"]["template"]
    assert sources["namespaceSelector"] == {}  # routers live in the routes' namespaces
    assert sources["podSelector"]["matchLabels"].items() <= router_pod["metadata"]["labels"].items()
    assert sources["podSelector"]["matchLabels"].items() > {"app.kubernetes.io/managed-by": "llmroute-operator"}.items()
    assert rules[("health", "metrics")] is None  # open to the kubelet and the scrapers
    off = helm_template(None, "1.35", "--set", "networkPolicy.enabled=false")
    assert not by_kind(off, "NetworkPolicy")


def test_cluster_role_is_generated_from_the_operator_rbac(rendered: Rendered) -> None:
    docs = rendered["defaults", "1.35"]
    assert one(docs, "ClusterRole")["rules"] == cluster_role()["rules"]
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(docs, "ClusterRole")["metadata"]["name"]
    sa = one(docs, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": NAMESPACE}]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa["name"]


def test_service_monitor_selects_the_metrics_service(rendered: Rendered) -> None:
    docs = rendered["all-on", "1.35"]
    monitor, svc = one(docs, "ServiceMonitor"), _service(docs, "metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in svc["spec"]["ports"]]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_service_monitor_keeps_the_pool_namespace_of_operator_series(rendered: Rendered) -> None:
    # llmroute_pool_*{namespace, pool}: the dashboard and alerts read namespace as the pool's, not the operator's
    (endpoint,) = one(rendered["all-on", "1.35"], "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True


def _pod_monitor(docs: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    (monitor,) = [m for m in by_kind(docs, "PodMonitor") if m["metadata"]["name"].endswith(suffix)]
    return monitor


def _label_meta(label: str) -> str:
    """The Kubernetes service discovery's name for a pod label (``__meta_kubernetes_pod_label_<sanitised>``)."""
    return "__meta_kubernetes_pod_label_" + label.replace(".", "_").replace("/", "_").replace("-", "_")


def _check_pod_monitor(monitor: dict[str, Any], pod: dict[str, Any], namespaces: dict[str, Any],
                       source_label: str, target_label: str) -> None:
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == namespaces
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert endpoint["path"] == "/metrics"
    (relabel,) = endpoint["relabelings"]
    assert relabel == {"sourceLabels": [_label_meta(source_label)], "targetLabel": target_label, "action": "replace"}
    assert source_label in pod["metadata"]["labels"]


MONITORED_CASES = (("all-on", {"matchNames": ["apps"]}),
                   ("examples/helm/values-production.yaml", {"matchNames": ["apps", "data-science"]}))


def test_pod_monitor_selects_the_routers_the_operator_creates(rendered: Rendered, route: LLMRoute,
                                                               policy: ProviderPolicy) -> None:
    desired = desired_objects(route, compile_route(route, policy), RouterSettings(image="llmroute:test"))
    router = next(o for o in desired.objects if o["kind"] == "Deployment")["spec"]["template"]
    for case, namespaces in MONITORED_CASES:
        # llmroute_route: the label the dashboard and alerts group by
        _check_pod_monitor(_pod_monitor(rendered[case, "1.35"], "-routers"), router, namespaces,
                           "app.kubernetes.io/instance", "llmroute_route")


def test_pool_pod_monitor_selects_the_vllm_pods_the_operator_creates(rendered: Rendered) -> None:
    pool = ModelPool.model_validate(example_doc("pool"))
    deployment = pool_manifests.deployment(pool, 1)["spec"]["template"]
    assert deployment["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    for case, namespaces in MONITORED_CASES:
        # pool: the ModelPool's name, as on the operator's llmroute_pool_* series
        _check_pod_monitor(_pod_monitor(rendered[case, "1.35"], "-pools"), deployment, namespaces,
                           POOL_LABEL, "pool")
        assert deployment["metadata"]["labels"][POOL_LABEL] == pool.metadata.name


def test_pod_monitors_watch_every_namespace_by_default() -> None:
    docs = helm_template(None, "1.35", "--set", "podMonitor.enabled=true")
    assert [m["spec"]["namespaceSelector"] for m in by_kind(docs, "PodMonitor")] == [{"any": True}] * 2


def test_the_pool_pod_monitor_can_be_switched_off() -> None:
    docs = helm_template(None, "1.35", "--set", "podMonitor.enabled=true", "--set", "podMonitor.pools.enabled=false")
    assert [m["metadata"]["name"] for m in by_kind(docs, "PodMonitor")] == ["llmroute-routers"]
    assert not by_kind(helm_template(None, "1.35", "--set", "podMonitor.pools.enabled=true"), "PodMonitor")


def test_prometheus_rule_holds_the_generated_alerts(rendered: Rendered) -> None:
    rule = one(rendered["all-on", "1.35"], "PrometheusRule")
    assert rule["spec"] == alerts.rule_groups()


def test_dashboard_config_map_is_labelled_for_the_grafana_sidecar(rendered: Rendered) -> None:
    for case, namespace in (("defaults", NAMESPACE), ("all-on", "monitoring")):
        cm = one(rendered[case, "1.35"], "ConfigMap")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == namespace
        dashboard = json.loads(cm["data"]["llmroute.json"])
        assert dashboard == json.loads((CHART / "files" / "dashboard.json").read_text())
    assert one(rendered["all-on", "1.35"], "ConfigMap")["metadata"]["annotations"] == {"grafana_folder": "LLM"}


def test_kubernetes_older_than_1_28_is_refused() -> None:
    proc = run([tool("helm"), "template", "r", str(CHART), "--kube-version", "1.27.0"])
    assert proc.returncode != 0
    assert "chart requires kubeVersion: >=1.28.0-0 which is incompatible with Kubernetes v1.27.0" in proc.stderr


def test_metrics_can_be_switched_off() -> None:
    docs = helm_template(None, "1.35", "--set", "metrics.enabled=false", "--set", "serviceMonitor.enabled=true")
    assert [_service(docs, "demand")] == by_kind(docs, "Service") and not by_kind(docs, "ServiceMonitor")
    c = _container(docs)
    assert _env(c)["LLMROUTE_METRICS_PORT"] == "0"
    assert [p["name"] for p in c["ports"]] == ["health", "demand"]
