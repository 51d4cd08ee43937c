"""A recovering circuit's step waits for its trials: an attempt sent to a RECOVERING backend that still awaits its
first token holds the step (and HEALTHY) at the one due when it was sent, so a slow provider's trial fails - and
re-opens the circuit - at the share it was sent at, not after the share climbed (the outage replay's
slow-first-token incident: a probe cannot see a slow first token, and a 10% trial sent late in a step failed only at
50% or 100%). Pure (``now`` passed in) and :class:`llmroute.router.health.Health` on a fake clock."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from llmroute.core.circuit import Circuit, State, on_probe, record, tick, traffic_share
from llmroute.core.router_config import BackendTarget
from llmroute.core.selection import backend_key
from llmroute.router.config_source import Snapshot
from llmroute.router.health import Health
from llmroute.router.upstream import Upstream
from tests.conftest import CIRCUIT

pytestmark = pytest.mark.unit

S = CIRCUIT  # steps 10/50/100%, 15 s each


def recovering_at(t: float) -> Circuit:
    c = Circuit()
    for k in range(S.consecutive_failures):
        c = record(c, False, t - S.open_s - 5 + k, S).circuit
    c = on_probe(c, True, t, S).circuit
    assert c.state is State.RECOVERING and c.since == t and c.step == 0
    return c


def test_a_trial_awaiting_its_first_token_holds_the_step_until_it_fails() -> None:
    c = recovering_at(0)
    held = tick(c, 15.0, S, awaiting_since=14.0)  # sent in the 10% step, 1 s ago: its verdict is not in
    assert (held.circuit.state, traffic_share(held.circuit, S), held.stepped) == (State.RECOVERING, 0.1, False)
    assert held.reason == "recovering at 10% share: the next step waits for an attempt sent 1.0s ago that awaits " \
                          "its first token"
    reopened = record(tick(held.circuit, 15.5, S, awaiting_since=14.0).circuit, False, 16.0, S)
    assert (reopened.circuit.state, reopened.reason) == (State.OPEN, "failure while recovering at 10% share")
    # without the hold (before): the share had climbed to 50% when the same trial failed
    climbed = record(tick(c, 15.0, S).circuit, False, 16.0, S)
    assert climbed.reason == "failure while recovering at 50% share"


def test_the_step_comes_once_the_trial_is_settled_and_catches_up() -> None:
    c = tick(recovering_at(0), 15.0, S, awaiting_since=14.0).circuit
    assert c.step == 0
    stepped = tick(c, 15.2, S)  # its first token came in time: nothing awaits any more
    assert (stepped.circuit.step, stepped.stepped, stepped.reason) == (1, True, "recovering: step up to 50% share")
    # a late tick with a trial sent in the second step: up to that step, not beyond
    late = tick(recovering_at(0), 31.0, S, awaiting_since=20.0)
    assert (late.circuit.state, late.circuit.step, late.stepped) == (State.RECOVERING, 1, True)


def test_a_trial_sent_once_the_step_was_due_does_not_hold_it() -> None:
    t = tick(recovering_at(0), 15.3, S, awaiting_since=15.1)
    assert (t.circuit.step, t.stepped) == (1, True)


def test_healthy_waits_for_the_last_steps_trial_too() -> None:
    c = tick(tick(recovering_at(0), 15.0, S).circuit, 30.0, S).circuit
    assert c.step == 2
    held = tick(c, 45.0, S, awaiting_since=44.0)
    assert (held.circuit.state, held.changed) == (State.RECOVERING, False)
    assert tick(held.circuit, 45.5, S).circuit.state is State.HEALTHY


def test_a_trial_of_an_earlier_recovery_holds_the_first_step() -> None:
    # sent while the circuit recovered before (it re-opened since): still a trial of this backend, bounded by its
    # time-to-first-token budget like any other
    t = tick(recovering_at(100), 115.0, S, awaiting_since=99.0)
    assert (t.circuit.step, t.stepped) == (0, False)


B = BackendTarget(provider="deepseek", model="deepseek-chat", priority=0, weight=1)


def health() -> tuple[Health, list[float]]:
    clock = [0.0]
    config = SimpleNamespace(models=[SimpleNamespace(classes=[SimpleNamespace(allowed=[B])])], circuit=S)
    h = Health(cast(Upstream, None), lambda: clock[0])
    h.use(cast(Snapshot, SimpleNamespace(config=config, endpoints={})))  # no endpoint: nothing to probe
    return h, clock


def test_health_holds_the_step_for_its_trials_until_their_first_token_or_their_end() -> None:
    h, clock = health()
    key = backend_key(B)
    assert h.admit(B) is None  # a healthy backend's attempts are not trials
    h.circuits[key] = recovering_at(0)
    clock[0] = 14.0
    slow = h.admit(B)
    clock[0] = 14.5
    fast = h.admit(B)
    assert slow is not None and fast is not None and slow != fast
    h.settle(fast)  # a first token in time
    clock[0] = 15.0
    h.tick()
    assert (h.circuits[key].state, h.circuits[key].step) == (State.RECOVERING, 0)  # the slow one holds it
    clock[0] = 15.0 + 1.0
    h.record(B, ok=False)  # its time-to-first-token budget is spent: the failure is recorded, then it settles
    h.settle(slow)
    h.settle(slow)  # harmless twice
    assert h.circuits[key].state is State.OPEN
    assert h.circuits[key].reason == "failure while recovering at 10% share"
    h.circuits[key] = recovering_at(20)
    clock[0] = 36.0
    h.tick()  # nothing awaits: the step comes as before
    assert (h.circuits[key].state, h.circuits[key].step) == (State.RECOVERING, 1)
