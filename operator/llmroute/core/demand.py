"""Router demand for pools: the report routers send, and the sum of what they hold per pool. Pure (``now`` is passed).

A router that holds requests for a :class:`~llmroute.api.model_pool.ModelPool` with no ready pod (a pool at zero, or
one whose pods are all starting) tells the operator, which serves ``POST /v1/demand``
(:mod:`llmroute.controller.demand`, the I/O). Routers have no Kubernetes API access, so this is a plain HTTP push to
the operator's Service; the body is a :class:`Report`::

    {"router": "<route-namespace>/<route-name>/<hostname>", "pools": {"<namespace>/<pool>": <held count>}}

A router posts when a pool's held count goes 0 -> 1, every second while it holds any, and once with 0 when it is
done. So only routers that hold requests send, one small request a second each, whatever the number of routes.

:class:`DemandBook` keeps the last count per (pool, router). A pool's demand is the sum over routers of counts
younger than :data:`MAX_AGE_S` (a router that died, or lost its connection, stops counting after three missed
reports). :meth:`DemandBook.record` returns the pools whose demand went from 0 to more than 0 with that report: the
operator wakes their scalers at once instead of at the next interval. Stale entries are dropped as they are met,
so memory follows the routers holding requests now.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_AGE_S = 3.0
"""Reports older than this no longer count (routers repeat them every second while holding)."""
MAX_BODY_BYTES = 64 * 1024
MAX_ROUTER_ID = 512
MAX_POOLS = 1024
MAX_COUNT = 1_000_000
_POOL_KEY = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class DemandError(ValueError):
    """A report that is not one (the endpoint answers 400 with this text)."""


@dataclass(frozen=True)
class Report:
    """One router's held requests per pool (``<namespace>/<pool>`` -> count)."""

    router: str
    pools: Mapping[str, int]


def parse_report(body: bytes) -> Report:
    """The report in ``body`` (JSON); :class:`DemandError` naming the first problem. Unknown top-level fields are
    ignored (a newer router may send more)."""
    if len(body) > MAX_BODY_BYTES:
        raise DemandError(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        doc: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise DemandError("body is not JSON") from None
    if not isinstance(doc, dict):
        raise DemandError("body must be a JSON object")
    router, pools = doc.get("router"), doc.get("pools")
    if not isinstance(router, str) or not router or len(router) > MAX_ROUTER_ID:
        raise DemandError(f"router must be a non-empty string of at most {MAX_ROUTER_ID} characters")
    if not isinstance(pools, dict):
        raise DemandError('pools must be an object of "<namespace>/<pool>": count')
    if len(pools) > MAX_POOLS:
        raise DemandError(f"pools has more than {MAX_POOLS} entries")
    for key, count in pools.items():
        if not _POOL_KEY.match(key):
            raise DemandError(f'pools key "{key[:100]}" is not "<namespace>/<pool>"')
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
            raise DemandError(f'pools["{key}"] must be an integer 0..{MAX_COUNT}')
    return Report(router, dict(pools))


@dataclass(frozen=True)
class _Held:
    count: int
    at: float


@dataclass
class DemandBook:
    """The last count each router reported per pool; demand is the sum of the fresh ones."""

    max_age_s: float = MAX_AGE_S
    _pools: dict[str, dict[str, _Held]] = field(default_factory=dict)

    def record(self, report: Report, now: float, known: Callable[[str], bool] = lambda _: True) -> list[str]:
        """Take ``report`` (received at ``now``); pools ``known`` rejects are ignored. Returns the pools whose demand
        went from 0 to more than 0."""
        started = []
        for pool, count in report.pools.items():
            if not known(pool):
                continue
            before = self.held(pool, now)
            routers = self._pools.setdefault(pool, {})
            if count > 0:
                routers[report.router] = _Held(count, now)
            else:
                routers.pop(report.router, None)
            if before == 0 and count > 0:
                started.append(pool)
            if not routers:
                del self._pools[pool]
        return started

    def held(self, pool: str, now: float) -> int:
        """Requests held for ``pool`` by routers that reported within :attr:`max_age_s` of ``now``."""
        routers = self._pools.get(pool)
        if not routers:
            return 0
        for router in [r for r, h in routers.items() if now - h.at > self.max_age_s]:
            del routers[router]
        if not routers:
            del self._pools[pool]
        return sum(h.count for h in routers.values())

    def forget(self, pool: str) -> None:
        """Drop everything known about ``pool`` (it was deleted)."""
        self._pools.pop(pool, None)
