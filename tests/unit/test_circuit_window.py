"""The circuit's event window against a plain reference: after any sequence of outcomes at any spacing, it holds
exactly the newest ``max(MIN_WINDOW_EVENTS, minRequests)`` events no older than ``window``, and counts their
failures (the steady-state fast path of ``_windowed`` included: full windows under load)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmroute.core import circuit
from llmroute.core.router_config import CircuitSettings

pytestmark = pytest.mark.unit

SETTINGS = CircuitSettings(consecutiveFailures=1000, errorRate=1.0, minRequests=20, windowS=2.0, openS=30,
                           recoverySteps=[0.5], recoveryStepS=10, slowFirstTokenS=60)
CAP = max(circuit.MIN_WINDOW_EVENTS, SETTINGS.min_requests)


def reference(events: list[tuple[float, bool]], now: float) -> list[tuple[float, bool]]:
    kept = [e for e in events if e[0] >= now - SETTINGS.window_s]
    return kept[-CAP:]


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.0005, 0.002]), st.booleans()), min_size=CAP + 20, max_size=700),
       st.lists(st.tuples(st.integers(0, 699), st.sampled_from([0.5, 1.9, 3.0])), max_size=4))
def test_the_window_is_the_newest_events_within_its_span(steps: list[tuple[float, bool]],
                                                        pauses: list[tuple[int, float]]) -> None:
    """Bursts of outcomes (full windows) with a few pauses (events age out of the window's span)."""
    gaps = dict(pauses)
    c, now, seen, full = circuit.Circuit(since=0.0), 0.0, [], 0
    for i, (gap, ok) in enumerate(steps):
        now += gap + gaps.get(i, 0.0)
        full += len(c.events) == CAP
        c = circuit.record(c, ok, now, SETTINGS).circuit
        seen.append((now, ok))
        expected = reference(seen, now)
        assert list(c.events) == expected
        assert c.failures == sum(not ok for _, ok in expected)
    assert full or pauses  # the full-window path ran (unless pauses kept emptying the window)


HEALTHY_PATH = SETTINGS.model_copy(update={"consecutive_failures": 5, "error_rate": 0.5})
"""Thresholds that a window without failures cannot cross: ``record`` takes its own path for such a success."""


@pytest.mark.parametrize("gap", [0.0, 0.001, 0.0078125, 0.01])
def test_successes_into_a_full_window_without_failures_keep_the_newest(gap: float) -> None:
    """Thousands of successes (the steady state under load), once with a failure in the middle that has to age out
    of the window before ``record``'s fast path applies again; at 0.0078125 (2^-7, exact) the 2 s span holds the cap
    give or take one (the boundary of the fast path's test), at 0.01 fewer events than the cap, so the oldest go by
    age instead."""
    c, now, seen = circuit.Circuit(since=0.0), 0.0, []
    for i in range(3 * CAP):
        now += gap
        ok = i != CAP + 7
        t = circuit.record(c, ok, now, HEALTHY_PATH)
        c = t.circuit
        seen.append((now, ok))
        expected = reference(seen, now)
        assert list(c.events) == expected, i
        assert c.failures == sum(not ok for _, ok in expected)
        assert c.state is circuit.State.HEALTHY and not t.changed
