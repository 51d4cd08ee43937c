"""Pod picking: fewest waiting then running from fresh metrics, requests sent since the scrape counted as waiting,
in-flight counts when any metrics are stale, never a pod that is not ready, random ties, round-robin baseline."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from llmroute.core.pod_picking import Basis, PodView, pick_pod, pick_round_robin

pytestmark = pytest.mark.unit

NOW = 100.0
FRESH = NOW - 0.3
STALE = NOW - 1.5


def pod(address: str, waiting: int = 0, running: int = 0, *, at: float | None = FRESH, inflight: int = 0,
        sent: int = 0, ready: bool = True) -> PodView:
    return PodView(address, ready, waiting, running, at, inflight, sent)


@pytest.mark.parametrize(("pods", "expected", "basis"), [
    pytest.param([pod("a", 2, 1), pod("b", 0, 9)], "b", Basis.METRICS, id="fewest waiting wins over fewest running"),
    pytest.param([pod("a", 0, 5), pod("b", 0, 3)], "b", Basis.METRICS, id="then fewest running"),
    pytest.param([pod("a", 0, 1, sent=2), pod("b", 1, 8)], "b", Basis.METRICS,
                 id="sent since the scrape count as waiting"),
    pytest.param([pod("a", 0, 0, sent=1, inflight=5), pod("b", 0, 4, inflight=0)], "b", Basis.METRICS,
                 id="in-flight already in the scrape does not count twice"),
    pytest.param([pod("a", 0, 0, inflight=3), pod("b", 9, 9, at=STALE, inflight=1)], "b", Basis.INFLIGHT,
                 id="one stale pod: all compared by in-flight"),
    pytest.param([pod("a", 0, 0, at=None, inflight=2), pod("b", 0, 0, inflight=1)], "b", Basis.INFLIGHT,
                 id="never scraped counts as stale"),
    pytest.param([pod("a", 0, 0, ready=False), pod("b", 50, 50)], "b", Basis.METRICS,
                 id="a pod that is not ready is never picked"),
    pytest.param([pod("a", 0, 0, at=STALE, ready=False), pod("b", 5, 5)], "b", Basis.METRICS,
                 id="a stale pod that is not ready does not force in-flight"),
    pytest.param([pod("a", 0, 0, at=NOW - 1.0)], "a", Basis.METRICS, id="exactly 1 s old is fresh"),
])
def test_pick(pods: list[PodView], expected: str, basis: Basis) -> None:
    pick = pick_pod(pods, now=NOW, rng=random.Random(1))
    assert pick is not None
    assert (pick.address, pick.basis) == (expected, basis)


@pytest.mark.parametrize("pods", [[], [pod("a", ready=False), pod("b", ready=False)]])
def test_no_ready_pod_no_pick(pods: list[PodView]) -> None:
    assert pick_pod(pods, now=NOW, rng=random.Random(1)) is None
    assert pick_round_robin(pods, 3) is None


def test_ties_are_broken_at_random() -> None:
    rng = random.Random(7)
    pods = [pod("a", 0, 2), pod("b", 0, 2), pod("c", 0, 3)]
    picks = Counter(p.address for _ in range(2000) if (p := pick_pod(pods, now=NOW, rng=rng)) is not None)
    assert picks.keys() == {"a", "b"}
    assert 800 < picks["a"] < 1200


def test_a_burst_between_scrapes_spreads() -> None:
    """Replays picks as the router makes them: each pick adds one sent-since-scrape request to its pod."""
    sent = {"idle": 0, "busy": 0, "queued": 0}
    base = {"idle": (0, 0), "busy": (0, 6), "queued": (3, 8)}
    rng = random.Random(3)
    for _ in range(12):
        pods = [pod(a, w, r, sent=sent[a], inflight=sent[a]) for a, (w, r) in base.items()]
        pick = pick_pod(pods, now=NOW, rng=rng)
        assert pick is not None
        sent[pick.address] += 1
    # idle and busy alternate until both have as many waiting as the queued pod (3), then all three take turns
    assert sent == {"idle": 5, "busy": 5, "queued": 2}


def test_reason_says_what_was_compared() -> None:
    pick = pick_pod([pod("a", 1, 2, sent=1), pod("b", 4, 4)], now=NOW, rng=random.Random(0))
    assert pick is not None and pick.reason == "waiting 1+1 sent since scrape, running 2; 2 ready"
    pick = pick_pod([pod("a", at=None, inflight=2)], now=NOW, rng=random.Random(0))
    assert pick is not None and pick.reason == "in-flight 2 (metrics stale); 1 ready"


def test_round_robin_cycles_over_ready_pods_in_address_order() -> None:
    pods = [pod("c", 9, 9), pod("a"), pod("b", ready=False)]
    picks = [p.address for turn in range(4) if (p := pick_round_robin(pods, turn)) is not None]
    assert picks == ["a", "c", "a", "c"]
