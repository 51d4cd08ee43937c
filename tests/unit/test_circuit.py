"""Circuit breaker: opening on failures and error rate, degraded hysteresis, probes, stepped recovery, the window."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from llmroute.core.circuit import (
    Circuit,
    State,
    Transition,
    error_rate,
    on_probe,
    open_now,
    record,
    retry_in_s,
    summary,
    tick,
    traffic_share,
)
from tests.conftest import CIRCUIT

pytestmark = pytest.mark.unit

S = CIRCUIT

HEALTHY, DEGRADED, OPEN, RECOVERING = State.HEALTHY, State.DEGRADED, State.OPEN, State.RECOVERING


def apply(c: Circuit, t: float, op: str) -> Transition:
    """One event: ok | fail | slow | probe-ok | probe-fail | tick | take-out."""
    match op:
        case "ok" | "fail" | "slow":
            return record(c, op != "fail", t, S, slow=op == "slow")
        case "probe-ok" | "probe-fail":
            return on_probe(c, op == "probe-ok", t, S)
        case "tick":
            return tick(c, t, S)
        case "take-out":
            return open_now(c, t, "balance exhausted (402)")
    raise AssertionError(op)


def run(steps: Sequence[tuple[float, str]], c: Circuit | None = None) -> tuple[Circuit, list[State]]:
    c = c or Circuit()
    states = []
    for t, op in steps:
        c = apply(c, t, op).circuit
        states.append(c.state)
    return c, states


def failures(*times: float) -> list[tuple[float, str]]:
    return [(t, "fail") for t in times]


def opened_at(t: float) -> Circuit:
    c, _ = run(failures(t - 4, t - 3, t - 2, t - 1, t))
    assert c.state is OPEN and c.since == t
    return c


def recovering_at(t: float) -> Circuit:
    c = on_probe(opened_at(t - S.open_s), True, t, S).circuit
    assert c.state is RECOVERING and c.since == t
    return c


@pytest.mark.parametrize(
    ("n", "state", "reason"),
    [
        pytest.param(1, HEALTHY, "", id="1-healthy"),
        pytest.param(2, HEALTHY, "", id="2-healthy"),
        pytest.param(3, DEGRADED, "3 consecutive failures", id="3-half-threshold-degrades"),
        pytest.param(4, DEGRADED, "3 consecutive failures", id="4-still-degraded"),
        pytest.param(5, OPEN, "5 consecutive failures", id="5-opens"),
    ],
)
def test_consecutive_failures(n: int, state: State, reason: str) -> None:
    c, _ = run(failures(*range(n)))
    assert (c.state, c.reason, c.consecutive_failures) == (state, reason, n)


def test_success_resets_consecutive_failures() -> None:
    c, states = run([*failures(0, 1), (2, "ok"), *failures(3, 4)])
    assert states == [HEALTHY] * 5
    assert c.consecutive_failures == 2


def test_slow_first_token_counts_as_failure() -> None:
    t = record(Circuit(), True, 0.0, S, slow=True)
    assert t.circuit.events == ((0.0, False),)
    assert t.reason == "slow first token while healthy"
    _, states = run([(1, "slow"), (2, "slow")], t.circuit)
    assert states == [HEALTHY, DEGRADED]


# Failures never 3 in a row, so only the error rate can act.
_NINE = [(0, "fail"), (1, "ok"), (2, "fail"), (3, "ok"), (4, "fail"), (5, "ok"), (6, "fail"), (7, "ok"), (8, "fail")]


@pytest.mark.parametrize(
    ("steps", "state", "reason"),
    [
        pytest.param(_NINE, HEALTHY, "", id="56pct-of-9-below-min-requests"),
        pytest.param([*_NINE, (9, "fail")], OPEN, "error rate 60% over 30s (10 requests)", id="60pct-of-10-opens"),
        pytest.param([*_NINE, (9, "ok")], OPEN, "error rate 50% over 30s (10 requests)", id="50pct-at-threshold-opens"),
        pytest.param([(t, "fail" if t % 3 == 0 else "ok") for t in range(1, 11)], DEGRADED,
                     "error rate 30% over 30s (10 requests)", id="30pct-degrades"),
        pytest.param([(t, "fail" if t % 5 == 0 else "ok") for t in range(1, 11)], HEALTHY, "", id="20pct-healthy"),
    ],
)
def test_error_rate_needs_min_requests(steps: list[tuple[float, str]], state: State, reason: str) -> None:
    c, _ = run(steps)
    assert (c.state, c.reason) == (state, reason)


def test_window_pruning() -> None:
    c, _ = run([(0, "ok"), (10, "fail"), (20, "ok")])
    assert tick(c, 35.0, S).circuit.events == ((10, False), (20, True))
    assert tick(c, 40.0, S).circuit.events == ((10, False), (20, True))  # exactly window_s old is kept
    assert tick(c, 40.5, S).circuit.events == ((20, True),)
    assert record(c, True, 51.0, S).circuit.events == ((51.0, True),)


def test_old_failures_age_out_of_the_error_rate() -> None:
    c, _ = run(_NINE)
    c, states = run([(40, "fail"), (41, "ok")], c)
    assert states == [HEALTHY, HEALTHY]
    assert error_rate(c) == 0.5
    assert len(c.events) == 2


def test_window_is_bounded() -> None:
    c, _ = run([(0.0, "ok")] * 300)
    assert len(c.events) == 256


@pytest.mark.parametrize(
    ("steps", "states"),
    [
        pytest.param([(11, "ok")], [DEGRADED], id="one-success-does-not-flap-back"),
        pytest.param([(11, "ok"), (39, "ok")], [DEGRADED, DEGRADED], id="dwell-not-reached"),
        pytest.param([(11, "ok"), (40, "ok")], [DEGRADED, DEGRADED], id="dwelt-but-rate-33pct-above-12pct"),
        pytest.param([(11, "ok"), (40, "ok"), (41, "ok")], [DEGRADED, DEGRADED, HEALTHY],
                     id="dwelt-and-clean-window-heals"),
        pytest.param([(11, "ok"), (41, "fail")], [DEGRADED, DEGRADED], id="last-outcome-a-failure"),
        pytest.param([(39, "tick")], [DEGRADED], id="quiet-tick-before-dwell"),
        pytest.param([(41, "tick")], [HEALTHY], id="quiet-tick-after-dwell-heals"),
        pytest.param([(11, "fail"), (12, "fail")], [DEGRADED, OPEN], id="degraded-keeps-counting-to-open"),
        pytest.param([(20, "probe-ok"), (41, "probe-fail")], [DEGRADED, DEGRADED], id="probes-ignored-while-degraded"),
    ],
)
def test_degraded_hysteresis(steps: list[tuple[float, str]], states: list[State]) -> None:
    degraded, _ = run(failures(8, 9, 10))
    assert (degraded.state, degraded.since) == (DEGRADED, 10)
    healed, got = run(steps, degraded)
    assert got == states
    if healed.state is HEALTHY:
        assert healed.consecutive_failures == 0
        assert healed.reason.startswith("error rate 0% < 12% after 3")


@pytest.mark.parametrize(
    ("steps", "state", "since"),
    [
        pytest.param([(1000, "tick")], OPEN, 100, id="time-alone-never-closes"),
        pytest.param([(129, "probe-ok")], OPEN, 100, id="good-probe-before-open-s"),
        pytest.param([(131, "probe-fail")], OPEN, 100, id="failed-probe-keeps-since"),
        pytest.param([(131, "probe-fail"), (132, "probe-ok")], RECOVERING, 132, id="next-good-probe-recovers"),
        pytest.param([(130, "probe-ok")], RECOVERING, 130, id="good-probe-at-open-s"),
        pytest.param([(101, "ok"), (102, "fail")], OPEN, 100, id="stragglers-do-not-move-it"),
    ],
)
def test_open_needs_open_s_and_a_good_probe(steps: list[tuple[float, str]], state: State, since: float) -> None:
    c, _ = run(steps, opened_at(100))
    assert (c.state, c.since) == (state, since)


def test_probe_to_recovering_starts_clean_and_never_healthy() -> None:
    t = on_probe(opened_at(100), True, 140.0, S)
    assert t.changed
    assert t.circuit == Circuit(RECOVERING, 140.0, 0, (), 0, "probe ok after 40s open: recovering at 10% share")
    assert traffic_share(t.circuit, S) == 0.1


@pytest.mark.parametrize(
    ("t", "state", "share", "stepped"),
    [
        pytest.param(14.9, RECOVERING, 0.1, False, id="step-1-10pct"),
        pytest.param(15.0, RECOVERING, 0.5, True, id="step-2-50pct"),
        pytest.param(29.9, RECOVERING, 0.5, False, id="still-step-2"),
        pytest.param(30.0, RECOVERING, 1.0, True, id="step-3-100pct"),
        pytest.param(45.0, HEALTHY, 1.0, False, id="healthy-after-last-step"),
    ],
)
def test_recovery_steps(t: float, state: State, share: float, stepped: bool) -> None:
    c = recovering_at(0)
    for earlier in (x for x in (14.9, 15.0, 29.9, 30.0, 45.0) if x < t):
        c = tick(c, earlier, S).circuit
    tr = tick(c, t, S)
    assert (tr.circuit.state, traffic_share(tr.circuit, S), tr.stepped) == (state, share, stepped)
    assert tr.changed == (state is HEALTHY)


def test_late_tick_catches_up_on_steps() -> None:
    c = tick(recovering_at(0), 31.0, S).circuit
    assert (c.state, c.step, c.reason) == (RECOVERING, 2, "recovering: step 3/3")
    healthy = tick(c, 45.0, S)
    assert healthy.changed and healthy.reason == "recovered: 3 steps of 15s without failures"
    assert (healthy.circuit.state, healthy.circuit.step, healthy.circuit.since) == (HEALTHY, 0, 45.0)


@pytest.mark.parametrize(
    ("op", "reason"),
    [
        pytest.param("fail", "failure while recovering at 50% share", id="failure"),
        pytest.param("slow", "slow first token while recovering at 50% share", id="slow"),
        pytest.param("probe-fail", "probe failed while recovering at 50% share", id="probe-failure"),
        pytest.param("take-out", "balance exhausted (402)", id="take-out"),
    ],
)
def test_failure_while_recovering_reopens(op: str, reason: str) -> None:
    c = tick(recovering_at(0), 20.0, S).circuit
    t = apply(c, 22.0, op)
    assert t.changed
    assert (t.circuit.state, t.circuit.since, t.circuit.step, t.circuit.reason) == (OPEN, 22.0, 0, reason)


def test_success_while_recovering_does_not_skip_steps() -> None:
    c, states = run([(1, "ok"), (2, "ok"), (3, "ok"), (4, "probe-ok")], recovering_at(0))
    assert states == [RECOVERING] * 4
    assert c.step == 0 and c.since == 0


def test_take_out_needs_a_probe() -> None:
    c, states = run([(5, "take-out"), (500, "tick"), (501, "ok"), (502, "probe-fail"), (503, "probe-ok")])
    assert states == [OPEN, OPEN, OPEN, OPEN, RECOVERING]
    assert c.since == 503


def test_open_now_on_an_open_circuit_keeps_since() -> None:
    t = open_now(opened_at(100), 110.0, "unauthorized")
    assert not t.changed
    assert (t.circuit.state, t.circuit.since, t.circuit.reason) == (OPEN, 100, "unauthorized")


@pytest.mark.parametrize(
    ("circuit", "share"),
    [
        pytest.param(Circuit(HEALTHY), 1.0, id="healthy"),
        pytest.param(Circuit(DEGRADED), 1.0, id="degraded"),
        pytest.param(Circuit(OPEN), 0.0, id="open"),
        pytest.param(Circuit(RECOVERING, step=0), 0.1, id="recovering-step-0"),
        pytest.param(Circuit(RECOVERING, step=1), 0.5, id="recovering-step-1"),
        pytest.param(Circuit(RECOVERING, step=2), 1.0, id="recovering-step-2"),
    ],
)
def test_traffic_share(circuit: Circuit, share: float) -> None:
    assert traffic_share(circuit, S) == share


@pytest.mark.parametrize(
    ("circuit", "now", "wait"),
    [
        pytest.param(Circuit(OPEN, since=100), 110, 20.0, id="open-waits-out-open-s"),
        pytest.param(Circuit(OPEN, since=100), 140, 1.0, id="open-past-open-s-awaits-probe"),
        pytest.param(Circuit(RECOVERING, since=100), 110, 0.0, id="recovering"),
        pytest.param(Circuit(DEGRADED, since=100), 110, 0.0, id="degraded"),
        pytest.param(Circuit(), 110, 0.0, id="healthy"),
    ],
)
def test_retry_in_s(circuit: Circuit, now: float, wait: float) -> None:
    assert retry_in_s(circuit, now, S) == wait


@pytest.mark.parametrize(
    ("circuit", "text"),
    [
        pytest.param(Circuit(), "healthy", id="healthy"),
        pytest.param(Circuit(OPEN, 88, reason="5 consecutive failures"),
                     "circuit open since 12s: 5 consecutive failures", id="open"),
        pytest.param(Circuit(DEGRADED, 95, reason="3 consecutive failures"),
                     "degraded since 5s: 3 consecutive failures", id="degraded"),
        pytest.param(Circuit(RECOVERING, 90, step=1), "recovering at 50% share (step 2/3)", id="recovering"),
    ],
)
def test_summary(circuit: Circuit, text: str) -> None:
    assert summary(circuit, 100.0, S) == text


def test_transitions_explain_themselves() -> None:
    t = record(Circuit(), False, 1.0, S)
    assert (t.changed, t.reason) == (False, "failure while healthy")
    opened = opened_at(10)
    assert on_probe(opened, True, 20.0, S).reason == "probe ok but open for 10s < 30s: still open"
    assert on_probe(opened, False, 50.0, S).reason == "probe failed: still open (5 consecutive failures)"
    assert tick(opened, 20.0, S).reason == "open for 10s: only a good probe brings it back"
    assert on_probe(Circuit(), True, 1.0, S).reason == "probe ok: ignored while healthy (passive outcomes decide)"


def test_failure_count_stays_exact_over_random_histories() -> None:
    """The incremental ``failures`` counter (kept so the error rate is O(1) per request) never drifts."""
    import random

    rng = random.Random(7)
    c, now = Circuit(), 0.0
    for _ in range(5000):
        now += rng.random() * 0.5
        action = rng.random()
        if action < 0.8:
            c = record(c, rng.random() < 0.7, now, S).circuit
        elif action < 0.9:
            c = tick(c, now, S).circuit
        else:
            c = on_probe(c, rng.random() < 0.5, now, S).circuit
        assert c.failures == sum(1 for _, ok in c.events if not ok)
