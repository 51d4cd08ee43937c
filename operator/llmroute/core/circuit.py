"""Circuit breaker: takes a failing backend out of the path and brings it back in steps (DESIGN.md, last section).

Owns one backend's health state machine::

    HEALTHY -> DEGRADED -> OPEN -> RECOVERING -> HEALTHY          (RECOVERING -> OPEN on any failure)
    HEALTHY ----------------> OPEN                                 (thresholds crossed at once, or open_now)

* HEALTHY -> DEGRADED at half the opening thresholds: ``ceil(consecutive_failures / 2)`` failures in a row, or an
  error rate >= ``error_rate / 2`` over the window with >= ``min_requests`` events.
* HEALTHY/DEGRADED -> OPEN at ``consecutive_failures`` in a row, or error rate >= ``error_rate`` with
  >= ``min_requests`` events in the window; or forced by :func:`open_now` (402 balance, 401/403/404 misconfigured).
* DEGRADED -> HEALTHY (hysteresis + dwell): only after ``window_s`` in DEGRADED, with the window's error rate below
  ``error_rate / 4`` and the last outcome in the window a success (or an empty window: its failures have aged out).
* OPEN -> RECOVERING: only a good probe (:func:`on_probe`) at least ``open_s`` after opening. A failed probe keeps it
  OPEN with ``since`` unchanged, so the next good probe may recover it at once. Time alone never closes a circuit.
* RECOVERING: step ``k`` of ``recovery_steps`` is ``floor((now - since) / recovery_step_s)``; after the last step
  :func:`tick` makes it HEALTHY. Any failure (passive or probe) re-opens it, so a step survived is a step without
  failures; successes only go to the window. Stepping needs no minimum number of successes, so a quiet backend is
  not stuck at a partial share (the probe already vouched for it, and one failure costs one invisible failover).
  But it waits for the attempts already sent: while one still awaits its first token (``awaiting_since`` of
  :func:`tick`, when the oldest such attempt was sent), the step due is the one due when that attempt was sent. A
  probe cannot see a slow first token (the Nov 2025 incident: ``GET /models`` answers at once), so a trial sent late
  in a step would otherwise fail only after the share had climbed - every step, for a quiet backend. The hold lasts
  at most the time-to-first-token budget: the attempt's first token or its failure settles it.
  The window is cleared on entering RECOVERING: the outage's failures opened the circuit and must not re-open it.

Called by the router's health module (passive outcomes, probes, a periodic tick), by :mod:`llmroute.core.selection`
(``traffic_share``, ``summary``) and by ``llmroute explain``. Pure: ``now`` is monotonic seconds, passed in.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from enum import StrEnum
from typing import NamedTuple

from llmroute.core.router_config import CircuitSettings

DEGRADE_FRACTION = 0.5
"""HEALTHY -> DEGRADED at this fraction of the opening thresholds."""
HEAL_FRACTION = 0.25
"""DEGRADED -> HEALTHY only below this fraction of ``error_rate`` (half the degrading rate: hysteresis)."""
MIN_WINDOW_EVENTS = 256
"""The window keeps at most ``max(MIN_WINDOW_EVENTS, min_requests)`` newest events."""
_HEALTHY_SUCCESS = "success while healthy"


class State(StrEnum):
    """A backend's circuit state."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    OPEN = "open"
    RECOVERING = "recovering"


class Circuit(NamedTuple):
    """One backend's circuit; ``since`` is when ``state`` was entered, ``events`` are ``(time, ok)`` oldest first.

    A named tuple, not a dataclass: a new one is made for every attempt's outcome, and a frozen dataclass costs
    four times as much to make (one ``object.__setattr__`` per field)."""

    state: State = State.HEALTHY
    since: float = 0.0
    consecutive_failures: int = 0
    events: tuple[tuple[float, bool], ...] = ()
    step: int = 0
    reason: str = ""
    failures: int = 0
    """Failed events in ``events``, kept up to date so the error rate is O(1) on the request path; whoever passes
    ``events`` passes it."""


class Transition(NamedTuple):
    """The circuit after an event; ``changed`` means the state changed, ``stepped`` that the recovery step did."""

    circuit: Circuit
    changed: bool
    reason: str
    stepped: bool = False


def record(c: Circuit, ok: bool, now: float, s: CircuitSettings, *, slow: bool = False) -> Transition:
    """Record the passive outcome of one attempt; ``ok=False`` or ``slow=True`` is a failure."""
    failed = not ok or slow
    if not failed and c.state is State.HEALTHY and c.failures == 0 and s.error_rate > 0 and s.consecutive_failures:
        # The common case, kept cheap: no failure in the window, so no threshold can be crossed.
        events = c.events
        drop = len(events) - max(MIN_WINDOW_EVENTS, s.min_requests) + 1
        if drop > 0 and events[drop][0] >= now - s.window_s:  # and a full window (``_windowed``'s steady state,
            # with no failure to count out): the oldest go, this success comes in
            window = events[drop:] + ((now, True),)  # noqa: RUF005  (one copy; unpacking a slice copies twice)
            return Transition(Circuit(State.HEALTHY, c.since, 0, window, c.step, c.reason, 0), False, _HEALTHY_SUCCESS)
        return Transition(_windowed(c, now, s, (now, True), consecutive_failures=0), False, _HEALTHY_SUCCESS)
    c = _windowed(c, now, s, (now, not failed), consecutive_failures=c.consecutive_failures + 1 if failed else 0)
    outcome = ("slow first token" if ok else "failure") if failed else "success"
    if c.state is State.OPEN:
        return _stay(c, f"{outcome} recorded while open (a probe brings it back)")
    if c.state is State.RECOVERING:
        if failed:
            share = traffic_share(c, s)
            return _enter(c, State.OPEN, now, f"{outcome} while recovering at {share:.0%} share")
        return _stay(c, f"success while recovering at {traffic_share(c, s):.0%} share")
    opening = _open_reason(c, s)
    if opening:
        return _enter(c, State.OPEN, now, opening)
    if c.state is State.HEALTHY:
        degrading = _degrade_reason(c, s)
        return _enter(c, State.DEGRADED, now, degrading) if degrading else _stay(c, f"{outcome} while healthy")
    return _heal_or_stay(c, now, s, f"{outcome} while degraded")


def on_probe(c: Circuit, ok: bool, now: float, s: CircuitSettings) -> Transition:
    """The result of an unbilled health probe; it matters only to OPEN and RECOVERING circuits."""
    if c.state is State.OPEN:
        if not ok:
            return _stay(c, f"probe failed: still open ({c.reason})")
        if now - c.since < s.open_s:
            return _stay(c, f"probe ok but open for {now - c.since:.0f}s < {s.open_s:g}s: still open")
        recovering = c._replace(events=(), failures=0, consecutive_failures=0)
        return _enter(recovering, State.RECOVERING, now,
                      f"probe ok after {now - c.since:.0f}s open: recovering at {s.recovery_steps[0]:.0%} share")
    if c.state is State.RECOVERING and not ok:
        return _enter(c, State.OPEN, now, f"probe failed while recovering at {traffic_share(c, s):.0%} share")
    return _stay(c, f"probe {'ok' if ok else 'failed'}: ignored while {c.state} (passive outcomes decide)")


def tick(c: Circuit, now: float, s: CircuitSettings, *, awaiting_since: float | None = None) -> Transition:
    """Time passes: prune the window, step RECOVERING up (then to HEALTHY), let a dwelt DEGRADED heal.

    ``awaiting_since``: when the oldest attempt sent to this (RECOVERING) backend that still awaits its first token
    was sent, if one does; a step (or HEALTHY) is due only if it was due then."""
    c = _windowed(c, now, s)
    if c.state is State.RECOVERING:
        return _step(c, now, s, awaiting_since)
    if c.state is State.DEGRADED:
        return _heal_or_stay(c, now, s, "still degraded")
    if c.state is State.OPEN:
        return _stay(c, f"open for {now - c.since:.0f}s: only a good probe brings it back")
    return _stay(c, "healthy")


def open_now(c: Circuit, now: float, reason: str) -> Transition:
    """Force OPEN (402 balance exhausted, 401/403/404 misconfigured); an already open circuit keeps its ``since``."""
    if c.state is State.OPEN:
        return Transition(c._replace(reason=reason), False, f"already open; now: {reason}")
    return _enter(c, State.OPEN, now, reason)


def traffic_share(c: Circuit, s: CircuitSettings) -> float:
    """The share of its normal traffic the backend gets: 1.0 unless OPEN (0.0) or RECOVERING (the step's share)."""
    if c.state is State.OPEN:
        return 0.0
    if c.state is State.RECOVERING:
        return s.recovery_steps[min(c.step, len(s.recovery_steps) - 1)]
    return 1.0


def retry_in_s(c: Circuit, now: float, s: CircuitSettings) -> float:
    """Seconds until the backend may serve again, for Retry-After (callers round up): 0.0 unless OPEN.

    An OPEN circuit needs ``open_s`` and then a good probe; past ``open_s`` the probe is due any moment: 1.0.
    """
    if c.state is not State.OPEN:
        return 0.0
    return max(c.since + s.open_s - now, 1.0)


def summary(c: Circuit, now: float, s: CircuitSettings) -> str:
    """One line for plans, status and ``llmroute explain``, e.g. ``circuit open since 12s: 5 consecutive failures``."""
    if c.state is State.HEALTHY:
        return "healthy"
    age = f"{now - c.since:.0f}s"
    if c.state is State.OPEN:
        return f"circuit open since {age}: {c.reason}"
    if c.state is State.RECOVERING:
        return f"recovering at {traffic_share(c, s):.0%} share (step {c.step + 1}/{len(s.recovery_steps)})"
    return f"degraded since {age}: {c.reason}"


def error_rate(c: Circuit) -> float:
    """Failures / events in the window (0.0 for an empty window)."""
    return c.failures / len(c.events) if c.events else 0.0


def _open_reason(c: Circuit, s: CircuitSettings) -> str:
    if c.consecutive_failures >= s.consecutive_failures:
        return f"{c.consecutive_failures} consecutive failures"
    return _rate_reason(c, s, s.error_rate)


def _degrade_reason(c: Circuit, s: CircuitSettings) -> str:
    in_a_row = max(1, math.ceil(s.consecutive_failures * DEGRADE_FRACTION))
    if c.consecutive_failures >= in_a_row:
        return f"{c.consecutive_failures} consecutive failures"
    return _rate_reason(c, s, s.error_rate * DEGRADE_FRACTION)


def _rate_reason(c: Circuit, s: CircuitSettings, threshold: float) -> str:
    if len(c.events) < s.min_requests or error_rate(c) < threshold:
        return ""
    return f"error rate {error_rate(c):.0%} over {s.window_s:g}s ({len(c.events)} requests)"


def _heal_or_stay(c: Circuit, now: float, s: CircuitSettings, staying: str) -> Transition:
    dwelt, rate, limit = now - c.since, error_rate(c), s.error_rate * HEAL_FRACTION
    last_ok = not c.events or c.events[-1][1]
    if dwelt >= s.window_s and rate < limit and last_ok:
        healed = c._replace(consecutive_failures=0)
        return _enter(healed, State.HEALTHY, now, f"error rate {rate:.0%} < {limit:.0%} after {dwelt:.0f}s degraded")
    return _stay(c, f"{staying} ({dwelt:.0f}s, error rate {rate:.0%}; heals below {limit:.0%} after {s.window_s:g}s)")


def _step(c: Circuit, now: float, s: CircuitSettings, awaiting_since: float | None = None) -> Transition:
    due = _due(c, now, s)
    if awaiting_since is not None and (then := _due(c, awaiting_since, s)) < due:
        due = then  # no further than the step due when that attempt was sent
        if due <= c.step:
            return _stay(c, f"recovering at {traffic_share(c, s):.0%} share: the next step waits for an attempt "
                            f"sent {now - awaiting_since:.1f}s ago that awaits its first token")
    if due >= len(s.recovery_steps):
        return _enter(c, State.HEALTHY, now,
                      f"recovered: {len(s.recovery_steps)} steps of {s.recovery_step_s:g}s without failures")
    if due <= c.step:
        return _stay(c, f"recovering at {traffic_share(c, s):.0%} share")
    stepped = c._replace(step=due, reason=f"recovering: step {due + 1}/{len(s.recovery_steps)}")
    share = traffic_share(stepped, s)
    return Transition(stepped, False, f"recovering: step up to {share:.0%} share", stepped=True)


def _due(c: Circuit, at: float, s: CircuitSettings) -> int:
    """The recovery step due at ``at`` (``len(recovery_steps)``: HEALTHY; at once without a step duration)."""
    if s.recovery_step_s <= 0:
        return len(s.recovery_steps)
    return max(int((at - c.since) // s.recovery_step_s), 0)


def _enter(c: Circuit, state: State, now: float, reason: str) -> Transition:
    return Transition(c._replace(state=state, since=now, step=0, reason=reason), c.state is not state, reason)


def _stay(c: Circuit, reason: str) -> Transition:
    return Transition(c, False, reason)


def _windowed(c: Circuit, now: float, s: CircuitSettings, new: tuple[float, bool] | None = None,
              consecutive_failures: int | None = None) -> Circuit:
    """``c`` with ``new`` appended to the window and events older than ``window_s`` (or beyond the cap) dropped."""
    events, failures = c.events, c.failures
    cap = max(MIN_WINDOW_EVENTS, s.min_requests)
    if new is not None and len(events) >= cap and events[len(events) - cap + 1][0] >= now - s.window_s:
        # a full window whose newest ``cap - 1`` events are all within ``window_s`` (the steady state under load):
        # exactly the oldest go, with one copy and no search
        drop = len(events) - cap + 1
        failures += (not new[1]) - sum(1 for _, ok in events[:drop] if not ok)
        streak = c.consecutive_failures if consecutive_failures is None else consecutive_failures
        return Circuit(c.state, c.since, streak, events[drop:] + (new,), c.step, c.reason, failures)  # noqa: RUF005
        # (concatenation copies once; unpacking a slice copies twice)
    if new is not None:
        events, failures = (*events, new), failures + (not new[1])
    if events and (events[0][0] < now - s.window_s or len(events) > cap):
        start = max(bisect_left(events, (now - s.window_s, False)), len(events) - cap)
        failures -= sum(1 for _, ok in events[:start] if not ok)
        events = events[start:]
    streak = c.consecutive_failures if consecutive_failures is None else consecutive_failures
    if new is None and events is c.events and streak == c.consecutive_failures:
        return c  # nothing aged out (the common tick)
    return Circuit(c.state, c.since, streak, events, c.step, c.reason, failures)
