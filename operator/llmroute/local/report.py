"""The drill's summary, computed from what the clients saw, what the providers received, the circuit timeline and the
pools' replica history.

Pure: :mod:`llmroute.local.run` collects the inputs, :mod:`llmroute.local.view` prints the result, and
``--summary-json`` writes :meth:`Summary.to_dict` for scripts and tests.

Per phase, ``share`` is each provider's share of the successful requests (a pool's provider, e.g. ``vllm``, when its
pods served), and ``pool_replicas`` is ``{"<ModelPool name>": {"min": n, "max": n}}``: the fewest and most replicas
the pool had during the phase, where a replica is a pod that exists - starting (loading weights), serving or
draining - i.e. one that would hold GPUs in a cluster, not only a ready one. It is exact, not sampled: the pool's
history records every change, and the count in force when the phase starts counts too. ``escalations`` is how many of
the phase's requests the router held to more classes than they declared (its ``x-llmroute-data-class`` answer header,
as the client saw it), ``escalations_by_class`` the same by that header's value (``{"public,pii": n}``).

The residency proof counts each request under its **true** classes, carried by the ``user`` tag the providers record
(:func:`llmroute.local.traffic.user_tag`): a ``public`` request with personal data in it counts as ``public,pii``, and
as ``pii`` for ``violations`` and ``sensitiveToCN``, whether the router escalated it or not. The top-level
``escalations`` block says what happened to the requests that carried personal data: how many were escalated,
missed (answered without ``pii``), received in CN, by declared class and type, and what the router's
``llmroute_escalations_total`` counted.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmroute.core.router_config import RouterConfig
from llmroute.local.drill import Slot
from llmroute.local.traffic import PERSONAL, Result

SENSITIVE = ("pii", "phi")
UNPLANTED = "other"
"""The type shown for a request escalated although the traffic generator planted nothing in it."""


@dataclass(frozen=True)
class PhaseSummary:
    name: str
    incident: str
    requests: int
    errors_non_stream: int
    errors_stream: int
    failed_over: int  # requests that needed more than one attempt
    share: dict[str, float]  # provider -> share of successful requests
    latency_p50_s: float | None
    target_open_after_s: float | None  # when the target's circuit first showed open, from the phase start
    target_healthy_after_s: float | None  # when it first showed healthy again (recovery)
    pool_replicas: dict[str, dict[str, int]] = field(default_factory=dict)  # pool -> {"min": n, "max": n}
    escalations: int = 0  # requests the router held to more classes than declared
    escalations_by_class: dict[str, int] = field(default_factory=dict)  # "public,pii" -> requests


@dataclass(frozen=True)
class Escalations:
    """What happened to the requests whose prompt carried (planted) personal data, and what the router counted."""

    carrying: dict[str, int] = field(default_factory=dict)  # declared class -> requests carrying personal data
    escalated: dict[str, int] = field(default_factory=dict)  # declared class -> of those, answered with pii
    missed: int = 0  # carrying, answered successfully without pii among the classes
    to_cn: dict[str, int] = field(default_factory=dict)  # declared class -> carrying, received by a CN provider
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)  # "public,pii" -> planted type -> requests
    router: dict[tuple[str, str, str], int] = field(default_factory=dict)  # llmroute_escalations_total by labels

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": sum(sum(types.values()) for types in self.by_class.values()),
            "byClass": self.by_class,
            "carryingPersonalData": self.carrying,
            "escalated": self.escalated,
            "missed": self.missed,
            "toCN": self.to_cn,
            "router": [{"from": f, "to": t, "type": k, "count": n} for (f, t, k), n in sorted(self.router.items())],
        }


@dataclass(frozen=True)
class Summary:
    target: str
    phases: tuple[PhaseSummary, ...]
    received: dict[str, dict[str, int]]  # provider -> data class -> requests the provider received
    violations: dict[str, int]  # data class -> requests received by a provider the class does not allow
    sensitive_to_cn: int  # pii/phi requests received by providers in CN
    residency_denials: int  # router-reported 403s (no compliant backend)
    escalations: Escalations = field(default_factory=Escalations)

    @property
    def total_violations(self) -> int:
        return sum(self.violations.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "phases": [vars(p) for p in self.phases],
            "received": self.received,
            "violations": self.violations,
            "sensitiveToCN": self.sensitive_to_cn,
            "residencyDenials": self.residency_denials,
            "escalations": self.escalations.to_dict(),
        }


def allowed_providers(config: RouterConfig) -> dict[str, set[str]]:
    """Data class -> providers any published model may send it to (from the compiled config)."""
    out: dict[str, set[str]] = {c: set() for c in config.data_classes}
    for model in config.models:
        for route in model.classes:
            out[route.data_class] |= {b.provider for b in route.allowed}
    return out


def summarise(*, target: str, slots: Sequence[Slot], results: Sequence[Result],
              received: Mapping[str, Mapping[str, int]], config: RouterConfig,
              circuit_timeline: Sequence[tuple[float, str]], residency_denials: int,
              pool_history: Mapping[str, Sequence[tuple[float, int]]] | None = None,
              router_escalations: Mapping[tuple[str, str, str], int] | None = None) -> Summary:
    """Build the summary. ``received`` is provider -> true classes (``public`` or ``public,pii``) -> requests,
    ``circuit_timeline`` (seconds since start, target's circuit state) samples, ``pool_history`` pool name ->
    (seconds since start, replicas) at each change (see :func:`replica_range`), ``router_escalations`` the router's
    ``llmroute_escalations_total`` by (from class, to class, type)."""
    history = pool_history or {}
    allowed = allowed_providers(config)
    violations = {cls: sum(n for p, by_cls in received.items() for c, n in by_cls.items()
                           if cls in classes_of(c) and p not in allowed.get(cls, set()))
                  for cls in config.data_classes}
    cn = {p.name for p in config.providers if p.jurisdiction == "CN"}
    to_cn = sum(n for p in cn for c, n in received.get(p, {}).items() if set(classes_of(c)) & set(SENSITIVE))
    carrying = Counter(r.data_class for r in results if r.carries is not None)
    escalations = Escalations(
        carrying=dict(carrying),
        escalated=dict(Counter(r.data_class for r in results if r.carries is not None and PERSONAL in r.classes)),
        missed=sum(1 for r in results if r.carries is not None and r.ok and PERSONAL not in r.classes),
        to_cn={cls: sum(n for p in cn for c, n in received.get(p, {}).items() if classes_of(c) == (cls, PERSONAL))
               for cls in carrying},
        by_class=escalation_counts(results),
        router=dict(router_escalations or {}),
    )
    return Summary(
        target=target,
        phases=tuple(_phase(s, [r for r in results if r.phase == s.phase.name], circuit_timeline,
                            {pool: replica_range(h, s.start, s.end) for pool, h in history.items()})
                     for s in slots),
        received={p: dict(c) for p, c in received.items()},
        violations=violations,
        sensitive_to_cn=to_cn,
        residency_denials=residency_denials,
        escalations=escalations,
    )


def classes_of(key: str) -> tuple[str, ...]:
    """The classes of a ``received`` key or an ``x-llmroute-data-class`` value: ``public,pii`` -> (public, pii)."""
    return tuple(key.split(","))


def escalation_counts(results: Sequence[Result]) -> dict[str, dict[str, int]]:
    """Escalated requests by the classes the router applied (``public,pii``), then by the type of personal data the
    traffic generator planted (:data:`UNPLANTED` when it planted none), most frequent first."""
    out: dict[str, Counter[str]] = {}
    for r in results:
        if r.escalated:
            out.setdefault(",".join(r.classes), Counter())[r.carries or UNPLANTED] += 1
    return {key: dict(types.most_common()) for key, types in sorted(out.items())}


def replica_range(history: Sequence[tuple[float, int]], start: float, end: float) -> dict[str, int]:
    """``{"min": n, "max": n}`` of the replicas during [``start``, ``end``): the count in force at ``start`` (the
    last change at or before it; 0 before the first) and every change inside. ``history`` is in time order."""
    before = [n for t, n in history if t <= start]
    counts = [before[-1] if before else 0] + [n for t, n in history if start < t < end]
    return {"min": min(counts), "max": max(counts)}


def _phase(slot: Slot, results: Sequence[Result], timeline: Sequence[tuple[float, str]],
           pool_replicas: dict[str, dict[str, int]]) -> PhaseSummary:
    ok = [r for r in results if r.ok]
    served = Counter(r.provider or "?" for r in ok)
    return PhaseSummary(
        name=slot.phase.name,
        incident=slot.phase.incident,
        requests=len(results),
        errors_non_stream=sum(1 for r in results if not r.ok and not r.stream),
        errors_stream=sum(1 for r in results if not r.ok and r.stream),
        failed_over=sum(1 for r in ok if r.attempts > 1),
        share={p: n / len(ok) for p, n in served.most_common()} if ok else {},
        latency_p50_s=statistics.median(r.latency_s for r in ok) if ok else None,
        target_open_after_s=_first(timeline, slot, "open"),
        target_healthy_after_s=_first(timeline, slot, "healthy") if slot.phase.faults is None else None,
        pool_replicas=pool_replicas,
        escalations=sum(1 for r in results if r.escalated),
        escalations_by_class=dict(Counter(",".join(r.classes) for r in results if r.escalated).most_common()),
    )


def _first(timeline: Sequence[tuple[float, str]], slot: Slot, state: str) -> float | None:
    return next((t - slot.start for t, s in timeline if slot.start <= t < slot.end and s == state), None)
