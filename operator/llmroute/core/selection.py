"""Backend selection: in which order one request tries the backends residency allowed, and why the others are skipped.

Owns the attempt order. Called by the router's proxy module (:mod:`llmroute.router.proxy`) once per request and by
``llmroute explain``. Its input ``allowed`` is already residency-filtered (:mod:`llmroute.core.compile`); selection
only orders and drops, so it can never add a backend residency did not allow (DESIGN.md invariant 1). Every backend
of ``allowed`` ends up exactly once in ``Plan.attempts`` or ``Plan.skipped``.

Order:

1. Priority groups, ascending. Inside a group: HEALTHY (and picked RECOVERING) backends in a weighted random order,
   then DEGRADED ones in a weighted random order, then weight-0 standbys in their listed order (healthy first).
2. OPEN backends are skipped, with the circuit's reason.
3. A RECOVERING backend takes its normal place with probability ``traffic_share`` (so it gets that share of the
   traffic it would get if healthy); otherwise it is a last resort, placed after every other candidate of every
   group, rather than dropped: when all else fails, a half-recovered backend beats an error.
4. Truncated to ``max_attempts``; the rest are skipped with "beyond max_attempts".

Pure: health comes in as ``circuits`` (missing key = HEALTHY) and randomness as ``rng``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from llmroute.core.circuit import Circuit, State, retry_in_s, summary, traffic_share
from llmroute.core.router_config import BackendTarget, CircuitSettings

_Candidate = tuple[BackendTarget, str]
_HEALTHY = ("healthy",)


@dataclass(frozen=True)
class Skip:
    """A backend residency allowed that this request will not try, and why."""

    backend: BackendTarget
    reason: str


class Plan(NamedTuple):
    """The backends to try in order; ``notes[i]`` says why ``attempts[i]`` is where it is. (A named tuple: one is made
    for every request, and a frozen dataclass costs several times as much to make.)"""

    attempts: tuple[BackendTarget, ...]
    skipped: tuple[Skip, ...]
    notes: tuple[str, ...] = ()

    def explain(self) -> list[str]:
        """One line per attempt and per skipped backend, for logs, 503 errors and ``llmroute explain``."""
        lines = []
        if not self.attempts:
            lines.append(
                f"no backend to try: all {len(self.skipped)} allowed backends skipped"
                if self.skipped
                else "no backend to try: none allowed"
            )
        for i, (b, note) in enumerate(itertools.zip_longest(self.attempts, self.notes[: len(self.attempts)])):
            lines.append(f"attempt {i + 1}: {describe(b)}" + (f": {note}" if note else ""))
        lines.extend(f"skipped {describe(s.backend)}: {s.reason}" for s in self.skipped)
        return lines


def backend_key(b: BackendTarget) -> str:
    """The key of a backend's circuit: ``provider/model``."""
    return f"{b.provider}/{b.model}"


def describe(b: BackendTarget) -> str:
    """``provider/model (priority p, weight w)``."""
    return f"{backend_key(b)} (priority {b.priority}, weight {b.weight})"


def plan_attempts(
    allowed: Sequence[BackendTarget],
    circuits: Mapping[str, Circuit],
    s: CircuitSettings,
    *,
    max_attempts: int,
    now: float,
    rng: random.Random,
) -> Plan:
    """Order ``allowed`` (residency-filtered, any order) into attempts by priority, health and weight."""
    if max_attempts < 0:
        raise ValueError(f"max_attempts must be >= 0, got {max_attempts}")
    if len(allowed) == 1 and max_attempts and allowed[0].weight > 0:  # the common one-backend route, kept cheap
        c = circuits.get(backend_key(allowed[0]))
        if c is None or c.state is State.HEALTHY:
            return Plan(tuple(allowed), (), _HEALTHY)
    ordered: list[_Candidate] = []
    last_resort: list[_Candidate] = []
    skipped: list[Skip] = []
    for _, group in itertools.groupby(sorted(allowed, key=lambda b: b.priority), key=lambda b: b.priority):
        placed, late, skips = _order_group(list(group), circuits, s, now, rng)
        ordered += placed
        last_resort += late
        skipped += skips
    candidates = ordered + last_resort
    beyond = [Skip(b, f"{note}; beyond max_attempts={max_attempts}") for b, note in candidates[max_attempts:]]
    kept = candidates[:max_attempts]
    return Plan(tuple(b for b, _ in kept), tuple(skipped + beyond), tuple(note for _, note in kept))


def earliest_retry_s(
    allowed: Sequence[BackendTarget], circuits: Mapping[str, Circuit], s: CircuitSettings, *, now: float
) -> float | None:
    """Seconds until some allowed backend may serve again (Retry-After for an empty plan); None if none allowed."""
    waits = [retry_in_s(circuits.get(backend_key(b), Circuit()), now, s) for b in allowed]
    return min(waits, default=None)


def _order_group(
    group: list[BackendTarget], circuits: Mapping[str, Circuit], s: CircuitSettings, now: float, rng: random.Random
) -> tuple[list[_Candidate], list[_Candidate], list[Skip]]:
    """One priority group: (placed in order, last resorts, skipped)."""
    healthy: list[_Candidate] = []
    degraded: list[_Candidate] = []
    standby: list[tuple[bool, _Candidate]] = []
    late: list[_Candidate] = []
    skips: list[Skip] = []
    for b in group:
        c = circuits.get(backend_key(b), Circuit())
        state = summary(c, now, s)
        if c.state is State.OPEN:
            skips.append(Skip(b, state))
            continue
        if c.state is State.RECOVERING and rng.random() >= traffic_share(c, s):
            late.append((b, f"{state}: not picked, last resort"))
            continue
        if b.weight <= 0:
            standby.append((c.state is State.DEGRADED, (b, f"weight 0 (standby): {state}")))
        elif c.state is State.DEGRADED:
            degraded.append((b, f"{state}: after healthy peers"))
        else:
            healthy.append((b, f"{state}: picked" if c.state is State.RECOVERING else state))
    standby.sort(key=lambda item: item[0])
    placed = _weighted_shuffle(healthy, rng) + _weighted_shuffle(degraded, rng) + [cand for _, cand in standby]
    return placed, late, skips


def _weighted_shuffle(items: list[_Candidate], rng: random.Random) -> list[_Candidate]:
    """A random order in which each next item is drawn with probability proportional to its weight."""
    pool, out = list(items), []
    while len(pool) > 1:
        x = rng.random() * sum(b.weight for b, _ in pool)
        i = 0
        while i < len(pool) - 1 and x >= pool[i][0].weight:
            x -= pool[i][0].weight
            i += 1
        out.append(pool.pop(i))
    return out + pool
