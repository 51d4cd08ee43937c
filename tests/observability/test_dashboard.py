"""The generated dashboard as a document: structure Grafana needs (unique panel ids, a datasource variable used by
every panel and query, the namespace and route variables), the panels the issue asks for, every query carrying the
route selector, only metric names the router and operator export, and every expression valid PromQL (promtool, with
Grafana's variables substituted)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from llmroute.api.provider_policy import ProviderState
from llmroute.controller import metrics as operator_metrics
from llmroute.observability.dashboard import PROVIDER_COLORS, PROVIDER_STATES, SELECTOR, panel_queries
from llmroute.router import audit, auth  # noqa: F401  (their metrics join the router's registry on import)
from llmroute.router import metrics as router_metrics
from tests.chart.toolchain import run, tool
from tests.observability.conftest import dashboard_doc

pytestmark = pytest.mark.observability
METRIC = re.compile(r"\b((?:llmroute|process)_[a-z_]+)\b(?!\s*[=!])")  # a label name is followed by = or !=
SUBSTITUTIONS = {"$namespace": "apps", "$route": "chat", "$__rate_interval": "1m"}
REQUIRED_PANELS = ("Request rate by provider", "Upstream error ratio by provider", "Traffic share by jurisdiction",
                   "Traffic by data class and jurisdiction", "Residency denials", "Escalations by class and type",
                   "PII findings by type and action", "Detection time p50/p95/p99",
                   "Blocked for PII (400 pii_blocked) by type", "Failovers by reason",
                   "Circuit state per backend", "Time to first token p50/p95/p99 by provider",
                   "Request duration p50/p95/p99 by provider", "Provider health (operator probes)",
                   "Pool replicas: desired vs ready (operator)", "Requests held for pools", "Held requests by outcome",
                   "Pool scale changes by reason (operator)", "Pool pods ready, as routers see them",
                   "Pool picks by basis", "In-flight requests by pod", "Router CPU by pod",
                   "Router memory (RSS) by pod", "Active operator replicas", "Access denials by reason",
                   "Audit lines written and dropped")


def substitute(expr: str) -> str:
    for var, value in SUBSTITUTIONS.items():
        expr = expr.replace(var, value)
    return expr


def exported_names(*registries: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for registry in registries or (router_metrics.REGISTRY, operator_metrics.REGISTRY):
        for family in registry.collect():
            names |= {s.name for s in family.samples} | {family.name}
            if family.type == "counter":
                names.add(f"{family.name}_total")
            if family.type == "histogram":
                names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
    return names


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return dashboard_doc()


def test_panels_have_unique_ids_and_use_the_datasource_variable(doc: dict[str, Any]) -> None:
    panels = doc["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and 0 not in ids
    for panel in (p for p in panels if p["type"] != "row"):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
        assert panel["gridPos"]["w"] > 0 and panel["gridPos"]["h"] > 0


def test_variables_for_datasource_namespace_and_route(doc: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "route"}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "route"):
        assert variables[name]["type"] == "query" and variables[name]["multi"] and variables[name]["includeAll"]
    assert "llmroute_route" in variables["route"]["query"] and "$namespace" in variables["route"]["query"]


def test_the_panels_a_deepseek_incident_needs(doc: dict[str, Any]) -> None:
    titles = {p["title"] for p in doc["panels"]}
    assert set(REQUIRED_PANELS) <= titles
    assert {p["title"] for p in doc["panels"] if p["type"] == "state-timeline"} == {
        "Circuit state per backend", "Provider health (operator probes)"}


def test_router_queries_carry_the_route_selector_and_known_metric_names(doc: dict[str, Any]) -> None:
    known = exported_names()
    operator_only = exported_names(operator_metrics.REGISTRY) - exported_names(router_metrics.REGISTRY)
    for title, expr in panel_queries(doc):
        metrics = set(METRIC.findall(expr))
        assert metrics, f"{title}: no metric in {expr}"
        assert metrics <= known, f"{title}: unknown metrics {metrics - known}"
        if not metrics & operator_only:  # each router selector starts with SELECTOR
            assert expr.count("{" + SELECTOR) == len(re.findall(METRIC.pattern + r"\{", expr)), title


def test_provider_health_maps_every_provider_state() -> None:
    assert sorted(PROVIDER_STATES) == sorted(ProviderState) and len(PROVIDER_COLORS) == len(PROVIDER_STATES)
    assert PROVIDER_STATES[:2] == ("Healthy", "Cold") and PROVIDER_STATES[-1] == "Down"  # Cold is not an outage


def test_every_query_is_valid_promql(doc: dict[str, Any], tmp_path: Path) -> None:
    rules = [{"record": f"dashboard:query_{i}", "expr": substitute(expr)}
             for i, (_, expr) in enumerate(panel_queries(doc))]
    path = tmp_path / "dashboard_queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = run([tool("promtool"), "check", "rules", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
