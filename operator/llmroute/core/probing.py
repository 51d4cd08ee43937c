"""Shared provider health: what one unbilled health probe means, and the state it moves a provider to.

Owns the pure state machine behind ``ProviderPolicy.status.providers[]`` (the operator's shared prober,
:mod:`llmroute.controller.prober`, does the I/O and calls :func:`next_health` once per probe), the policy's summary
and ``Ready`` condition, the Events worth posting (:func:`transition_event`) and the no-churn write rule
(:func:`worth_writing`). Pure: ``now`` is passed in (an aware UTC datetime), nothing is read or written.

What a probe means (:func:`classify`):

========================================  ==================  ==============================================
Probe result                              Verdict             Effect
========================================  ==================  ==============================================
2xx                                       ``OK``              a good probe (slow or not, see below)
401, 403 (with the provider key)          ``MISCONFIGURED``   Misconfigured at once: the key is rejected
404                                       ``MISCONFIGURED``   Misconfigured at once: no such endpoint/path
402                                       ``EXHAUSTED``       Down at once: balance exhausted
429, 5xx, other status, no answer         ``FAILED``          counts towards ``failureThreshold``
a probe that could not be sent            ``MISCONFIGURED``   e.g. the key's Secret or key is missing
========================================  ==================  ==============================================

A probe sent **without** the key (the provider's Secret names no namespace, so each route brings its own key and
there is no shared one to test) proves reachability only: 401/403 then count as good probes.

States and hysteresis (the same thresholds as the router's circuits use for probes):

* **Down** only after ``failureThreshold`` failed probes in a row (or at once on 402); a Down or Misconfigured
  provider is **Healthy again only after** ``successThreshold`` good probes in a row. A provider that alternates
  failures and successes therefore never goes Down and never comes back: it stays where it is (Degraded if it was
  up), which is what hysteresis is for.
* **Degraded**: up, but not well: 1..failureThreshold-1 failed probes in a row from Healthy (it heals after
  ``successThreshold`` good ones), or **slow** - a good probe that took more than half the probe timeout. Slowness
  has its own hysteresis band: Degraded-by-slowness heals only on a probe under a quarter of the timeout (a probe in
  between keeps the current verdict). Degraded providers still serve; only Down and Misconfigured ones are skipped
  in the routes' active backends.
* **Unknown** until the first good probe or ``failureThreshold`` failures; a first good probe makes it Healthy (there
  is nothing to recover from).

No status churn: the counters are **capped at their threshold** (beyond it they decide nothing and would change on
every probe), reasons are built from fixed texts (no latency in them), and :func:`worth_writing` says a provider's
entry needs writing only when state, reason or a counter changed, or when the written ``lastSuccessTime`` /
``lastFailureTime`` is older than :data:`HEARTBEAT_S`. ``latencyMs`` rides along with those writes; the live
latency is the ``llmroute_provider_probe_latency_seconds`` metric.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from enum import StrEnum

from llmroute.api.base import parse_duration
from llmroute.api.provider_policy import HealthCheck, ProviderHealth, ProviderState

SLOW_FRACTION = 0.5
"""A good probe slower than this fraction of the timeout makes the provider Degraded."""
FAST_FRACTION = 0.25
"""A provider Degraded by slowness heals only on a probe faster than this fraction of the timeout."""
HEARTBEAT_S = 60.0
"""Unchanged health is rewritten (fresh timestamps and latency) at most this often."""
UNHEALTHY = frozenset({ProviderState.DOWN, ProviderState.MISCONFIGURED})
"""States the routes skip when they pick an active backend."""
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class Verdict(StrEnum):
    OK = "ok"
    FAILED = "failed"
    MISCONFIGURED = "misconfigured"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True)
class ProbeResult:
    """One probe as the prober saw it. ``status`` is None when no HTTP answer came (``error`` then says why, in a
    few words and without any key or body); ``not_sent`` says why no probe could be sent at all."""

    status: int | None = None
    latency_s: float = 0.0
    error: str = ""
    key_checked: bool = True
    not_sent: str = ""


@dataclass(frozen=True)
class ProviderEvent:
    """A Kubernetes Event the prober posts on the ProviderPolicy for a state transition."""

    warning: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Readiness:
    """The ProviderPolicy's ``Ready`` condition as the prober sees it (``status``: True, False or Unknown)."""

    status: str
    reason: str
    message: str


_STATUS_REASONS = {
    401: "unauthorized (HTTP 401): the API key was rejected",
    403: "forbidden (HTTP 403): the API key may not list models",
    404: "not found (HTTP 404): check the endpoint and healthCheck.path",
    402: "balance exhausted (HTTP 402)",
    429: "rate limited (HTTP 429)",
}


def classify(result: ProbeResult) -> tuple[Verdict, str]:
    """The verdict on one probe and a short, fixed-text reason (empty for a plain good probe)."""
    if result.not_sent:
        return Verdict.MISCONFIGURED, result.not_sent
    status = result.status
    if status is None:
        return Verdict.FAILED, result.error or "no answer"
    if 200 <= status < 300:
        return Verdict.OK, ""
    if status in (401, 403):
        if not result.key_checked:
            return Verdict.OK, ""
        return Verdict.MISCONFIGURED, _STATUS_REASONS[status]
    if status == 404:
        return Verdict.MISCONFIGURED, _STATUS_REASONS[404]
    if status == 402:
        return Verdict.EXHAUSTED, _STATUS_REASONS[402]
    return Verdict.FAILED, _STATUS_REASONS.get(status, f"HTTP {status}")


def slow_reason(timeout_s: float) -> str:
    return f"slow: probes take over half the {timeout_s:g}s timeout"


def timestamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime(TIME_FORMAT)


def next_health(prev: ProviderHealth, result: ProbeResult, now: datetime.datetime,
                check: HealthCheck) -> ProviderHealth:
    """The provider's health after ``result`` (see the module docstring for the rules)."""
    verdict, why = classify(result)
    latency = None if result.not_sent else round(result.latency_s * 1000)
    stamp = timestamp(now)
    if verdict is not Verdict.OK:
        failures = min(prev.consecutive_failures + 1, check.failure_threshold)
        state, reason = _after_failure(prev, verdict, why, failures, check.failure_threshold)
        return prev.model_copy(update={
            "state": state, "reason": reason, "consecutive_failures": failures, "consecutive_successes": 0,
            "last_failure_time": stamp, "latency_ms": latency})
    successes = min(prev.consecutive_successes + 1, check.success_threshold)
    state, reason = _after_success(prev, result.latency_s, parse_duration(check.timeout), successes,
                                   check.success_threshold)
    return prev.model_copy(update={
        "state": state, "reason": reason, "consecutive_failures": 0, "consecutive_successes": successes,
        "last_success_time": stamp, "latency_ms": latency})


def _after_failure(prev: ProviderHealth, verdict: Verdict, why: str, failures: int,
                   threshold: int) -> tuple[ProviderState, str | None]:
    if verdict is Verdict.MISCONFIGURED:
        return ProviderState.MISCONFIGURED, why
    if verdict is Verdict.EXHAUSTED:
        return ProviderState.DOWN, why
    if failures >= threshold:
        return ProviderState.DOWN, f"{why}; {failures} failed probes in a row"
    counting = f"{why}; {failures} of {threshold} failed probes before Down"
    if prev.state in (ProviderState.HEALTHY, ProviderState.DEGRADED):
        return ProviderState.DEGRADED, counting
    if prev.state is ProviderState.UNKNOWN:
        return ProviderState.UNKNOWN, counting
    if prev.state is ProviderState.DOWN:
        return ProviderState.DOWN, f"still down: {why}"
    return prev.state, prev.reason  # Misconfigured stays so (and for why) until enough failures make it Down


def _after_success(prev: ProviderHealth, latency_s: float, timeout_s: float, successes: int,
                   threshold: int) -> tuple[ProviderState, str | None]:
    slow_text = slow_reason(timeout_s)
    was_slow = prev.state is ProviderState.DEGRADED and prev.reason == slow_text
    slow = latency_s > SLOW_FRACTION * timeout_s or (was_slow and latency_s > FAST_FRACTION * timeout_s)
    recovering = prev.state in UNHEALTHY or (prev.state is ProviderState.DEGRADED and not was_slow)
    if recovering and successes < threshold:
        return prev.state, slow_text if slow and prev.state is ProviderState.DEGRADED else (
            f"recovering: {successes} of {threshold} good probes")
    if slow:
        return ProviderState.DEGRADED, slow_text
    return ProviderState.HEALTHY, None


def transition_event(prev: ProviderHealth, new: ProviderHealth) -> ProviderEvent | None:
    """The Event for a state change worth telling: into Down or Misconfigured, and back up from them."""
    if new.state == prev.state:
        return None
    if new.state is ProviderState.DOWN:
        return ProviderEvent(True, "ProviderDown", f"provider {new.name} is Down: {new.reason}")
    if new.state is ProviderState.MISCONFIGURED:
        return ProviderEvent(True, "ProviderMisconfigured", f"provider {new.name} is Misconfigured: {new.reason}")
    if prev.state in UNHEALTHY and new.state in (ProviderState.HEALTHY, ProviderState.DEGRADED):
        return ProviderEvent(False, "ProviderRecovered",
                             f"provider {new.name} is {new.state} again (was {prev.state})")
    return None


def summary(providers: list[ProviderHealth], max_names: int = 3) -> str:
    """``"3/5 healthy, Down: deepseek, Degraded: vllm"`` for ``kubectl get providerpolicies``."""
    healthy = sum(p.state is ProviderState.HEALTHY for p in providers)
    parts = [f"{healthy}/{len(providers)} healthy"]
    for state in (ProviderState.DOWN, ProviderState.MISCONFIGURED, ProviderState.DEGRADED, ProviderState.UNKNOWN):
        names = [p.name for p in providers if p.state is state]
        if names:
            more = f" +{len(names) - max_names}" if len(names) > max_names else ""
            parts.append(f"{state}: {' '.join(names[:max_names])}{more}")
    return ", ".join(parts)


def readiness(providers: list[ProviderHealth]) -> Readiness:
    """Ready=False while any provider is Down or Misconfigured, Unknown while any is unprobed, else True."""
    out = [f"{p.name} ({p.state}: {p.reason})" for p in providers if p.state in UNHEALTHY]
    if out:
        return Readiness("False", "ProvidersUnavailable", "not answering: " + "; ".join(out))
    if any(p.state is ProviderState.UNKNOWN for p in providers):
        return Readiness("Unknown", "Probing", "some providers have not been probed successfully yet")
    return Readiness("True", "ProvidersAnswering", "every provider answers its health check")


def worth_writing(written: ProviderHealth | None, new: ProviderHealth, now: datetime.datetime,
                  heartbeat_s: float = HEARTBEAT_S) -> bool:
    """Whether ``new`` differs from what status says enough to patch it (see "No status churn" above)."""
    if written is None:
        return True
    def key(h: ProviderHealth) -> tuple[object, ...]:
        return (h.name, h.state, h.reason, h.consecutive_failures, h.consecutive_successes,
                h.last_success_time is None, h.last_failure_time is None)
    if key(written) != key(new):
        return True
    last = written.last_success_time if new.consecutive_successes else written.last_failure_time
    return last is None or (now - _parse(last)).total_seconds() >= heartbeat_s


def unhealthy_key(providers: list[ProviderHealth]) -> str:
    """A short fingerprint of which providers are Down, Misconfigured or Cold (a ModelPool with no ready replica):
    what the routes' status depends on."""
    pairs = sorted(f"{p.name}={p.state}" for p in providers if p.state in UNHEALTHY or p.state is ProviderState.COLD)
    return hashlib.sha256(",".join(pairs).encode()).hexdigest()[:16] if pairs else "all-up"


def _parse(stamp: str) -> datetime.datetime:
    return datetime.datetime.strptime(stamp, TIME_FORMAT).replace(tzinfo=datetime.UTC)
