"""Every dashboard query and every alert expression, evaluated by a real Prometheus that scraped a live router (and
the operator's metrics endpoint) while the DeepSeek outage scenario of ``conftest.py`` played.

How the evaluation is made honest:

* Dashboard queries run exactly as Grafana would send them, with ``$namespace``/``$route`` set to the scraped route
  (``apps``/``chat``, the labels the chart's PodMonitor attaches) and ``$__rate_interval`` to ``1m``. Each must return
  at least one series with a finite value (a ratio that is NaN everywhere, e.g. 0/0, does not count).
* Alert rules are conditions, and a condition may rightly be false. So for every alert its *signal* (the expression
  before the comparison, :attr:`Alert.signal`) must return finite series: that proves the metric names, labels,
  label values and joins are right. On top, the alerts this scenario really provokes (:data:`FIRING`) must have
  their full expression return series; ``for:`` durations are not waited out (promtool's unit tests cover them).
  Prometheus also evaluates the loaded rule file every second; every rule must report health ``ok``.
* Grafana's variable queries (``label_values(...)``) run through the labels API and must offer the scraped values.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from llmroute.core import access
from llmroute.observability.alerts import Alert, all_alerts
from llmroute.observability.dashboard import PROVIDER_STATES, panel_queries
from tests.observability.conftest import (
    ECHO,
    EMAIL,
    GPU_POOL,
    NAMESPACE,
    POLICY,
    ROUTE,
    SPARE_POOL,
    SSN,
    Live,
    dashboard_doc,
)
from tests.observability.test_dashboard import substitute

pytestmark = pytest.mark.observability
QUERIES = panel_queries(dashboard_doc())
FIRING = {"LLMRouteProviderDown", "LLMRouteProviderMisconfigured", "LLMRouteDeepSeekCircuitOpen",
          "LLMRouteFailoverRateHigh", "LLMRouteResidencyDenialsSpike", "LLMRouteNoHealthyBackend",
          "LLMRouteRouter5xxRatio", "LLMRouteEscalationSpike", "LLMRoutePIIBlocked", "LLMRoutePoolColdStartGivingUp",
          "LLMRoutePoolHeldRequests", "LLMRoutePoolMetricsUnreadable", "LLMRoutePoolReplicasNotReady",
          "LLMRouteOperatorReconcileErrors"}
"""Alerts whose condition the scenario makes true. Quiet: LLMRouteCircuitOpen (for non-DeepSeek backends),
LLMRouteDetectionSlow, the leadership alerts (the scraped operator is the one active replica), LLMRouteAccessDenialsHigh
(the route has no ``spec.access``: its denial series are the pre-created zeros) and LLMRouteAuditLinesDropped (no audit
line is dropped)."""


GPU, SPARE = f"{NAMESPACE}/{GPU_POOL}", f"{NAMESPACE}/{SPARE_POOL}"
"""The pools as routers name them (``pool`` on router series)."""


def finite(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in result if math.isfinite(float(r["value"][1]))]


def value_of(live: Live, expr: str) -> dict[str, float]:
    """``{"a/b": value}`` for each series ``{x="a", y="b"}`` of an instant query (label values in name order)."""
    return {"/".join(v for _, v in sorted(r["metric"].items())): float(r["value"][1])
            for r in live.prometheus.query(expr)}


@pytest.mark.parametrize(("title", "expr"), QUERIES, ids=[f"{i:02d}-{t}" for i, (t, _) in enumerate(QUERIES)])
def test_dashboard_query_returns_data(live: Live, title: str, expr: str) -> None:
    result = live.prometheus.query(substitute(expr))
    assert finite(result), f"{title}: {substitute(expr)} returned {result}"


def test_dashboard_variables_offer_the_scraped_route(live: Live) -> None:
    variables = {v["name"]: v["query"] for v in dashboard_doc()["templating"]["list"] if v["type"] == "query"}
    expected = {"namespace": NAMESPACE, "route": ROUTE}
    for name, query in variables.items():
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
        assert match, query
        values = live.prometheus.api(f"label/{match.group(2)}/values", **{"match[]": substitute(match.group(1))})
        assert expected[name] in values, f"{name}: {values}"


@pytest.mark.parametrize("alert", all_alerts(), ids=lambda a: a.name)
def test_alert_signal_returns_data(live: Live, alert: Alert) -> None:
    result = live.prometheus.query(alert.signal)
    assert finite(result), f"{alert.name}: {alert.signal} returned {result}"


@pytest.mark.parametrize("alert", [a for a in all_alerts() if a.name in FIRING], ids=lambda a: a.name)
def test_alert_condition_holds_in_the_outage(live: Live, alert: Alert) -> None:
    assert live.prometheus.query(alert.expr), f"{alert.name} is false; signal: {value_of(live, alert.signal)}"


def test_every_loaded_rule_evaluates_cleanly(live: Live) -> None:
    rules = [r for g in live.prometheus.api("rules")["groups"] for r in g["rules"]]
    assert {r["name"] for r in rules} == {a.name for a in all_alerts()}
    assert {r["name"]: r["health"] for r in rules if r["health"] != "ok"} == {}
    assert {r["name"] for r in rules if r["state"] == "pending"} >= FIRING - {"LLMRouteResidencyDenialsSpike"}


def test_the_outage_is_visible_as_the_dashboard_shows_it(live: Live) -> None:
    circuits = value_of(live, next(e for t, e in QUERIES if t == "Circuit state per backend").replace(
        "$namespace", NAMESPACE).replace("$route", ROUTE))
    assert circuits["deepseek-chat/deepseek"] == 3  # {backend, provider}: open
    assert circuits["accounts/fireworks/models/deepseek-v3/fireworks"] < 3
    health = value_of(live, next(e for t, e in QUERIES if t == "Provider health (operator probes)"))
    assert {p: PROVIDER_STATES[int(health[f"{POLICY}/{p}"])] for p in ("deepseek", "bedrock", "spare")} == {
        "deepseek": "Down", "bedrock": "Healthy", "spare": "Cold"}
    pii_by_jurisdiction = value_of(live, 'sum by (jurisdiction) (llmroute_requests_total{data_class="pii"})')
    assert pii_by_jurisdiction.get("CN", 0) == 0 and pii_by_jurisdiction["US"] > 0  # residency held throughout
    failovers = value_of(live, "sum by (from_provider, reason) (llmroute_failovers_total)")
    assert failovers["deepseek/connect_error"] > 0 and failovers["together/unavailable"] > 0  # {from_provider, reason}


def _query(title: str, legend_prefix: str = "") -> str:
    """The (first) expression of a dashboard panel whose legend starts with ``legend_prefix``, variables set."""
    from tests.observability.test_dashboard import substitute

    doc = dashboard_doc()
    panel = next(p for p in doc["panels"] if p["title"] == title)
    return substitute(next(t["expr"] for t in panel["targets"] if t["legendFormat"].startswith(legend_prefix)))


def test_the_pools_are_visible_as_the_dashboard_shows_them(live: Live) -> None:
    # confidential (selfHostedOnly) went to the vLLM pod and nowhere else; qwen3-8b's pod picks read its metrics
    confidential = value_of(live, 'sum by (provider) (llmroute_requests_total{data_class="confidential", '
                                  'outcome="ok"})')
    assert confidential.pop("gpus") > 0 and not any(confidential.values()), confidential
    picks = value_of(live, "sum by (pool, basis) (llmroute_pool_picks_total)")
    assert picks[f"metrics/{GPU}"] > 0 and picks.get(f"metrics/{SPARE}", 0) == 0  # {basis, pool}
    assert value_of(live, _query("Pool pods ready, as routers see them", "min")) == {GPU: 1, SPARE: 0}
    # qwen3-coder (spare-pool only) was held and timed out; the router reported the demand, the operator took it
    holds = value_of(live, "sum by (pool, outcome) (llmroute_pool_hold_total)")
    assert holds[f"timeout/{SPARE}"] > 0 and holds[f"overflow/{SPARE}"] == 0  # {outcome, pool}
    (accepted,) = value_of(live, 'llmroute_operator_demand_reports_total{result="accepted"}').values()
    assert accepted > 0
    # the operator's view, filtered by the pool's namespace as the dashboard does (other tests of this process may
    # have pools of their own in the operator's registry: only this scenario's are compared)
    ours = (GPU, SPARE)
    desired = value_of(live, _query("Pool replicas: desired vs ready (operator)", "desired"))
    ready = value_of(live, _query("Pool replicas: desired vs ready (operator)", "ready"))
    assert {p: (desired[p], ready[p]) for p in ours} == {GPU: (1, 1), SPARE: (1, 0)}  # {namespace, pool}
    scales = value_of(live, f'sum by (pool, reason) (llmroute_pool_scales_total{{namespace="{NAMESPACE}"}})')
    assert {k: v for k, v in scales.items() if k.startswith((GPU_POOL, SPARE_POOL))} == {
        f"{GPU_POOL}/Prewarm": 1, f"{SPARE_POOL}/Demand": 1}


def test_sensitivity_routing_is_visible_as_the_dashboard_shows_it(live: Live) -> None:
    # public prompts with an email or an SSN were held to pii too; the pii one with an email added no class
    escalations = value_of(live, _query("Escalations by class and type"))  # {from_class, to_class, type}
    assert escalations["public/pii/email"] > 0 and escalations["public/pii/us_ssn"] > 0, escalations
    totals = value_of(live, "sum by (from_class, to_class, type) (llmroute_escalations_total)")
    assert {k for k, v in totals.items() if v} == {"public/pii/email", "public/pii/us_ssn"}
    findings = value_of(live, "sum by (type, action) (llmroute_pii_findings_total)")
    assert {k for k, v in findings.items() if v} == {  # {action, type}
        "escalated/email", "detected/email", "redacted/email", "restored/email", "escalated/us_ssn", "blocked/us_ssn"}
    assert value_of(live, _query("Detection time p50/p95/p99", "p95"))[""] < 0.005
    # nothing original went upstream (emails as placeholders, SSNs refused), and escalated requests never reached
    # DeepSeek (pii does not allow CN); the echoing providers' answers came back with the emails restored (above)
    sent = {name: e.bodies for name, e in live.emulators.by_name.items()}
    assert not {n for n, bodies in sent.items() for b in bodies if EMAIL.encode() in b or SSN.encode() in b}
    assert not [b for b in sent["deepseek"] if b"<EMAIL_" in b]
    assert any(b"<EMAIL_1>" in b for n in ECHO for b in sent[n])


def test_leadership_and_access_are_visible_as_the_dashboard_shows_them(live: Live) -> None:
    assert value_of(live, _query("Active operator replicas")) == {"": 1}  # the scraped replica holds the Lease
    denials = value_of(live, _query("Access denials by reason"))  # the route has no spec.access: pre-created zeros
    assert set(denials) == {r.value for r in access.Reason} and not any(denials.values())
    signals = {a.name: value_of(live, a.signal) for a in all_alerts()}
    assert signals["LLMRouteOperatorNoLeader"] == signals["LLMRouteOperatorSplitBrain"] == {"llmroute-system": 1}
    assert signals["LLMRouteAccessDenialsHigh"] == {f"{ROUTE}/{NAMESPACE}": 0}  # {llmroute_route, namespace}
    assert signals["LLMRouteAuditLinesDropped"] == {f"{ROUTE}/{NAMESPACE}": 0}
