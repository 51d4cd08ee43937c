"""Drills, exactly: when one is active, what each fault makes of an attempt, the seeded draw, and the router's state.

The pure decisions (:mod:`llmroute.core.drills`) are checked value by value, including how their simulated failures
classify through :mod:`llmroute.core.retry` (the same path a real failure takes). The router's
:class:`llmroute.router.drills.Drills` is checked with a fake clock: start/end log lines, the active gauge, and that
probes are drawn but not counted as injections.
"""

from __future__ import annotations

import logging
import random

import pytest

from llmroute.api.llm_route import DrillFault
from llmroute.core import drills, retry
from llmroute.core.drills import SimulatedFailure, active_drill, error_rate, simulate
from llmroute.core.retry import Action, FailureKind
from llmroute.core.router_config import Drill
from llmroute.router import metrics
from llmroute.router.drills import Drills

pytestmark = pytest.mark.unit

UNTIL = 1_000.0


def drill(provider: str = "deepseek", fault: DrillFault = DrillFault.FULL_OUTAGE, until: float = UNTIL,
          rate: float | None = None) -> Drill:
    return Drill(provider=provider, fault=fault, until_epoch=until,
                 error_rate=drills.DEFAULT_ERROR_RATE[fault] if rate is None else rate)


class Rolls(random.Random):
    """A 'random' source that returns the given rolls in order, and counts how many were taken."""

    def __init__(self, *rolls: float) -> None:
        super().__init__(0)
        self.rolls = list(rolls)
        self.taken = 0

    def random(self) -> float:
        self.taken += 1
        return self.rolls.pop(0)


# --- core.drills ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "rate"), [
    (DrillFault.FULL_OUTAGE, 1.0), (DrillFault.HALF_ERRORS, 0.5), (DrillFault.SLOW_FIRST_TOKEN, 1.0),
    (DrillFault.PARTIAL_OUTAGE, 0.3), (DrillFault.OVERLOADED, 1.0), (DrillFault.RATE_LIMITED, 1.0),
])
def test_each_fault_has_its_incident_share_and_a_percent_overrides_it(fault: DrillFault, rate: float) -> None:
    assert error_rate(fault, None) == rate
    assert error_rate(fault, 20) == 0.2
    assert error_rate(fault, 100) == 1.0


def test_active_only_before_until_and_only_for_its_provider() -> None:
    d = drill()
    assert active_drill([d], "deepseek", UNTIL - 0.001) == d
    assert active_drill([d], "deepseek", UNTIL) is None
    assert active_drill([d], "deepseek", UNTIL + 3600) is None
    assert active_drill([d], "together", 0.0) is None
    assert active_drill([], "deepseek", 0.0) is None
    other = drill("together", DrillFault.OVERLOADED)
    assert active_drill([d, other], "together", 0.0) == other


@pytest.mark.parametrize(("fault", "expected", "outcome"), [
    (DrillFault.FULL_OUTAGE, SimulatedFailure(DrillFault.FULL_OUTAGE, failure=FailureKind.CONNECT),
     retry.Outcome(Action.FAILOVER, "connect_error")),
    (DrillFault.HALF_ERRORS, SimulatedFailure(DrillFault.HALF_ERRORS, status=503),
     retry.Outcome(Action.FAILOVER, "unavailable")),
    (DrillFault.PARTIAL_OUTAGE, SimulatedFailure(DrillFault.PARTIAL_OUTAGE, status=503),
     retry.Outcome(Action.FAILOVER, "unavailable")),
    (DrillFault.OVERLOADED, SimulatedFailure(DrillFault.OVERLOADED, status=503),
     retry.Outcome(Action.FAILOVER, "unavailable")),
    (DrillFault.RATE_LIMITED, SimulatedFailure(DrillFault.RATE_LIMITED, status=429, retry_after="2"),
     retry.Outcome(Action.FAILOVER, "rate_limited", retry_after_s=2.0)),
    (DrillFault.SLOW_FIRST_TOKEN,
     SimulatedFailure(DrillFault.SLOW_FIRST_TOKEN, failure=FailureKind.TTFT, wait_for_ttft=True),
     retry.Outcome(Action.FAILOVER, "ttft_timeout")),
])
def test_each_fault_simulates_its_failure_and_classifies_like_a_real_one(
    fault: DrillFault, expected: SimulatedFailure, outcome: retry.Outcome
) -> None:
    sim = simulate(drill(fault=fault), Rolls(0.0))
    assert sim == expected
    if sim.status is not None:
        assert retry.classify_status(sim.status, sim.retry_after) == outcome
    else:
        assert sim.failure is not None
        assert retry.classify_failure(sim.failure) == outcome
    assert outcome.circuit_failure  # every drill failure counts against the circuit, as the real incident would


def test_the_draw_fails_an_attempt_iff_its_one_roll_is_below_the_rate() -> None:
    half = drill(fault=DrillFault.HALF_ERRORS)
    rng = Rolls(0.0, 0.49999, 0.5, 0.99)
    assert [simulate(half, rng) is not None for _ in range(4)] == [True, True, False, False]
    assert rng.taken == 4
    partial = drill(fault=DrillFault.PARTIAL_OUTAGE)
    assert [simulate(partial, Rolls(r)) is not None for r in (0.29, 0.3, 0.31)] == [True, False, False]
    full = drill(fault=DrillFault.FULL_OUTAGE)
    assert simulate(full, Rolls(0.999999)) is not None  # rate 1.0: every roll in [0, 1) fails


def test_seeded_draws_are_reproducible_and_near_the_rate() -> None:
    half = drill(fault=DrillFault.HALF_ERRORS)
    first = [simulate(half, rng) is not None for rng in [random.Random(7)] for _ in range(1000)]
    again = [simulate(half, rng) is not None for rng in [random.Random(7)] for _ in range(1000)]
    assert first == again
    assert 450 <= sum(first) <= 550


def test_detail_says_it_was_simulated_and_not_sent() -> None:
    assert SimulatedFailure(DrillFault.OVERLOADED, status=503).detail == (
        "drill Overloaded: simulated HTTP 503, not sent")
    assert SimulatedFailure(DrillFault.FULL_OUTAGE, failure=FailureKind.CONNECT).detail == (
        "drill FullOutage: simulated connect, not sent")


# --- router.drills.Drills -------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_router_drills_log_start_and_end_and_keep_the_gauge(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(UNTIL - 10)
    state = Drills(clock, random.Random(1))
    labels = {"provider": "drilltest", "fault": "FullOutage"}
    with caplog.at_level(logging.INFO, logger="llmroute.router.drills"):
        state.use((drill("drilltest"),))
        state.tick()  # no second "started"
        assert sample("llmroute_drill_active", **labels) == 1
        clock.now = UNTIL
        state.tick()
        state.tick()
    assert sample("llmroute_drill_active", **labels) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "drill started: provider drilltest, fault FullOutage, until 1970-01-01T00:16:40Z, "
        "100% of attempts and probes fail",
        "drill ended (its end passed): provider drilltest, fault FullOutage, until 1970-01-01T00:16:40Z, "
        "100% of attempts and probes fail",
    ]
    assert state.inject("drilltest") is None


def test_router_drills_removed_from_config_end_at_once_and_past_ones_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock(UNTIL - 10)
    state = Drills(clock, random.Random(1))
    with caplog.at_level(logging.INFO, logger="llmroute.router.drills"):
        state.use((drill("drillgone"), drill("drillpast", until=UNTIL - 20)))
        state.use(())
    messages = [r.getMessage().split(":")[0] for r in caplog.records]
    assert messages == ["drill ignored, its end has passed", "drill started", "drill ended (removed from the LLMRoute)"]
    assert sample("llmroute_drill_active", provider="drillgone", fault="FullOutage") is None
    assert state.inject("drillgone") is None


def test_router_drills_count_attempts_not_probes() -> None:
    state = Drills(Clock(0.0), random.Random(1))
    state.use((drill("drillcount", DrillFault.OVERLOADED),))
    labels = {"provider": "drillcount", "fault": "Overloaded"}
    assert sample("llmroute_drill_injections_total", **labels) is None  # pre-created by metrics.prepare, not here
    assert state.inject("drillcount") == SimulatedFailure(DrillFault.OVERLOADED, status=503)
    assert state.inject("drillcount", probe=True) == SimulatedFailure(DrillFault.OVERLOADED, status=503)
    assert sample("llmroute_drill_injections_total", **labels) == 1
    assert state.inject("together") is None
