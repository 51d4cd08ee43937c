"""Which connection makes room at the connection cap (:func:`llmroute.router.limits.evictee`): the one waiting longest
for a request head, once it has waited :data:`~llmroute.router.limits.EVICT_MIN_WAIT_S`; none (a 503 for the new one)
when nothing waits that long; and at the cap (:func:`~llmroute.router.limits.evictee_at_cap`) a connection that never
sent a request before a keep-alive one idle after an answer, which must have been idle
:data:`~llmroute.router.limits.EVICT_IDLE_MIN_S`. Clocks are passed in. The cap in action is tested against the real
process in ``tests/router/test_hostile.py``."""

from __future__ import annotations

import pytest

from llmroute.router.limits import EVICT_IDLE_MIN_S, EVICT_MIN_WAIT_S, evictee, evictee_at_cap

NOW = 1000.0


@pytest.mark.parametrize(
    ("waiting", "expected"),
    [
        pytest.param([], None, id="nothing-waits-every-connection-busy"),
        pytest.param([("a", NOW - 5.0)], "a", id="the-only-one"),
        pytest.param([("a", NOW - 1.0), ("b", NOW - 9.0), ("c", NOW - 3.0)], "b", id="longest-waiting-in-any-order"),
        pytest.param([("a", NOW - 2.0), ("b", NOW - 2.0)], "a", id="a-tie-goes-to-the-first-listed"),
        pytest.param([("a", NOW - EVICT_MIN_WAIT_S / 2)], None, id="too-fresh-a-round-trip-is-granted"),
        pytest.param([("a", NOW - EVICT_MIN_WAIT_S)], "a", id="exactly-the-minimum-wait"),
        pytest.param([("young", NOW - 0.01), ("old", NOW - 0.5)], "old", id="a-fresh-one-is-skipped-not-blocking"),
    ],
)
def test_the_connection_waiting_longest_makes_room(waiting: list[tuple[str, float]], expected: str | None) -> None:
    assert evictee(waiting, NOW) == expected


def test_the_minimum_wait_is_a_parameter() -> None:
    waiting = [("a", NOW - 0.05)]
    assert evictee(waiting, NOW, min_wait_s=0.0) == "a"
    assert evictee(waiting, NOW, min_wait_s=1.0) is None


def test_the_decision_moves_with_the_clock_passed_in() -> None:
    waiting = [("a", NOW)]
    assert evictee(waiting, NOW) is None
    assert evictee(waiting, NOW + EVICT_MIN_WAIT_S) == "a"


# --- the two kinds of waiting connections (``evictee_at_cap``) -------------------------------------------------------


@pytest.mark.parametrize(
    ("fresh", "idle", "expected"),
    [
        pytest.param([], [], None, id="nothing-waits"),
        pytest.param([("half-head", NOW - 0.5)], [("keep-alive", NOW - 30.0)], "half-head",
                     id="one-that-never-sent-a-request-goes-before-an-older-idle-one"),
        pytest.param([("new", NOW - EVICT_MIN_WAIT_S / 2)], [("pooled", NOW - 5.0)], "pooled",
                     id="a-fresh-one-within-its-round-trip-leaves-it-to-the-idle-ones"),
        pytest.param([], [("between-requests", NOW - EVICT_IDLE_MIN_S / 2)], None,
                     id="a-client-between-two-requests-keeps-its-connection"),
        pytest.param([], [("pooled", NOW - EVICT_IDLE_MIN_S)], "pooled", id="idle-exactly-the-minimum"),
        pytest.param([("a", NOW - 0.2), ("b", NOW - 0.9)], [], "b", id="the-fresh-one-waiting-longest"),
    ],
)
def test_connections_that_never_sent_a_request_make_room_first(
    fresh: list[tuple[str, float]], idle: list[tuple[str, float]], expected: str | None
) -> None:
    assert evictee_at_cap(fresh, idle, NOW) == expected


def test_an_idle_connection_becomes_eligible_with_the_clock() -> None:
    idle = [("pooled", NOW)]
    assert evictee_at_cap([], idle, NOW + EVICT_IDLE_MIN_S - 0.01) is None
    assert evictee_at_cap([], idle, NOW + EVICT_IDLE_MIN_S) == "pooled"
    assert EVICT_MIN_WAIT_S < EVICT_IDLE_MIN_S  # a served client is protected longer than one that never asked
