"""The drill's summary, computed from what the clients saw, what the providers received, the circuit timeline and the
pools' replica history.

Pure: :mod:`llmroute.local.run` collects the inputs, :mod:`llmroute.local.view` prints the result, and
``--summary-json`` writes :meth:`Summary.to_dict` for scripts and tests.

Per phase, ``share`` is each provider's share of the successful requests (a pool's provider, e.g. ``vllm``, when its
pods served), and ``pool_replicas`` is ``{"<ModelPool name>": {"min": n, "max": n}}``: the fewest and most replicas
the pool had during the phase, where a replica is a pod that exists - starting (loading weights), serving or
draining - i.e. one that would hold GPUs in a cluster, not only a ready one. It is exact, not sampled: the pool's
history records every change, and the count in force when the phase starts counts too.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmroute.core.router_config import RouterConfig
from llmroute.local.drill import Slot
from llmroute.local.traffic import Result

SENSITIVE = ("pii", "phi")


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


@dataclass(frozen=True)
class Summary:
    target: str
    phases: tuple[PhaseSummary, ...]
    received: dict[str, dict[str, int]]  # provider -> data class -> requests the provider received
    violations: dict[str, int]  # data class -> requests received by a provider the class does not allow
    sensitive_to_cn: int  # pii/phi requests received by providers in CN
    residency_denials: int  # router-reported 403s (no compliant backend)

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
              pool_history: Mapping[str, Sequence[tuple[float, int]]] | None = None) -> Summary:
    """Build the summary. ``circuit_timeline`` is (seconds since start, target's circuit state) samples,
    ``pool_history`` pool name -> (seconds since start, replicas) at each change (see :func:`replica_range`)."""
    history = pool_history or {}
    allowed = allowed_providers(config)
    violations = {cls: sum(n for p, by_cls in received.items() for c, n in by_cls.items()
                           if c == cls and p not in allowed.get(cls, set()))
                  for cls in config.data_classes}
    cn = {p.name for p in config.providers if p.jurisdiction == "CN"}
    to_cn = sum(n for p in cn for c, n in received.get(p, {}).items() if c in SENSITIVE)
    return Summary(
        target=target,
        phases=tuple(_phase(s, [r for r in results if r.phase == s.phase.name], circuit_timeline,
                            {pool: replica_range(h, s.start, s.end) for pool, h in history.items()})
                     for s in slots),
        received={p: dict(c) for p, c in received.items()},
        violations=violations,
        sensitive_to_cn=to_cn,
        residency_denials=residency_denials,
    )


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
    )


def _first(timeline: Sequence[tuple[float, str]], slot: Slot, state: str) -> float | None:
    return next((t - slot.start for t, s in timeline if slot.start <= t < slot.end and s == state), None)
