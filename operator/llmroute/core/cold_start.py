"""Cold starts: what a request does when allowed backends are ModelPools with no ready pod (issue "Scale from zero
without losing requests").

Owns the decisions, not the waiting (:mod:`llmroute.router.pools`, :mod:`llmroute.router.holding`):

* :func:`split_cold` - a pool backend with no ready pod is skipped, like an open circuit ("pool <ns>/<name> has no
  ready pods"), whenever the plan has any other candidate: **a request with another allowed, healthy backend is
  never held**. Only when every candidate left is such a pool is the request held, waiting for any of them; the
  first of them in plan order (priority, then weighted random, as traffic would go) is the pool it is *counted*
  for in the demand signal and ``llmroute_pool_held_requests``, so held demand is split across pools the way
  served traffic would be. The plan is cut to the attempt budget only after the cold pools left it, so a pool that
  cannot serve never takes the place of a backend that can.
* :func:`may_hold` - at most ``max_requests`` held per router process (0 disables holding); beyond, 503 at once.
* :func:`demand_body` - the JSON routers POST to the operator (``LLMROUTE_DEMAND_URL``) while they hold requests.

Pure: plans and counts in, plans and documents out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from llmroute.core.router_config import BackendTarget
from llmroute.core.selection import Plan, Skip

RETRY_AFTER_S = 5
"""Retry-After of a refused hold: the pool is starting, and a retry is held again (up to ``max_wait_s``)."""


class HoldOutcome(StrEnum):
    """How a hold ended (``llmroute_pool_hold_total{outcome}``)."""

    SERVED = "served"  # a pod became ready; the request went on to its attempts
    TIMEOUT = "timeout"  # max_wait_s passed first: 503
    OVERFLOW = "overflow"  # max_requests already held: 503 at once
    CLIENT_CLOSED = "client_closed"  # the client left while held


@dataclass(frozen=True)
class ColdSplit:
    """A plan without its cold pools, and the pools to hold for (empty: do not hold)."""

    plan: Plan
    hold_for: tuple[str, ...]


def split_cold(plan: Plan, cold: Mapping[str, str], max_attempts: int) -> ColdSplit:
    """Drop the attempts whose provider is in ``cold`` (provider -> pool key, pools with no ready pod), then cut the
    plan to ``max_attempts``.

    ``plan`` must not be cut yet (:func:`llmroute.core.selection.plan_attempts` with ``max_attempts`` at least the
    number of allowed backends): a cold pool must not take the place of a backend that could serve."""
    noted = len(plan.notes) >= len(plan.attempts)
    kept: list[tuple[BackendTarget, str]] = []
    skips: list[Skip] = []
    pools: list[str] = []
    for i, b in enumerate(plan.attempts):
        key = cold.get(b.provider)
        if key is None:
            kept.append((b, plan.notes[i] if noted else ""))
        else:
            skips.append(Skip(b, f"pool {key} has no ready pods"))
            pools.append(key)
    hold_for = tuple(dict.fromkeys(pools)) if pools and not kept else ()
    beyond = f"beyond max_attempts={max_attempts}"
    skips += [Skip(b, f"{note}; {beyond}" if note else beyond) for b, note in kept[max_attempts:]]
    kept = kept[:max_attempts]
    split = Plan(tuple(b for b, _ in kept), plan.skipped + tuple(skips), tuple(n for _, n in kept) if noted else ())
    return ColdSplit(split, hold_for)


def may_hold(held: int, max_requests: int) -> bool:
    """Whether one more request may be held when ``held`` already are."""
    return held < max_requests


def demand_body(router: str, held: Mapping[str, int], ended: Iterable[str]) -> dict[str, Any]:
    """``{"router": ..., "pools": {pool: held}}``: pools holding requests, and once with 0 those that stopped."""
    pools = {key: count for key, count in held.items() if count > 0}
    for key in ended:
        pools.setdefault(key, 0)
    return {"router": router, "pools": dict(sorted(pools.items()))}
