"""The alerting rules for llmroute, as data: rendered into ``charts/llmroute/files/alerts.yaml`` (a Prometheus rule
file, which the chart wraps in a PrometheusRule) by :func:`render_rules`.

Every alert is a *signal* (a PromQL expression that returns one series per thing that can be in trouble) compared
with a *threshold*: ``expr = signal + " " + condition``. The split is what the live test in
``tests/observability/test_live.py`` relies on: against a real Prometheus scraping a live router and operator it
evaluates each ``signal`` and requires series back (the metric names, labels and label values exist and join), and
evaluates each full ``expr`` for the alerts the scenario drives into firing. ``promtool test rules``
(``tests/observability/alerts_test.yaml``) covers each alert firing and not firing.

Labels used for grouping are the ones the chart's PodMonitor attaches to router series (``namespace`` and
``llmroute_route``, the LLMRoute's name) plus the metric labels of :mod:`llmroute.router.metrics` and
:mod:`llmroute.controller.metrics`. Router pool series name a pool ``<namespace>/<name>`` (``pool``); the operator's
carry ``namespace`` (the pool's: the chart's ServiceMonitor honours the operator's labels) and ``pool`` (its name).

Every alert carries a ``runbook_url`` annotation: its section of ``docs/runbooks.md`` (the section's heading is the
alert's name; ``tests/unit/test_docs_runbooks.py`` checks every link lands on one and every section has an alert).

Escalations are compared with requests by class: ``from_class`` is the class a request declared, which is what
``llmroute_requests_total{data_class}`` counts it under, escalated or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from llmroute.api.reference import github_anchor

RUNBOOKS = "https://github.com/llmroute/llmroute/blob/main/docs/runbooks.md"
"""Where the runbooks are published; each alert links to its section (``#<anchor of the alert's name>``)."""

ROUTE = "namespace, llmroute_route"
"""The labels that identify one LLMRoute's routers (from the PodMonitor's relabelling)."""

DEEPSEEK = "deepseek.*"
"""Provider names the DeepSeek-specific circuit alert is about (the generic one covers all other providers)."""

SERVER_ERRORS = "no_healthy_backend|stream_error"
"""Router outcomes that reach the client as a 5xx (503 no healthy backend, 502 stream interrupted)."""

REFUSED = "invalid_request|no_compliant_backend"
"""Router outcomes of requests refused before any upstream attempt (they can never fail over)."""


@dataclass(frozen=True)
class Alert:
    """One alerting rule; ``signal`` is evaluated on its own by the live test."""

    name: str
    signal: str
    condition: str
    for_: str
    severity: str
    summary: str
    description: str

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOKS}#{github_anchor(self.name)}"

    @property
    def expr(self) -> str:
        signal = "(\n  " + self.signal.replace("\n", "\n  ") + "\n)" if "\n" in self.signal else self.signal
        return f"{signal} {self.condition}"

    def rule(self) -> dict[str, Any]:
        return {"alert": self.name, "expr": self.expr, "for": self.for_,
                "labels": {"severity": self.severity},
                "annotations": {"summary": self.summary, "description": self.description,
                                "runbook_url": self.runbook_url}}


def _circuit_open(selector: str) -> str:
    # max_over_time: a circuit that probes and re-opens within the window still counts as open for the whole window.
    return (f"max by ({ROUTE}, provider, backend) "
            f'(max_over_time(llmroute_circuit_state{{state="open", {selector}}}[2m]))')


def _ratio(numerator: str, denominator: str, by: str, window: str = "5m") -> str:
    return (f"sum by ({by}) (rate(llmroute_requests_total{{{numerator}}}[{window}]))\n"
            f"/\nsum by ({by}) (rate(llmroute_requests_total{{{denominator}}}[{window}]))")


PROVIDERS = (
    Alert("LLMRouteProviderDown",
          'max by (policy, provider) (llmroute_provider_health{state="Down"})', "== 1", "5m", "warning",
          "Provider {{ $labels.provider }} is down",
          "The operator's health probes have found provider {{ $labels.provider }} of ProviderPolicy "
          "{{ $labels.policy }} down for 5 minutes. Routers fail over to the next allowed backend; check the "
          "provider's status page and the LLMRoutes' Degraded condition."),
    Alert("LLMRouteProviderMisconfigured",
          'max by (policy, provider) (llmroute_provider_health{state="Misconfigured"})', "== 1", "5m", "warning",
          "Provider {{ $labels.provider }} rejects llmroute's credentials or path",
          "Probes of provider {{ $labels.provider }} (ProviderPolicy {{ $labels.policy }}) get 401/403/404: check "
          "the key in its credentials Secret and the endpoint. The provider is skipped until this is fixed."),
    Alert("LLMRouteCircuitOpen", _circuit_open(f'provider!~"{DEEPSEEK}"'), "== 1", "5m",
          "warning",
          "Circuit open for {{ $labels.provider }}/{{ $labels.backend }}",
          "The circuit of backend {{ $labels.provider }}/{{ $labels.backend }} in LLMRoute "
          "{{ $labels.namespace }}/{{ $labels.llmroute_route }} has been open for more than 5 minutes: its traffic "
          "goes to the next allowed backends."),
    Alert("LLMRouteDeepSeekCircuitOpen", _circuit_open(f'provider=~"{DEEPSEEK}"'), "== 1", "5m", "warning",
          "DeepSeek circuit open: traffic is on the fallback hosts",
          "The circuit of {{ $labels.provider }}/{{ $labels.backend }} in LLMRoute "
          "{{ $labels.namespace }}/{{ $labels.llmroute_route }} has been open for more than 5 minutes. Requests "
          "that DeepSeek's API would serve go to the fallback hosts (higher cost); pii/phi traffic is unaffected. "
          "Check DeepSeek's status page; the router probes and brings it back in steps when it recovers."),
)

ROUTER = (
    Alert("LLMRouteFailoverRateHigh",
          f"sum by ({ROUTE}, model) (rate(llmroute_failovers_total[5m]))\n/\n"
          f'sum by ({ROUTE}, model) (rate(llmroute_requests_total{{outcome!~"{REFUSED}"}}[5m]))',
          "> 0.25", "10m", "warning",
          "Failovers on {{ $value | humanizePercentage }} of {{ $labels.model }} requests",
          "More than 25% of the requests to model {{ $labels.model }} in LLMRoute "
          "{{ $labels.namespace }}/{{ $labels.llmroute_route }} needed another backend for 10 minutes: a backend "
          "is failing without its circuit opening (partial outage, rate limiting). See failovers by reason."),
    Alert("LLMRouteResidencyDenialsSpike",
          f"sum by ({ROUTE}, model, data_class) (increase(llmroute_residency_denials_total[10m]))",
          "> 10", "2m", "warning",
          "Requests of class {{ $labels.data_class }} for {{ $labels.model }} are refused by residency policy",
          "More than 10 requests in 10 minutes asked LLMRoute {{ $labels.namespace }}/{{ $labels.llmroute_route }} "
          "for model {{ $labels.model }} with data class {{ $labels.data_class }}, which no backend of the model may "
          "receive. Usually a misconfiguration: a route without a compliant backend for a class its clients use, "
          "or clients sending the wrong x-llmroute-data-class. `llmroute explain` shows why each backend is denied."),
    Alert("LLMRouteNoHealthyBackend",
          _ratio('outcome="no_healthy_backend"', 'outcome!~"invalid_request|client_closed"',
                 f"{ROUTE}, model, data_class"),
          "> 0.5", "2m", "critical",
          "No healthy backend for {{ $labels.model }} / data class {{ $labels.data_class }}",
          "Most requests ({{ $value | humanizePercentage }}) for model {{ $labels.model }} with data class "
          "{{ $labels.data_class }} in LLMRoute {{ $labels.namespace }}/{{ $labels.llmroute_route }} find no "
          "healthy allowed backend and get 503. Residency is never relaxed: restore a backend or add a compliant "
          "one for this class."),
    Alert("LLMRouteRouter5xxRatio",
          _ratio(f'outcome=~"{SERVER_ERRORS}"', 'outcome!="client_closed"', ROUTE),
          "> 0.05", "5m", "warning",
          "Router 5xx ratio {{ $value | humanizePercentage }}",
          "More than 5% of requests to LLMRoute {{ $labels.namespace }}/{{ $labels.llmroute_route }} end in a "
          "server error (no healthy backend, or a stream that broke after its first byte)."),
)

OPERATOR = (
    Alert("LLMRouteOperatorReconcileErrors",
          'sum by (kind, result) (increase(llmroute_operator_reconciles_total{result!="success"}[10m]))',
          "> 0", "10m", "warning",
          "{{ $labels.kind }} reconciles fail: {{ $labels.result }}",
          "The llmroute operator has been failing {{ $labels.kind }} reconciles ({{ $labels.result }}) for 10 "
          "minutes. Routers keep serving their last good config; see the custom resources' conditions and Events."),
)

LEADERS = "sum by (namespace) (llmroute_operator_leader)\nor on() vector(0)"
"""Operator replicas holding the Lease, per install (the ServiceMonitor's ``namespace``); 0 when none is scraped at
all (both replicas crash-looping are not Ready, so they are not scraped either). On two lines, so :attr:`Alert.expr`
brackets it: a comparison binds tighter than ``or``."""

LEADERSHIP = (
    Alert("LLMRouteOperatorNoLeader", LEADERS, "== 0", "1m", "critical",
          "No llmroute operator replica is active",
          "For 1 minute no llmroute operator replica{{ if $labels.namespace }} in {{ $labels.namespace }}{{ end }} "
          "has held the Lease (llmroute_operator_leader sums to 0, or no replica is scraped at all): nothing probes "
          "providers, reconciles LLMRoutes, ProviderPolicies and ModelPools, or scales pools, so a pool at zero does "
          "not start for the requests routers hold and nothing pre-warms when a provider goes down. Routers keep "
          "serving their last config."),
    Alert("LLMRouteOperatorSplitBrain", LEADERS, "> 1", "1m", "critical",
          "{{ $value }} llmroute operator replicas act as the active one",
          "For 1 minute {{ $value }} operator replicas in {{ $labels.namespace }} have each reported holding the "
          "Lease: two writers reconcile, probe and scale at once (duplicate Events, pool sizes flapping). The "
          "election makes this impossible by design (a replica that cannot renew exits before another may take "
          "over), so look for two installs sharing a namespace but not a Lease, or a replica running without "
          "leader election (LLMROUTE_LEADER_ELECTION)."),
)

GAVE_UP = "timeout|overflow"
"""How a hold ends when the client gets 503 instead of an answer (``llmroute_pool_hold_total{outcome}``)."""

POOLS = (
    Alert("LLMRoutePoolColdStartGivingUp",
          f'sum by ({ROUTE}, pool) (increase(llmroute_pool_hold_total{{outcome=~"{GAVE_UP}"}}[10m]))\n/\n'
          f'sum by ({ROUTE}, pool) (increase(llmroute_pool_hold_total{{outcome!="client_closed"}}[10m]))',
          "> 0.1", "5m", "warning",
          "Requests held for pool {{ $labels.pool }} end in 503",
          "{{ $value | humanizePercentage }} of the requests LLMRoute "
          "{{ $labels.namespace }}/{{ $labels.llmroute_route }} held in the last 10 minutes while pool "
          "{{ $labels.pool }} had no ready pod got 503: the hold timed out "
          "(coldStart.maxWait) or too many were held already (coldStart.maxRequests). The pool does not become ready "
          "in time: see the ModelPool's status and Events (pods Pending for a GPU node, image pull, weights "
          "download), its startupTimeout against the route's coldStart.maxWait, and whether its metrics are "
          "readable."),
    Alert("LLMRoutePoolHeldRequests",
          f"sum by ({ROUTE}, pool) (max_over_time(llmroute_pool_held_requests[2m]))", "> 0", "10m", "warning",
          "Requests have been waiting for pool {{ $labels.pool }} for 10 minutes",
          "Routers of LLMRoute {{ $labels.namespace }}/{{ $labels.llmroute_route }} have held requests for pool "
          "{{ $labels.pool }} without a break for 10 minutes: it is the only backend those requests may use and it "
          "has no ready pod. See the ModelPool's status and Events and its desired vs ready replicas."),
    Alert("LLMRoutePoolMetricsUnreadable",
          "sum by (namespace, pool) (rate(llmroute_pool_scrape_failures_total[5m]))", "> 0", "10m", "warning",
          "The operator cannot read the vLLM metrics of pool {{ $labels.pool }}",
          "For 10 minutes the operator has found Ready pods of ModelPool {{ $labels.namespace }}/{{ $labels.pool }} "
          "whose /metrics did not answer or did not parse. It counts them as not ready, so their load is invisible "
          "to the autoscaler: the pool does not grow for it, and looks idle when no pod is readable. Check the "
          "pods' vLLM version and served model name (vllm:num_requests_waiting and vllm:num_requests_running with "
          "the pool's model_name must be exported) and NetworkPolicies between the operator and the pods."),
    Alert("LLMRoutePoolReplicasNotReady",
          "max by (namespace, pool) (llmroute_pool_desired_replicas - llmroute_pool_ready_replicas)", "> 0", "30m",
          "warning",
          "Pool {{ $labels.pool }} has had {{ $value }} replica(s) fewer ready than decided for 30 minutes",
          "ModelPool {{ $labels.namespace }}/{{ $labels.pool }} has had fewer ready replicas than its autoscaler "
          "decided for 30 minutes, longer than a scale-up takes (GPU node, image pull, weights load): pods Pending "
          "for GPUs (quota, node pool at its maximum), crash-looping, failing their startup probe, or with "
          "unreadable metrics. Requests its routes cannot send elsewhere wait or get 503."),
)

SENSITIVITY = (
    Alert("LLMRouteEscalationSpike",
          f"sum by ({ROUTE}, from_class) (rate(llmroute_escalations_total[10m]))\n/\n"
          f"sum by ({ROUTE}, from_class) (\n"
          f'  label_replace(rate(llmroute_requests_total[10m]), "from_class", "$1", "data_class", "(.+)")\n)',
          "> 0.05", "15m", "warning",
          "Requests declared {{ $labels.from_class }} carry personal data",
          "For 15 minutes, escalations have come to {{ $value | humanizePercentage }} of the requests declared "
          "{{ $labels.from_class }} in LLMRoute {{ $labels.namespace }}/{{ $labels.llmroute_route }} (one per type "
          "found and class added): their text holds types another class detects, so they are held to that class's "
          "rules too. The data stays where policy allows, but the applications sending it label personal data as "
          "{{ $labels.from_class }}: find them (the response header x-llmroute-data-class names the classes "
          "applied; `llmroute scan` audits prompt logs) and have them declare the class, or redact it at the source."),
    Alert("LLMRoutePIIBlocked",
          f'sum by ({ROUTE}, type) (rate(llmroute_pii_findings_total{{action="blocked"}}[5m]))', "> 0", "10m",
          "warning",
          "Requests holding {{ $labels.type }} are being refused",
          "For 10 minutes, requests to LLMRoute {{ $labels.namespace }}/{{ $labels.llmroute_route }} have kept "
          "arriving with {{ $labels.type }} in their text while their classes Block it (spec.redaction mode Block): "
          "each is refused with 400 pii_blocked, naming the type, before any upstream sees it. An application sends "
          "data it must not, and its users get errors: find it by the errors it logs, and have it drop the data or "
          "use a class whose rule redacts instead."),
    Alert("LLMRouteDetectionSlow",
          f"histogram_quantile(0.95, sum by ({ROUTE}, le) (rate(llmroute_detection_seconds_bucket[5m])))",
          "> 0.005", "15m", "warning",
          "Personal-data detection takes {{ $value | humanizeDuration }} at p95",
          "For 15 minutes, scanning requests for personal data in LLMRoute "
          "{{ $labels.namespace }}/{{ $labels.llmroute_route }} has taken more than 5 ms at p95 (about 0.5 ms is "
          "expected for 8 KB): every request waits for it before its first attempt. Look for very large requests "
          "(long histories, documents; detection is linear in size), custom detectors in the ProviderPolicy whose "
          "patterns backtrack, or router pods short of CPU."),
)


def _denials(window: str) -> str:
    return f"sum by ({ROUTE}) (rate(llmroute_access_denials_total[{window}]))"


ACCESS = (
    Alert("LLMRouteAccessDenialsHigh",
          f"{_denials('5m')}\n/\n(\n  {_denials('5m')}\n  + (\n    "
          f"sum by ({ROUTE}) (rate(llmroute_requests_total[5m]))\n    or {_denials('5m')} * 0\n  )\n)",
          "> 0.2", "15m", "warning",
          "{{ $value | humanizePercentage }} of the requests to {{ $labels.namespace }}/{{ $labels.llmroute_route }} "
          "are refused by its access rules",
          "For 15 minutes, more than 20% of the requests to LLMRoute "
          "{{ $labels.namespace }}/{{ $labels.llmroute_route }} have been refused with 401 or 403 by its "
          "spec.access rules (llmroute_access_denials_total, by reason). One steady reason is usually a "
          "misconfigured client (no token, a rotated Secret, a ServiceAccount not listed, a projected token with "
          "the wrong audience); many unknown tokens or bad signatures from everywhere look like someone probing."),
    Alert("LLMRouteAuditLinesDropped",
          f"sum by ({ROUTE}) (increase(llmroute_audit_dropped_total[10m]))", "> 0", "0m", "warning",
          "Routers of {{ $labels.namespace }}/{{ $labels.llmroute_route }} are dropping audit lines",
          "Router pods of LLMRoute {{ $labels.namespace }}/{{ $labels.llmroute_route }} dropped audit lines in the "
          "last 10 minutes: their buffer to stdout was full (a log pipeline that stalls or reads slowly, or bursts "
          "beyond LLMROUTE_AUDIT_BUFFER lines). The requests were served, but their audit records are lost: the "
          "trail has gaps an auditor will find."),
)

GROUPS: dict[str, tuple[Alert, ...]] = {
    "llmroute.providers": PROVIDERS,
    "llmroute.router": ROUTER,
    "llmroute.sensitivity": SENSITIVITY,
    "llmroute.pools": POOLS,
    "llmroute.operator": OPERATOR + LEADERSHIP,
    "llmroute.access": ACCESS,
}


def all_alerts() -> list[Alert]:
    return [a for alerts in GROUPS.values() for a in alerts]


def rule_groups() -> dict[str, Any]:
    """The rule file document: ``{"groups": [...]}``, as Prometheus and PrometheusRule.spec expect it."""
    return {"groups": [{"name": name, "rules": [a.rule() for a in alerts]} for name, alerts in GROUPS.items()]}


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line expressions, so the rule file reads like a hand-written one."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)

HEADER = "# GENERATED by `python -m llmroute.observability` from llmroute/observability/alerts.py; do not edit.\n"


def render_rules() -> str:
    return HEADER + yaml.dump(rule_groups(), Dumper=_Dumper, sort_keys=False, width=100_000, allow_unicode=True)
