"""Every Prometheus metric the operator exports, declared once, in a registry of its own.

Naming follows the router's (:mod:`llmroute.router.metrics`): ``llmroute_<noun>_<unit>[_total]`` in base units.
Label values come from fixed vocabularies (:class:`Result`, :data:`KINDS`, :class:`ProviderState`) or from names in
the cluster's config (policy and provider names) - never from object contents or errors. Every ``kind``/``result``
pair and every health state is pre-created, so dashboards and alerts see series at zero before the first failure.

* ``llmroute_operator_reconciles_total{kind,result}`` and ``llmroute_operator_reconcile_duration_seconds{kind}``:
  one observation per reconcile (:func:`reconcile_done`, or the :func:`timed_reconcile` context manager).
* ``llmroute_provider_health{policy,provider,state}``: 1 for the state the shared prober last saw, 0 for the others
  (:func:`set_provider_health`); :func:`forget_provider` / :func:`forget_policy` drop the series of removed ones.
* ``llmroute_provider_probe_latency_seconds{policy,provider}``: how long the last probe took (a gauge: probes run
  every few seconds, so quantiles over them say little; the router's histograms carry the request latencies).
* ModelPools (:mod:`llmroute.controller.pools`), labelled ``{namespace,pool}``: ``llmroute_pool_desired_replicas``,
  ``llmroute_pool_ready_replicas`` (pods Ready whose ``/metrics`` answered), ``llmroute_pool_demand_requests``
  (held at routers, summed over their fresh demand reports; each router exports its own
  ``llmroute_pool_held_requests``), ``llmroute_pool_scales_total{reason}`` (one per change of size; ``reason``
  from :class:`~llmroute.core.scaling.Reason`) and ``llmroute_pool_scrape_failures_total`` (Ready pods whose
  ``/metrics`` did not answer or did not parse: counted as not ready, so a pool whose metrics are unreadable looks
  idle). :func:`forget_pool` drops them with the pool.
* ``llmroute_operator_demand_reports_total{result}``: router demand reports (``accepted``/``rejected``).
* ``llmroute_operator_leader``: 1 on the active operator replica, 0 on a standby (:mod:`llmroute.controller.leader`);
  ``sum(llmroute_operator_leader)`` is 1 in a healthy install.

Served by :func:`start_metrics_server` on its own port (the Helm chart uses 8081, port name ``metrics``); called by
the operator's startup and its reconcile and probe code. The dashboard and alerts in :mod:`llmroute.observability`
query these names.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

from llmroute.api.provider_policy import ProviderState
from llmroute.core.scaling import Reason

DEFAULT_PORT = 8081
KINDS = ("LLMRoute", "ProviderPolicy", "ModelPool")
"""The ``kind`` label: the custom resource a reconcile was for."""


class Result(StrEnum):
    """How a reconcile ended (``llmroute_operator_reconciles_total{result}``)."""

    SUCCESS = "success"
    COMPILE_ERROR = "compile_error"  # the spec does not compile against its policy (a user error)
    POLICY_NOT_FOUND = "policy_not_found"  # the route names a ProviderPolicy that does not exist (yet)
    ERROR = "error"  # anything else: API errors, timeouts, bugs


REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

RECONCILES = Counter("llmroute_operator_reconciles", "Reconciles by custom-resource kind and how they ended.",
                     ["kind", "result"], registry=REGISTRY)
RECONCILE_DURATION = Histogram(
    "llmroute_operator_reconcile_duration_seconds", "Time one reconcile took, by custom-resource kind.",
    ["kind"], registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PROVIDER_HEALTH = Gauge("llmroute_provider_health",
                        "1 for the state the operator's prober last saw for each provider, 0 for the others.",
                        ["policy", "provider", "state"], registry=REGISTRY)
PROBE_LATENCY = Gauge("llmroute_provider_probe_latency_seconds", "How long the last health probe took.",
                      ["policy", "provider"], registry=REGISTRY)

POOL_DESIRED = Gauge("llmroute_pool_desired_replicas", "Replicas the pool's autoscaler decided.",
                     ["namespace", "pool"], registry=REGISTRY)
POOL_READY = Gauge("llmroute_pool_ready_replicas", "Pool pods that are Ready and answered their /metrics.",
                   ["namespace", "pool"], registry=REGISTRY)
POOL_HELD = Gauge("llmroute_pool_demand_requests",
                  "Requests routers hold for the pool, summed over their fresh demand reports.",
                  ["namespace", "pool"], registry=REGISTRY)
POOL_SCALES = Counter("llmroute_pool_scales", "Changes of a pool's size, by the reason of the new size.",
                      ["namespace", "pool", "reason"], registry=REGISTRY)
POOL_SCRAPE_FAILURES = Counter("llmroute_pool_scrape_failures",
                               "Ready pool pods whose /metrics did not answer or did not parse (counted not ready).",
                               ["namespace", "pool"], registry=REGISTRY)
DEMAND_REPORTS = Counter("llmroute_operator_demand_reports", "Router demand reports received, by how they ended.",
                         ["result"], registry=REGISTRY)
DEMAND_RESULTS = ("accepted", "rejected")
LEADER = Gauge("llmroute_operator_leader", "1 on the active operator replica (it holds the Lease), 0 on a standby.",
               registry=REGISTRY)

for _result_name in DEMAND_RESULTS:
    DEMAND_REPORTS.labels(_result_name)
for _kind in KINDS:
    RECONCILE_DURATION.labels(_kind)
    for _result in Result:
        RECONCILES.labels(_kind, _result)


def reconcile_done(kind: str, result: Result, duration_s: float) -> None:
    """Count one finished reconcile of ``kind`` (one of :data:`KINDS`)."""
    RECONCILES.labels(kind, result).inc()
    RECONCILE_DURATION.labels(kind).observe(duration_s)


class Outcome:
    """What :func:`timed_reconcile` records; set ``result`` before the block ends (default: success)."""

    def __init__(self) -> None:
        self.result = Result.SUCCESS


@contextlib.contextmanager
def timed_reconcile(kind: str) -> Iterator[Outcome]:
    """Time a reconcile; an exception escaping the block counts as ``error`` unless ``result`` was set otherwise."""
    outcome = Outcome()
    started = time.perf_counter()
    try:
        yield outcome
    except BaseException:
        if outcome.result is Result.SUCCESS:
            outcome.result = Result.ERROR
        raise
    finally:
        reconcile_done(kind, outcome.result, time.perf_counter() - started)


def set_provider_health(policy: str, provider: str, state: ProviderState) -> None:
    """Record the prober's current state of ``provider`` in ``policy`` (1 for it, 0 for every other state)."""
    for s in ProviderState:
        PROVIDER_HEALTH.labels(policy, provider, s).set(1 if s is state else 0)


def set_probe_latency(policy: str, provider: str, seconds: float) -> None:
    PROBE_LATENCY.labels(policy, provider).set(seconds)


def forget_provider(policy: str, provider: str) -> None:
    """Drop the series of a provider removed from ``policy``."""
    for s in ProviderState:
        with contextlib.suppress(KeyError):
            PROVIDER_HEALTH.remove(policy, provider, s)
    with contextlib.suppress(KeyError):
        PROBE_LATENCY.remove(policy, provider)


def forget_policy(policy: str) -> None:
    """Drop every series of a deleted ProviderPolicy."""
    providers = {labels[1] for labels in _label_sets(PROVIDER_HEALTH) if labels[0] == policy}
    providers |= {labels[1] for labels in _label_sets(PROBE_LATENCY) if labels[0] == policy}
    for provider in providers:
        forget_provider(policy, provider)


def _label_sets(metric: Gauge) -> list[tuple[str, ...]]:
    return [tuple(s.labels[name] for name in ("policy", "provider"))
            for family in metric.collect() for s in family.samples]


def set_pool(namespace: str, pool: str, desired: int, ready: int, held: int) -> None:
    """The pool's size as last decided and observed."""
    POOL_DESIRED.labels(namespace, pool).set(desired)
    POOL_READY.labels(namespace, pool).set(ready)
    POOL_HELD.labels(namespace, pool).set(held)


def pool_scaled(namespace: str, pool: str, reason: Reason) -> None:
    POOL_SCALES.labels(namespace, pool, reason).inc()


def pool_scrape_failures(namespace: str, pool: str, count: int) -> None:
    if count:
        POOL_SCRAPE_FAILURES.labels(namespace, pool).inc(count)


def set_leader(active: bool) -> None:
    LEADER.set(1 if active else 0)


def demand_report(accepted: bool) -> None:
    DEMAND_REPORTS.labels("accepted" if accepted else "rejected").inc()


def forget_pool(namespace: str, pool: str) -> None:
    """Drop every series of a deleted ModelPool."""
    for gauge in (POOL_DESIRED, POOL_READY, POOL_HELD, POOL_SCRAPE_FAILURES):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, pool)
    for reason in Reason:
        with contextlib.suppress(KeyError):
            POOL_SCALES.remove(namespace, pool, reason)


def start_metrics_server(host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> None:
    """Serve ``/metrics`` for :data:`REGISTRY` on ``host:port`` from a daemon thread (returns at once)."""
    start_http_server(port, addr=host, registry=REGISTRY)
