"""Drills: which provider is rehearsing an outage right now, and what one attempt to it is made to look like.

Owns the pure decisions behind LLMRoute ``spec.drills`` (see :class:`llmroute.api.llm_route.Drill`): the share of
attempts each fault shape fails by default (:func:`error_rate`, used by the compiler), whether a drill is active
(:func:`active_drill`) and the seeded draw that turns one attempt into a :class:`SimulatedFailure` or lets it through
(:func:`simulate`).

Safety lives in what a simulated failure *is*: a result the router produces instead of sending the attempt, shaped
like a real failure (an HTTP status for :func:`llmroute.core.retry.classify_status`, or a transport failure for
:func:`llmroute.core.retry.classify_failure`), so it takes the same classification -> circuit -> failover path as a
real one. A drill never picks a backend and never adds one; it can only take attempts away from a provider that
residency already allowed.

The fault shapes are those of :data:`llmroute.emulator.faults.INCIDENTS` (DeepSeek's recorded outages), minus the
account-level 402. Pure: the clock is the ``now_epoch`` argument (wall-clock seconds, as ``until`` is) and randomness
the ``rng``. Used by :mod:`llmroute.core.compile` and the router's :mod:`llmroute.router.drills`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from llmroute.api.llm_route import DrillFault
from llmroute.core.retry import FailureKind
from llmroute.core.router_config import Drill

DEFAULT_ERROR_RATE: dict[DrillFault, float] = {
    DrillFault.FULL_OUTAGE: 1.0,
    DrillFault.HALF_ERRORS: 0.5,
    DrillFault.SLOW_FIRST_TOKEN: 1.0,
    DrillFault.PARTIAL_OUTAGE: 0.3,
    DrillFault.OVERLOADED: 1.0,
    DrillFault.RATE_LIMITED: 1.0,
}
"""Share of attempts a fault fails when the drill sets no ``errorRate`` (the incidents' own shares)."""

RATE_LIMITED_RETRY_AFTER = "2"
"""Retry-After sent with a simulated 429, as the emulator's ``rate-limited`` incident does."""


@dataclass(frozen=True)
class SimulatedFailure:
    """What the router makes of an attempt it does not send: exactly one of ``status`` and ``failure`` is set.

    ``status`` (with ``retry_after``) is classified as if the provider had answered it; ``failure`` as a transport
    failure. ``wait_for_ttft``: the attempt first waits out its time-to-first-token budget (SlowFirstToken), so
    clients see the latency a real slow provider costs before failover.
    """

    fault: DrillFault
    status: int | None = None
    retry_after: str | None = None
    failure: FailureKind | None = None
    wait_for_ttft: bool = False

    @property
    def detail(self) -> str:
        """For logs and error notes: which drill, and that nothing was sent."""
        what = f"HTTP {self.status}" if self.status is not None else str(self.failure)
        return f"drill {self.fault}: simulated {what}, not sent"


_SHAPES: dict[DrillFault, SimulatedFailure] = {
    DrillFault.FULL_OUTAGE: SimulatedFailure(DrillFault.FULL_OUTAGE, failure=FailureKind.CONNECT),
    DrillFault.HALF_ERRORS: SimulatedFailure(DrillFault.HALF_ERRORS, status=503),
    DrillFault.SLOW_FIRST_TOKEN: SimulatedFailure(DrillFault.SLOW_FIRST_TOKEN, failure=FailureKind.TTFT,
                                                  wait_for_ttft=True),
    DrillFault.PARTIAL_OUTAGE: SimulatedFailure(DrillFault.PARTIAL_OUTAGE, status=503),
    DrillFault.OVERLOADED: SimulatedFailure(DrillFault.OVERLOADED, status=503),
    DrillFault.RATE_LIMITED: SimulatedFailure(DrillFault.RATE_LIMITED, status=429,
                                              retry_after=RATE_LIMITED_RETRY_AFTER),
}


def error_rate(fault: DrillFault, percent: int | None) -> float:
    """The share of attempts a drill fails: ``percent`` / 100 if given, else the fault's default."""
    return DEFAULT_ERROR_RATE[fault] if percent is None else percent / 100


def is_active(drill: Drill, now_epoch: float) -> bool:
    """A drill is active strictly before its ``until``."""
    return now_epoch < drill.until_epoch


def active_drill(drills: Iterable[Drill], provider: str, now_epoch: float) -> Drill | None:
    """The drill active for ``provider`` at ``now_epoch``, if any (drills are unique by provider)."""
    return next((d for d in drills if d.provider == provider and is_active(d, now_epoch)), None)


def simulate(drill: Drill, rng: random.Random) -> SimulatedFailure | None:
    """Decide one attempt under ``drill``: its simulated failure, or None to let it through.

    Always consumes exactly one number from ``rng``: the attempt fails iff that roll is ``< drill.error_rate``.
    """
    roll = rng.random()
    return _SHAPES[drill.fault] if roll < drill.error_rate else None
