"""Every Prometheus metric the router exports, declared once.

Naming: ``llmroute_<noun>_<unit>[_total]`` in base units (seconds). Labels take values from the config (model,
provider, data class, backend model names) or from fixed vocabularies (:class:`Outcome`, ``core.retry.REASONS``,
circuit states, :data:`STREAM_ERRORS`, :data:`RELOAD_RESULTS`, drill faults) - never prompts, keys, request ids or
anything a client can invent: an unknown model or class is counted as ``none``. Label values are pre-created for each
loaded config (:func:`prepare`), so dashboards and alerts see every series at zero before the first failure.

Drills are visible twice: as what they cause (attempts, failovers, circuits - the same series a real outage moves)
and as themselves (``llmroute_drill_active``, ``llmroute_drill_injections_total``), so a dashboard can tell a
rehearsal from an incident.

ModelPools (``pool`` is ``<namespace>/<name>`` from the config; pre-created by :func:`prepare_pool`): ready pods,
requests held while a pool starts from zero and how each hold ended, and picks by what they compared.

Personal data (only for configs that detect or redact it): findings by ``type`` (the detector's built-in types and
the policy's custom detectors) and ``action`` (:data:`FINDING_ACTIONS`, :data:`REDACTION_ACTIONS`), requests
escalated by ``from_class``/``to_class``/``type``, and the time detection and escalation took per request. Types and
classes come from the config; never a value.

Client connections (:mod:`llmroute.router.http_server`): the open ones (a gauge read at scrape time, nothing per
connection) and every refusal or deadline by ``reason`` (:class:`Rejection`, all pre-created at import) - counted only
when one happens, so a request that breaks no limit costs nothing here.

Updated by :mod:`llmroute.router.http_server`, :mod:`llmroute.router.proxy`, :mod:`llmroute.router.failover`,
:mod:`llmroute.router.health`, :mod:`llmroute.router.drills`, :mod:`llmroute.router.pools`,
:mod:`llmroute.router.holding` and :mod:`llmroute.router.app` (config reloads); rendered by ``GET /metrics``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from functools import lru_cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

from llmroute.core import retry
from llmroute.core.circuit import State
from llmroute.core.cold_start import HoldOutcome
from llmroute.core.pii import TYPES as PII_TYPES
from llmroute.core.pod_picking import Basis
from llmroute.core.router_config import RouterConfig
from llmroute.router.hot_metrics import LoopCounter, LoopHistogram

NONE = "none"
"""Label value when there is no provider (the router answered itself) or the client's name is unknown."""


class Outcome(StrEnum):
    """How a client request ended (``llmroute_requests_total{outcome}``)."""

    OK = "ok"
    UPSTREAM_CLIENT_ERROR = "upstream_client_error"  # upstream 400/422 returned as it came
    STREAM_ERROR = "stream_error"  # a stream broke after its first event
    NO_HEALTHY_BACKEND = "no_healthy_backend"
    NO_COMPLIANT_BACKEND = "no_compliant_backend"
    INVALID_REQUEST = "invalid_request"  # bad JSON, too large, unknown model or data class
    CLIENT_CLOSED = "client_closed"


class Rejection(StrEnum):
    """Why the router refused a client's request or closed its connection (``llmroute_client_rejections_total``)."""

    HEAD_TIMEOUT = "head_timeout"  # no complete request head within the head deadline
    BODY_TIMEOUT = "body_timeout"  # the body did not arrive within its deadline (408 or closed)
    IDLE_TIMEOUT = "idle_timeout"  # a keep-alive connection waited too long for its next request
    CONNECTION_CAP = "connection_cap"  # a new connection answered 503: every open one was busy
    EVICTED = "evicted"  # a waiting connection closed at the cap to admit a new one
    HEAD_TOO_LARGE = "head_too_large"  # 431
    TOO_MANY_HEADERS = "too_many_headers"  # 431
    URL_TOO_LONG = "url_too_long"  # 414
    BODY_TOO_LARGE = "body_too_large"  # 413 (the route's maxRequestBytes)
    BAD_REQUEST = "bad_request"  # not valid HTTP/1.1 (400), smuggling shapes included
    EXPECTATION_FAILED = "expectation_failed"  # 417


STREAM_ERRORS = ("idle_timeout", "reset", "total_timeout", "upstream_error")
FINDING_ACTIONS = ("escalated", "detected")
"""What happened to a finding: it moved the request to another class, or it was only seen."""
REDACTION_ACTIONS = ("redacted", "restored", "blocked")
"""What redaction did (:mod:`llmroute.router.redaction`): a finding replaced by a placeholder in what went upstream
(once per request), a placeholder put back into an answer, a finding that refused its request."""
RELOAD_RESULTS = ("ok", "invalid", "unsupported_version", "unchanged")
_PROVIDER_OUTCOMES = (Outcome.OK, Outcome.UPSTREAM_CLIENT_ERROR, Outcome.STREAM_ERROR, Outcome.CLIENT_CLOSED)
_ROUTER_OUTCOMES = (Outcome.NO_HEALTHY_BACKEND, Outcome.NO_COMPLIANT_BACKEND, Outcome.INVALID_REQUEST,
                    Outcome.CLIENT_CLOSED)

# No *_created series: they double the scrape size, and no dashboard or alert uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Updated on every request, from the event loop's thread only: lock-free (:mod:`llmroute.router.hot_metrics`).
REQUESTS = LoopCounter("llmroute_requests", "Client requests by how they ended.",
                       ["model", "provider", "jurisdiction", "data_class", "outcome"], REGISTRY)
REQUEST_DURATION = LoopHistogram(
    "llmroute_request_duration_seconds", "Time from request to the last byte of the response, by serving provider.",
    ["provider"], REGISTRY, (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
TIME_TO_FIRST_TOKEN = LoopHistogram(
    "llmroute_time_to_first_token_seconds", "Time from sending an attempt to its first data event, by provider.",
    ["provider"], REGISTRY, (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 30, 60))
FAILOVERS = Counter("llmroute_failovers", "Attempts that failed and moved the request on, by why.",
                    ["model", "from_provider", "reason"], registry=REGISTRY)
RESIDENCY_DENIALS = Counter("llmroute_residency_denials",
                            "Requests refused because no backend may receive their data class.",
                            ["model", "data_class"], registry=REGISTRY)
UPSTREAM_ATTEMPTS = LoopCounter("llmroute_upstream_attempts", "Upstream attempts by provider and result.",
                                ["provider", "reason"], REGISTRY)
CIRCUIT_STATE = Gauge("llmroute_circuit_state", "1 for the state each backend's circuit is in, 0 for the others.",
                      ["provider", "backend", "state"], registry=REGISTRY)
STREAM_ERRORS_TOTAL = Counter("llmroute_stream_errors", "Streams that broke after their first event.",
                              ["provider", "reason"], registry=REGISTRY)
INFLIGHT = Gauge("llmroute_inflight_requests", "Client requests being served.", registry=REGISTRY)
CONFIG_RELOADS = Counter("llmroute_config_reloads", "Config load attempts by result.", ["result"],
                         registry=REGISTRY)
CONFIG_INFO = Gauge("llmroute_config_info", "1 for the config being served.", ["route", "hash"], registry=REGISTRY)
DRILL_ACTIVE = Gauge("llmroute_drill_active", "1 while a drill simulates an outage of the provider, 0 after it ended.",
                     ["provider", "fault"], registry=REGISTRY)
DRILL_INJECTIONS = Counter("llmroute_drill_injections",
                           "Attempts a drill failed without sending them to the provider, by fault.",
                           ["provider", "fault"], registry=REGISTRY)
POOL_READY_PODS = Gauge("llmroute_pool_ready_pods", "Pods of the ModelPool this router may send to.", ["pool"],
                        registry=REGISTRY)
POOL_HELD = Gauge("llmroute_pool_held_requests", "Requests held waiting for a pod of the ModelPool to be ready.",
                  ["pool"], registry=REGISTRY)
POOL_HOLDS = Counter("llmroute_pool_hold", "Requests held for a ModelPool, by how the hold ended.",
                     ["pool", "outcome"], registry=REGISTRY)
POOL_PICKS = Counter("llmroute_pool_picks", "Attempts sent to a ModelPool's pods, by what the pick compared.",
                     ["pool", "basis"], registry=REGISTRY)
PII_FINDINGS = Counter("llmroute_pii_findings", "Personal data found in requests, by type and what was done about it.",
                       ["type", "action"], registry=REGISTRY)
ESCALATIONS = Counter("llmroute_escalations",
                      "Requests held to a class beyond the one they declared, by the type found that called for it.",
                      ["from_class", "to_class", "type"], registry=REGISTRY)
DETECTION_SECONDS = Histogram(
    "llmroute_detection_seconds", "Time to scan a request for personal data and decide its classes.",
    registry=REGISTRY, buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
CLIENT_REJECTIONS = Counter("llmroute_client_rejections",
                            "Client requests refused and connections closed by a limit of the router, by which.",
                            ["reason"], registry=REGISTRY)
CLIENT_CONNECTIONS = Gauge("llmroute_client_connections", "Open client connections.", registry=REGISTRY)
_REJECTION_CHILDREN = {r: CLIENT_REJECTIONS.labels(r) for r in Rejection}


def render() -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def prepare(config: RouterConfig, previous_info: tuple[str, str] | None) -> tuple[str, str]:
    """Pre-create the label values of ``config``; returns its ``config_info`` labels (pass them back next time)."""
    if previous_info is not None:
        CONFIG_INFO.remove(*previous_info)
    info = (f"{config.origin.route_namespace}/{config.origin.route_name}", config.content_hash())
    CONFIG_INFO.labels(*info).set(1)
    jurisdiction = {p.name: p.jurisdiction for p in config.providers}
    for model in config.models:
        for cr in model.classes:
            for outcome in _ROUTER_OUTCOMES:
                REQUESTS.labels(model.name, NONE, NONE, cr.data_class, outcome)
            for b in cr.allowed:
                for outcome in _PROVIDER_OUTCOMES:
                    REQUESTS.labels(model.name, b.provider, jurisdiction[b.provider], cr.data_class, outcome)
                for reason in retry.REASONS:
                    FAILOVERS.labels(model.name, b.provider, reason)
            if cr.denied:
                RESIDENCY_DENIALS.labels(model.name, cr.data_class)
    REQUESTS.labels(NONE, NONE, NONE, NONE, Outcome.INVALID_REQUEST)
    for p in config.providers:
        REQUEST_DURATION.labels(p.name)
        TIME_TO_FIRST_TOKEN.labels(p.name)
        for reason in retry.REASONS:
            UPSTREAM_ATTEMPTS.labels(p.name, reason)
        for reason in STREAM_ERRORS:
            STREAM_ERRORS_TOTAL.labels(p.name, reason)
    for result in RELOAD_RESULTS:
        CONFIG_RELOADS.labels(result)
    for d in config.drills:
        DRILL_INJECTIONS.labels(d.provider, d.fault)
    _prepare_detection(config)
    _prepare_redaction(config)
    return info


def _prepare_detection(config: RouterConfig) -> None:
    """Findings of every type the config detects, and every escalation it can make (from any other class)."""
    detection = config.detection
    if detection is None:
        return
    for kind in (*PII_TYPES, *(d.name for d in detection.detectors)):
        for action in FINDING_ACTIONS:
            PII_FINDINGS.labels(kind, action)
    for c in detection.classes:
        for from_class in config.data_classes:
            if from_class != c.data_class:
                for kind in c.types:
                    ESCALATIONS.labels(from_class, c.data_class, kind)


def _prepare_redaction(config: RouterConfig) -> None:
    """Findings of every type the config redacts, for every redaction action."""
    settings = config.redaction
    if settings is None:
        return
    for kind in {t for m in (*settings.classes.values(), *settings.providers.values()) for t in m}:
        for action in REDACTION_ACTIONS:
            PII_FINDINGS.labels(kind, action)


def set_circuit_state(provider: str, backend: str, state: State) -> None:
    for s in State:
        CIRCUIT_STATE.labels(provider, backend, s).set(1 if s is state else 0)


def remove_circuit(provider: str, backend: str) -> None:
    for s in State:
        with contextlib.suppress(KeyError):
            CIRCUIT_STATE.remove(provider, backend, s)


def prepare_pool(pool: str) -> None:
    """Pre-create the series of a pool (``<namespace>/<name>``) of the loaded config."""
    POOL_READY_PODS.labels(pool)
    POOL_HELD.labels(pool)
    for outcome in HoldOutcome:
        POOL_HOLDS.labels(pool, outcome)
    for basis in Basis:
        POOL_PICKS.labels(pool, basis)


def remove_pool(pool: str) -> None:
    """Drop the gauges of a pool that left the config (its counters stay, as counters do)."""
    for gauge in (POOL_READY_PODS, POOL_HELD):
        with contextlib.suppress(KeyError):
            gauge.remove(pool)


def set_pool_ready_pods(pool: str, count: int) -> None:
    POOL_READY_PODS.labels(pool).set(count)


def set_pool_held(pool: str, count: int) -> None:
    POOL_HELD.labels(pool).set(count)


def pool_hold_ended(pool: str, outcome: HoldOutcome) -> None:
    POOL_HOLDS.labels(pool, outcome).inc()


@lru_cache(maxsize=256)
def _pick_child(pool: str, basis: str) -> Counter:
    return POOL_PICKS.labels(pool, basis)


def pool_pick(pool: str, basis: Basis) -> None:
    _pick_child(pool, basis).inc()


# The hot path: a child is a dictionary lookup away (LoopCounter, LoopHistogram), no label validation, no lock.

def request_done(model: str, provider: str, jurisdiction: str, data_class: str, outcome: Outcome,
                 duration_s: float) -> None:
    REQUESTS.labels(model, provider, jurisdiction, data_class, outcome).inc()
    if provider != NONE:
        REQUEST_DURATION.labels(provider).observe(duration_s)


def first_token(provider: str, seconds: float) -> None:
    TIME_TO_FIRST_TOKEN.labels(provider).observe(seconds)


def attempt(provider: str, reason: str) -> None:
    UPSTREAM_ATTEMPTS.labels(provider, reason).inc()


def failover(model: str, from_provider: str, reason: str) -> None:
    FAILOVERS.labels(model, from_provider, reason).inc()


def residency_denial(model: str, data_class: str) -> None:
    RESIDENCY_DENIALS.labels(model, data_class).inc()


def stream_error(provider: str, reason: str) -> None:
    STREAM_ERRORS_TOTAL.labels(provider, reason).inc()


def config_reload(result: str) -> None:
    CONFIG_RELOADS.labels(result).inc()


@lru_cache(maxsize=1024)
def _finding_child(kind: str, action: str) -> Counter:
    return PII_FINDINGS.labels(kind, action)


@lru_cache(maxsize=4096)
def _escalation_child(from_class: str, to_class: str, kind: str) -> Counter:
    return ESCALATIONS.labels(from_class, to_class, kind)


def pii_finding(kind: str, action: str, n: int = 1) -> None:
    """``n`` findings of type ``kind`` had ``action`` (one of :data:`REDACTION_ACTIONS`)."""
    _finding_child(kind, action).inc(n)


def detection_done(seconds: float, found: Mapping[str, int], pairs: Iterable[tuple[str, str, str]]) -> None:
    """One request scanned: ``found`` counts findings by type; ``pairs`` are its escalations (from, to, type)."""
    DETECTION_SECONDS.observe(seconds)
    if not found:
        return
    escalating = set()
    for pair in pairs:
        _escalation_child(*pair).inc()
        escalating.add(pair[2])
    for kind, n in found.items():
        _finding_child(kind, "escalated" if kind in escalating else "detected").inc(n)


def drill_injection(provider: str, fault: str) -> None:
    DRILL_INJECTIONS.labels(provider, fault).inc()


def set_drill_active(provider: str, fault: str, active: bool) -> None:
    DRILL_ACTIVE.labels(provider, fault).set(1 if active else 0)


def remove_drill(provider: str, fault: str) -> None:
    with contextlib.suppress(KeyError):
        DRILL_ACTIVE.remove(provider, fault)


def client_rejected(reason: Rejection) -> None:
    _REJECTION_CHILDREN[reason].inc()


class _Inflight:
    """Client requests being served: a plain count the gauge reads at scrape time (no lock per request)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> None:
        self.n += 1

    def dec(self) -> None:
        self.n -= 1


IN_FLIGHT = _Inflight()
"""``llmroute_inflight_requests`` (one event loop per process: an int is enough)."""
INFLIGHT.set_function(lambda: IN_FLIGHT.n)


def track_client_connections(count: Callable[[], float]) -> None:
    """``llmroute_client_connections`` is ``count()`` at each scrape (the server's own counter: no cost per
    connection)."""
    CLIENT_CONNECTIONS.set_function(count)
