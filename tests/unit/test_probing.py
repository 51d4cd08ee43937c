"""core.probing (pure): the shared prober's verdicts, hysteresis, Events, summary, Ready and the no-churn write rule,
table-driven with an exact ``now``."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from llmroute.api.provider_policy import HealthCheck, ProviderHealth, ProviderState
from llmroute.core import probing
from llmroute.core.probing import ProbeResult

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
T = "2026-01-01T12:00:00Z"
EARLIER = "2026-01-01T11:59:00Z"
CHECK = HealthCheck(timeout="4s", failure_threshold=3, success_threshold=2)
U, H, DG, D, M = (ProviderState.UNKNOWN, ProviderState.HEALTHY, ProviderState.DEGRADED, ProviderState.DOWN,
                  ProviderState.MISCONFIGURED)
SLOW = probing.slow_reason(4.0)
REFUSED = ProbeResult(error="connection refused", latency_s=0.002)


def health(state: ProviderState = U, cf: int = 0, cs: int = 0, reason: str | None = None, **kw: Any) -> ProviderHealth:
    return ProviderHealth(name="deepseek", state=state, consecutive_failures=cf, consecutive_successes=cs,
                          reason=reason, **kw)


def ok(latency_s: float = 0.1, status: int = 200) -> ProbeResult:
    return ProbeResult(status=status, latency_s=latency_s)


def http(status: int) -> ProbeResult:
    return ProbeResult(status=status, latency_s=0.05)


CASES = [
    # (id, previous, probe, state, failures, successes, reason)
    ("unknown-first-good-is-healthy", health(), ok(), H, 0, 1, None),
    ("unknown-failure-stays-unknown", health(), REFUSED, U, 1, 0,
     "connection refused; 1 of 3 failed probes before Down"),
    ("healthy-failure-degrades", health(H, cs=2), REFUSED, DG, 1, 0,
     "connection refused; 1 of 3 failed probes before Down"),
    ("threshold-reached-down", health(DG, cf=2), ProbeResult(error="timed out after 4s"), D, 3, 0,
     "timed out after 4s; 3 failed probes in a row"),
    ("down-failures-capped", health(D, cf=3), REFUSED, D, 3, 0, "connection refused; 3 failed probes in a row"),
    ("down-one-good-not-enough", health(D, cf=3), ok(), D, 0, 1, "recovering: 1 of 2 good probes"),
    ("down-success-threshold-healthy", health(D, cs=1), ok(), H, 0, 2, None),
    ("down-recovers-slow-as-degraded", health(D, cs=1), ok(2.5), DG, 0, 2, SLOW),
    ("down-failure-after-402", health(D, cf=1, reason="balance exhausted (HTTP 402)"), http(503), D, 2, 0,
     "still down: HTTP 503"),
    ("healthy-successes-capped", health(H, cs=2), ok(), H, 0, 2, None),
    ("401-misconfigured-at-once", health(H, cs=2), http(401), M, 1, 0,
     "unauthorized (HTTP 401): the API key was rejected"),
    ("403-misconfigured-at-once", health(H, cs=2), http(403), M, 1, 0,
     "forbidden (HTTP 403): the API key may not list models"),
    ("404-misconfigured-at-once", health(H, cs=2), http(404), M, 1, 0,
     "not found (HTTP 404): check the endpoint and healthCheck.path"),
    ("402-down-at-once", health(H, cs=2), http(402), D, 1, 0, "balance exhausted (HTTP 402)"),
    ("429-counts-as-failure", health(H, cs=2), http(429), DG, 1, 0,
     "rate limited (HTTP 429); 1 of 3 failed probes before Down"),
    ("503-counts-as-failure", health(H, cs=2), http(503), DG, 1, 0, "HTTP 503; 1 of 3 failed probes before Down"),
    ("redirect-counts-as-failure", health(H, cs=2), http(302), DG, 1, 0, "HTTP 302; 1 of 3 failed probes before Down"),
    ("401-without-key-is-reachable", health(), ProbeResult(status=401, latency_s=0.1, key_checked=False), H, 0, 1,
     None),
    ("not-sent-is-misconfigured", health(H, cs=2), ProbeResult(not_sent='Secret ns/keys has no key "x"'), M, 1, 0,
     'Secret ns/keys has no key "x"'),
    ("misconfigured-transport-failure-keeps-reason", health(M, cf=1, reason="unauthorized"), REFUSED, M, 2, 0,
     "unauthorized"),
    ("misconfigured-enough-failures-down", health(M, cf=2, reason="unauthorized"), REFUSED, D, 3, 0,
     "connection refused; 3 failed probes in a row"),
    ("misconfigured-one-good-not-enough", health(M, cf=1, reason="unauthorized"), ok(), M, 0, 1,
     "recovering: 1 of 2 good probes"),
    ("degraded-by-failures-heals-after-threshold", health(DG, cs=1, reason="x"), ok(), H, 0, 2, None),
    ("degraded-by-failures-one-good-not-enough", health(DG, cf=1, reason="x"), ok(), DG, 0, 1,
     "recovering: 1 of 2 good probes"),
    ("slow-degrades", health(H, cs=2), ok(2.1), DG, 0, 2, SLOW),
    ("slow-band-keeps-degraded", health(DG, cs=2, reason=SLOW), ok(1.5), DG, 0, 2, SLOW),
    ("slow-band-keeps-healthy", health(H, cs=2), ok(1.5), H, 0, 2, None),
    ("fast-heals-slow", health(DG, cs=2, reason=SLOW), ok(0.9), H, 0, 2, None),
]


@pytest.mark.parametrize(("prev", "result", "state", "failures", "successes", "reason"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_next_health(prev: ProviderHealth, result: ProbeResult, state: ProviderState, failures: int,
                     successes: int, reason: str | None) -> None:
    new = probing.next_health(prev, result, NOW, CHECK)
    assert (new.state, new.consecutive_failures, new.consecutive_successes, new.reason) == (
        state, failures, successes, reason)
    failed = failures > 0
    assert (new.last_failure_time if failed else new.last_success_time) == T
    assert (new.last_success_time if failed else new.last_failure_time) == (
        getattr(prev, "last_failure_time" if failed else "last_success_time"))
    assert new.latency_ms == (None if result.not_sent else round(result.latency_s * 1000))


@pytest.mark.parametrize(("start", "never"), [(H, D), (D, H)], ids=["up-never-down", "down-never-up"])
def test_flapping_holds(start: ProviderState, never: ProviderState) -> None:
    h = health(start, cs=2 if start is H else 0, cf=3 if start is D else 0)
    seen = []
    for i in range(20):
        h = probing.next_health(h, REFUSED if i % 2 == 0 else ok(), NOW, CHECK)
        seen.append(h.state)
    assert never not in seen
    assert set(seen) == ({DG} if start is H else {D})


@pytest.mark.parametrize(("prev", "new", "expected"), [
    pytest.param(health(DG), health(D, reason="HTTP 503; 3 failed probes in a row"),
                 (True, "ProviderDown", "provider deepseek is Down: HTTP 503; 3 failed probes in a row"), id="down"),
    pytest.param(health(H), health(M, reason="unauthorized"),
                 (True, "ProviderMisconfigured", "provider deepseek is Misconfigured: unauthorized"), id="misconf"),
    pytest.param(health(D), health(H), (False, "ProviderRecovered", "provider deepseek is Healthy again (was Down)"),
                 id="recovered"),
    pytest.param(health(M), health(DG),
                 (False, "ProviderRecovered", "provider deepseek is Degraded again (was Misconfigured)"),
                 id="recovered-slow"),
    pytest.param(health(U), health(H), None, id="first-probe-quiet"),
    pytest.param(health(H), health(DG), None, id="degraded-quiet"),
    pytest.param(health(D, reason="a"), health(D, reason="b"), None, id="same-state-quiet"),
])
def test_transition_event(prev: ProviderHealth, new: ProviderHealth, expected: tuple[bool, str, str] | None) -> None:
    event = probing.transition_event(prev, new)
    assert (event.warning, event.reason, event.message) == expected if event else expected is None


def named(name: str, state: ProviderState, reason: str | None = None) -> ProviderHealth:
    return ProviderHealth(name=name, state=state, reason=reason)


def test_summary_and_readiness() -> None:
    up = [named("a", H), named("b", H), named("c", DG)]
    assert probing.summary(up) == "2/3 healthy, Degraded: c"
    assert probing.readiness(up).status == "True"
    probing_ = [named("a", H), named("b", U)]
    assert probing.summary(probing_) == "1/2 healthy, Unknown: b"
    assert probing.readiness(probing_).reason == "Probing"
    down = [named("a", D, "HTTP 503"), named("b", M, "unauthorized"), named("c", H), named("d", D, "x"),
            named("e", D, "y"), named("f", D, "z")]
    assert probing.summary(down) == "1/6 healthy, Down: a d e +1, Misconfigured: b"
    ready = probing.readiness(down)
    assert (ready.status, ready.reason) == ("False", "ProvidersUnavailable")
    assert ready.message.startswith("not answering: a (Down: HTTP 503); b (Misconfigured: unauthorized)")


@pytest.mark.parametrize(("written", "new", "expected"), [
    pytest.param(None, health(H, cs=1, last_success_time=T), True, id="never-written"),
    pytest.param(health(H, cs=2, last_success_time=EARLIER, latency_ms=5),
                 health(H, cs=2, last_success_time=T, latency_ms=9), True, id="heartbeat-due"),
    pytest.param(health(H, cs=2, last_success_time="2026-01-01T11:59:30Z", latency_ms=5),
                 health(H, cs=2, last_success_time=T, latency_ms=9), False, id="only-time-and-latency"),
    pytest.param(health(D, cf=3, last_failure_time="2026-01-01T11:59:30Z", reason="r"),
                 health(D, cf=3, last_failure_time=T, reason="r"), False, id="steady-outage"),
    pytest.param(health(D, cf=3, last_failure_time="2026-01-01T11:59:30Z", reason="r"),
                 health(D, cf=3, last_failure_time=T, reason="s"), True, id="reason-changed"),
    pytest.param(health(H, cs=1, last_success_time="2026-01-01T11:59:50Z"),
                 health(H, cs=2, last_success_time=T), True, id="counter-changed"),
    pytest.param(health(H, cs=2, last_success_time=T), health(DG, cs=2, last_success_time=T, reason=SLOW), True,
                 id="state-changed"),
])
def test_worth_writing(written: ProviderHealth | None, new: ProviderHealth, expected: bool) -> None:
    assert probing.worth_writing(written, new, NOW) is expected


def test_unhealthy_key_depends_only_on_down_and_misconfigured() -> None:
    base = [named("a", H), named("b", DG)]
    assert probing.unhealthy_key(base) == probing.unhealthy_key([named("a", U), named("b", H)]) == "all-up"
    down = probing.unhealthy_key([named("a", D, "x"), named("b", H)])
    assert down == probing.unhealthy_key([named("b", DG), named("a", D, "other reason")])
    assert down not in ("all-up", probing.unhealthy_key([named("a", M), named("b", H)]))
