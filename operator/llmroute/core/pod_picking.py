"""Pod picking: which ready pod of a ModelPool one request goes to - the one that can start it soonest.

Owns the choice among a pool's pods (issue "Load-aware pod picking in the router"). Called by
:mod:`llmroute.router.pools` once per attempt to a pool backend; the pods, their last vLLM metrics and the router's
own in-flight counts come in as :class:`PodView`, the clock as ``now`` and randomness as ``rng``.

The rule: **fewest waiting, then fewest running**, ties broken at random; a pod that is not ready is never picked
(None when no pod is ready). vLLM's ``num_requests_waiting`` is the queue a new request joins behind (the engine
has no free slot or KV space), so it decides first; ``num_requests_running`` is the batch a new request joins, whose
size slows its prefill and every token, so it breaks ties. Two bases, chosen per pick:

* ``metrics`` - every ready pod was scraped within ``freshness_s`` (1 s; GIE's saturation detector uses 200 ms on
  a faster loop). A scrape cannot see what this router sent after it, so each pod's ``sent_since_scrape`` (this
  router's requests to it started after the scrape and not yet finished) is **added to waiting**. Pessimistic on
  purpose: the pod may have had free slots, but counting them as queued is what makes a burst between two scrapes
  spread - with running counts alone, every request of a burst would go to the pod that looked idle at the last
  scrape (the herd effect KubeAI's and GIE's issue trackers report for stale load). Two idle pods and a burst of N
  alternate; a pod with a queue gets nothing until the others have as many waiting. The cost: when the busier pod
  did have free slots, part of a burst joins its larger batch instead of the smaller one.
* ``inflight`` - some ready pod's metrics are older than ``freshness_s`` (or missing): waiting and running numbers of
  different ages would compare apples with pears, so every pod is compared by this router's in-flight count alone
  (KubeAI's ``LeastLoad``). Other routers' load is invisible then; it is the fallback, not the rule (the scraper
  refreshes every ~0.5 s, and a pod whose scrape fails is not ready at all).

Pure: no I/O, no clock, no global randomness.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

FRESHNESS_S = 1.0
"""Metrics older than this are not used to compare pods."""


class Basis(StrEnum):
    """What a pick compared (a bounded metric label)."""

    METRICS = "metrics"
    INFLIGHT = "inflight"
    ROUND_ROBIN = "round_robin"


@dataclass(frozen=True, slots=True)
class PodView:
    """One pod as the picker sees it."""

    address: str
    ready: bool
    waiting: int = 0
    running: int = 0
    metrics_at: float | None = None  # when the metrics were scraped (same clock as ``now``); None: never
    inflight: int = 0  # this router's requests to the pod that have not finished
    sent_since_scrape: int = 0  # of those, the ones sent after the scrape (so not in ``waiting``/``running``)


@dataclass(frozen=True, slots=True)
class Pick:
    """The chosen pod, what was compared, and a short why (for debug logs and tests)."""

    address: str
    basis: Basis
    reason: str


def pick_pod(pods: Sequence[PodView], *, now: float, rng: random.Random,
             freshness_s: float = FRESHNESS_S) -> Pick | None:
    """The ready pod that can start a request soonest; None when no pod is ready."""
    ready = [p for p in pods if p.ready]
    if not ready:
        return None
    if all(p.metrics_at is not None and now - p.metrics_at <= freshness_s for p in ready):
        keyed = [((p.waiting + p.sent_since_scrape, p.running), p) for p in ready]
        basis = Basis.METRICS
    else:
        keyed = [((p.inflight, 0), p) for p in ready]
        basis = Basis.INFLIGHT
    best = min(k for k, _ in keyed)
    tied = [p for k, p in keyed if k == best]
    chosen = tied[0] if len(tied) == 1 else rng.choice(tied)
    return Pick(chosen.address, basis, _reason(chosen, basis, len(ready), len(tied)))


def pick_round_robin(pods: Sequence[PodView], turn: int) -> Pick | None:
    """The ``turn``-th ready pod in address order, cyclically: the load-blind baseline (what a Service does), kept
    for comparisons (``tests/benchmarks/bench_pool_picking.py``)."""
    ready = sorted(p.address for p in pods if p.ready)
    if not ready:
        return None
    return Pick(ready[turn % len(ready)], Basis.ROUND_ROBIN, f"turn {turn}; {len(ready)} ready")


def _reason(p: PodView, basis: Basis, ready: int, tied: int) -> str:
    if basis is Basis.METRICS:
        load = f"waiting {p.waiting}+{p.sent_since_scrape} sent since scrape, running {p.running}"
    else:
        load = f"in-flight {p.inflight} (metrics stale)"
    return f"{load}; {ready} ready" + (f", {tied} tied" if tied > 1 else "")
