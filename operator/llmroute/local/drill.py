"""The drill: DeepSeek's recorded incidents (reference/deepseek-api-safety-and-outages.txt) replayed in order,
each compressed from hours into a share of the run, between a healthy baseline and a recovery.

Pure data and arithmetic; :mod:`llmroute.local.run` applies each phase's fault plan to the target provider's
emulator when the phase starts. The same phase names are used by the summary.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    """One drill phase: a name, the incident it replays and the emulator fault plan (``None`` = healthy)."""

    name: str
    incident: str
    faults: str | None  # a key of llmroute.emulator.INCIDENTS, or None for a healthy provider


DEEPSEEK_DRILL: tuple[Phase, ...] = (
    Phase("baseline", "DeepSeek healthy", None),
    Phase("full-outage", "Jan 2025, ~18 h: complete API outage", "full-outage"),
    Phase("half-errors", "Mar 2025, ~6 h: 50% of requests fail", "half-errors"),
    Phase("slow-first-token", "Nov 2025, ~4 h: 5-10 s to the first token", "slow-first-token"),
    Phase("partial-outage", "Feb 2026, ~8 h: 30% of requests fail", "partial-outage"),
    Phase("recovery", "DeepSeek healthy again", None),
)

NO_DRILL: tuple[Phase, ...] = (Phase("steady", "no faults injected", None),)


@dataclass(frozen=True)
class Slot:
    """A phase placed on the run's clock, in seconds from the start."""

    phase: Phase
    start: float
    end: float


def schedule(phases: tuple[Phase, ...], total_s: float) -> tuple[Slot, ...]:
    """Split ``total_s`` evenly over ``phases``."""
    if total_s <= 0 or not phases:
        raise ValueError("a drill needs a positive duration and at least one phase")
    each = total_s / len(phases)
    return tuple(Slot(p, i * each, (i + 1) * each) for i, p in enumerate(phases))


def phase_at(slots: tuple[Slot, ...], t: float) -> Slot:
    """The slot running at ``t`` seconds (the last one once the run is over)."""
    return next((s for s in slots if s.start <= t < s.end), slots[-1])
