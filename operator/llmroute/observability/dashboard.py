"""The llmroute Grafana dashboard, built with grafana-foundation-sdk (Grafana 11.6 schema) and rendered to the JSON
checked in as ``charts/llmroute/files/dashboard.json`` (the chart ships it in a ConfigMap for Grafana's sidecar).

Panels are what a platform team looks at during a DeepSeek incident, top to bottom: the overview stats (the operator
replicas holding the Lease among them); request and error rate by provider; traffic share by jurisdiction and data
class, and residency denials; access denials by reason (``spec.access``) and audit lines written and dropped;
sensitivity routing (PII): escalations by declared class, added class and the type found, findings by type and what
was done with them (detected, escalated, redacted, restored, blocked), detection time, and requests blocked;
failovers by reason and circuit state per backend over time, and drills (rehearsed outages) beside them; TTFT and
latency p50/p95/p99 by provider; provider health from the operator's probes; self-hosted pools (ModelPool): replicas
the operator decided and found ready, requests routers hold while a pool starts and how those holds end, scale
changes, the pods routers see and how they pick among them; router saturation (in-flight requests, CPU and memory from
the standard ``process_*`` metrics).

Variables: ``datasource`` (any Prometheus), ``namespace`` and ``route`` (the ``llmroute_route`` label the chart's
PodMonitor puts on router series). Every router query carries :data:`SELECTOR`; operator queries do not (one
operator per cluster), except that the operator's pool series are filtered by ``namespace``, which on them is the
pool's (the chart's ServiceMonitor honours the operator's labels). The tests evaluate every query against a live
Prometheus, so only the names in :mod:`llmroute.router.metrics` and :mod:`llmroute.controller.metrics` may appear
here.

grafana-foundation-sdk is a development dependency (the ``test`` extra): import this module only to generate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard

UID = "llmroute-overview"
SELECTOR = 'namespace=~"$namespace", llmroute_route=~"$route"'
RATE = "$__rate_interval"
DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")


def sel(*extra: str) -> str:
    """The router selector plus extra matchers, in braces."""
    return "{" + ", ".join((SELECTOR, *extra)) + "}"


def rate(metric: str, *extra: str, by: str = "") -> str:
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}(rate({metric}{sel(*extra)}[{RATE}]))"


def quantile(q: float, metric: str, by: str, selector: str | None = None) -> str:
    """``q`` of histogram ``metric`` per ``by`` (empty: over everything selected)."""
    grouping = f"{by}, le" if by else "le"
    return (f"histogram_quantile({q}, sum by ({grouping}) "
            f"(rate({metric}_bucket{sel() if selector is None else selector}[{RATE}])))")


def state_code(metric: str, by: str, codes: Sequence[str], selector: str = "") -> str:
    """One series per ``by`` whose value is the index in ``codes`` of the state gauged 1 (the worst wins)."""
    extra = f"{selector}, " if selector else ""
    terms = [f'{metric}{{{extra}state="{s}"}} * {i}' for i, s in reversed(list(enumerate(codes)))]
    return f"max by ({by}) (\n  " + "\n  or ".join(terms) + "\n)"


CIRCUIT_STATES = ("healthy", "degraded", "recovering", "open")
CIRCUIT_COLORS = ("green", "yellow", "blue", "red")
PROVIDER_STATES = ("Healthy", "Cold", "Unknown", "Degraded", "Misconfigured", "Down")
"""Every :class:`~llmroute.api.provider_policy.ProviderState`, best first (the worst state gauged 1 wins). Cold (a
ModelPool provider without a ready replica) is expected, not an outage: next to Healthy, in blue."""
PROVIDER_COLORS = ("green", "blue", "text", "yellow", "orange", "red")


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """A panel as data: kind (timeseries, stat, state-timeline), title, queries and display options."""

    title: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    stacking: str = ""
    states: tuple[tuple[str, str], ...] = ()  # value mapping for state timelines and stats: (text, colour) by index
    extra: dict[str, Any] = field(default_factory=dict)


def _q(expr: str, legend: str = "") -> tuple[Query, ...]:
    return (Query(expr, legend),)


REQUESTS = "llmroute_requests_total"
ATTEMPTS = "llmroute_upstream_attempts_total"
SERVED = 'provider!="none"'
SERVER_ERROR = 'outcome=~"no_healthy_backend|stream_error"'

LEADER_STATES = (("none", "red"), ("1", "green"), ("2: split brain", "red"))
"""What ``sum(llmroute_operator_leader)`` may read, by value (more than 2 cannot happen with the chart's 2 replicas)."""

OVERVIEW = (
    Panel("Requests/s", _q(rate(REQUESTS)), "stat", "reqps", width=4, height=4),
    Panel("Client-visible 5xx", _q(f"{rate(REQUESTS, SERVER_ERROR)} / {rate(REQUESTS)}"), "stat", "percentunit",
          "Share of requests answered 503 (no healthy backend) or whose stream broke after its first byte.",
          width=4, height=4),
    Panel("Failovers/s", _q(rate("llmroute_failovers_total")), "stat", "short", width=4, height=4),
    Panel("Open circuits", _q("sum(llmroute_circuit_state" + sel('state="open"') + ")"),
          "stat", "short", "Backends whose circuit is open in some router pod.", width=4, height=4),
    Panel("Providers down", _q('sum(llmroute_provider_health{state=~"Down|Misconfigured"})'), "stat", "short",
          "Providers the operator's probes find Down or Misconfigured.", width=4, height=4),
    Panel("Active operator replicas", _q("sum(llmroute_operator_leader)"), "stat", "short",
          "Operator replicas holding the Lease: 1 in a healthy install. none: nothing probes providers, reconciles "
          "or scales pools (LLMRouteOperatorNoLeader; no value at all: no replica is scraped); 2: split brain "
          "(LLMRouteOperatorSplitBrain).", width=4, height=4, states=LEADER_STATES),
)

TRAFFIC = (
    Panel("Request rate by provider", _q(rate(REQUESTS, by="provider"), "{{provider}}"), unit="reqps",
          description='Client requests by the provider that served them ("none": the router answered itself).'),
    Panel("Upstream error ratio by provider",
          _q(rate(ATTEMPTS, 'reason!~"ok|client_error"', by="provider") + " / " + rate(ATTEMPTS, by="provider"),
             "{{provider}}"),
          unit="percentunit", description="Share of upstream attempts that failed (timeouts, resets, 429, 5xx, auth)."),
    Panel("Requests by outcome", _q(rate(REQUESTS, by="outcome"), "{{outcome}}"), unit="reqps", stacking="normal"),
    Panel("Stream errors by provider", _q(rate("llmroute_stream_errors_total", by="provider, reason"),
                                          "{{provider}}: {{reason}}"), unit="reqps",
          description="Streams that broke after their first event (the client saw a partial answer)."),
)

RESIDENCY = (
    Panel("Traffic share by jurisdiction", _q(rate(REQUESTS, SERVED, by="jurisdiction"), "{{jurisdiction}}"),
          unit="percentunit", stacking="percent",
          description="Where served requests went, by the provider's jurisdiction."),
    Panel("Traffic by data class and jurisdiction",
          _q(rate(REQUESTS, SERVED, by="data_class, jurisdiction"), "{{data_class}} → {{jurisdiction}}"),
          unit="reqps", stacking="normal",
          description="pii/phi must never show a jurisdiction their class does not allow."),
    Panel("Residency denials", _q(rate("llmroute_residency_denials_total", by="model, data_class"),
                                  "{{model}} / {{data_class}}"), unit="reqps",
          description="Requests refused because no backend of the model may receive their data class (403)."),
)

ACCESS = (
    Panel("Access denials by reason", _q(rate("llmroute_access_denials_total", by="reason"), "{{reason}}"),
          unit="reqps", stacking="normal",
          description="Requests refused by the route's access rules (LLMRoute spec.access), per second: 403 "
          "not_allowed (authenticated, not listed), 401 for the others (missing, unknown_token, malformed, "
          "signature, issuer, audience, expired, not_yet_valid, claims). One steady reason: a misconfigured client; "
          "unknown tokens and bad signatures from everywhere: someone probing."),
    Panel("Audit lines written and dropped", (
        Query(rate("llmroute_audit_records_total"), "written"),
        Query(rate("llmroute_audit_dropped_total"), "dropped"),
    ), unit="ops",
          description="Audit trail lines (LLMRoute spec.audit) the routers wrote to stdout, and lines dropped "
          "because stdout could not keep up (the log pipeline stalled): each dropped line is a request missing "
          "from the trail (LLMRouteAuditLinesDropped)."),
)

SENSITIVITY = (
    Panel("Escalations by class and type",
          _q(rate("llmroute_escalations_total", by="from_class, to_class, type"),
             "{{from_class}} → {{to_class}}: {{type}}"),
          unit="ops", stacking="normal",
          description="Requests held to a class beyond the one they declared because their text holds a type that "
          "class detects (ProviderPolicy dataClasses[].detect), per second; one per type found and class added. A "
          "lasting stream from one declared class: an application labels personal data as something else."),
    Panel("PII findings by type and action",
          _q(rate("llmroute_pii_findings_total", by="type, action"), "{{type}}: {{action}}"), unit="ops",
          description="Findings per second: detected (seen, no class added), escalated (added a class), redacted "
          "(replaced by a placeholder in what went upstream), restored (a placeholder put back in an answer), "
          "blocked (refused the request). Types are the detector's and the policy's own detectors; never a value."),
    Panel("Detection time p50/p95/p99",
          tuple(Query(quantile(q, "llmroute_detection_seconds", ""), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)),
          unit="s",
          description="Time to scan a request's text and decide its classes, on the request path before the first "
          "attempt (about 0.5 ms for 8 KB; linear in the request's size)."),
    Panel("Blocked for PII (400 pii_blocked) by type",
          _q(rate("llmroute_pii_findings_total", 'action="blocked"', by="type"), "{{type}}"), unit="ops",
          description="Findings of types a request's classes Block (LLMRoute spec.redaction mode Block), per "
          "second: each refused its request with 400 pii_blocked before any upstream saw it (a request with two "
          "counts twice)."),
)

FAILOVER = (
    Panel("Failovers by reason", _q(rate("llmroute_failovers_total", by="from_provider, reason"),
                                    "{{from_provider}}: {{reason}}"), unit="reqps", stacking="normal"),
    Panel("Circuit state per backend",
          _q(state_code("llmroute_circuit_state", "provider, backend", CIRCUIT_STATES, SELECTOR),
             "{{provider}}/{{backend}}"),
          "state-timeline", states=tuple(zip(CIRCUIT_STATES, CIRCUIT_COLORS, strict=True)),
          description="The worst state over the route's router pods."),
    Panel("Upstream attempts by result", _q(rate(ATTEMPTS, by="provider, reason"),
                                            "{{provider}}: {{reason}}"), unit="reqps"),
    Panel("Drills: simulated failures", (
        Query(rate("llmroute_drill_injections_total", by="provider, fault"), "{{provider}}: {{fault}}"),
        Query(f"max by (provider, fault) (llmroute_drill_active{sel()})", "active: {{provider}} {{fault}}"),
    ), unit="short",
          description="Attempts a drill (LLMRoute spec.drills) failed without sending them, per second, and 1 while "
          "a drill is active: the failovers and circuits above are a rehearsal, not an outage."),
)


def _quantiles(metric: str) -> tuple[Query, ...]:
    return tuple(Query(quantile(q, metric, "provider"), f"p{round(q * 100)} {{{{provider}}}}")
                 for q in (0.5, 0.95, 0.99))


LATENCY = (
    Panel("Time to first token p50/p95/p99 by provider", _quantiles("llmroute_time_to_first_token_seconds"),
          unit="s"),
    Panel("Request duration p50/p95/p99 by provider", _quantiles("llmroute_request_duration_seconds"), unit="s"),
)

OPERATOR_RATE = "llmroute_operator_reconciles_total"
PROVIDERS = (
    Panel("Provider health (operator probes)",
          _q(state_code("llmroute_provider_health", "policy, provider", PROVIDER_STATES), "{{policy}}/{{provider}}"),
          "state-timeline", states=tuple(zip(PROVIDER_STATES, PROVIDER_COLORS, strict=True))),
    Panel("Probe latency", _q("max by (policy, provider) (llmroute_provider_probe_latency_seconds)",
                              "{{policy}}/{{provider}}"), unit="s"),
    Panel("Operator reconciles by result", _q(f"sum by (kind, result) (rate({OPERATOR_RATE}[{RATE}]))",
                                              "{{kind}}: {{result}}"), unit="ops", stacking="normal"),
    Panel("Operator reconcile duration p95",
          (Query(quantile(0.95, "llmroute_operator_reconcile_duration_seconds", "kind", ""), "{{kind}}"),),
          unit="s"),
)

OPERATOR_POOL = 'namespace=~"$namespace"'
"""The operator's pool series carry the pool's namespace (no route: a pool serves every route that names it)."""


def pool_gauge(metric: str) -> str:
    return f"max by (namespace, pool) ({metric}{{{OPERATOR_POOL}}})"


POOLS = (
    Panel("Pool replicas: desired vs ready (operator)", (
        Query(pool_gauge("llmroute_pool_desired_replicas"), "desired {{namespace}}/{{pool}}"),
        Query(pool_gauge("llmroute_pool_ready_replicas"), "ready {{namespace}}/{{pool}}"),
    ), description="Replicas the pool's autoscaler decided, and pods Ready whose vLLM /metrics answered. Ready below "
          "desired for long: pods Pending for a GPU node, pulling the image or loading weights, or metrics "
          "unreadable."),
    Panel("Requests held for pools", (
        Query(f"sum by (pool) (llmroute_pool_held_requests{sel()})", "routers: {{pool}}"),
        Query(pool_gauge("llmroute_pool_demand_requests"), "operator: {{namespace}}/{{pool}}"),
    ), description="Requests routers hold because their only allowed backends are pools without a ready pod (summed "
          "over router pods), and the demand the operator scales from (the routers' reports, fresh within 3 s)."),
    Panel("Held requests by outcome", _q(rate("llmroute_pool_hold_total", by="pool, outcome"), "{{pool}}: {{outcome}}"),
          unit="reqps", stacking="normal",
          description="How holds ended: served (a pod became ready), timeout (coldStart.maxWait passed: 503), overflow "
          "(coldStart.maxRequests already held: 503 at once), client_closed."),
    Panel("Pool scale changes by reason (operator)",
          _q(f"sum by (namespace, pool, reason) (increase(llmroute_pool_scales_total{{{OPERATOR_POOL}}}[{RATE}]))",
             "{{namespace}}/{{pool}}: {{reason}}"),
          stacking="normal",
          description="Changes of a pool's size, by the reason of the new size (Load, Demand, Prewarm, Idle, ...)."),
    Panel("Pool pods ready, as routers see them", (
        Query(f"min by (pool) (llmroute_pool_ready_pods{sel()})", "min {{pool}}"),
        Query(f"max by (pool) (llmroute_pool_ready_pods{sel()})", "max {{pool}}"),
    ), width=8, description="Pods each router may send to (discovered and answering /metrics), lowest and highest "
          "over router pods: a lasting difference means discovery or scrapes fail from some routers."),
    Panel("Pool picks by basis", _q(rate("llmroute_pool_picks_total", by="pool, basis"), "{{pool}}: {{basis}}"),
          unit="reqps", stacking="normal", width=8,
          description="Attempts sent to pool pods, by what the pick compared: metrics (the pods' vLLM queues, fresh), "
          "inflight (this router's in-flight counts: scrapes stale), round_robin (load-blind, by configuration)."),
    Panel("Pool metrics unreadable and demand reports (operator)", (
        Query(f"sum by (namespace, pool) (rate(llmroute_pool_scrape_failures_total{{{OPERATOR_POOL}}}[{RATE}]))",
              "unreadable: {{namespace}}/{{pool}}"),
        Query(f"sum by (result) (rate(llmroute_operator_demand_reports_total[{RATE}]))", "demand reports: {{result}}"),
    ), unit="ops", width=8,
          description="Ready pool pods whose /metrics the operator could not read, per second (they count as not "
          "ready, so the pool looks idle to its autoscaler), and the routers' demand reports by result."),
)

SATURATION = (
    Panel("In-flight requests by pod", _q(f"sum by (pod) (llmroute_inflight_requests{sel()})", "{{pod}}"),
          width=8),
    Panel("Router CPU by pod", _q(f"sum by (pod) (rate(process_cpu_seconds_total{sel()}[{RATE}]))", "{{pod}}"),
          unit="percentunit", width=8, description="CPU seconds per second (1.0 = one core)."),
    Panel("Router memory (RSS) by pod", _q(f"sum by (pod) (process_resident_memory_bytes{sel()})", "{{pod}}"),
          unit="bytes", width=8),
    Panel("Config reloads", _q(f"sum by (result) (increase(llmroute_config_reloads_total{sel()}[{RATE}]))",
                               "{{result}}"), width=12),
    Panel("Config in service (router pods per config hash)",
          _q(f"count by (route, hash) (llmroute_config_info{sel()})", "{{route}} {{hash}}"), width=12),
)

ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    ("Overview", OVERVIEW),
    ("Traffic and errors by provider", TRAFFIC),
    ("Residency", RESIDENCY),
    ("Access and audit", ACCESS),
    ("Sensitivity routing (PII)", SENSITIVITY),
    ("Failover and circuits", FAILOVER),
    ("Latency", LATENCY),
    ("Providers (operator)", PROVIDERS),
    ("Self-hosted pools (ModelPool)", POOLS),
    ("Router saturation", SATURATION),
)


def _targets(panel: Panel) -> list[Builder[Any]]:
    return [prometheus.Dataquery().expr(q.expr).legend_format(q.legend or "__auto").ref_id(chr(ord("A") + i))
            .datasource(DATASOURCE) for i, q in enumerate(panel.queries)]


def _mappings(states: Sequence[tuple[str, str]]) -> list[dashboard.ValueMapping]:
    options = {str(i): dashboard.ValueMappingResult(text=text, color=color, index=i)
               for i, (text, color) in enumerate(states)}
    return [dashboard.ValueMap(options=options)]


def _build_panel(panel: Panel, panel_id: int) -> Builder[Any]:
    builder: Any
    if panel.kind == "stat":
        builder = stat.Panel().reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))
        if panel.states:
            builder = builder.mappings(_mappings(panel.states))
    elif panel.kind == "state-timeline":
        builder = (statetimeline.Panel().mappings(_mappings(panel.states)).show_value(common.VisibilityMode.NEVER)
                   .color_scheme(dash_b.FieldColor().mode(dashboard.FieldColorModeId.FIXED)))
    else:
        builder = timeseries.Panel().fill_opacity(10)
        if panel.stacking:
            builder = builder.stacking(common_b.StackingConfig().mode(common.StackingMode(panel.stacking)))
    builder = (builder.id(panel_id).title(panel.title).datasource(DATASOURCE).unit(panel.unit)
               .span(panel.width).height(panel.height))
    if panel.description:
        builder = builder.description(panel.description)
    for target in _targets(panel):
        builder = builder.with_target(target)
    return builder  # type: ignore[no-any-return]


def _variables() -> list[Builder[dashboard.VariableModel]]:
    def query(name: str, label: str, promql: str) -> Builder[dashboard.VariableModel]:
        return (dash_b.QueryVariable(name).label(label).datasource(DATASOURCE).query(promql).multi(True)
                .include_all(True).all_value(".*").refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
                .current(dashboard.VariableOption(text="All", value="$__all", selected=True)))

    return [
        dash_b.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        query("namespace", "Namespace", f"label_values({REQUESTS}, namespace)"),
        query("route", "LLMRoute", f'label_values({REQUESTS}{{namespace=~"$namespace"}}, llmroute_route)'),
    ]


def build() -> dict[str, Any]:
    """The dashboard as a JSON-ready dict."""
    d = (dash_b.Dashboard("llmroute: routing, residency and failover").uid(UID)
         .description("LLM traffic through llmroute routers: providers, residency, sensitivity routing (PII), "
                      "failover, circuits, latency, provider health from the operator, self-hosted pools, router "
                      "saturation.")
         .tags(["llmroute", "llm"]).refresh("30s").time("now-1h", "now").timezone("browser").editable()
         .tooltip(dashboard.DashboardCursorSync.CROSSHAIR))
    for variable in _variables():
        d = d.with_variable(variable)
    next_id = 1
    for title, panels in ROWS:
        d = d.with_row(dash_b.Row(title).id(next_id))
        next_id += 1
        for panel in panels:
            d = d.with_panel(_build_panel(panel, next_id))
            next_id += 1
    result: dict[str, Any] = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    return result


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def panel_queries(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel in a dashboard document (rows included)."""
    out = []
    for panel in doc["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            out += [(inner["title"], t["expr"]) for t in inner.get("targets", [])]
    return out
