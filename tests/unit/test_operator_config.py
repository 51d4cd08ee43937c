"""Operator settings from the environment, and the ClusterRole as a valid manifest."""

from __future__ import annotations

import kubernetes_validate
import pytest

from llmroute.controller.rbac import allows, cluster_role
from llmroute.controller.settings import DEFAULT_ROUTER_IMAGE, Settings

pytestmark = pytest.mark.unit


def test_settings_defaults_and_env() -> None:
    assert Settings.from_env({}) == Settings(router_image=DEFAULT_ROUTER_IMAGE, namespaces=(), log_level="INFO",
                                             probe_providers=True, metrics_port=8081, health_port=8080,
                                             demand_port=8082, demand_url=None)
    assert (Settings().metrics_port, Settings().health_port, Settings().demand_port) == (None, None, None)
    url = "http://llmroute-operator.llmroute-system.svc:8082/v1/demand"
    demand = Settings.from_env({"LLMROUTE_DEMAND_PORT": "9090", "LLMROUTE_DEMAND_URL": url})
    assert (demand.demand_port, demand.demand_url, demand.router.demand_url) == (9090, url, url)
    assert Settings.from_env({"LLMROUTE_DEMAND_PORT": "0"}).demand_port is None
    off = Settings.from_env({"LLMROUTE_PROBE_PROVIDERS": "false", "LLMROUTE_METRICS_PORT": "0",
                             "LLMROUTE_HEALTH_PORT": "9000"})
    assert (off.probe_providers, off.metrics_port, off.health_port) == (False, None, 9000)
    s = Settings.from_env({"LLMROUTE_ROUTER_IMAGE": "r:1", "LLMROUTE_NAMESPACES": "a, b,,",
                           "LLMROUTE_LOG_LEVEL": "debug", "LLMROUTE_RESYNC_SECONDS": "5",
                           "LLMROUTE_SECRET_TTL_SECONDS": "7"})
    assert (s.router_image, s.namespaces, s.log_level, s.resync_seconds) == ("r:1", ("a", "b"), "DEBUG", 5.0)
    assert (Settings.from_env({}).secret_ttl_seconds, s.secret_ttl_seconds) == (30.0, 7.0)
    assert s.router.image == "r:1"


@pytest.mark.parametrize("env", [{"LLMROUTE_LOG_LEVEL": "loud"}, {"LLMROUTE_RESYNC_SECONDS": "0"},
                                 {"LLMROUTE_METRICS_PORT": "70000"}, {"LLMROUTE_SECRET_TTL_SECONDS": "-1"},
                                 {"LLMROUTE_DEMAND_URL": "llmroute-operator:8082"}])
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"log level|resync|port|secret TTL|demand URL"):
        Settings.from_env(env)


@pytest.mark.parametrize("version", ["1.30", "1.35"])
def test_cluster_role_is_valid(version: str) -> None:
    kubernetes_validate.validate(cluster_role(), version, strict=True)


def test_cluster_role_is_least_privilege() -> None:
    role = cluster_role()
    assert allows(role, "", "secrets", "get")  # source keys: read by name (never watched)
    assert allows(role, "apps", "deployments", "watch")  # owned objects: the watch cache (label-selected)
    assert not allows(role, "", "secrets", "deletecollection") and not allows(role, "", "secrets", "update")
    assert allows(role, "", "pods", "list")  # pool pods, to read their vLLM /metrics: listed, nothing more
    assert not any(allows(role, "", "pods", v) for v in ("get", "watch", "create", "patch", "delete"))
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in role["rules"])
    assert not allows(role, "coordination.k8s.io", "leases", "create")  # standalone: no peering
